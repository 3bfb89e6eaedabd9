"""Our on-disk dataset format: one ``<split>.npz`` per split plus ``manifest.json``.

Layout of a dataset directory::

    manifest.json      {"format": "mistnet-scenes", "version": 1, "name", "generator", "params",
                        "seed", "digits", "channels", "height", "width", "max_count", "dtype",
                        "splits": {"train": N, ...}, ...}
    train.npz          images (N, C, H, W) uint8 | float32, boxes (N, M, 4) float32 (cx, cy, w, h),
    val.npz, test.npz  labels (N, M) int64 (padding -1), counts (N,) int64

Optional manifest entries: ``"annotations"``, a subset of ``["boxes", "labels"]`` (absent:
both; without boxes the box arrays are zeros, without labels every instance has label 0 or
there are none, ``M = 0``), ``"classes"`` (label ``i``'s name), ``"split_digests"`` (each
split's content, :mod:`mistnet.data.checksums`). Files are plain ``.npz`` (no pickle), written
into a temporary sibling directory renamed into place at the end, so an interrupted or failed
write never leaves a half-written dataset. Any split may be absent. What the manifest and
the arrays must hold is checked by :mod:`mistnet.data.manifest`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mistnet.data.checksums import SPLIT_DIGESTS, arrays_digest, check_split_digest
from mistnet.data.dataset import SceneDataset, scene_index, to_item
from mistnet.data.digits import SPLITS, canonical_split
from mistnet.data.manifest import (
    ANNOTATIONS,
    ARRAY_KEYS,
    FORMAT,
    MANIFEST,
    VERSION,
    check_manifest,
    check_manifest_says,
    counted_instances,
    manifest_annotations,
    read_manifest,
    validate_arrays,
)
from mistnet.errors import ArgumentError, DataError, unprintable
from mistnet.io import json_text
from mistnet.locks import LOCK, exclusive_lock
from mistnet.markers import MARKER
from mistnet.outputs import claim_output, new_directory
from mistnet.ownership import require_only_own
from mistnet.textfile import read_json
from mistnet.validate import (
    NUMPY_READ_ERRORS,
    flag,
    own_file,
    path_argument,
    regular_file,
    require_directory,
    require_numpy_file,
    too_large_array,
)

#: The manifest entries :func:`write_dataset` writes itself, from its arguments and arrays.
WRITTEN_KEYS = frozenset(
    {"format", "version", "name", "splits", "channels", "height", "width", "dtype", "max_count"}
    | {SPLIT_DIGESTS}
)
#: The names in a dataset directory (:func:`mistnet.ownership.require_only_own`): ``--overwrite``
#: replaces no directory that holds anything else (``.lock``: held while it is replaced).
DATASET_FILES = (MARKER, MANIFEST, LOCK, *(f"{split}.npz" for split in SPLITS))


def annotations_of(dataset: Dataset) -> frozenset[str]:
    """Which ground truth (``"boxes"``, ``"labels"``) the items of ``dataset`` carry.

    Datasets without an ``annotations`` attribute (the scene generators) carry both.
    """
    return frozenset(getattr(dataset, "annotations", ANNOTATIONS))


def classes_of(dataset: Dataset) -> tuple[str, ...]:
    """The class names of ``dataset`` (index ``i`` names label ``i``), or ``()`` for none."""
    return tuple(getattr(dataset, "classes", ()))


def label_name(label: int, classes: tuple[str, ...] | list[str]) -> str:
    """The name of class ``label``, or its number when the classes have no names.

    Example:
        >>> label_name(1, ("cat", "dog")), label_name(3, ())
        ('dog', '3')
    """
    return classes[label] if 0 <= label < len(classes) else str(label)


def _save_npz(path: Path, arrays: dict[str, np.ndarray], compress: bool) -> None:
    save = np.savez_compressed if compress else np.savez
    with path.open("wb") as f:
        save(f, **{k: np.ascontiguousarray(arrays[k]) for k in ARRAY_KEYS})


def _check_write_arguments(out_dir, name, splits, manifest, compress, overwrite) -> None:
    """Refuse what :func:`write_dataset` refuses of its arguments, before anything on disk."""
    if not path_argument(out_dir, "out_dir"):
        raise ArgumentError("out_dir '' is an empty path; give the dataset directory to write")
    # "trained on the dataset , not ..."; "a/b" reads as a path (no text: check_manifest's)
    if isinstance(name, str) and (not name.strip() or "/" in name or os.sep in name):
        raise ArgumentError(f"name {name!r} must be a dataset name: not blank, no / in it")
    flag(compress, "compress")
    flag(overwrite, "overwrite")
    if not isinstance(splits, dict):
        raise TypeError(
            f"splits must be a dict of split name to arrays, got {type(splits).__name__}"
        )
    named: dict[str, str] = {}
    for split, arrays in splits.items():
        if not isinstance(split, str):
            raise TypeError(f"splits: a split is named by a string, got {split!r}")
        key = canonical_split(split)
        if key in named:
            raise ArgumentError(f"splits {named[key]!r} and {split!r} both name the {key} split")
        named[key] = split
        if not isinstance(arrays, dict):
            raise TypeError(
                f"splits[{split!r}] must be a dict of arrays, got {type(arrays).__name__}"
            )
        if wrong := [
            k for k in ARRAY_KEYS if not isinstance(arrays.get(k, np.empty(0)), np.ndarray)
        ]:
            kind = type(arrays[wrong[0]]).__name__
            raise TypeError(f"splits[{split!r}][{wrong[0]!r}] must be a numpy array, got {kind}")
    if manifest is not None and not isinstance(manifest, dict):
        raise TypeError(f"manifest must be a dict, got {type(manifest).__name__}")
    try:  # sorted as written: keys 1 and "a" passed here and failed in the write
        json_text(manifest or {}, sort_keys=True)
    except (TypeError, ValueError) as exc:  # numpy ints, sets, int keys, nesting past the limit
        raise type(exc)(f"manifest must hold JSON values only: {exc}") from None
    if taken := sorted(set(manifest or {}) & WRITTEN_KEYS):  # {"splits": 5} was replaced
        raise ArgumentError(
            f"manifest: {taken[0]!r} is written by write_dataset from the arrays; leave it out"
        )


def folder_name(folder: str | os.PathLike, fallback: str) -> str:
    """A dataset name taken from the folder it is imported from, as every reader takes one:
    control characters as ``?``, at most 200 characters (a folder's name may hold 255 bytes,
    and a tab)."""
    name = "".join("?" if unprintable(c) else c for c in Path(folder).name)
    return name[:200].strip() or fallback


def write_dataset(
    out_dir: str | os.PathLike,
    name: str,
    splits: dict[str, dict[str, np.ndarray]],
    manifest: dict | None = None,
    compress: bool = True,
    overwrite: bool = False,
    *,
    overwrite_option: str = "overwrite=True",
) -> Path:
    """Write a dataset atomically (temporary directory, then rename).

    Args:
        out_dir: target directory; must not exist (or be empty), or with ``overwrite`` be a
            dataset mistnet wrote (anything else is never replaced).
        name: dataset name (e.g. the generator name).
        splits: ``{split: arrays}`` with the arrays of :func:`validate_arrays`.
        manifest: extra manifest entries (generator, params, seed, digits, ...).
        compress: write ``np.savez_compressed`` (MNIST scenes shrink ~5×).
        overwrite: replace an existing dataset.
        overwrite_option: the caller's option that replaces a dataset, named when ``out_dir``
            is taken (:func:`claim_dataset`); ``""`` for the importers, which have none.

    Returns:
        The dataset directory.

    Raises:
        TypeError: ``out_dir`` no text, ``splits`` no dict of dicts of numpy arrays,
            ``compress`` or ``overwrite`` no bool, a manifest not of JSON values.
        ArgumentError: an empty ``out_dir``, a blank ``name`` or one with a ``/``, two keys of
            one split (``val`` and ``valid``), a manifest entry written from the arrays.
        MistError: the target exists and is not a dataset to overwrite, or inconsistent arrays.
        DataError: no split, or a manifest its readers would refuse (a name that is no short
            printable text, class names repeated or empty, a label past the classes).
    """
    _check_write_arguments(out_dir, name, splits, manifest, compress, overwrite)
    out = Path(out_dir)  # after the check: None, bytes failed here naming no argument
    claim_dataset(out, overwrite, overwrite_option=overwrite_option, option="out_dir")
    first = None
    for split, arrays in splits.items():
        validate_arrays(arrays, f"{out / canonical_split(split)}.npz")
        shape = arrays["images"].shape[1:], arrays["images"].dtype
        if first is None:
            first = shape
        elif shape[0] != first[0] or shape[1] != first[1]:
            raise DataError(f"{out}: splits disagree on image shape/dtype: {first} vs {shape}")
    meta = dict(manifest or {})
    if first is not None:
        (C, H, W), dtype = first
        meta.update(channels=int(C), height=int(H), width=int(W), dtype=str(dtype))
        meta["max_count"] = max(int(a["boxes"].shape[1]) for a in splits.values())
    meta.update(
        format=FORMAT,
        version=VERSION,
        name=name,
        splits={canonical_split(s): int(a["images"].shape[0]) for s, a in splits.items()},
    )
    saved = {s: {k: a[k] for k in ARRAY_KEYS if k in a} for s, a in splits.items()}  # as read
    meta[SPLIT_DIGESTS] = {canonical_split(s): arrays_digest(a) for s, a in saved.items()}
    if not splits:
        raise DataError(f"{out}: no split given; a dataset holds train, val or test scenes")
    check_manifest(meta, out / MANIFEST)  # what every reader would refuse, refused here
    for split, arrays in splits.items():
        check_manifest_says(meta, arrays, out / f"{canonical_split(split)}.npz")
    with dataset_directory(out, overwrite) as tmp:
        for split, arrays in splits.items():
            _save_npz(tmp / f"{canonical_split(split)}.npz", arrays, compress)
        (tmp / MANIFEST).write_text(json_text(meta, sort_keys=True) + "\n")
    return out


def is_dataset(directory: Path) -> bool:
    """Whether ``directory`` holds a manifest of this format (a dataset of any version)."""
    try:
        meta = read_json(directory / MANIFEST)
    except DataError:
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def claim_dataset(
    out: str | os.PathLike,
    overwrite: bool = False,
    inputs: Iterable[tuple[str, str | os.PathLike]] = (),
    overwrite_option: str = "",
    option: str = "--out",
    command: str = "mist data",
) -> bool:
    """Check that a dataset may be written to ``out``: a new directory, or (with
    ``overwrite``) a dataset that mistnet wrote and that holds nothing but its own files;
    returns whether one is replaced. ``inputs``: the folders it is made from (``("the image
    folder", SRC)``), which ``out`` may not lie in. ``overwrite_option``: the caller's option
    that replaces a dataset (``--overwrite`` of ``mist data make``), named in the refusal; the
    importers have none, so the refusal says only what they can do. ``option``: how the
    command names ``out`` (``OUT`` when positional); ``command`` the command writing it
    (``mist demo`` for its ``data/``).

    Raises:
        MistError: anything else at ``out``, or ``out`` inside another output or an input
            (see :func:`mistnet.outputs.claim_output`), or a dataset holding a file or folder of
            the user's (the first one is named).
    """
    existing = claim_output(
        out, "dataset", command, is_dataset, inputs, option=option, again=overwrite
    )
    if existing and not overwrite:
        also = f", or pass {overwrite_option} to replace it" if overwrite_option else ""
        raise DataError(
            f"{out}: already holds a dataset; choose another output directory or remove this "
            f"one{also}"
        )
    if existing:
        require_only_own(out, DATASET_FILES, "a dataset")
    return existing


def dataset_directory(
    out: str | os.PathLike, overwrite: bool = False
) -> AbstractContextManager[Path]:
    """A temporary directory that becomes the dataset ``out`` on success, never half-written.

    ``out`` is checked by :func:`claim_dataset`; see :func:`mistnet.outputs.new_directory`.
    Only a dataset there when it was claimed is replaced: one that another process wrote into
    a new or empty ``out`` meanwhile is left as it is, and this call refuses (both said they
    wrote it, one of them lost).
    """
    existing = claim_dataset(out, overwrite)
    own = ("a dataset", DATASET_FILES)  # checked again as the old one is replaced
    return new_directory(out, "dataset", replace=existing, legacy=is_dataset, own=own)


def replacing_dataset(out: str | os.PathLike, overwrite: bool) -> AbstractContextManager[None]:
    """Hold the dataset ``out`` that ``overwrite`` will replace (``.lock``, removed with it)
    while the new one is made: a second ``mist data make --overwrite`` of it refuses at once,
    instead of both saying they wrote it and one of them being lost. An empty folder (which
    the new dataset replaces) is not held: its ``.lock`` made it a folder of the user's, refused
    once every scene was made, and a kill left the lock there for ever."""
    if overwrite and Path(out).is_dir() and not Path(out).is_symlink() and is_dataset(Path(out)):
        return exclusive_lock(out, "mist data make", transient=True)
    return contextlib.nullcontext()


def load_split(directory: str | os.PathLike, split: str) -> tuple[dict[str, np.ndarray], dict]:
    """Load and validate the arrays of one split.

    Returns:
        ``(arrays, manifest)`` with the arrays of :func:`validate_arrays`.

    Raises:
        DataError: naming the file when missing, truncated or inconsistent, or the manifest
            when it does not list the split (a stray ``<split>.npz`` is not read).
    """
    d = Path(path_argument(directory, "directory", empty=False))  # None, b"", "": named
    meta = read_manifest(d)
    split = canonical_split(split)
    path = d / f"{split}.npz"
    have = sorted(meta.get("splits", {}))
    if split not in have and os.path.lexists(path):  # a stray file: not read as the split
        raise DataError(
            f"{d / MANIFEST}: lists no {split} split (have: {', '.join(have) or 'none'}), "
            f"though {path.name} is there; the dataset has no such split"
        )
    if not os.path.lexists(path):
        if split in have:
            raise DataError(f"{path}: missing, but the manifest lists the {split} split")
        raise DataError(
            f"{path}: split {split!r} not in this dataset (have: {', '.join(have) or 'none'})"
        )
    regular_file(own_file(path, "dataset directory"))  # a folder, FIFO or broken link: said so
    require_numpy_file(path, "split file")
    try:
        with np.load(path, allow_pickle=False) as z:
            twice = sorted({k for k in z.files if z.files.count(k) > 1})
            if twice:  # numpy reads the last, other zip readers the first
                raise DataError(f"{path}: holds the array {twice[0]!r} twice")
            arrays = {k: z[k] for k in ARRAY_KEYS if k in z.files}
        # a member whose .npy header is damaged reads as its raw bytes
        if raw := [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]:
            raise DataError(f"{path}: corrupt split file (the array {raw[0]!r} is no .npy array)")
    except MemoryError as exc:
        raise too_large_array(path, exc) from None
    except NUMPY_READ_ERRORS as exc:
        if "Object arrays cannot be loaded" in str(exc):  # pickled, not damaged
            raise DataError(
                f"{path}: holds an array of Python objects (pickled), which mistnet never "
                "unpickles; a split holds numeric arrays only"
            ) from None
        raise DataError(
            f"{path}: corrupt or truncated split file ({type(exc).__name__}: {exc})"
        ) from None
    validate_arrays(arrays, str(path))
    check_manifest_says(meta, arrays, path)
    expected = meta.get("splits", {}).get(split)
    if expected is not None and expected != arrays["images"].shape[0]:
        raise DataError(
            f"{path}: holds {arrays['images'].shape[0]} scenes, manifest says {expected}"
        )
    check_split_digest(meta, split, arrays, path)  # last: a damaged split is named as such
    return arrays, meta


class SceneFolder(Dataset):
    """A split of a dataset in our format, as a Dataset with the :class:`SceneDataset` item format.

    Args:
        directory: dataset directory (with ``manifest.json``).
        split: ``train``, ``val`` (``valid``) or ``test``.

    Attributes:
        manifest: the manifest dict. ``name``, ``channels``, ``height``, ``width``,
            ``max_count`` and ``signed`` as for scene datasets.
        annotations: the ground truth the items carry (see :func:`annotations_of`).
        classes: the class names, or ``()``.
        arrays: the validated numpy arrays (see :func:`validate_arrays`).
    """

    def __init__(self, directory: str | os.PathLike, split: str) -> None:
        self.directory = Path(path_argument(directory, "directory", empty=False))
        self.split = canonical_split(split)
        self.arrays, self.manifest = load_split(self.directory, self.split)
        _, self.channels, self.height, self.width = self.arrays["images"].shape
        self.max_count = int(self.arrays["boxes"].shape[1])
        self.name = str(self.manifest.get("name", self.directory.name))
        where = str(self.directory / MANIFEST)
        self.annotations, self.classes = manifest_annotations(self.manifest, where)

    @property
    def signed(self) -> bool:
        """Whether the images are stored as signed floats (Gabor) rather than uint8 in [0, 255]."""
        return self.arrays["images"].dtype.kind == "f"

    def __len__(self) -> int:
        return int(self.arrays["images"].shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = scene_index(index, len(self))  # 1.0, True, a slice: numpy's errors
        n = int(self.arrays["counts"][index])
        return to_item(
            self.arrays["images"][index],
            self.arrays["boxes"][index, :n],
            self.arrays["labels"][index, :n],
        )


def open_dataset(
    dir_or_name: str | os.PathLike,
    split: str,
    size: int | None = None,
    seed: int = 0,
    digits: str = "embedded",
    **kwargs,
) -> Dataset:
    """A Dataset from a dataset directory in our format, or on-the-fly scenes from a generator name.

    Args:
        dir_or_name: a directory holding ``manifest.json``, or a generator name such as
            ``"mnist-hard"`` (then ``size``, ``seed``, ``digits`` and ``kwargs`` apply).
        split: ``train``, ``val`` or ``test``.

    Raises:
        DataError: neither an existing dataset directory nor a known generator name.
        TypeError: ``dir_or_name`` is no path or name (bytes, None).
        ArgumentError: an empty ``dir_or_name``; a directory with ``size``, ``seed``,
            ``digits`` or ``kwargs`` (they would be ignored).
    """
    if not path_argument(dir_or_name, "dir_or_name"):
        raise ArgumentError("dir_or_name '' is empty; give a dataset directory or a generator name")
    path = Path(dir_or_name)
    if path.is_dir():
        given = {"size": size is not None, "seed": seed != 0, "digits": digits != "embedded"}
        if extra := [name for name, yes in given.items() if yes] + sorted(kwargs):
            raise ArgumentError(
                f"{path}: a dataset directory holds its scenes; {', '.join(extra)} apply to a "
                "generator's only"
            )
        return SceneFolder(path, split)
    if os.path.lexists(path):  # a file (or a link to nowhere) of that name, not a generator's
        require_directory(path, "dataset directory")
    if os.sep in str(dir_or_name) or path.suffix:
        raise DataError(f"{path}: no such dataset directory")
    return SceneDataset(str(dir_or_name), split, size=size, seed=seed, digits=digits, **kwargs)


__all__ = [
    "ANNOTATIONS",
    "SPLITS",
    "SceneFolder",
    "annotations_of",
    "dataset_directory",
    "folder_name",
    "classes_of",
    "counted_instances",
    "label_name",
    "load_split",
    "manifest_annotations",
    "open_dataset",
    "read_manifest",
    "validate_arrays",
    "write_dataset",
]
