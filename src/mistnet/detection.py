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
  ``k`` is then the number of detections per window.

Conventions as everywhere: pixel centres at integer coordinates, keypoints ``(x, y, side)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mistnet.models.mist import PatchModel


@dataclass
class Detections:
    """What one image gave: ``N`` detections, highest score first.

    Attributes:
        keypoints: ``(N, 3)`` ``(x, y, side)`` in the image's pixels.
        scores: ``(N,)`` heatmap score of each.
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


def merge_detections(keypoints: Tensor, scores: Tensor, iou: float = 0.5) -> Tensor:
    """Greedy NMS on ``(N, 3)`` square detections: indices kept, highest score first.

    A detection is dropped when its IoU with a higher-scoring kept one is above ``iou``. Only
    neighbours closer than the largest side are compared (a spatial hash), so the cost grows with
    N, not N².

    Example:
        >>> kp = torch.tensor([[10.0, 10, 20], [12, 10, 20], [50, 10, 20]])
        >>> merge_detections(kp, torch.tensor([0.5, 0.9, 0.4])).tolist()
        [1, 2]
    """
    N = keypoints.shape[0]
    if N == 0:
        return torch.zeros(0, dtype=torch.long)
    cell = max(float(keypoints[:, 2].max()), 1e-6)
    kp = keypoints.tolist()
    grid: dict[tuple[int, int], list[int]] = {}
    keep = []
    for i in scores.argsort(descending=True, stable=True).tolist():
        x, y, s = kp[i]
        cx, cy = int(x // cell), int(y // cell)
        near = (
            j for dx in (-1, 0, 1) for dy in (-1, 0, 1) for j in grid.get((cx + dx, cy + dy), ())
        )
        if any(_square_iou(kp[i], kp[j]) > iou for j in near):
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


@torch.inference_mode()
def detect_image(
    model: PatchModel,
    image: Tensor,
    k: int,
    scale: float = 1.0,
    tile: tuple[int, int] | None = None,
    batch: int = 16,
) -> Detections:
    """Detect in one ``(C, H, W)`` image (on the model's device), optionally rescaled or tiled.

    Args:
        model: a MIST model (or a baseline) in eval mode.
        image: the image, as the model takes it.
        k: detections per image, or per window with ``tile``.
        scale: resize factor applied before detection (1: none).
        tile: ``(h, w)`` of the windows, or None for the whole image.
        batch: windows per forward pass.
    """
    _, H, W = image.shape
    x = image
    if scale != 1.0:
        x = resize(image, max(1, round(H * scale)), max(1, round(W * scale)))
    _, h, w = x.shape
    sx, sy = w / W, h / H
    if tile is None:
        out = model(x[None], k)
        kp, scores = out.keypoints[0], out.scores[0]
        logits = out.task[0] if model.task == "classify" else None
        recon = None if out.reconstruction is None else resize(out.reconstruction[0], H, W)
        windows = 1
    else:
        kp, scores, logits, windows = _tiled(model, x, k, tile, batch)
        recon = None
    if scale != 1.0:  # back to the file's pixels (pixel centres at integers)
        x_, y_, side = kp.unbind(-1)
        kp = torch.stack([(x_ + 0.5) / sx - 0.5, (y_ + 0.5) / sy - 0.5, side * 2 / (sx + sy)], 1)
    return Detections(kp, scores, logits, recon, windows)


def _tiled(
    model: PatchModel, x: Tensor, k: int, tile: tuple[int, int], batch: int
) -> tuple[Tensor, Tensor, Tensor | None, int]:
    _, H, W = x.shape
    th, tw = min(tile[0], H), min(tile[1], W)
    overlap = math.ceil(max(model.sides))
    rows, cols = window_starts(H, th, overlap), window_starts(W, tw, overlap)
    row_core, col_core = _cores(rows, th), _cores(cols, tw)
    cells = [(i, j) for i in range(len(rows)) for j in range(len(cols))]
    kps, scores, logits = [], [], []
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
        if model.task == "classify":
            logits.append(out.task[own])
    kp, score = torch.cat(kps), torch.cat(scores)
    keep = merge_detections(kp.cpu(), score.cpu()).to(x.device)
    logit = torch.cat(logits)[keep] if logits else None
    return kp[keep], score[keep], logit, len(cells)
