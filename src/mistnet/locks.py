"""An exclusive lock on a directory (its ``.lock``): the kernel's ``flock``, so a killed
holder never leaves a stale lock; the file names the holder's pid for the message of a process
that finds it taken (:func:`lock_holder`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mistnet.errors import MistError

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

LOCK = ".lock"


@contextmanager
def exclusive_lock(
    directory: str | os.PathLike,
    command: str,
    transient: bool = False,
    wait: Callable[[str], object] | None = None,
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory/.lock`` while the block runs.

    Two processes writing one run or reproduction directory would interleave their logs and
    overwrite each other's checkpoints or results. The lock is the kernel's: it goes with the
    process, so a killed one never leaves a stale lock behind. The file holds the holder's pid.
    ``transient``: the lock file is removed again (while still held) on leaving, so a
    directory that must stay as it was on failure (``mist detect``'s) keeps no ``.lock``, and
    one a killed holder left (SIGKILL) goes with the next call.
    ``wait``: when another process holds the lock, say so through it and wait for the lock
    instead of refusing (a shared folder whose holder finishes what this call needs).

    Raises:
        MistError: another process holds the lock (``command`` names what it runs) and
            ``wait`` is None.
    """
    if fcntl is None:
        yield
        return
    path = Path(directory)
    f, made = _take_lock(path, command, wait)
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        held = os.fstat(f.fileno())
        _HELD[f.fileno()] = (held.st_dev, held.st_ino)
        try:
            yield
        finally:
            del _HELD[f.fileno()]
    finally:
        if transient:  # a waiter on the removed file takes a new one (_take_lock)
            _unlink_if_same(path / LOCK, os.fstat(f.fileno()))
        f.close()  # releases the lock


def _take_lock(path: Path, command: str, wait: Callable[[str], object] | None):
    """``path/.lock`` opened and ``flock``-ed (see :func:`exclusive_lock`), with whether this
    call made the file. A lock file its holder removed (a transient one) while this call
    waited for it, or between open and flock, is let go and a new one taken: holding the
    removed file would not keep out a third process that makes a new one."""
    while True:
        made = not os.path.lexists(path / LOCK)
        f = _open_lock(path / LOCK)
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                pid = f.read().strip() or "?"
                if wait is None:
                    raise MistError(
                        f"another {command} is writing to {path} (pid {pid}); wait for it to "
                        "finish or use another --out"
                    ) from None
                holder = "" if pid == "?" else f" (pid {pid})"  # "?": read before its pid
                wait(f"waiting for another {command} writing to {path}{holder}")
                fcntl.flock(f, fcntl.LOCK_EX)
        except BaseException:
            f.close()
            raise
        if os.fstat(f.fileno()).st_nlink:
            return f, made
        f.close()  # removed by its holder, on leaving or before our flock: take the new one


def unopened_lock(path: Path, way_out: str = "") -> MistError:
    """The error for a lock file ``path`` this user may not open: another user's (a command of
    theirs may be writing there), or this user's own made read-only or unreadable."""
    try:
        theirs = os.lstat(path).st_uid != os.geteuid()
    except OSError:  # a folder it cannot enter: whose it is cannot be told
        theirs = True
    whose = (
        "another user's, left by a command of theirs; remove it once no command of theirs is "
        "writing there"
        if theirs
        else "this user's own, made read-only or unreadable; remove it once no mistnet "
        "command is writing there"
    )
    return MistError(f"{path}: this user cannot open the lock ({whose}){way_out}")


def _open_lock(path: Path):
    """``path`` opened to lock, never through a symbolic link (the pid would be written into
    whatever file it leads to) and only as a regular file (a FIFO would block or fail).

    Raises:
        MistError: naming ``path`` and what it is instead.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.EISDIR:  # O_RDWR of a directory
            raise MistError(f"{path}: is a directory, not mistnet's lock; remove it") from None
        if exc.errno in (errno.EACCES, errno.EPERM):  # was a bare "Permission denied"
            if os.path.lexists(path):
                raise unopened_lock(path) from None
            raise MistError(
                f"{path}: this user cannot write into {path.parent}, so cannot lock it; "
                "choose another --out"
            ) from None
        if exc.errno != errno.ELOOP:
            raise
        raise MistError(f"{path}: is a symbolic link, not mistnet's lock; remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise MistError(f"{path}: is not a regular file, not mistnet's lock; remove it")
    return os.fdopen(fd, "a+")


#: The ``(device, inode)`` of each lock file this process holds (:func:`exclusive_lock`), by
#: the descriptor that holds it.
_HELD: dict[int, tuple[int, int]] = {}


def _let_go_in_child() -> None:
    """In a child forked while a lock is held (a DataLoader worker), let go of its copy of the
    lock's descriptor: a ``flock`` lasts while any copy is open, so a worker orphaned by a
    SIGKILL of its parent held the run's lock until it noticed (seconds later), and a resume
    at once was refused as "another mist train is writing". The number is pointed at
    ``/dev/null`` rather than closed: the parent's file object, copied, still names it."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDWR)
        for fd in _HELD:
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
        os.close(null)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_let_go_in_child)


def lock_holder(directory: str | os.PathLike) -> str | None:
    """The pid (as ``.lock`` gives it, ``?`` if none) of another live process holding
    ``directory/.lock`` (:func:`exclusive_lock`), or None when none does."""
    path = Path(directory) / LOCK
    if fcntl is None or path.is_symlink() or not path.is_file():
        return None
    try:
        with path.open("r") as f:
            now = os.fstat(f.fileno())
            if (now.st_dev, now.st_ino) in _HELD.values():
                return None
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return f.read().strip() or "?"
    except OSError:
        return None
    return None


def _unlink_if_same(path: Path, held: os.stat_result) -> None:
    """Remove ``path`` if it is still the file ``held`` (not gone with a directory replaced
    meanwhile, nor another process's newer file)."""
    try:
        now = path.stat()
    except OSError:
        return
    if held.st_nlink and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
        path.unlink(missing_ok=True)
