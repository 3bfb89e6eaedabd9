"""User-facing errors.

``MistError`` is raised for problems a user can fix (a missing data directory, a corrupt file, an
impossible parameter). The command-line interface prints its message on one line and exits with
status 2 instead of showing a traceback. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

import unicodedata

#: Unicode categories that break a line or drive a terminal: control characters (newline,
#: tab, NUL, ESC, ...), the line and paragraph separators, and lone surrogates (which no file or
#: terminal can encode).
UNPRINTABLE = frozenset({"Cc", "Zl", "Zp", "Cs"})

#: The bidirectional embedding, override and isolate controls: they reorder what a terminal shows
#: after them (U+202E makes "gpj.exe" read "exe.jpg"). Other format characters (zero-width
#: joiners, soft hyphens) belong to ordinary text in some scripts and are left alone.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unprintable(c: str) -> bool:
    r"""Whether the character ``c`` would garble a line: :data:`UNPRINTABLE` or a bidi control.

    Example:
        >>> [unprintable(c) for c in "a\n\u202e\u200c"]
        [False, True, True, False]
    """
    return unicodedata.category(c) in UNPRINTABLE or c in BIDI_CONTROLS


def escaped(text: str) -> str:
    r"""``text`` with each control character (a newline, an escape sequence's ESC) written as
    ``repr`` writes it: ``mist`` prints every error and warning so, so that a message quoting a
    path or a name the user gave stays one line and cannot drive the terminal.

    Example:
        >>> print(escaped("run directory no\nsuch does not exist"))
        run directory no\nsuch does not exist
    """
    return "".join(repr(c)[1:-1] if unprintable(c) else c for c in text)


#: The longest error or warning line ``mist`` prints: a value read from a file (a 100,000
#: character string in a config.json) was quoted whole, one line of 100 KB.
MESSAGE_LIMIT = 2000


def bounded(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut in its middle to about ``limit`` characters, keeping its start (the file,
    the key) and its end (what to do).

    Example:
        >>> bounded("a" * 10 + "b" * 10, 8)
        'aaaaaa ... (12 characters left out) ... bb'
    """
    if len(text) <= limit:
        return text
    head, tail = limit * 3 // 4, limit // 4
    return f"{text[:head]} ... ({len(text) - head - tail:,} characters left out) ... {text[-tail:]}"


def printed(text: str) -> str:
    """``text`` as ``mist`` prints an error, warning or note line: :func:`escaped`, then
    :func:`bounded`."""
    return bounded(escaped(text))


def say(*lines: str) -> None:
    r"""Print ``lines`` on stdout for the user, each :func:`escaped`: what a command reports
    (``wrote OUT``, a metric table) quotes paths and names the user chose, and a newline or an
    escape sequence in one must not split the line or drive the terminal.

    Example:
        >>> say("wrote new\nline: 8 scenes")
        wrote new\nline: 8 scenes
    """
    for line in lines:
        print(escaped(line), flush=True)


class MistError(ValueError):
    """An error whose message is meant for the user, printed without a traceback by ``mist``.

    A ``ValueError``: every problem a user can fix (a value, a file, an output that is taken)
    is caught by ``except ValueError`` in Python, whichever module refused it. Types that are
    wrong stay ``TypeError``.
    """


class DataError(MistError):
    """Missing, corrupt or inconsistent data, on disk or handed over in memory."""


class ArgumentError(MistError):
    """A number or name given to a command or to the Python API that is out of range."""


class ResumeRefused(MistError):
    """A run that cannot be resumed as it is. ``problem`` says what is wrong and how to mend
    the run in place; the message adds ``afresh``, how ``mist train`` starts over instead
    (``mist reproduce``, which has no such options, says its own)."""

    def __init__(self, problem: str, afresh: str) -> None:
        super().__init__(f"{problem}, or {afresh}")
        self.problem, self.afresh = problem, afresh

    def __reduce__(self) -> tuple:  # pickled (a worker process's error) and copied whole
        return type(self), (self.problem, self.afresh)


class NonFiniteLoss(MistError):
    """A training loss or the keypoints became NaN or infinite: training diverged.

    The run stops and keeps its last good checkpoint.
    """


class NonFiniteState(NonFiniteLoss):
    """Weights or an optimiser's state hold NaN or infinite values (an Adam second moment that
    overflowed while the loss stayed finite): no checkpoint of them could be loaded back."""


class MistWarning(UserWarning):
    """Something a user should know that did not stop the command (``mist`` prints one line)."""
