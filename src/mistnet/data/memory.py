"""Any map-style torch Dataset of images, seen as scenes (what :func:`mistnet.fit` trains on).

An item may be

- an image: a ``(C, H, W)`` or ``(H, W)`` tensor or array (floats in [0, 1], or uint8 in
  [0, 255]) or a PIL image, alone or in a 1-tuple (``TensorDataset``): no ground truth (an
  auto-encoder's data);
- ``(image, labels)``: ``labels`` one class index or a sequence / 1-D tensor of them, the
  multiset of the instances in the image (a torchvision classification dataset gives one);
- a dict in our item format (``image``, optional ``labels``, ``boxes`` ``(N, 4)`` as
  ``(cx, cy, w, h)``).

The first item fixes the image size, the channels and which ground truth the items carry; an
item that differs stops training with one line. A ``classes`` attribute of the dataset (a list of
names, as torchvision datasets have) names the classes: distinct, non-empty and printable, as
every other entry point asks (:func:`mistnet.validate.class_names`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mistnet.data.annotations import clip_boxes
from mistnet.data.imagefiles import image_tensor, pil_channels
from mistnet.errors import DataError, MistWarning
from mistnet.validate import (
    as_integer,
    class_names,
    image_float,
    require_dense,
    require_finite,
)

#: ``data.name`` of a run trained on datasets in memory (the run's config cannot reopen them).
IN_MEMORY = "in-memory"


def _numbers(x: Any, what: str, where: str) -> np.ndarray:
    """``x`` as a numeric numpy array (a copy), or one line saying what it is instead."""
    try:
        a = np.array(x)
    except (TypeError, ValueError):  # ragged nested lists
        a = None
    if a is None or a.dtype.kind not in "biuf":
        raise DataError(f"{where}: expected {what} as numbers, got {type(x).__name__}")
    return _native(a, what, where)


def _native(a: np.ndarray, what: str, where: str) -> np.ndarray:
    """``a`` in the machine's byte order (torch takes no other: "byte order different from
    the native byte order"; the conversion is lossless); a longdouble refused, which torch
    has no dtype for and float64 would round."""
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        raise DataError(
            f"{where}: {what} of numpy {a.dtype} (longdouble), which torch cannot hold; give "
            "float64, float32 or uint8"
        )
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _image(x: Any, where: str) -> torch.Tensor:
    if hasattr(x, "getbands"):  # a PIL image, read as an image file is (16-bit and float too)
        return image_tensor(x, pil_channels(x), where)
    if isinstance(x, torch.Tensor):
        require_dense(x, where)
    # detached: an image that requires grad is data here (its float() warned of gradients)
    t = (
        x.detach()
        if isinstance(x, torch.Tensor)
        else torch.from_numpy(_numbers(x, "an image", where))
    )
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3) or 0 in t.shape:
        raise DataError(
            f"{where}: expected a (C, H, W) image with C = 1 or 3, got {tuple(t.shape)}"
        )
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not image_float(t):  # float8 too: torch has no isfinite of it
        raise DataError(
            f"{where}: a {str(t.dtype).removeprefix('torch.')} image; give uint8 (0..255) or "
            "floats (16 bits or more) in [0, 1]"
        )
    require_finite(t, f"{where}: image")
    if float(t.min()) < 0 or float(t.max()) > 1:
        raise DataError(  # repr: %g showed 1 + 1e-12 as "in [1, 1]"
            f"{where}: image values in [{float(t.min())!r}, {float(t.max())!r}]; float images "
            "must lie in [0, 1] (divide 0..255 values by 255, or give uint8)"
        )
    return t.float()


def _detached(x: Any) -> Any:
    """``x`` with every tensor in it (in nested lists and tuples) detached: ground truth is
    data (numpy() refused a tensor that requires grad, as a box row or an element of one)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, list | tuple):
        return [_detached(v) for v in x]
    return x


def _labels(y: Any, where: str) -> torch.Tensor:
    y = _detached(y)
    if isinstance(y, torch.Tensor):
        require_dense(y, f"{where}: labels")
    t = y if isinstance(y, torch.Tensor) else torch.from_numpy(_numbers(y, "labels", where))
    if t.numel() == 0 and t.ndim <= 1:  # no instance: [] is float64 to numpy
        return torch.zeros(0, dtype=torch.long)
    if t.dtype == torch.bool:  # True would be read as class 1
        raise DataError(f"{where}: labels must be class indices, got booleans {y!r}")
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1 or t.is_floating_point() or int(t.double().min()) < 0:
        raise DataError(f"{where}: labels must be class indices >= 0, got {y!r}")
    if float(t.double().max()) >= 2**63:  # uint64 beyond int64
        raise DataError(f"{where}: labels must be class indices below 2**63, got {y!r}")
    return t.long()


