"""What a dataset's files must hold, checked where they are read and written: the manifest
(:func:`read_manifest`, :func:`check_manifest`) and each split's arrays (:func:`validate_arrays`,
and :func:`check_manifest_says` for the two together). The format is :mod:`mistnet.data.store`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mistnet.data.digits import SPLITS
from mistnet.errors import DataError
from mistnet.markers import output_kind
from mistnet.textfile import read_json
from mistnet.validate import class_names, own_file, printable, require_directory, require_finite

FORMAT = "mistnet-scenes"
VERSION = 1

MANIFEST = "manifest.json"
ARRAY_KEYS = ("images", "boxes", "labels", "counts")
#: The ground truth a dataset can carry; a dataset's ``annotations`` is a subset.
ANNOTATIONS: frozenset[str] = frozenset({"boxes", "labels"})


def manifest_annotations(meta: dict, where: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """The ``annotations`` and ``classes`` entries of a manifest, checked.

    Raises:
        DataError: not a subset of ``["boxes", "labels"]``, or class names that are not
            distinct non-empty strings.
    """
    found = meta.get("annotations", sorted(ANNOTATIONS))
    if not isinstance(found, list) or not set(found) <= ANNOTATIONS:
        raise DataError(f"{where}: annotations must be a subset of {sorted(ANNOTATIONS)}")
    names = meta.get("classes", [])
    try:
        return frozenset(found), class_names(names, f"{where}: classes")
    except TypeError as exc:  # a file's content: a data error like the rest
        raise DataError(str(exc)) from None


def validate_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Check the shapes, dtypes, values and padding of one split's arrays.

    Float images and every box are finite; the instances each scene counts have class ids
    >= 0 (a negative one would be dropped from the metrics as padding) and boxes whose width
    and height are not negative, each touching the image (pixel centres at integers: the image
    spans -0.5 .. W - 0.5). Whether the labels fit a model's classes is a run's check
    (:func:`mistnet.data.runs.check_data`).

    Args:
        arrays: ``images (N,C,H,W)``, ``boxes (N,M,4)``, ``labels (N,M)``, ``counts (N,)``.
        where: file name used in the error message.

    Raises:
        DataError: naming ``where`` and the array for any inconsistency.
    """
    if missing := [k for k in ARRAY_KEYS if k not in arrays]:
        raise DataError(f"{where}: missing arrays {missing}")
    im, bx, lb, ct = (arrays[k] for k in ARRAY_KEYS)
    if im.ndim != 4 or im.dtype not in (np.uint8, np.float32) or im.shape[1] not in (1, 3):
        raise DataError(
            f"{where}: images must be (N,C,H,W) uint8/float32 with C = 1 or 3, got {im.shape} "
            f"{im.dtype}"
        )
    N = im.shape[0]
    scenes = {k: arrays[k].shape[0] for k in ARRAY_KEYS if arrays[k].ndim}
    if len(set(scenes.values())) > 1:  # images cut short was blamed on the boxes
        counts = ", ".join(f"{k} {n}" for k, n in scenes.items())
        raise DataError(f"{where}: the arrays hold different numbers of scenes ({counts})")
    if bx.ndim != 3 or bx.shape[0] != N or bx.shape[2] != 4 or bx.dtype != np.float32:
        raise DataError(f"{where}: boxes must be ({N},M,4) float32, got {bx.shape} {bx.dtype}")
    M = bx.shape[1]
    if lb.shape != (N, M) or lb.dtype != np.int64:
        raise DataError(f"{where}: labels must be ({N},{M}) int64, got {lb.shape} {lb.dtype}")
    if ct.shape != (N,) or ct.dtype != np.int64:
        raise DataError(f"{where}: counts must be ({N},) int64, got {ct.shape} {ct.dtype}")
    if N and (ct.min() < 0 or ct.max() > M):
        raise DataError(f"{where}: counts outside 0..{M}")
    require_finite(im, f"{where}: images")
    require_finite(bx, f"{where}: boxes")
    counted = counted_instances(ct, M)
    if (lb[counted] < 0).any():
        raise DataError(f"{where}: labels of counted instances must be class ids >= 0")
    boxes = bx[counted]
    if (boxes[:, 2:] < 0).any():
        raise DataError(f"{where}: boxes of counted instances must have width and height >= 0")
    _, _, H, W = im.shape
    lo, hi = boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2
    outside = (hi <= -0.5).any(axis=1) | (lo >= np.float32([W - 0.5, H - 0.5])).any(axis=1)
    if outside.any():  # an instance no detection can find: scored as a miss whatever the model
        cx, cy, w, h = boxes[outside][0].tolist()
        raise DataError(
            f"{where}: a box (cx, cy, w, h) = ({cx:g}, {cy:g}, {w:g}, {h:g}) lies wholly outside "
            f"the {W}x{H} image; {int(outside.sum())} such box(es)"
        )


def counted_instances(counts: np.ndarray, max_count: int) -> np.ndarray:
    """``(N, M)`` bool: which of the ``M`` slots of each scene hold an instance (index < count)."""
    return np.arange(max_count)[None, :] < counts[:, None]


