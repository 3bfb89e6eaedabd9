"""Figures: scene grids, the paper's MIST panels (Fig. 3/5), training curves, annotated images.

Every function writes one PNG atomically (a temporary file in the target directory, then
``os.replace``) and returns nothing. matplotlib (the ``figures`` extra; without it a figure
raises ``MistError`` naming ``pip install 'mistnet[figures]'``) is imported lazily and used only
through its object-oriented API (``matplotlib.figure.Figure`` with the Agg canvas): no pyplot
state, no global backend switch, never a window. :func:`annotate_image` uses PIL only and keeps
the native size.

Conventions (SPEC §0): images are ``(C, H, W)`` floats in [0, 1] (C = 1 gray or 3 RGB), or signed
floats in [-1, 1] when ``signed=True`` (Gabor; shown through ``(x + 1) / 2``); ``(H, W, 3)``
uint8 arrays are also accepted. Boxes are centre/size ``(cx, cy, w, h)`` or keypoints
``(x, y, side)`` in pixels; pixel centres sit at integer coordinates, so a box covers
``[cx - w/2, cx + w/2]``. Labels ``< 0`` mark padding and are not drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from mistnet.data.store import label_name
from mistnet.extras import require_matplotlib
from mistnet.io import atomic_write

__all__ = [
    "GT_COLOR",
    "PRED_COLOR",
    "annotate_image",
    "draw_scenes_grid",
    "mist_figure",
    "output_figure",
    "log_curves",
    "plot_curves",
    "plot_runs",
    "to_rgb",
]

#: Ground-truth box colour (RGB, 0-255).
GT_COLOR: tuple[int, int, int] = (0, 200, 0)
#: Predicted box colour (RGB, 0-255).
PRED_COLOR: tuple[int, int, int] = (255, 40, 40)


# --------------------------------------------------------------------------------------------
# Array helpers


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_rgb(image: Any, signed: bool = False) -> np.ndarray:
    """Convert an image to a displayable ``(H, W, 3)`` uint8 array.

    Args:
        image: ``(C, H, W)`` float tensor/array with C in {1, 3}, ``(H, W)`` float, or
            ``(H, W, 3)`` / ``(H, W)`` uint8.
        signed: float values live in [-1, 1] and are mapped by ``(x + 1) / 2``.

    Returns:
        ``(H, W, 3)`` uint8; float inputs are clipped to [0, 1] and rounded.

    Example:
        >>> to_rgb(np.array([[[-1.0, 0.0, 1.0]]]), signed=True)[0, :, 0].tolist()
        [0, 128, 255]
    """
    a = _np(image)
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
    if signed:
        a = (a + 1.0) / 2.0
    a = np.clip(np.nan_to_num(a), 0.0, 1.0)
    a = np.transpose(a, (1, 2, 0))  # (H, W, C)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.floor(a * 255.0 + 0.5).astype(np.uint8)


def _boxes4(boxes: Any) -> np.ndarray:
    """``(M, 3|4)`` -> ``(M, 4)`` float64 centre/size; ``None`` or empty -> ``(0, 4)``."""
    if boxes is None:
        return np.zeros((0, 4))
    b = _np(boxes).astype(np.float64)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim != 2 or b.shape[1] not in (3, 4):
        raise ValueError(f"boxes: expected (M, 3) or (M, 4), got {b.shape}")
    if b.shape[1] == 3:
        b = np.concatenate([b, b[:, 2:3]], axis=1)
    return b


def _per_image(x: Any, n: int, name: str) -> list:
    """Split a batched array or a list into ``n`` per-image entries (``None`` -> ``[None] * n``)."""
    if x is None:
        return [None] * n
    if isinstance(x, (list, tuple)):
        if len(x) != n:
            raise ValueError(f"{name}: expected {n} entries, got {len(x)}")
        return list(x)
    a = _np(x)
    if a.shape[0] != n:
        raise ValueError(f"{name}: expected leading dim {n}, got {a.shape}")
    return [a[i] for i in range(n)]


def _labels(x: Any, m: int) -> np.ndarray:
    if x is None:
        return np.zeros(m, dtype=np.int64) - 2  # -2: "no label", boxes still drawn
    a = _np(x).reshape(-1).astype(np.int64)
    if a.shape[0] != m:
        raise ValueError(f"labels: expected {m} entries, got {a.shape[0]}")
    return a


def _new_figure(width_in: float, height_in: float, dpi: int):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, out_path, dpi: int) -> None:
    atomic_write(out_path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def _rgb01(color: tuple[int, int, int]) -> tuple[float, float, float]:
    return (color[0] / 255, color[1] / 255, color[2] / 255)


def _draw_boxes_mpl(ax, boxes, labels, scores, color, text: bool = True, names=()) -> None:
    from matplotlib.patches import Rectangle

    c = _rgb01(color)
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


def _show(ax, rgb: np.ndarray, title: str | None = None) -> None:
    ax.imshow(rgb, interpolation="nearest")
    ax.set_xlim(-0.5, rgb.shape[1] - 0.5)
    ax.set_ylim(rgb.shape[0] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _montage(patches: np.ndarray, signed: bool, pad: int = 1) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Public figures


def draw_scenes_grid(
    images: Any,
    boxes: Any,
    labels: Any,
    out_path: str | os.PathLike,
    pred_boxes: Any = None,
    pred_labels: Any = None,
    scores: Any = None,
    ncols: int = 4,
    *,
    signed: bool = False,
    titles: Sequence[str] | None = None,
    dpi: int = 100,
) -> None:
    """Grid of scenes with ground-truth (green) and predicted (red, "label score") boxes.

    Args:
        images: ``(N, C, H, W)`` batch or a list of N images (see :func:`to_rgb`).
        boxes: ground truth, ``(N, M, 4)`` or a list of ``(M_i, 3|4)``; ``None`` for none.
        labels: ``(N, M)`` or list; ``-1`` = padding (box not drawn); ``None``: boxes without text.
        out_path: PNG path.
        pred_boxes: optional predictions ``(N, K, 3|4)`` or list.
        pred_labels: optional ``(N, K)`` or list (``-1`` = padding).
        scores: optional ``(N, K)`` or list, shown after the label.
        ncols: grid columns.
        signed: images are signed (Gabor).
        titles: optional per-image titles.
        dpi: output resolution.
    """
    imgs = _per_image(images, len(images), "images")
    n = len(imgs)
    if n == 0:
        raise ValueError("images: expected at least one image")
    if ncols < 1:
        raise ValueError(f"ncols: expected >= 1, got {ncols}")
    gtb = _per_image(boxes, n, "boxes")
    gtl = _per_image(labels, n, "labels")
    pb = _per_image(pred_boxes, n, "pred_boxes")
    pl = _per_image(pred_labels, n, "pred_labels")
    ps = _per_image(scores, n, "scores")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    rgbs = [to_rgb(im, signed) for im in imgs]
    H, W = rgbs[0].shape[:2]
    panel_w = max(2.0, W / 40)
    panel_h = panel_w * H / W
    fig = _new_figure(ncols * panel_w, nrows * (panel_h + 0.3), dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        _show(ax, rgbs[i], titles[i] if titles is not None else None)
        g = _boxes4(gtb[i])
        _draw_boxes_mpl(ax, g, _labels(gtl[i], len(g)), None, GT_COLOR, text=False)
        if pb[i] is not None:
            p = _boxes4(pb[i])
            s = None if ps[i] is None else _np(ps[i]).reshape(-1)
            _draw_boxes_mpl(ax, p, _labels(pl[i], len(p)), s, PRED_COLOR)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95, wspace=0.04, hspace=0.12)
    _save_figure(fig, out_path, dpi)


def mist_figure(
    images: Any,
    heatmaps: Any,
    det_boxes: Any,
    det_labels: Any,
    patches: Any,
    out_path: str | os.PathLike,
    *,
    recon_patches: Any = None,
    reconstructions: Any = None,
    gt_boxes: Any = None,
    signed: bool = False,
    class_names: Sequence[str] = (),
    dpi: int = 100,
) -> None:
    """The paper's Fig. 3 / Fig. 5 panels, one row per image.

    Columns: input (with ground-truth boxes if given) | heatmap (detected centres marked) |
    detections with labels | extracted patches | [decoded patches | reconstruction].
    A single image may be passed unbatched (``(C, H, W)``, ``(H, W)``, ``(K, 4)``, ...).

    Args:
        images: ``(B, C, H, W)`` inputs.
        heatmaps: ``(B, H', W')``, ``(B, 1, H', W')`` or ``(B, S, H', W')`` (max over scales is
            shown). H', W' may differ from H, W; markers are rescaled.
        det_boxes: ``(B, K, 3)`` keypoints or ``(B, K, 4)`` boxes.
        det_labels: ``(B, K)`` predicted classes, or ``None`` (auto-encoder).
        patches: ``(B, K, C, P, P)`` extracted patches.
        out_path: PNG path.
        recon_patches: optional ``(B, K, C, P, P)`` decoded patches.
        reconstructions: optional ``(B, C, H, W)`` reconstructed images.
        gt_boxes: optional ``(B, N, 4)`` ground-truth boxes (drawn on the input).
        signed: images and patches are signed (Gabor).
        class_names: names of the classes (index ``i`` names label ``i``); default numbers.
        dpi: output resolution.
    """
    ims = _np(images)
    single = ims.ndim == 3 or (ims.ndim == 2)
    if single:

        def batch(x):
            return None if x is None else _np(x)[None]

        ims = ims[None] if ims.ndim == 3 else ims[None, None]
        heatmaps, det_boxes, det_labels = batch(heatmaps), batch(det_boxes), batch(det_labels)
        patches, recon_patches = batch(patches), batch(recon_patches)
        reconstructions, gt_boxes = batch(reconstructions), batch(gt_boxes)
    if ims.ndim != 4:
        raise ValueError(f"images: expected (B, C, H, W), got {ims.shape}")
    B, _, H, W = ims.shape
    hms = _per_image(heatmaps, B, "heatmaps")
    dbs = _per_image(det_boxes, B, "det_boxes")
    dls = _per_image(det_labels, B, "det_labels")
    pts = _per_image(patches, B, "patches")
    rps = _per_image(recon_patches, B, "recon_patches")
    recs = _per_image(reconstructions, B, "reconstructions")
    gts = _per_image(gt_boxes, B, "gt_boxes")

    has_dec = recon_patches is not None
    has_rec = reconstructions is not None
    ncols = 4 + int(has_dec) + int(has_rec)
    panel = max(1.8, max(H, W) / 45)
    aspect = H / W
    fig = _new_figure(ncols * panel, B * (panel * max(aspect, 0.6) + 0.35), dpi)
    axes = fig.subplots(B, ncols, squeeze=False)
    for b in range(B):
        ax = iter(axes[b])
        rgb = to_rgb(ims[b], signed)
        first = b == 0
        a = next(ax)
        _show(a, rgb, "input" if first else None)
        if gts[b] is not None:
            g = _boxes4(gts[b])
            _draw_boxes_mpl(a, g, _labels(None, len(g)), None, GT_COLOR, text=False)

        hm = _np(hms[b]).astype(np.float64)
        if hm.ndim == 3:
            hm = hm.max(axis=0)
        if hm.ndim != 2:
            raise ValueError(f"heatmaps: expected (H, W) per image, got {hm.shape}")
        a = next(ax)
        a.imshow(hm, cmap="viridis", interpolation="nearest")
        a.set_xticks([])
        a.set_yticks([])
        if first:
            a.set_title("heatmap", fontsize=8)
        d = _boxes4(dbs[b])
        if len(d):
            sx, sy = hm.shape[1] / W, hm.shape[0] / H
            a.scatter(
                (d[:, 0] + 0.5) * sx - 0.5,
                (d[:, 1] + 0.5) * sy - 0.5,
                s=12,
                facecolors="none",
                edgecolors=_rgb01(PRED_COLOR),
                linewidths=0.8,
            )

        a = next(ax)
        _show(a, rgb, "detections" if first else None)
        _draw_boxes_mpl(a, d, _labels(dls[b], len(d)), None, PRED_COLOR, names=class_names)

        a = next(ax)
        _show(a, _montage(_np(pts[b]), signed), "patches" if first else None)
        if has_dec:
            a = next(ax)
            _show(a, _montage(_np(rps[b]), signed), "decoded" if first else None)
        if has_rec:
            a = next(ax)
            _show(a, to_rgb(recs[b], signed), "reconstruction" if first else None)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.05, hspace=0.1)
    _save_figure(fig, out_path, dpi)


def output_figure(
    images: torch.Tensor,
    output: Any,
    out_path: str | os.PathLike,
    *,
    gt_boxes: Any = None,
    counts: torch.Tensor | None = None,
    signed: bool = False,
    class_names: Sequence[str] = (),
) -> None:
    """:func:`mist_figure` of a model's named output on ``images``.

    Args:
        images: ``(B, C, H, W)`` the model's input.
        output: its :class:`~mistnet.models.MISTOutput`; one with ``reconstruction is None`` is
            drawn as a classifier (predicted classes), otherwise as an auto-encoder (decoded
            patches and reconstruction). A grid model without heatmaps gets a blank one.
        out_path: PNG path.
        gt_boxes: optional ground-truth boxes per image, drawn on the input.
        counts: optional ``(B,)`` instance counts: the predicted labels of detections past an
            image's count are not drawn (K set to the largest count of the batch).
        signed: images and patches are signed (Gabor).
        class_names: names of the classes, drawn instead of their indices (default numbers).
    """
    B, _, H, W = images.shape
    heat = output.heatmaps if output.heatmaps is not None else images.new_zeros(B, 1, H, W)
    classify = output.reconstruction is None
    labels = output.task.argmax(-1).cpu() if classify else None
    if counts is not None and labels is not None:
        keep = torch.arange(labels.shape[1])[None] < counts.cpu()[:, None]
        labels = labels.masked_fill(~keep, -1)  # -1: not drawn
    mist_figure(
        images.cpu(),
        heat.cpu(),
        output.keypoints.cpu(),
        labels,
        output.patches.cpu(),
        out_path,
        recon_patches=None if classify else output.task.cpu(),
        reconstructions=None if classify else output.reconstruction.cpu(),
        gt_boxes=gt_boxes,
        signed=signed,
        class_names=class_names,
    )


def plot_curves(
    history: Mapping[str, Sequence[tuple[float, float]]],
    out_path: str | os.PathLike,
    *,
    ncols: int = 3,
    logy: bool | Sequence[str] = False,
    dpi: int = 100,
) -> None:
    """Loss / metric curves (Fig. 7 style), one subplot per key.

    Args:
        history: ``{name: [(step, value), ...]}``; non-finite values are skipped.
        out_path: PNG path.
        ncols: subplot columns.
        logy: log-scale y for all keys (True) or for the named keys; keys with non-positive
            values stay linear.
        dpi: output resolution.
    """
    keys = list(history)
    if not keys:
        raise ValueError("history: expected at least one key")
    fig, axes = _panel_grid(len(keys), ncols, dpi)
    for key, ax in zip(keys, axes, strict=True):
        pts = np.asarray(list(history[key]), dtype=np.float64).reshape(-1, 2)
        pts = pts[np.isfinite(pts).all(axis=1)]
        ax.plot(pts[:, 0], pts[:, 1], linewidth=1.0)
        want_log = logy is True or (not isinstance(logy, bool) and key in logy)
        if want_log and len(pts) and (pts[:, 1] > 0).all():
            ax.set_yscale("log")
        _style_panel(ax, key, "step")
    fig.tight_layout()
    _save_figure(fig, out_path, dpi)


def _panel_grid(n: int, ncols: int, dpi: int):
    """A figure of ``n`` curve panels in up to ``ncols`` columns: ``(figure, the n axes)``."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = _new_figure(3.6 * ncols, 2.6 * nrows, dpi)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes[:n]


