"""Checkpoints: one safetensors file per snapshot, written atomically, never pickled.

The file holds the model weights (``model.*``), their moving average when the run keeps one
(``average.*``: the ``state_dict`` of a :class:`torch.optim.swa_utils.AveragedModel`, whose
``average.module.*`` are the inference weights), every optimiser's tensor state
(``optim.<name>.<param index>.<key>``) and, in the safetensors metadata, JSON for the resolved
config, the optimisers' hyperparameters and scalar state, the step and the training history. A
snapshot is written to a temporary file in the same directory and renamed over the old one, so a
crash leaves either the old or the new file, never half of one.

The metadata also holds a SHA-256 digest of every tensor's name, dtype, shape and bytes and of
the other metadata, checked at load: a byte changed anywhere in the file (a bad disk, a broken
copy) is refused with one line naming the file instead of giving wrong weights (an older
checkpoint without the digest still loads). Loaded tensors must be finite, and a checkpoint that
does not fit the model (another width or depth) is refused with a short message.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from mistnet.device import device_argument
from mistnet.errors import MistError, NonFiniteState
from mistnet.io import atomic_write_bytes, json_text
from mistnet.machine import available_memory
from mistnet.ops._checks import require_dense
from mistnet.textfile import parse_error
from mistnet.validate import flag, path_argument, regular_file, replaceable, require_finite

FORMAT = "mistnet-checkpoint/1"
DIGEST = "digest"  # metadata key of the checksum


def _digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """``sha256:<hex>`` over the metadata (but the digest) and every tensor, in name order."""
    h = hashlib.sha256()
    for key in sorted(metadata):
        if key != DIGEST:
            h.update(f"{key}={metadata[key]}\0".encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return f"sha256:{h.hexdigest()}"


def _extra_problem(extra: dict[str, Any]) -> str | None:
    """What is wrong with the ``extra`` values training resumes from (``best``: a finite
    number or null; ``best_step``: a step or null; ``wall``: seconds), or None."""

    def number(v: Any) -> bool:  # numpy's scalars too: json_text writes them as Python's
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

    checks = {
        "best": lambda v: v is None or number(v),
        "best_step": lambda v: (
            v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0)
        ),
        "wall": lambda v: number(v) and v >= 0,
    }
    for key, ok in checks.items():
        if key in extra and not ok(extra[key]):
            return f"extra.{key} = {extra[key]!r}"
    return None


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


def _flat(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state as dense CPU tensors, one storage each: tied weights (one tensor
    under two names, or views of one buffer) are copied apart, as safetensors stores no
    shared memory; a meta or sparse tensor is refused by name."""
    out, seen = {}, set()
    for key, value in module.state_dict().items():
        require_dense(value, f"{prefix}{key}")
        t = value.detach().cpu().contiguous()
        storage = t.untyped_storage().data_ptr()
        out[f"{prefix}{key}"] = t.clone() if storage in seen else t
        seen.add(storage)
    return out


