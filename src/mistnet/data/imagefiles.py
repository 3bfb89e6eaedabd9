"""Finding and reading image files: the images of a folder (:func:`find_images`), one file as
uint8 ``(H, W, C)`` pixels (:func:`read_image`) or as a float tensor (:func:`image_tensor`),
grey or colour (:func:`is_grey`, :func:`to_channels`). Transparency is composited over black,
16-bit images are scaled to 8 bits; :mod:`mistnet.imagefile` opens and checks each file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mistnet.errors import DataError, MistWarning
from mistnet.imagefile import (
    DEFAULT_MAX_PIXELS,
    colour_key,
    decoding,
    image_format,
    open_image,
    upright,
)
from mistnet.markers import output_kind
from mistnet.validate import regular_file, require_directory, require_finite

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_GREY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")


def find_images(src: str | os.PathLike, ignore: tuple[Path, ...] = ()) -> list[Path]:
    """The image files under ``src`` (recursive), sorted by relative path.

    Hidden files and the files in ``ignore`` (a labels or boxes file kept in the folder) are
    passed over, and so, with one warning, are files of no image format (``notes.txt``); an
    image of another format (``.gif``) is refused. A symbolic link is followed only to a file
    inside ``src`` that the folder does not hold under another name (else one image would land
    in two splits).

    Raises:
        DataError: ``src`` is no directory, is or holds a mistnet output (detections, a run), an
            image of another format, a symbolic link to a file outside it, to one of its
            images or to nowhere, a FIFO (or other special file) named like an image, or no
            image.
    """
    root = require_directory(src, "folder of images")  # a file there was "no such directory"
    if kind := output_kind(root):  # detect's own folder given as SRC: its overlays imported
        shown = f"{kind}: mist data import-official reads it" if kind == "official" else kind
        raise DataError(f"{root}: a mistnet output ({shown}); import-images reads only your images")
    if not os.access(root, os.R_OK | os.X_OK):  # else "no images in this folder"
        raise DataError(f"{root}: a folder this user cannot read")
    real_root = root.resolve()
    skip = {p.resolve() for p in ignore}
    found: dict[Path, Path] = {}  # resolved -> the path found
    inodes: dict[tuple[int, int], Path] = {}  # the file -> the path found
    skipped: list[str] = []  # files of no image format, relative to root
    hidden = 0  # images passed over as hidden, said when there is no other
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            hidden += path.suffix.lower() in IMAGE_SUFFIXES
            continue
        if not path.resolve().is_relative_to(real_root):
            raise DataError(
                f"{path}: a symbolic link to {path.resolve()}, outside {root}; import-images "
                "reads only files inside the folder (copy the file in, or remove the link)"
            )
        if path.is_dir():
            _warn_unlistable(path)
            if kind := output_kind(path):  # detect's annotated PNGs were imported as photos
                raise DataError(
                    f"{path}: a mistnet output ({kind}) inside {root}; import-images reads "
                    "only your images (move it out of the folder)"
                )
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.is_file():  # else dropped unsaid
            if path.is_symlink() and not path.exists():
                raise DataError(f"{path}: a symbolic link to nowhere; remove it or its target")
            regular_file(path)  # a FIFO, a socket, a device: named
        if not path.is_file() or path.resolve() in skip:
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            if (fmt := image_format(path.suffix)) is None:  # labels.csv, notes.txt: no image
                skipped.append(rel.as_posix())
                continue
            fix = "rename" if fmt in ("JPEG", "PNG", "TIFF") else "convert"  # .jfif, .gif
            raise DataError(
                f"{path}: a {fmt} image; import-images reads {', '.join(IMAGE_SUFFIXES)} "
                f"({fix} it, or move it out)"
            )
        _require_once(path, found, inodes)
    if not found:
        why = (
            f", only {hidden} hidden one(s) (named '.*' or in a '.*' folder), which are passed over"
        )
        raise DataError(
            f"{root}: no PNG, JPEG or TIFF images in this folder{why if hidden else ''}"
        )
    if skipped:
        names = ", ".join(skipped[:2]) + (", ..." if len(skipped) > 2 else "")
        warnings.warn(
            f"{root}: skipped {len(skipped)} file(s) that are no images ({names})", MistWarning, 2
        )
    return sorted(found.values(), key=lambda p: p.relative_to(root).as_posix())


def _require_once(path: Path, found: dict[Path, Path], inodes: dict[tuple[int, int], Path]):
    """Record the image file ``path`` in ``found`` (by its resolved path) and ``inodes`` (by
    its file), once it is seen to be no second name of one found before: a symbolic or hard
    link to another of the folder's images would put one image in two splits."""
    twin = found.setdefault(path.resolve(), path)
    if twin != path:  # one of the two is (or lies under) a link: it would be read twice
        link, real = (path, twin) if path.absolute() != path.resolve() else (twin, path)
        raise DataError(
            f"{link}: a symbolic link to {real}, which the folder holds too; import-images "
            "reads each image once (remove the link)"
        )
    info = path.stat()
    first = inodes.setdefault((info.st_dev, info.st_ino), path)
    if first != path:
        raise DataError(
            f"{path}: a hard link to {first} (one file under two names); import-images reads "
            "each image once (remove one)"
        )


def _warn_unlistable(folder: Path) -> None:
    """Say so of a folder whose entries this user cannot list: its images, if any, were left
    out without a word (``rglob`` skips it). Not refused: the root of a drive holds a
    ``lost+found`` that only its owner reads, which the user can neither open nor move."""
    if not os.access(folder, os.R_OK | os.X_OK):
        warnings.warn(
            f"{folder}: a folder this user cannot read; its images, if it holds any, are left out",
            MistWarning,
            3,
        )