def _style_panel(ax, title: str, xlabel: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


#: Keys of a run's log lines that are bookkeeping, not curves.
_NOT_CURVES = {"step", "split", "wall", "n_images", "n_instances", "n_detections"}


def log_curves(records: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, float, float]]]:
    """A run's ``log.jsonl`` lines as curves ``{"train/task": [(step, minutes, value)], ...}``.

    Training lines give ``train/<loss>``, validation lines ``val/<metric>``; a validation takes
    the wall time of the training line logged at its step or the last one before it (NaN when
    none was).

    Example:
        >>> log_curves([{"step": 5, "split": "train", "wall": 60.0, "task": 2.0},
        ...             {"step": 5, "split": "val", "both": 0.5}])
        {'train/task': [(5, 1.0, 2.0)], 'val/both': [(5, 1.0, 0.5)]}
    """
    curves: dict[str, list[tuple[int, float, float]]] = {}
    minutes = math.nan
    for r in sorted(records, key=lambda r: (r.get("step", 0), r.get("split") != "train")):
        if r.get("split") == "train" and "wall" in r:
            minutes = float(r["wall"]) / 60
        for key, value in r.items():
            if key not in _NOT_CURVES and isinstance(value, int | float):
                curves.setdefault(f"{r.get('split')}/{key}", []).append(
                    (int(r["step"]), minutes, float(value))
                )
    return curves


