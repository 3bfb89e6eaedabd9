"""The marker of mistnet's output directories: the ``.mistnet`` file that names an output's
kind (and the files a command wrote there), by which a command tells its own earlier output
from a folder of the user's (:mod:`mistnet.outputs`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from mistnet.io import atomic_write_text, remove_path
from mistnet.textfile import MAX_TEXT_BYTES

__all__ = [
    "DISCARDED",
    "KINDS",
    "MARKER",
    "discarded",
    "mark",
    "mark_discarded",
    "marked_files",
    "output_kind",
    "remove_marker_last",
]

#: The file that says a directory is mistnet's own output, and of which kind.
MARKER = ".mistnet"
#: The kinds of output directory mistnet makes (what a marker file may hold).
KINDS = ("run", "dataset", "detections", "demo", "official", "reproduce")
#: What the marker of an earlier output says once its replacement is in place and it is being
#: removed where it lies (:func:`mark_discarded`): no kind, never an output to offer back.
DISCARDED = "discarded"


def output_kind(directory: str | os.PathLike) -> str | None:
    """The kind named by ``directory/.mistnet`` (one of :data:`KINDS`), or None."""
    kind = _marker_says(directory)
    return kind if kind in KINDS else None


def _marker_says(directory: str | os.PathLike) -> str | None:
    """The first line of ``directory/.mistnet`` (a kind, or :data:`DISCARDED`), or None: no
    marker, a link or no regular file there, or an unreadable one."""
    marker = Path(directory) / MARKER
    try:
        if marker.is_symlink() or not marker.is_file():
            return None
        with marker.open(encoding="utf-8") as f:  # the first line alone: a 3 GB file took 47 s
            return f.readline(256).strip()
    except (OSError, UnicodeDecodeError):
        return None


def mark(directory: str | os.PathLike, kind: str, files: Iterable[str] | None = None) -> None:
    """Write the marker that makes ``directory`` an output of ``kind`` (see :func:`claim_output`);
    ``files``: the names of the files the command wrote there, a JSON list on its second line
    (:func:`marked_files`), so that replacing it never takes along a file of the user's."""
    listed = "" if files is None else json.dumps(sorted(files)) + "\n"
    atomic_write_text(Path(directory) / MARKER, kind + "\n" + listed)


def marked_files(directory: str | os.PathLike) -> list[str] | None:
    """The file names the marker of ``directory`` lists (:func:`mark`), or None: no list (an
    output of an earlier version, or of a kind that keeps none) or an unreadable one."""
    marker = Path(directory) / MARKER
    try:
        if marker.stat().st_size > MAX_TEXT_BYTES:  # no marker of mistnet's: not read whole
            return None
        listed = json.loads(marker.read_text(encoding="utf-8").split("\n")[1])
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return None
    ok = isinstance(listed, list) and all(isinstance(name, str) for name in listed)
    return listed if ok else None


def mark_discarded(directory: str | os.PathLike) -> None:
    """Overwrite the marker of ``directory`` (or write one) with :data:`DISCARDED`: in place,
    as a rename has just failed (an atomic write renames).

    Raises:
        OSError: the marker could not be written.
    """
    with open(Path(directory) / MARKER, "w", encoding="utf-8") as f:
        f.write(DISCARDED + "\n")


def discarded(directory: str | os.PathLike) -> bool:
    """Whether the marker of ``directory`` says :data:`DISCARDED` (:func:`mark_discarded`)."""
    return _marker_says(directory) == DISCARDED


def remove_marker_last(
    path: str | os.PathLike, remove: Callable[[Path], None] = remove_path
) -> None:
    """Remove the file or output directory ``path`` (each entry by ``remove``): a directory's
    entries first, its marker only once nothing else is left, so that a failure midway leaves
    a marked directory (or an empty one) that the next command writing there removes.

    Raises:
        OSError: the first entry that could not be removed; ``path`` left, marked.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        for entry in path.iterdir():
            if entry.name != MARKER:
                remove(entry)  # a folder's tree removed as far as it goes
        left = [entry for entry in path.iterdir() if entry.name != MARKER]
        if left:
            raise OSError(None, "could not be removed", str(left[0]))
    remove(path)
