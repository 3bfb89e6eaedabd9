"""What every figure is drawn with: arrays to RGB, boxes, matplotlib figures without pyplot.

Conventions (docs/design.md): images are ``(C, H, W)`` floats in [0, 1] (C = 1 gray or 3 RGB), or
signed floats in [-1, 1] when ``signed=True`` (Gabor; shown through ``(x + 1) / 2``); ``(H, W, 3)``
uint8 arrays are also accepted. Boxes are centre/size ``(cx, cy, w, h)`` or keypoints ``(x, y,
side)`` in pixels; pixel centres sit at integer coordinates, so a box covers ``[cx - w/2, cx +
w/2]``. Labels ``< 0`` mark padding and are not drawn.

matplotlib (the ``figures`` extra) is imported where a figure is made, and used only through its
object-oriented API (``matplotlib.figure.Figure`` with the Agg canvas): no pyplot state, no global
backend switch, never a window.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from mistnet import validate
from mistnet.data.store import label_name
from mistnet.extras import require_matplotlib
from mistnet.imagefile import DEFAULT_MAX_PIXELS
from mistnet.io import atomic_write
from mistnet.ops._checks import as_real, check_flag, require_dense, shown
from mistnet.signals import deferred_signals
from mistnet.validate import path_argument, replaceable, require_finite

#: Ground-truth box colour (RGB, 0-255).
GT_COLOR: tuple[int, int, int] = (0, 200, 0)
#: Predicted box colour (RGB, 0-255).
PRED_COLOR: tuple[int, int, int] = (255, 40, 40)


def as_array(x: Any) -> np.ndarray:
    """A tensor (detached, on the CPU; bfloat16 as float32, which numpy lacks) or anything
    array-like as a numpy array. A meta or sparse tensor is a ValueError."""
    if isinstance(x, torch.Tensor):
        require_dense(x, "a tensor to draw")
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_rgb(image: Any, signed: bool = False, *, name: str = "image") -> np.ndarray:
    """Convert an image to a displayable ``(H, W, 3)`` uint8 array.

    Args:
        image: ``(C, H, W)`` float tensor/array with C in {1, 3}, ``(H, W)`` float, or
            ``(H, W, 3)`` / ``(H, W)`` uint8.
        signed: float values live in [-1, 1] and are mapped by ``(x + 1) / 2``; True or False.
        name: the argument the image came from, as messages name it (``"patches"``).

    Returns:
        ``(H, W, 3)`` uint8; float inputs are clipped to [0, 1] and rounded.

    Raises:
        TypeError: ``signed`` is no bool (``"no"`` was taken as true).
        ValueError: a shape or dtype other than these, an empty one (H or W 0), or a float
            image holding NaN or infinity (NaN was drawn black).

    Example:
        >>> to_rgb(np.array([[[-1.0, 0.0, 1.0]]]), signed=True)[0, :, 0].tolist()
        [0, 128, 255]
    """
    signed = check_flag(signed, "signed")
    a = as_array(image)
    if a.dtype == np.uint8:
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3 or a.shape[2] not in (1, 3):
            raise ValueError(f"{name}: expected uint8 (H, W, 3) or (H, W), got {a.shape}")
        _not_empty(a.shape[:2], a.shape, name)
        return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a)
    if a.dtype.kind not in "bf":  # strings, objects: a raw numpy error in astype
        raise ValueError(  # int64 0..255 was clipped to 1: a white image
            f"{name}: expected a float (C, H, W) or uint8 (H, W, 3) image, got dtype {a.dtype}"
        )
    a = a.astype(np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"{name}: expected float (C, H, W) with C in {{1, 3}}, got {a.shape}")
    _not_empty(a.shape[1:], a.shape, name)
    require_finite(a, name)
    if signed:
        a = (a + 1.0) / 2.0
    a = np.clip(a, 0.0, 1.0)
    a = np.transpose(a, (1, 2, 0))  # (H, W, C)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.floor(a * 255.0 + 0.5).astype(np.uint8)


def _not_empty(size: tuple[int, ...], shape: tuple[int, ...], name: str) -> None:
    """Refuse an image of no pixels (``size`` is its ``(H, W)``): a figure of it divided by 0."""
    if 0 in size:
        raise ValueError(f"{name}: expected an image of H, W >= 1, got shape {shape}")


def boxes4(boxes: Any, name: str = "boxes") -> np.ndarray:
    """``(M, 3|4)`` -> ``(M, 4)`` float64 centre/size; ``None`` or empty -> ``(0, 4)``."""
    if boxes is None:
        return np.zeros((0, 4))
    b = number_array(boxes, name)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim != 2 or b.shape[1] not in (3, 4):
        raise ValueError(f"{name}: expected (M, 3) or (M, 4), got {b.shape}")
    if b.shape[1] == 3:
        b = np.concatenate([b, b[:, 2:3]], axis=1)
    return b


def number_array(x: Any, name: str, kinds: str = "biuf", what: str = "numbers") -> np.ndarray:
    """``x`` as a float64 array; text, objects (or another numpy kind than ``kinds``) are a
    ``TypeError`` naming ``name`` and saying ``what`` it takes."""
    a = as_array(x)
    if a.dtype.kind not in kinds:
        raise TypeError(f"{name}: expected {what}, got {type(x).__name__} of dtype {a.dtype}")
    return a.astype(np.float64)


def batch_size(x: Any, name: str) -> int:
    """How many images the batch ``x`` (a tensor, an array, a list or a tuple) holds.

    Raises:
        TypeError: ``x`` is none of these (an iterator, None), which has no length to read.
    """
    if not isinstance(x, torch.Tensor | np.ndarray | list | tuple):
        raise TypeError(
            f"{name}: expected a batched tensor or array, or a list of images, "
            f"got {type(x).__name__}"
        )
    if isinstance(x, torch.Tensor | np.ndarray) and x.ndim == 0:
        raise ValueError(f"{name}: expected a batch, got a 0-d {type(x).__name__}")
    return len(x)


def per_image(x: Any, n: int, name: str) -> list:
    """Split a batched array or a list into ``n`` per-image entries (``None`` -> ``[None] * n``)."""
    if x is None:
        return [None] * n
    if isinstance(x, (list, tuple)):
        if len(x) != n:
            raise ValueError(f"{name}: expected {n} entries, got {len(x)}")
        return list(x)
    batch_size(x, name)  # an iterator or a number: a TypeError naming it
    a = as_array(x)
    if a.shape[0] != n:
        raise ValueError(f"{name}: expected leading dim {n}, got {a.shape}")
    return [a[i] for i in range(n)]


def labels_of(x: Any, m: int, name: str = "labels") -> np.ndarray:
    """``m`` int64 labels (``None``: ``-2`` each, boxes drawn without a label).

    Raises:
        TypeError: labels that are no numbers.
        ValueError: not ``m`` of them, or a label that is no whole number (NaN was drawn as no
            label, after numpy's "invalid value encountered in cast" warning).
    """
    if x is None:
        return np.zeros(m, dtype=np.int64) - 2  # -2: "no label", boxes still drawn
    a = number_array(x, name, "iuf").reshape(-1)  # True was drawn as class 1
    if a.shape[0] != m:
        raise ValueError(f"{name}: expected {m} entries, got {a.shape[0]}")
    whole = np.isfinite(a) & (a == np.round(a)) & (np.abs(a) < 2**62)
    if not whole.all():
        raise ValueError(f"{name}: expected whole numbers, got {float(a[~whole][0])!r}")
    return a.astype(np.int64)


def scores_of(x: Any, m: int, name: str = "scores") -> np.ndarray | None:
    """``m`` float64 scores, one per box (``None`` stays ``None``: no score written).

    Raises:
        TypeError: scores that are no numbers.
        ValueError: not ``m`` of them (the missing ones were read past the end), or a NaN or
            infinite one (written "nan" beside its box).
    """
    if x is None:
        return None
    a = number_array(x, name).reshape(-1)
    if a.shape[0] != m:
        raise ValueError(f"{name}: expected {m} entries, one per box, got {a.shape[0]}")
    require_finite(a, name)
    return a


def drawn_boxes(
    boxes: Any, labels: Any, name: str = "boxes", labels_name: str = "labels"
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`boxes4` of ``boxes`` and :func:`labels_of` of ``labels``, once the boxes drawn
    (label not ``-1``: padding is not read) are finite and of a width and height >= 0.

    Raises:
        ValueError: ``"<name>: hold NaN or infinite values, got [...]"`` (NaN boxes were not
            drawn, without a word), or a box of negative width or height (Pillow's "x1 must be
            greater than or equal to x0" named nothing).
    """
    b = boxes4(boxes, name)
    lab = labels_of(labels, len(b), labels_name)
    shown = b[lab != -1]
    if not np.isfinite(shown).all():
        raise ValueError(f"{name}: hold NaN or infinite values, got {shown.tolist()}")
    negative = (shown[:, 2:] < 0).any(axis=1)
    if negative.any():
        raise ValueError(
            f"{name}: expected a width and height >= 0, got the box {shown[negative][0].tolist()}"
        )
    return b, lab


#: The lowest resolution a figure is drawn at: below about 6 matplotlib's fonts fail
#: ("FT_Set_Char_Size ... invalid ppem value"), below 1 PIL writes no image.
MIN_DPI = 10


def check_dpi(dpi: object) -> None:
    """Raise ValueError unless ``dpi`` is a finite number >= :data:`MIN_DPI` (not a bool): NaN
    came out as "cannot convert float NaN to integer" from deep inside matplotlib, 10**400 as
    an OverflowError, naming nothing."""
    x = as_real(dpi) if isinstance(dpi, numbers.Real) else None  # 10**400: inf
    if x is None or not math.isfinite(x) or x < MIN_DPI:
        raise ValueError(f"dpi: expected a finite number >= {MIN_DPI}, got {shown(dpi)}")


def new_figure(width_in: float, height_in: float, dpi: int):
    """A matplotlib figure on the Agg canvas (no pyplot, no window); ``dpi`` is checked
    (:func:`check_dpi`), and so is the figure's size in pixels.

    Raises:
        ValueError: a ``dpi`` that is no finite number > 0, or one that makes the figure larger
            than :data:`~mistnet.imagefile.DEFAULT_MAX_PIXELS` pixels (10**6 was matplotlib's
            ``MemoryError: std::bad_alloc``).
    """
    check_dpi(dpi)
    pixels = width_in * dpi * height_in * dpi
    if pixels > DEFAULT_MAX_PIXELS:
        raise ValueError(  # plot's 2,000 --key panels too: not only a dpi's doing
            f"the figure would be {width_in:g} x {height_in:g} inches at dpi {dpi:g}, "
            f"{pixels:.3g} pixels, more than {DEFAULT_MAX_PIXELS:,}: draw fewer panels or "
            "lower the dpi"
        )
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


#: The ``Software`` text of the PNG files mistnet writes itself (:func:`save_figure`,
#: :func:`mistnet.viz.annotate.save_png`).
PNG_SOFTWARE = "mistnet"


def figure_path(out_path: object, name: str = "out_path") -> str:
    """``out_path`` once a figure may be written there: a name ending in ``.png`` that is new
    or a PNG mistnet wrote (:func:`made_by_mistnet`). A file of the user's, a symbolic link, a
    folder or a FIFO is never replaced (every figure writer checks before drawing).

    Raises:
        TypeError: no path.
        ValueError: naming ``name``, the path and what it is.
    """
    path = path_argument(out_path, name)
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise ValueError(f"{name}: expected a PNG file to write, got the directory {path}")
    if os.path.splitext(path)[1].lower() != ".png":
        raise ValueError(f"{name} {path}: give a file name ending in .png (a figure is a PNG)")
    replaceable(path, name, "figure", made_by_mistnet, ValueError)
    return path


def save_figure(fig, out_path, dpi: int) -> None:
    """Write ``fig`` as a PNG atomically (:func:`drawn`), its ``Software`` text saying mistnet
    made it (:func:`made_by_mistnet`), at a path :func:`figure_path` takes."""
    out_path = figure_path(out_path)
    meta = {"Software": PNG_SOFTWARE}
    atomic_write(
        out_path, lambda tmp: drawn(fig.savefig, tmp, format="png", dpi=dpi, metadata=meta)
    )


def made_by_mistnet(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PNG file mistnet wrote (:func:`save_figure`,
    :func:`mistnet.viz.annotate.save_png`; read no further than its header chunks); False for
    anything else, unreadable or not, and for a symbolic link."""
    if os.path.islink(path) or not os.path.isfile(path):  # a FIFO would never end reading
        return False
    try:
        with Image.open(path, formats=["PNG"]) as im:
            return getattr(im, "text", {}).get("Software") == PNG_SOFTWARE
    except Exception:  # noqa: BLE001 - any file that is no such PNG
        return False


def drawn(draw, *args, **kwargs) -> Any:
    """``draw(*args, **kwargs)`` (matplotlib drawing) with Ctrl-C, SIGTERM and SIGHUP acted on
    once it returns: raised inside matplotlib's C++ code, their exception came out as
    ``ValueError: Invalid bounding box``, an internal error instead of "stopped"."""
    with deferred_signals():
        return draw(*args, **kwargs)


def rgb01(color: tuple[int, int, int]) -> tuple[float, float, float]:
    """A 0-255 RGB colour as matplotlib's 0-1 floats."""
    return (color[0] / 255, color[1] / 255, color[2] / 255)


def drawable_box(cx: float, cy: float, w: float, h: float, width: int, height: int) -> tuple:
    """``(x0, y0, w, h)`` of a centre/size box, its edges far outside a ``width`` x ``height``
    image brought to a distance of the image's size (a side of 1e9 overflowed FreeType's
    rasteriser in matplotlib: an internal error); a box near the image is as it was.

    Example:
        >>> drawable_box(40.0, 40.0, 1e9, 4.0, 80, 80)
        (-160.5, 38.0, 400.0, 4.0)
    """
    far = width + height
    x0, x1 = np.clip([cx - w / 2, cx + w / 2], -0.5 - far, width - 0.5 + far)
    y0, y1 = np.clip([cy - h / 2, cy + h / 2], -0.5 - far, height - 0.5 + far)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def draw_boxes(ax, boxes, labels, scores, color, text: bool = True, names=()) -> None:
    """Outline ``(M, 4)`` boxes on ``ax`` (an image :func:`show` drew), each with "label
    score" unless its label is -1 (edges far outside the image: :func:`drawable_box`)."""
    from matplotlib.patches import Rectangle

    c = rgb01(color)
    width, height = (round(abs(b - a)) for a, b in (ax.get_xlim(), ax.get_ylim()))
    for i, box in enumerate(boxes):
        if labels[i] == -1:
            continue
        x0, y0, w, h = drawable_box(*box, width, height)
        ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor=c, linewidth=1.2))
        parts = []
        if labels[i] >= 0:
            parts.append(label_name(int(labels[i]), names))
        if scores is not None:
            parts.append(f"{float(scores[i]):.2f}")
        if text and parts:
            ax.text(
                x0,
                y0,
                " ".join(parts),
                color="white",
                fontsize=7,
                va="bottom",
                ha="left",
                bbox=dict(facecolor=c, edgecolor="none", pad=0.5, alpha=0.85),
                clip_on=True,
            )


