"""The ground truth of one's own images: a labels CSV, a boxes CSV or COCO annotations, read
into a :class:`Truth` per image (the formats: :mod:`mistnet.data.images`).

Every reader refuses malformed input with one :class:`~mistnet.errors.DataError` line naming the
file, the row or annotation, and the value; boxes reaching past their image are clipped with a
warning (:func:`fit_boxes`).
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mistnet.data.imagefiles import IMAGE_SUFFIXES
from mistnet.errors import DataError, MistWarning
from mistnet.imagefile import stored_size
from mistnet.textfile import read_json, read_text
from mistnet.validate import class_name, require_float32


@dataclass
class Truth:
    """The ground truth of one image (or crop): ``n`` instances.

    ``boxes`` ``(n, 4)`` (cx, cy, w, h), or None when only labels are known; ``names`` the ``n``
    class names (``""`` for a box without a class); ``size`` the ``(width, height)`` the
    annotations declare for the image (COCO), checked against the file by :func:`fit_boxes`.
    """

    boxes: np.ndarray | None
    names: list[str]
    size: tuple[int, int] | None = None


def _resolver(root: Path, images: list[Path], where: str):
    """A function from a file name in an annotation file to the relative path of its image.

    A name is the path relative to the folder (``/`` separators), a path from the working
    directory to an image in the folder (as ``mist detect`` writes them), or a bare file name
    when that names one image only. The name as written is tried first (a file may be named
    ``a\\b.png`` or `` c.png``), then with its end spaces stripped and ``\\`` read as ``/``.
    """
    rel = {p.relative_to(root).as_posix(): p.relative_to(root).as_posix() for p in images}
    # The same name in another Unicode normal form (macOS writes "cafe\u0301.png" for
    # "café.png"): matched when it names one file only.
    nfc: dict[str, list[str]] = {}
    for r in rel:
        nfc.setdefault(unicodedata.normalize("NFC", r), []).append(r)
    real_root = root.resolve()
    bare: dict[str, list[str]] = {}  # by the name's NFC form, as nfc
    for r in rel:
        bare.setdefault(unicodedata.normalize("NFC", r.rsplit("/", 1)[-1]), []).append(r)

    def _found(path: Path) -> str | None:  # the image at path (a//b, a/./b, a/c/../b too)
        real = _inside(path, real_root)
        return real.as_posix() if real is not None and real.as_posix() in rel else None

    def match(name: str, written: str, line: str) -> str | None:
        same = nfc.get(unicodedata.normalize("NFC", name), [])
        inside = name if name in rel else same[0] if len(same) == 1 else _found(root / name)
        here = _found(Path(name))  # from the working directory
        if inside and here and inside != here:  # the first was taken without a word
            raise DataError(
                f"{where} {line}: {written!r} is {inside} inside {root} but {here} from the "
                "working directory; write it as an absolute path"
            )
        if inside or here:
            return inside or here
        hits = bare.get(unicodedata.normalize("NFC", name), [])
        if len(hits) > 1:
            raise DataError(f"{where} {line}: {written!r} matches {', '.join(hits)}; give the path")
        return hits[0] if hits else None

    def resolve(written: str, line: str) -> str:
        if "\0" in written:  # no file has one: the OS refuses such a name outright
            raise DataError(
                f"{where} {line}: {written!r} holds a NUL character; no file is named so"
            )
        clean = written.strip().replace("\\", "/").removeprefix("./")
        for name in dict.fromkeys((written, clean)):
            found = match(name, written, line)
            if found is not None:
                return found
        for name in dict.fromkeys((written, clean)):
            for path in (root / name, Path(name)):
                hidden = _inside(path, real_root)
                if hidden and path.is_file() and any(p.startswith(".") for p in hidden.parts):
                    raise DataError(
                        f"{where} {line}: {written!r} is a hidden file ({hidden.as_posix()}: "
                        "a name starting with '.'); import-images skips hidden files and "
                        "folders (rename it to import it, or drop the row)"
                    )
                if hidden and path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
                    raise DataError(  # there, skipped for its name: "no image" said otherwise
                        f"{where} {line}: {written!r} is no image file by its name (one ends "
                        f"in {', '.join(IMAGE_SUFFIXES)}): import-images skipped it; rename it "
                        "to import it, or drop the row"
                    )
        raise DataError(f"{where} {line}: no image {written!r} under {root}")

    return resolve


def _inside(path: Path, real_root: Path) -> Path | None:
    """``path`` relative to the folder ``real_root`` (resolved) when it lies inside it."""
    try:
        real = path.resolve()
    except (UnicodeEncodeError, OSError, RuntimeError):  # a lone surrogate: no file's name
        return None
    return real.relative_to(real_root) if real.is_relative_to(real_root) else None


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The rows of the CSV file ``path`` that hold anything, each with the number of the line
    it ends on (blank lines skipped, but counted: messages name the line an editor shows)."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # a stray quote: refused
    rows = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        # "unexpected end of data": a quote opened and never closed
        hint = "; an unclosed quote?" if "end of data" in str(exc) else ""
        raise DataError(
            f"{path} line {reader.line_num}: not a readable CSV file ({exc}{hint})"
        ) from None
    return rows


#: The header lines a labels CSV may start with (any case).
_LABELS_HEADERS = {(f, c) for f in ("filename", "image") for c in ("labels", "label")}


def read_labels(path: str | os.PathLike, root: Path, images: list[Path]) -> dict[str, Truth]:
    """``filename,labels`` rows -> ``{relative path: Truth(None, names)}``, one per image.

    Raises:
        DataError: not a CSV, a row without two fields, a file named twice or not under
            ``root``, or an image without a row.
    """
    path = Path(path)
    if path.is_dir():  # was "unknown labels format"
        raise DataError(f"{path}: a directory, not a labels file (a CSV file filename,labels)")
    if path.suffix.lower() != ".csv":
        raise DataError(f"{path}: unknown labels format (a CSV file filename,labels)")
    resolve = _resolver(root, images, str(path))
    rows = _csv_rows(path)
    if rows and tuple(c.strip().lower() for c in rows[0][1]) in _LABELS_HEADERS:
        rows = rows[1:]
    truth: dict[str, Truth] = {}
    for i, row in rows:
        if len(row) != 2:
            raise DataError(f"{path} line {i}: expected filename,labels, got {len(row)} fields")
        rel = resolve(row[0], f"line {i}")
        if rel in truth:
            raise DataError(f"{path} line {i}: {rel} has a row already")
        names = [n for n in re.split("[ \t]", row[1]) if n]  # not str.split(): NBSP, \x1c
        truth[rel] = Truth(None, [class_name(n, f"{path} line {i}") for n in names])
    for p in images:
        rel = p.relative_to(root).as_posix()
        if rel not in truth:
            raise DataError(f"{path}: no row for {rel} (an empty labels field means no object)")
    return truth


def _column(header: list[str], *names: str) -> int | None:
    for name in names:
        if name in header:
            return header.index(name)
    return None


#: The columns a boxes CSV may name (another would be dropped silently: labels lost); the
#: ``score`` of the CSV ``mist detect`` writes is read back and not used.
_BOX_COLUMNS = frozenset(
    ("filename", "image", "cx", "cy", "w", "h", "x", "y", "side", "class", "label", "score")
)


def _boxes_csv(path: Path, resolve) -> tuple[dict[str, Truth], list[str] | None]:
    rows = _csv_rows(path)
    if not rows:
        raise DataError(f"{path}: empty boxes file")
    header = [c.strip().lower() for c in rows[0][1]]
    file_col = _column(header, "filename", "image")
    if file_col is None:  # a first row of data, most likely: say what the header is
        raise DataError(
            f"{path}: the first line is no header; it must name filename (or image) and "
            "cx,cy,w,h (or x,y,side)"
        )
    twice = sorted({c for c in header if c and header.count(c) > 1})
    if twice:
        raise DataError(f"{path}: the header names {', '.join(twice)} more than once")
    unknown = [c for c in header if c not in _BOX_COLUMNS]  # a class column as "category"
    if unknown:
        raise DataError(
            f"{path}: the header names {unknown[0]!r}, which import-images does not read (it "
            "reads filename or image, cx,cy,w,h or x,y,side, class or label, score); rename or drop it"
        )
    for one, other in (("filename", "image"), ("class", "label")):  # a column dropped silently
        if one in header and other in header:
            raise DataError(f"{path}: the header names both {one} and {other}; keep one")
    centre = [_column(header, n) for n in ("cx", "cy", "w", "h")]
    side = [_column(header, n) for n in ("x", "y", "side")]
    class_col = _column(header, "class", "label")
    if file_col is None or (None in centre and None in side):
        raise DataError(
            f"{path}: the header must name filename (or image) and cx,cy,w,h (or x,y,side)"
        )
    if None not in centre and None not in side:
        raise DataError(f"{path}: the header names both cx,cy,w,h and x,y,side; keep one")
    cols = centre if None not in centre else [*side, side[2]]
    truth: dict[str, Truth] = {}
    seen: dict[tuple, int] = {}  # (file, box, class) -> line: one instance twice counts twice
    unnamed = 0  # the first line whose class is empty
    for i, row in rows[1:]:
        # more fields than the header names: a value no column takes (a class without a
        # "class" column) would be dropped silently
        if max(file_col, *cols, class_col or 0) >= len(row) or len(row) > len(header):
            raise DataError(f"{path} line {i}: {len(row)} fields, the header names {len(header)}")
        rel = resolve(row[file_col], f"line {i}")
        try:
            # float("1_0") is 10 and float("١٢") 12: Python's numbers, not a CSV file's
            if any("_" in row[c] or not row[c].isascii() for c in cols):
                raise ValueError
            values = [float(row[c]) for c in cols]
        except ValueError:
            raise DataError(
                f"{path} line {i}: expected numbers in {', '.join(header[c] for c in cols)}, "
                f"got {', '.join(row[c] for c in cols)}"
            ) from None
        if not all(np.isfinite(values)) or values[2] <= 0 or values[3] <= 0:
            raise DataError(f"{path} line {i}: a box needs finite numbers and a positive size")
        name = class_name(
            row[class_col].strip() if class_col is not None else "", f"{path} line {i}"
        )
        unnamed = unnamed or (i if not name else 0)
        box = _float32_box(values, f"{path} line {i}")
        first = seen.setdefault((rel, (box + 0.0).tobytes(), name), i)  # -0.0 is 0.0
        if first != i:
            raise DataError(
                f"{path} lines {first} and {i}: the same box of {rel} given twice (it would be "
                "counted as two instances); give each box once"
            )
        entry = truth.setdefault(rel, Truth(np.zeros((0, 4), np.float32), []))
        entry.boxes = np.concatenate([entry.boxes, box])
        entry.names.append(name)
    if class_col is None:
        return truth, None
    names = sorted({n for t in truth.values() for n in t.names}, key=class_key)
    if names == [""]:  # a class column left empty (mist detect of an auto-encoder): no classes
        return truth, None
    if "" in names:
        raise DataError(f"{path} line {unnamed}: an empty class; name every box's class or none")
    return truth, names


def _float32_box(values: list[float], where: str) -> np.ndarray:
    """``(1, 4)`` float32 of a box's ``values``, refused (naming ``where``, the input) when
    one is too large for float32 (1e39 would become infinite in the dataset) or a side too
    small (1e-50 would become 0)."""
    shown = f"{where}: the box {', '.join(f'{v:g}' for v in values)}"
    require_float32(values, shown)
    box = np.float32([values])
    if (box[0, 2:] <= 0).any():  # a side of 1e-50 is 0 in float32: a box of no size
        raise DataError(f"{shown} has a side too small for float32 (it would be 0)")
    return box


def _coco_list(doc: dict, key: str, path: Path) -> list[dict]:
    if key not in doc:  # was "must be a list", as if one were written
        raise DataError(
            f"{path}: no {key!r} key (COCO annotations have images, annotations, categories)"
        )
    items = doc[key]
    if not isinstance(items, list) or not all(isinstance(v, dict) for v in items):
        raise DataError(f"{path}: {key!r} must be a list of objects (COCO annotations)")
    return items


def _whole(value: object) -> int | None:
    """``value`` as an ``int`` if it is one or a float of a whole value within int64 (``1.0``,
    as COCO written through pandas or numpy has it; pycocotools reads it), else None (``1.5``,
    NaN, infinity, a bool, a string)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return None


