"""Checks at the boundaries where outside bytes enter mistnet.

Paths named inside list files, image files, text files, and arrays or tensors that must be
finite are checked here, once; the code behind each boundary trusts what it is given. Every
check raises :class:`~mistnet.errors.DataError` with one line that names the file (or what the
values are) and what is allowed, which ``mist`` prints without a traceback.

- :func:`inside`: a path read from a list file stays inside the dataset root (no absolute
  path, no ``..``, no symlink that points out of the root).
- :func:`regular_file`: only regular files are opened (a FIFO would block the reader for
  ever, a device would stream without end).
- Text and JSON files: :mod:`mistnet.textfile` (``read_text``, ``read_json``).
- :func:`seed`, :func:`minutes`, :func:`threads`: the numbers a user gives on the command line or to
  :func:`mistnet.fit` (raising :class:`~mistnet.errors.ArgumentError`); :func:`as_integer`: what
  counts as an integer there, :func:`flag`: as a flag.
- Image files: :mod:`mistnet.imagefile` (``open_image``, ``pixel_count``).
- :func:`require_finite`: no NaN or infinity in an array or a tensor;
  :func:`require_float32`: nor a value that float32 cannot hold.
- :func:`class_name`: a class name that prints as one line (no control character);
  :func:`printable`: any other such text (``models package --command``).
- :data:`NUMPY_READ_ERRORS`: what reading corrupt numpy files raises.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import tokenize
import types
import typing
import unicodedata
import zipfile
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from mistnet.errors import ArgumentError, DataError, MistError, unprintable
from mistnet.machine import max_threads
from mistnet.ops import _checks

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
    NotImplementedError,  # zipfile: a zip version or compression method it does not know
)


def too_large_array(path: str | os.PathLike, exc: MemoryError) -> DataError:
    """The error for a numpy file whose array header asks for more memory than there is (numpy
    allocates the shape it declares before reading a byte of data)."""
    return DataError(
        f"{path}: an array header asks for more memory than there is ({exc}); the file is "
        "damaged, or too large for this machine"
    )


def _kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, for a message ("a FIFO")."""
    return {
        stat.S_IFREG: "a file",
        stat.S_IFDIR: "a directory",
        stat.S_IFIFO: "a FIFO",
        stat.S_IFSOCK: "a socket",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
    }.get(stat.S_IFMT(mode), "not a file")


def path_argument(value: str | os.PathLike, name: str, empty: bool = True) -> str:
    r"""``value`` (a path handed to the Python API) as text, once it could name a file.

    Raises:
        TypeError: not a str or path-like object.
        ArgumentError: it holds a NUL character, which the OS refuses deep inside, a name
            longer than a file system takes (255 bytes: "File name too long" from the OS), or
            (``empty`` False) it is empty: the working directory, read without a word.

    Example:
        >>> path_argument("run\x00", "run")
        Traceback (most recent call last):
        ...
        mistnet.errors.ArgumentError: run 'run\x00' holds a NUL character; no file is named so
    """
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a path as text, got {type(value).__name__}")
    if "\0" in text:
        raise ArgumentError(f"{name} {text!r} holds a NUL character; no file is named so")
    if not (empty or text.strip()):
        raise ArgumentError(f"{name} {text!r} is empty; give the folder to read")
    for part in text.split(os.sep):
        size = len(part.encode("utf-8", "replace"))  # os.fsencode's bytes, or about
        if size > NAME_MAX:
            raise ArgumentError(
                f"{name} {text[:60]!r}...: a name of {size} bytes, more than the {NAME_MAX} a "
                "file system takes"
            )
    return text


#: The longest name of a file or folder most file systems take, in bytes (ext4, XFS, APFS).
NAME_MAX = 255


