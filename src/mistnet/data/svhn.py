"""SVHN format 1 (``digitStruct.mat`` + PNGs) with the paper's protocol (docs/design.md, Data).

Protocol:

- keep only images with exactly 2 digits;
- resize every image to H=60 × W=240 (anisotropic, bilinear) and scale its boxes with it;
- label 10 means digit 0;
- test: drop an image if any of its boxes is under 30 px tall in the resized frame;
- validation: a seeded 5% hold-out of the 2-digit train images.

Boxes are rectangles ``(cx, cy, w, h)`` in resized pixels. An SVHN box with ``left``, ``top``,
``width``, ``height`` covers pixel columns ``left .. left+width-1``, i.e. the continuous interval
``[left-0.5, left+width-0.5]``; a resize by ``s`` maps continuous ``x`` to ``(x+0.5)s-0.5``, so
``cx = (left + width/2) s - 0.5`` and ``w = width s``.

``digitStruct.mat`` is a MATLAB v7.3 (HDF5) file: ``/digitStruct/name`` and
``/digitStruct/bbox`` are ``(N, 1)`` columns of object references. Each bbox group has datasets
``height``, ``label``, ``left``, ``top``, ``width``, each a ``(1, 1)`` value when the picture has
one digit or a ``(n, 1)`` column of references to ``(1, 1)`` values otherwise. ``h5py`` is
imported only here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mistnet.errors import DataError
from mistnet.imagefile import open_image
from mistnet.validate import inside, require_directory, require_float32

SVHN_HEIGHT = 60
SVHN_WIDTH = 240
SVHN_DIGITS = 2
MIN_TEST_BOX_HEIGHT = 30.0
VAL_FRACTION = 0.05
_FIELDS = ("height", "label", "left", "top", "width")


@dataclass
class SvhnRecord:
    """One picture of ``digitStruct.mat``: file name and per-digit box fields (float64 arrays)."""

    name: str
    left: np.ndarray
    top: np.ndarray
    width: np.ndarray
    height: np.ndarray
    label: np.ndarray


def _read_string(f, ref) -> str:
    data = np.asarray(f[ref]).reshape(-1)
    return "".join(chr(int(c)) for c in data)


def _read_field(f, ds) -> np.ndarray:
    import h5py

    if h5py.check_dtype(ref=ds.dtype) is not None:
        refs = np.asarray(ds).reshape(-1)
        return np.array([float(np.asarray(f[r]).reshape(-1)[0]) for r in refs], dtype=np.float64)
    return np.asarray(ds, dtype=np.float64).reshape(-1)


def _checked(path: Path, r: SvhnRecord) -> SvhnRecord:
    """``r`` once its labels are digit labels (integers 1..10) and its boxes finite numbers
    with sides > 0; else a :class:`DataError` naming ``path`` and the picture."""
    where = f"{path}: picture {r.name!r}"
    bad = r.label[(r.label != np.round(r.label)) | (r.label < 1) | (r.label > 10)]
    if bad.size:  # NaN compares unequal to itself: caught by the first test
        raise DataError(f"{where}: label {bad[0]:g} is no digit label (1..10, 10 for digit 0)")
    for key in ("left", "top", "width", "height"):
        value = getattr(r, key)
        if not np.isfinite(value).all():
            raise DataError(f"{where}: {key} {value[~np.isfinite(value)][0]} is not finite")
    for key in ("width", "height"):
        value = getattr(r, key)
        if (value <= 0).any():
            raise DataError(f"{where}: {key} {value[value <= 0][0]:g} is not > 0")
    return r


def read_digit_struct(path: str | os.PathLike, progress: bool = True) -> list[SvhnRecord]:
    """Read every picture's name and boxes from an SVHN ``digitStruct.mat``.

    Raises:
        DataError: naming the file when it is missing, not HDF5 or lacks the expected fields,
            and the picture when a label is no integer in 1..10 or a box is not finite.
    """
    try:
        import h5py
    except ImportError:
        raise DataError("reading SVHN needs h5py (pip install 'mistnet[svhn]')") from None
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing SVHN digitStruct.mat")
    records = []
    try:
        with h5py.File(path, "r") as f:
            ds = f["digitStruct"]
            names = np.asarray(ds["name"]).reshape(-1)
            boxes = np.asarray(ds["bbox"]).reshape(-1)
            if names.size != boxes.size:
                raise DataError(f"{path}: {names.size} names but {boxes.size} bbox entries")
            for nref, bref in tqdm(
                zip(names, boxes, strict=True),
                total=names.size,
                desc=f"read {path.parent.name}/{path.name}",
                disable=not progress or names.size < 2000,
            ):
                group = f[bref]
                fields = {k: _read_field(f, group[k]) for k in _FIELDS}
                n = {v.size for v in fields.values()}
                if len(n) != 1:
                    raise DataError(f"{path}: bbox fields of different lengths")
                records.append(_checked(path, SvhnRecord(name=_read_string(f, nref), **fields)))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"{path}: not a valid SVHN digitStruct.mat ({type(exc).__name__}: {exc})"
        ) from None
    return records


#: The PIL modes of 8-bit pictures, which ``convert("RGB")`` reads as they are.
_EIGHT_BIT = ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr")


def _require_inside(b: np.ndarray, where: str) -> None:
    """Refuse resized boxes ``(cx, cy, w, h)`` of side 0 in float32 or wholly outside the
    resized picture: the dataset's own check named its ``train.npz``, not the picture."""
    b32 = b.astype(np.float32)
    for i, (cx, cy, w, h) in enumerate(b32.tolist()):
        if not (w > 0 and h > 0):
            raise DataError(f"{where}: box {i} is of side 0 once resized (w {w:g}, h {h:g})")
        if (
            cx + w / 2 <= -0.5
            or cx - w / 2 >= SVHN_WIDTH - 0.5
            or cy + h / 2 <= -0.5
            or (cy - h / 2 >= SVHN_HEIGHT - 0.5)
        ):
            raise DataError(f"{where}: box {i} lies wholly outside the picture")


