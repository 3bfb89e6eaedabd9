"""Atomic file writes (a crash or an error leaves the old file or the new one, never half of one),
and strict JSON (a directory's lock is in :mod:`mistnet.locks`).

Every writer puts its bytes into a fresh temporary file beside the target (same directory, so
same file system: the final ``os.replace`` is atomic) and renames it over the target only when
writing succeeded. The temporary name holds the process id and a random part, so two processes
writing the same target never share one, and a temporary file whose writer was killed (its
process is gone) is recognised and removed by the next write of the same target. A failed write
also removes the parent directories it created, and reports an ``OSError`` (a full disk, a file
size limit, a read-only directory) under the target's name, not the temporary one's. No
``fsync``: the point is that readers and a re-run never see a partial file after an error or a
kill, not durability across a power cut.

Every JSON file and line mistnet writes goes through :func:`json_text`: strict JSON, where a
NaN or infinite float (an undefined metric, such as a detection rate over no instances) is
``null``, never the bare ``NaN`` that strict parsers reject.

Output directories, built in temporaries like these and renamed into place by
:func:`rename_new` (which never replaces what another process made meanwhile), are
:mod:`mistnet.outputs`' job.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mistnet.errors import MistError, unprintable
from mistnet.signals import deferred_signals


def json_text(doc: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """``doc`` as strict JSON (``allow_nan=False``), NaN and infinite floats (numpy's too)
    written as ``null``; numpy's integers and bools are written as Python's.

    Raises:
        TypeError: a key that is no string (``{1: "a", "1": "b"}`` was written with the key
            ``"1"`` twice, which no reader takes), or a value JSON has no form for.
        ValueError: an integer too long to write, or nesting deeper than 200 levels.

    Example:
        >>> json_text({"det": float("nan"), "n": [1, 2.5, float("inf")]}, indent=None)
        '{"det": null, "n": [1, 2.5, null]}'
        >>> json_text({"seed": np.int64(3), "flip": np.True_}, indent=None)
        '{"seed": 3, "flip": true}'
    """
    return json.dumps(_finite_or_none(doc), indent=indent, sort_keys=sort_keys, allow_nan=False)


_JSON_DEPTH = 200  # far deeper ran out of stack (RecursionError) in this walk or in json
_JSON_INT_BITS = 13_000  # about 3,900 digits: Python refuses int -> str past 4,300 by default


def _finite_or_none(value: Any, depth: int = 0) -> Any:
    if depth > _JSON_DEPTH:
        raise ValueError(f"nested deeper than {_JSON_DEPTH} levels")
    if isinstance(value, float | np.floating):
        x = float(value)
        return x if math.isfinite(x) else None
    if isinstance(value, np.integer | np.bool_):  # json.dumps has no form for them
        value = value.item()
    if isinstance(value, int) and value.bit_length() > _JSON_INT_BITS:
        raise ValueError(f"an integer of {value.bit_length()} bits is too long to write")
    if isinstance(value, dict):
        for k in value:  # 1 and "1", True and "true" became one key written twice
            if not isinstance(k, str):
                raise TypeError(f"key {k!r} is no string (JSON keys are strings)")
        return {k: _finite_or_none(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v, depth + 1) for v in value]
    return value


# ``.<target name>.<pid>.<8 hex>.tmp<target suffix>``, see temporary_sibling.
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp(\.[^.]*)?$")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a name :func:`temporary_sibling` gives (its writer done or killed).

    Example:
        >>> is_temporary(temporary_sibling("eval.json").name), is_temporary("eval.json")
        (True, False)
    """
    return _TEMPORARY.match(name) is not None


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no pid this system could have
        return False
    except PermissionError:  # another user's process
        return True
    return True


def a_file(entry: Path) -> bool:
    """Whether ``entry`` is a regular file (not a link): what an atomic file write leaves."""
    return entry.is_file() and not entry.is_symlink()


def remove_stale_temporaries(
    directory: str | os.PathLike,
    target: str | None = None,
    own: Callable[[Path], bool] = a_file,
) -> list[Path]:
    """Remove the temporary files and directories in ``directory`` whose writer is gone.

    A writer killed mid-write (SIGKILL, a power cut) leaves its temporary sibling behind; its
    name says which process made it, and a name whose process no longer runs is stale.

    Args:
        directory: where to look.
        target: only the temporaries of this file name (default: of every target).
        own: whether an entry so named is what the caller's writer leaves (default: a regular
            file); anything else of the name (a folder of the user's) is left alone.

    Returns:
        The paths removed.
    """
    removed = []
    directory = Path(directory)
    try:
        entries = list(directory.iterdir())
    except OSError:  # no directory yet, or unreadable: nothing to clean
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or (target is not None and _first_target(match["target"]) != target):
            continue
        if _writer_alive(int(match["pid"])) or not own(entry):
            continue
        remove_path(entry)
        removed.append(entry)
    return removed


def _first_target(name: str) -> str:
    """The target of a temporary of a temporary (a figure an earlier version drew atomically
    into a command's temporary), or ``name``."""
    while match := _TEMPORARY.match(name):
        name = match["target"]
    return name


def _own_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary of this process (:func:`temporary_sibling`): the file
    an atomic write of it is already writing."""
    match = _TEMPORARY.match(path.name)
    return match is not None and int(match["pid"]) == os.getpid()


def remove_path(path: Path) -> None:
    """Remove the file, link or directory tree ``path`` (a link itself, never what it points
    to); nothing when it is gone already."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def make_parents(directory: Path) -> list[Path]:
    """``directory.mkdir(parents=True, exist_ok=True)``; returns the directories it created.

    The list runs from the deepest directory up, ready for :func:`remove_empty`.

    Raises:
        MistError: the nearest of them that exists is no directory (a file, a symbolic link
            to nowhere): ``notes.txt is not a directory``, where ``mkdir`` says "File exists".
    """
    missing = []
    d = directory
    while not d.exists() and d != d.parent:
        if d.is_symlink():
            raise MistError(f"{d} is a symbolic link to nowhere; nothing can be written inside it")
        missing.append(d)
        d = d.parent
    if not d.is_dir():
        raise MistError(f"{d} is not a directory; nothing can be written inside it")
    for n, d in enumerate(reversed(missing)):  # from the top: a failure takes back its own
        try:  # (under umask 777 a parent made mode 000 refused the next; it stayed)
            d.mkdir(exist_ok=True)
        except OSError:
            remove_empty(missing[len(missing) - n :])
            raise
        except BaseException:  # a Ctrl-C: this one may be made too (it and those above stayed)
            remove_empty(missing[len(missing) - n - 1 :])
            raise
    return missing


def remove_empty(directories: list[Path]) -> None:
    """Remove each of ``directories`` (deepest first) that is empty; keep any that is not (and
    those above it). One that is missing is passed over (a Ctrl-C before its ``mkdir`` kept
    every folder above it)."""
    for d in directories:
        try:
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


def aside_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden name next to ``path`` for an earlier output set aside while a new one is
    made (``.<name>.<pid>.<8 hex>.aside``): never a temporary, so never removed as one.

    Example:
        >>> name = aside_sibling("demo/run")
        >>> name.name.startswith(".run."), name.suffix, is_temporary(name.name)
        (True, '.aside', False)
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.aside")


# ``.<target name>.<pid>.<8 hex>.aside``, see aside_sibling.
_ASIDE = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.aside$")


def stale_set_aside(directory: str | os.PathLike, target: str) -> list[Path]:
    """The earlier outputs of ``target`` in ``directory`` that a command set aside
    (:func:`aside_sibling`) and never put back or removed: it was killed (SIGKILL, a power
    cut). Oldest first."""
    try:
        found = [
            entry
            for entry in Path(directory).iterdir()
            if (match := _ASIDE.match(entry.name))
            and match["target"] == target
            and not _writer_alive(int(match["pid"]))
        ]
    except OSError:
        return []
    return sorted(found, key=lambda entry: entry.lstat().st_mtime)


#: The longest output name a command takes, in bytes: it is built beside its place under a
#: temporary name some 30 bytes longer, and file systems hold 255.
MAX_NAME_BYTES = 200


def nearest_existing(path: str | os.PathLike) -> Path:
    """``path`` made absolute, or the nearest of its parents that exists (a link to nowhere
    exists): where a file or folder made at ``path`` would be made, to check before any work."""
    found = Path(path).absolute()
    while not os.path.lexists(found) and found != found.parent:
        found = found.parent
    return found


def first_unwritable(paths: list[Path]) -> Path | None:
    """The first of ``paths`` that exists and this user cannot write: a folder it cannot
    create files in, a file it cannot append to; None if there is none."""
    for path in paths:
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            return path
        if path.is_file() and not os.access(path, os.W_OK):
            return path
    return None


def require_short_name(path: str | os.PathLike, option: str) -> None:
    """Refuse an output ``path`` whose name is over :data:`MAX_NAME_BYTES` (its temporary's
    would be over the file system's 255, an error naming a file the user never gave).

    Raises:
        MistError: naming ``option``, the length and the limit.
    """
    size = len(os.fsencode(Path(path).name))
    if size > MAX_NAME_BYTES:
        raise MistError(
            f"{option} {path}: a name of {size} bytes; at most {MAX_NAME_BYTES} (the output is "
            "made under a longer temporary name beside it)"
        )


def unsafe_in_name(c: str) -> bool:
    """Whether the character ``c`` may not be in a name mistnet gives a new output: one that
    would garble a line (:func:`~mistnet.errors.unprintable`), but a byte of a name that is not
    UTF-8 (a Latin-1 name, read by Python as a lone surrogate: printed escaped)."""
    return unprintable(c) and not 0xDC80 <= ord(c) <= 0xDCFF


def require_output_name(path: str | os.PathLike, option: str) -> None:
    """:func:`require_short_name`, and a name without control characters: an output named with
    a newline or an escape sequence breaks every line that names it (``mist plot`` refused one,
    ``show``, ``eval --json``, ``detect`` and the others wrote it). A byte that is not UTF-8
    (a Latin-1 name, read by Python as a lone surrogate) is a name of the user's file system,
    printed escaped: taken. A name that exists is taken: the output an earlier version made
    there is replaced (what is not the command's own is refused by the callers' checks).

    Raises:
        MistError: naming ``option`` and the length, or the first control character.
    """
    require_short_name(path, option)
    if os.path.lexists(path):  # an earlier output of the command's (else refused as a user's)
        return
    name = Path(path).name
    bad = next((c for c in name if unsafe_in_name(c)), None)
    if bad is not None:
        raise MistError(
            f"{option} {name!r} holds the control character {bad!r}; give a name of "
            "printable characters"
        )


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden name next to ``path`` that keeps its suffix (image writers read it).

    Example:
        >>> name = temporary_sibling("runs/eval.json")
        >>> name.parent.as_posix(), name.name.startswith(".eval.json."), name.suffix
        ('runs', True, '.json')
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _renameat2() -> Callable | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.renameat2
    except (OSError, AttributeError):  # not Linux, or a C library without renameat2
        return None


def take_mode(src: Path, dst: Path) -> None:
    """Give ``src`` the permissions and group of ``dst``, the file or folder it is to replace
    (an empty folder, an earlier output, a file written again): what the user made private
    (600, 700) or group-shared (setgid, a group) stays so."""
    st = dst.stat()
    os.chmod(src, stat.S_IMODE(st.st_mode))
    with contextlib.suppress(OSError):  # a group this user is not in: the mode is what matters
        os.chown(src, -1, st.st_gid)
    if src.is_dir() and not src.is_symlink():
        _take_group_inside(src, st)


def _take_group_inside(directory: Path, st: os.stat_result) -> None:
    """Give what ``directory`` holds the group of ``st`` (and its subfolders its setgid bit),
    as files written in place into a group-shared folder get: a directory made beside it and
    renamed into place holds files of the user's own group."""
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                os.chown(path, -1, st.st_gid, follow_symlinks=False)
                if name in dirs and st.st_mode & stat.S_ISGID:
                    os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | stat.S_ISGID)


