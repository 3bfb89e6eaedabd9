"""One typed configuration for a run: presets are TOML files, overrides are ``section.key=value``.

A :class:`Config` has three sections: ``model`` (the networks and the detector), ``data`` (where
scenes come from), ``train`` (Algorithm 1 and its variants). Shipped presets live in
``mistnet/configs/*.toml``; ``--preset`` also takes a TOML file. Unknown keys and ill-typed values
are rejected; the resolved config is written beside every run, to rebuild a checkpoint from.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import shlex
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mistnet.configrules import check_values, reset_unread
from mistnet.configupgrade import RENAMED, upgrade
from mistnet.errors import MistError
from mistnet.io import json_text
from mistnet.runpaths import resolved
from mistnet.textfile import parse_error, read_float, read_json, read_text
from mistnet.validate import path_argument, typed_value


@dataclass
class ModelConfig:
    """Networks and detector (docs/design.md). Defaults: the paper's MNIST classification sizes."""

    task: Literal["classify", "reconstruct"] = "classify"
    in_channels: int = 1
    num_classes: int = 10
    k: int = 9
    base_side: float = 20.0  # box side at pyramid factor 1, in pixels
    factors: tuple[float, ...] = (1.0,)  # pyramid factors f_s; sides are base_side / f_s
    heatmap_width: int = 32
    heatmap_depth: int = 4
    # [] (paper): valid 3x3 blocks, receptive field 4 depth + 1. Else one dilation per block
    # (models.heatmap._DilatedResBlock): the same cost, receptive field 1 + sum(2 d + 2).
    heatmap_dilations: tuple[int, ...] = ()
    patch_size: int = 32
    patch_base_width: int = 8
    patch_levels: int = 5
    patch_blocks: int = 3
    output: Literal["sigmoid", "signed"] = "sigmoid"  # auto-encoder output (signed for Gabor)
    # What the reconstruction adds to the sum of patches: "none" (paper) or "median", each
    # image's per-channel median as a flat plane (the table under the coins; 0 on MNIST).
    background: Literal["none", "median"] = "none"
    softmax_window: int = 15
    softmax_strength: float = 10.0
    # eps of the local softmax's denominator, relative to the image's highest logit: the official
    # code's 1e-6 suppresses windows far below the strongest one; 0 gives the exact per-window
    # softmax (benchmarks/RESULTS.md, "the late collapse was float underflow in E_K").
    softmax_eps: float = 1e-6
    nms_window: int = 5


@dataclass
class DataConfig:
    """Where scenes come from: a generator by name (on the fly) or a dataset directory."""

    name: str = "mnist-hard"  # generator name, used when ``path`` is empty
    path: str = ""  # a dataset directory written by ``mist data make`` / ``import-official``
    digits: str = "embedded"  # "embedded", "mnist" (the data cache) or a directory of IDX files
    seed: int = 0
    n_train: int = 50_000  # on-the-fly scenes per epoch (generators only; at most 2**40)
    n_val: int = 500
    n_test: int = 500
    workers: int = 0


