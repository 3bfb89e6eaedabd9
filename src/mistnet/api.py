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
import dataclasses
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from mistnet import config as config_module
from mistnet import pretrained, validate
from mistnet.checkpoint import Checkpoint
from mistnet.config import SECTIONS, Config, RunRecord, set_value
from mistnet.configrules import reset_unread
from mistnet.data.memory import IN_MEMORY, SceneItems
from mistnet.device import device_argument, device_name
from mistnet.errors import ArgumentError, DataError, MistError
from mistnet.io import first_unwritable, nearest_existing
from mistnet.loop import train
from mistnet.models.mist import MIST, PatchModel
from mistnet.outputs import claim_output
from mistnet.prediction import predict
from mistnet.rundir import Run


def load(run: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu") -> MIST:
    """The model of a run directory (``best`` or ``last`` checkpoint), or a pretrained model
    by name (``mistnet.load("mnist-hard-classifier")``; ``mist models`` lists them), in eval
    mode.

    An existing path is read as a run directory; anything else must be a pretrained model's
    name. The returned module carries ``.config`` (the run's :class:`~mistnet.config.Config`:
    class names in ``config.record.class_names``), ``.run`` (the directory's absolute path, or
    the pretrained model's file), ``.checkpoint`` (the file read) and ``.predict``
    (:func:`predict` on image files, Pillow images or tensors), and can be passed to
    :func:`fit` to train on from its weights (those of ``.checkpoint``). ``device`` is
    ``cpu`` (the default, unlike the commands' ``auto``), ``cuda``, ``cuda:N``, ``auto`` (CUDA
    when present) or a ``torch.device`` of those.

    Raises:
        ValueError: ``which`` is neither ``best`` nor ``last`` (or ``last`` for a pretrained
            model, which has one checkpoint), ``device`` is no device name, or it names CUDA
            where there is none.
        ValueError (``MistError``): neither a run directory nor a pretrained model (one line
            listing the known names), no checkpoint, or a damaged ``config.json`` or checkpoint
            (one line naming the file).
    """
    device = device_argument(device)  # a name or a torch.device, CUDA-less "cuda" refused
    if which not in ("best", "last"):
        raise ArgumentError(f"which must be 'best' or 'last', got {which!r}")
    if isinstance(run, str | os.PathLike):
        validate.path_argument(run, "run")
    try:
        cfg, model, ckpt = pretrained.load_any(run, which, device=device)
    except OSError as exc:  # a folder it cannot read
        raise DataError(f"run {os.fspath(run)!r}: {exc.strerror or exc}") from None
    model.config, model.run = cfg, Path(run).resolve() if Path(run).exists() else ckpt.path
    model.checkpoint = ckpt.path.resolve()  # what fit(model) trains on from
    model.predict = types.MethodType(predict, model)
    return model


def _field(name: str) -> tuple[str, str]:
    """The ``(section, key)`` that ``name`` (a key of one section, or ``<section>_<key>``)
    sets."""
    fields = {section: typing.get_type_hints(cls) for section, cls in SECTIONS.items()}
    owners = [section for section, keys in fields.items() if name in keys]
    head, _, tail = name.partition("_")
    if not owners and tail in fields.get(head, {}):
        owners, name = [head], tail
    if not owners:
        raise MistError(f"unknown config key {name!r}")
    if len(owners) > 1:
        raise MistError(f"{name} is in {' and '.join(owners)}; pass {owners[0]}_{name}=...")
    return owners[0], name


def _override(cfg: Config, overrides: dict[str, Any]) -> None:
    """Set each of ``overrides`` (:func:`_field` names) in ``cfg``, type-checked; one field
    under two names (``k`` and ``model_k``) is refused, not one of them dropped. A ``method``
    or ``task`` puts the keys it does not read back to their defaults, unless given too
    (:func:`~mistnet.config.apply_overrides`)."""
    named: dict[tuple[str, str], str] = {}
    for name, value in overrides.items():
        section, key = _field(name)
        if (section, key) in named:
            raise MistError(f"{named[section, key]} and {name} both set {section}.{key}; give one")
        named[section, key] = name
        set_value(cfg, section, key, value)
    reset_unread(cfg, set(named))


def _as_dataset(data: Dataset | DataLoader | None, what: str) -> SceneItems | None:
    if data is None:
        return None
    if isinstance(data, DataLoader):
        data = data.dataset
    return SceneItems(data, what)


def _fit_data(
    train_data: Dataset | DataLoader, val: Dataset | DataLoader | None, overrides: dict
) -> tuple:
    """``train_data`` and ``val`` as :class:`~mistnet.data.memory.SceneItems`, ``val`` of the
    training image size; a DataLoader's batch size put into ``overrides`` unless given."""
    if isinstance(train_data, DataLoader) and not {"batch_size", "train_batch_size"} & set(
        overrides
    ):
        if train_data.batch_size is None:  # a batch_sampler, or batch_size=None
            raise TypeError(
                "train_data is a DataLoader without a batch_size (None); give it one, or pass "
                "fit(..., batch_size=N)"
            )
        overrides["batch_size"] = train_data.batch_size
    train_set, val_set = _as_dataset(train_data, "train_data"), _as_dataset(val, "val")
    shape = (train_set.channels, train_set.height, train_set.width)
    if val_set is not None and (val_set.channels, val_set.height, val_set.width) != shape:
        raise DataError(
            f"val item 0 is {(val_set.channels, val_set.height, val_set.width)}, train_data item "
            f"0 {shape}; validate on images of the training size"
        )
    return train_set, val_set


def _require_unchanged(model: MIST, start: Path) -> None:
    """Refuse a loaded model whose weights were changed in memory: a run starts from a
    checkpoint file (``train.init_from``, recorded in its config, read again on resume), so
    those changes would be dropped without a word."""
    if start.is_dir():  # loaded by an earlier version: its run directory
        return
    try:
        saved = Checkpoint(start).model_state(average=True)
    except MistError as exc:
        raise ArgumentError(f"model_or_preset: {exc}") from None
    own = model.state_dict()
    if set(saved) != set(own) or any(
        not torch.equal(saved[k], own[k].detach().to("cpu", saved[k].dtype)) for k in own
    ):
        raise ArgumentError(
            f"model_or_preset: its weights differ from {start}, which mistnet.load read; fit "
            "trains on from a checkpoint file, so changes made in memory would be lost"
        )


def _require_no_path(cfg: Config, what: str, cleared: bool) -> None:
    """Refuse a ``data.path``, which :func:`fit` would drop without a word (as ``path=``),
    unless the caller ``cleared`` it (``path=""``)."""
    if cfg.data.path and not cleared:
        raise ArgumentError(
            f"{what} has data.path {cfg.data.path!r}: fit trains on train_data and val, in "
            "memory; pass path='' to clear it (mist train --data DIR trains on a dataset "
            "directory)"
        )


def _config_of(model_or_preset: str | os.PathLike | Config | MIST, cleared: bool) -> Config:
    """A copy of the config ``fit`` starts from; a model's also warm-starts from its run.
    ``cleared``: the caller passed ``path=""`` (a preset's or Config's ``data.path`` is let go)."""
    if isinstance(model_or_preset, str | os.PathLike):
        if not os.fspath(model_or_preset).strip():  # Path("") is the working directory
            raise ArgumentError(
                f"model_or_preset {os.fspath(model_or_preset)!r} is empty; give a preset name or "
                "file, a Config or a model"
            )
        cfg = config_module.load_preset(str(model_or_preset))
        _require_no_path(cfg, f"the preset {os.fspath(model_or_preset)}", cleared)
        return cfg
    if isinstance(model_or_preset, Config):
        _require_no_path(model_or_preset, "the Config", cleared)
        # Each field checked as a preset's are (a Config's fields can be set to anything); its
        # record is what training takes from the data, not from the Config.
        data = model_or_preset.to_dict()
        return config_module.from_dict({k: v for k, v in data.items() if k != "record"})
    if isinstance(getattr(model_or_preset, "config", None), Config):
        # its record is what training took from the model's data: the new run's comes from
        # train_data (checked against it, its class names refused num_classes=3)
        cfg = dataclasses.replace(copy.deepcopy(model_or_preset.config), record=RunRecord())
        start = getattr(model_or_preset, "checkpoint", None) or model_or_preset.run
        if any(t.is_meta for t in [*model_or_preset.parameters(), *model_or_preset.buffers()]):
            raise ArgumentError("model_or_preset is on the meta device: it holds no weights")
        _require_unchanged(model_or_preset, Path(start))
        cfg.train.init_from, cfg.train.init_parts = str(Path(start).resolve()), "all"
        return cfg
    raise TypeError("fit takes a preset name, a Config or a model returned by mistnet.load")


#: ``fit`` keywords of the data section that in-memory data has no use for (they name or size
#: a dataset directory or a generator's scenes).
_NOT_IN_MEMORY = tuple(
    f"{prefix}{key}"
    for key in ("path", "name", "n_train", "n_val", "n_test", "digits")
    for prefix in ("", "data_")
)


def _fit_config(model_or_preset: str | os.PathLike | Config | MIST, overrides: dict) -> Config:
    """The config :func:`fit` trains with; a preset, key or value it refuses is a
    ``ValueError`` (:class:`~mistnet.errors.MistError`), as every other bad argument."""
    cleared = [n for n in ("path", "data_path") if isinstance(overrides.get(n), str | bytes)]
    cleared = [n for n in cleared if not overrides[n]]
    for name in cleared:  # the one value of these fit takes: a preset's data.path let go
        overrides.pop(name)
    cfg = _config_of(model_or_preset, bool(cleared))
    for name, value in overrides.items():
        if name in _NOT_IN_MEMORY:  # else ignored silently
            raise ArgumentError(
                f"{name}={value!r}: fit trains on train_data and val, in memory; leave "
                f"out {name} (mist train --data DIR trains on a dataset directory)"
            )
    if isinstance(model_or_preset, PatchModel) and {"init_from", "train_init_from"} & set(
        overrides
    ):  # init_from="" was refused for the init_parts fit had set itself
        raise ArgumentError(
            "init_from: fit(model) trains on from the model's own weights; to start from "
            "others or from scratch, pass its config (model.config) instead of the model"
        )
    _override(cfg, overrides)
    if isinstance(model_or_preset, PatchModel):
        _require_same_head(model_or_preset.config, cfg)
    cfg.data.path, cfg.data.name = "", IN_MEMORY
    return config_module.validate(cfg)


def _require_same_head(trained: Config, cfg: Config) -> None:
    """Refuse a ``task`` or ``num_classes`` other than the loaded model's: fit trains on from
    its weights, whose task network does that task for those classes (a record of the model's
    class names was named instead, a field the caller never set)."""
    was, now = trained.model, cfg.model
    if now.task != was.task:
        raise ArgumentError(
            f"task={now.task!r}: the model does {was.task!r}; fit trains on from its weights "
            "(start from a preset or Config for another task)"
        )
    if now.task == "classify" and now.num_classes != was.num_classes:
        raise ArgumentError(
            f"num_classes={now.num_classes}: the model's classifier has {was.num_classes} "
            "classes; fit trains on from its weights (start from a preset or Config for "
            "another number)"
        )


def fit(
    model_or_preset: str | Config | MIST,
    train_data: Dataset | DataLoader,
    val: Dataset | DataLoader | None = None,
    *,
    out: str | os.PathLike,
    minutes: float | None = None,
    steps: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
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
        device, threads: as ``mist train --device`` / ``--threads`` (or a ``torch.device``),
            but ``device`` defaults to ``cpu``, not ``auto`` (``"auto"``: CUDA when present).
        progress: show the progress bar and validation lines on stderr (None: when stderr is
            a terminal).
        **overrides: config values by key (``k=4``, ``lr_task=1e-3``, ``num_classes=3``), or
            ``<section>_<key>`` for a key that two sections share (``train_seed``). The
            model's ``in_channels`` follows the data unless given. A preset or Config naming
            a dataset (``data.path``, a run's ``config.json``) is refused unless ``path=""``
            lets it go (fit trains on ``train_data``); ``init_from`` is refused with a model.

    Training runs with gradients whatever the caller's grad mode (``torch.no_grad()``,
    ``torch.inference_mode()``, given back after), in float32 whatever its ``torch.autocast``.

    Returns:
        The trained model (best checkpoint), as :func:`load` returns it.

    Raises:
        ValueError: data that cannot be trained on (:class:`~mistnet.errors.DataError`, naming
            ``train_data`` or ``val`` and the item: an empty dataset, an image of another shape,
            an integer image other than uint8, floats outside [0, 1], a numpy longdouble
            array (big-endian ones are taken), NaN boxes or beyond float32, a dict item
            without ``"image"``, boolean labels or one past the model's classes (each item as
            it is read), a ``val`` of another image size), or an argument out of range
            (:class:`~mistnet.errors.ArgumentError`: ``minutes`` <= 0 or NaN, an unknown
            ``device``, ``threads`` < 0, an unknown preset or key, ``steps=-1``, a ``task`` or
            ``num_classes`` other than a loaded model's (fit trains on from its weights), an
            ``out`` that is a file, holds a run or lies inside another output, training that
            diverged): every refusal of ``fit`` is a ``ValueError``.
        TypeError: ``model_or_preset`` is a module that :func:`load` did not return, no
            ``train_data``, an ``out`` that is no path, ``minutes``, ``device``, ``threads``
            or ``progress`` of the wrong type (numpy's bools and integers, and 0-d integer
            tensors, are of the right one).
    """
    if train_data is None:
        raise TypeError("train_data must be a Dataset or a DataLoader, got None")
    _check_out(out)
    max_minutes = 0.0 if minutes is None else validate.minutes(minutes, "minutes")
    device = device_name(device, "device")
    device_argument(device)  # "cuda" where there is none refused before any work
    threads = validate.threads(threads, "threads")
    if progress is not None:  # "no" would show the bar; numpy's False is False
        progress = validate.flag(progress, "progress")
    train_set, val_set = _fit_data(train_data, val, overrides)
    _set_by_fit(model_or_preset, overrides, train_set.channels, steps)
    cfg = _fit_config(model_or_preset, overrides)
    _fit_items(cfg, train_set, val_set, isinstance(model_or_preset, PatchModel))
    progress = sys.stderr.isatty() if progress is None else progress
    data = (train_set, val_set)
    _train(cfg, out, device=device, max_minutes=max_minutes, progress=progress,
           threads=threads, data=data)  # fmt: skip
    return load(out, device=device)


def _set_by_fit(model_or_preset: object, overrides: dict, channels: int, steps: object) -> None:
    """Add to ``overrides`` what :func:`fit` sets itself: ``steps`` when given, and the
    model's ``in_channels`` from the data unless given (in either spelling: the long one was
    refused as given twice) or a loaded model's."""
    given = {"in_channels", "model_in_channels"} & set(overrides)
    if not given and not isinstance(model_or_preset, PatchModel):
        overrides["in_channels"] = channels
    if steps is not None:
        overrides["steps"] = steps


