"""Detection from Python: :func:`predict` finds what a model returned by :func:`mistnet.load`
or :func:`mistnet.fit` finds in image files, Pillow images or tensors, as ``mist detect`` does,
and returns a :class:`Prediction` per image (``model.predict``, bound by :func:`mistnet.load`).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mistnet import validate
from mistnet.config import Config
from mistnet.detection import (
    check_trained_size,
    clipped_corners,
    default_min_score,
    detect_image,
    evaluating,
    image_tensor,
    min_image_side,
    read_image,
)
from mistnet.errors import ArgumentError, DataError
from mistnet.imagefile import DEFAULT_MAX_PIXELS, pixel_count
from mistnet.models.mist import MIST, GridMIST, PatchModel
from mistnet.ops._checks import as_real


@dataclass(frozen=True, eq=False)  # tensors have no truth value: == is identity, as hash
class Prediction:
    """What :func:`predict` found in one image: ``N`` detections, highest score first.
    Compare two with ``torch.equal`` on their fields (``==`` is identity).

    Attributes:
        boxes: ``(N, 4)`` float corners ``(x0, y0, x1, y1)`` in the image's pixels, clipped to
            it (pixel ``(0, 0)`` spans ``[0, 1]``, as in COCO and torchvision). A file or a
            Pillow image is taken upright, its EXIF orientation applied (a phone's photo as
            ``ImageOps.exif_transpose`` shows it), as ``mist detect`` and ``import-images`` do.
        scores: ``(N,)`` scores in [0, 1].
        classes: ``(N,)`` int64 class indices (a classifier), or None.
        names: each box's class name, when the run names its classes, or None.
        keypoints: ``(N, 3)`` the model's ``(x, y, side)`` squares (pixel centres on integers),
            as ``mist detect`` writes them under ``boxes``.
    """

    boxes: Tensor
    scores: Tensor
    classes: Tensor | None
    names: tuple[str, ...] | None
    keypoints: Tensor


def _as_images(images: Any, channels: int, max_pixels: int) -> Iterator[tuple[str, Tensor]]:
    """Paths, Pillow images and tensors (one or a list; ``(C, H, W)`` or ``(B, C, H, W)``) as
    ``(C, H, W)`` float tensors in [0, 1], each of at most ``max_pixels`` pixels (checked
    before it is decoded or converted), with how a message names each (``image 1``, or
    ``image 1[3]`` for the fourth of a batch). Every item's kind is checked first, and that
    each path is a file; the images are then decoded one at a time, as they are detected (a
    list of 100 photos was held decoded, 14 GB, before the first was)."""
    if isinstance(images, str | os.PathLike | Image.Image | Tensor):
        images = [images]
    if isinstance(images, bytes | bytearray | memoryview) or not isinstance(images, Sequence):
        raise TypeError(f"predict takes paths, PIL images or tensors, got {type(images).__name__}")
    for n, item in enumerate(images):
        if isinstance(item, str | os.PathLike):
            if not validate.path_argument(item, f"image {n}"):
                raise ArgumentError(f"image {n}: '' is an empty path")
            try:  # before any image is detected: a missing 31st file failed after 30 were
                validate.regular_file(item)
            except DataError as exc:
                raise DataError(f"image {n}: {exc}") from None
        if not isinstance(item, str | os.PathLike | Image.Image | Tensor):
            raise TypeError(
                f"image {n}: predict takes paths, PIL images or tensors, got {type(item).__name__}"
            )
    return _decoded(list(images), channels, max_pixels)


def _decoded(items: list, channels: int, max_pixels: int) -> Iterator[tuple[str, Tensor]]:
    for n, item in enumerate(items):
        if isinstance(item, str | os.PathLike):
            try:
                image = read_image(item, channels, max_pixels)
            except DataError as exc:  # as every other message of predict names the image
                raise DataError(f"image {n}: {exc}") from None
            yield f"image {n}", image
        elif isinstance(item, Image.Image):
            pixel_count(*item.size, max_pixels, f"image {n}", _HINT)
            yield f"image {n}", image_tensor(item, channels, f"image {n}")
        else:
            yield from _tensor_images(item, channels, n, max_pixels)


def _tensor_images(x: Tensor, channels: int, n: int, max_pixels: int) -> list[Tensor]:
    validate.require_dense(x, f"image {n}")
    batch = x if x.dim() == 4 else x[None]
    if batch.dim() != 4 or batch.shape[1] != channels or not validate.image_float(batch):
        raise ValueError(
            f"image {n}: a tensor must be float (16 bits or more) (C, H, W) or (B, C, H, W) "
            f"with C = {channels}, got {x.dtype} {tuple(x.shape)}"
        )
    B, _, H, W = batch.shape
    if B == 0 or H == 0 or W == 0:
        raise ValueError(f"image {n}: an empty tensor {tuple(x.shape)}; it holds no image")
    pixel_count(W, H, max_pixels, f"image {n}", _HINT)
    if not torch.isfinite(batch).all() or batch.min() < 0 or batch.max() > 1:
        raise ValueError(f"image {n}: tensor values must be finite and in [0, 1]")
    if x.dim() == 3:
        return [(f"image {n}", batch[0].float().cpu())]
    return [(f"image {n}[{b}]", im.float().cpu()) for b, im in enumerate(batch)]


def _scalar(value: Any) -> Any:
    """A one-element tensor or a 0-d numpy array as its Python number (``torch.tensor(0.5)``,
    ``np.array(0.5)``); else ``value`` (numpy scalars are ``numbers.Integral`` /
    ``numbers.Real`` already)."""
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_meta:
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return value.item()
    return value


#: What the message for an image above ``max_pixels`` suggests.
_HINT = "crop or downscale it, or pass a larger max_pixels"


def _check_size(model: MIST, where: str, H: int, W: int, k: int) -> None:
    """Refuse an ``H`` x ``W`` image ``model`` cannot take: smaller than its heatmap network
    reaches, of fewer pixels than ``k``, or (the grid baseline) not the size it trained on."""
    smallest = min_image_side(model)
    if min(H, W) < smallest:
        raise ValueError(
            f"{where}: {W}x{H} is too small for the model (at least {smallest}x{smallest})"
        )
    if H * W < k:
        raise ValueError(
            f"k = {validate.shown(k)} asks for more detections than {where}'s {W}x{H} pixels"
        )
    check_trained_size(model, f"{where}: {W}x{H}", H, W)


def _predict_options(
    model: MIST, k: Any, min_score: Any, max_pixels: Any
) -> tuple[int, float, int]:
    """:func:`predict`'s ``k``, ``min_score`` and ``max_pixels``, checked (its Raises)."""
    max_pixels = _scalar(max_pixels)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral):
        raise TypeError(f"max_pixels must be an integer, got {max_pixels!r}")
    max_pixels = int(max_pixels)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    k = model.k if k is None else _scalar(k)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be a positive integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {validate.shown(k)}")
    k = int(k)
    if isinstance(model, GridMIST) and k != model.k:
        raise ValueError(f"the grid baseline always uses its {model.k} cells; drop k")
    given = default_min_score(model) if min_score is None else _scalar(min_score)
    if (min_score := as_real(given)) is None:  # 10**400: an OverflowError in float()
        raise TypeError(f"min_score must be a number, got {given!r}")
    if not 0 <= min_score <= 1:  # NaN included
        raise ValueError(f"min_score must be a score in [0, 1], got {validate.shown(given)}")
    return k, min_score, max_pixels


