"""A folder of one's own images -> a dataset in our format (``mist data import-images``).

The folder is searched recursively for PNG, JPEG and TIFF files (sorted by their path relative
to the folder, which is how every other file names them). Each image becomes uint8 ``(C, H, W)``:
one channel when every image is grey (grey modes, or colour modes whose channels are all equal),
else three (``channels`` forces either); transparency is composited over black and 16-bit images
are scaled to 8 bits. One size for all: the images' own when they agree, ``size`` (a resize,
aspect ratio not kept) or ``crop`` (``per_image`` seeded random crops of each image). The split
of the images into train / val / test is a seeded permutation of the source images, so the crops
of one image stay in one split. With ``crop`` and too few images for that (one, with the default
fractions), each image is cut into bands across its longer side instead — train, then val and
test in proportion to their fractions — and each split's crops come from its band alone (no
crop crosses a band's edge; a box goes with the band holding its centre, clipped to it).
Ground truth is optional:

- ``labels``: a CSV ``filename,labels`` (header optional) whose second field is a
  space-separated multiset of class names (``cat cat dog``; empty: no instance). Every image
  needs a row. The classes are the names sorted (numerically when all are integers), and the
  manifest keeps them (``"classes"``); the dataset then has labels but no boxes.
- ``boxes``: where the instances are, for evaluation. A CSV with a header naming ``filename`` (or
  ``image``), the centre and size ``cx,cy,w,h`` (or ``x,y,side``, the columns of
  ``mist detect``'s CSV) in pixels, pixel centres at integer coordinates, and optionally
  ``class`` (or ``label``); or COCO annotations (``.json``: ``images``, ``annotations`` with
  ``bbox = [x, y, w, h]`` from the top-left corner of the top-left pixel, ``categories``). An
  image without a row has no instance. Boxes follow the resize or crop (a box is kept in a crop
  when its centre is inside, clipped to it with a warning). Boxes with classes give labels too;
  ``labels`` and ``boxes`` together are refused (which label is which box would be unknown).
  Without either the dataset holds images only, for an auto-encoder (``annotations = []``).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mistnet.data.annotations import Truth, clip_boxes, fit_boxes, read_truth, scale_boxes
from mistnet.data.digits import SPLITS
from mistnet.data.imagefiles import find_images, is_grey, read_image, to_channels
from mistnet.data.importoptions import ImportOptions, import_options, import_paths
from mistnet.data.store import claim_dataset, folder_name, write_dataset
from mistnet.errors import DataError, MistError, MistWarning
from mistnet.imagefile import DEFAULT_MAX_PIXELS, stored_size
from mistnet.machine import fits_in_memory


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    H, W = size
    im = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
    out = np.asarray(im.resize((W, H), Image.Resampling.BILINEAR))
    return out[..., None] if out.ndim == 2 else out


@dataclass
class _Item:
    source: int  # index of the image file it comes from
    image: np.ndarray  # (H, W, C) uint8
    truth: Truth
    origin: tuple[int, int] = (0, 0)  # (x0, y0) of a crop in its file
    split: str = ""  # the split of a crop from a band of its image; "": its image's split


def _crops(
    a: np.ndarray,
    t: Truth,
    crop: tuple[int, int],
    n: int,
    rng: np.random.Generator,
    source: int,
    where: Path,
) -> list[_Item]:
    """``n`` random ``crop``-sized crops of ``a``; a box stays when its centre is inside,
    clipped to the crop with a warning (as one past the image: a dataset holds no box past
    its images)."""
    H, W = crop
    h, w = a.shape[:2]
    if h < H or w < W:
        raise DataError(f"{where}: {w}x{h} is smaller than the {W}x{H} crop")
    out, cut = [], 0
    for _ in range(n):
        y0, x0 = int(rng.integers(0, h - H + 1)), int(rng.integers(0, w - W + 1))
        cx, cy = t.boxes[:, 0], t.boxes[:, 1]
        inside = (cx >= x0 - 0.5) & (cx < x0 + W - 0.5) & (cy >= y0 - 0.5) & (cy < y0 + H - 0.5)
        boxes, past = clip_boxes(t.boxes[inside] - np.float32([x0, y0, 0, 0]), W, H, str(where))
        cut += past
        names = [name for name, keep in zip(t.names, inside, strict=True) if keep]
        piece = a[y0 : y0 + H, x0 : x0 + W].copy()  # not a view: the image is let go
        out.append(_Item(source, piece, Truth(boxes, names), (x0, y0)))
    if cut:  # one warning an image (a band's crops: a band), not one a crop
        warnings.warn(
            f"{where}: {cut} box(es) reach past their {W}x{H} crop; clipped to it", MistWarning, 2
        )
    return out


def _items_of(
    path: Path, rel: str, i: int, t: Truth, how: dict
) -> tuple[list[_Item], tuple[int, int], bool]:
    """The items of the ``i``-th image file (resized, cropped or as it is, see :func:`_items`),
    its ``(H, W)`` and whether it is grey. Grey is kept as one channel (unless ``channels``
    says 3) until the other images are read, colour as three."""
    size, crop, channels = how["size"], how["crop"], how["channels"]
    a = read_image(path, how["max_pixels"])
    h, w = a.shape[:2]
    if t.boxes is not None or t.size is not None:
        fit_boxes(t, w, h, f"{how['boxes']} ({rel})", path)
    grey = is_grey(a)
    a = to_channels(a, channels or (1 if grey else 3))
    rng, n, bands = np.random.default_rng([how["seed"], i]), how["per_image"], how["bands"]
    if crop is not None and bands is not None:
        return _band_crops(a, t, crop, n, rng, i, path, bands), (h, w), grey
    if crop is not None:
        return _crops(a, t, crop, n, rng, i, path), (h, w), grey
    if size is not None:
        bx = None if t.boxes is None else scale_boxes(t.boxes, size[1] / w, size[0] / h)
        return [_Item(i, _resize(a, size), Truth(bx, t.names))], (h, w), grey
    return [_Item(i, a, t)], (h, w), grey


def _check_memory(files: list[Path], how: dict) -> None:
    """Refuse crops or resized images that need more memory than the machine has, each held
    once as read and once stacked into its split (one channel each at least): --per-image is
    capped per image, and 3 images of 10,000 crops of 1000 x 1000 grew to 30 GB. A crop larger
    than the first image (by its header) is said instead: fewer crops would not help."""
    if not (out_size := how["crop"] or how["size"]):
        return
    n = len(files) * (how["per_image"] if how["crop"] else 1)
    try:
        fits_in_memory(
            2 * n * out_size[0] * out_size[1] * (how["channels"] or 1),
            f"{n:,} images of {out_size[0]} x {out_size[1]}",
            "--per-image, a smaller --crop or --size, or fewer images",
        )
    except MistError:
        stored = stored_size(files[0]) if how["crop"] and files else None
        if stored is not None:
            w, h = stored[:2] if stored[2] < 5 else stored[1::-1]  # 5 to 8 turn it upright
            if h < out_size[0] or w < out_size[1]:
                raise DataError(
                    f"{files[0]}: {w}x{h} is smaller than the {out_size[1]}x{out_size[0]} crop"
                ) from None
        raise


def _items(
    root: Path, files: list[Path], truth: dict[str, Truth], how: dict
) -> tuple[list[_Item], tuple[int, int], int]:
    """Every image (resized, cropped or as it is) with its ground truth, their one size and
    channels. Each file is resized or cropped as it is read, so only the output is held, not
    every image decoded at full size. ``how`` holds the ``size``, ``crop``, ``per_image``,
    ``channels``, ``seed``, ``max_pixels`` and ``boxes`` of :func:`import_images`, and
    ``bands``: with the ``--val`` and ``--test`` fractions, each image is cut into train, val
    and test bands and cropped within them (:func:`_band_crops`).

    Raises:
        DataError: images of different sizes without ``size`` or ``crop``; an image smaller
            than the crop.
    """
    _check_memory(files, how)  # before any image is read: the first one's crops can fill it
    items: list[_Item] = []
    first: dict[tuple[int, int], str] = {}  # (h, w) -> the first file of that size
    grey = []
    for i, path in enumerate(files):  # one at a time: only the output is held, not the image
        rel = path.relative_to(root).as_posix()
        t = truth.get(rel, Truth(np.zeros((0, 4), np.float32), []))
        found, (h, w), is_grey_image = _items_of(path, rel, i, t, how)
        items += found
        grey.append(is_grey_image)
        first.setdefault((h, w), rel)
        if len(first) > 1 and how["size"] is None and how["crop"] is None:  # named, at once
            (h1, w1), one = next(iter(first.items()))
            turned = [f for f in (one, rel) if (stored_size(root / f) or (0, 0, 1))[2] > 4]
            raise DataError(
                f"{root}: images differ in size: {one} is {w1}x{h1}, {rel} {w}x{h}"
                + "".join(f" ({f} read upright by its EXIF orientation)" for f in turned[:1])
                + "; pass --size H W or --crop H W"
            )
    C = how["channels"] or (1 if all(grey) else 3)
    for it in items:
        it.image = to_channels(it.image, C)
    return items, how["size"] or how["crop"] or items[0].image.shape[:2], C


def _split_arrays(
    items: list[_Item], rels: list[str], names: list[str], chosen_of: dict[str, list[_Item]]
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[str]], dict[str, list[list[int]]]]:
    """The arrays of each split of ``chosen_of`` (:func:`_assign_splits`), and the file name and
    crop origin of each of its scenes."""
    index = {n: j for j, n in enumerate(names)}
    M = max(len(it.truth.names) for it in items)
    splits, file_names, origins = {}, {}, {}
    for split, chosen in chosen_of.items():
        N = len(chosen)
        arrays = {
            "images": np.stack([it.image.transpose(2, 0, 1) for it in chosen]),
            "boxes": np.zeros((N, M, 4), np.float32),
            "labels": np.full((N, M), -1, np.int64),
            "counts": np.array([len(it.truth.names) for it in chosen], np.int64),
        }
        for j, it in enumerate(chosen):
            n_obj = len(it.truth.names)
            if it.truth.boxes is not None:
                arrays["boxes"][j, :n_obj] = it.truth.boxes
            arrays["labels"][j, :n_obj] = [index.get(k, 0) for k in it.truth.names]
        splits[split] = arrays
        file_names[split] = [rels[it.source] for it in chosen]
        origins[split] = [list(it.origin) for it in chosen]
    return splits, file_names, origins


def _held_out(n: int, fraction: float) -> int:
    """How many of ``n`` things the fraction ``--val`` or ``--test`` takes (at least one; the
    fraction in [0, 1), :func:`~mistnet.data.importoptions.import_options`)."""
    return max(1, round(fraction * n)) if fraction > 0 else 0


def _split_sizes(n: int, val: float, test: float) -> tuple[int, int, int]:
    n_val, n_test = _held_out(n, val), _held_out(n, test)
    if n - n_val - n_test < 1:
        raise DataError(
            f"{n} images leave none for training with --val {val} and --test {test}; add "
            "images, lower --val/--test, or pass --crop H W (then each image is cut into "
            "train, val and test bands)"
        )
    return n - n_val - n_test, n_val, n_test


def _by_bands(n_files: int, crop: tuple[int, int] | None, val: float, test: float) -> bool:
    """Whether each image is split into bands: ``--crop``, and too few images to split them."""
    held = _held_out(n_files, val) + _held_out(n_files, test)
    return crop is not None and n_files - held < 1


def _bands(length: int, val: float, test: float) -> dict[str, tuple[int, int]]:
    """``[start, stop)`` of the train, val and test bands along a side of ``length`` pixels, in
    proportion to ``val`` and ``test``. A split of fraction 0 has no band; one of a fraction
    too small for a pixel keeps its empty band, so that the caller refuses it, not drops it.

    Example:
        >>> _bands(100, 0.1, 0.2)
        {'train': (0, 70), 'val': (70, 80), 'test': (80, 100)}
    """
    n_val, n_test = round(val * length) if val else 0, round(test * length) if test else 0
    cuts = np.cumsum([0, length - n_val - n_test, n_val, n_test]).tolist()
    spans = dict(zip(("train", "val", "test"), itertools.pairwise(cuts), strict=True))
    return {s: span for s, span in spans.items() if {"train": 1, "val": val, "test": test}[s]}


def _band_truth(t: Truth, coord: int, start: int, stop: int) -> Truth:
    """The boxes of ``t`` whose centre lies in the band ``[start, stop)`` of pixel rows
    (``coord`` 1: y) or columns (``coord`` 0: x), clipped to it, in the band's coordinates."""
    lo, hi = start - 0.5, stop - 0.5  # the band's edges; pixel centres at integer coordinates
    centre = t.boxes[:, coord]
    inside = (centre >= lo) & (centre < hi)
    boxes = t.boxes[inside].copy()
    c, size = boxes[:, coord], boxes[:, coord + 2]
    first, last = np.maximum(c - size / 2, lo), np.minimum(c + size / 2, hi)
    boxes[:, coord], boxes[:, coord + 2] = (first + last) / 2 - start, last - first
    return Truth(boxes, [name for name, keep in zip(t.names, inside, strict=True) if keep])


