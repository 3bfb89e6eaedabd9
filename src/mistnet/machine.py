"""What this machine can give a command: CPU threads and memory, checked before work starts."""

from __future__ import annotations

import os

from mistnet.errors import ArgumentError


def max_threads() -> int:
    """The most torch CPU threads a command or :func:`mistnet.fit` accepts: 4 x the cores, at
    least 64 (so that a setting made on a large machine still runs on a laptop)."""
    return max(64, 4 * (os.cpu_count() or 1))


def available_memory() -> int | None:
    """The bytes of memory this machine can still give (``MemAvailable`` of ``/proc/meminfo``,
    else the free physical pages); None where neither can be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def fits_in_memory(nbytes: int, what: str, fewer: str) -> None:
    """Refuse work that holds ``nbytes`` in memory at once when the machine has not that much
    available: it would fail only after minutes or hours, or be killed by the system.

    Raises:
        ArgumentError: naming ``what`` needs it and what to make ``fewer``.
    """
    free = available_memory()
    if free is not None and nbytes > free:
        raise ArgumentError(
            f"{what} need {_bytes(nbytes)} of memory, more than the {_bytes(free)} available; "
            f"make fewer ({fewer})"
        )


def _bytes(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


def decimal(text: str, digits: int = 18) -> int | None:
    """``text`` as a whole number when it is decimal digits 0-9, at most ``digits`` of them
    once leading zeros are dropped; else None. (``int()`` takes ``'１'``, ``' 3'`` and
    ``'1_0'``, and raises past 4,300 digits: a traceback at exit.)

    Example:
        >>> decimal("007"), decimal("1_0"), decimal("0" * 5000 + "2"), decimal("9" * 19)
        (7, None, 2, None)
    """
    significant = text.lstrip("0")
    if not (text.isascii() and text.isdigit()) or len(significant) > digits:
        return None
    return int(significant or "0")


def shown_value(text: str) -> str:
    """``text`` quoted for a message, cut to its first 20 characters when longer than 40."""
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text):,} characters)"


def torchrun_world() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` as torchrun sets them (``(0, 1)`` without): decimal integers,
    ``0 <= RANK < WORLD_SIZE``. Read without importing torch (:func:`mistnet.cli.run` reads it
    at exit).

    Raises:
        ArgumentError: another value, naming the variable (``WORLD_SIZE=two``).
    """
    values = {}
    for name, default in (("RANK", "0"), ("WORLD_SIZE", "1")):
        text = os.environ.get(name, default)
        value = decimal(text)  # no world is larger than 18 digits
        if value is None:
            wanted = "an integer in [0, WORLD_SIZE)" if name == "RANK" else "a positive integer"
            raise ArgumentError(
                f"{name}={shown_value(text)} in the environment: torchrun sets {wanted}"
            )
        values[name] = value
    rank, size = values["RANK"], values["WORLD_SIZE"]
    if not 0 <= rank < size:
        raise ArgumentError(
            f"RANK={rank}, WORLD_SIZE={size} in the environment: a rank in [0, WORLD_SIZE)"
        )
    return rank, size
