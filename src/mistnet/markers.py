"""The marker of mistnet's output directories: the ``.mistnet`` file that names an output's
kind (and the files a command wrote there), by which a command tells its own earlier output
from a folder of the user's (:mod:`mistnet.outputs`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from mistnet.io import atomic_write_text

__all__ = ["KINDS", "MARKER", "mark", "marked_files", "output_kind"]

#: The file that says a directory is mistnet's own output, and of which kind.
MARKER = ".mistnet"
#: The kinds of output directory mistnet makes (what a marker file may hold).
KINDS = ("run", "dataset", "detections", "demo", "official", "reproduce")


def output_kind(directory: str | os.PathLike) -> str | None:
    """The kind named by ``directory/.mistnet`` (one of :data:`KINDS`), or None."""
    marker = Path(directory) / MARKER
    try:
        if marker.is_symlink() or not marker.is_file():
            return None
        kind = marker.read_text(encoding="utf-8").partition("\n")[0].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return kind if kind in KINDS else None


def mark(directory: str | os.PathLike, kind: str, files: Iterable[str] | None = None) -> None:
    """Write the marker that makes ``directory`` an output of ``kind`` (see :func:`claim_output`);
    ``files``: the names of the files the command wrote there, a JSON list on its second line
    (:func:`marked_files`), so that replacing it never takes along a file of the user's."""
    listed = "" if files is None else json.dumps(sorted(files)) + "\n"
    atomic_write_text(Path(directory) / MARKER, kind + "\n" + listed)


def marked_files(directory: str | os.PathLike) -> list[str] | None:
    """The file names the marker of ``directory`` lists (:func:`mark`), or None: no list (an
    output of an earlier version, or of a kind that keeps none) or an unreadable one."""
    try:
        listed = json.loads((Path(directory) / MARKER).read_text(encoding="utf-8").split("\n")[1])
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return None
    ok = isinstance(listed, list) and all(isinstance(name, str) for name in listed)
    return listed if ok else None