@dataclass
class TrainConfig:
    """Optimisation: Algorithm 1 (``method = "mist"``) and its baselines (docs/design.md, Training).

    :func:`mistnet.trainer.build_trainer` reads the optimisation keys; the run loop
    (:func:`mistnet.loop.train`) reads the bookkeeping ones.
    """

    method: Literal["mist", "supervised", "channelwise", "grid"] = "mist"
    batch_size: int = 32
    steps: int = 15_000
    lr_task: float = 1e-4
    lr_heatmap: float = 1e-4
    # > 0 keeps an exponential moving average of the weights with this decay per step (Polyak
    # averaging, torch.optim.swa_utils.AveragedModel; the decay warms up as (1 + n) / (10 + n),
    # trainer.warmed_up_ema); validation, the best checkpoint's inference weights and every
    # command use the average. 0 (paper) uses the raw weights.
    ema_decay: float = 0.0
    # The multi-instance classification loss of the tau- and x-steps (and of the channel-wise
    # baseline): "eq9" (paper) or "set" (Hungarian-matched cross-entropy). Reconstruction always
    # uses eq. 8 and the supervised baseline per-patch cross-entropy, so neither reads it.
    class_loss: Literal["eq9", "set"] = "eq9"
    # The x-step of Algorithm 1 (line 4; docs/design.md, Training): plain SGD on the keypoints.
    lr_keypoints: float = 1e4  # its step size, on the batch-mean loss
    keypoint_iters: int = 2  # its SGD steps per batch
    # lambda of eq. 6: weight of the proximal term ||{x_k} - E_K(H(I))||^2 in the x-step.
    proximal_weight: float = 0.0
    # Weight of an x-step prior that instances are centred on their mass (not in the paper;
    # losses.centring_loss). 0 = the paper's x-step.
    centre_weight: float = 0.0
    centre_sigma: float = 0.4  # the prior's Gaussian window, std as a fraction of the box side
    # "patch": each keypoint's windowed centre of mass in its own patch (losses.centring_loss);
    # "mixture": ink shared among the K keypoints by their windows, as in EM for a Gaussian
    # mixture, so a neighbour's ink pulls less (losses.mixture_centring_loss).
    centre_mode: Literal["patch", "mixture"] = "patch"
    max_step_px: float = 0.0  # > 0 clips each x-step displacement to this many pixels
    weight_beta: float = 5.0  # per-image heatmap-loss weight exp(-beta L); 0 switches it off
    heatmap_loss: Literal["l2", "nll"] = "l2"  # eq. 7 (paper) or the local-softmax NLL
    # Warm start: copy these parts ("heatmap", "task" or "all") from a checkpoint file or run
    # directory before training (e.g. the heatmap network of a reconstruction run).
    init_from: str = ""
    init_parts: Literal["heatmap", "task", "all"] = "heatmap"
    # Bookkeeping.
    seed: int = 0
    log_every: int = 25
    val_every: int = 500
    ckpt_every: int = 250
    val_batches: int = 0  # 0: the whole validation split
    # The validation metric that picks best.safetensors; "" picks the task's default ("both"
    # for classification, "rmse" for reconstruction).
    select_metric: Literal["", "both", "det_iou50", "classif", "ap50", "rmse"] = ""


@dataclass
class RunRecord:
    """What training took from the data, not asked for by a preset or ``--set``.

    ``mist train`` writes it (:func:`mistnet.data.runs.adopt_data`) into the run's
    ``config.json`` under ``record``; the commands check other data against it.
    """

    # (H, W) of the training images. The networks are fully convolutional; the size is kept
    # for the commands' data checks (the grid baseline fits only it) and ``mist detect --tile``.
    image_size: tuple[int, ...] = ()
    # The class names of the training data (index i names class i), from a dataset that names
    # them (``mist data import-images --labels``); empty otherwise.
    class_names: tuple[str, ...] = ()
    # The name the manifest of the training dataset gives (the generator that made it), when
    # training read a dataset directory; empty otherwise, and for runs of older versions.
    data_made_by: str = ""
    # A digest of that dataset's manifest (its seed, split sizes, parameters, ...): a resume
    # on a dataset made again with other options is refused. Empty as ``data_made_by`` is.
    data_manifest: str = ""


@dataclass
class Config:
    """The run as asked (``model``, ``data``, ``train``) and what training recorded of it."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    record: RunRecord = field(default_factory=RunRecord)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json_text(self.to_dict())


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def from_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from nested dicts, rejecting unknown keys and out-of-range values.

    Raises:
        TypeError: ``data`` is not a dict.
        MistError: an unknown section or key, a wrong type or an out-of-range value.
    """
    return validate(_built(data))


def _built(data: dict[str, Any]) -> Config:
    """``data``'s sections and keys set on the defaults, each type-checked (not yet validated)."""
    _require_dict(data, "data")
    cfg = Config()
    for section, values in data.items():
        if section not in SECTIONS:
            raise MistError(f"unknown config section {section!r}; known: {sorted(SECTIONS)}")
        if not isinstance(values, dict):
            raise MistError(f"config section {section!r} must be a table")
        for key, value in values.items():
            set_value(cfg, section, key, value)
    return cfg


def _require_dict(value: object, name: str) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict of config sections, got {type(value).__name__}")


