"""Training from Python: :func:`fit` a model on datasets in memory, :func:`load` a run back.

:func:`fit` runs the same loop as ``mist train`` (:func:`mistnet.loop.train`) and writes the
same run directory — ``config.json``, safetensors checkpoints, ``log.jsonl``, ``summary.json`` —
so ``mist detect``, ``mist eval --data DIR`` and ``mist show --data DIR`` accept it.

Example::

    import mistnet
    model = mistnet.fit("tiny-cpu", train_set, val_set, out="runs/mine", minutes=5, k=4)
    same = mistnet.load("runs/mine")
    ready = mistnet.load("mnist-hard-classifier")  # a pretrained model (mist models)
"""

from __future__ import annotations

import copy
import os
import typing
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from mistnet import config as config_module
from mistnet import pretrained, validate
from mistnet.config import SECTIONS, Config, set_value
from mistnet.data.memory import IN_MEMORY, SceneItems
from mistnet.device import check_device
from mistnet.errors import ArgumentError, MistError
from mistnet.loop import train
from mistnet.models.mist import MIST


def load(run: str | os.PathLike, which: str = "best", device: str = "cpu") -> MIST:
    """The model of a run directory (``best`` or ``last`` checkpoint), or a pretrained model
    by name (``mistnet.load("mnist-hard-classifier")``; ``mist models`` lists them), in eval
    mode.

    An existing path is read as a run directory; anything else must be a pretrained model's
    name. The returned module carries ``.config`` (the run's :class:`~mistnet.config.Config`:
    class names in ``config.record.class_names``) and ``.run`` (the directory, or the
    pretrained model's file), and can be passed to :func:`fit` to train on from its weights.

    Raises:
        ValueError: ``which`` is neither ``best`` nor ``last``, or ``device`` is no device name.
        MistError: neither a run directory nor a pretrained model (one line listing the known
            names), no checkpoint, or a damaged ``config.json`` or checkpoint (one line naming
            the file).
    """
    check_device(device, "device")
    if which not in ("best", "last"):
        raise ArgumentError(f"which must be 'best' or 'last', got {which!r}")
    cfg, model, ckpt = pretrained.load_any(run, which, device=device)
    model.config, model.run = cfg, Path(run) if Path(run).exists() else ckpt.path
    return model


def _override(cfg: Config, name: str, value: Any) -> None:
    """Set ``name`` (a key of one section, or ``<section>_<key>``) to ``value``, type-checked."""
    fields = {section: typing.get_type_hints(cls) for section, cls in SECTIONS.items()}
    owners = [section for section, keys in fields.items() if name in keys]
    head, _, tail = name.partition("_")
    if not owners and tail in fields.get(head, {}):
        owners, name = [head], tail
    if not owners:
        raise MistError(f"unknown config key {name!r}")
    if len(owners) > 1:
        raise MistError(f"{name} is in {' and '.join(owners)}; pass {owners[0]}_{name}=...")
    set_value(cfg, owners[0], name, value)


def _as_dataset(data: Dataset | DataLoader | None) -> Dataset | None:
    if data is None:
        return None
    if isinstance(data, DataLoader):
        data = data.dataset
    return SceneItems(data)


def _config_of(model_or_preset: str | os.PathLike | Config | MIST) -> Config:
    """A copy of the config ``fit`` starts from; a model's also warm-starts from its run."""
    if isinstance(model_or_preset, str | os.PathLike):
        return config_module.load_preset(str(model_or_preset))
    if isinstance(model_or_preset, Config):
        return copy.deepcopy(model_or_preset)
    if isinstance(getattr(model_or_preset, "config", None), Config):
        cfg = copy.deepcopy(model_or_preset.config)
        cfg.train.init_from, cfg.train.init_parts = str(model_or_preset.run), "all"
        return cfg
    raise TypeError("fit takes a preset name, a Config or a model returned by mistnet.load")


def fit(
    model_or_preset: str | Config | MIST,
    train_data: Dataset | DataLoader,
    val: Dataset | DataLoader | None = None,
    *,
    out: str | os.PathLike,
    minutes: float | None = None,
    steps: int | None = None,
    device: str = "cpu",
    progress: bool = False,
    threads: int = 0,
    **overrides: Any,
) -> MIST:
    """Train on datasets in memory into the run directory ``out``; return the trained model.

    Args:
        model_or_preset: a preset name or TOML file, a :class:`~mistnet.config.Config`, or a
            model from :func:`load` (training goes on from its weights, with its config).
        train_data: a map-style Dataset (items as :mod:`mistnet.data.memory` describes:
            images, ``(image, labels)`` or scene dicts) or a DataLoader over one. Of a
            DataLoader only its dataset and batch size are used: batches are drawn as a pure
            function of ``(seed, step)``, as in ``mist train``.
        val: validation data of the same kind; None: no validation (the last weights are the
            best).
        out: the new run directory.
        minutes: stop after this many minutes (``mist train --max-minutes``).
        steps: ``train.steps``.
        device, threads: as ``mist train --device`` / ``--threads``.
        progress: show the progress bar and validation lines.
        **overrides: config values by key (``k=4``, ``lr_task=1e-3``, ``num_classes=3``), or
            ``<section>_<key>`` for a key that two sections share (``train_seed``). The
            model's ``in_channels`` follows the data unless given.

    Returns:
        The trained model (best checkpoint), as :func:`load` returns it.

    Raises:
        ValueError: data that cannot be trained on (:class:`~mistnet.errors.DataError`: an empty
            dataset, an image of another shape, an integer image other than uint8, floats
            outside [0, 1], NaN boxes, a dict item without ``"image"``), or an argument out of
            range (:class:`~mistnet.errors.ArgumentError`: ``minutes`` <= 0 or NaN, an unknown
            ``device``); both are checked on the first item before training starts.
        MistError: unknown or ill-typed overrides, data the config cannot train on, an ``out``
            that already holds a run.
        TypeError: ``model_or_preset`` is a module that :func:`load` did not return, no
            ``train_data``, ``minutes`` or ``device`` of the wrong type.
    """
    if train_data is None:
        raise TypeError("train_data must be a Dataset or a DataLoader, got None")
    max_minutes = 0.0 if minutes is None else validate.minutes(minutes, "minutes")
    check_device(device, "device")
    cfg = _config_of(model_or_preset)
    train_set, val_set = _as_dataset(train_data), _as_dataset(val)
    if isinstance(train_data, DataLoader) and "batch_size" not in overrides:
        overrides["batch_size"] = train_data.batch_size
    if "in_channels" not in overrides and not isinstance(model_or_preset, MIST):
        overrides["in_channels"] = train_set.channels
    if steps is not None:
        overrides["steps"] = steps
    for name, value in overrides.items():
        _override(cfg, name, value)
    cfg.data.path, cfg.data.name = "", IN_MEMORY
    config_module.validate(cfg)
    train(
        cfg,
        out,
        device=device,
        max_minutes=max_minutes,
        progress=progress,
        threads=threads,
        data=(train_set, val_set),
    )
    return load(out, device=device)
