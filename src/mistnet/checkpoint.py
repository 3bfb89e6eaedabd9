"""Checkpoints: one safetensors file per snapshot, written atomically, never pickled.

The file holds the model weights (``model.*``), every optimiser's tensor state
(``optim.<name>.<param index>.<key>``) and, in the safetensors metadata, JSON for the resolved
config, the optimisers' hyperparameters and scalar state, the step and the training history. A
snapshot is written to a temporary file in the same directory and renamed over the old one, so a
crash leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mistnet.errors import MistError

FORMAT = "mistnet-checkpoint/1"


def _optimizer_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{name}.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    *,
    config: dict[str, Any],
    step: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` (and optimisers) to ``path`` atomically.

    Args:
        path: destination ``*.safetensors`` file.
        model: its ``state_dict`` is stored under ``model.``.
        optimizers: named optimisers to store for exact resumption.
        config: the resolved config as a dict.
        step: the number of completed training steps.
        extra: any JSON-serialisable record (history, best metric, ...).
    """
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_meta = {}
    for name, opt in (optimizers or {}).items():
        t, meta = _optimizer_tensors(name, opt)
        tensors.update(t)
        optim_meta[name] = meta
    metadata = {
        "format": FORMAT,
        "step": str(step),
        "config": json.dumps(config),
        "optimizers": json.dumps(optim_meta),
        "extra": json.dumps(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Checkpoint:
    """A loaded checkpoint: tensors plus the decoded metadata."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MistError(f"checkpoint {self.path} does not exist")
        try:
            from safetensors import safe_open

            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
            self.tensors = load_file(str(self.path), device=str(device))
        except (SafetensorError, OSError, ValueError) as exc:
            raise MistError(f"checkpoint {self.path} is corrupt or truncated ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise MistError(
                f"{self.path} is not a mistnet checkpoint (format {meta.get('format')!r})"
            )
        try:
            self.step = int(meta["step"])
            self.config = json.loads(meta["config"])
            self.optimizers = json.loads(meta["optimizers"])
            self.extra = json.loads(meta["extra"])
        except (KeyError, ValueError) as exc:
            raise MistError(f"checkpoint {self.path} has damaged metadata ({exc})") from exc

    def load_model(self, model: nn.Module) -> None:
        state = {k[6:]: v for k, v in self.tensors.items() if k.startswith("model.")}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise MistError(f"checkpoint {self.path} does not fit this model: {exc}") from exc

    def load_optimizer(self, name: str, opt: torch.optim.Optimizer) -> None:
        if name not in self.optimizers:
            raise MistError(f"checkpoint {self.path} has no state for optimiser {name!r}")
        meta = self.optimizers[name]
        state: dict[int, dict[str, Any]] = {}
        prefix = f"optim.{name}."
        for key, value in self.tensors.items():
            if key.startswith(prefix):
                idx, field = key[len(prefix) :].split(".", 1)
                state.setdefault(int(idx), {})[field] = value
        for key, value in meta["scalars"].items():
            idx, field = key.split(".", 1)
            state.setdefault(int(idx), {})[field] = value
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