def _coco_field(item: dict, key: str, kind: type, where: str):
    """``item[key]`` if it is a ``kind`` (an ``int`` id, see :func:`_whole`, or a non-empty
    ``str``)."""
    if key not in item:  # "expected an integer, got None" of a key that is not there
        raise DataError(f"{where}: no {key!r} key")
    value = item[key]
    if kind is int:
        if (whole := _whole(value)) is None:
            raise DataError(f"{where}.{key}: expected an integer, got {value!r}")
        return whole
    if kind is str and (not isinstance(value, str) or not value.strip()):
        raise DataError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _coco_bbox(item: dict, where: str) -> list[float]:
    if "bbox" not in item:
        raise DataError(f"{where}: no 'bbox' key")
    bbox = item["bbox"]
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
    ):
        raise DataError(f"{where}.bbox: expected [x, y, w, h], got {bbox!r}")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except OverflowError:  # an integer of hundreds of digits
        raise DataError(f"{where}.bbox: a number beyond the range of floats") from None
    if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0):
        raise DataError(f"{where}.bbox: expected finite numbers, w and h > 0, got {bbox!r}")
    return [x, y, w, h]


def _coco_not_crowd(item: dict, where: str) -> None:
    """Refuse a crowd annotation (``iscrowd`` 1): one box over many instances, whose number
    the image's instance count and label multiset would then get wrong."""
    crowd = item.get("iscrowd", 0)
    if not (isinstance(crowd, bool) or _whole(crowd) in (0, 1)):  # false/true are 0/1
        raise DataError(f"{where}.iscrowd: expected 0 or 1, got {crowd!r}")
    if crowd:
        raise DataError(
            f"{where}: iscrowd is 1 (one box over a crowd of instances, how many unknown); "
            "MIST counts instances, so leave that image out or give each instance its box"
        )


