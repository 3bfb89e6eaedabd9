"""How one process trains a run (not part of the run's config), checked as it is given."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mistnet import validate
from mistnet.device import device_name
from mistnet.errors import ArgumentError


@dataclass
class RunOptions:
    """How this process trains, not part of the run (its config): ``threads > 0`` sets torch's
    intra-op threads; ``precision`` (``"fp32"``, ``"bf16"``) and ``compile`` are speed options
    (:mod:`mistnet.acceleration`); ``max_minutes > 0`` stops this invocation after that long
    (0: no cap).

    Raises:
        TypeError: a flag that is no bool, a count or time that is no number, a device that is
            neither a name nor a ``torch.device``.
        ArgumentError: a negative or NaN time, threads past the machine's, an unknown device.
    """

    device: str | torch.device = "cpu"
    resume: bool = False
    max_minutes: float = 0.0
    progress: bool = True
    threads: int = 0
    precision: str = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("resume", "progress", "compile"):
            validate.flag(getattr(self, name), name)
        device_name(self.device, "device")
        if isinstance(self.max_minutes, bool):
            raise TypeError(f"max_minutes must be a number of minutes, got {self.max_minutes!r}")
        if self.max_minutes != 0:  # NaN and -1 are no cap either: refused, not taken as none
            self.max_minutes = validate.minutes(self.max_minutes, "max_minutes")
        self.threads = validate.threads(self.threads, "threads")
        if not isinstance(self.precision, str):
            raise ArgumentError(f"precision must be a name, got {self.precision!r}")
