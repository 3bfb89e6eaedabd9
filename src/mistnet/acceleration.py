"""Run options that change speed, not the model: bf16 autocast and ``torch.compile``.

``mist train --precision bf16`` runs the forward passes of the heatmap and task networks under
``torch.autocast`` (convolutions and matrix products in bfloat16, on the CPU and on CUDA) and
hands their outputs back in float32, so the losses, the keypoint search, the x-step and the
optimisers stay in float32. ``--compile`` compiles both networks with ``torch.compile`` in place
(``nn.Module.compile``), which keeps their parameter names, so checkpoints are unchanged. Both are
off by default; benchmarks/RESULTS.md gives what each is worth on the machines measured.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from mistnet import validate
from mistnet.device import device_argument

PRECISIONS = ("fp32", "bf16")


def _to_float32(value):
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.float()
    return value


def autocast_forward(module: nn.Module, device_type: str) -> None:
    """Run ``module``'s forward under bf16 autocast; its floating outputs come back as float32."""
    forward = module.forward

    @functools.wraps(forward)
    def run(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = forward(*args, **kwargs)
        return tree_map(_to_float32, out)

    module.forward = run


def accelerate(
    nets: list[nn.Module], device: torch.device, precision: str = "fp32", compile: bool = False
) -> None:
    """Apply ``precision`` and ``compile`` to ``nets`` in place (both no-ops by default).

    Call it after any ``copy.deepcopy`` of the model (the moving average), which would otherwise
    copy the wrapped forward of the original.

    Raises:
        ValueError: an unknown ``precision`` or ``device``.
        TypeError: ``nets`` no list or tuple of torch modules (one module is not), ``compile``
            no bool (``"no"`` would compile).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = device_argument(device)  # "cpu" as well as torch.device("cpu")
    compile = validate.flag(compile, "compile")
    if not isinstance(nets, list | tuple) or not all(isinstance(n, nn.Module) for n in nets):
        shown = type(nets).__name__
        if isinstance(nets, list | tuple):  # the types, as a module's repr is long
            shown = "[" + ", ".join(type(n).__name__ for n in nets) + "]"
        raise TypeError(f"nets must be a list or tuple of torch modules, got {shown}")
    for net in nets:
        if precision == "bf16":
            autocast_forward(net, device.type)
        if compile:
            net.compile()