def validate(cfg: Config) -> Config:
    """Check the type of every value (a :class:`Config` built in Python never passed
    :func:`set_value`: ``steps=2.5`` would be written into a run no command can read), then the
    ranges and the cross-section rules that types alone cannot express.

    Returns ``cfg``, its lossless conversions made (``np.int64`` to int, a list to a tuple);
    raises :class:`MistError` naming the first offending key (TypeError when
    ``cfg`` is no :class:`Config`).
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a mistnet.config.Config, got {type(cfg).__name__}")
    _check_types(cfg)
    check_values(cfg)
    return cfg


def _check_types(cfg: Config) -> None:
    """Each section of ``cfg`` of its class, its values checked by :func:`check_section`."""
    for section, cls in (*SECTIONS.items(), ("record", RunRecord)):
        target = getattr(cfg, section)
        if type(target) is not cls:
            raise TypeError(f"cfg.{section} must be a {cls.__name__}, got {type(target).__name__}")
        check_section(target, section)


def check_section(target: Any, section: str) -> None:
    """Each value of the config section ``target`` (a :class:`TrainConfig`, ...) of its field's
    type or one of its choices, converted in place where lossless; ``section`` names it."""
    for key, annotation in typing.get_type_hints(type(target)).items():
        setattr(target, key, typed_value(getattr(target, key), annotation, f"{section}.{key}"))


def set_value(cfg: Config, section: str, key: str, value: Any) -> None:
    """Set ``section.key`` of ``cfg`` to ``value``, type-checked (ranges: :func:`validate`).

    Raises:
        TypeError: ``cfg`` is not a Config.
        MistError: an unknown section or key (listing the known ones), a renamed key, or a
            value of the wrong type.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a Config, got {type(cfg).__name__}")
    known = sorted(f.name for f in dataclasses.fields(Config))  # and "record", training's
    if not isinstance(section, str) or section not in known:
        raise MistError(f"unknown config section {section!r}; known: {known}")
    target = getattr(cfg, section)
    types_ = typing.get_type_hints(type(target))
    if not isinstance(key, str) or key not in types_:  # ["k"]: "unhashable type: 'list'"
        if section == "train" and isinstance(key, str) and key in RENAMED:
            raise MistError(f"config key train.{key} is now train.{RENAMED[key]}")
        if (section, key) == ("train", "threads"):  # as a preset file's train.threads is told
            raise MistError(
                "config key train.threads is now a run-time option: mist train --threads N "
                "(mistnet.fit(threads=N))"
            )
        shown = key if isinstance(key, str) and key.isprintable() else repr(key)  # a newline
        raise MistError(f"unknown config key {section}.{shown}; known: {sorted(types_)}")
    setattr(target, key, typed_value(value, types_[key], f"{section}.{key}"))


def _parse_toml(text: str, where: str) -> dict[str, Any]:
    """``text`` as TOML; one line naming ``where`` when it is not (or too deep, or too long a
    number for Python's integer digit limit)."""
    try:
        return tomllib.loads(text, parse_float=read_float)  # 1e-400 is no 0
    except tomllib.TOMLDecodeError as exc:
        raise MistError(f"{where}: invalid TOML: {exc}") from None
    except ValueError as exc:
        raise MistError(f"{where}: invalid TOML: {parse_error(exc)}") from None
    except RecursionError:
        raise MistError(f"{where}: invalid TOML: nested too deeply") from None


def override(key: str, value: Any) -> str:
    r"""The ``--set`` text setting ``key`` to ``value`` (a string, number, bool or list of them)
    in JSON's syntax, TOML's for them (a path's lone surrogates stay: TOML refuses ``\uXXXX``).

    Example:
        >>> print(override("data.path", 'runs/"a"'))
        data.path="runs/\"a\""

    Raises:
        TypeError: ``key`` is no string, or a value none of these (None has no TOML form).
        ValueError: a NaN or infinite number (JSON's ``NaN``), an integer beyond int64.
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a string section.key, got {key!r}")
    listed = isinstance(value, list | tuple)
    items = [v.item() if isinstance(v, np.generic) else v for v in (value if listed else [value])]
    for v in items:  # a numpy scalar is taken as its Python number
        if v is None or not isinstance(v, str | int | float | bool):
            raise TypeError(f"{key}: a value must be a string, number, bool or list, got {v!r}")
        big = isinstance(v, int) and abs(v) >= 2**63  # repr fails past 4,300 digits
        if big or isinstance(v, float) and not math.isfinite(v):
            got = f"an integer of {v.bit_length()} bits" if big else repr(v)
            raise ValueError(f"{key}: a value must be a finite number within int64, got {got}")
    text = json.dumps(items if listed else items[0], ensure_ascii=False)
    return f"{key}=" + text.replace("\x7f", "\\u007f")  # DEL: JSON leaves it, TOML refuses it


def overridden(overrides: list[str]) -> dict[str, str]:
    """The ``section.key=value`` items of ``overrides`` by the key each sets (the last of a key
    wins, as in :func:`apply_overrides`); an item without ``=`` is that function's to refuse."""
    return {item.split("=", 1)[0].strip(): item for item in _override_list(overrides)}


