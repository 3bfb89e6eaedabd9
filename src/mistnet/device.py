"""The ``--device`` names every entry point accepts, and the torch device each one means."""

from __future__ import annotations

import torch

from mistnet.errors import ArgumentError
from mistnet.machine import decimal, shown_value


def check_device(name: str, option: str = "--device") -> str:
    """``name`` itself when it is ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (``N`` as torch
    writes it: ``cuda:7``, not ``cuda:007`` or ``cuda:+7``).

    Args:
        option: how the caller names the value, for the message (``device`` in Python).

    Raises:
        TypeError: not a string.
        ArgumentError: any other name (checked before anything is trained or loaded).
    """
    if not isinstance(name, str):
        raise TypeError(f"{option} must be a string, got {name!r}")
    index = name.removeprefix("cuda:")
    if name in ("cpu", "auto", "cuda") or (index != name and _canonical(index)):
        return name
    if name == "cpu:0":  # torch's own spelling of the CPU (str(torch.device("cpu", 0)))
        return "cpu"
    raise ArgumentError(f"{option} must be cpu, cuda, cuda:N or auto, got {shown_value(name)}")


def _canonical(index: str) -> bool:
    """A decimal index as ``str(int)`` writes it (torch refuses ``cuda:007`` with a
    RuntimeError)."""
    return str(decimal(index, digits=4000)) == index  # int() raised past 4,300 digits


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """The device ``name`` stands for: ``auto`` is CUDA when available, else the CPU.

    Args:
        option: how the caller names the value, for the message (``device`` in Python).

    Raises:
        ArgumentError: CUDA was asked for but none is available, or ``cuda:N`` past this
            machine's devices.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ArgumentError(f"{option} {name} was asked for but no CUDA device is available")
    index = name.removeprefix("cuda:")
    if index != name and _canonical(index) and int(index) >= (count := torch.cuda.device_count()):
        # torch takes cuda:99 and fails at the first tensor put there
        raise ArgumentError(f"{option} {name}: {cuda_devices(count)}")
    return torch.device(name)


def cuda_devices(count: int) -> str:
    """What a message says of this machine's ``count`` CUDA devices."""
    if count == 1:
        return "this machine has one CUDA device, cuda:0"
    return f"this machine has {count} CUDA devices, cuda:0 to cuda:{count - 1}"


def device_argument(device: torch.device | str, option: str = "device") -> torch.device:
    """The device a Python caller gave, as a name (:func:`check_device`) or a ``torch.device``
    of those kinds, resolved (:func:`resolve_device`) before any work.

    Raises:
        TypeError: neither a string nor a ``torch.device``.
        ArgumentError: any other device, or CUDA where there is none.
    """
    return resolve_device(device_name(device, option), option)


def device_name(device: torch.device | str, option: str = "device") -> str:
    """The name of a device a Python caller gave as a name or a ``torch.device``, once
    :func:`check_device` takes it (not resolved: ``auto`` stays ``auto``).

    Raises:
        TypeError: neither a string nor a ``torch.device``.
        ArgumentError: any other device.
    """
    if isinstance(device, torch.device):  # torch.device("cpu", 0) is the CPU as well
        device = "cpu" if device.type == "cpu" else str(device)
    return check_device(device, option)