def plot_runs(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    out_path: str | os.PathLike,
    *,
    keys: Sequence[str] = (),
    minutes: bool = False,
    ncols: int = 3,
    dpi: int = 100,
) -> list[str]:
    """Losses and validation metrics of several runs, one panel per curve, one line per run.

    Args:
        runs: ``{label: log records}`` (see :func:`log_curves`).
        out_path: PNG path.
        keys: the curves to draw (``"train/task"``, ``"train/border"``, ``"val/both"``;
            default: the training losses ``train/task`` and ``train/heatmap`` and every
            validation metric but the per-class ``val/classif/<name>``).
        minutes: training minutes on the x axis instead of steps.

    Returns:
        The keys drawn.

    Raises:
        ValueError: no run has any of the curves.
    """
    curves = {label: log_curves(records) for label, records in runs.items()}
    found = {k for c in curves.values() for k in c}
    if not keys:
        losses = [k for k in ("train/task", "train/heatmap") if k in found]
        keys = losses + sorted(k for k in found if k.startswith("val/") and k.count("/") == 1)
    keys = [k for k in keys if k in found]
    if not keys:
        raise ValueError("the runs have none of the curves asked for")
    fig, axes = _panel_grid(len(keys), ncols, dpi)
    for key, ax in zip(keys, axes, strict=True):
        for label, c in curves.items():
            pts = np.asarray([(m if minutes else s, v) for s, m, v in c.get(key, [])]).reshape(
                -1, 2
            )
            pts = pts[np.isfinite(pts).all(axis=1)]
            marker = "o" if key.startswith("val/") or len(pts) < 30 else ""
            ax.plot(pts[:, 0], pts[:, 1], marker=marker, linewidth=1.0, markersize=3, label=label)
        _style_panel(ax, key, "training minutes" if minutes else "step")
    if len(runs) > 1:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, out_path, dpi)
    return list(keys)