def _override_list(overrides: object) -> list[str]:
    """``overrides`` as a list of strings; a single string (whose characters would be taken
    one by one) or anything else is a TypeError."""
    if not isinstance(overrides, list | tuple):  # a str is neither
        kind = type(overrides).__name__
        raise TypeError(f"overrides must be a list of 'section.key=value' strings, got {kind}")
    for item in overrides:
        if not isinstance(item, str):
            raise TypeError(f"overrides must hold strings, got {type(item).__name__}")
    return list(overrides)


def _parse_value(
    text: str, where: str = "value", parse_float: Callable[[str], float] = read_float
) -> Any:
    """Parse the right-hand side of ``--set`` as a TOML value, falling back to a bare string
    unless it is meant as a quoted string, list or table (then the TOML error is the message)."""
    try:
        parsed = tomllib.loads(f"v = {text}", parse_float=parse_float)
    except tomllib.TOMLDecodeError as exc:
        if text[:1] in ('"', "'", "[", "{"):
            why = re.sub(r" \(at line \d+, column \d+\)", "", str(exc))
            raise MistError(f"--set {where}={text}: invalid TOML value: {why}") from None
        return text
    except ValueError as exc:
        raise MistError(f"--set {where}: {parse_error(exc)}") from None
    except RecursionError:
        raise MistError(f"--set {where}: nested too deeply") from None
    if len(parsed) > 1:  # "5\nmodel.k=3": the line after the value was dropped unsaid
        raise MistError(f"--set {where}={text!r}: more than one value (a line break?)")
    return parsed["v"]


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings (TOML values: ``3e-4``, ``true``, ``[1.0, 0.5]``).

    ``cfg`` is changed in place and returned, or, when an override is refused, left as it was.

    Raises:
        TypeError: ``cfg`` is not a Config; ``overrides`` is not a list (or tuple) of strings.
        MistError: an item that is not ``section.key=value``, an unknown key or a bad value.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a Config, got {type(cfg).__name__}")
    changed = copy.deepcopy(cfg)  # a refused item leaves the caller's config as it was
    given = set()
    for item in _override_list(overrides):
        if "=" not in item:
            raise MistError(f"override {item!r} must look like section.key=value")
        dotted, text = (part.strip() for part in item.split("=", 1))
        parts = dotted.split(".")
        if len(parts) != 2:
            raise MistError(f"override key {dotted!r} must be section.key, e.g. train.lr_keypoints")
        section, key = parts
        if section not in SECTIONS:
            raise MistError(f"unknown config section {section!r}; known: {sorted(SECTIONS)}")
        hints = typing.get_type_hints(SECTIONS[section])
        if hints.get(key) is str:  # a folder 2024, 2024-01-01 or 1e-400: a float's check aside
            value = _parse_value(text, dotted, parse_float=float)
        else:
            value = _parse_value(text, dotted)
        if hints.get(key) is str and not isinstance(value, str):
            raise MistError(
                f"--set {dotted}={text}: {dotted} takes a string, and {text} reads as a TOML "
                f"{type(value).__name__}; quote it: --set {shlex.quote(override(dotted, text))}"
            )
        set_value(changed, section, key, value)
        given.add((section, key))
    reset_unread(changed, given)  # a preset's keys for the method or task it had
    validate(changed)
    for f in dataclasses.fields(cfg):
        setattr(cfg, f.name, getattr(changed, f.name))
    return cfg


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    root = resources.files("mistnet") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str) -> Config:
    """Load a shipped preset by name (always the shipped one: a file or folder of that name
    here is ``./NAME``), any TOML file by path, or a run's ``config.json``.

    Raises:
        MistError: an unknown name; a missing, non-UTF-8 or invalid file (one line naming it).
        TypeError: ``name_or_path`` is not a str or path.
    """
    path = Path(path_argument(name_or_path, "preset"))
    shipped = isinstance(name_or_path, str) and name_or_path in preset_names()
    # ./tiny-cpu, dir/x or a Path is a file: never the shipped preset of the name Path leaves
    named = isinstance(name_or_path, str) and not {"/", os.sep} & set(name_or_path)
    if path.suffix == ".json":  # what the run asked for; what it took from its data is not
        return dataclasses.replace(load_json(path, preset=True), record=RunRecord())
    if not shipped and (not named or path.suffix == ".toml" or path.exists()):
        if not os.path.lexists(path) and path.name in preset_names():
            raise MistError(
                f"{os.fspath(name_or_path)}: no such file (the shipped preset is "
                f"{path.name}, without a folder)"
            )
        text, where = read_text(path), str(path)
    else:  # a run folder named like its preset (mkdir tiny-cpu) hid the preset
        res = resources.files("mistnet") / "configs" / f"{name_or_path}.toml"
        if not res.is_file():
            raise MistError(f"unknown preset {name_or_path!r}; known: {', '.join(preset_names())}")
        text, where = res.read_text(encoding="utf-8"), f"preset {name_or_path}"
    return _from_file(_parse_toml(text, where), where)


