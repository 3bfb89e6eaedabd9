"""How one process trains a run (not part of the run's config), checked as it is given."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from mistnet import validate
from mistnet.config import Config
from mistnet.device import device_name, resolve_device
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
        ArgumentError: a negative or NaN time, threads past the machine's, an unknown device
            or CUDA where there is none.
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
        # by name from here on (torch.device("cpu", 0) is "cpu"), resolvable before any work
        self.device = device_name(self.device, "device")
        resolve_device(self.device, "device")
        if isinstance(self.max_minutes, bool):
            raise TypeError(f"max_minutes must be a number of minutes, got {self.max_minutes!r}")
        if self.max_minutes != 0:  # NaN and -1 are no cap either: refused, not taken as none
            self.max_minutes = validate.minutes(self.max_minutes, "max_minutes")
        self.threads = validate.threads(self.threads, "threads")
        if not isinstance(self.precision, str):
            raise ArgumentError(f"precision must be a name, got {self.precision!r}")

    @property
    def timed(self) -> bool:
        """Whether this invocation was given a deadline (``--max-minutes``), whatever its
        size: 1e308 minutes made an infinite deadline, read as none, so a process of them
        skipped the others' agreement to stop (the collectives fell apart)."""
        return self.max_minutes > 0


def check_data_pair(data: object) -> None:
    """Refuse ``data`` of :func:`mistnet.loop.train` unless None or a ``(train, val)`` pair of
    Datasets (``val`` may be None), before any work (it was unpacked deep in the loop).

    Raises:
        TypeError: ``"data must be a (train, val) pair of Datasets (val may be None), got ..."``.
    """
    if data is None:
        return
    pair = isinstance(data, tuple | list) and len(data) == 2
    if not pair or not isinstance(data[0], Dataset) or not isinstance(data[1], Dataset | None):
        shown = type(data).__name__
        if isinstance(data, tuple | list):  # the types, as a dataset's repr may be long
            shown = "(" + ", ".join(type(x).__name__ for x in data) + ")"
        raise TypeError(
            f"data must be a (train, val) pair of Datasets (val may be None), got {shown}"
        )
    for name, d in zip(("train", "val"), data, strict=True):  # "has no attribute 'height'"
        if d is not None and not all(hasattr(d, a) for a in ("height", "width", "channels")):
            raise TypeError(
                f"data: its {name} dataset is a plain {type(d).__name__}; wrap it as scenes "
                "(mistnet.data.memory.SceneItems, as mistnet.fit does)"
            )


def check_callbacks(callbacks: Any, kind: type) -> None:
    """Refuse ``callbacks`` unless None or a ``kind`` (:class:`mistnet.loop.Callbacks`) whose
    hooks are callable or None."""
    if callbacks is not None and not isinstance(callbacks, kind):
        raise TypeError(
            f"callbacks must be a mistnet.loop.Callbacks, got {type(callbacks).__name__}"
        )
    if callbacks is not None:  # a hook set after construction is checked here
        check_hooks(callbacks)


def check_hooks(callbacks: Any) -> None:
    """Refuse a field of a :class:`mistnet.loop.Callbacks` that is neither None nor callable
    (it was called after training had started)."""
    for field in dataclasses.fields(callbacks):
        hook = getattr(callbacks, field.name)
        if hook is not None and not callable(hook):
            raise TypeError(f"callbacks.{field.name} must be callable or None, got {hook!r}")


def as_given(cfg: Config) -> Config:
    """``cfg`` naming its data ``data`` (the datasets given in memory), for the messages of
    :func:`mistnet.data.runs.adopt_data`; ``model``, ``train`` and ``record`` are ``cfg``'s own
    objects (what it records lands in ``cfg``). A path stays a path (which it tests)."""
    d = cfg.data
    named = dataclasses.replace(d, path="data") if d.path else dataclasses.replace(d, name="data")
    return dataclasses.replace(cfg, data=named)