def _band_crops(
    a: np.ndarray,
    t: Truth,
    crop: tuple[int, int],
    n: int,
    rng: np.random.Generator,
    source: int,
    where: Path,
    fractions: tuple[float, float],
) -> list[_Item]:
    """``n`` random ``crop``-sized crops of ``a`` from disjoint bands across its longer side:
    train, then val and test in proportion to ``fractions``. No crop crosses a band's edge, so
    no pixel is in two splits; a box belongs to the band holding its centre, clipped to it.

    Raises:
        DataError: a band is narrower than the crop, or ``n`` is too few for one crop a band.
    """
    (h, w), axis = a.shape[:2], int(a.shape[1] > a.shape[0])  # axis 1: bands of columns
    length, side = (w, crop[1]) if axis else (h, crop[0])
    bands = _bands(length, *fractions)
    counts = {s: _held_out(n, f) for s, f in zip(("val", "test"), fractions, strict=True)}
    counts["train"] = n - sum(counts.values())
    if h < crop[0] or w < crop[1]:
        raise DataError(f"{where}: {w}x{h} is smaller than the {crop[1]}x{crop[0]} crop")
    widths = {s: stop - start for s, (start, stop) in bands.items()}
    if min(widths.values()) < side or counts["train"] < 1:
        shown = ", ".join(f"{s} {px}" for s, px in widths.items())
        narrow = [s for s, px in widths.items() if px < side]  # else too few crops for train
        why = (
            f"the {' and '.join(narrow)} band{'s are' if len(narrow) > 1 else ' is'} narrower "
            f"than the {side}-pixel crop; pass a smaller --crop, other --val/--test"
            if narrow
            else f"--per-image {n} leaves no crop for the train band; pass a larger --per-image"
        )
        raise DataError(
            f"{where}: too few images to split by image, so each is cut into bands across its "
            f"{length}-pixel side ({shown} pixels); {why}, or more images"
        )
    items = []
    for split, (start, stop) in bands.items():
        band = a[:, start:stop] if axis else a[start:stop]
        found = _crops(band, _band_truth(t, 1 - axis, start, stop), crop, counts[split], rng,
                       source, where)  # fmt: skip
        for it in found:  # boxes stay in the crop's coordinates, the origin goes to the file's
            x0, y0 = it.origin
            it.origin = (x0 + start, y0) if axis else (x0, y0 + start)
            it.split = split
        items += found
    return items


