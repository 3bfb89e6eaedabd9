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
from typing import Any

import numpy as np
import torch

from mistnet.data.store import label_name
from mistnet.extras import require_matplotlib
from mistnet.io import atomic_write
from mistnet.ops._checks import check_flag
from mistnet.signals import deferred_signals
from mistnet.validate import require_finite

#: Ground-truth box colour (RGB, 0-255).
GT_COLOR: tuple[int, int, int] = (0, 200, 0)
#: Predicted box colour (RGB, 0-255).
PRED_COLOR: tuple[int, int, int] = (255, 40, 40)


def as_array(x: Any) -> np.ndarray:
    """A tensor (detached, on the CPU) or anything array-like as a numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_rgb(image: Any, signed: bool = False) -> np.ndarray:
    """Convert an image to a displayable ``(H, W, 3)`` uint8 array.

    Args:
        image: ``(C, H, W)`` float tensor/array with C in {1, 3}, ``(H, W)`` float, or
            ``(H, W, 3)`` / ``(H, W)`` uint8.
        signed: float values live in [-1, 1] and are mapped by ``(x + 1) / 2``; True or False.

    Returns:
        ``(H, W, 3)`` uint8; float inputs are clipped to [0, 1] and rounded.

    Raises:
        TypeError: ``signed`` is no bool (``"no"`` was taken as true).
        ValueError: a shape or dtype other than these, or a float image holding NaN or
            infinity (NaN was drawn black).

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
            raise ValueError(f"image: expected uint8 (H, W, 3) or (H, W), got {a.shape}")
        return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a)
    a = a.astype(np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"image: expected float (C, H, W) with C in {{1, 3}}, got {a.shape}")
    require_finite(a, "image")
    if signed:
        a = (a + 1.0) / 2.0
    a = np.clip(a, 0.0, 1.0)
    a = np.transpose(a, (1, 2, 0))  # (H, W, C)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.floor(a * 255.0 + 0.5).astype(np.uint8)


def boxes4(boxes: Any) -> np.ndarray:
    """``(M, 3|4)`` -> ``(M, 4)`` float64 centre/size; ``None`` or empty -> ``(0, 4)``."""
    if boxes is None:
        return np.zeros((0, 4))
    b = as_array(boxes).astype(np.float64)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim != 2 or b.shape[1] not in (3, 4):
        raise ValueError(f"boxes: expected (M, 3) or (M, 4), got {b.shape}")
    if b.shape[1] == 3:
        b = np.concatenate([b, b[:, 2:3]], axis=1)
    return b


def per_image(x: Any, n: int, name: str) -> list:
    """Split a batched array or a list into ``n`` per-image entries (``None`` -> ``[None] * n``)."""
    if x is None:
        return [None] * n
    if isinstance(x, (list, tuple)):
        if len(x) != n:
            raise ValueError(f"{name}: expected {n} entries, got {len(x)}")
        return list(x)
    a = as_array(x)
    if a.shape[0] != n:
        raise ValueError(f"{name}: expected leading dim {n}, got {a.shape}")
    return [a[i] for i in range(n)]


def labels_of(x: Any, m: int) -> np.ndarray:
    """``m`` int64 labels (``None``: ``-2`` each, boxes drawn without a label)."""
    if x is None:
        return np.zeros(m, dtype=np.int64) - 2  # -2: "no label", boxes still drawn
    a = as_array(x).reshape(-1).astype(np.int64)
    if a.shape[0] != m:
        raise ValueError(f"labels: expected {m} entries, got {a.shape[0]}")
    return a


def check_dpi(dpi: object) -> None:
    """Raise ValueError unless ``dpi`` is a finite number > 0 (not a bool): NaN came out as
    "cannot convert float NaN to integer" from deep inside matplotlib, naming nothing."""
    if (
        isinstance(dpi, bool)
        or not isinstance(dpi, numbers.Real)
        or not math.isfinite(dpi)
        or dpi <= 0
    ):
        raise ValueError(f"dpi: expected a finite number > 0, got {dpi!r}")


def new_figure(width_in: float, height_in: float, dpi: int):
    """A matplotlib figure on the Agg canvas (no pyplot, no window); ``dpi`` is checked
    (:func:`check_dpi`)."""
    check_dpi(dpi)
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, out_path, dpi: int) -> None:
    """Write ``fig`` as a PNG atomically (:func:`drawn`)."""
    atomic_write(out_path, lambda tmp: drawn(fig.savefig, tmp, format="png", dpi=dpi))


def drawn(draw, *args, **kwargs) -> Any:
    """``draw(*args, **kwargs)`` (matplotlib drawing) with Ctrl-C, SIGTERM and SIGHUP acted on
    once it returns: raised inside matplotlib's C++ code, their exception came out as
    ``ValueError: Invalid bounding box``, an internal error instead of "stopped"."""
    with deferred_signals():
        return draw(*args, **kwargs)


def rgb01(color: tuple[int, int, int]) -> tuple[float, float, float]:
    """A 0-255 RGB colour as matplotlib's 0-1 floats."""
    return (color[0] / 255, color[1] / 255, color[2] / 255)


def draw_boxes(ax, boxes, labels, scores, color, text: bool = True, names=()) -> None:
    """Outline ``(M, 4)`` boxes on ``ax``, each with "label score" unless its label is -1."""
    from matplotlib.patches import Rectangle

    c = rgb01(color)
    for i, (cx, cy, w, h) in enumerate(boxes):
        if labels[i] == -1:
            continue
        ax.add_patch(
            Rectangle((cx - w / 2, cy - h / 2), w, h, fill=False, edgecolor=c, linewidth=1.2)
        )
        parts = []
        if labels[i] >= 0:
            parts.append(label_name(int(labels[i]), names))
        if scores is not None:
            parts.append(f"{float(scores[i]):.2f}")
        if text and parts:
            ax.text(
                cx - w / 2,
                cy - h / 2,
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


def montage(patches: np.ndarray, signed: bool, pad: int = 1) -> np.ndarray:
    """``(K, C, P, P)`` patches -> one ``(rows*(P+pad)-pad, cols*(P+pad)-pad, 3)`` uint8 grid."""
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
        grid[y : y + P_h, x : x + P_w] = to_rgb(patches[k], signed)
    return grid
