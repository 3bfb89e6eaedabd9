"""Figures of scenes and of a model's output: scene grids and the paper's MIST panels (Fig. 3/5).

Every function writes one PNG atomically and returns nothing, and needs matplotlib (the
``figures`` extra); annotated images for ``mist detect`` are :mod:`mistnet.viz.annotate`'s.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mistnet.ops._checks import check_int
from mistnet.validate import require_finite
from mistnet.viz.canvas import (
    GT_COLOR,
    PRED_COLOR,
    as_array,
    batch_size,
    check_class_ids,
    check_class_names,
    draw_boxes,
    drawn_boxes,
    figure_path,
    montage,
    new_figure,
    number_array,
    per_image,
    rgb01,
    save_figure,
    scores_of,
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
        titles: optional per-image titles: a list of N strings (``None`` for no title).
        dpi: output resolution.

    Raises:
        TypeError: ``images`` that is no batch or list (an iterator), ``titles`` that is no
            list of strings (a string would be drawn a letter per panel).
        ValueError: an argument of another shape, an empty image, NaN or infinite boxes drawn,
            a box of negative size, ``scores`` not one per predicted box, or ``scores`` or
            ``pred_labels`` without ``pred_boxes`` (of that image) to draw them on.
    """
    figure_path(out_path)  # before any drawing
    imgs = per_image(images, batch_size(images, "images"), "images")
    n = len(imgs)
    if n == 0:
        raise ValueError("images: expected at least one image")
    ncols = min(check_int(ncols, "ncols"), n)
    titles = _titles(titles, n)
    gtb, gtl, pb, pl, ps = (
        per_image(x, n, name)
        for x, name in [
            (boxes, "boxes"), (labels, "labels"), (pred_boxes, "pred_boxes"),
            (pred_labels, "pred_labels"), (scores, "scores"),
        ]
    )  # fmt: skip
    rgbs = [to_rgb(im, signed, name=f"images[{i}]") for i, im in enumerate(imgs)]
    shown = []  # every image's boxes, checked before anything is drawn
    for i in range(n):
        gt = drawn_boxes(gtb[i], gtl[i], "boxes", "labels")
        _on_pred_boxes(pb[i], pl[i], ps[i], "" if pred_boxes is None else f" for image {i}")
        pred = None
        if pb[i] is not None:
            p, lab = drawn_boxes(pb[i], pl[i], "pred_boxes", "pred_labels")
            pred = (p, lab, scores_of(ps[i], len(p)))
        shown.append((gt, pred))
    nrows = math.ceil(n / ncols)
    H, W = rgbs[0].shape[:2]
    panel_w = max(2.0, W / 40)
    panel_h = panel_w * H / W
    fig = new_figure(ncols * panel_w, nrows * (panel_h + 0.3), dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        show(ax, rgbs[i], titles[i])
        (g, gl), pred = shown[i]
        draw_boxes(ax, g, gl, None, GT_COLOR, text=False)
        if pred is not None:
            draw_boxes(ax, *pred, PRED_COLOR)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95, wspace=0.04, hspace=0.12)
    save_figure(fig, out_path, dpi)


def _on_pred_boxes(boxes: Any, labels: Any, scores: Any, where: str) -> None:
    """Refuse an image's predicted ``labels`` or ``scores`` of :func:`draw_scenes_grid` without
    its predicted ``boxes`` to draw them beside (they were ignored without a word).

    Raises:
        ValueError: ``"scores: given without pred_boxes<where>; ..."``.
    """
    given = [name for name, x in (("pred_labels", labels), ("scores", scores)) if x is not None]
    if boxes is None and given:
        raise ValueError(
            f"{given[0]}: given without pred_boxes{where}; predicted labels and scores are drawn "
            "beside the predicted boxes"
        )