def _mode(path: Path, missing: str) -> int:
    """The ``st_mode`` of ``path`` (symlinks followed), or ``missing`` as a DataError."""
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        if os.path.lexists(path):  # the link is there, what it names is not
            raise DataError(
                f"{path}: a symbolic link to nowhere; remove it or its target"
            ) from None
        raise DataError(missing) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{path}: a symbolic link loop (it leads back to itself)") from None
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def require_numpy_file(path: Path, what: str, archive: bool = True) -> None:
    """Refuse ``path`` unless it begins as an ``.npz`` (a zip archive; ``archive``) or a
    ``.npy`` array does, before ``np.load`` reads it: that reads either kind whatever the
    name (an array where an archive was expected: a TypeError deep in the reader) and calls
    any other bytes pickled, advising ``pickle.load``. ``what`` names the file's role
    (``"split file"``).

    Raises:
        DataError: naming the file and what it begins as.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as exc:  # unreadable: a raw PermissionError from the Python API
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    npy, npz = head.startswith(b"\x93NUMPY"), head.startswith(b"PK")
    if (npz, npy) != (archive, not archive):
        kind = {(True, False): "an .npz archive", (False, True): "a .npy array"}.get((npz, npy))
        if kind is None:
            other = "no zip archive" if archive else "no .npy header"
            kind = "pickled Python objects" if head[:1] == b"\x80" else other
        expected = "an .npz archive" if archive else "a .npy array"
        raise DataError(f"{path}: not a {what} ({kind}; {expected} expected)")


def regular_file(path: str | os.PathLike) -> Path:
    """``path`` if it is a regular file (symlinks followed).

    Raises:
        DataError: missing, or a directory, FIFO, socket or device.
    """
    path = Path(path)
    mode = _mode(path, f"{path}: no such file")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: {_kind(mode)}, not a regular file")
    return path


def own_file(path: str | os.PathLike, what: str) -> Path:
    """``path``, a file of the directory it lies in (a run's checkpoint, a dataset's split),
    once it is no symbolic link leading out of that directory: another run's weights or
    another dataset's split would be read, and recorded, as this one's. A link inside the
    directory (``best.safetensors`` to ``last.safetensors``) is its own file.

    Raises:
        DataError: naming the link, where it leads and ``what`` the directory is.
    """
    path = Path(path)
    if path.is_symlink():
        try:
            folder, real = path.parent.resolve(), path.resolve()
        except (RuntimeError, OSError):  # Python's "Symlink loop" (3.11), ELOOP (3.13)
            raise DataError(f"{path}: a symbolic link loop (it leads back to itself)") from None
        if not real.is_relative_to(folder):
            raise DataError(
                f"{path}: is a symbolic link to {real}, outside its {what}; mistnet reads only "
                f"the {what}'s own files (copy the file in, if it is meant to be there)"
            )
    return path


def replaceable(path: str, what: str, kind: str, mine, error: type[Exception]) -> None:
    """Refuse to write over ``path`` unless it is new or a regular file ``mine`` sees to be a
    ``kind`` mistnet wrote: a symbolic link, a FIFO or a file of the user's is never replaced
    (the figure writers and ``save_checkpoint`` of the Python API).

    Raises:
        error: ``"<what> <path> exists and is no <kind> mistnet wrote; give a new file name"``.
    """
    if os.path.islink(path):
        raise error(f"{what} {path} is a symbolic link; give a new file name")
    if os.path.lexists(path) and not mine(path):
        raise error(
            f"{what} {path} exists and is no {kind} mistnet wrote; give a new file name "
            f"(mistnet replaces only its own {kind}s)"
        )


def require_directory(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is a directory (symlinks followed).

    Raises:
        DataError: ``"<what> <path> does not exist"``, or ``"<path>: a FIFO, not a <what>"``
            for anything else there.

    Example:
        >>> require_directory("/dev/null", "dataset directory")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: /dev/null: a character device, not a dataset directory
    """
    path = Path(path)
    mode = _mode(path, f"{what} {path} does not exist")
    if not stat.S_ISDIR(mode):
        raise DataError(f"{path}: {_kind(mode)}, not a {what}")
    return path


def _real_number(value: object, name: str) -> float:
    if (x := _checks.as_real(value)) is None:
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(x):
        raise ArgumentError(f"{name} must be a finite number, got {shown(value)}")
    return x


def class_name(name: str, where: str | os.PathLike) -> str:
    r"""``name`` in Unicode normal form C, if it holds no control character: the same name
    typed on another system (``"cafe\u0301"`` for ``"café"``) is the same class. Class names
    are printed in lines (the import's summary, ``mist eval``'s metrics, ``classif/<name>``
    curves), written into CSV files and drawn into figures, where a newline or an escape
    sequence would garble them. An invisible character (a zero-width space, a space) at either
    end is refused too: the name would print as another.

    Raises:
        DataError: naming ``where``, the name (escaped) and its first such character.

    Example:
        >>> class_name("cat\ndog", "labels.csv row 2")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: labels.csv row 2: class name 'cat\ndog' holds the control character '\n'; name the class with printable characters
    """
    printable(name, f"{where}: class name", "name the class with printable characters")
    if "," in name:  # classes are listed comma-separated (the import's summary, messages)
        raise DataError(f"{where}: class name {name!r} holds a comma; name it without one")
    for end in {name[:1], name[-1:]} - {""}:  # a zero-width space pasted at an end: a class
        if unicodedata.category(end) == "Cf" or end.isspace():  # that prints as another
            raise DataError(
                f"{where}: class name {name!r} starts or ends with the invisible {end!r}; "
                "remove it (it would print as another class)"
            )
    return unicodedata.normalize("NFC", name)