def _coco_size(image: dict, where: str) -> tuple[int, int] | None:
    """The ``(width, height)`` an image record declares, or None when it gives neither."""
    if "width" not in image and "height" not in image:
        return None
    w, h = (_coco_field(image, key, int, where) for key in ("width", "height"))
    if w < 1 or h < 1:
        raise DataError(f"{where}: width and height must be at least 1, got {w}x{h}")
    return w, h


def _unique(pairs: list[tuple], what: str, path: Path) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise DataError(f"{path}: {what} {key!r} appears twice")
        out[key] = value
    return out


def _boxes_coco(path: Path, resolve) -> tuple[dict[str, Truth], list[str]]:
    """COCO annotations: ids integers and unique, class names non-empty and unique."""
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise DataError(f"{path}: not COCO annotations (an object with images, annotations, ...)")
    images = _coco_list(doc, "images", path)
    files = _unique(
        [
            (
                _coco_field(im, "id", int, f"{path}: images[{n}]"),
                _coco_field(im, "file_name", str, f"{path}: images[{n}]"),
            )
            for n, im in enumerate(images)
        ],
        "image id",
        path,
    )
    categories = _coco_list(doc, "categories", path)
    by_id = _unique(
        [
            (
                _coco_field(c, "id", int, f"{path}: categories[{n}]"),
                class_name(
                    _coco_field(c, "name", str, f"{path}: categories[{n}]").strip(),
                    f"{path}: categories[{n}].name",
                ),
            )
            for n, c in enumerate(categories)
        ],
        "category id",
        path,
    )
    _unique([(name, cid) for cid, name in by_id.items()], "category name", path)
    rel_of = {iid: resolve(name, f"image {iid}") for iid, name in files.items()}
    first: dict[str, int] = {}
    for iid, rel in rel_of.items():  # two records of one file would merge their boxes
        if first.setdefault(rel, iid) != iid:
            raise DataError(
                f"{path}: image ids {first[rel]} and {iid} both name the file {files[iid]!r} "
                f"({rel}); give each image one record"
            )
    sizes = [_coco_size(im, f"{path}: images[{n}]") for n, im in enumerate(images)]
    truth = {
        rel_of[iid]: Truth(np.zeros((0, 4), np.float32), [], size)
        for iid, size in zip(files, sizes, strict=True)
    }
    annotations = _coco_list(doc, "annotations", path)
    ids = [
        (_coco_field(a, "id", int, f"{path}: annotations[{n}]"), n)
        for n, a in enumerate(annotations)
        if "id" in a
    ]
    _unique(ids, "annotation id", path)  # one instance given twice would be counted twice
    seen: dict[tuple, int] = {}  # (image, box, category) -> n: the same, without ids
    for n, a in enumerate(annotations):
        where = f"{path}: annotations[{n}]"
        iid, cid = _coco_field(a, "image_id", int, where), _coco_field(a, "category_id", int, where)
        if iid not in rel_of:
            raise DataError(f"{where}.image_id: no image {iid} in 'images'")
        if cid not in by_id:
            raise DataError(f"{where}.category_id: no category {cid} in 'categories'")
        _coco_not_crowd(a, where)
        x, y, w, h = _coco_bbox(a, where)
        # COCO's pixel (0, 0) spans [0, 1]; ours is centred on 0.
        box = _float32_box([x + w / 2 - 0.5, y + h / 2 - 0.5, w, h], f"{where}.bbox")
        first = seen.setdefault((iid, (box + 0.0).tobytes(), cid), n)
        if first != n:
            raise DataError(
                f"{path}: annotations[{first}] and [{n}] give the same box of image {iid} (it "
                "would be counted as two instances); give each box once"
            )
        entry = truth[rel_of[iid]]
        entry.boxes = np.concatenate([entry.boxes, box])
        entry.names.append(by_id[cid])
    return truth, [by_id[cid] for cid in sorted(by_id)]


