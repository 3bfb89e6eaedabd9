"""``build_trainer``: the one reader of the train config's optimisation keys.

It builds the optimisers a method needs, turns loss names into callables once, composes the
x-step objective (task loss, centring prior, proximal term) and binds them to the step function
of :mod:`mistnet.engine`, and keeps the moving average of the weights (:class:`ModelEma`) that
``train.ema_decay`` asks for. The training loop (:mod:`mistnet.loop`) calls
``trainer.train_step(batch)`` and owns everything around it: batches, diagnostics, validation,
checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

from mistnet.config import TrainConfig, check_section
from mistnet.configrules import check_train
from mistnet.engine import (
    Batch,
    HeatmapLoss,
    StepResult,
    TaskLoss,
    XObjective,
    XStep,
    end_to_end_step,
    lifted_step,
    supervised_step,
)
from mistnet.losses import (
    centring_loss,
    heatmap_loss,
    heatmap_nll_loss,
    mixture_centring_loss,
    multi_instance_loss,
    reconstruction_loss,
    set_classification_loss,
)
from mistnet.models.mist import PatchModel, TaskOutput


def warmed_up_ema(decay: float):
    """An ``AveragedModel`` update: an exponential moving average with a decay that warms up.

    After ``n`` updates the decay is ``min(decay, (1 + n) / (10 + n))`` (as TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``), so an early average follows the model
    instead of dragging in the random initialisation; from ``n ≈ 10 / (1 - decay)`` on it is the
    plain average with ``decay``. Integer buffers (BatchNorm's batch count) are copied.
    """

    def update(averaged: list[Tensor], current: list[Tensor], n: Tensor) -> None:
        steps = float(n)
        weight = 1.0 - min(decay, (1.0 + steps) / (10.0 + steps))
        with torch.no_grad():
            for avg, cur in zip(averaged, current, strict=True):
                if avg.is_floating_point():
                    avg.lerp_(cur, weight)
                else:
                    avg.copy_(cur)

    return update


class ModelEma(AveragedModel):
    """The moving average of a model's weights and buffers (:func:`warmed_up_ema`), as timm's
    ``ModelEma``: ``update(model)`` after each step, ``module`` is the averaged model.

    Its ``state_dict`` is ``AveragedModel``'s (``module.*``, ``n_averaged``), which checkpoints
    store under ``average.``.
    """

    def __init__(self, model: PatchModel, decay: float) -> None:
        super().__init__(model, multi_avg_fn=warmed_up_ema(decay), use_buffers=True)

    def update(self, model: PatchModel) -> None:
        self.update_parameters(model)


@dataclass
class Trainer:
    """A model, its optimisers by checkpoint name, the bound step ``Batch -> StepResult``, and
    the moving average of the weights (None: the run keeps none)."""

    model: PatchModel
    optimizers: dict[str, torch.optim.Optimizer]
    step: Callable[[Batch], StepResult]
    average: ModelEma | None = None

    def train_step(self, batch: Batch) -> StepResult:
        """One training step, then the moving average's update.

        Raises:
            TypeError / ValueError: a ``batch`` that is no :class:`Batch` of finite images the
                model takes, or gradients switched off; the model is left as it was (a NaN
                pixel would otherwise reach the BatchNorm statistics before any loss is read).
        """
        _check_batch(self.model, batch)
        result = self.step(batch)
        if self.average is not None:
            self.average.update(self.model)
        return result

    @property
    def inference_model(self) -> PatchModel:
        """What validates and is loaded for inference: the moving average when kept."""
        return self.model if self.average is None else self.average.module


def _check_batch(model: PatchModel, batch: object) -> None:
    if not isinstance(batch, Batch):
        raise TypeError(f"batch must be a Batch (Batch.from_dict), got {type(batch).__name__}")
    if not torch.is_grad_enabled():
        raise ValueError("train_step needs gradients: it was called under no_grad/inference_mode")
    model.check_input(batch.images)
    B, N = batch.images.shape[0], batch.labels.shape[-1]
    if B == 0:
        raise ValueError("batch.images holds no image")
    if (
        batch.labels.shape != (B, N)
        or batch.count.shape != (B,)
        or batch.labels.is_floating_point()
    ):
        raise ValueError(f"batch.labels must be (B, N) integers and batch.count (B,), for B = {B}")
    flags = [~torch.isfinite(batch.images).all()]
    if model.task == "classify":  # each image's count of class ids, then -1 padding
        listed = torch.arange(N, device=batch.labels.device) < batch.count[:, None]
        ids = (batch.labels >= 0) & (batch.labels < model.task_net.num_classes)
        wrong = torch.where(listed, ~ids, batch.labels != -1)
        flags.append(wrong.any() | (batch.count < 1).any())
    bad = torch.stack(flags).tolist()  # one read per step, as the losses' checks
    if bad[0]:
        raise ValueError("batch.images holds NaN or infinite values; the model is unchanged")
    if bad[-1] and len(bad) == 2:
        raise ValueError(
            "batch.labels must hold, for each image, its count (>= 1) of class ids in "
            f"[0, {model.task_net.num_classes}), then -1 padding; the model is unchanged"
        )


#: The classification losses by ``train.class_loss``: eq. 9 and the set loss.
CLASS_LOSSES = {"eq9": multi_instance_loss, "set": set_classification_loss}


def task_loss(task: str, class_loss: str = "eq9") -> TaskLoss:
    """The per-image task loss ``(TaskOutput, Batch) -> (B,)`` for ``task``.

    Reconstruction is eq. 8; classification is eq. 9 (``"eq9"``) or the set loss (``"set"``).

    Raises:
        ValueError: another ``task`` ("reconstruction" was taken as classification) or
            ``class_loss`` (a KeyError before).
    """
    if task not in ("classify", "reconstruct") or class_loss not in CLASS_LOSSES:
        raise ValueError(
            "task must be 'classify' or 'reconstruct' and class_loss 'eq9' or 'set', got "
            f"{task!r} and {class_loss!r}"
        )
    if task == "reconstruct":
        return lambda out, batch: reconstruction_loss(batch.images, out.reconstruction, "none")
    classify = CLASS_LOSSES[class_loss]
    return lambda out, batch: classify(out.task, batch.labels, reduction="none")


def _eq7(log_heatmaps: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    return heatmap_loss(log_heatmaps.exp(), target, weight)


# Both take the log-heatmaps the engine keeps (MIST.log_heatmaps).
HEATMAP_LOSSES: dict[str, HeatmapLoss] = {"l2": _eq7, "nll": heatmap_nll_loss}


def _patch_prior(sigma: float, images, x, out: TaskOutput):
    return centring_loss(out.patches, x[..., 2], sigma)


def _mixture_prior(sigma: float, images, x, out: TaskOutput):
    return mixture_centring_loss(images, x, sigma)


def x_step_schedule(cfg: TrainConfig) -> XStep:
    """The x-step of ``cfg``: its objective's terms and weights, step size, iterations, clip."""
    prior = {"patch": _patch_prior, "mixture": _mixture_prior}[cfg.centre_mode]
    objective = XObjective(
        priors={"centre": partial(prior, cfg.centre_sigma)},
        weights={"centre": cfg.centre_weight},
        proximal=cfg.proximal_weight,
    )
    return XStep(objective, lr=cfg.lr_keypoints, iters=cfg.keypoint_iters, max_px=cfg.max_step_px)


def build_trainer(model: PatchModel, cfg: TrainConfig) -> Trainer:
    """Optimisers (Adam), the step function of ``cfg.method`` and the moving average for
    ``model``.

    Raises:
        TypeError: ``cfg`` is no :class:`~mistnet.config.TrainConfig`.
        ValueError: a value of ``cfg`` of the wrong type, no choice of its key or out of its
            range (MistError: ``ema_decay = 2``, ``keypoint_iters = -3``),
            or ``model``'s weights made under ``torch.inference_mode()``: no step can change
            them (torch's "Inplace update to inference tensor" at the first one).
    """
    if not isinstance(cfg, TrainConfig):  # a Config: an AttributeError deep inside
        raise TypeError(f"cfg must be a TrainConfig (a Config's train), got {type(cfg).__name__}")
    check_section(cfg, "train")  # method "chanelwise" built MIST's step; a loss name a KeyError
    check_train(cfg)  # ema_decay = 2 averaged away from the weights; keypoint_iters = -3
    if any(t.is_inference() for t in (*model.parameters(), *model.buffers())):
        raise ValueError(
            "model: its weights were made under torch.inference_mode(), which no step can "
            "change; build or load it outside inference_mode"
        )
    trainer = _bind_step(model, cfg)
    if cfg.ema_decay > 0:
        trainer.average = ModelEma(model, cfg.ema_decay)
    return trainer


def _bind_step(model: PatchModel, cfg: TrainConfig) -> Trainer:
    adam = torch.optim.Adam
    loss = task_loss(model.task, cfg.class_loss)
    if cfg.method in ("channelwise", "grid"):
        # The channel-wise detector learns with the task network; the grid has nothing to learn.
        params = model.parameters() if cfg.method == "channelwise" else model.task_net.parameters()
        name = "all" if cfg.method == "channelwise" else "task"
        opt = adam(params, lr=cfg.lr_task)
        return Trainer(model, {name: opt}, partial(end_to_end_step, model, opt, loss))
    opt_task = adam(model.task_net.parameters(), lr=cfg.lr_task)
    opt_heat = adam(model.heatmap_net.parameters(), lr=cfg.lr_heatmap)
    optimizers = {"task": opt_task, "heatmap": opt_heat}
    heat = HEATMAP_LOSSES[cfg.heatmap_loss]
    if cfg.method == "supervised":
        return Trainer(model, optimizers, partial(supervised_step, model, opt_task, opt_heat, heat))
    xs = x_step_schedule(cfg)
    step = partial(lifted_step, model, opt_task, opt_heat, loss, heat, xs, cfg.weight_beta)
    return Trainer(model, optimizers, step)
