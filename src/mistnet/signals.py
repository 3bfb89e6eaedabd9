"""SIGTERM and SIGHUP as an exception, so that a stopped command cleans up like Ctrl-C.

By default these signals end the process at once: no ``finally`` runs, and the temporaries and
half-made outputs of :mod:`mistnet.io` and :mod:`mistnet.outputs` stay behind. Under
:func:`signals_as_exceptions` they raise :class:`Terminated`, which unwinds like
``KeyboardInterrupt``; the command line (:mod:`mistnet.cli`) turns it into exit status 128 +
the signal.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(BaseException):
    """The process got SIGTERM or SIGHUP (see :func:`signals_as_exceptions`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM and SIGHUP while the block runs.

    Only the main thread can set handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    wanted = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s]
    previous = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


#: The signals :func:`deferred_signals` holds back.
_DEFERRED = ("SIGINT", "SIGTERM", "SIGHUP")


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back while the block runs; act on them after it.

    For the few steps that put a user's earlier output back (:func:`mistnet.setaside.replacing`):
    a second Ctrl-C there would leave it set aside under a temporary name, to be removed. A
    signal that arrives meanwhile is recorded and, once the block is done, handled as it would
    have been (``KeyboardInterrupt``, :class:`Terminated`, or the default action). Only the
    main thread can set handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    wanted = [getattr(signal, name) for name in _DEFERRED if hasattr(signal, name)]
    previous = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in wanted}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        for signum in dict.fromkeys(got):
            old = previous[signum]
            if callable(old):
                old(signum, None)
            elif old == signal.SIG_DFL:
                signal.raise_signal(signum)


@contextmanager
def default_signals() -> Iterator[None]:
    """Give SIGINT, SIGTERM and SIGHUP their default action (end the process) while the block
    runs; the handlers before it are put back after.

    For a wait in C++ that a Python handler cannot interrupt (torch's join of the training
    processes, :func:`mistnet.distributed.process_group`): its exception would only be raised
    once the wait is over. Only the main thread can set handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [getattr(signal, name) for name in _DEFERRED if hasattr(signal, name)]
    previous = {s: signal.signal(s, signal.SIG_DFL) for s in wanted}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
