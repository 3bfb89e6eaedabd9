"""Detection on one image of any size: rescaled for another object size, or in tiles.

``mist detect`` runs a model on a whole image by default (the heatmap network is fully
convolutional). Two options change that:

- ``scale``: the image is resized by ``scale`` first (``--side PX``: objects of PX pixels become
  the model's box side), and the detections are mapped back to the file's pixels.
- ``tile``: the image is cut into ``tile``-sized windows (the training image size) that overlap
  by at least the largest box side, run in batches of ``batch`` windows, so memory is bounded by
  a batch of windows instead of growing with the image. Each window keeps the detections whose
  centres fall in its *core* (the part of the image nearer to it than to its neighbours, so the
  cores partition the image and a detection is never cut by a window edge), and greedy
  non-maximum suppression across windows (IoU > 0.5) merges what neighbours found twice.
  ``k`` is then the number of detections per window, and at most ``max_detections`` of the
  merged ones are kept (by default K for the whole image, scaled by its area over the window's:
  K per training-sized image, as without tiles, instead of K per window). Each window is
  scored on its own: the score is relative to the window's strongest response, so a window of
  background can still score its best peak high; the cap bounds how many such boxes remain.

Detections come highest score first; the score, in [0, 1], is :meth:`MIST.detection_scores
<mistnet.models.MIST.detection_scores>`, times the class probability for a classifier
(:meth:`~mistnet.models.PatchModel.finish`); a MIST's detection that is no maximum of its
non-maximum suppression (a slot E_K filled because the image has fewer than K maxima) scores 0
(``MIST._maxima``). :func:`default_min_score` is where ``mist detect`` and ``model.predict``
cut by default.

Conventions as everywhere: pixel centres at integer coordinates, keypoints ``(x, y, side)``.

The public functions (``__all__``) check their arguments; the others serve them and ``mist
detect`` on arguments already checked, and take them as they come.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mistnet.data.imagefiles import image_tensor
from mistnet.imagefile import DEFAULT_MAX_PIXELS, open_image, scaled_size, upright
from mistnet.models.heatmap import HeatmapBody
from mistnet.models.mist import GridMIST, PatchModel
from mistnet.ops._checks import check_int, check_number, require_dense
from mistnet.torchstate import without_autocast
from mistnet.validate import image_float

__all__ = [
    "CLASSIFIER_MIN_SCORE",
    "DEFAULT_MIN_SCORE",
    "default_min_score",
    "detect_image",
    "min_image_side",
    "read_image",
]

#: An auto-encoder's detections scored below this are dropped by default: half the mass of the
#: detection's softmax window inside its NMS window, i.e. the peak holds more of its surroundings
#: than everything else around it together (a flat patch scores 25 / 225 = 0.11 with a 5x5 NMS
#: window in a 15x15 softmax window, a clear instance about 1). Where the NMS window covers more
#: than half the softmax window, the cut is above a flat patch's score instead
#: (:func:`default_min_score`).
DEFAULT_MIN_SCORE = 0.5

#: A classifier's detections scored below this are dropped by default. Its score is the window
#: mass times the largest class probability, so a box must be both a clear peak and a clear
#: class; 0.75 was chosen on the validation scenes of the shipped MNIST-hard classifier, where it
#: keeps about 90 % of the true detections and drops about 90 % of the false ones (RESULTS.md).
CLASSIFIER_MIN_SCORE = 0.75


def _require_model(model: object) -> None:
    if not isinstance(model, PatchModel):
        raise TypeError(f"model must be a MIST model, got {type(model).__name__}")


def default_min_score(model: PatchModel) -> float:
    """Where ``mist detect`` and ``model.predict`` cut ``model``'s detections by default.

    A classifier's: :data:`CLASSIFIER_MIN_SCORE`. An auto-encoder's: :data:`DEFAULT_MIN_SCORE`,
    or a tenth of the way from a flat patch's score ``f = (nms_window / softmax_window)**2``
    to 1 where that is higher, at most 0.9: the presets' 11x11 NMS window in a 15x15 softmax
    window gives a flat patch (a blank image) 0.54, above 0.5, so the shipped auto-encoder
    found 9 objects in a blank image; its cut is 0.58, which kept 99 % of its true detections
    on validation scenes (RESULTS.md).
    """
    _require_model(model)
    if model.task == "classify":
        return CLASSIFIER_MIN_SCORE
    nms, window = getattr(model, "nms_window", None), getattr(model, "softmax_window", None)
    if nms is None or window is None:  # the baselines: no window mass
        return DEFAULT_MIN_SCORE
    flat = min(nms / window, 1.0) ** 2
    # at most 0.9: an NMS window of about the softmax window's size scores every pixel near 1
    # (equal sizes: a cut of 1.0 dropped every detection, scored 0.999999 in float32)
    return min(max(DEFAULT_MIN_SCORE, round(flat + (1 - flat) / 10, 2)), 0.9)


@dataclass
class Detections:
    """What one image gave: ``N`` detections, highest score first.

    Attributes:
        keypoints: ``(N, 3)`` ``(x, y, side)`` in the image's pixels.
        scores: ``(N,)`` heatmap score of each (0: no maximum of the suppression).
        logits: ``(N, classes)`` class logits (classification), or None.
        reconstruction: ``(C, H, W)`` the auto-encoder's reconstruction of the whole image
            (not assembled from tiles: None there), or None.
        windows: number of windows run (1 without tiles).
    """

    keypoints: Tensor
    scores: Tensor
    logits: Tensor | None
    reconstruction: Tensor | None
    windows: int = 1


def read_image(
    path: str | os.PathLike, channels: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Tensor:
    """Read an image file as a ``(channels, H, W)`` float32 tensor in [0, 1].

    Args:
        path: any file Pillow can read (turned upright by its EXIF orientation).
        channels: 1 (gray) or 3 (RGB).
        max_pixels: refuse an image whose header declares more pixels.

    Raises:
        TypeError: ``channels`` no integer (``"1"`` and True were taken as 3 and 1).
        ValueError: ``channels`` neither 1 nor 3 (2 and 0 read RGB), before the file is read.
        DataError: the file is missing, not a regular file, not a readable image, too large,
            or (a float image) holds NaN or infinite values.
    """
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral):
        raise TypeError(f"channels must be the integer 1 (gray) or 3 (RGB), got {channels!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels!r}")
    channels = int(channels)
    hint = "crop or downscale it, or raise --max-pixels (--tile keeps the memory bounded)"
    im = upright(open_image(path, max_pixels, hint), path)
    return image_tensor(im, channels, path)


def clipped_corners(keypoints: Tensor, width: int, height: int) -> Tensor:
    """``(N, 3)`` keypoints to ``(N, 4)`` corners ``(x0, y0, x1, y1)`` clipped to the image.

    Corners are in the convention of COCO and torchvision: pixel ``(0, 0)`` spans ``[0, 1]``,
    so the image is ``[0, width] x [0, height]`` (keypoints centre pixels on integers: a shift
    of half a pixel).

    Example:
        >>> clipped_corners(torch.tensor([[2.0, 10.0, 8.0]]), 30, 12).tolist()
        [[0.0, 6.5, 6.5, 12.0]]
    """
    x, y, side = keypoints.unbind(-1)
    half = side / 2
    return torch.stack(
        [
            (x - half + 0.5).clamp(0, width),
            (y - half + 0.5).clamp(0, height),
            (x + half + 0.5).clamp(0, width),
            (y + half + 0.5).clamp(0, height),
        ],
        -1,
    )


def min_image_side(model: PatchModel) -> int:
    """Smallest image side the model's heatmap network accepts: at each scale of its pyramid,
    more pixels than the widest reflection padding (:func:`~mistnet.models.heatmap.
    smallest_side`; with dilated blocks the padding is inside them, not at the input)."""
    _require_model(model)
    bodies = [m for m in model.modules() if isinstance(m, HeatmapBody)]
    if not bodies:
        return 1
    side = max(b.smallest_side for b in bodies)
    f = min(getattr(model.heatmap_net, "factors", (1.0,)))
    n = 1
    while max(1, round(f * n)) < side:
        n += 1
    return n


def resize(image: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize of ``(C, H, W)`` to ``(C, height, width)``, antialiased when shrinking."""
    _, H, W = image.shape
    if (H, W) == (height, width):
        return image
    shrink = height < H or width < W
    out = F.interpolate(
        image[None], size=(height, width), mode="bilinear", align_corners=False, antialias=shrink
    )
    return out[0]


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows of ``window`` pixels covering ``length`` with ``overlap``.

    The last window ends at the image's end; one window when the image is not longer.

    Example:
        >>> window_starts(200, 80, 20)
        [0, 60, 120]
        >>> window_starts(210, 80, 20)
        [0, 60, 120, 130]
    """
    if length <= window:
        return [0]
    stride = max(1, window - overlap)
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


def _cores(starts: list[int], window: int) -> list[tuple[float, float]]:
    """The ``[lo, hi)`` core of each window: from the middle of one overlap to the next."""
    bounds = [(a + window + b) / 2 for a, b in zip(starts, starts[1:], strict=False)]
    return list(zip([-math.inf, *bounds], [*bounds, math.inf], strict=True))


def merge_detections(
    keypoints: Tensor, scores: Tensor, iou: float = 0.5, groups: Tensor | None = None
) -> Tensor:
    """Greedy NMS on ``(N, 3)`` square detections: indices kept, highest score first.

    A detection is dropped when its IoU with a higher-scoring kept one is above ``iou``; with
    ``groups`` (``(N,)`` ids, e.g. the window each was found in), only with one of another
    group: a model's own detections of one window stand as it chose them. Only neighbours
    closer than the largest side are compared (a spatial hash), so the cost grows with N,
    not N².

    Example:
        >>> kp = torch.tensor([[10.0, 10, 20], [12, 10, 20], [50, 10, 20]])
        >>> merge_detections(kp, torch.tensor([0.5, 0.9, 0.4])).tolist()
        [1, 2]
        >>> merge_detections(kp, torch.tensor([0.5, 0.9, 0.4]), groups=torch.zeros(3)).tolist()
        [1, 0, 2]
    """
    N = keypoints.shape[0]
    if N == 0:
        return torch.zeros(0, dtype=torch.long)
    cell = max(float(keypoints[:, 2].max()), 1e-6)
    kp = keypoints.tolist()
    group = list(range(N)) if groups is None else groups.tolist()  # None: each its own
    grid: dict[tuple[int, int], list[int]] = {}
    keep = []
    for i in scores.argsort(descending=True, stable=True).tolist():
        x, y, s = kp[i]
        cx, cy = int(x // cell), int(y // cell)
        near = (
            j for dx in (-1, 0, 1) for dy in (-1, 0, 1) for j in grid.get((cx + dx, cy + dy), ())
        )
        if any(group[j] != group[i] and _square_iou(kp[i], kp[j]) > iou for j in near):
            continue
        keep.append(i)
        grid.setdefault((cx, cy), []).append(i)
    return torch.tensor(keep, dtype=torch.long)


def _square_iou(a: list[float], b: list[float]) -> float:
    w = min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2)
    h = min(a[1] + a[2] / 2, b[1] + b[2] / 2) - max(a[1] - a[2] / 2, b[1] - b[2] / 2)
    inter = max(w, 0.0) * max(h, 0.0)
    union = a[2] ** 2 + b[2] ** 2 - inter
    return inter / union if union > 0 else 0.0


#: Per model, the blocks of :func:`evaluating` running now and the mode it had before them.
_SCORING: weakref.WeakKeyDictionary[torch.nn.Module, list] = weakref.WeakKeyDictionary()
_SCORING_LOCK = threading.Lock()


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode for the block, then in the mode it was: a model in training mode
    would use each image's batch statistics and overwrite its own BatchNorm running ones.

    Safe across threads: blocks on one model overlap in eval mode, and the last to end gives
    back the mode the model had before the first began (each saving and restoring its own,
    one thread's restore put the model in training mode under another's forward pass)."""
    with _SCORING_LOCK:
        entry = _SCORING.get(model)
        if entry is None:
            entry = _SCORING[model] = [0, model.training]
            model.eval()
        entry[0] += 1
    try:
        yield
    finally:
        with _SCORING_LOCK:
            entry[0] -= 1
            if entry[0] == 0:
                del _SCORING[model]
                model.train(entry[1])


