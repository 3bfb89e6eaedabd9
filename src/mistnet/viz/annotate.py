"""Annotated images at their native size (``mist detect``): boxes and "label score" text drawn
with PIL alone (no matplotlib), written as a PNG that says mistnet made it (:func:`save_png`).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin

from mistnet.data.store import label_name
from mistnet.imagefile import DEFAULT_MAX_PIXELS
from mistnet.io import atomic_write
from mistnet.ops._checks import as_real, shown
from mistnet.viz.canvas import (
    PNG_SOFTWARE,
    PRED_COLOR,
    check_class_ids,
    check_class_names,
    drawn_boxes,
    figure_path,
    scores_of,
    to_rgb,
)


def _pixel_edges(boxes: np.ndarray, scale: int, size: tuple[int, int]) -> np.ndarray:
    """The ``(M, 4)`` pixel columns and rows ``(x0, x1, y0, y1)`` of the outlines of finite
    ``boxes`` on an image of ``size`` ``(H, W)`` upscaled ``scale`` times, clipped to a margin
    around it: edges beyond are outside it anyway, as is a label placed by them, and Pillow
    overflowed at ``x = 1e20`` ("returned a result with an exception set")."""
    cx, cy, w, h = boxes.T
    with np.errstate(over="ignore"):  # beyond float64: +-inf, clipped below
        edges = np.stack([cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2], axis=1)
    far = size[0] + size[1] + 64
    edges = scale * (np.clip(edges, -far, far) + 0.5) - 0.5  # x' = scale * (x + 0.5) - 0.5
    return np.floor(edges + 0.5).astype(np.int64).reshape(-1, 4)


def save_png(im: Image.Image, path: str | os.PathLike) -> None:
    """Write ``im`` to ``path`` as a PNG (atomically) whose ``Software`` text says mistnet made
    it: an output folder written again tells its own images from the user's by it
    (:func:`~mistnet.viz.canvas.made_by_mistnet`)."""
    path = figure_path(path, "path")
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", PNG_SOFTWARE)
    atomic_write(path, lambda tmp: im.save(tmp, format="PNG", pnginfo=info))


def _check_annotation(out_path: object, scale: object, color: object, class_names: object) -> int:
    """:func:`annotate_image`'s ``scale`` as an int, once it and ``out_path``, ``color`` and
    ``class_names`` are such as it can draw and write (before any work).

    Raises:
        TypeError: ``out_path`` no path, ``class_names`` no list or tuple of names (strings).
        ValueError: ``out_path`` a directory (the PNG would replace it, or fail to), a
            ``scale`` that is no positive integer, a ``color`` that is no RGB triple.
    """
    figure_path(out_path)
    check_class_names(class_names)
    real = as_real(scale) if isinstance(scale, numbers.Real) else None  # 10**400: inf
    whole = real is not None and math.isfinite(real) and int(scale) == scale
    if not whole or scale < 1:  # True was taken as 1
        raise ValueError(f"scale: expected a positive integer, got {shown(scale)}")
    if not (
        isinstance(color, tuple | list)
        and len(color) == 3
        and all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in color)
        and all(0 <= c <= 255 for c in color)
    ):
        raise ValueError(f"color: expected 3 integers in 0..255 (R, G, B), got {color!r}")
    return int(scale)


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
    likewise), i.e. on the pixels whose centres lie on the box edges, clipped to the image (a
    box far outside it, at ``x = 1e20``, draws nothing there).

    Args:
        image: ``(H, W, 3)`` uint8 or ``(C, H, W)`` float (see :func:`to_rgb`).
        boxes: ``(K, 3)`` keypoints or ``(K, 4)`` boxes, finite and of a size >= 0 (but for
            padding); ``None`` for none (then ``labels`` and ``scores`` are ``None`` too).
        labels: ``(K,)`` whole-number labels or ``None``; ``-1`` = padding (not drawn).
        scores: ``(K,)`` scores or ``None``.
        out_path: PNG path; the PNG is ``W x H`` pixels (times ``scale``).
        color: RGB outline and text colour.
        signed: float image is signed.
        scale: integer nearest-neighbour upscaling before drawing (1 = native size); box
            coordinates follow (``x' = scale * (x + 0.5) - 0.5``). The upscaled image may have
            at most :data:`~mistnet.imagefile.DEFAULT_MAX_PIXELS` pixels.
        class_names: a list or tuple of names: the label of class ``i`` is written
            ``class_names[i]`` (default: ``i``).

    Raises:
        TypeError: ``out_path`` no path, ``class_names`` no list or tuple of names (strings).
        ValueError: a ``scale`` that is no positive integer or makes the image larger than
            that, ``boxes`` NaN, infinite or of negative size (or ``None`` with ``labels`` or
            ``scores`` given), ``labels`` or ``scores`` not one per box, a label that is no
            whole number, below 0 (but the padding -1) or not below the number of
            ``class_names``, or an ``out_path`` that is a directory.
    """
    scale = _check_annotation(out_path, scale, color, class_names)
    given = [name for name, x in (("labels", labels), ("scores", scores)) if x is not None]
    if boxes is None and given:  # else "labels: expected 0 entries, got 1", blaming labels
        raise ValueError(f"boxes: None (no boxes) but {' and '.join(given)} given; pass the boxes")
    rgb = to_rgb(image, signed)
    H, W = rgb.shape[0] * scale, rgb.shape[1] * scale
    if scale > 1 and H * W > DEFAULT_MAX_PIXELS:  # numpy asked for petabytes
        raise ValueError(
            f"scale: {scale} makes the image {W}x{H} = {H * W:,} pixels, more than the limit "
            f"of {DEFAULT_MAX_PIXELS:,}; choose a smaller scale"
        )
    b, lab = drawn_boxes(boxes, labels)  # padding (label -1) is not drawn: not checked
    if labels is not None:
        check_class_ids(lab[lab != -1], len(class_names))
    sc = scores_of(scores, len(b))
    keep = lab != -1
    edges = _pixel_edges(b[keep], scale, rgb.shape[:2])
    if scale > 1:
        rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    for (x0, x1, y0, y1), label, score in zip(
        edges.tolist(), lab[keep], [None] * len(edges) if sc is None else sc[keep], strict=True
    ):
        draw.rectangle([x0, y0, x1, y1], outline=color, width=1)
        parts = [label_name(int(label), class_names)] if label >= 0 else []
        if score is not None:
            parts.append(f"{float(score):.2f}")
        if parts:
            text = " ".join(parts)
            tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), text)
            th = ty1 - ty0
            ty = y0 - th - 2 if y0 - th - 2 >= 0 else y0 + 2  # above the box, else inside
            tx = min(max(x0, 0), max(W - (tx1 - tx0), 0))
            draw.text((tx, ty - ty0), text, fill=color)
    save_png(im, out_path)