def _from_file(
    data: dict[str, Any], where: str, recorded: bool = False, preset: bool = False
) -> Config:
    """:func:`from_dict` of a file's content, its messages prefixed with the file.

    ``recorded``: a run's ``config.json``, whose ``record`` section training wrote; a preset
    has none (it is not asked for). Unless it is read as a ``preset`` too (whose keys are
    asked for, checked as a TOML file's), keys its run never read are put back to their
    defaults: older versions recorded them (:func:`~mistnet.configrules.reset_unread`).
    """
    try:
        data = upgrade(data, where, recorded=recorded)  # a preset's train.threads refused
        # a preset gives what it changes; a run's file was written whole, and a section lost
        # from it would be read as the defaults (15,000 steps for a run of 4)
        if recorded and (lost := [s for s in ("model", "data", "train") if s not in data]):
            raise MistError(f"config section {lost[0]!r} is missing (a run's config is whole)")
        record = data.get("record", {}) if recorded else {}
        if not isinstance(record, dict):
            raise MistError("config section 'record' must be a table")
        cfg = _built({k: v for k, v in data.items() if not (recorded and k == "record")})
        for key, value in record.items():
            set_value(cfg, "record", key, value)
        if recorded and not preset:
            reset_unread(cfg)
        return validate(cfg)
    except MistError as exc:
        message = str(exc)
        raise MistError(message if message.startswith(where) else f"{where}: {message}") from None


def load_json(path: str | Path, preset: bool = False) -> Config:
    """Read a resolved config written by :meth:`Config.to_json` (by this or an older version),
    its paths taken from its folder (:func:`mistnet.runpaths.resolved`); ``preset``: to start
    a new run from (a key no part of training reads is refused, not reset: an edit).

    Raises:
        MistError: not a regular UTF-8 file of strict JSON, not an object, or not a valid
            config; one line naming the file.
        TypeError: ``path`` is not a str or path.
    """
    data = read_json(path_argument(path, "path"))
    if not isinstance(data, dict):
        raise MistError(f"{path}: not a valid config file (not a JSON object)")
    return resolved(_from_file(data, str(path), recorded=True, preset=preset), Path(path).parent)


def from_record(data: dict[str, Any], source: str) -> Config:
    """A resolved config as :meth:`Config.to_dict` wrote it, with its ``record`` section (the
    config of a packaged model); ``source`` names it in errors.

    Raises:
        MistError: not a valid config, one line starting with ``source``.
        TypeError: ``data`` is not a dict.
    """
    _require_dict(data, "data")
    return _from_file(data, source, recorded=True)


def resolve(preset: str, overrides: list[str] | None = None) -> Config:
    """:func:`load_preset` of ``preset``, then :func:`apply_overrides` of ``overrides``."""
    return apply_overrides(load_preset(preset), overrides or [])
