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
        # 18 digits at most: int() refuses 4,300 (a traceback at exit), and no world is larger
        if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 18:
            wanted = "an integer in [0, WORLD_SIZE)" if name == "RANK" else "a positive integer"
            shown = (
                repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text):,} characters)"
            )
            raise ArgumentError(f"{name}={shown} in the environment: torchrun sets {wanted}")
        values[name] = int(text)
    rank, size = values["RANK"], values["WORLD_SIZE"]
    if not 0 <= rank < size:
        raise ArgumentError(
            f"RANK={rank}, WORLD_SIZE={size} in the environment: a rank in [0, WORLD_SIZE)"
        )
    return rank, size