def _assign_splits(
    items: list[_Item], n_files: int, val: float, test: float, seed: int
) -> dict[str, list[_Item]]:
    """The items of each split: a crop from a band goes to its band's split, any other item to
    its image's, a seeded permutation of the images (so all crops of one image stay together)."""
    split_of: dict[int, str] = {}
    if not all(it.split for it in items):
        sizes = _split_sizes(n_files, val, test)
        order = np.random.default_rng(seed).permutation(n_files).tolist()
        bounds = np.cumsum([0, *sizes]).tolist()
        for split, (lo, hi) in zip(SPLITS, itertools.pairwise(bounds), strict=True):
            split_of.update(dict.fromkeys(order[lo:hi], split))
    splits = {s: [it for it in items if (it.split or split_of[it.source]) == s] for s in SPLITS}
    return {s: chosen for s, chosen in splits.items() if chosen}


def _manifest(root: Path, asked: ImportOptions, labels, boxes, names, file_names) -> dict:
    """The manifest of a dataset imported from ``root`` as ``asked``."""
    return {
        "generator": "images",
        "source": str(root),
        "seed": asked.seed,
        "annotations": (["boxes"] if boxes is not None else []) + (["labels"] if names else []),
        "classes": names,
        "params": {
            "size": list(asked.size) if asked.size else None,
            "crop": list(asked.crop) if asked.crop else None,
            "per_image": asked.per_image,
            "val": asked.val,
            "test": asked.test,
            "labels": str(labels) if labels else None,
            "boxes": str(boxes) if boxes else None,
        },
        "file_names": file_names,
    }


