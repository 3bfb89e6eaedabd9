"""Checks at the boundaries where outside bytes enter mistnet.

Paths named inside list files, image files, text files, and arrays or tensors that must be
finite are checked here, once; the code behind each boundary trusts what it is given. Every
check raises :class:`~mistnet.errors.DataError` with one line that names the file (or what the
values are) and what is allowed, which ``mist`` prints without a traceback.

- :func:`inside`: a path read from a list file stays inside the dataset root (no absolute
  path, no ``..``, no symlink that points out of the root).
- :func:`regular_file`: only regular files are opened (a FIFO would block the reader for
  ever, a device would stream without end).
- :func:`read_text`: a UTF-8 text file.
- :func:`open_image`: an image whose header declares at most ``max_pixels`` pixels, decoded
  only after that check (a 60000 x 60000 PNG is a few kilobytes and 10 GB decoded).
- :func:`require_finite`: no NaN or infinity in an array or a tensor.
- :data:`NUMPY_READ_ERRORS`: what reading corrupt numpy files raises.
"""

from __future__ import annotations

import os
import stat
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mistnet.errors import DataError

#: Default pixel cap for images read by ``mist detect`` and the importers (``--max-pixels``):
#: 40 MP is a large photo; decoded as floats and run through the heatmap network it already
#: needs several GB of memory.
DEFAULT_MAX_PIXELS = 40_000_000

#: What numpy raises on corrupt ``.npy`` / ``.npz`` bytes: besides I/O and format errors, a
#: damaged array header reaches Python's parser (``SyntaxError``, ``tokenize.TokenError``).
NUMPY_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
    SyntaxError,
    tokenize.TokenError,
)

# Pillow's own decompression-bomb check refuses images above twice this many pixels.
_PILLOW_LIMIT = 2 * (Image.MAX_IMAGE_PIXELS or 0)


def regular_file(path: str | os.PathLike) -> Path:
    """``path`` if it is a regular file (symlinks followed).

    Raises:
        DataError: missing, or a directory, FIFO, socket or device.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        kind = {
            stat.S_IFDIR: "a directory",
            stat.S_IFIFO: "a FIFO",
            stat.S_IFSOCK: "a socket",
            stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device",
        }.get(stat.S_IFMT(mode), "not a file")
        raise DataError(f"{path}: {kind}, not a regular file")
    return path


def read_text(path: str | os.PathLike) -> str:
    """The content of the regular file ``path`` decoded as UTF-8.

    Raises:
        DataError: not a regular file, unreadable, or not UTF-8 (with the byte offset).
    """
    path = regular_file(path)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def inside(root: str | os.PathLike, name: str, where: str | os.PathLike) -> Path:
    """The path ``root / name`` for a ``name`` read from the list file ``where``.

    Args:
        root: the dataset root the list's paths are relative to.
        name: one line of the list.
        where: the list file, for the message.

    Raises:
        DataError: ``name`` is absolute, holds a ``..`` component, or resolves (through a
            symlink) to somewhere outside ``root``.

    Example:
        >>> inside("data", "images/0.png", "data/train.txt").as_posix()
        'data/images/0.png'
        >>> inside("data", "../secret.png", "data/train.txt")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: data/train.txt: '../secret.png' leaves the dataset root data ('..')
    """
    root = Path(root)
    if "\0" in name:
        raise DataError(f"{where}: {name!r} holds a NUL byte")
    if os.path.isabs(name) or Path(name).is_absolute():
        raise DataError(f"{where}: {name!r} is an absolute path; paths are relative to {root}")
    if ".." in Path(name).parts:
        raise DataError(f"{where}: {name!r} leaves the dataset root {root} ('..')")
    path = root / name
    real_root, real = root.resolve(), path.resolve()
    if not real.is_relative_to(real_root):
        raise DataError(f"{where}: {name!r} is a link to {real}, outside the dataset root {root}")
    return path


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
    limit = f"the limit of {max_pixels:,} pixels (--max-pixels); {hint}"
    try:
        with warnings.catch_warnings():
            # Pillow warns between its two limits; the cap below is the check that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError:
        raise DataError(
            f"{path}: more than {_PILLOW_LIMIT:,} pixels (Pillow's limit), above {limit}"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    W, H = im.size
    if W * H > max_pixels:
        im.close()
        raise DataError(f"{path}: {W}x{H} = {W * H:,} pixels, more than {limit}")
    try:
        im.load()  # closes the file of a single-frame image
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        im.close()
        raise DataError(f"{path}: not a readable image ({exc})") from None
    return im


def require_finite(values: np.ndarray | torch.Tensor, what: str) -> None:
    """Raise unless every element of ``values`` is finite (integers always are).

    Args:
        values: a numpy array or a torch tensor (any device).
        what: names the values in the message, e.g. ``"data/train.npz: images"``.

    Raises:
        DataError: ``"<what> holds <n> NaN or infinite values"``.

    Example:
        >>> require_finite(np.array([1.0, np.nan, np.inf]), "x")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: x holds 2 NaN or infinite values (of 3)
    """
    if isinstance(values, torch.Tensor):
        if not values.is_floating_point() or bool(torch.isfinite(values).all()):
            return
        bad, total = int((~torch.isfinite(values)).sum()), values.numel()
    else:
        values = np.asarray(values)
        if values.dtype.kind not in "fc" or values.size == 0:
            return
        rows = values.reshape(values.shape[0] if values.ndim > 1 else 1, -1)
        # In chunks of rows: a float dataset of 50k scenes would need a 300 MB mask at once.
        bad = sum(int((~np.isfinite(rows[i : i + 1024])).sum()) for i in range(0, len(rows), 1024))
        if not bad:
            return
        total = values.size
    raise DataError(f"{what} holds {bad} NaN or infinite values (of {total})")