def printable(text: str, what: str, hint: str) -> str:
    r"""``text`` if it holds no control character (it is printed in a line, or written into
    one); :func:`class_name` for class names.

    Raises:
        DataError: ``"<what> <text escaped> holds the control character <c>; <hint>"``.

    Example:
        >>> printable("x\ny", "--command", "give it on one line")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: --command 'x\ny' holds the control character '\n'; give it on one line
    """
    bad = next((c for c in text if unprintable(c)), None)
    if bad is not None and 0xDC80 <= ord(bad) <= 0xDCFF:  # a file name's byte read raw
        byte = ord(bad) - 0xDC00
        raise DataError(f"{what} {text!r} holds the byte {byte:#x}, which is not UTF-8; {hint}")
    if bad is not None:
        raise DataError(f"{what} {text!r} holds the control character {bad!r}; {hint}")
    return text


def class_names(names: object, where: str) -> tuple[str, ...]:
    r"""``names`` as a tuple, if it is a list or tuple of distinct, non-empty class names
    (each one a :func:`class_name`).

    Raises:
        TypeError: not a list or tuple of strings (a string ``"ab"`` would be two classes).
        DataError: an empty name, a name twice (in any Unicode normal form: the two would
            print alike), or one holding a control character, naming
            ``where`` (``"classes"``, ``"manifest.json: classes"``).

    Example:
        >>> class_names(["cat", "dog"], "classes")
        ('cat', 'dog')
        >>> class_names(["cat", "cat"], "classes")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: classes: 'cat' is named twice; give distinct class names
    """
    if not isinstance(names, list | tuple):
        raise TypeError(f"{where} must be a list of class names, got {type(names).__name__}")
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{where} must be class names (str), got {type(name).__name__}")
        if not name:
            raise DataError(f"{where}: a class name is empty; give each class a name")
        if unicodedata.normalize("NFC", name) in seen:
            raise DataError(f"{where}: {name!r} is named twice; give distinct class names")
        seen.add(class_name(name, where))
    return tuple(names)


def flag(value: object, name: str) -> bool:
    """``value`` if it is True or False, numpy's too (a string ``"no"`` would be true).

    Raises:
        TypeError: anything else, naming ``name`` (:func:`mistnet.ops._checks.check_flag`).
    """
    return _checks.check_flag(value, name)


#: What counts as an integer argument: :func:`mistnet.ops._checks.as_integer`, the one test.
as_integer = _checks.as_integer
as_real = _checks.as_real
shown = _checks.shown


def seed(value: object, name: str = "seed") -> int:
    """``value`` if it is an integer seed in [0, 2**63) (:func:`as_integer`).

    Raises:
        TypeError: not an integer.
        ArgumentError: negative or too large (numpy and torch refuse it deep inside).
    """
    n = as_integer(value)
    if n is None:
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not 0 <= n < 2**63:
        raise ArgumentError(f"{name} must be an integer in [0, 2**63), got {shown(n)}")
    return n


def max_pixels(value: object, name: str = "max_pixels") -> int:
    """``value`` if it is an integer limit of pixels >= 1 (``--max-pixels``).

    Raises:
        TypeError: not an integer (``"9"`` was a comparison of int and str in Pillow's header
            check).
        ArgumentError: below 1 (every image refused, saying the limit is -1 pixels).
    """
    n = as_integer(value)
    if n is None:
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if n < 1:
        raise ArgumentError(f"{name} must be >= 1, got {shown(n)}")
    return n


def threads(value: object, name: str = "threads") -> int:
    """``value`` if it is a thread count in [0, :func:`~mistnet.machine.max_threads`] (0: torch's choice).

    Each torch thread is an operating-system thread with its own stack: 100,000 of them end in
    an internal error or "Cannot allocate memory" once the run directory is made.

    Raises:
        TypeError: not an integer.
        ArgumentError: negative or above the limit.

    Example:
        >>> threads(-1, "--threads")
        Traceback (most recent call last):
        ...
        mistnet.errors.ArgumentError: --threads must be 0 (torch's choice) or more, got -1
    """
    n = as_integer(value)
    if n is None:
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if n < 0:
        raise ArgumentError(f"{name} must be 0 (torch's choice) or more, got {shown(n)}")
    if n > max_threads():
        raise ArgumentError(
            f"{name} must be at most {max_threads()} (4 x the {os.cpu_count()} cores, at least "
            f"64), got {shown(n)}"
        )
    return n


