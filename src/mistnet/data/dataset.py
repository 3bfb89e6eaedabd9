"""Scenes as PyTorch data: the item of one scene, the on-the-fly Dataset, the padded batch.

The generators (:mod:`mistnet.data.scenes`) make numpy scenes; this module turns them into what
training and evaluation read: an item dict per scene (:func:`to_item`, shared with the on-disk
format of :mod:`mistnet.data.store`), :class:`SceneDataset` and :func:`collate_scenes`.
"""

from __future__ import annotations

import numbers
import sys

import numpy as np
import torch
from torch.utils.data import Dataset

from mistnet import validate
from mistnet.data.digits import DigitPools, canonical_split
from mistnet.data.scenes import DEFAULT_SIZES, Scene, SceneGenerator, build_generator


def to_item(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> dict[str, torch.Tensor]:
    """Arrays of one scene -> the Dataset item dict (uint8 images are scaled to [0, 1])."""
    if image.dtype == np.uint8:
        img = image.astype(np.float32)
        img /= np.float32(255.0)
    else:
        img = np.array(image, dtype=np.float32)
    n = labels.shape[0]
    return {
        "image": torch.from_numpy(img),
        "boxes": torch.from_numpy(np.array(boxes, dtype=np.float32).reshape(n, 4)),
        "labels": torch.from_numpy(np.array(labels, dtype=np.int64).reshape(n)),
        "count": torch.from_numpy(np.array(n, dtype=np.int64)),
    }


_EMBEDDED = "embedded"  # the default digits, told apart from digits given


class SceneDataset(Dataset):
    """On-the-fly scenes: item ``i`` is scene ``i`` of ``split`` under ``seed``.

    Args:
        name: generator name (see :func:`build_generator`) or a :class:`SceneGenerator`.
        split: ``train``, ``val`` (``valid``) or ``test``.
        size: number of scenes (default: 50k / 5k / 10k as in the paper).
        seed: dataset seed.
        digits: digit source for MNIST scenes (``"embedded"`` or an IDX directory); Gabor
            scenes have none and ignore it (a run's or a reproduction's one choice is given
            to every generator it makes scenes of).
        **kwargs: generator parameters (e.g. ``layout_bank``).

    Raises:
        TypeError: ``digits`` or ``kwargs`` beside a :class:`SceneGenerator` (it holds its
            own), a ``size`` that is no integer; and what :func:`build_generator` refuses.
        ValueError: ``size`` or ``seed`` out of range.

    Item:
        dict with ``image`` float32 ``(C, H, W)`` ([0, 1] for MNIST, signed for Gabor),
        ``boxes`` float32 ``(N, 4)`` ``(cx, cy, w, h)``, ``labels`` int64 ``(N,)``, ``count``
        int64 scalar.

    Example:
        >>> ds = SceneDataset("mnist-hard", "train", size=10)
        >>> ds[0]["image"].shape, ds[0]["boxes"].shape
        (torch.Size([1, 80, 80]), torch.Size([9, 4]))
    """

    def __init__(
        self,
        name: str | SceneGenerator,
        split: str,
        size: int | None = None,
        seed: int = 0,
        digits: str | DigitPools = _EMBEDDED,
        **kwargs,
    ) -> None:
        if isinstance(name, SceneGenerator) and (kwargs or digits is not _EMBEDDED):
            given = ", ".join([*(["digits"] if digits is not _EMBEDDED else []), *kwargs])
            raise TypeError(  # else ignored: the generator object holds its own
                f"{given}: a SceneGenerator given as name holds its own digits and parameters; "
                "pass them to build_generator, or give the generator's name"
            )
        self.generator = (
            name if isinstance(name, SceneGenerator) else build_generator(name, digits, **kwargs)
        )
        self.split = canonical_split(split)
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral)):
            raise TypeError(f"size must be an integer, got {size!r}")  # 2.5 was cut to 2
        self.size = DEFAULT_SIZES[self.split] if size is None else int(size)
        if not 0 <= self.size <= sys.maxsize:  # len() of more raises OverflowError
            raise ValueError(
                f"size must be an integer in 0..{sys.maxsize}, got {validate.shown(size)}"
            )
        # scene i is a pure function of (i, split, seed): "0", 1.5 or 2**64 made other scenes
        self.seed = validate.seed(seed)
        self.name = self.generator.name
        self.channels = self.generator.channels
        self.height = self.generator.height
        self.width = self.generator.width
        self.max_count = self.generator.max_count
        self.num_classes = self.generator.num_classes

    @property
    def signed(self) -> bool:
        """Whether the images are signed (Gabor) rather than in [0, 1]."""
        return self.generator.signed

    def __len__(self) -> int:
        return self.size

    def scene(self, index: int) -> Scene:
        """The raw :class:`Scene` (numpy, with pool indices) of item ``index``."""
        return self.generator.generate(self.split, scene_index(index, self.size), self.seed)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self.scene(index)
        return to_item(s.image, s.boxes, s.labels)