def import_images(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    boxes: str | os.PathLike | None = None,
    size: tuple[int, int] | None = None,
    crop: tuple[int, int] | None = None,
    per_image: int = 1,
    channels: int | None = None,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict:
    """Import the images under ``src`` into a new dataset directory ``out`` (atomically).

    Args:
        src: folder searched recursively for PNG/JPEG/TIFF files.
        out: new (or empty) dataset directory (see :mod:`mistnet.data.store`); a dataset
            already there, an earlier import's included, is refused.
        labels: CSV of image-level class multisets (see the module docstring).
        boxes: CSV or COCO box file (see the module docstring).
        size: ``(H, W)`` to resize every image to.
        crop: ``(H, W)`` of ``per_image`` seeded random crops per image (instead of ``size``).
        channels: 1 or 3 to force grey or colour; None: detect.
        val, test: fractions of the images for the validation and test splits.
        seed: seeds the split and the crops.
        max_pixels: refuse an image of more pixels (checked from its header), and a ``size``
            or ``crop`` of more.

    Returns:
        The manifest written.

    Raises:
        DataError: for every problem with the inputs, naming the file, and options out of
            range or that do not go together (:func:`~mistnet.data.importoptions.import_options`).
        TypeError: an option of the wrong type, named (``size="32"``, ``val="0.1"``), or a
            path argument that is no path (:func:`~mistnet.data.importoptions.import_paths`).
        ArgumentError: an empty path argument, or one holding a NUL character.

    The messages name the options as ``mist data import-images`` spells them: ``--crop`` is
    ``crop``, ``--per-image`` is ``per_image``.
    """
    import_paths(src=src, out=out, labels=labels, boxes=boxes)
    root = Path(src)
    asked = import_options(
        labels=labels,
        boxes=boxes,
        size=size,
        crop=crop,
        per_image=per_image,
        channels=channels,
        val=val,
        test=test,
        seed=seed,
        max_pixels=max_pixels,
    )
    size, crop, val, test, seed = asked.size, asked.crop, asked.val, asked.test, asked.seed
    # before the images are read: a taken --out, or one inside SRC, is refused at once
    claim_dataset(out, inputs=[("the image folder", root)] if root.is_dir() else [])
    files = find_images(root, tuple(Path(p) for p in (labels, boxes) if p is not None))
    truth, names = read_truth(root, files, labels, boxes)
    rels = [p.relative_to(root).as_posix() for p in files]
    bands = (val, test) if _by_bands(len(files), crop, val, test) else None
    how = {**dataclasses.asdict(asked), "boxes": boxes, "bands": bands}
    items, (H, W), C = _items(root, files, truth, how)
    chosen_of = _assign_splits(items, len(files), val, test, seed)
    splits, file_names, origins = _split_arrays(items, rels, names or [], chosen_of)
    manifest = _manifest(root, asked, labels, boxes, names or [], file_names)
    if crop is not None:
        manifest["crop_origins"] = origins  # (x0, y0) of each crop in its file
    write_dataset(out, folder_name(root, "images"), splits, manifest, overwrite_option="")
    return {**manifest, "channels": C, "height": H, "width": W}
