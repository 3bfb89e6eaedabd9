"""Optional dependencies, declared as extras in ``pyproject.toml``: ``figures`` (matplotlib),
``svhn`` (h5py), ``tensorboard``.

An optional package is imported where it is used; when it is missing, the user gets one line that
names the extra to install instead of a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from types import ModuleType

from mistnet.errors import MistError, MistWarning


def missing(module: str, extra: str, purpose: str) -> str | None:
    """``None`` when ``module`` imports, else the one-line message naming the extra to install.

    Example:
        >>> missing("json", "figures", "drawing figures") is None
        True
        >>> missing("no_such_module", "figures", "drawing figures")
        "drawing figures needs no_such_module (pip install 'mistnet[figures]')"
    """
    try:
        _import(module)
    except ImportError:
        return f"{purpose} needs {module.partition('.')[0]} (pip install 'mistnet[{extra}]')"
    return None


def _import(module: str) -> ModuleType:
    """Import ``module``; what matplotlib logs as it is first imported (a config folder it
    cannot write under an unwritable HOME: two lines of its own beside mistnet's) is said as
    one warning."""
    if module.partition(".")[0] != "matplotlib" or "matplotlib" in sys.modules:
        return importlib.import_module(module)
    said: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = said.append  # type: ignore[method-assign]
    logger = logging.getLogger("matplotlib")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        return importlib.import_module(module)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        if said:
            lines = [" ".join(r.getMessage().split()).partition("; it is highly")[0] for r in said]
            folder = any("MPLCONFIGDIR" in r.getMessage() for r in said)  # else: its own advice
            advice = " (set MPLCONFIGDIR to a writable folder)" if folder else ""
            warnings.warn("matplotlib: " + "; ".join(lines) + advice, MistWarning, stacklevel=3)


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MistError` with the message of :func:`missing`."""
    message = missing(module, extra, purpose)
    if message is not None:
        raise MistError(message)
    return _import(module)


def matplotlib_missing() -> str | None:
    """:func:`missing` for matplotlib, the ``figures`` extra."""
    return missing("matplotlib", "figures", "drawing figures")


def require_matplotlib() -> ModuleType:
    """:func:`require` for matplotlib, the ``figures`` extra."""
    return require("matplotlib", "figures", "drawing figures")