def minutes(value: object, name: str = "minutes") -> float:
    """``value`` if it is a finite number of minutes > 0.

    Raises:
        TypeError: not a number.
        ArgumentError: NaN, infinite, zero or negative (none of them is a time cap).

    Example:
        >>> minutes(float("nan"), "--minutes")
        Traceback (most recent call last):
        ...
        mistnet.errors.ArgumentError: --minutes must be a finite number, got nan
    """
    value = _real_number(value, name)
    if value <= 0:
        raise ArgumentError(f"{name} must be a number of minutes > 0, got {value:g}")
    return value


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
        mistnet.errors.DataError: data/train.txt: '../secret.png' holds '..'; give paths inside the dataset root data without it
    """
    root = Path(root)
    if "\0" in name:
        raise DataError(f"{where}: {name!r} holds a NUL byte")
    if os.path.isabs(name) or Path(name).is_absolute():
        raise DataError(f"{where}: {name!r} is an absolute path; paths are relative to {root}")
    if ".." in Path(name).parts:  # refused even where it comes back in (images/../images/x)
        raise DataError(
            f"{where}: {name!r} holds '..'; give paths inside the dataset root {root} without it"
        )
    path = root / name
    if not os.path.lexists(path):  # listed in one Unicode form, stored in the other (macOS)
        forms = (root / unicodedata.normalize(f, name) for f in ("NFC", "NFD"))
        path = next((p for p in forms if os.path.lexists(p)), path)
    try:
        real_root, real = root.resolve(), path.resolve()
    except (RuntimeError, OSError):  # Python's "Symlink loop" (3.11), ELOOP (3.13)
        raise DataError(f"{where}: {name!r} leads through a symbolic link loop") from None
    if not real.is_relative_to(real_root):
        raise DataError(f"{where}: {name!r} is a link to {real}, outside the dataset root {root}")
    return path


def require_dense(x: torch.Tensor, what: str) -> None:
    """Refuse a meta or sparse tensor with a :class:`DataError` (see
    :func:`mistnet.ops._checks.require_dense`, the one check every caller shares)."""
    _checks.require_dense(x, what, DataError)


def image_float(x: torch.Tensor) -> bool:
    """Whether ``x`` is of a float dtype images are taken in (:func:`mistnet.ops._checks.
    wide_float`: 16 bits or more)."""
    return _checks.wide_float(x)


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


def require_float32(values: np.ndarray | list[float], what: str) -> None:
    """Raise unless every value is finite and within float32's range, where datasets store
    boxes (``1e39`` would become infinite there, and be reported against the dataset).

    Raises:
        DataError: ``"<what> holds <n> NaN or infinite values"`` or ``"... beyond float32"``.

    Example:
        >>> require_float32([10.0, 1e39], "boxes.csv line 2: the box")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: boxes.csv line 2: the box holds 1 value beyond float32's range (|v| <= 3.4e+38): 1e+39
    """
    a = np.asarray(values, dtype=np.float64)
    require_finite(a, what)
    big = np.abs(a) > np.finfo(np.float32).max
    if big.any():
        n = int(big.sum())
        raise DataError(
            f"{what} holds {n} value{'s' * (n > 1)} beyond float32's range (|v| <= "
            f"{np.finfo(np.float32).max:.2g}): {a[big].flat[0]:g}"
        )


_FLOAT32_MAX = 3.4028234663852886e38  # a number beyond is infinite in the float32 networks


def typed_value(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a config field's annotation (``int``, ``float``, ``bool``,
    ``str``, a ``Literal`` or a tuple of one of them), converting only lossless cases.

    Raises:
        MistError: naming ``key``, the value and what it must be.
    """
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise MistError(f"{key} must be one of {list(choices)}, got {value!r}")
        return value
    if origin is tuple:
        (item, _) = typing.get_args(annotation)
        if not isinstance(value, list | tuple):
            raise MistError(f"{key} must be a list, got {value!r}")
        return tuple(typed_value(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation {annotation}")
    if annotation is bool:
        if not isinstance(value, bool | np.bool_):  # numpy's True from a computed sweep
            raise MistError(f"{key} must be true or false, got {value!r}")
        return bool(value)
    # numpy's scalars too (np.int64(2) from a computed sweep), and 0-d tensors
    if annotation is int:
        if (n := as_integer(value)) is None:
            raise MistError(f"{key} must be an integer, got {value!r}")
        if not -(2**63) < n < 2**63:  # what torch and numpy hold (seeds, sizes, steps)
            raise MistError(f"{key} must be an integer in (-2**63, 2**63), got {shown(n)}")
        return n
    if annotation is float:
        if (x := _checks.as_real(value)) is None:  # 0-d tensors too, as for int
            raise MistError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(x):  # NaN would pass every range check; JSON has no inf
            raise MistError(f"{key} must be a finite number, got {shown(value)}")
        if abs(x) > _FLOAT32_MAX:  # infinite in the networks' float32 (a side, a rate)
            raise MistError(f"{key} must be a finite float32 (at most 3.4e38), got {value!r}")
        return x
    if annotation is str:
        if not isinstance(value, str):
            raise MistError(f"{key} must be a string, got {value!r}")
        if "\0" in value:  # no path or name holds one: the OS refuses it deep inside
            raise MistError(f"{key} holds a NUL character, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation}")
