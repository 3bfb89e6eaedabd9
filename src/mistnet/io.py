"""Atomic file writes (a crash or an error leaves the old file or the new one, never half of one)
and an exclusive lock on a directory.

Every writer puts its bytes into a fresh temporary file beside the target (same directory, so
same file system: the final ``os.replace`` is atomic) and renames it over the target only when
writing succeeded. The temporary name holds the process id and a random part, so two processes
writing the same target never share one. No ``fsync``: the point is that readers and a re-run
never see a partial file after an error or a kill, not durability across a power cut.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mistnet.errors import MistError

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

LOCK = ".lock"


@contextmanager
def exclusive_lock(directory: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory/.lock`` while the block runs.

    Two processes writing one run or reproduction directory would interleave their logs and
    overwrite each other's checkpoints or results. The lock is the kernel's: it goes with the
    process, so a killed one never leaves a stale lock behind. The file holds the holder's pid.

    Raises:
        MistError: another process holds the lock (``command`` names what it runs).
    """
    if fcntl is None:
        yield
        return
    path = Path(directory)
    f = (path / LOCK).open("a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            raise MistError(
                f"another {command} is writing to {path} (pid {pid}); wait for it to finish or "
                "use another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        f.close()  # releases the lock


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden name next to ``path`` that keeps its suffix (image writers read it).

    Example:
        >>> name = temporary_sibling("runs/eval.json")
        >>> name.parent.as_posix(), name.name.startswith(".eval.json."), name.suffix
        ('runs', True, '.json')
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to create a temporary file, then move it onto ``path``.

    The parent directory is created. On any exception (KeyboardInterrupt included) the
    temporary file is removed, ``path`` keeps its old content and the exception propagates.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, doc: Any) -> Path:
    """Write ``doc`` as ``json.dumps(doc, indent=2)`` plus a newline, atomically."""
    return atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