def _check_finite(tensors: dict[str, torch.Tensor]) -> None:
    """Refuse NaN or infinite values (on the CPU copies already made), and float8, which
    :class:`Checkpoint` refuses on reading: such a file could never be loaded or resumed from."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.dtype.itemsize == 1:  # no isfinite either
            raise ValueError(f"{name} is of dtype {tensor.dtype}, which no mistnet model holds")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteState(
                f"{name} holds NaN or infinite values; a checkpoint of it could not be loaded "
                "back (did training diverge?)"
            )


def _check_save_arguments(model, optimizers, config, step, extra, averaged) -> None:
    """Refuse what :class:`Checkpoint` would refuse on reading (a file written, then called
    damaged): a step that is no integer >= 0, a config or extra that is no dict, extras
    training could not resume from; and arguments of the wrong type, before anything is
    written."""
    for name, module in (("model", model), ("averaged", averaged)):
        if (module is not None or name == "model") and not isinstance(module, nn.Module):
            raise TypeError(f"{name} must be a torch module, got {type(module).__name__}")
    if optimizers is not None and not isinstance(optimizers, dict):  # named by type: an
        kind = type(optimizers).__name__  # optimiser's repr runs over many lines
        raise TypeError(f"optimizers must be a dict of name to optimiser, got a {kind}")
    for name, opt in (optimizers or {}).items():  # 5: "'int' object has no attribute ..."
        if not isinstance(opt, torch.optim.Optimizer):
            kind = type(opt).__name__
            raise TypeError(f"optimizers[{name!r}] must be a torch optimiser, got a {kind}")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or not 0 <= step < 2**63:
        raise ValueError(f"step must be an integer in [0, 2**63), got {step!r}")
    for name, value in (("config", config), ("extra", extra or {})):
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    if problem := _extra_problem(extra or {}):
        raise ValueError(f"extra: {problem}")


def _json_field(name: str, value: dict[str, Any]) -> str:
    """``value`` as the JSON of the metadata entry ``name`` (:func:`~mistnet.io.json_text`:
    numpy's numbers and bools written as Python's), or refused naming the first entry JSON has
    no form for (an array, a tensor, a set), before anything is written.

    Raises:
        TypeError: ``"extra['history'][2]: Object of type ndarray is not JSON serializable"``.
        ValueError: an integer too long to write, nesting too deep, or a NaN or infinite
            number (``"config['train']['lr'] is nan; ..."``).
    """
    try:
        text = json_text(value, indent=None)
    except TypeError as exc:
        where = f"{name}{_unwritable(value)}"
        hint = "give numbers, strings, bools, None, lists or dicts"
        raise TypeError(f"{where}: {exc}; {hint}") from None
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    # json_text writes them as null: read back, the number would be None without a word
    if (found := _non_finite(value)) is not None:
        where, x = found
        raise ValueError(
            f"{name}{where} is {x!r}; a checkpoint's JSON holds no NaN or infinity (give a "
            "finite number, or None)"
        )
    return text


def _non_finite(value: Any) -> tuple[str, float] | None:
    """The index path (``['train']['lr']``) and value of the first NaN or infinite float
    (numpy's too) in ``value``, or None; ``value`` is one :func:`json_text` wrote (its depth
    checked)."""
    if isinstance(value, float | np.floating):
        return None if math.isfinite(value) else ("", float(value))
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if (found := _non_finite(item)) is not None:
            return f"[{key!r}]{found[0]}", found[1]
    return None


def _unwritable(value: Any) -> str:
    """The index path (``['history'][2]``) of the first entry of ``value`` that JSON cannot
    write (``""``: ``value`` itself, or one of its keys that is no string)."""
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return ""
    for key, item in items:
        try:
            json_text(item, indent=None)
        except TypeError:
            return f"[{key!r}]{_unwritable(item)}"
        except ValueError:  # too deep or too long: json_text says so of the whole
            pass
    return ""


def _check_path(path: object) -> Path:
    """``path`` as a Path, once the checkpoint may be written there: new, or a mistnet
    checkpoint (:func:`is_checkpoint`); a file of the user's, a link or a FIFO is never
    replaced.

    Raises:
        TypeError: no str or path-like object.
        MistError: a directory there (the file would replace it, or fail to), a NUL, a
            symbolic link, or anything else that is no checkpoint.
    """
    path = Path(path_argument(path, "path"))
    if path.is_dir():
        raise MistError(
            f"checkpoint path {path} is a directory; give the file to write, such as "
            f"{path / 'last.safetensors'}"
        )
    replaceable(str(path), "checkpoint path", "checkpoint", is_checkpoint, MistError)
    return path


#: The largest safetensors header :func:`is_checkpoint` reads, and :func:`save_checkpoint`
#: writes (a header of megabytes of metadata: a huge ``extra`` or config).
MAX_HEADER = 1 << 24


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file whose safetensors header names :data:`FORMAT` (the
    header alone is read; its tensors are not checked)."""
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size <= MAX_HEADER:
                return False
            header = json.loads(f.read(size))
    except (OSError, ValueError, RecursionError):
        return False
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    *,
    config: dict[str, Any],
    step: int,
    extra: dict[str, Any] | None = None,
    averaged: nn.Module | None = None,
    exclusive: bool = False,
) -> None:
    """Write ``model`` (and optimisers) to ``path`` atomically.

    Args:
        path: destination ``*.safetensors`` file.
        model: its ``state_dict`` is stored under ``model.``.
        optimizers: named optimisers to store for exact resumption.
        config: the resolved config as a dict.
        step: the number of completed training steps.
        extra: any JSON-serialisable record (history, best metric, ...).
        averaged: an ``AveragedModel`` of ``model``; stored under ``average.``.
        exclusive: refuse (:class:`~mistnet.errors.MistError`) to replace a ``path`` that
            exists when the file is moved into place, instead of replacing it.

    Raises:
        TypeError: an argument of the wrong type, or a ``config`` or ``extra`` entry JSON has
            no form for (a numpy array, a tensor), naming it.
        ValueError: a ``step`` < 0, extras training could not resume from, NaN or infinite
            weights, or a NaN or infinite number in ``config`` or ``extra`` (naming its key:
            it was written as null), before anything is written.
        MistError: ``path`` is a directory, or (``exclusive``) a file there.
    """
    _check_save_arguments(model, optimizers, config, step, extra, averaged)
    flag(exclusive, "exclusive")
    path = _check_path(path)
    config_text, extra_text = _json_field("config", config), _json_field("extra", extra or {})
    tensors = _flat("model.", model)
    if averaged is not None:
        tensors.update(_flat("average.", averaged))
    optim_meta = {}
    for name, opt in (optimizers or {}).items():
        t, meta = _optimizer_tensors(name, opt)
        tensors.update(t)
        optim_meta[name] = meta
    _check_finite(tensors)
    metadata = {
        "format": FORMAT,
        "step": str(step),
        "config": config_text,
        "optimizers": json_text(optim_meta, indent=None),
        "extra": extra_text,
    }
    metadata[DIGEST] = _digest(tensors, metadata)
    # bytes written by Python, not safetensors' own save_file: that one creates its file
    # readable by its owner only (0600) whatever the umask, so a shared run would be unreadable
    data = save(tensors, metadata=metadata)
    header = int.from_bytes(data[:8], "little")
    if header > MAX_HEADER:  # was written, then refused as "no checkpoint mistnet wrote"
        raise MistError(
            f"{path}: a header of {header:,} bytes (its config and extra records); at most "
            f"{MAX_HEADER:,}, so that the file reads back as a checkpoint"
        )
    atomic_write_bytes(path, data, exclusive)


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file already read by :func:`load`: the file starts
    with its JSON header's length (8 bytes, little-endian), then the header."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