def _no_labels(raw: dict) -> str:
    """What the refusal of a dict item's boxes adds when the item has no ``labels``: they
    count its instances (boxes alone were said to be of the wrong shape)."""
    if "labels" in raw:
        return ""
    return (
        "; the item has no 'labels': give one class id per box (they count its instances; "
        "any ids for an auto-encoder)"
    )


def _boxes(
    b: Any, n: int, size: tuple[int, int], where: str, count_hint: str = ""
) -> tuple[torch.Tensor, int]:
    """``(n, 4)`` boxes ``(cx, cy, w, h)`` of an image of ``size`` ``(H, W)``: finite, each of
    a positive size and reaching into the image, cut to it as the importers cut them
    (:func:`~mistnet.data.annotations.clip_boxes`); and how many were cut. ``count_hint``
    ends the message of boxes of another count than ``n``."""
    b = _detached(b)  # data here, as an image that requires grad
    if isinstance(b, torch.Tensor):
        require_dense(b, f"{where}: boxes")  # a meta tensor: "Tensor.item() ... meta tensors"
        kind = str(b.dtype) if b.dtype == torch.bool or b.is_complex() else None
    else:
        try:
            a = np.asarray(b)
        except (TypeError, ValueError):  # ragged lists: as_tensor below names them
            a = None
        kind = str(a.dtype) if a is not None and a.dtype.kind in "bc" else None
        if a is not None and a.dtype.kind in "iuf":  # big-endian: "boxes must be numbers"
            b = _native(a, "boxes", where)
    if kind:  # True was a 1 px side; a complex box lost its imaginary part with a warning
        raise DataError(f"{where}: boxes must be real numbers, got {kind}")
    try:  # checked as given, then as float32: 1e39 was "NaN or infinite", 1e-46 a w of 0.0
        given = torch.as_tensor(b, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise DataError(f"{where}: boxes must be numbers, got {type(b).__name__}") from None
    if n == 0 and given.shape == (0,):  # [] of an item without instances (it was refused)
        given = given.reshape(0, 4)
    if given.shape != (n, 4):
        raise DataError(f"{where}: boxes must be ({n}, 4), got {tuple(given.shape)}{count_hint}")
    require_finite(given, f"{where}: boxes")
    t = given.float()
    for i in range(n):
        if not (given[i, 2] > 0 and given[i, 3] > 0):
            raise DataError(f"{where}: box {i} {given[i].tolist()} needs w, h > 0 (cx, cy, w, h)")
        if not torch.isfinite(t[i]).all():
            raise DataError(f"{where}: box {i} {given[i].tolist()} lies beyond float32's range")
        if not (t[i, 2] > 0 and t[i, 3] > 0):
            raise DataError(
                f"{where}: box {i} {given[i].tolist()} has a side too small for float32"
            )
    H, W = size
    clipped, past = clip_boxes(t.numpy(), W, H, where)
    return torch.from_numpy(clipped), past


#: The keys of a dict item (the :class:`~mistnet.data.SceneDataset` item format).
ITEM_KEYS = ("image", "labels", "boxes", "count")


class SceneItems(Dataset):
    """``dataset``'s items in the :class:`~mistnet.data.SceneDataset` item format.

    Attributes:
        channels, height, width: of the first image.
        annotations: ``{"labels"}`` for ``(image, labels)`` items, ``{"boxes", "labels"}`` for
            dicts with boxes, ``set()`` for bare images.
        classes: ``dataset.classes`` (a list or tuple of distinct, non-empty, printable names:
            else a ``TypeError`` / ``DataError`` naming ``classes``), or ``()``.
        num_classes: when set (by :func:`mistnet.fit`, from the model), an item with a label
            of that or more is refused as it is read.

    Args:
        dataset: a map-style Dataset.
        what: how the caller named it (``"train_data"``, ``"val"``), for the messages.

    Example:
        >>> items = SceneItems([(torch.rand(1, 8, 8), [2, 2]), (torch.rand(1, 8, 8), 1)])
        >>> items[0]["labels"].tolist(), int(items[1]["count"]), sorted(items.annotations)
        ([2, 2], 1, ['labels'])
    """

    name = IN_MEMORY
    signed = False

    def __init__(self, dataset: Dataset, what: str = "dataset") -> None:
        if isinstance(dataset, Mapping | str | bytes):  # indexed by keys or characters
            one = " (one item? put it in a list)" if isinstance(dataset, Mapping) else ""
            raise TypeError(
                f"{what} must be a map-style Dataset indexed 0..len-1, such as a list of "
                f"items, got a {type(dataset).__name__}{one}"
            )
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"{what} must be a map-style Dataset (len and indexing), got "
                f"{type(dataset).__name__}"
            )
        self.dataset, self.what = dataset, what
        self.num_classes: int | None = None
        self._said_clipped = False
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise DataError(f"{what}: the dataset is empty")
        first = dataset[0]
        self.annotations = self._kind(first, f"{what} item 0")
        image = self[0]["image"]
        self.channels, self.height, self.width = (int(v) for v in image.shape)
        names = getattr(dataset, "classes", ())
        self.classes = ()
        if "labels" in self.annotations:  # else no class is named: the attribute is not read
            self.classes = class_names(names, f"{type(dataset).__name__}.classes")

    @staticmethod
    def _unwrap(item: Any) -> Any:
        """A 1-tuple (a ``TensorDataset`` of images) is its image."""
        return item[0] if isinstance(item, tuple | list) and len(item) == 1 else item

    @classmethod
    def _kind(cls, item: Any, where: str) -> frozenset[str]:
        item = cls._unwrap(item)
        if isinstance(item, dict):
            unknown = [repr(key) for key in item if key not in ITEM_KEYS]
            if unknown:  # "label" or "bbox": the ground truth was dropped without a word
                raise DataError(
                    f"{where}: a dict item has the key(s) {', '.join(unknown)}, which mistnet "
                    f"does not read; its keys are {', '.join(ITEM_KEYS)}"
                )
            return frozenset({"labels", *(["boxes"] if "boxes" in item else [])})
        if isinstance(item, tuple | list) and len(item) == 2:
            return frozenset({"labels"})
        if isinstance(item, tuple) and len(item) > 2:  # a list may be an image's rows
            raise DataError(
                f"{where}: an item is an image, (image,), (image, labels) or a dict; got a "
                f"tuple of {len(item)}"
            )
        return frozenset()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def check_labels(self, need_one: bool = False) -> None:
        """Read every item's labels once, before training, so that a label of
        :attr:`num_classes` or more, or with ``need_one`` (a classifier's training data, whose
        loss learns from each image's labels) an image without any, is refused naming the
        item, not by the loss at the batch that draws it.

        Raises:
            DataError: naming the first such item.
        """
        if "labels" not in self.annotations:
            return
        for index in range(len(self)):
            raw = self._unwrap(self.dataset[index])
            where = f"{self.what} item {index}"
            if self._kind(raw, where) != self.annotations:
                raise DataError(f"{where} carries other ground truth than item 0")
            labels = _labels(raw.get("labels", []) if isinstance(raw, dict) else raw[1], where)
            if need_one and labels.numel() == 0:
                raise DataError(
                    f"{where}: no label; a classifier learns from the labels of each training "
                    "image, so every one needs at least one"
                )
            self._check_classes(labels, where)

    def _check_classes(self, labels: torch.Tensor, where: str) -> None:
        n = self.num_classes
        if n is not None and labels.numel() and int(labels.max()) >= n:
            raise DataError(
                f"{where}: label {int(labels.max())}, but the model has {n} classes (0..{n - 1})"
            )

    @staticmethod
    def _check_count(raw: dict, n: int, where: str) -> None:
        """A dict item's ``count``, when it has one, must be its number of labels (the item
        format's padding count: a count beyond the labels would claim instances not given)."""
        if "count" not in raw:
            return
        count = as_integer(raw["count"])  # True was 1, 1.5 was 1
        if count is None:
            raise DataError(f"{where}: count is {raw['count']!r}, not an integer")
        if count != n:
            raise DataError(f"{where}: count is {raw['count']!r} but the item has {n} labels")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        raw = self._unwrap(self.dataset[index])
        where = f"{self.what} item {index}"
        if self._kind(raw, where) != self.annotations:
            raise DataError(f"{where} carries other ground truth than item 0")
        if isinstance(raw, dict):
            if "image" not in raw:
                raise DataError(f"{where}: a dict item needs an 'image' key, has {sorted(raw)}")
            image, labels = _image(raw["image"], where), _labels(raw.get("labels", []), where)
            self._check_count(raw, len(labels), where)
            boxes = torch.zeros(len(labels), 4)
            if "boxes" in raw:
                size = tuple(image.shape[1:])
                boxes, past = _boxes(raw["boxes"], len(labels), size, where, _no_labels(raw))
                if past and not self._said_clipped:  # once: items are read at every epoch
                    self._said_clipped = True
                    warnings.warn(
                        f"{where}: {past} box(es) reach past the image; clipped to it (and "
                        "any such box of another item)",
                        MistWarning,
                        stacklevel=2,
                    )
        elif "labels" in self.annotations:
            image, labels = _image(raw[0], where), _labels(raw[1], where)
            boxes = torch.zeros(len(labels), 4)
        else:
            image, labels, boxes = (
                _image(raw, where),
                torch.zeros(0, dtype=torch.long),
                torch.zeros(0, 4),
            )
        if hasattr(self, "height") and tuple(image.shape) != (
            self.channels,
            self.height,
            self.width,
        ):
            raise DataError(
                f"{where} is {tuple(image.shape)}, item 0 ({self.channels}, {self.height}, "
                f"{self.width}); every image needs one size"
            )
        self._check_classes(labels, where)
        return {
            "image": image,
            "boxes": boxes,
            "labels": labels,
            "count": torch.tensor(len(labels)),
        }