def show(ax, rgb: np.ndarray, title: str | None = None) -> None:
    """Show an RGB image on ``ax`` pixel for pixel, without ticks."""
    ax.imshow(rgb, interpolation="nearest")
    ax.set_xlim(-0.5, rgb.shape[1] - 0.5)
    ax.set_ylim(rgb.shape[0] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def montage(patches: np.ndarray, signed: bool, pad: int = 1, name: str = "patches") -> np.ndarray:
    """``(K, C, P, P)`` patches -> one ``(rows*(P+pad)-pad, cols*(P+pad)-pad, 3)`` uint8 grid;
    messages name the patches ``name``."""
    if patches.ndim != 4:
        raise ValueError(f"{name}: expected (K, C, P, P) per image, got {patches.shape}")
    K = patches.shape[0]
    if K == 0:
        return np.full((1, 1, 3), 255, dtype=np.uint8)
    cols = math.ceil(math.sqrt(K))
    rows = math.ceil(K / cols)
    P_h, P_w = patches.shape[-2:]
    grid = np.full((rows * (P_h + pad) - pad, cols * (P_w + pad) - pad, 3), 255, dtype=np.uint8)
    for k in range(K):
        r, c = divmod(k, cols)
        y, x = r * (P_h + pad), c * (P_w + pad)
        grid[y : y + P_h, x : x + P_w] = to_rgb(patches[k], signed, name=name)
    return grid


def check_class_names(class_names: object) -> None:
    """Refuse ``class_names`` that are no list or tuple of strings: "cat" named class 1 "a", a
    dict raised ``KeyError: 0``, a generator or None "has no len()".

    Raises:
        TypeError: ``"class_names: expected a list or tuple of names, got ..."``.
        ValueError: a name empty, given twice or holding a control character (a DataError).
    """
    if not isinstance(class_names, list | tuple) or not all(
        isinstance(n, str) for n in class_names
    ):
        shown = type(class_names).__name__  # a generator's repr says nothing more
        if isinstance(class_names, list | tuple | str):
            shown = repr(class_names)
        raise TypeError(f"class_names: expected a list or tuple of names, got {shown}")
    validate.class_names(class_names, "class_names")  # twice, empty, a control character


def check_class_ids(labels: np.ndarray, classes: int, name: str = "labels") -> None:
    """Refuse a drawn label (of the argument ``name``) that is no class id: below 0 (-5 was
    written "-5") or, where the ``classes`` names are known (> 0), not below their count (5
    was written "5" among 2).

    Raises:
        ValueError: ``"labels: expected class ids >= 0 (-1: padding, not drawn), got -5"``.
    """
    if (labels < 0).any():
        raise ValueError(
            f"{name}: expected class ids >= 0 (-1: padding, not drawn), got {labels.min()}"
        )
    if classes and (labels >= classes).any():
        raise ValueError(
            f"{name}: expected class ids below the {classes} class_names, got {labels.max()}"
        )
