"""Figures of scenes and of a model's output: scene grids, the paper's MIST panels (Fig. 3/5),
annotated images (``mist detect``).

Every function writes one PNG atomically and returns nothing. :func:`annotate_image` uses PIL
only and keeps the native size; the others need matplotlib (the ``figures`` extra).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, PngImagePlugin

from mistnet.data.store import label_name
from mistnet.io import atomic_write
from mistnet.viz.canvas import (
    GT_COLOR,
    PRED_COLOR,
    as_array,
    boxes4,
    draw_boxes,
    labels_of,
    montage,
    new_figure,
    per_image,
    rgb01,
    save_figure,
    show,
    to_rgb,
)


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
    imgs = per_image(images, len(images), "images")
    n = len(imgs)
    if n == 0:
        raise ValueError("images: expected at least one image")
    if ncols < 1:
        raise ValueError(f"ncols: expected >= 1, got {ncols}")
    gtb = per_image(boxes, n, "boxes")
    gtl = per_image(labels, n, "labels")
    pb = per_image(pred_boxes, n, "pred_boxes")
    pl = per_image(pred_labels, n, "pred_labels")
    ps = per_image(scores, n, "scores")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    rgbs = [to_rgb(im, signed) for im in imgs]
    H, W = rgbs[0].shape[:2]
    panel_w = max(2.0, W / 40)
    panel_h = panel_w * H / W
    fig = new_figure(ncols * panel_w, nrows * (panel_h + 0.3), dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        show(ax, rgbs[i], titles[i] if titles is not None else None)
        g = boxes4(gtb[i])
        draw_boxes(ax, g, labels_of(gtl[i], len(g)), None, GT_COLOR, text=False)
        if pb[i] is not None:
            p = boxes4(pb[i])
            s = None if ps[i] is None else as_array(ps[i]).reshape(-1)
            draw_boxes(ax, p, labels_of(pl[i], len(p)), s, PRED_COLOR)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95, wspace=0.04, hspace=0.12)
    save_figure(fig, out_path, dpi)


@dataclass
class _MistRow:
    """One image's entries of :func:`mist_figure` (``None`` where not drawn)."""

    image: np.ndarray
    heatmap: Any
    det_boxes: Any
    det_labels: Any
    patches: Any
    recon_patches: Any
    reconstruction: Any
    gt_boxes: Any


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
    caption: str = "",
    dpi: int = 100,
) -> None:
    """The paper's Fig. 3 / Fig. 5 panels, one row per image, under a header: a legend of the
    box colours (ground truth, when given, and detections) and ``caption``.

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
        caption: a line above the legend (what was run, its metrics); empty: none.
        dpi: output resolution.
    """
    per = {
        "heatmaps": heatmaps,
        "det_boxes": det_boxes,
        "det_labels": det_labels,
        "patches": patches,
        "recon_patches": recon_patches,
        "reconstructions": reconstructions,
        "gt_boxes": gt_boxes,
    }
    ims = as_array(images)
    if ims.ndim in (2, 3):  # one image, unbatched
        ims = ims[None] if ims.ndim == 3 else ims[None, None]
        per = {name: None if x is None else as_array(x)[None] for name, x in per.items()}
    if ims.ndim != 4:
        raise ValueError(f"images: expected (B, C, H, W), got {ims.shape}")
    B, _, H, W = ims.shape
    columns = ["input", "heatmap", "detections", "patches"]
    columns += ["decoded"] * (recon_patches is not None)
    columns += ["reconstruction"] * (reconstructions is not None)
    panel = max(1.8, max(H, W) / 45)
    rows = B * (panel * max(H / W, 0.6) + 0.35)
    caption_in = 0.25 * bool(caption)  # inches: the caption, then the legend and the titles
    header = caption_in + 0.5
    fig = new_figure(len(columns) * panel, rows + header, dpi)
    axes = fig.subplots(B, len(columns), squeeze=False)
    split = [per_image(x, B, name) for name, x in per.items()]  # 7 lists of B entries
    for b, entries in enumerate(zip(*split, strict=True)):
        row = _MistRow(ims[b], *entries)
        titles = columns if b == 0 else [None] * len(columns)
        _mist_row(iter(zip(axes[b], titles, strict=True)), row, signed, class_names)
    height = rows + header
    _header(fig, gt_boxes is not None, caption, 1 - (caption_in + 0.02) / height)
    top = 1 - header / height
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.05, hspace=0.1)
    save_figure(fig, out_path, dpi)


def _header(fig, ground_truth: bool, caption: str, legend_top: float) -> None:
    """At the top of ``fig``: ``caption``, and under it (from ``legend_top``, a fraction of the
    height) the legend of the box colours, which a reader could not otherwise tell apart."""
    from matplotlib.patches import Patch

    entries = [(GT_COLOR, "ground truth")] * ground_truth
    entries.append((PRED_COLOR, "detections (predicted)"))
    handles = [
        Patch(facecolor="none", edgecolor=rgb01(color), linewidth=1.5, label=text)
        for color, text in entries
    ]
    fig.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, legend_top), ncol=len(handles),
        fontsize=8, frameon=False, borderaxespad=0.0, handlelength=1.2,
    )  # fmt: skip
    if caption:
        fig.suptitle(caption, y=0.995, va="top", fontsize=8)


