"""The standard streams of a ``mist`` command, made safe before it runs.

A closed stream is ``/dev/null``; what an encoding cannot hold is printed as backslash escapes;
standard error is diagnostics only, so a write that fails there (``2>/dev/full``: a progress
bar on a full disk) is dropped rather than ending the training it reports on; a write that
fails on standard output is one :class:`OutputStreamError` that says so (``[Errno 28]`` alone
named no file).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import Any

from mistnet.errors import MistError


class OutputStreamError(MistError):
    """Standard output cannot be written (a full disk, a device error); the files the command
    wrote before are complete."""


class _Stream:
    """A text stream whose ``write`` and ``flush`` failures are handled by ``failed``; every
    other attribute is the stream's own."""

    def __init__(self, stream: Any, failed) -> None:
        self._stream, self._failed = stream, failed

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:  # the reader is gone: the command's handler ends quietly
            raise
        except OSError as exc:
            self._failed(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._failed(exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _drop(exc: OSError) -> None:
    """Standard error failed: there is nowhere left to say so."""


def _refuse(exc: OSError) -> None:
    raise OutputStreamError(f"cannot write to standard output: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def guarded_streams() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` as described at the top, for the time of the block.

    Example:
        >>> with guarded_streams():
        ...     print("to standard output")
        to standard output
    """
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Stream(saved[0], _refuse), _Stream(saved[1], _drop)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def closed_streams_to_devnull() -> None:
    """Put a standard stream the shell closed (``mist models >&-``: Python makes it None, and
    its ``flush`` at exit was an internal error) on ``/dev/null``, its descriptor too: a file
    the command opens must not take descriptor 1 or 2 and receive its lines."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # the lowest free descriptor is the closed one; to be sure
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:
                mode = "r" if fd == 0 else "w"
                setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))  # noqa: SIM115


def printable_streams() -> None:
    """Print what the output's encoding cannot hold (the lone surrogates of a path that is not
    UTF-8) as backslash escapes, as the error lines do, rather than fail after the work."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