@torch.inference_mode()
@without_autocast()
def detect_image(
    model: PatchModel,
    image: Tensor,
    k: int,
    scale: float = 1.0,
    tile: tuple[int, int] | None = None,
    batch: int = 16,
    max_detections: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Detections:
    """Detect in one ``(C, H, W)`` image (on the model's device), optionally rescaled or tiled.

    Args:
        model: a MIST model (or a baseline); run in eval mode (:func:`evaluating`), then left
            in the mode it had.
        image: the image, as the model takes it.
        k: detections per image, or per window with ``tile``.
        scale: resize factor applied before detection (1: none).
        tile: ``(h, w)`` of the windows, or None for the whole image.
        batch: windows per forward pass.
        max_detections: how many detections to keep at most (None: ``k``, or with ``tile``
            :func:`tiled_cap`).
        max_pixels: the most pixels the rescaled image may have.

    Raises:
        ValueError: a ``k``, ``batch`` or ``max_detections`` that is no integer >= 1, a
            ``scale`` that is no finite number > 0 or makes the image smaller than the model
            takes or larger than ``max_pixels``, a ``tile``
            that is no pair of them or smaller than the model takes, an ``image`` that is
            empty or no finite float ``(C, H, W)`` tensor of values at most
            :data:`MAX_PIXEL_VALUE` in size, a ``max_pixels`` that is no integer >= 1, or a
            grid baseline loaded by :func:`mistnet.load` run (scaled, or in windows) on another
            size than it was trained on (:func:`check_trained_size`, as ``predict`` refuses).
        TypeError: a ``model`` that is no torch module.
    """
    k, scale, tile, batch, max_detections = _check_arguments(
        model, image, k, scale, tile, batch, max_detections, max_pixels
    )
    with evaluating(model):  # in training mode, BatchNorm would learn from this image
        return _detect(model, image, k, scale, tile, batch, max_detections)


def _detect(
    model: PatchModel,
    image: Tensor,
    k: int,
    scale: float,
    tile: tuple[int, int] | None,
    batch: int,
    max_detections: int | None,
) -> Detections:
    """:func:`detect_image` of checked arguments, ``model`` in eval mode."""
    param = next(model.parameters(), None)
    x = image if param is None else image.to(param.device, param.dtype)  # as predict does
    _, H, W = image.shape
    if scale != 1.0:
        x = resize(x, max(1, round(H * scale)), max(1, round(W * scale)))
    _, h, w = x.shape
    sx, sy = w / W, h / H
    if tile is None:
        out = model(x[None], k)
        order = out.scores[0].argsort(descending=True, stable=True)[:max_detections]
        kp, scores = out.keypoints[0][order], out.scores[0][order]
        logits = out.task[0][order] if model.task == "classify" else None
        recon = None if out.reconstruction is None else resize(out.reconstruction[0], H, W)
        windows = 1
    else:
        kp, scores, logits, windows = _tiled(model, x, k, tile, batch)
        keep = max_detections or tiled_cap(k, h * w, tile)
        kp, scores = kp[:keep], scores[:keep]
        logits = None if logits is None else logits[:keep]
        recon = None
    if scale != 1.0:  # back to the file's pixels (pixel centres at integers)
        x_, y_, side = kp.unbind(-1)
        kp = torch.stack([(x_ + 0.5) / sx - 0.5, (y_ + 0.5) / sy - 0.5, side * 2 / (sx + sy)], 1)
    return Detections(kp, scores, logits, recon, windows)


#: The largest absolute pixel value :func:`detect_image` takes: far above any image a model
#: was trained on (a signed Gabor texture reaches about 1.3), far below 0..255 pixels.
MAX_PIXEL_VALUE = 4.0


def _check_image(model, image) -> None:
    """Refuse a ``model`` that is no module and an ``image`` that is no finite, dense float
    ``(C, H, W)`` tensor of values up to :data:`MAX_PIXEL_VALUE` in size."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a MIST model (a torch module), got {type(model).__name__}")
    weight = next(model.parameters(), None)
    if weight is not None and weight.is_meta:  # else "images: a tensor on the meta device"
        raise ValueError("model is on the meta device: it holds no weights to detect with")
    if not isinstance(image, Tensor) or image.dim() != 3:
        raise ValueError(
            f"image must be a (C, H, W) tensor, got {getattr(image, 'shape', image)!r}"
        )
    require_dense(image, "image")
    if not image_float(image):  # float8: torch has no isfinite of it
        raise ValueError(
            f"image must be a float tensor (16 bits or more) in [0, 1], got {image.dtype}"
        )
    if 0 in image.shape:  # else "scale 1 makes the 0x0 image 1x1, too small"
        raise ValueError(f"image is empty: {tuple(image.shape)} holds no pixels")
    if not bool(torch.isfinite(image).all()):  # else every pixel NaN and no error at all
        raise ValueError("image holds NaN or infinite values")
    # images as the model takes them: [0, 1], or about [-1, 1] for a signed model (Gabor
    # textures reach past 1); 0..255 pixels would saturate every score
    if image.numel() and float(image.abs().max()) > MAX_PIXEL_VALUE:
        raise ValueError(
            f"image values reach {float(image.abs().max()):g}; a model takes images in [0, 1] "
            "(a signed model about [-1, 1]): scale 0..255 pixels by 1/255"
        )


def _check_arguments(model, image, k, scale, tile, batch, max_detections, max_pixels) -> tuple:
    """:func:`detect_image`'s arguments (``mist detect`` and ``predict`` check their own); the
    counts as ints (numpy's and 0-d tensors' taken: :func:`~mistnet.ops._checks.check_int`), the
    scale as a float."""
    _check_image(model, image)
    max_pixels = check_int(max_pixels, "max_pixels")
    k, batch = check_int(k, "k"), check_int(batch, "batch")
    if max_detections is not None:
        max_detections = check_int(max_detections, "max_detections")
    scale = check_number(scale, "scale", positive=True)  # 10**400: float()'s OverflowError
    if tile is not None:
        if not isinstance(tile, tuple | list) or len(tile) != 2:
            raise ValueError(f"tile must be (h, w), got {tile!r}")
        tile = tuple(check_int(side, "each side of tile") for side in tile)
    _, H, W = image.shape
    h, w = scaled_size(H, W, scale, max_pixels, f"the image scaled by {scale:g}", "lower the scale")
    smallest = min_image_side(model)
    seen = f"image: {W}x{H}" if scale == 1 else f"scale {scale:g} makes the {W}x{H} image {w}x{h}"
    if min(h, w) < smallest:
        raise ValueError(f"{seen}, too small for the model (at least {smallest}x{smallest})")
    if tile is not None:  # the windows the model runs on (the image, where it is smaller)
        th, tw = min(tile[0], h), min(tile[1], w)
        if min(th, tw) < smallest:  # else the network's own "reflection padding" error
            raise ValueError(
                f"tile {tile} is smaller than the {smallest}x{smallest} windows the model needs"
            )
        seen = f"tile {tile}: {tw}x{th} windows of the {w}x{h} image"
        h, w = th, tw
    check_trained_size(model, seen, h, w)
    return k, scale, tile, batch, max_detections


def check_trained_size(model: PatchModel, seen: str, H: int, W: int) -> None:
    """Refuse to run the grid baseline on ``H`` x ``W`` images, ``seen`` (what the message
    says of them), when its run recorded another training size: its cells are a tiling of the
    image, so on another size they are other cells (as ``mist eval`` refuses it)."""
    record = getattr(getattr(model, "config", None), "record", None)
    trained = tuple(getattr(record, "image_size", ()) or ())
    if isinstance(model, GridMIST) and trained and (H, W) != trained:
        raise ValueError(
            f"{seen}; this grid baseline takes the {trained[1]}x{trained[0]} images it was "
            "trained on"
        )


def tiled_cap(k: int, pixels: int, tile: tuple[int, int]) -> int:
    """Default cap on merged tiled detections: ``k`` per ``tile``-sized area, at least ``k``.

    Example:
        >>> tiled_cap(9, 1000 * 1000, (80, 80))
        1406
    """
    return max(k, round(k * pixels / (tile[0] * tile[1])))


def _tiled(
    model: PatchModel, x: Tensor, k: int, tile: tuple[int, int], batch: int
) -> tuple[Tensor, Tensor, Tensor | None, int]:
    _, H, W = x.shape
    th, tw = min(tile[0], H), min(tile[1], W)
    # windows overlap by the box side, at most half a window: a box as large as the window
    # (a base_side above the training images) made a stride of 1, windows by the thousand
    side = math.ceil(max(model.sides))
    rows, cols = window_starts(H, th, min(side, th // 2)), window_starts(W, tw, min(side, tw // 2))
    row_core, col_core = _cores(rows, th), _cores(cols, tw)
    cells = [(i, j) for i in range(len(rows)) for j in range(len(cols))]
    kps, scores, logits, found_in = [], [], [], []
    for lo in range(0, len(cells), batch):
        part = cells[lo : lo + batch]
        windows = torch.stack(
            [x[:, rows[i] : rows[i] + th, cols[j] : cols[j] + tw] for i, j in part]
        )
        out = model(windows, min(k, th * tw))  # keypoints (B, K, 3)
        origin = torch.tensor([[cols[j], rows[i], 0.0] for i, j in part], device=x.device)
        kp = out.keypoints + origin[:, None, :].to(out.keypoints.dtype)
        ylo, yhi = (
            torch.tensor([row_core[i][n] for i, _ in part], device=x.device) for n in (0, 1)
        )
        xlo, xhi = (
            torch.tensor([col_core[j][n] for _, j in part], device=x.device) for n in (0, 1)
        )
        own = (
            (kp[..., 0] >= xlo[:, None])
            & (kp[..., 0] < xhi[:, None])
            & (kp[..., 1] >= ylo[:, None])
            & (kp[..., 1] < yhi[:, None])
        )  # (B, K)
        kps.append(kp[own])
        scores.append(out.scores[own])
        window = torch.arange(lo, lo + len(part), device=x.device)[:, None].expand_as(own)
        found_in.append(window[own])
        if model.task == "classify":
            logits.append(out.task[own])
    kp, score = torch.cat(kps), torch.cat(scores)
    # duplicates are of neighbouring windows; a window's own boxes are the model's choice
    keep = merge_detections(kp.cpu(), score.cpu(), groups=torch.cat(found_in).cpu())
    keep = keep.to(x.device)
    logit = torch.cat(logits)[keep] if logits else None
    return kp[keep], score[keep], logit, len(cells)
