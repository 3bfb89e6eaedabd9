"""The rules a config's values keep beyond their types: ranges, rules across keys, and which
keys a run reads under its method, task and switches (the others stay at their defaults).

A key that nothing reads under the chosen ``train.method``, ``model.task`` or a switch such
as ``train.keypoint_iters = 0`` (:data:`RULES`) was once taken and written into
``config.json`` as if it had been used (``train.lr_heatmap`` of the grid baseline, which has
no heatmap network; ``train.class_loss`` of an auto-encoder). :func:`check_read` refuses such
a key at a value other than its default; :func:`reset_unread` puts the keys a preset set for
what it had back to their defaults when the method, task or switch is set over it
(``--preset mnist-hard-recon --set train.method=channelwise``), and when a run's
``config.json`` of an older version is read.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mistnet.errors import MistError
from mistnet.machine import max_threads
from mistnet.validate import unprintable

if TYPE_CHECKING:
    from mistnet.config import DataConfig, ModelConfig, RunRecord, TrainConfig


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise MistError(f"{key} must be {allowed}, got {value!r}")


#: The largest learning rate of the networks' optimisers: any larger is a typo, and from about
#: 3.4e37 Adam's first step (10 x lr) overflows float32, an error inside torch.
MAX_LR = 1e30
#: The most on-the-fly training scenes of one epoch, whose order is a permutation held in
#: memory (8 bytes a scene: what the machine can hold is checked when training starts). From
#: 2**60 numpy refused it, an internal error, and at 2**63 - 1 gave none: 0 steps, exit 0.
MAX_TRAIN_SCENES = 2**40


def _validate_model(m: ModelConfig) -> None:
    _require(  # image files and PIL images are read as one or the other (detect, predict)
        m.in_channels in (1, 3), "model.in_channels", "1 (grey) or 3 (colour)", m.in_channels
    )
    for key in ("in_channels", "num_classes", "k", "heatmap_width", "heatmap_depth"):
        _require(getattr(m, key) >= 1, f"model.{key}", ">= 1", getattr(m, key))
    for key in ("patch_size", "patch_base_width", "patch_levels", "patch_blocks"):
        _require(getattr(m, key) >= 1, f"model.{key}", ">= 1", getattr(m, key))
    _require(m.patch_size >= 2, "model.patch_size", ">= 2", m.patch_size)
    _require(  # a classifier has none: predict and detect fed it 2x - 1, training x
        m.task == "reconstruct" or m.output == "sigmoid",
        "model.output",
        "'sigmoid' for a classifier (the auto-encoder's output; 'signed' needs task reconstruct)",
        m.output,
    )
    _require(  # each level halves the patch: beyond one pixel, channels double for nothing
        m.patch_levels <= m.patch_size.bit_length() - 1,
        "model.patch_levels",
        f"at most log2(model.patch_size = {m.patch_size}) = {m.patch_size.bit_length() - 1}",
        m.patch_levels,
    )
    _require(  # a box of less than a pixel samples nothing (1e-300 is 0 in float32)
        math.isfinite(m.base_side) and m.base_side >= 1,
        "model.base_side",
        ">= 1 (pixels)",
        m.base_side,
    )
    f = m.factors
    _require(
        len(f) >= 1
        and all(0 < x <= 1 for x in f)
        and all(a > b for a, b in zip(f, f[1:], strict=False)),
        "model.factors",
        "a non-empty, strictly decreasing list of numbers in (0, 1]",
        list(f),
    )
    _require(
        m.heatmap_dilations == ()
        or (len(m.heatmap_dilations) == m.heatmap_depth and min(m.heatmap_dilations) >= 1),
        "model.heatmap_dilations",
        f"[] or heatmap_depth = {m.heatmap_depth} integers >= 1",
        list(m.heatmap_dilations),
    )
    for key in ("softmax_window", "nms_window"):
        value = getattr(m, key)
        _require(value >= 1 and value % 2 == 1, f"model.{key}", "an odd integer >= 1", value)
    _require(  # NMS looks within the softmax's window (ops.softmax)
        m.nms_window <= m.softmax_window,
        "model.nms_window",
        f"at most model.softmax_window = {m.softmax_window}",
        m.nms_window,
    )
    _require(  # float32 holds it: 1e-300 was 0, a uniform softmax; 1e39 infinite
        1.2e-38 <= m.softmax_strength <= 3.4e38,
        "model.softmax_strength",
        "a number float32 holds, in [1.2e-38, 3.4e38]",
        m.softmax_strength,
    )
    _require(0 <= m.softmax_eps < 1, "model.softmax_eps", "in [0, 1)", m.softmax_eps)


def _validate_record(r: RunRecord, m: ModelConfig) -> None:
    _require(
        r.image_size == () or (len(r.image_size) == 2 and min(r.image_size) >= 1),
        "record.image_size",
        "[] or [H, W] with H, W >= 1",
        list(r.image_size),
    )
    _require(
        r.class_names == ()
        or (len(r.class_names) == m.num_classes and len(set(r.class_names)) == m.num_classes),
        "record.class_names",
        f"[] or num_classes = {m.num_classes} distinct names",
        list(r.class_names),
    )
    _require(  # written raw into detections.csv, which import-images then refused
        all(n.strip() and not any(unprintable(c) for c in n) for n in r.class_names),
        "record.class_names",
        "names of printable text (no control character), none empty",
        list(r.class_names),
    )


def _validate_data(d: DataConfig) -> None:
    # an empty name and no path read the working directory as the dataset
    _require(d.name.strip() != "", "data.name", "a generator or dataset name", d.name)
    _require(  # an empty one reads the working directory's IDX files
        d.digits.strip() != "", "data.digits", "'embedded', 'mnist' or an IDX folder", d.digits
    )
    _require(  # printed in lines and figures, as a manifest's name (manifest.check_manifest)
        len(d.name) <= 200 and not any(unprintable(c) for c in d.name),
        "data.name",
        "a name of at most 200 printable characters",
        d.name if len(d.name) <= 200 else f"{len(d.name):,} characters",
    )
    for key in ("n_train", "n_val", "n_test", "workers", "seed"):
        _require(getattr(d, key) >= 0, f"data.{key}", ">= 0", getattr(d, key))
    _require(
        d.n_train <= MAX_TRAIN_SCENES,
        "data.n_train",
        f"at most {MAX_TRAIN_SCENES:,} (an epoch's order is shuffled in memory)",
        d.n_train,
    )
    _require(  # each a process: 100,000 of them swamp the machine
        d.workers <= max_threads(),
        "data.workers",
        f"at most {max_threads()} (4 x the {os.cpu_count()} cores, at least 64)",
        d.workers,
    )


def check_train(t: TrainConfig) -> None:
    """The ranges of a :class:`~mistnet.config.TrainConfig` whose types were checked
    (:func:`mistnet.config.check_section`); :func:`mistnet.trainer.build_trainer` checks one
    built by hand with both.

    Raises:
        MistError: naming the first key out of range.
    """
    _require(  # which parts of train.init_from to start from: alone it trained from scratch
        t.init_from != "" or t.init_parts == "heatmap",
        "train.init_parts",
        "left out without train.init_from (the checkpoint whose parts it names)",
        t.init_parts,
    )
    for key in ("batch_size", "log_every", "val_every", "ckpt_every"):
        _require(getattr(t, key) >= 1, f"train.{key}", ">= 1", getattr(t, key))
    for key in ("steps", "keypoint_iters", "val_batches", "seed"):
        _require(getattr(t, key) >= 0, f"train.{key}", ">= 0", getattr(t, key))
    for key in ("lr_task", "lr_heatmap"):  # Adam's first step is 10 x lr: 3.4e37 overflowed
        value = getattr(t, key)  # and below float32's smallest normal, 1e-320 is 0: no training
        _require(
            1.2e-38 <= value <= MAX_LR, f"train.{key}", f"a number in [1.2e-38, {MAX_LR:g}]", value
        )
    for key in ("lr_keypoints", "proximal_weight", "centre_weight", "max_step_px", "weight_beta"):
        value = getattr(t, key)  # 1e-320 is 0 in float32: max_step_px froze the keypoints
        _require(
            value == 0 or 1.2e-38 <= value < math.inf,
            f"train.{key}",
            "0 or a number in [1.2e-38, inf) (float32 holds it)",
            value,
        )
    _require(  # the centring losses refuse a window outside it (float32 squares it)
        1e-6 <= t.centre_sigma <= 1e6, "train.centre_sigma", "in [1e-6, 1e6]", t.centre_sigma
    )
    _require(0 <= t.ema_decay < 1, "train.ema_decay", "in [0, 1)", t.ema_decay)


def _validate_across(t: TrainConfig, m: ModelConfig) -> None:
    _require(  # else: "its heatmap network's weights do not fit this model (other sizes?)"
        not (t.method == "grid" and t.init_from and t.init_parts == "heatmap"),
        "train.init_parts",
        "'task' or 'all' for train.method = grid (it has no heatmap network)",
        t.init_parts,
    )
    if t.method == "grid":  # else recorded but ignored: the baseline always has its 3 x 3 cells
        _require(m.k == 9, "model.k", "9 for train.method = grid (its 3 x 3 cells)", m.k)
    if t.select_metric:
        allowed = ("rmse",) if m.task == "reconstruct" else ("both", "det_iou50", "classif", "ap50")
        _require(
            t.select_metric in allowed,
            "train.select_metric",
            f"one of {list(allowed)} for model.task = {m.task!r}",
            t.select_metric,
        )


def check_values(cfg: Any) -> None:
    """The ranges and cross-key rules of a :class:`~mistnet.config.Config` whose types were
    checked, then :func:`check_read`."""
    _validate_model(cfg.model)
    _validate_record(cfg.record, cfg.model)
    _validate_data(cfg.data)
    check_train(cfg.train)
    _validate_across(cfg.train, cfg.model)
    check_read(cfg)  # keys the method or task never reads, once recorded as used


# The x-step of Algorithm 1 and its per-image heatmap weights: only the lifted step reads them.
_X_STEP = (
    "lr_keypoints",
    "keypoint_iters",
    "proximal_weight",
    "centre_weight",
    "centre_sigma",
    "centre_mode",
    "max_step_px",
    "weight_beta",
)
# The heatmap network's regression (eq. 7): the lifted and the supervised steps.
_HEATMAP = ("lr_heatmap", "heatmap_loss")
# The local spatial softmax and E_K's NMS of MIST's heatmap (the channel-wise detector has its
# own softmax over all pixels, the grid none).
_SOFTMAX = ("softmax_window", "softmax_strength", "softmax_eps", "nms_window")


def _train(*keys: str) -> tuple[tuple[str, str], ...]:
    return tuple(("train", key) for key in keys)


def _model(*keys: str) -> tuple[tuple[str, str], ...]:
    return tuple(("model", key) for key in keys)


@dataclass(frozen=True)
class _Unread:
    """The ``keys`` no part of training reads while the key ``by`` has the value ``value``,
    and why (said in the refusal)."""

    keys: tuple[tuple[str, str], ...]
    by: tuple[str, str]
    value: Any
    why: str

    def holds(self, cfg: Any) -> bool:
        return getattr(getattr(cfg, self.by[0]), self.by[1]) == self.value

    def said(self, cfg: Any) -> str:
        section, key = self.by
        return f"{section}.{key} = {_shown(getattr(getattr(cfg, section), key))} ({self.why})"


_METHOD, _TASK = ("train", "method"), ("model", "task")
#: What each method, task and switch leaves unread; a key is said under the first that holds.
RULES = (
    _Unread(
        _train(*_X_STEP, "class_loss"),
        _METHOD,
        "supervised",
        "its keypoints come from the labelled boxes: no x-step; its patches are classified one "
        "by one",
    ),
    _Unread(
        _train(*_X_STEP, *_HEATMAP) + _model("factors", *_SOFTMAX),
        _METHOD,
        "channelwise",
        "it learns end to end with train.lr_task: no x-step, no heatmap regression, one box "
        "side, a softmax over all pixels",
    ),
    _Unread(
        _train(*_X_STEP, *_HEATMAP)
        + _model("k", "base_side", "factors", *_SOFTMAX)
        + _model("heatmap_width", "heatmap_depth", "heatmap_dilations"),
        _METHOD,
        "grid",
        "its 3 x 3 cells are fixed: no heatmap network, no keypoints to learn",
    ),
    _Unread(_model("background"), _TASK, "classify", "a background is added to a reconstruction"),
    _Unread(
        _train("class_loss") + _model("num_classes"),
        _TASK,
        "reconstruct",
        "it learns by eq. 8, the reconstruction error: no classes",
    ),
    _Unread(
        _train(*(k for k in _X_STEP if k not in ("keypoint_iters", "weight_beta"))),
        ("train", "keypoint_iters"),
        0,
        "no x-step",
    ),
    _Unread(
        _train("centre_sigma", "centre_mode"), ("train", "centre_weight"), 0.0, "no centring prior"
    ),
    _Unread(
        (("data", "digits"),), ("data", "name"), "gabor", "a texture of Gabor kernels: no digits"
    ),
)


def unread_keys(cfg: Any) -> list[tuple[str, str, str]]:
    """``(section, key, why)`` of each key that no part of training reads under ``cfg`` (its
    ``train.method``, ``model.task``, or a switch such as ``train.keypoint_iters = 0``), each
    key once. ``cfg``: a :class:`~mistnet.config.Config` or any object of its sections'
    attributes."""
    unread: dict[tuple[str, str], str] = {}
    for rule in RULES:
        if rule.holds(cfg):
            for key in rule.keys:
                unread.setdefault(key, rule.said(cfg))
    return [(section, key, said) for (section, key), said in unread.items()]


def _default(cfg: Any, section: str, key: str) -> Any:
    return getattr(type(getattr(cfg, section))(), key)


def reset_unread(cfg: Any, given: set[tuple[str, str]] | None = None) -> None:
    """Put each key that no part of training reads under ``cfg`` back to its default, in place.

    ``given``: the ``(section, key)``s a user set over a preset (``--set``, :func:`mistnet.fit`'s
    keywords); then only the keys of a rule whose switch is among them (``train.method``,
    ``train.keypoint_iters``, ...: the preset's keys for what it had), never a key among them
    (:func:`check_read` refuses it). None: every such key (a run's config).
    """
    for rule in RULES:
        if rule.holds(cfg) and (given is None or rule.by in given):
            for section, key in rule.keys:
                if given is None or (section, key) not in given:
                    setattr(getattr(cfg, section), key, _default(cfg, section, key))


def check_read(cfg: Any) -> None:
    """Refuse keys no part of training reads under ``cfg`` (:data:`RULES`), set to other than
    their defaults.

    Raises:
        MistError: one line naming every such key, its value and why it is not read.
    """
    unused: dict[str, list[str]] = {}
    for section, key, why in unread_keys(cfg):
        value = getattr(getattr(cfg, section), key)
        if value != _default(cfg, section, key):
            unused.setdefault(why, []).append(f"{section}.{key} = {_shown(value)}")
    if unused:
        said = "; ".join(f"{', '.join(keys)}: not read under {why}" for why, keys in unused.items())
        raise MistError(f"{said}; leave such keys out, or at their defaults")


def _shown(value: Any) -> str:
    return repr(list(value) if isinstance(value, tuple) else value)
