"""Training steps and evaluation: the lifted step of Algorithm 1, the baselines, evaluate.

Each step is a plain function of explicit arguments (model, optimisers, losses as callables);
:func:`mistnet.trainer.build_trainer` reads a config and binds them. :func:`lifted_step`
(docs/design.md, Training): ``h = H_eta(I)`` (kept as ``log h``) with graph and E_K on it give the
slack keypoints ``x0``; the tau-step takes one optimiser step on the task loss at ``x0``; the x-step
takes plain SGD steps on the keypoints alone (nothing accumulates in tau) on :class:`XObjective`;
the eta-step regresses ``h`` onto ``G(x)``, each image weighted by ``exp(-beta L_b)`` at the final
keypoints. :func:`supervised_step` puts the ground truth in place of the x-step;
:func:`end_to_end_step` trains the channel-wise and grid baselines by backpropagation;
:func:`evaluate` scores a model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim import Optimizer

from mistnet.device import device_argument
from mistnet.errors import MistError, NonFiniteLoss
from mistnet.losses import reconstruction_loss, task_weight
from mistnet.metrics import SceneMeter
from mistnet.models.mist import MIST, MISTOutput, PatchModel, TaskOutput
from mistnet.ops import boxes_to_keypoints, render_heatmap
from mistnet.ops._checks import check_int, check_number

TaskLoss = Callable[[TaskOutput, "Batch"], Tensor]  # -> per-image task loss (B,)
# (log-heatmaps, target G(x), both (B, S, H, W); image weights (B,) or None) -> scalar
HeatmapLoss = Callable[[Tensor, Tensor, Tensor | None], Tensor]
Prior = Callable[[Tensor, Tensor, TaskOutput], Tensor]  # (images, x, out) -> (B, K) or (B,)

# A keypoint this close to the image edge counts as "on the border" in the training log: the
# lifted loop's failure mode is keypoints collapsing onto the border (RESULTS.md), and a 20 px
# box centred closer than 8 px to the edge hangs at least 2 px over it.
BORDER_PX = 8.0


@dataclass
class Batch:
    """A scene batch on the training device (see :func:`mistnet.data.collate_scenes`)."""

    images: Tensor  # (B, C, H, W)
    boxes: Tensor  # (B, N, 4) (cx, cy, w, h), padded
    labels: Tensor  # (B, N) int64, -1 = padding
    count: Tensor  # (B,) int64

    @classmethod
    def from_dict(cls, batch: dict[str, Tensor], device: torch.device | str) -> Batch:
        """The batch ``batch`` (as :func:`mistnet.data.collate_scenes` makes it) on ``device``.

        Raises:
            TypeError: ``batch`` no dict, or ``device`` neither a string nor a ``torch.device``.
            ValueError: a missing entry, or one of another rank, batch size or dtype (float
                labels, a 3-D image), naming its key; or a device name that is none
                (``"device must be cpu, cuda, cuda:N or auto, got 'gpu'"``). Metadata only.
        """
        keys = ("image", "boxes", "labels", "count")
        if not isinstance(batch, dict):
            raise TypeError(f"a batch must be a dict, got {type(batch).__name__}")
        for key in keys:
            if not isinstance(batch.get(key), Tensor):
                got = "nothing" if key not in batch else type(batch[key]).__name__
                raise ValueError(
                    f"a batch needs a tensor at {key!r}, got {got} (batches are what "
                    "mistnet.data.collate_scenes makes)"
                )
        _check_batch_entries(*(batch[key] for key in keys))
        device = device_argument(device)  # "gpu": torch's RuntimeError at the first .to
        return cls(*(batch[key].to(device, non_blocking=True) for key in keys))


def _check_batch_entries(image: Tensor, boxes: Tensor, labels: Tensor, count: Tensor) -> None:
    """Refuse entries that are not one batch of :func:`mistnet.data.collate_scenes`: a 3-D image
    or float labels were taken and failed (or were misread) later. Shapes and dtypes only."""
    B = image.shape[0] if image.ndim else 0
    N = labels.shape[1] if labels.ndim == 2 else 0
    wants = {
        "image": (image, image.ndim == 4 and image.is_floating_point(), "(B, C, H, W) floats"),
        "boxes": (boxes, boxes.shape == (B, N, 4), f"(B, N, 4) = ({B}, {N}, 4)"),
        "labels": (labels, labels.ndim == 2 and labels.shape[0] == B, f"(B, N) with B = {B}"),
        "count": (count, count.shape == (B,), f"(B,) = ({B},)"),
    }
    for key, (x, ok, expected) in wants.items():
        integer = not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)
        if key in ("labels", "count") and not integer:
            ok, expected = False, f"{expected}, integers"
        if key == "boxes" and not (x.is_floating_point() or integer):
            ok, expected = False, f"{expected}, real numbers"
        if not ok:
            raise ValueError(
                f"a batch's {key!r} must be {expected}, got {x.dtype} of shape {tuple(x.shape)} "
                "(batches are what mistnet.data.collate_scenes makes)"
            )


@dataclass
class StepResult:
    """What one training step reports: detached losses and, for the lifted step, keypoints."""

    task: Tensor  # () batch-mean task loss
    heatmap: Tensor | None = None  # () heatmap loss, None where no heatmap is trained
    x0: Tensor | None = None  # (B, K, 3) the detections the x-step started from
    x: Tensor | None = None  # (B, K, 3) the optimised slack keypoints

    def stats(self, height: int, width: int) -> dict[str, float]:
        """The logged floats: the losses and, for the lifted step, how x moved from ``x0`` and
        the share of ``x0`` within :data:`BORDER_PX` of the edge of ``height`` x ``width``."""
        stats = {"task": float(self.task)}
        if self.heatmap is not None:
            stats["heatmap"] = float(self.heatmap)
        if self.x is None or self.x0 is None:
            return stats
        x0 = self.x0
        moved = (self.x - x0)[..., :2].norm(dim=-1)  # (B, K)
        border = (
            (x0[..., 0] < BORDER_PX)
            | (x0[..., 0] > width - 1 - BORDER_PX)
            | (x0[..., 1] < BORDER_PX)
            | (x0[..., 1] > height - 1 - BORDER_PX)
        )
        stats.update(
            move_mean=float(moved.mean()),
            move_median=float(moved.median()),
            moved_1px=float((moved > 1).float().mean()),
            border=float(border.float().mean()),
        )
        return stats


@dataclass(frozen=True)
class XObjective:
    """What the x-step descends: the batch-mean task loss plus weighted priors.

    As DETR's ``weight_dict``: ``priors`` names each term and ``weights`` scales it (weight 0:
    not computed). ``proximal`` weighs the paper's ``||x - x0||^2`` per image.

    Raises:
        TypeError: ``priors`` or ``weights`` no mapping, a prior that is not callable.
        ValueError: a weight or ``proximal`` that is no finite number >= 0 (NaN made the
            keypoints NaN only after the task network had stepped).
    """

    priors: dict[str, Prior] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    proximal: float = 0.0

    def __post_init__(self) -> None:
        for name in ("priors", "weights"):  # a list was "'list' object has no attribute 'items'"
            if not isinstance(getattr(self, name), Mapping):
                kind = type(getattr(self, name)).__name__
                raise TypeError(f"{name} must be a dict of name -> value, got {kind}")
        for name, prior in self.priors.items():
            if not callable(prior):
                raise TypeError(f"priors[{name!r}] must be callable, got {type(prior).__name__}")
        for name, weight in self.weights.items():
            check_number(weight, f"weights[{name!r}]", positive=False)
        check_number(self.proximal, "proximal", positive=False)

    def __call__(self, task_losses: Tensor, images: Tensor, x: Tensor, x0: Tensor, out) -> Tensor:
        objective = task_losses.mean()
        for name, prior in self.priors.items():
            if self.weights.get(name, 0.0) > 0:
                objective = objective + self.weights[name] * prior(images, x, out).mean()
        if self.proximal > 0:
            objective = objective + self.proximal * (x - x0).pow(2).sum((1, 2)).mean()
        return objective


@dataclass(frozen=True)
class XStep:
    """The x-step's schedule: ``iters`` SGD steps of size ``lr``, each clipped to ``max_px``.

    Raises:
        TypeError: an ``objective`` that is not callable.
        ValueError: an ``lr`` or ``max_px`` that is no finite number >= 0 (a negative ``lr``
            climbed the objective, NaN made the keypoints NaN), or an ``iters`` that is no
            integer >= 0 (``"3"``: a TypeError naming nothing once the task network had stepped).
    """

    objective: XObjective
    lr: float
    iters: int
    max_px: float = 0.0  # 0: no clip

    def __post_init__(self) -> None:
        # Checked here, once: lifted_step ran the tau-step before a bad value failed.
        if not callable(self.objective):
            raise TypeError(f"objective must be an XObjective, got {type(self.objective).__name__}")
        object.__setattr__(self, "lr", check_number(self.lr, "lr", positive=False))
        object.__setattr__(self, "iters", check_int(self.iters, "iters", low=0))
        object.__setattr__(self, "max_px", check_number(self.max_px, "max_px", positive=False))


def _require_finite(values: Tensor, what: str) -> None:
    """Raise :class:`NonFiniteLoss` when ``values`` hold a NaN or an infinity (divergence)."""
    if not bool(torch.isfinite(values).all()):
        bad = values.detach()[~torch.isfinite(values.detach())][0]
        raise NonFiniteLoss(f"the {what} became {float(bad)}")


def _descend(optimizer: Optimizer, loss: Tensor, what: str) -> None:
    """One optimiser step on ``loss``; a NaN or infinite loss raises :class:`NonFiniteLoss`."""
    _require_finite(loss, what)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def tau_step(
    model: MIST, optimizer: Optimizer, task_loss: TaskLoss, batch: Batch, x: Tensor
) -> Tensor:
    """One step of the task network at fixed keypoints ``x``; returns per-image losses ``(B,)``."""
    losses = task_loss(model.run_task(batch.images, x.detach()), batch)
    _descend(optimizer, losses.mean(), "task loss")
    return losses.detach()


def x_step(model: MIST, task_loss: TaskLoss, step: XStep, batch: Batch, x0: Tensor) -> Tensor:
    """Optimise the slack keypoints alone from ``x0`` ``(B, K, 3)``; returns the new ``(B, K, 3)``."""
    sides, x = model.sides, x0.detach()
    for _ in range(step.iters):
        x = x.detach().requires_grad_(True)
        out = model.run_task(batch.images, x)
        objective = step.objective(task_loss(out, batch), batch.images, x, x0, out)
        (grad,) = torch.autograd.grad(objective, x)
        move = step.lr * grad
        if len(sides) == 1:  # one scale: the side is fixed
            move = torch.cat([move[..., :2], torch.zeros_like(move[..., 2:])], -1)
        if step.max_px > 0:
            norm = move[..., :2].norm(dim=-1, keepdim=True).clamp(min=1e-12)
            move = move * (step.max_px / norm).clamp(max=1.0)
        x = (x - move).detach()
        _require_finite(x, "keypoints")  # a diverged task network's gradient
        if len(sides) > 1:
            x[..., 2].clamp_(sides[0], sides[-1])
    return x


def eta_step(
    model: MIST,
    optimizer: Optimizer,
    heatmap_loss: HeatmapLoss,
    log_h: Tensor,
    x: Tensor,
    weight: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """One step regressing the log-heatmaps ``log_h`` ``(B, S, H, W)`` onto ``G(x)``; the loss.

    ``weight`` ``(B,)`` weights images; ``mask`` ``(B, K)`` leaves keypoints out of G.
    """
    _, _, H, W = log_h.shape
    target = render_heatmap(x, model.sides, H, W, mask=mask)
    loss = heatmap_loss(log_h, target, weight)
    _descend(optimizer, loss, "heatmap loss")
    return loss.detach()


def lifted_step(
    model: MIST,
    opt_task: Optimizer,
    opt_heat: Optimizer,
    task_loss: TaskLoss,
    heatmap_loss: HeatmapLoss,
    xs: XStep,
    weight_beta: float,
    batch: Batch,
) -> StepResult:
    """Algorithm 1 on one batch (see the module docstring).

    Raises:
        TypeError: ``xs`` is no :class:`XStep`.
        ValueError: a ``weight_beta`` that is no finite number >= 0. Both before any work: the
            task network had stepped (and BatchNorm counted the batch) when they failed.
        NonFiniteLoss: the heatmaps, a loss or the keypoints became NaN or infinite.
    """
    if not isinstance(xs, XStep):
        raise TypeError(f"xs must be an XStep, got {type(xs).__name__}")
    check_number(weight_beta, "weight_beta", positive=False)
    _, log_h = model.log_heatmaps(batch.images)
    # Diverged weights give NaN heatmaps, whose NaN keypoints would fail inside the sampler.
    _require_finite(log_h, "heatmaps")
    x0, _ = model.detect(log_h)
    task_losses = tau_step(model, opt_task, task_loss, batch, x0)
    x = x_step(model, task_loss, xs, batch, x0)
    weight = None
    if weight_beta > 0:
        with torch.no_grad():
            final = task_loss(model.run_task(batch.images, x), batch)
        weight = task_weight(final, weight_beta)
    heat = eta_step(model, opt_heat, heatmap_loss, log_h, x, weight)
    return StepResult(task_losses.mean(), heat, x0, x)


def supervised_step(
    model: MIST,
    opt_task: Optimizer,
    opt_heat: Optimizer,
    heatmap_loss: HeatmapLoss,
    batch: Batch,
) -> StepResult:
    """The supervised upper bound: the ground-truth centres take the place of the x-step."""
    _, log_h = model.log_heatmaps(batch.images)
    x, labels = boxes_to_keypoints(batch.boxes, batch.labels, model.sides[0], model.k)
    out = model.run_task(batch.images, x)
    if model.task == "classify":
        # The correspondence patch <-> label is known here, so plain per-patch cross-entropy.
        loss = F.cross_entropy(out.task.flatten(0, 1), labels.flatten(), ignore_index=-1)
    else:
        loss = reconstruction_loss(batch.images, out.reconstruction)
    _descend(opt_task, loss, "task loss")
    heat = eta_step(model, opt_heat, heatmap_loss, log_h, x, None, mask=labels >= 0)
    return StepResult(loss.detach(), heat)


def end_to_end_step(
    model: PatchModel, optimizer: Optimizer, task_loss: TaskLoss, batch: Batch
) -> StepResult:
    """The channel-wise and grid baselines: backpropagation through the whole model."""
    out = model(batch.images)
    loss = task_loss(TaskOutput(out.patches, out.task, out.reconstruction), batch).mean()
    _descend(optimizer, loss, "task loss")
    return StepResult(loss.detach())


#: The methods of a :class:`Meter`, named where one is refused.
METER_METHODS = ("update", "sums", "load_sums", "compute")


@runtime_checkable
class Meter(Protocol):
    """A meter :func:`evaluate` feeds besides its own: each batch and the model's output on it.

    ``sums`` / ``load_sums`` as :class:`~mistnet.metrics.SceneMeter`'s: the meters of disjoint
    batches add up (sharded evaluation reduces them); ``compute`` gives the metrics.
    """

    def update(self, out: MISTOutput, batch: Batch) -> None: ...

    def sums(self) -> Tensor: ...

    def load_sums(self, sums: Tensor) -> None: ...

    def compute(self) -> dict[str, float]: ...


def meter_problem(meter: object) -> str | None:
    """What keeps ``meter`` from being a :class:`Meter`, or None: a method it lacks, or an
    ``update`` that cannot take ``(out, batch)`` (mistnet's metric meters, such as
    :class:`~mistnet.metrics.DetectionMeter`, take boxes and labels: given as a meter, they
    failed with a TypeError naming no argument after the first forward pass)."""
    if lacking := [m for m in METER_METHODS if not callable(getattr(meter, m, None))]:
        return f"it has no {', '.join(lacking)}"
    try:
        signature = inspect.signature(meter.update)  # type: ignore[attr-defined]
    except (TypeError, ValueError):  # a builtin without one: taken on trust
        return None
    try:
        signature.bind(None, None)
    except TypeError:
        return f"its update({', '.join(signature.parameters)}) does not take (out, batch)"
    return None


@torch.inference_mode()
def evaluate(
    model: PatchModel,
    batches: Iterable[dict[str, Tensor]],
    device: torch.device | str = "cpu",
    k: int | None = None,
    per_image_k: bool = False,
    signed: bool = False,
    annotations: frozenset[str] = frozenset({"boxes", "labels"}),
    class_names: tuple[str, ...] = (),
    reduce: Callable[[Tensor], Tensor] | None = None,
    meters: Sequence[Meter] = (),
) -> dict[str, float]:
    """The metrics of ``model`` over ``batches``, in eval mode (:class:`SceneMeter`).

    Metrics that need ground truth the data lacks (``annotations``) are left out, never 0;
    ``class_names`` adds each class's ``classif/<name>``. ``per_image_k`` detects ``count[b]``
    instances per image (Table 3) instead of ``k``, and reconstructs each image from as many
    patches. ``reduce`` maps the meter's sums to those
    of every process (sharded validation: :func:`mistnet.distributed.sum_over_ranks`).
    ``meters`` see the same batches and outputs; their metrics are theirs to compute.

    Raises:
        TypeError: a ``model`` that is no MIST model (or baseline), or a meter that is no
            :class:`Meter` (AttributeErrors before, some after the forward passes).
        ValueError: a ``device`` that is no device name (torch's errors before), or what
            :class:`~mistnet.metrics.SceneMeter` refuses.
    """
    if not isinstance(model, PatchModel):
        raise TypeError(f"model must be a MIST model (a PatchModel), got {type(model).__name__}")
    for n, extra in enumerate(meters):
        if (problem := meter_problem(extra)) is not None:
            raise TypeError(f"meters[{n}] ({type(extra).__name__}) is no meter: {problem}")
    device = device_argument(device)
    classes = getattr(model.task_net, "num_classes", 10)
    meter = SceneMeter(model.task, classes, annotations, signed)  # refuses its arguments first
    meter.check_class_names(class_names)  # before the forward passes, not after
    was_training = model.training
    model.eval()
    try:
        for raw in batches:
            batch = Batch.from_dict(raw, device)
            kk = int(batch.count.max()) if per_image_k else (k or model.k)
            out = model(batch.images, kk)
            if not all(torch.isfinite(t).all() for t in (out.keypoints, out.scores, out.task)):
                # else scored as misses, metrics of 0 that look measured
                raise MistError(
                    "the model's outputs are NaN or infinite on this data (damaged weights, "
                    "such as a negative BatchNorm variance?)"
                )
            labels = out.task.argmax(-1) if model.task == "classify" else None
            truth = (batch.boxes, batch.labels, batch.count)
            det_count = batch.count if per_image_k else None
            recon = out.reconstruction
            if det_count is not None and recon is not None:  # not the batch's largest count
                recon = model.reconstruct(batch.images, out.keypoints, out.task, det_count)
            meter.update(out.keypoints, labels, *truth, det_count, recon, batch.images)
            for extra in meters:
                extra.update(out, batch)
    finally:
        model.train(was_training)
    if reduce is not None:  # a process may see no batch; the sum over processes decides
        for m in (meter, *meters):
            m.load_sums(reduce(m.sums()))
    metrics = meter.compute(class_names)
    if not metrics["n_images"]:
        raise ValueError("evaluate: batches held no image (metrics of nothing would be NaN)")
    return metrics