def annotate_image(
    image: Any,
    boxes: Any,
    labels: Any,
    scores: Any,
    out_path: str | os.PathLike,
    *,
    color: tuple[int, int, int] = PRED_COLOR,
    signed: bool = False,
    scale: int = 1,
    class_names: Sequence[str] = (),
) -> None:
    """Draw boxes and "label score" text on an image at its native size (for ``mist detect``).

    Box outlines are 1 px wide at columns ``round(cx - w/2)`` and ``round(cx + w/2)`` (rows
    likewise), i.e. on the pixels whose centres lie on the box edges, clipped to the image.

    Args:
        image: ``(H, W, 3)`` uint8 or ``(C, H, W)`` float (see :func:`to_rgb`).
        boxes: ``(K, 3)`` keypoints or ``(K, 4)`` boxes.
        labels: ``(K,)`` labels or ``None``; ``-1`` = padding (not drawn).
        scores: ``(K,)`` scores or ``None``.
        out_path: PNG path; the PNG is ``W x H`` pixels (times ``scale``).
        color: RGB outline and text colour.
        signed: float image is signed.
        scale: integer nearest-neighbour upscaling before drawing (1 = native size); box
            coordinates follow (``x' = scale * (x + 0.5) - 0.5``).
        class_names: the label of class ``i`` is written ``class_names[i]`` (default: ``i``).
    """

    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale: expected a positive integer, got {scale}")
    scale = int(scale)
    rgb = to_rgb(image, signed)
    if scale > 1:
        rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    H, W = rgb.shape[:2]
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    b = _boxes4(boxes)
    if scale > 1:
        b = np.concatenate([scale * (b[:, :2] + 0.5) - 0.5, scale * b[:, 2:]], axis=1)
    lab = _labels(labels, len(b))
    sc = None if scores is None else _np(scores).reshape(-1)
    for i, (cx, cy, w, h) in enumerate(b):
        if lab[i] == -1:
            continue
        x0, x1 = math.floor(cx - w / 2 + 0.5), math.floor(cx + w / 2 + 0.5)
        y0, y1 = math.floor(cy - h / 2 + 0.5), math.floor(cy + h / 2 + 0.5)
        draw.rectangle([x0, y0, x1, y1], outline=color, width=1)
        parts = [label_name(int(lab[i]), class_names)] if lab[i] >= 0 else []
        if sc is not None:
            parts.append(f"{float(sc[i]):.2f}")
        if parts:
            text = " ".join(parts)
            tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), text)
            th = ty1 - ty0
            ty = y0 - th - 2 if y0 - th - 2 >= 0 else y0 + 2  # above the box, else inside
            tx = min(max(x0, 0), max(W - (tx1 - tx0), 0))
            draw.text((tx, ty - ty0), text, fill=color)
    atomic_write(out_path, lambda tmp: im.save(tmp, format="PNG"))