def float_pixels(im: Image.Image, path: str | os.PathLike) -> np.ndarray | None:
    """``(H, W)`` float64 in [0, 1] of a 16-bit or float image; ``None`` for 8-bit modes.

    16-bit grey is scaled (65535 -> 1), not clipped; 32-bit grey (``I``) is taken as 16-bit
    (65535 -> 1) and clipped to it; a float image must be finite and is clipped to [0, 1]. A
    :class:`~mistnet.errors.MistWarning` says when clipping changed a value, or when a 16- or
    32-bit image holds no value above 255 (8-bit values: nearly black as 16-bit).

    Raises:
        DataError: a float image with NaN or infinite values.
    """
    if not (im.mode in ("I", "F") or im.mode.startswith("I;16")):
        return None
    a = np.asarray(im, dtype=np.float64)
    key = colour_key(im)
    if key is not None:  # a 16-bit grey PNG's tRNS: that value is transparent, over black
        a = np.where(a == key, 0.0, a)
    require_finite(a, f"{path}: pixels")
    # 32-bit grey ("I": a 32-bit TIFF, int32 arrays, 16-bit PNGs in Pillow < 10) is read as
    # 16-bit, one scale for all: by its own maximum, one pixel above 255 darkened it 257 times
    top = 1.0 if im.mode == "F" else 65535.0
    kind = "float" if im.mode == "F" else "32-bit"
    if a.size and (a.min() < 0 or a.max() > top):  # 0..255 floats would all turn white
        warnings.warn(
            f"{path}: {kind} pixels in [{a.min():g}, {a.max():g}] clipped to [0, {top:g}]",
            MistWarning,
            2,
        )
    elif im.mode != "F" and a.size and 0 < a.max() <= 255:  # 16-bit too: fromarray(uint16)
        bits = "32-bit" if im.mode == "I" else "16-bit"
        warnings.warn(
            f"{path}: {bits} pixels all at most {a.max():g}, read as 16-bit (65535 is white): "
            "nearly black; save 8-bit values as 8-bit (mode L) images",
            MistWarning,
            2,
        )
    return np.clip(a / top, 0.0, 1.0)


def over_black(im: Image.Image) -> Image.Image:
    """A palette or alpha image composited over black (RGBA); a grey or colour image with a
    colour key (a PNG ``tRNS`` chunk, :func:`~mistnet.imagefile.colour_key`) with the pixels of
    that colour made black; any other image unchanged."""
    bands = im.getbands()
    if im.mode == "P" or "A" in bands or "a" in bands:  # "a": premultiplied (La, RGBa)
        im = im.convert("LA") if im.mode == "La" else im  # Pillow has no La -> RGBA
        rgba = im.convert("RGBA")  # transparency (alpha or a palette entry) over black
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    key = colour_key(im)
    if key is None:
        return im
    a = np.array(im.convert("L") if im.mode == "1" else im)  # "1": its key is 0 or 255
    a[(a == key).all(-1) if a.ndim == 3 else a == key] = 0
    return Image.fromarray(a)


def pil_channels(im: Image.Image) -> int:
    """The channels an image file or Pillow image is read with: 1 for the grey modes (with or
    without alpha, 8 or 16 bits, float), else 3."""
    return 1 if im.mode in _GREY_MODES else 3


def image_tensor(im: Image.Image, channels: int, name: str | os.PathLike = "image") -> torch.Tensor:
    """A Pillow image as a ``(channels, H, W)`` float32 tensor in [0, 1].

    Any mode: transparent pixels over black, 16-bit gray scaled by 65535, float images as they
    are (``name`` named if NaN or infinite), upright (a photo's EXIF orientation applied).
    """
    with decoding(name):  # a Pillow image of a cut, damaged or closed file: decoded here
        im = upright(im, name)
        deep = float_pixels(im, name)
        if deep is not None:
            a = deep[None]  # (1, H, W)
            if channels == 3:
                a = np.repeat(a, 3, axis=0)
            return torch.from_numpy(a.astype(np.float32))
        im = over_black(im).convert("L" if channels == 1 else "RGB")
        a = np.asarray(im, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
    return torch.from_numpy(np.ascontiguousarray(a))


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One image file as an ``(H, W, C)`` uint8 array, ``C = 1`` for grey modes, else 3.

    Raises:
        DataError: the file is not a readable image, has more than ``max_pixels`` pixels
            (checked from its header) or (a float image) NaN or infinite values.
    """
    im = upright(open_image(path, max_pixels), path)
    deep = float_pixels(im, path)
    if deep is not None:
        return np.round(deep * 255.0).astype(np.uint8)[..., None]
    grey = pil_channels(im) == 1
    a = np.asarray(over_black(im).convert("L" if grey else "RGB"), dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def is_grey(a: np.ndarray) -> bool:
    """Whether an ``(H, W, C)`` image is grey: one channel, or all channels equal."""
    return a.shape[2] == 1 or bool((a == a[..., :1]).all())


def to_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W, 1|3)`` uint8 -> ``(H, W, channels)``: grey repeated, or colour to luma (ITU 601)."""
    if a.shape[2] == channels:
        return a
    if channels == 3:
        return np.repeat(a, 3, axis=2)
    if is_grey(a):
        return a[..., :1]
    return np.asarray(Image.fromarray(a).convert("L"))[..., None]