def _train(cfg: Config, out: str | os.PathLike, **options: Any) -> None:
    """:func:`~mistnet.loop.train` with gradients whatever the caller's grad mode, given back
    after: under ``no_grad`` no step could run, under ``inference_mode`` the networks built
    were inference tensors that no step could change."""
    with torch.inference_mode(False), torch.enable_grad():
        train(cfg, out, **options)


def _fit_items(
    cfg: Config, train_set: SceneItems, val_set: SceneItems | None, fit_model: bool
) -> None:
    """Record the sizes of the data in memory in ``cfg`` (not the preset's generator sizes)
    and, for a classifier, check every item's labels before training (and as it is read);
    ``fit_model``: training goes on from a loaded model, whose classes the data must name."""
    cfg.data.n_train, cfg.data.n_test = len(train_set), 0
    cfg.data.n_val = 0 if val_set is None else len(val_set)
    named, m = len(train_set.classes), cfg.model
    if fit_model and named and m.task == "classify" and named != m.num_classes:
        raise ArgumentError(  # was told to pass num_classes, which fit(model) then refused
            f"train_data names {named} classes but the model's classifier has {m.num_classes}; "
            f"fit trains on from its weights (start from a preset or Config with "
            f"num_classes={named})"
        )
    for items in (train_set, val_set) if cfg.model.task == "classify" else ():
        if items is not None:
            items.num_classes = cfg.model.num_classes
            items.check_labels(need_one=items is train_set)


def _check_out(out: object) -> None:
    """Refuse an ``out`` of :func:`fit` that is no path, or empty (the working directory)."""
    if not isinstance(out, str | os.PathLike):
        raise TypeError(f"out must be a path (str or os.PathLike), got {type(out).__name__}")
    if not validate.path_argument(out, "out"):  # a NUL: "embedded null byte", naming nothing
        raise ArgumentError("out '' is an empty path; give the run directory to write")
    run = Run(out)
    # what training's own claim would refuse, said of ``out`` rather than ``--out``
    claim_output(
        out, "run", "mist train or fit", lambda path: run.is_legacy(), option="out", again=False
    )
    if Run(out).last.exists() or Run(out).best.exists():  # said before any work, as fit's
        raise ArgumentError(
            f"out {out} already holds a run; give another out, or resume it exactly with "
            "mistnet.loop.train(config, out, resume=True, data=(SceneItems(train), "
            "SceneItems(val)))"
        )
    place = nearest_existing(out)  # out itself, or the folder it would be made in
    if place.is_dir() and first_unwritable([place]):  # was a bare PermissionError
        raise ArgumentError(f"out {out}: this user cannot write into {place}; give another out")
