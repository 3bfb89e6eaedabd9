"""Optional dependencies, declared as extras in ``pyproject.toml``: ``figures`` (matplotlib),
``svhn`` (h5py), ``tensorboard``.

An optional package is imported where it is used; when it is missing, the user gets one line that
names the extra to install instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mistnet.errors import MistError


def missing(module: str, extra: str, purpose: str) -> str | None:
    """``None`` when ``module`` imports, else the one-line message naming the extra to install.

    Example:
        >>> missing("json", "figures", "drawing figures") is None
        True
        >>> missing("no_such_module", "figures", "drawing figures")
        "drawing figures needs no_such_module (pip install 'mistnet[figures]')"
    """
    try:
        importlib.import_module(module)
    except ImportError:
        return f"{purpose} needs {module.partition('.')[0]} (pip install 'mistnet[{extra}]')"
    return None


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MistError` with the message of :func:`missing`."""
    message = missing(module, extra, purpose)
    if message is not None:
        raise MistError(message)
    return importlib.import_module(module)


def matplotlib_missing() -> str | None:
    """:func:`missing` for matplotlib, the ``figures`` extra."""
    return missing("matplotlib", "figures", "drawing figures")


def require_matplotlib() -> ModuleType:
    """:func:`require` for matplotlib, the ``figures`` extra."""
    return require("matplotlib", "figures", "drawing figures")