def _mist_row(panels, row: _MistRow, signed: bool, class_names: Sequence[str]) -> None:
    """Draw one image's row of :func:`mist_figure`; ``panels`` yields ``(axes, title)``."""
    rgb = to_rgb(row.image, signed)
    ax, title = next(panels)
    show(ax, rgb, title)
    if row.gt_boxes is not None:
        g = boxes4(row.gt_boxes)
        draw_boxes(ax, g, labels_of(None, len(g)), None, GT_COLOR, text=False)
    d = boxes4(row.det_boxes)
    _heatmap_panel(*next(panels), row.heatmap, d, rgb.shape[:2])
    ax, title = next(panels)
    show(ax, rgb, title)
    draw_boxes(ax, d, labels_of(row.det_labels, len(d)), None, PRED_COLOR, names=class_names)
    ax, title = next(panels)
    show(ax, montage(as_array(row.patches), signed), title)
    if row.recon_patches is not None:
        ax, title = next(panels)
        show(ax, montage(as_array(row.recon_patches), signed), title)
    if row.reconstruction is not None:
        ax, title = next(panels)
        show(ax, to_rgb(row.reconstruction, signed), title)


def _heatmap_panel(ax, title: str | None, heatmap: Any, boxes: np.ndarray, size) -> None:
    """The heatmap (max over scales) with the detected centres marked, rescaled from the
    image's ``size`` ``(H, W)`` to the heatmap's."""
    hm = as_array(heatmap).astype(np.float64)
    if hm.ndim == 3:
        hm = hm.max(axis=0)
    if hm.ndim != 2:
        raise ValueError(f"heatmaps: expected (H, W) per image, got {hm.shape}")
    ax.imshow(hm, cmap="viridis", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    if len(boxes):
        sx, sy = hm.shape[1] / size[1], hm.shape[0] / size[0]
        ax.scatter(
            (boxes[:, 0] + 0.5) * sx - 0.5,
            (boxes[:, 1] + 0.5) * sy - 0.5,
            s=12,
            facecolors="none",
            edgecolors=rgb01(PRED_COLOR),
            linewidths=0.8,
        )


def output_figure(
    images: torch.Tensor,
    output: Any,
    out_path: str | os.PathLike,
    *,
    gt_boxes: Any = None,
    counts: torch.Tensor | None = None,
    signed: bool = False,
    class_names: Sequence[str] = (),
    caption: str = "",
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
        caption: a line at the top (what was run, its metrics); empty: none.
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
        caption=caption,
    )


#: The ``Software`` text of the PNG files mistnet writes itself (:func:`save_png`).
PNG_SOFTWARE = "mistnet"


def save_png(im: Image.Image, path: str | os.PathLike) -> None:
    """Write ``im`` to ``path`` as a PNG (atomically) whose ``Software`` text says mistnet made
    it: an output folder written again tells its own images from the user's by it
    (:func:`made_by_mistnet`)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", PNG_SOFTWARE)
    atomic_write(path, lambda tmp: im.save(tmp, format="PNG", pnginfo=info))


def made_by_mistnet(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PNG file :func:`save_png` wrote (read no further than its header
    chunks); False for anything else, unreadable or not."""
    try:
        with Image.open(path, formats=["PNG"]) as im:
            return getattr(im, "text", {}).get("Software") == PNG_SOFTWARE
    except Exception:  # noqa: BLE001 - any file that is no such PNG
        return False


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
        boxes: ``(K, 3)`` keypoints or ``(K, 4)`` boxes, finite (but for padding).
        labels: ``(K,)`` labels or ``None``; ``-1`` = padding (not drawn).
        scores: ``(K,)`` scores or ``None``.
        out_path: PNG path; the PNG is ``W x H`` pixels (times ``scale``).
        color: RGB outline and text colour.
        signed: float image is signed.
        scale: integer nearest-neighbour upscaling before drawing (1 = native size); box
            coordinates follow (``x' = scale * (x + 0.5) - 0.5``).
        class_names: the label of class ``i`` is written ``class_names[i]`` (default: ``i``).
    """
    whole = isinstance(scale, numbers.Real) and math.isfinite(scale) and int(scale) == scale
    if isinstance(scale, bool) or not whole or scale < 1:  # True was taken as 1
        raise ValueError(f"scale: expected a positive integer, got {scale!r}")
    scale = int(scale)
    rgb = to_rgb(image, signed)
    if scale > 1:
        rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    H, W = rgb.shape[:2]
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    b = boxes4(boxes)
    lab = labels_of(labels, len(b))
    if not np.isfinite(b[lab != -1]).all():  # padding (label -1) is not drawn: not checked
        raise ValueError(f"boxes: hold NaN or infinite values, got {b[lab != -1].tolist()}")
    if scale > 1:
        b = np.concatenate([scale * (b[:, :2] + 0.5) - 0.5, scale * b[:, 2:]], axis=1)
    sc = None if scores is None else as_array(scores).reshape(-1)
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
    save_png(im, out_path)