def scene_index(index: object, size: int) -> int:
    """The scene ``index`` names among ``size`` (a negative one counts from the end), as every
    dataset of scenes takes it: :class:`SceneDataset`, :class:`~mistnet.data.store.SceneFolder`.

    Raises:
        TypeError: no integer: 2.0 and True were taken as scenes 2 and 1, a slice gave numpy's
            errors.
        IndexError: out of range (ends iteration over the dataset).
    """
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"scene index must be an integer, got {index!r}")
    if not -size <= index < size:
        raise IndexError(f"scene index {validate.shown(index)} out of range for size {size}")
    return int(index) % size


_ITEM_KEYS = ("image", "boxes", "labels", "count")


def _check_item(item: object, i: int, first: dict | None) -> None:
    """Refuse an item that is not a scene item dict, or whose values are not what the batch
    holds: a KeyError or a torch error deep in the stacking, or a batch wrong without a word
    (labels 3.7 taken as 3, a count past the labels read as padding)."""
    if not isinstance(item, dict):
        raise TypeError(f"collate_scenes: items[{i}] must be a dict, got {type(item).__name__}")
    missing = [key for key in _ITEM_KEYS if key not in item]
    if missing:
        raise ValueError(
            f"collate_scenes: items[{i}] lacks {', '.join(map(repr, missing))} (a scene item "
            f"has {', '.join(_ITEM_KEYS)}: see SceneDataset)"
        )
    where = f"collate_scenes: items[{i}]"
    wrong = [key for key in _ITEM_KEYS if not isinstance(item[key], torch.Tensor)]
    if wrong:
        kind = type(item[wrong[0]]).__name__
        raise TypeError(f"{where}[{wrong[0]!r}] must be a tensor, got {kind}")
    for key in _ITEM_KEYS:  # meta: a raw error reading the count or boxes, a meta batch image
        validate.require_dense(item[key], f"{where}[{key!r}]")
    image, boxes, labels, count = (item[key] for key in _ITEM_KEYS)
    if image.dim() != 3 or not image.is_floating_point():
        raise ValueError(
            f"{where}['image'] must be a (C, H, W) float image, got {tuple(image.shape)} "
            f"{image.dtype}"
        )
    if first is not None and (image.shape, image.dtype) != (
        first["image"].shape,
        first["image"].dtype,
    ):
        raise ValueError(
            f"{where}['image'] is {tuple(image.shape)} {image.dtype}, items[0]['image'] "
            f"{tuple(first['image'].shape)} {first['image'].dtype}: a batch holds one size"
        )
    if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
        raise ValueError(
            f"{where}['boxes'] must be (N, 4) floats, got {tuple(boxes.shape)} {boxes.dtype}"
        )
    if labels.shape != boxes.shape[:1] or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f"{where}['labels'] must be ({boxes.shape[0]},) integers, one per box, got "
            f"{tuple(labels.shape)} {labels.dtype}"
        )
    if count.dim() != 0 or count.is_floating_point() or count.dtype == torch.bool:
        raise ValueError(f"{where}['count'] must be a 0-d integer tensor, got {count!r}")
    if not 0 <= int(count) <= boxes.shape[0]:
        raise ValueError(
            f"{where}['count'] is {int(count)}, outside 0..{boxes.shape[0]} (its boxes)"
        )


def collate_scenes(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack scene items into a batch, padding to the largest count in the batch.

    Args:
        items: list of B items with ``image`` ``(C, H, W)``, ``boxes`` ``(N_b, 4)``,
            ``labels`` ``(N_b,)``, ``count`` scalar.

    Returns:
        ``{"image": (B, C, H, W) float32, "boxes": (B, N, 4) float32 (padding 0),
        "labels": (B, N) int64 (padding -1), "count": (B,) int64}`` with ``N = max N_b``.

    Raises:
        TypeError: an item that is no dict, or a value that is no tensor.
        ValueError: no items; an item lacking a key, or whose tensor holds no values (meta,
            sparse: a :class:`~mistnet.errors.DataError`) or has another shape or dtype than
            the batch holds, naming the item and key.
    """
    if not items:
        raise ValueError("collate_scenes needs at least one item")
    for i, it in enumerate(items):
        _check_item(it, i, items[0] if i else None)
    B = len(items)
    counts = torch.stack([torch.as_tensor(it["count"], dtype=torch.int64) for it in items])
    N = int(counts.max()) if B else 0
    boxes = torch.zeros(B, N, 4, dtype=torch.float32)
    labels = torch.full((B, N), -1, dtype=torch.int64)
    for b, it in enumerate(items):
        n = int(it["count"])
        boxes[b, :n] = it["boxes"][:n]
        labels[b, :n] = it["labels"][:n]
    return {
        # float32 as documented: a float64 item made a float64 batch
        "image": torch.stack([it["image"] for it in items]).to(torch.float32),
        "boxes": boxes,
        "labels": labels,
        "count": counts,
    }