def fit_boxes(
    t: Truth, width: int, height: int, where: str, path: str | os.PathLike | None = None
) -> None:
    """Clip the boxes of ``t`` to its ``width`` x ``height`` image (upright, its EXIF orientation
    applied), with a warning.

    The image spans ``[-0.5, width - 0.5]`` (pixel centres at integers); a box that reaches past
    it by more than a thousandth of a pixel is cut to it.

    Raises:
        DataError: a box wholly outside the image (a wrong file name or coordinate system), or
            an image size declared by the annotations (``t.size``) that is not the file's
            (when it is the size of the image file ``path`` as stored, before an EXIF
            orientation that turns it, the message says so).
    """
    if t.size is not None and t.size != (width, height):
        w, h = t.size
        stored = stored_size(path) if path is not None else None
        if stored is not None and stored[:2] == t.size and stored[2] in (5, 6, 7, 8):
            raise DataError(
                f"{where}: the annotations say {w}x{h}, the image's stored size, but its EXIF "
                f"orientation {stored[2]} makes it {width}x{height} upright; mistnet reads "
                "images upright, so boxes must be in the upright frame"
            )
        raise DataError(
            f"{where}: the annotations say {w}x{h}, the image file is {width}x{height}; "
            "they describe another image or another version of it"
        )
    if t.boxes is None or not len(t.boxes):
        return
    boxes, past = clip_boxes(t.boxes, width, height, where)
    if past:
        warnings.warn(
            f"{where}: {past} box(es) reach past the {width}x{height} image; clipped to it",
            MistWarning,
            stacklevel=2,
        )
        t.boxes = boxes


