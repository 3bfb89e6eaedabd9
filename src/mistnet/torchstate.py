"""torch's process-wide settings that mistnet changes while it works, given back afterwards.

Training seeds torch's generators (``train.seed``) and sets its thread count (``threads``);
building a network to load a checkpoint into seeds them too; and networks are float32
whatever default dtype the caller chose, in the precision the run's config asks whatever
autocast the caller entered. A script calling :func:`mistnet.fit`, :func:`mistnet.load` or
:func:`mistnet.loop.train` finds these as it left them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from mistnet.errors import ArgumentError


@contextlib.contextmanager
def float32_default() -> Iterator[None]:
    """torch's default dtype float32 while the block runs, the caller's after: a script that
    set ``torch.set_default_dtype(torch.float64)`` would get float64 networks, which the
    float32 images of the data loaders do not fit ("mixed dtype")."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


@contextlib.contextmanager
def callers_torch_state() -> Iterator[None]:
    """The block may seed torch and set its thread count: the caller's random generators and
    thread count are given back afterwards; networks it builds are float32, and the caller's
    ``torch.autocast`` does not reach it (a run's precision is its config's, ``--precision``:
    under a script's bf16 autocast, training and evaluation computed other numbers than the
    run records say, without a word)."""
    require_real_default_device()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]), float32_default(), without_autocast():
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def require_real_default_device() -> None:
    """Refuse to work under a caller's default device ``meta`` (``torch.set_default_device``,
    ``with torch.device("meta")``): networks built there hold no weights, and training failed
    deep in torch ("Cannot copy out of meta tensor"), loading blamed a parameter.

    Raises:
        ArgumentError: naming the default device.
    """
    if torch.get_default_device().type == "meta":
        raise ArgumentError(
            "torch's default device is meta (torch.set_default_device, or a with "
            "torch.device block): mistnet's networks hold weights; call it outside"
        )


@contextlib.contextmanager
def without_autocast() -> Iterator[None]:
    """The caller's ``torch.autocast`` (CPU or CUDA) off in the block, on again after; also a
    decorator. What the model computes is then what ``mist detect`` and the run's records say
    (under a script's bf16 autocast, ``predict`` gave other boxes and classes, unsaid)."""
    with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
        yield


__all__ = [
    "callers_torch_state",
    "float32_default",
    "require_real_default_device",
    "without_autocast",
]