class Checkpoint:
    """A loaded checkpoint: tensors plus the decoded metadata."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        device = device_argument(device)  # "meta" and 5 failed after the file was read
        self.path = Path(path_argument(path, "path"))  # 5: pathlib's words; a NUL: "missing"
        if not self.path.is_file():
            if self.path.exists():  # a folder, a device: say which
                regular_file(self.path)
            if self.path.is_symlink():
                raise MistError(
                    f"checkpoint {self.path} is a link to {os.readlink(self.path)}, "
                    "which does not exist"
                )
            raise MistError(f"checkpoint {self.path} does not exist")
        size, free = self.path.stat().st_size, available_memory()
        if free is not None and size > free:  # a huge or sparse file: MemoryError deep in read
            raise MistError(
                f"checkpoint {self.path}: {size:,} bytes, more than the {free:,} bytes of memory "
                "available; is it a mistnet checkpoint?"
            )
        try:
            data = self.path.read_bytes()
            # From bytes, not safetensors' load_file / safe_open: those take the path as UTF-8
            # and refuse a folder whose name is not (a lone surrogate in Python).
            self.tensors = {k: v.to(device) for k, v in load(data).items()}
            meta = _metadata(data)
        except PermissionError:  # was "corrupt or truncated ([Errno 13] Permission denied)"
            raise MistError(f"checkpoint {self.path}: this user cannot read it") from None
        except (SafetensorError, OSError, ValueError, RecursionError) as exc:
            if self.path.suffix != ".safetensors":  # a config.json given for the run, say
                raise MistError(
                    f"{self.path} is no checkpoint (a .safetensors file); give a run directory "
                    "or its best.safetensors / last.safetensors"
                ) from None
            raise MistError(f"checkpoint {self.path} is corrupt or truncated ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise MistError(
                f"{self.path} is not a mistnet checkpoint (format {meta.get('format')!r})"
            )
        if DIGEST in meta and meta[DIGEST] != _digest(self.tensors, meta):
            raise MistError(
                f"checkpoint {self.path} is corrupt: its bytes do not match the checksum it "
                "was written with"
            )
        self.digest = meta.get(DIGEST)  # None: written before checkpoints carried one
        try:
            if not (str(meta["step"]).isascii() and str(meta["step"]).isdigit()):  # " 3", "٣"
                raise ValueError(f"step {meta['step']!r} is no whole number")
            self.step = int(meta["step"])
            self.config = json.loads(meta["config"])
            self.optimizers = json.loads(meta["optimizers"])
            self.extra = json.loads(meta["extra"])
        except (KeyError, ValueError) as exc:
            why = parse_error(exc) if isinstance(exc, ValueError) else f"no {exc}"
            raise MistError(f"checkpoint {self.path} has damaged metadata ({why})") from None
        except RecursionError:  # JSON nested deeper than the parser's stack
            raise MistError(
                f"checkpoint {self.path} has damaged metadata (JSON nested too deeply)"
            ) from None
        if not 0 <= self.step < 2**63:  # as written (2**63 was an internal error of package)
            raise MistError(f"checkpoint {self.path} has damaged metadata (step {self.step})")
        for key in ("config", "optimizers", "extra"):
            if not isinstance(getattr(self, key), dict):
                raise MistError(f"checkpoint {self.path} has damaged metadata ({key} is no map)")
        problem = _extra_problem(self.extra)
        if problem:
            raise MistError(f"checkpoint {self.path} has damaged metadata ({problem})")
        for name, tensor in self.tensors.items():
            try:
                require_finite(tensor, f"checkpoint {self.path}: {name}")
            except (NotImplementedError, RuntimeError):  # torch has no isfinite of float8
                raise MistError(
                    f"checkpoint {self.path}: {name} is of dtype {tensor.dtype}, which no "
                    "mistnet model holds"
                ) from None

    @property
    def has_average(self) -> bool:
        """Whether the run kept a moving average of the weights (``train.ema_decay > 0``)."""
        return any(k.startswith("average.") for k in self.tensors)

    def model_state(self, average: bool = False) -> dict[str, torch.Tensor]:
        """The model's ``state_dict``: the moving average if ``average`` and one was kept."""
        return self._section("average.module." if average and self.has_average else "model.")

    def load_model(self, model: nn.Module, average: bool = False) -> None:
        """Load the raw weights into ``model`` (``average=True``: the moving average if kept).

        Raises:
            TypeError: ``model`` is no torch module (None: an AttributeError before).
            ValueError: ``model`` has a parameter or buffer on the meta device, which holds no
                values to load into (torch only warned that the copy "is a no-op").
            MistError: the weights do not fit ``model``, naming the tensors.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch module, got {type(model).__name__}")
        for kind, named in (("parameter", model.named_parameters), ("buffer", model.named_buffers)):
            name = next((n for n, t in named() if t.is_meta), None)
            if name is not None:
                raise ValueError(
                    f"model: its {kind} {name} is on the meta device and holds no values to load "
                    "into; build it on a real device (or model.to_empty(device='cpu') first)"
                )
        self._load(model, self.model_state(average), "this model")

    def load_average(self, averaged: nn.Module) -> None:
        """Restore an ``AveragedModel`` (weights and update count) for resumption."""
        if not self.has_average:
            raise MistError(f"checkpoint {self.path} holds no moving average of the weights")
        self._load(averaged, self._section("average."), "the moving average")

    def _section(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix``, with the prefix removed from their names."""
        return {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    def _load(self, module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
        own = module.state_dict()
        shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
        # integer or bool weights were cast into float parameters (a damaged file scored 0)
        kinds = [
            k
            for k in own
            if k in state and state[k].is_floating_point() != own[k].is_floating_point()
        ]
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if shapes or kinds or missing or unexpected:
            found = []
            if shapes:
                k = shapes[0]
                found.append(
                    f"{len(shapes)} tensors of other shapes (first {k}: "
                    f"{list(state[k].shape)} here, {list(own[k].shape)} in {what})"
                )
            if kinds:
                k = kinds[0]
                found.append(
                    f"{len(kinds)} tensors of another kind of number (first {k}: "
                    f"{state[k].dtype} here, {own[k].dtype} in {what})"
                )
            for n, keys in (("missing", missing), ("unexpected", unexpected)):
                if keys:
                    found.append(f"{len(keys)} {n} (first {keys[0]})")
            raise MistError(
                f"checkpoint {self.path} does not fit {what}: {'; '.join(found)}; was it made "
                "with another config (model width, depth, K or task)?"
            )
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise MistError(f"checkpoint {self.path} does not fit {what}: {first}") from None

    def load_optimizer(self, name: str, opt: torch.optim.Optimizer) -> None:
        if name not in self.optimizers:
            raise MistError(f"checkpoint {self.path} has no state for optimiser {name!r}")
        meta = self.optimizers[name]
        state: dict[int, dict[str, Any]] = {}
        prefix = f"optim.{name}."
        try:
            for key, value in self.tensors.items():
                if key.startswith(prefix):
                    idx, field = key[len(prefix) :].split(".", 1)
                    state.setdefault(int(idx), {})[field] = value
            for key, value in meta["scalars"].items():
                idx, field = key.split(".", 1)
                state.setdefault(int(idx), {})[field] = value
            opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise MistError(
                f"checkpoint {self.path}: the state of optimiser {name!r} does not fit ({exc})"
            ) from None
