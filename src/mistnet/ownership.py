"""What an output holds of its own, told from what the user put there.

A command that replaces an output it made earlier removes only its own entries
(:func:`require_only_own`: names, or names and contents, that the command writes) and only its
own files (:func:`require_own_file`); a directory a killed writer left is told by its marker
(:func:`made_directory`).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from mistnet.errors import MistError
from mistnet.io import a_file, is_temporary
from mistnet.locks import lock_holder
from mistnet.markers import MARKER


def is_own(entry: Path, patterns: Iterable[str]) -> bool:
    """Whether ``entry`` is one of an output's own (see :func:`require_only_own`)."""
    if is_temporary(entry.name):  # an atomic write's, finished or killed
        return True
    if entry.is_symlink():
        return False
    for pattern in patterns:
        if pattern.endswith("/"):
            if entry.is_dir() and fnmatch.fnmatchcase(entry.name, pattern[:-1]):
                return True
        elif entry.is_file() and fnmatch.fnmatchcase(entry.name, pattern):
            return True
    return False


def require_readable(path: Path, writer: str, way_out: str) -> None:
    """Refuse an earlier output ``path`` that this user cannot read (a file) or enter (a
    folder): whether ``writer`` wrote it cannot be told, and it was called the user's ("not
    written by", "of another content"). ``way_out``: what else to do, for the message.

    Example:
        >>> require_readable(Path("no-such-file"), "mist plot", "choose a new --out")
    """
    if path.is_symlink() or not os.path.lexists(path):
        return
    folder = path.is_dir()
    if not os.access(path, os.X_OK if folder else os.R_OK):
        raise MistError(
            f"{path}: this user cannot {'enter' if folder else 'read'} it, so whether "
            f"{writer} wrote it cannot be told, and it is not replaced; make it readable, "
            f"or {way_out}"
        )


def require_only_own(
    directory: str | os.PathLike,
    patterns: Iterable[str],
    what: str,
    shown: str | os.PathLike | None = None,
) -> None:
    """Check that ``directory`` holds nothing but the entries mistnet writes into ``what``.

    A command that replaces (and so deletes) an output it made earlier must not take along
    what the user put there since: notes, a run trained into a dataset's folder.

    Args:
        directory: the output to be replaced.
        patterns: ``fnmatch`` patterns of its own names: a regular file, or with a trailing
            ``/`` a directory (never a symbolic link). Temporaries of atomic writes are own too.
        what: the kind of output, for the message (``"a dataset"``).
        shown: the name of ``directory`` in the message (default ``directory``).

    Raises:
        MistError: naming the first entry (by name) that is not one of its own, or the
            process that holds its ``.lock`` (a run being trained).
    """
    patterns, shown = list(patterns), Path(shown or directory)
    pid = lock_holder(directory)
    if pid is not None:
        raise MistError(
            f"{shown}: another process (pid {pid}) is writing to it, so it is not replaced; "
            "wait for it to finish or choose another --out"
        )
    for entry in sorted(Path(directory).iterdir()):
        if not is_own(entry, patterns):
            require_readable(entry, "mistnet", "choose another --out")  # unread: not "not part"
            raise MistError(
                f"{shown / entry.name}: is not part of {what}, so {shown} is not replaced; "
                "move it away and run again, or choose another --out"
            )


#: What an output holds of its own: ``(what, patterns)`` (see :func:`require_only_own`), the
#: patterns given or found in the directory itself (``patterns(directory)``).
Own = tuple[str, Iterable[str] | Callable[[Path], Iterable[str]]]


#: Whether an existing file at one of an output's names is the one the command wrote there
#: (:func:`~mistnet.setaside.replacing`; :func:`mistnet.outfiles.written_json`,
#: :func:`~mistnet.outfiles.written_png`).
Mine = Callable[[Path], bool]


def require_own_file(path: Path, mine: Mine, writer: str = "mistnet") -> None:
    """Refuse to replace ``path`` unless it is a regular file that ``mine`` sees to be the one
    the command (``writer``, as the message names it) wrote: a folder, a symbolic link or
    another file of that name is the user's. A missing ``path`` passes."""
    if not os.path.lexists(path):
        return
    if path.is_symlink():
        what = "a symbolic link"
    elif path.is_dir():
        what = "a folder"
    elif not path.is_file():
        what = "not a regular file"
    else:
        require_readable(path, writer, "choose another --out")  # unread: "another content"
        if mine(path):
            return
        what = "a file of another content"
    raise MistError(
        f"{path}: is {what}, not a file {writer} wrote, so it is not replaced; move it "
        "away and run again, or choose another --out"
    )


def refuse_links(paths: Iterable[Path], writer: str, way_out: str) -> None:
    """Refuse the first of ``paths``, the folders and files ``writer`` makes inside its output,
    that is a symbolic link: it was written or read through, into a folder of the user's.

    Raises:
        MistError: naming the link and ``way_out``, what to do.
    """
    for path in paths:
        if path.is_symlink():
            what = "a folder" if path.is_dir() else "a file"
            raise MistError(
                f"{path}: is a symbolic link, not {what} {writer} made, so nothing is read or "
                f"written through it; {way_out}"
            )


def made_directory(entry: Path) -> bool:
    """Whether ``entry`` is what :func:`new_directory` or :func:`_discard` leaves when killed:
    a directory (no link) holding its marker, or nothing but the marker's temporary (killed
    while the marker was written; such a folder was kept for ever), or empty."""
    try:  # one this user cannot read (a umask of 777 made it): not told, left as it is
        if not entry.is_dir() or entry.is_symlink():
            return False
        if (entry / MARKER).is_file():
            return True
        names = [e.name for e in entry.iterdir()]
    except OSError:  # PermissionError ended every later command writing there
        return False
    return all(name.startswith(f".{MARKER}.") and is_temporary(name) for name in names)


def left_by_a_writer(entry: Path) -> bool:
    """A temporary file, or a directory :func:`made_directory` takes."""
    return a_file(entry) or made_directory(entry)
