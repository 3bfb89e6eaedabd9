"""Training and evaluation loops: the lifted step of Algorithm 1 and the SPEC §4 variants.

One :class:`Trainer` step per batch. For ``method="mist"`` (SPEC §2.3):

1. ``h = H_eta(I)`` with graph; E_K on ``h.detach()`` gives the slack keypoints ``x0``.
2. tau-step: one Adam step on the task loss at the (detached) slack keypoints.
3. x-step: ``k_iter`` plain SGD steps on the keypoints alone (gradients w.r.t. ``x`` only,
   nothing accumulates in tau), optionally with the proximal term ``lam * ||x - x0||^2``.
4. eta-step: one Adam step on ``||G(x) - h||^2``, per image weighted by ``exp(-beta L_b)``.

``stage_order="code"`` runs the x-step before the tau-step, as the official code does.
``method="supervised"`` replaces the slack keypoints by the ground truth (no x-step);
``"channelwise"`` trains end to end through the soft-argmax; ``"grid"`` trains tau only.
Evaluation runs in ``eval()`` mode under ``torch.inference_mode()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from mistnet.config import TrainConfig
from mistnet.errors import MistError
from mistnet.losses import (
    centring_loss,
    heatmap_loss,
    heatmap_nll_loss,
    mixture_centring_loss,
    multi_instance_loss,
    reconstruction_loss,
    set_classification_loss,
    set_patch_costs,
    task_weight,
)
from mistnet.metrics import DetectionMeter, ReconstructionMeter
from mistnet.models.mist import MIST
from mistnet.ops import render_heatmap


class NonFiniteLoss(MistError):
    """A loss became NaN or infinite; training stops and the last good checkpoint is kept."""


@dataclass
class Batch:
    """A scene batch on the training device (see :func:`mistnet.data.collate_scenes`)."""

    images: Tensor  # (B, C, H, W)
    boxes: Tensor  # (B, N, 4) (cx, cy, w, h), padded
    labels: Tensor  # (B, N) int64, -1 = padding
    count: Tensor  # (B,) int64

    @classmethod
    def from_dict(cls, batch: dict[str, Tensor], device: torch.device | str) -> Batch:
        return cls(
            images=batch["image"].to(device, non_blocking=True),
            boxes=batch["boxes"].to(device, non_blocking=True),
            labels=batch["labels"].to(device, non_blocking=True),
            count=batch["count"].to(device, non_blocking=True),
        )


def per_image_task_loss(
    name: str, model: MIST, images: Tensor, labels: Tensor, keypoints: Tensor
) -> Tensor:
    """Run S and T at ``keypoints`` and return the per-image task loss ``(B,)``."""
    return task_loss_and_patches(name, model, images, labels, keypoints)[0]


def task_loss_and_patches(
    name: str, model: MIST, images: Tensor, labels: Tensor, keypoints: Tensor
) -> tuple[Tensor, Tensor]:
    """The per-image task loss ``(B,)`` at ``keypoints`` and the patches ``(B, K, C, P, P)``."""
    patches, out, recon = model.run_task(images, keypoints)
    if name == "recon":
        if recon is None:
            raise MistError("task loss 'recon' needs model.task = 'reconstruct'")
        return reconstruction_loss(images, recon, reduction="none"), patches
    if model.task != "classify":
        raise MistError(f"task loss {name!r} needs model.task = 'classify'")
    if name == "eq9":
        return multi_instance_loss(out, labels, reduction="none"), patches
    if name == "set":
        return set_classification_loss(out, labels, reduction="none"), patches
    raise MistError(f"unknown task loss {name!r}")


def gaussian_targets(target: Tensor, sigma: float) -> Tensor:
    """Replace each unit spike of a ``(B, S, H, W)`` target by a Gaussian bump of peak 1."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=target.device, dtype=target.dtype)
    g = torch.exp(-(t**2) / (2 * sigma**2))  # separable, peak 1
    B, S, H, W = target.shape
    x = target.reshape(B * S, 1, H, W)
    x = F.conv2d(x, g.view(1, 1, 1, -1), padding=(0, radius))
    x = F.conv2d(x, g.view(1, 1, -1, 1), padding=(radius, 0))
    return x.clamp(max=1.0).view(B, S, H, W)


