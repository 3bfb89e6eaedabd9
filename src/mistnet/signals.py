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