def rename_new(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename the directory (or file) ``src`` to ``dst`` in one step, never replacing what
    ``dst`` holds.

    ``dst`` may be missing (``renameat2(RENAME_NOREPLACE)``: the kernel refuses a ``dst`` that
    appeared meanwhile) or an empty directory (a plain rename, which the kernel refuses onto a
    directory that is no longer empty).

    Raises:
        MistError: ``dst`` exists and is not an empty directory (made by another process).
    """
    src, dst = Path(src), Path(dst)
    try:
        if dst.is_dir() and not dst.is_symlink():
            take_mode(src, dst)
            os.rename(src, dst)
            return
        renameat2 = _renameat2()
        if renameat2 is not None:
            if (
                renameat2(
                    _AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE
                )
                == 0
            ):
                return
            code = ctypes.get_errno()
            if code not in (errno.EINVAL, errno.ENOSYS):  # else: a file system without it
                raise OSError(code, os.strerror(code), str(dst))
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise MistError(
                f"{dst}: was created by another process meanwhile; it is left as it is"
            ) from None
        raise


def check_dotdot(path: Path, option: str = "") -> None:
    """Refuse a ``path`` with a ``..`` after a folder that does not exist (``new/../out``): the
    kernel resolves it only once that folder is made, which would leave it behind (or, for
    ``new/..``, name the working directory)."""
    parts, named = path.parts, f"{option} {path}" if option else str(path)
    for i, part in enumerate(parts):
        if part == ".." and i and parts[i - 1] != ".." and not Path(*parts[:i]).is_dir():
            raise MistError(
                f"{named}: {Path(*parts[:i])} is no folder, so '..' after it leads nowhere; "
                "give the path without it"
            )


@contextmanager
def atomic_path(
    path: str | os.PathLike, commit: Callable[[Path, Path], object] = os.replace
) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success ``commit(tmp, path)`` moves it
    into place (``os.replace`` unless said otherwise).

    An existing file ``path`` passes its permissions and group on (:func:`take_mode`). The
    parent directory is created. On any exception (KeyboardInterrupt included) the
    temporary file and the directories created for it are removed, ``path`` keeps its old
    content and the exception propagates; an ``OSError`` about the temporary file (a full disk,
    a file size limit) is raised again under ``path``'s name. Stale temporary files of ``path``
    left by killed writers are removed first. A ``path`` that is a temporary of this process
    (an atomic write's, which a figure is drawn into) is yielded itself, to be moved by its
    own writer.
    """
    path = Path(path)
    if _own_temporary(path):
        # a figure drawn into new_file's temporary: written once, in place, as its writer
        # commits it (before: a temporary of the temporary, which a kill left under a name
        # no later run removed)
        yield path
        return
    check_dotdot(path)  # new/../x would leave new/ behind
    created = make_parents(path.parent)
    tmp = temporary_sibling(path)  # a name only
    try:  # a signal from here on takes back the parents made (it left them)
        remove_stale_temporaries(path.parent, path.name)
        yield tmp
        if path.is_file() and not path.is_symlink() and tmp.is_file():
            take_mode(tmp, path)
        commit(tmp, path)
    except BaseException as exc:
        with deferred_signals():  # a second Ctrl-C midway left the parents made
            _drop(tmp)
            remove_empty(created)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def _drop(tmp: Path) -> None:
    """Remove the temporary ``tmp`` if it is there; one that cannot be (its name too long to
    make: "File name too long" raised again by the removal) is no error of its own, so the
    folders made for it are still removed and the error is said of the target."""
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], object], exclusive: bool = False
) -> Path:
    """Call ``write(tmp)`` to create a temporary file, then move it onto ``path``
    (:func:`atomic_path`); ``exclusive``: never replace a ``path`` that exists by then
    (:func:`rename_new`: the check and the move are one step).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        MistError: (``exclusive``) ``path`` exists before the write, or was made by another
            process while it ran; either is left as it is.
    """
    if exclusive and os.path.lexists(path):  # else said to be "created meanwhile"
        raise MistError(f"{path}: exists; it is left as it is")
    with atomic_path(path, rename_new if exclusive else os.replace) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), exclusive)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`).

    A path in ``text`` whose bytes are not UTF-8 (a folder or image named so: Python holds its
    undecodable bytes as lone surrogates, :func:`os.fsdecode`) is written as those bytes, the
    name as the file system has it, rather than failing once the work is done.

    Raises:
        TypeError: ``text`` is no str (bytes or None: an AttributeError on ``encode``).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))


def atomic_write_json(path: str | os.PathLike, doc: Any) -> Path:
    """Write ``doc`` as :func:`json_text` (indent 2) plus a newline, atomically."""
    return atomic_write_text(path, json_text(doc) + "\n")