def predict(
    model: MIST,
    images: Any,
    k: int | None = None,
    min_score: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Prediction]:
    """Detect in ``images``: the boxes ``mist detect`` finds, as a :class:`Prediction` each.

    Bound to the models :func:`~mistnet.load` and :func:`~mistnet.fit` return as ``model.predict(images, ...)``.

    Args:
        images: a path, a Pillow image, a float tensor ``(C, H, W)`` or ``(B, C, H, W)`` in
            [0, 1] with the run's channel count, or a list of these.
        k: detections per image (None: the model's K).
        min_score: drop detections scored below this (0 keeps all K; None:
            :func:`~mistnet.detection.default_min_score`, as ``mist detect``).
        max_pixels: refuse an image of more pixels, before it is decoded or converted (as
            ``mist detect --max-pixels``).

    Returns:
        One :class:`Prediction` per image, in order.

    Raises:
        TypeError: a ``model`` not returned by :func:`~mistnet.load` or :func:`~mistnet.fit`, an input of
            another type, a ``k`` or ``max_pixels`` that is not an integer
            or a ``min_score`` that is no number (numpy scalars and one-element tensors are).
        ValueError: a tensor of another shape, empty, not dense, on the meta device or outside
            [0, 1], an empty path, a ``k``, ``min_score`` or ``max_pixels`` out of range, an image
            smaller than the model accepts or above ``max_pixels``.
        DataError: a path that is no file (``"image 3: x.png: no such file"``, before any
            image is detected), a file that cannot be read as an image, or boxes or scores
            the model gave that are NaN or infinite (damaged or diverged weights).
    """
    if not isinstance(model, PatchModel) or not isinstance(getattr(model, "config", None), Config):
        raise TypeError(
            "predict takes a model returned by mistnet.load or mistnet.fit (a model built by "
            f"hand has no config to read images by), got {type(model).__name__}"
        )
    k, min_score, max_pixels = _predict_options(model, k, min_score, max_pixels)
    cfg = model.config
    names = tuple(cfg.record.class_names)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype  # a model made .double() or .half() by its user
    if device.type == "meta" or any(b.is_meta for b in model.buffers()):
        raise ValueError("the model is on the meta device: it holds no weights to predict with")
    results = []
    for where, image in _as_images(images, cfg.model.in_channels, max_pixels):
        _, H, W = image.shape
        _check_size(model, where, H, W, k)
        x = image.to(device, dtype)
        if cfg.model.output == "signed":
            x = 2 * x - 1  # the Gabor auto-encoder works on signed images
        with evaluating(model):
            pred = detect_image(model, x, k)
        kp, scores = pred.keypoints.cpu(), pred.scores.cpu()  # (N, 3), (N,)
        # as mist detect: a NaN score fails every min_score, so a diverged model found nothing
        validate.require_finite(
            torch.cat([kp.flatten(), scores]), f"{where}: the model's boxes and scores"
        )
        keep = scores >= min_score
        kp, scores = kp[keep], scores[keep]
        classes = None if pred.logits is None else pred.logits.argmax(-1).cpu()[keep]
        named = None if classes is None or not names else tuple(names[c] for c in classes)
        results.append(Prediction(clipped_corners(kp, W, H), scores, classes, named, kp))
    return results
