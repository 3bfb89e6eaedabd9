"""Image files opened at the boundary: the size checked from the header before decoding, any
failure of Pillow's decoders one line naming the file.

- :func:`open_image`: an image whose header declares at most ``max_pixels`` pixels, decoded
  only after that check (a 60000 x 60000 PNG is a few kilobytes and 10 GB decoded); whatever
  a damaged file makes Pillow raise, warn, or libtiff print, said in one line naming it.
- :func:`decoding`: the same for an image opened elsewhere (a Pillow image in memory).
- :func:`image_format`: the image format a file's suffix names, if Pillow knows it as one.
- :func:`stored_size`: a file's size as stored, before its EXIF orientation, and that orientation.
- :func:`pixel_count`: an image size (a file's header, ``--size``, an image in memory) of at
  most ``max_pixels`` pixels (:data:`DEFAULT_MAX_PIXELS` by default); :func:`scaled_size`: the
  same for an image resized by a factor.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageOps

from mistnet import validate
from mistnet.errors import DataError, MistWarning
from mistnet.validate import regular_file

#: Default pixel cap for images read by ``mist detect`` and the importers (``--max-pixels``):
#: 40 MP is a large photo; decoded as floats and run through the heatmap network it already
#: needs several GB of memory.
DEFAULT_MAX_PIXELS = 40_000_000

# Pillow's own decompression-bomb check refuses images above twice this many pixels.
_PILLOW_LIMIT = 2 * (Image.MAX_IMAGE_PIXELS or 0)


def open_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    hint: str = "crop or downscale it, or raise --max-pixels",
) -> Image.Image:
    """Open and decode an image file, checking its size from the header first.

    Args:
        path: a file Pillow reads (PNG, JPEG, TIFF, ...).
        max_pixels: refuse an image whose header declares more than this many pixels
            (Pillow's own limit, about 179 MP, stands above it).
        hint: what the message for a too large image suggests.

    Returns:
        The decoded image (``load()`` done).

    Raises:
        DataError: not a regular file, not an image, truncated, or too large.
    """
    path = regular_file(path)
    max_pixels = validate.max_pixels(max_pixels, "max_pixels")
    limit = f"the limit of {max_pixels:,} pixels (--max-pixels); {hint}"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        # Pillow warns between its two limits; the cap of pixel_count is the check that counts.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im, frames = _decoded(path, max_pixels, limit, hint)
    for message in dict.fromkeys(str(w.message) for w in said):  # Pillow's, "Corrupt EXIF data"
        warnings.warn(f"{path}: {message}", MistWarning, 2)
    if frames > 1:  # a stack (TIFF) or an animation (GIF): one image is read, say which
        count = f"more than {_FRAMES_COUNTED}" if frames > _FRAMES_COUNTED else str(frames)
        warnings.warn(f"{path}: {count} frames; only the first is read", MistWarning, 2)
    return im


#: Frames counted at most: Pillow's ``n_frames`` reads every frame's header (a 30,000-frame
#: TIFF of 11 MB took 6 s, more frames longer still), only to say that one frame is read.
_FRAMES_COUNTED = 100


def _frames(im: Image.Image) -> int:
    """The number of frames of ``im``, counted up to one past :data:`_FRAMES_COUNTED`; the
    image is left at its first frame."""
    if not getattr(im, "is_animated", False):
        return 1
    frames = 1
    while frames <= _FRAMES_COUNTED:
        try:
            im.seek(frames)
        except EOFError:
            break
        frames += 1
    im.seek(0)
    return frames


def _decoded(path: Path, max_pixels: int, limit: str, hint: str) -> tuple[Image.Image, int]:
    """:func:`open_image`'s work, its warnings caught by the caller. Any exception of Pillow's
    decoders (their plugins raise ``TypeError``, ``IndexError``, ``struct.error``, ... for a
    damaged file) is a :class:`DataError` naming the file, with what libtiff said."""
    said: list[str] = []
    failed: Exception | None = None
    im = None
    with _libtiff_lines(said):
        try:
            im = Image.open(path)
            pixel_count(*im.size, max_pixels, path, hint)
            _key_in_pixel_units(im)  # before load(): the PNG's bit depth is known until then
            im.load()  # closes the file of a single-frame image
            frames = _frames(im)  # reads frame headers: may fail too
        except Exception as exc:  # noqa: BLE001 (MemoryError too: the image is closed below)
            failed = exc
            if im is not None:
                im.close()
    if isinstance(failed, Image.DecompressionBombError):
        raise DataError(
            f"{path}: more than {_PILLOW_LIMIT:,} pixels (Pillow's limit), above {limit}"
        ) from None
    if isinstance(failed, MemoryError | DataError):  # DataError: pixel_count's
        raise failed
    if isinstance(failed, PermissionError):  # read as a format error, the path said twice
        raise DataError(f"{path}: cannot read ({failed.strerror or 'Permission denied'})") from None
    if failed is not None:
        why = "; ".join([_reason(failed), *said])
        raise DataError(f"{path}: not a readable image ({why})") from None
    for line in said:
        warnings.warn(line, UserWarning, 2)  # said by open_image with the file's name
    return im, frames


@contextlib.contextmanager
def _libtiff_lines(said: list[str]) -> Iterator[None]:
    """Put what libtiff writes straight to file descriptor 2 while it decodes (a damaged TIFF:
    "tempfile.tif: Using code not yet in table.", naming a file of Pillow's) into ``said``, one
    entry a line, instead of onto the user's terminal beside mistnet's one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read(4096).decode("utf-8", "replace")
            for line in text.splitlines():
                line = re.sub(r"^tempfile\.tif: ", "", line.strip()).rstrip(".")
                if line:
                    said.append(line)


@contextlib.contextmanager
def decoding(name: str | os.PathLike) -> Iterator[None]:
    """Decode an image opened elsewhere (a Pillow image given to ``predict``, ``fit``, decoded
    only when its pixels are read) as :func:`open_image` decodes a file: any exception of
    Pillow's decoders one :class:`DataError` naming ``name`` (with what libtiff said), its
    warnings and libtiff's lines re-said as one :class:`MistWarning` each, naming ``name``.
    :class:`DataError` and ``MemoryError`` pass as they are."""
    said: list[str] = []
    failed: Exception | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _libtiff_lines(said):
            try:
                yield
            except (DataError, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - a damaged or closed image's, any kind
                failed = exc
    if failed is not None:
        why = "; ".join([_reason(failed), *said])
        raise DataError(f"{name}: not a readable image ({why})") from None
    ours = [w.message for w in caught if issubclass(w.category, MistWarning)]
    theirs = [str(w.message) for w in caught if not issubclass(w.category, MistWarning)]
    for message in dict.fromkeys([*theirs, *said]):
        warnings.warn(f"{name}: {message}", MistWarning, 3)
    for warning in ours:  # mistnet's own (clipped pixels) name the image already
        warnings.warn(warning, stacklevel=3)


#: A PNG's raw mode -> what its ``tRNS`` colour key is multiplied (or divided) by to be in the
#: units of the decoded pixels: 2- and 4-bit grey are scaled up to 8 bits, 16-bit colour is
#: read as its high bytes.
_KEY_SCALE = {"L;2": 85, "L;4": 17, "RGB;16B": 1 / 256}


def _key_in_pixel_units(im: Image.Image) -> None:
    """Put the ``tRNS`` colour key of a 2- or 4-bit grey or a 16-bit colour PNG (in the file's
    sample units) into ``im.info`` in the units of its decoded pixels (see :func:`colour_key`);
    16-bit colour: the key's high bytes, so colours within 1/256 of it are transparent too."""
    key = im.info.get("transparency")
    rawmode = im.tile[0].args if im.format == "PNG" and len(im.tile) == 1 else None
    scale = _KEY_SCALE.get(rawmode) if isinstance(rawmode, str) else None
    if scale is None or key is None:
        return
    if isinstance(key, int):
        im.info["transparency"] = int(key * scale)
    elif isinstance(key, tuple):
        im.info["transparency"] = tuple(int(k * scale) for k in key)


def colour_key(im: Image.Image) -> int | tuple[int, ...] | None:
    """The colour a grey or colour image without alpha marks transparent (a PNG ``tRNS`` chunk:
    ``im.info["transparency"]`` of an ``1``, ``L``, ``RGB``, ``I`` or ``I;16`` image), or None.
    A palette image's ``transparency`` is a palette index (Pillow's ``convert`` applies it)."""
    key = im.info.get("transparency")
    if im.mode == "RGB" and isinstance(key, tuple) and len(key) == 3:
        return key if all(isinstance(k, int) for k in key) else None
    grey = im.mode in ("1", "L", "I") or im.mode.startswith("I;16")
    return key if grey and isinstance(key, int) and not isinstance(key, bool) else None


#: Formats Pillow lists that are no pictures: documents and scientific data containers.
_NOT_PICTURES = frozenset({"PDF", "BUFR", "GRIB", "HDF5"})


def image_format(suffix: str) -> str | None:
    """The image format (Pillow's name: ``"GIF"``, ``"BMP"``, ``"WEBP"``) that a file suffix
    names, whatever its case, or None for a suffix of no image (``.csv``, ``.txt``, ``.pdf``,
    ``.h5``, none)."""
    fmt = Image.registered_extensions().get(suffix.lower())
    return None if fmt in _NOT_PICTURES else fmt


def stored_size(path: str | os.PathLike, decode: bool = True) -> tuple[int, int, int] | None:
    """``(width, height, orientation)`` of an image file: its size as stored (Pillow's
    ``Image.open(path).size``) and its EXIF orientation as ``ImageOps.exif_transpose`` reads
    it (1 when none, or one it does not turn by: "6" as text; 5 to 8 swap width and height
    once applied); None if the file cannot be opened or its EXIF read. Without ``decode``, a
    PNG whose EXIF (or XMP) is not before its pixels is not decoded to find it (Pillow's
    ``getexif`` would): its orientation is 1 here."""
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": open_image said it already
            return (*im.size, _orientation(im, decode))
    except Exception:  # noqa: BLE001 - asked on the way to an error: that error is said instead
        return None


def _orientation(im: Image.Image, decode: bool) -> int:
    """The EXIF orientation of the opened ``im`` as :func:`stored_size` reads it."""
    if not decode and im.format == "PNG" and "exif" not in im.info:
        return 1
    orientation = im.getexif().get(0x0112, 1)
    turned = orientation in range(1, 9) and not isinstance(orientation, str | bytes)
    return int(orientation) if turned else 1  # 6.0 turns as 6


def upright(im: Image.Image, name: str | os.PathLike) -> Image.Image:
    """``im`` turned by its EXIF orientation (``ImageOps.exif_transpose``); EXIF that is no
    TIFF data is named, not a raw ``SyntaxError``.

    Raises:
        DataError: ``"<name>: not a readable image (...)"``.
    """
    try:
        return ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - Pillow's EXIF parser raises SyntaxError, ...
        raise DataError(f"{name}: not a readable image ({_reason(exc)})") from None


def upright_size(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    hint: str = "crop or downscale it, or raise --max-pixels",
) -> tuple[int, int]:
    """``(width, height)`` of an image file once turned upright by its EXIF orientation, read
    from its header (nothing decoded: a command checks every file before it decodes the
    first, one at a time).

    Raises:
        DataError: as :func:`open_image`: not a regular file, too large, or a header Pillow
            cannot read (a body damaged past the header is found when it is decoded).
    """
    regular_file(path)
    max_pixels = validate.max_pixels(max_pixels, "max_pixels")
    try:
        with warnings.catch_warnings(), Image.open(path) as im:  # the header: nothing decoded
            warnings.simplefilter("ignore")  # said when it is decoded
            pixel_count(*im.size, max_pixels, path, hint)  # before any EXIF is read
            size = (*im.size, _orientation(im, decode=False))
    except DataError:
        raise
    except Exception:  # noqa: BLE001 - an unreadable header or EXIF: the decoder says why
        with open_image(path, max_pixels, hint) as im:
            size = (*upright(im, path).size, 1)
    width, height, orientation = size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _reason(exc: Exception) -> str:
    """What went wrong, on one line; a plugin's ``KeyError(255)`` says what it is."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError | ValueError | SyntaxError | EOFError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def pixel_count(
    width: int,
    height: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    what: str | os.PathLike = "image",
    hint: str = "crop or downscale it, or raise --max-pixels",
) -> None:
    """Refuse an image of ``width`` x ``height`` above ``max_pixels`` pixels, before any of it
    is allocated: decoded as floats and run through the heatmap network, a 100000 x 100000
    image would need terabytes.

    Raises:
        DataError: ``"<what>: <W>x<H> = <n> pixels, more than the limit of <max> pixels ..."``.

    Example:
        >>> pixel_count(100_000, 100_000, what="--size", hint="choose a smaller size")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: --size: 100000x100000 = 10,000,000,000 pixels, more than the limit of 40,000,000 pixels (--max-pixels); choose a smaller size
    """
    if width * height > max_pixels:
        n = width * height  # 10**400 was spelt in full, 1,400 characters
        size = (
            f"{width}x{height} = {n:,}"
            if n < 2**64
            else f"{validate.shown(width)} x {validate.shown(height)}"
        )
        raise DataError(
            f"{what}: {size} pixels, more than the limit of {max_pixels:,} pixels (--max-pixels); "
            f"{hint}"
        )


def scaled_size(
    height: int, width: int, factor: float, max_pixels: int, what: str, hint: str
) -> tuple[int, int]:
    """``(h, w)``: a ``height`` x ``width`` image resized by ``factor`` (at least 1 px a side),
    once it has at most ``max_pixels`` pixels (:func:`pixel_count`). Huge sizes are refused
    before they are rounded: an infinite one (a factor of 1e307) is no integer, and one of
    1e300 pixels was spelt in full, 600 digits.

    Raises:
        DataError: ``"<what>: <W>x<H> becomes <w>x<h> ... pixels, more than the limit ..."``.

    Example:
        >>> scaled_size(48, 64, 0.5, 10_000, "x.png", "lower the scale")
        (24, 32)
        >>> scaled_size(48, 64, 1e300, 10_000, "x.png", "lower the scale")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: x.png: 64x48 becomes 6.4e+301x4.8e+301 pixels, more than the limit of 10,000 pixels (--max-pixels); lower the scale
    """
    hf, wf = height * factor, width * factor
    if hf * wf > max(max_pixels, 1e15):
        size = f"{wf:.3g}x{hf:.3g}" if math.isfinite(hf + wf) else "beyond 1e308 x 1e308"
        raise DataError(
            f"{what}: {width}x{height} becomes {size} pixels, more than the limit of "
            f"{max_pixels:,} pixels (--max-pixels); {hint}"
        )
    h, w = max(1, round(hf)), max(1, round(wf))
    if h * w > max_pixels:
        raise DataError(
            f"{what}: {width}x{height} becomes {w}x{h} = {w * h:,} pixels, more than the limit "
            f"of {max_pixels:,} pixels (--max-pixels); {hint}"
        )
    return h, w


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "colour_key",
    "image_format",
    "open_image",
    "pixel_count",
    "scaled_size",
    "stored_size",
]