def official_lists(directory: Path) -> bool:
    """Whether ``directory`` holds an official layout's lists: a mode's ``<mode>.txt`` beside
    its ``<mode>_labels.txt`` (a ``train.txt`` alone may be a user's list of images)."""
    modes = ("train", "valid", "test")
    return any((directory / f"{m}.txt").is_file() for m in modes) and any(
        (directory / f"{m}_labels.txt").is_file() for m in modes
    )


def read_manifest(directory: str | os.PathLike) -> dict:
    """Read and check ``manifest.json`` of a dataset directory.

    Raises:
        DataError: missing directory/manifest, invalid JSON or a foreign format.
    """
    d = Path(directory)
    path = d / MANIFEST
    if d.exists() and not d.is_dir():
        require_directory(d, "dataset directory")
    if not d.is_dir():
        raise DataError(f"{d}: no such dataset directory")
    if not os.access(d, os.X_OK):  # cannot enter it: was "missing dataset manifest"
        raise DataError(f"{d}: this user cannot enter it, so it is read as no dataset")
    if not os.path.lexists(path):  # a link loop or to nowhere is named as such by read_json
        kind = output_kind(d)  # an official layout, a run: said what it is and what reads it
        if kind is None and official_lists(d):  # one the official code made: no marker
            kind = "official"
        what = {
            "official": "an official layout: mist data import-official reads it",
            "demo": f"a demo's folder, whose dataset is {d / 'data'}",
        }.get(kind or "", f"a mistnet {kind} directory" if kind else "")
        raise DataError(
            f"{path}: missing dataset manifest (not a mistnet dataset directory"
            + (f"; {what})" if what else ")")
        )
    return check_manifest(read_json(own_file(path, "dataset directory")), path)


def check_manifest(meta: object, path: Path) -> dict:
    """``meta`` once it is a manifest every reader takes: the format, a version this mistnet
    reads (:data:`VERSION` or older), split counts, a short printable name, distinct class
    names (:func:`~mistnet.validate.class_names`). The writer checks what it writes with it
    too (:func:`write_dataset`).

    Raises:
        DataError: naming ``path`` and the first entry at fault.
    """
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path}: not a {FORMAT} manifest")
    version = meta.get("version", VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DataError(f"{path}: 'version' must be a whole number >= 1, got {version!r}")
    if version > VERSION:  # its arrays or entries may mean what this mistnet cannot read
        raise DataError(
            f"{path}: version {version} was made by a newer mistnet (this one reads version "
            f"{VERSION}); upgrade mistnet to read it"
        )
    splits = meta.get("splits", {})
    allowed = f"'splits' must map {', '.join(SPLITS)} to scene counts >= 0"
    if not isinstance(splits, dict):
        raise DataError(f"{path}: {allowed}, got a {type(splits).__name__}")
    for split, n in splits.items():
        if split not in SPLITS or isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise DataError(f"{path}: {allowed}, got {split!r}: {n!r}")
    name = meta.get("name", "")
    if not isinstance(name, str):
        raise DataError(f"{path}: 'name' must be text, got {name!r}")
    if len(name) > 200:  # a title of a million characters held data show for minutes
        raise DataError(f"{path}: 'name' has {len(name):,} characters; at most 200")
    if not name.strip() or "/" in name or os.sep in name:  # as the writer refuses it: a
        # run trained on it recorded a data.name its config.json could not be read with
        raise DataError(f"{path}: 'name' {name!r} must be a dataset name: not blank, no / in it")
    printable(name, f"{path}: name", "the name is printed in lines and figures")
    manifest_annotations(meta, str(path))  # the class names (a TypeError is the file's fault)
    return meta


def check_manifest_says(meta: dict, arrays: dict[str, np.ndarray], path: Path) -> None:
    """Refuse a split whose arrays are not what its manifest says (an edited or foreign
    manifest): the image size, channels and dtype it records, a label for each class it
    names, and boxes it claims (a box of side 0 is none: detection would be scored against
    nothing)."""
    _, C, H, W = arrays["images"].shape
    found = {"channels": C, "height": H, "width": W, "dtype": str(arrays["images"].dtype)}
    for key, value in found.items():
        if key in meta and meta[key] != value:
            raise DataError(
                f"{path.parent / MANIFEST}: {key} is {meta[key]!r} but {path.name} holds {value!r}"
            )
    counted = counted_instances(arrays["counts"], arrays["boxes"].shape[1])
    names, labels = meta.get("classes") or (), arrays["labels"][counted]
    if names and labels.size and int(labels.max()) >= len(names):  # else drawn half by number
        raise DataError(
            f"{path.parent / MANIFEST}: classes names {len(names)} classes but {path.name} "
            f"holds label {int(labels.max())}"
        )
    boxes = arrays["boxes"][counted]
    claimed, _ = manifest_annotations(meta, str(path.parent / MANIFEST))  # as readers read it
    if "boxes" in claimed and (boxes[:, 2:] <= 0).any():
        said = "names boxes" if "annotations" in meta else "absent (read as boxes and labels)"
        raise DataError(
            f"{path.parent / MANIFEST}: annotations {said}, but {path.name} holds boxes of side 0 "
            "(none were given)"
        )