def load_svhn_split(
    directory: str | os.PathLike, test: bool, progress: bool = True
) -> dict[str, np.ndarray]:
    """Load one SVHN folder (``train/`` or ``test/``) under the paper's protocol.

    Args:
        directory: folder with ``digitStruct.mat`` and the PNGs.
        test: apply the test filter (drop images with any resized box under 30 px tall).

    Returns:
        ``images`` uint8 ``(N, 3, 60, 240)``, ``boxes`` float32 ``(N, 2, 4)``, ``labels`` int64
        ``(N, 2)``, ``counts`` int64 ``(N,)`` (all 2), ``names`` the kept file names (list).
    """

    d = Path(directory)
    records = [
        r for r in read_digit_struct(d / "digitStruct.mat", progress) if r.label.size == SVHN_DIGITS
    ]
    images, boxes, labels, names = [], [], [], []
    listed: dict[Path, int] = {}  # each picture (resolved) -> its first record
    mat = d / "digitStruct.mat"
    shown = tqdm(records, desc=f"load {d.name}", disable=not progress or len(records) < 2000)
    for i, r in enumerate(shown):
        p = inside(d, r.name, mat)
        first = listed.setdefault(p.resolve(), i)
        if first != i:  # it went into train and val at once, or twice into one
            raise DataError(
                f"{mat}: picture {r.name!r} is listed twice (as {records[first].name!r}); "
                "list it once"
            )
        with open_image(p) as im:  # a regular file of at most DEFAULT_MAX_PIXELS, decoded
            if im.mode not in _EIGHT_BIT:  # convert("RGB") clipped 16-bit values at 255
                raise DataError(f"{p}: a {im.mode} picture; SVHN's pictures are 8-bit colour")
            W0, H0 = im.size
            resized = im.convert("RGB").resize((SVHN_WIDTH, SVHN_HEIGHT), Image.BILINEAR)
            arr = np.asarray(resized, dtype=np.uint8)
        sx, sy = SVHN_WIDTH / W0, SVHN_HEIGHT / H0
        b = np.stack(
            [
                (r.left + r.width / 2) * sx - 0.5,
                (r.top + r.height / 2) * sy - 0.5,
                r.width * sx,
                r.height * sy,
            ],
            axis=1,
        )
        require_float32(b, f"{mat}: picture {r.name!r}: its resized box")
        _require_inside(b, f"{mat}: picture {r.name!r}")
        if test and (b[:, 3] < MIN_TEST_BOX_HEIGHT).any():
            continue
        images.append(arr.transpose(2, 0, 1))
        boxes.append(b)
        labels.append(np.where(r.label == 10, 0, r.label).astype(np.int64))
        names.append(r.name)
    n = len(images)
    return {
        "images": np.stack(images) if n else np.zeros((0, 3, SVHN_HEIGHT, SVHN_WIDTH), np.uint8),
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(n, SVHN_DIGITS, 4),
        "labels": np.asarray(labels, dtype=np.int64).reshape(n, SVHN_DIGITS),
        "counts": np.full(n, SVHN_DIGITS, dtype=np.int64),
        "names": names,
    }


def load_svhn(
    directory: str | os.PathLike, seed: int = 0, progress: bool = True
) -> dict[str, dict[str, np.ndarray]]:
    """Load SVHN ``train/`` and ``test/`` folders into train / val / test splits.

    The validation split is a seeded 5% hold-out (at least one image) of the 2-digit train images;
    both parts keep their original order.

    Returns:
        ``{"train": arrays, "val": arrays, "test": arrays}`` (each as :func:`load_svhn_split`).
    """
    root = require_directory(directory, "folder of SVHN")  # a file: "FILE/train: missing"
    for sub in ("train", "test"):
        if not (root / sub).is_dir():
            raise DataError(f"{root / sub}: missing SVHN folder (expected train/ and test/)")
    train = load_svhn_split(root / "train", test=False, progress=progress)
    test = load_svhn_split(root / "test", test=True, progress=progress)
    n = train["images"].shape[0]
    # training refuses an empty train or val split, evaluation an empty test one
    if n < 2:
        raise DataError(
            f"{root / 'train'}: {n} picture(s) of two digits; SVHN's train and val splits need "
            "at least 2"
        )
    if not len(test["images"]):
        raise DataError(
            f"{root / 'test'}: 0 picture(s) of two digits with both boxes 30 px tall once "
            "resized; SVHN's test split needs at least 1"
        )
    n_val = max(1, int(round(VAL_FRACTION * n))) if n > 1 else 0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 5]))
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.choice(n, size=n_val, replace=False)] = True

    def take(mask: np.ndarray) -> dict[str, np.ndarray]:
        out = {k: v[mask] for k, v in train.items() if k != "names"}
        out["names"] = [nm for nm, m in zip(train["names"], mask, strict=True) if m]
        return out

    return {"train": take(~is_val), "val": take(is_val), "test": test}
