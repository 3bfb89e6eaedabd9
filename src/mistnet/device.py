"""The ``--device`` names every entry point accepts, and the torch device each one means."""

from __future__ import annotations

import torch

from mistnet.errors import MistError


def check_device(name: str) -> str:
    """``name`` itself when it is ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.

    Raises:
        MistError: any other name (checked before anything is trained or loaded).
    """
    if name in ("cpu", "auto", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise MistError(f"--device must be cpu, cuda, cuda:N or auto, got {name!r}")


def resolve_device(name: str) -> torch.device:
    """The device ``name`` stands for: ``auto`` is CUDA when available, else the CPU.

    Raises:
        MistError: CUDA was asked for but none is available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MistError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)