def _titles(titles: Any, n: int) -> list[str | None]:
    """``titles`` of :func:`draw_scenes_grid` as ``n`` entries (``None``: no title each).

    Raises:
        TypeError: no list or tuple (a string's letters were drawn one per panel), or an entry
            that is no string.
        ValueError: not ``n`` of them ("list index out of range").
    """
    if titles is None:
        return [None] * n
    if not isinstance(titles, list | tuple):
        raise TypeError(f"titles: expected a list of {n} strings, got {type(titles).__name__}")
    if len(titles) != n:
        raise ValueError(f"titles: expected {n} entries, one per image, got {len(titles)}")
    for t in titles:
        if t is not None and not isinstance(t, str):
            raise TypeError(f"titles: expected strings, got {type(t).__name__} {t!r}")
    return list(titles)


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
        class_names: a list or tuple of the class names (index ``i`` names label ``i``);
            default numbers.
        caption: a line above the legend (what was run, its metrics); empty: none.
        dpi: output resolution.

    Raises:
        TypeError: ``images`` that is no tensor, array or list (an iterator), ``class_names``
            no list or tuple of names, ``heatmaps`` that are no real numbers (complex, text).
        ValueError: no image (B = 0), an argument of another shape or batch size, or NaN or
            infinite values in it (named: ``patches``, ``det_boxes``, ...), a box of negative
            size, or a ``det_labels`` label below 0 (but the padding -1) or not below the
            number of ``class_names`` (as :func:`annotate_image`).
    """
    figure_path(out_path)  # before any drawing
    check_class_names(class_names)  # "cat" drew the labels "c", "a", "t"
    per = {
        "heatmaps": heatmaps,
        "det_boxes": det_boxes,
        "det_labels": det_labels,
        "patches": patches,
        "recon_patches": recon_patches,
        "reconstructions": reconstructions,
        "gt_boxes": gt_boxes,
    }
    ims, per = _batched(images, per)
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


def _batched(images: Any, per: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``(B, C, H, W)`` images of :func:`mist_figure` and its other arguments ``per``, given
    a batch dimension when ``images`` is one image.

    Raises:
        TypeError: ``images`` is no tensor, array or list (an iterator, None).
        ValueError: not of rank 4 once batched, or no image (B = 0; matplotlib said "Number of
            rows must be a positive integer") or an empty one.
    """
    batch_size(images, "images")
    ims = as_array(images)
    if ims.ndim in (2, 3):  # one image, unbatched
        ims = ims[None] if ims.ndim == 3 else ims[None, None]
        per = {name: None if x is None else as_array(x)[None] for name, x in per.items()}
    if ims.ndim != 4:
        raise ValueError(f"images: expected (B, C, H, W), got {ims.shape}")
    if 0 in (ims.shape[0], *ims.shape[2:]):
        raise ValueError(f"images: expected at least one image of H, W >= 1, got {ims.shape}")
    return ims, per


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
    rgb = to_rgb(row.image, signed, name="images")
    ax, title = next(panels)
    show(ax, rgb, title)
    if row.gt_boxes is not None:
        g, gl = drawn_boxes(row.gt_boxes, None, "gt_boxes")
        draw_boxes(ax, g, gl, None, GT_COLOR, text=False)
    d, dl = drawn_boxes(row.det_boxes, row.det_labels, "det_boxes", "det_labels")
    if row.det_labels is not None:  # 7 among 2 names was drawn "7", -5 without a label
        check_class_ids(dl[dl != -1], len(class_names), "det_labels")
    _heatmap_panel(*next(panels), row.heatmap, d, rgb.shape[:2])
    ax, title = next(panels)
    show(ax, rgb, title)
    draw_boxes(ax, d, dl, None, PRED_COLOR, names=class_names)
    ax, title = next(panels)
    show(ax, montage(as_array(row.patches), signed, name="patches"), title)
    if row.recon_patches is not None:
        ax, title = next(panels)
        show(ax, montage(as_array(row.recon_patches), signed, name="recon_patches"), title)
    if row.reconstruction is not None:
        ax, title = next(panels)
        show(ax, to_rgb(row.reconstruction, signed, name="reconstructions"), title)


def _heatmap_panel(ax, title: str | None, heatmap: Any, boxes: np.ndarray, size) -> None:
    """The heatmap (max over scales) with the detected centres marked, rescaled from the
    image's ``size`` ``(H, W)`` to the heatmap's."""
    hm = number_array(heatmap, "heatmaps", "iuf", "real numbers")  # complex: drawn as its real part
    if hm.ndim == 3:
        hm = hm.max(axis=0)
    if hm.ndim != 2 or 0 in hm.shape:
        raise ValueError(f"heatmaps: expected (H, W) per image with H, W >= 1, got {hm.shape}")
    require_finite(hm, "heatmaps")
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
        class_names: a list or tuple of the class names, drawn instead of their indices
            (default numbers).
        caption: a line at the top (what was run, its metrics); empty: none.

    Raises:
        TypeError: ``images`` that is no tensor, an ``output`` that is no model output,
            ``counts`` that are no integers, or what :func:`mist_figure` refuses
            (``class_names`` no list or tuple of names).
        ValueError: ``images`` of another rank, an ``output`` of another batch, ``counts``
            not one per image, or what :func:`mist_figure` refuses (a predicted class not
            below the number of ``class_names``, named ``det_labels``).
    """
    figure_path(out_path)  # before any drawing
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images: expected a (B, C, H, W) torch.Tensor, got {type(images).__name__}"
        )
    if images.ndim != 4 or images.is_meta:  # meta: "Cannot copy out of meta tensor"
        where = "on the meta device, no values" if images.is_meta else tuple(images.shape)
        raise ValueError(f"images: expected (B, C, H, W) values, got {where}")
    fields = ("heatmaps", "keypoints", "patches", "task", "reconstruction")
    if not all(hasattr(output, f) for f in fields):
        raise TypeError(f"output: expected the model's MISTOutput, got {type(output).__name__}")
    if any(getattr(getattr(output, f), "is_meta", False) for f in fields):  # as images
        raise ValueError("output: its tensors are on the meta device, no values to draw")
    B, _, H, W = images.shape
    made_of = getattr(output.keypoints, "shape", (None,))[0]
    if made_of != B:  # blamed the heatmaps, which the caller never passed
        raise ValueError(f"output: made of {made_of} images, but images holds {B}")
    heat = output.heatmaps if output.heatmaps is not None else images.new_zeros(B, 1, H, W)
    classify = output.reconstruction is None
    labels = output.task.argmax(-1).cpu() if classify else None
    if counts is not None and labels is not None:
        keep = torch.arange(labels.shape[1])[None] < _counts(counts, B)[:, None]
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


def _counts(counts: Any, n: int) -> torch.Tensor:
    """``counts`` of :func:`output_figure` (a tensor, an array or a list) as ``n`` int64s.

    Raises:
        TypeError: no integers (``'list' object has no attribute 'cpu'`` came of a list).
        ValueError: not ``n`` of them.
    """
    a = as_array(counts)
    if a.dtype.kind not in "iu":
        raise TypeError(f"counts: expected integer instance counts, got dtype {a.dtype}")
    if a.shape != (n,):
        raise ValueError(f"counts: expected one count per image, shape ({n},), got {a.shape}")
    if (a < 0).any():  # drawn as 0
        raise ValueError(f"counts: expected counts >= 0, got {int(a.min())}")
    return torch.from_numpy(a.astype(np.int64))
