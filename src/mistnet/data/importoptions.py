"""The options of :func:`mistnet.data.images.import_images`, parsed once into a typed record.

``mist data import-images`` hands them over as argparse made them (integers and numbers); a
script may pass anything. Each is refused with one line naming it before any image is read:
a wrong type as a TypeError naming the keyword (``size="32"`` was numpy's "invalid literal"
deep inside, ``val="0.1"`` a comparison of str and float), a value out of range as a
:class:`~mistnet.errors.DataError` naming the option.
"""

from __future__ import annotations

from dataclasses import dataclass

from mistnet import validate
from mistnet.errors import ArgumentError, DataError
from mistnet.imagefile import pixel_count

#: The most crops ``per_image`` takes of one image (all of them are held in memory).
MAX_PER_IMAGE = 10_000


@dataclass(frozen=True)
class ImportOptions:
    """How :func:`~mistnet.data.images.import_images` makes its dataset, each value checked."""

    size: tuple[int, int] | None
    crop: tuple[int, int] | None
    per_image: int
    channels: int | None
    val: float
    test: float
    seed: int
    max_pixels: int


def import_options(
    *,
    labels: object,
    boxes: object,
    size: object,
    crop: object,
    per_image: object,
    channels: object,
    val: object,
    test: object,
    seed: object,
    max_pixels: object,
) -> ImportOptions:
    """``import_images``'s keywords as an :class:`ImportOptions` (``labels`` and ``boxes``
    only to see which are given).

    Raises:
        TypeError: a keyword of the wrong type (``size=(32.5, 32)``, ``val="0.1"``).
        DataError: options that do not go together, or a value out of range.
    """
    max_pixels = validate.max_pixels(max_pixels, "max_pixels")
    size, crop = _side_pair(size, "size"), _side_pair(crop, "crop")
    per_image = _integer(per_image, "per_image")
    if labels is not None and boxes is not None:
        raise DataError("give --labels or --boxes, not both (a box file can name the classes)")
    if size is not None and crop is not None:
        raise DataError("give --size or --crop, not both")
    if crop is not None and labels is not None:
        raise DataError("--crop needs boxes: an image's labels do not say what a crop holds")
    if per_image < 1:
        raise DataError(f"--per-image must be at least 1, got {per_image}")
    if per_image > 1 and crop is None:
        raise DataError(f"--per-image {per_image} takes crops: add --crop H W")
    if per_image > MAX_PER_IMAGE:
        raise DataError(f"--per-image must be at most {MAX_PER_IMAGE:,}, got {per_image:,}")
    for name, hw in (("--size", size), ("--crop", crop)):
        if hw is not None and min(hw) < 1:
            raise DataError(f"{name} needs H, W >= 1, got {hw}")
        if hw is not None:
            given = f"{name} {validate.shown(hw[0])} {validate.shown(hw[1])}"  # not 400 digits
            pixel_count(hw[1], hw[0], max_pixels, given, "choose a smaller size")
    if channels is not None and _integer(channels, "channels") not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    fractions = [_fraction(value, name) for value, name in ((val, "val"), (test, "test"))]
    return ImportOptions(
        size=size,
        crop=crop,
        per_image=per_image,
        channels=None if channels is None else int(channels),
        val=fractions[0],
        test=fractions[1],
        seed=validate.seed(seed, "seed"),
        max_pixels=max_pixels,
    )


#: What each path argument of the importers names, said when it is empty.
_PATHS = {
    "src": "the image folder",
    "root": "the official layout's folder",
    "directory": "the dataset directory",
    "out": "the new dataset directory",
    "labels": "the labels CSV",
    "boxes": "the boxes CSV or COCO .json",
}


def import_paths(**paths: object) -> None:
    """Refuse a path argument of the importers and of ``export_official`` (``src``, ``root``,
    ``directory``, ``out``; ``labels`` and
    ``boxes`` unless None) before any work: ``""`` read the working directory (``src``) or the
    folder as a labels file, ``5`` and a NUL failed deep inside naming nothing.

    Raises:
        TypeError: a value that is no path (:func:`~mistnet.validate.path_argument`).
        ArgumentError: an empty path, or one holding a NUL character.
    """
    for name, value in paths.items():
        if value is None and name in ("labels", "boxes"):
            continue
        if not validate.path_argument(value, name):
            raise ArgumentError(f"{name} '' is an empty path; give {_PATHS[name]}")


def _integer(value: object, name: str) -> int:
    if (n := validate.as_integer(value)) is None:
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return n


def _side_pair(value: object, name: str) -> tuple[int, int] | None:
    """``value`` as ``(H, W)`` integers (a list, tuple or 1-d array of two), or None."""
    if value is None:
        return None
    meta = getattr(value, "is_meta", False)  # a meta tensor: "Cannot copy out of meta tensor"
    items = value.tolist() if hasattr(value, "tolist") and not meta else value
    pair = [validate.as_integer(v) for v in items] if isinstance(items, list | tuple) else []
    if len(pair) != 2 or None in pair:
        raise TypeError(f"{name} must be (H, W), two integers, got {validate.shown(value)}")
    return pair[0], pair[1]


def _fraction(value: object, name: str) -> float:
    """``value`` as a fraction in [0, 1) of the images held out as the split ``name``."""
    if (x := validate.as_real(value)) is None:
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not 0 <= x < 1:  # NaN too
        raise DataError(f"--{name} must be a fraction in [0, 1), got {validate.shown(value)}")
    return x