def scale_boxes(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Boxes under a resize by ``(sx, sy)``, with pixel centres at integer coordinates."""
    cx, cy, w, h = boxes.T
    return np.stack([(cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5, w * sx, h * sy], 1)


def clip_boxes(boxes: np.ndarray, width: int, height: int, where: str) -> tuple[np.ndarray, int]:
    """``(N, 4)`` boxes ``(cx, cy, w, h)`` cut to a ``width`` x ``height`` image, and how many
    reached past it by more than a thousandth of a pixel (the image spans ``[-0.5, width -
    0.5]``: pixel centres at integers).

    Raises:
        DataError: a box wholly outside the image (a wrong file name or coordinate system).
    """
    cx, cy, w, h = np.asarray(boxes, np.float64).T
    lo, hi = np.stack([cx - w / 2, cy - h / 2], 1), np.stack([cx + w / 2, cy + h / 2], 1)
    edge = np.float64([width - 0.5, height - 0.5])
    outside = (hi <= -0.5).any(1) | (lo >= edge).any(1)
    if outside.any():
        j = int(np.argmax(outside))
        raise DataError(
            f"{where}: the box at cx, cy, w, h = {cx[j]:g}, {cy[j]:g}, {w[j]:g}, {h[j]:g} lies "
            f"outside the {width}x{height} image"
        )
    past = (lo < -0.5 - 1e-3).any(1) | (hi > edge + 1e-3).any(1)
    if not past.any():
        return np.asarray(boxes, np.float32), 0
    lo, hi = np.maximum(lo, -0.5), np.minimum(hi, edge)
    return np.concatenate([(lo + hi) / 2, hi - lo], 1).astype(np.float32), int(past.sum())


def read_boxes(
    path: str | os.PathLike, root: Path, images: list[Path]
) -> tuple[dict[str, Truth], list[str] | None]:
    """A CSV or COCO box file -> ``({relative path: Truth}, class names or None)``.

    Raises:
        DataError: another format, a malformed row or annotation, or a file not under ``root``.
    """
    path = Path(path)
    resolve = _resolver(root, images, str(path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _boxes_csv(path, resolve)
    if suffix == ".json":
        return _boxes_coco(path, resolve)
    raise DataError(f"{path}: unknown boxes format {suffix!r} (a .csv file or COCO .json)")


def class_key(name: str):
    """Sort key of class names: numerically when a name is an integer, else by the text; the
    text breaks ties (``1`` before ``01``), so the order never depends on the order read.

    Example:
        >>> sorted(["10", "b", "01", "2", "1", "--1", "a"], key=class_key)
        ['01', '1', '2', '10', '--1', 'a', 'b']
    """
    if name.lstrip("-").isdecimal():
        try:
            return (0, int(name), name)
        except ValueError:  # "--1", or more digits than Python converts: by the text
            pass
    return (1, 0, name)


def read_truth(
    root: Path,
    images: list[Path],
    labels: str | os.PathLike | None,
    boxes: str | os.PathLike | None,
) -> tuple[dict[str, Truth], list[str] | None]:
    """The ground truth of ``images`` by relative path, from ``labels`` or ``boxes`` (at most
    one), and the class names (sorted by :func:`class_key` for labels; None: none named).

    Raises:
        DataError: see :func:`read_labels` and :func:`read_boxes`.
    """
    if labels is not None:
        truth = read_labels(labels, root, images)
        found = truth, sorted({n for t in truth.values() for n in t.names}, key=class_key)
    elif boxes is not None:
        found = read_boxes(boxes, root, images)
    else:
        return {}, None
    if images and not any(t.names for t in found[0].values()):  # mist detect's, say, of 0 boxes
        warnings.warn(
            f"{labels or boxes}: no image holds an instance; the dataset has none to train or "
            "measure on",
            MistWarning,
            2,
        )
    return found