def gt_keypoints(batch: Batch, side: float, k: int) -> tuple[Tensor, Tensor]:
    """Ground-truth centres as keypoints ``(B, k, 3)`` with a fixed side, and their mask."""
    B, N, _ = batch.boxes.shape
    if N < k:
        pad = batch.boxes.new_zeros(B, k - N, 4)
        boxes = torch.cat([batch.boxes, pad], 1)
        labels = torch.cat([batch.labels, batch.labels.new_full((B, k - N), -1)], 1)
    else:
        boxes, labels = batch.boxes[:, :k], batch.labels[:, :k]
    kp = torch.cat([boxes[..., :2], torch.full_like(boxes[..., :1], side)], -1)
    return kp, labels >= 0


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


class Trainer:
    """Optimisers and one training step for every method (see the module docstring).

    Args:
        model: a :class:`~mistnet.models.MIST` (or baseline subclass).
        cfg: the ``train`` section of the config.
    """

    def __init__(self, model: MIST, cfg: TrainConfig) -> None:
        self.model = model
        self.cfg = cfg
        self.method = cfg.method
        if self.method == "channelwise":
            self.opt_all = torch.optim.Adam(model.parameters(), lr=cfg.lr_task)
            self.optimizers = {"all": self.opt_all}
        else:
            self.opt_task = torch.optim.Adam(model.task_net.parameters(), lr=cfg.lr_task)
            self.optimizers = {"task": self.opt_task}
            if self.method in ("mist", "supervised"):
                self.opt_heat = torch.optim.Adam(model.heatmap_net.parameters(), lr=cfg.lr_heatmap)
                self.optimizers["heatmap"] = self.opt_heat
        if not 0.0 <= cfg.ema_decay < 1.0:
            raise MistError(f"train.ema_decay must be in [0, 1), got {cfg.ema_decay}")
        self.averaged: AveragedModel | None = None
        if cfg.ema_decay > 0:
            self.averaged = AveragedModel(
                model, multi_avg_fn=warmed_up_ema(cfg.ema_decay), use_buffers=True
            )
        default = "recon" if model.task == "reconstruct" else "eq9"
        self.task_loss = cfg.task_loss if model.task == "classify" else default
        self.x_loss = cfg.x_loss if model.task == "classify" else default

    # -- the pieces of Algorithm 1 ------------------------------------------------------------

    def tau_step(self, batch: Batch, keypoints: Tensor) -> Tensor:
        """One Adam step on the task network at fixed keypoints; returns per-image losses."""
        losses = per_image_task_loss(
            self.task_loss, self.model, batch.images, batch.labels, keypoints.detach()
        )
        loss = losses.mean()
        check_finite(loss, "task loss")
        self.opt_task.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_task.step()
        return losses.detach()

    def x_step(self, batch: Batch, x0: Tensor) -> Tensor:
        """``k_iter`` SGD steps on the slack keypoints alone; returns the optimised ``(B, K, 3)``."""
        cfg, model = self.cfg, self.model
        sides = model.sides
        x = x0.detach()
        for _ in range(cfg.k_iter):
            x = x.detach().requires_grad_(True)
            losses, patches = task_loss_and_patches(
                self.x_loss, model, batch.images, batch.labels, x
            )
            objective = losses.mean()
            if cfg.x_centre > 0:
                if cfg.centre_mode == "mixture":
                    prior = mixture_centring_loss(batch.images, x, cfg.centre_sigma)
                else:
                    prior = centring_loss(patches, x[..., 2], cfg.centre_sigma)
                objective = objective + cfg.x_centre * prior.mean()
            if cfg.lam > 0:
                objective = objective + cfg.lam * (x - x0).pow(2).sum((1, 2)).mean()
            (grad,) = torch.autograd.grad(objective, x)
            step = cfg.lr_k * grad
            if len(sides) == 1:
                step = torch.cat([step[..., :2], torch.zeros_like(step[..., 2:])], -1)
            if cfg.max_step_px > 0:
                norm = step[..., :2].norm(dim=-1, keepdim=True).clamp(min=1e-12)
                step = step * (cfg.max_step_px / norm).clamp(max=1.0)
            x = (x - step).detach()
            if len(sides) > 1:
                x[..., 2].clamp_(sides[0], sides[-1])
        return x

    def eta_step(
        self,
        h: Tensor,
        x: Tensor,
        weight: Tensor | None,
        mask: Tensor | None = None,
        values: Tensor | None = None,
    ) -> Tensor:
        """One Adam step regressing the heatmaps ``h`` onto ``G(x)``; returns the loss.

        ``weight`` ``(B,)`` weights images; ``values`` ``(B, K)`` sets each keypoint's mass in G.
        """
        _, _, H, W = h.shape
        target = render_heatmap(x, self.model.sides, H, W, mask=mask, values=values)
        if self.cfg.target_sigma > 0:
            target = gaussian_targets(target, self.cfg.target_sigma)
        if self.cfg.heatmap_loss == "nll":
            loss = heatmap_nll_loss(h, target, weight)
        else:
            loss = heatmap_loss(h, target, weight)
        check_finite(loss, "heatmap loss")
        self.opt_heat.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_heat.step()
        return loss.detach()

    # -- one step per method -------------------------------------------------------------------

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier of ``step`` under ``cfg.lr_schedule``."""
        cfg = self.cfg
        if cfg.lr_schedule == "constant":
            return 1.0
        t = min(1.0, step / max(1, cfg.steps))
        return cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + math.cos(math.pi * t))

    @property
    def inference_model(self) -> nn.Module:
        """The weights to evaluate: the moving average when ``ema_decay > 0``, else the model."""
        return self.model if self.averaged is None else self.averaged.module

    def step(self, batch: Batch, step: int) -> dict[str, float]:
        """One optimisation step on ``batch``; ``step`` sets the learning rates and the noise."""
        factor = self.lr_factor(step)
        base = {"all": self.cfg.lr_task, "task": self.cfg.lr_task, "heatmap": self.cfg.lr_heatmap}
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = base[name] * factor
        if self.method == "mist":
            stats = self._mist_step(batch, step)
        elif self.method == "supervised":
            stats = self._supervised_step(batch)
        elif self.method == "channelwise":
            stats = self._channelwise_step(batch)
        else:
            stats = self._grid_step(batch)
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        return stats

    def _mist_step(self, batch: Batch, step: int) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        _, h = model.heatmaps(batch.images)
        x0, _ = model.detect(h)
        if cfg.x_noise > 0:
            gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1_000_003 + step)
            noise = torch.randn(x0.shape, generator=gen).to(x0) * cfg.x_noise
            noise[..., 2] = 0
            x0 = x0 + noise
        if cfg.stage_order == "paper":
            task_losses = self.tau_step(batch, x0)
            x = self.x_step(batch, x0)
        else:
            x = self.x_step(batch, x0)
            task_losses = self.tau_step(batch, x)
        weight, values = None, None
        if cfg.weight_beta > 0 and cfg.weighting == "instance":
            with torch.no_grad():
                _, logits, _ = model.run_task(batch.images, x)
                costs, matched = set_patch_costs(logits, batch.labels)
            values = torch.exp(-cfg.weight_beta * costs) * matched
        elif cfg.weight_beta > 0:
            if cfg.stage_order == "paper":
                with torch.no_grad():
                    final = per_image_task_loss(
                        self.task_loss, model, batch.images, batch.labels, x
                    )
            else:
                final = task_losses
            weight = task_weight(final, cfg.weight_beta)
        heat = self.eta_step(h, x, weight, values=values)
        moved = (x - x0)[..., :2].norm(dim=-1)
        H, W = batch.images.shape[-2:]
        margin = 8.0
        border = (
            (x0[..., 0] < margin)
            | (x0[..., 0] > W - 1 - margin)
            | (x0[..., 1] < margin)
            | (x0[..., 1] > H - 1 - margin)
        )
        return {
            "task": float(task_losses.mean()),
            "heatmap": float(heat),
            "move_mean": float(moved.mean()),
            "move_median": float(moved.median()),
            "moved_1px": float((moved > 1).float().mean()),
            "border": float(border.float().mean()),
        }

    def _supervised_step(self, batch: Batch) -> dict[str, float]:
        model = self.model
        _, h = model.heatmaps(batch.images)
        x, mask = gt_keypoints(batch, model.sides[0], model.k)
        if model.task == "classify":
            _, logits, _ = model.run_task(batch.images, x)
            # The correspondence patch <-> label is known here, so plain per-patch cross-entropy.
            target = _pad_labels(batch.labels, model.k).flatten()  # (B*K,)
            loss = F.cross_entropy(logits.flatten(0, 1), target, ignore_index=-1)
        else:
            _, _, recon = model.run_task(batch.images, x)
            loss = reconstruction_loss(batch.images, recon)
        check_finite(loss, "task loss")
        self.opt_task.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_task.step()
        heat = self.eta_step(h, x, None, mask=mask)
        return {"task": float(loss.detach()), "heatmap": float(heat)}

    def _end_to_end_loss(self, batch: Batch) -> Tensor:
        out = self.model(batch.images)
        if self.model.task == "reconstruct":
            return reconstruction_loss(batch.images, out.reconstruction)
        return multi_instance_loss(out.task, batch.labels)

    def _channelwise_step(self, batch: Batch) -> dict[str, float]:
        loss = self._end_to_end_loss(batch)
        check_finite(loss, "task loss")
        self.opt_all.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_all.step()
        return {"task": float(loss.detach())}

    def _grid_step(self, batch: Batch) -> dict[str, float]:
        loss = self._end_to_end_loss(batch)
        check_finite(loss, "task loss")
        self.opt_task.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_task.step()
        return {"task": float(loss.detach())}


def _pad_labels(labels: Tensor, k: int) -> Tensor:
    B, N = labels.shape
    if N >= k:
        return labels[:, :k]
    return torch.cat([labels, labels.new_full((B, k - N), -1)], 1)


def check_finite(loss: Tensor, what: str) -> None:
    if not bool(torch.isfinite(loss)):
        raise NonFiniteLoss(
            f"{what} became {float(loss.detach())}; stopping (the last good checkpoint is kept)"
        )


@torch.inference_mode()
def evaluate(
    model: MIST,
    batches: Iterable[dict[str, Tensor]],
    device: torch.device | str = "cpu",
    k: int | None = None,
    per_image_k: bool = False,
    signed: bool = False,
    max_batches: int = 0,
) -> dict[str, float]:
    """SPEC §5 metrics of ``model`` over ``batches``, in eval mode.

    Classification gives ``det_iou50``, ``det_any50``, ``classif``, ``both``, ``ap50`` (and the
    class-agnostic ``ap50_agnostic``); reconstruction gives ``rmse`` and its variants.
    ``per_image_k`` detects ``count[b]`` instances per image (Table 3) instead of ``k``.
    """
    was_training = model.training
    model.eval()
    det = DetectionMeter(num_classes=getattr(model.task_net, "num_classes", 10))
    rec = ReconstructionMeter(signed=signed)
    try:
        for i, raw in enumerate(batches):
            if max_batches and i >= max_batches:
                break
            batch = Batch.from_dict(raw, device)
            kk = int(batch.count.max()) if per_image_k else (k or model.k)
            out = model(batch.images, kk)
            if model.task == "classify":
                labels = out.task.argmax(-1)
                det_count = batch.count if per_image_k else None
                det.update(out.keypoints, labels, batch.boxes, batch.labels, batch.count, det_count)
            else:
                rec.update(out.reconstruction, batch.images)
    finally:
        model.train(was_training)
    return det.compute() if model.task == "classify" else rec.compute()
