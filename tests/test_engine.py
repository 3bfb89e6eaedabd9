"""The training steps of Algorithm 1 and its baselines, the trainer factory, evaluation, and the
run loop's moving average, diagnostics and failure path.

Most tests use a fixed synthetic batch (rings whose radius and brightness encode the label) so
that they do not depend on the scene generators and so that "the loss falls" means memorising a
repeated batch, which is reliable within a few dozen steps.
"""

import copy
import json
import math
import pickle
import shutil
import subprocess

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import mistnet
from mistnet import engine, loop
from mistnet.checkpoint import Checkpoint, save_checkpoint
from mistnet.config import apply_overrides, load_preset
from mistnet.configrules import unread_keys
from mistnet.engine import (
    Batch,
    StepResult,
    XObjective,
    XStep,
    evaluate,
)
from mistnet.errors import MistError, NonFiniteLoss
from mistnet.evaluation import evaluate_run
from mistnet.losses import heatmap_loss
from mistnet.metrics import DetectionMeter
from mistnet.models.build import build_model
from mistnet.ops import boxes_to_keypoints
from mistnet.progress import Progress, expected_last_step
from mistnet.rundir import Run, select_metric, warm_start
from mistnet.runoptions import RunOptions
from mistnet.trainer import (
    ModelEma,
    Trainer,
    build_trainer,
    task_loss,
    warmed_up_ema,
    x_step_schedule,
)

H = 40


def scene_batch(B: int = 4, seed: int = 0) -> Batch:
    """B images (1, 40, 40) with 3 rings each near fixed places; radius/brightness = label."""
    g = torch.Generator().manual_seed(seed)
    n = 3
    centres = torch.tensor([[10.0, 10.0], [29.0, 12.0], [18.0, 29.0]])
    xy = centres + torch.randint(-2, 3, (B, n, 2), generator=g).float()  # (B, n, 2)
    labels = torch.randint(0, 10, (B, n), generator=g)  # (B, n)
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")  # (H, W)
    d = ((xx - xy[..., 0, None, None]) ** 2 + (yy - xy[..., 1, None, None]) ** 2).sqrt()
    radius = (2 + labels % 4).float()[..., None, None]  # (B, n, 1, 1)
    rings = ((d - radius).abs() < 1.2).float() * (0.4 + 0.06 * labels)[..., None, None]
    images = rings.amax(1, keepdim=True)  # (B, 1, H, W)
    boxes = torch.cat([xy, torch.full((B, n, 2), 20.0)], -1)  # (B, n, 4)
    return Batch(images, boxes, labels, torch.full((B,), n))


def tiny_config(*overrides: str):
    base = ["model.k=3", "train.lr_task=1e-3", "train.lr_heatmap=1e-3"]  # the test's preset
    return apply_overrides(apply_overrides(load_preset("tiny-cpu"), base), list(overrides))


def make_trainer(*overrides: str) -> Trainer:
    cfg = tiny_config(*overrides)
    torch.manual_seed(0)
    return build_trainer(build_model(cfg.model, cfg.train.method), cfg.train)


def x_step(tr: Trainer, batch: Batch, x0: torch.Tensor, *overrides: str) -> torch.Tensor:
    """The x-step of a trainer built with ``overrides``."""
    cfg = tiny_config(*overrides)
    loss = task_loss(tr.model.task, cfg.train.class_loss)
    return engine.x_step(tr.model, loss, x_step_schedule(cfg.train), batch, x0)


def detections(tr: Trainer, batch: Batch) -> torch.Tensor:
    _, h = tr.model.log_heatmaps(batch.images)
    return tr.model.detect(h)[0]


def falls(values: list[float]) -> bool:
    first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
    return last < 0.9 * first


def test_mist_step_task_loss_falls_on_a_repeated_batch():
    tr = make_trainer("train.lr_keypoints=300")
    batch = scene_batch()
    results = [tr.step(batch) for _ in range(30)]
    assert all(r.x is not None and r.x.shape == (4, 3, 3) for r in results)
    stats = [r.stats(H, H) for r in results]
    assert set(stats[0]) == {"task", "heatmap", "move_mean", "move_median", "moved_1px", "border"}
    assert all(math.isfinite(v) for log in stats for v in log.values())
    assert falls([log["task"] for log in stats])


def test_x_step_moves_keypoints_a_little_and_leaves_no_gradients():
    tr = make_trainer()
    batch = scene_batch()
    x0 = detections(tr, batch)
    x = x_step(tr, batch, x0, "train.lr_keypoints=100")
    moved = (x - x0)[..., :2].norm(dim=-1)  # (B, K)
    assert 0 < float(moved.median()) < 3
    assert torch.equal(x[..., 2], x0[..., 2])  # one scale: the side is fixed
    assert not x.requires_grad
    for p in tr.model.parameters():
        assert p.grad is None


def test_x_step_proximal_term_and_step_clip_shrink_the_move():
    tr = make_trainer()
    batch = scene_batch()
    x0 = detections(tr, batch)

    def move(*overrides):
        return (x_step(tr, batch, x0, "train.lr_keypoints=3e3", *overrides) - x0)[..., :2].norm(
            dim=-1
        )

    free = move()
    clipped = move("train.max_step_px=0.5")
    assert float(clipped.max()) <= 2 * 0.5 + 1e-5  # keypoint_iters = 2 steps of at most 0.5 px
    assert float(free.max()) > 1.0
    # lr_keypoints * 2 * proximal_weight < 1 keeps the proximal pull a contraction.
    assert float(move("train.proximal_weight=1e-4").mean()) < float(free.mean())


def test_x_objective_adds_weighted_priors_and_the_proximal_term():
    """Hand-computed: task mean 2, prior mean 3 weighted 0.5, proximal 0.1 * mean ||x - x0||^2."""
    x0 = torch.zeros(2, 2, 3)
    x = x0.clone()
    x[0, 0, :2] = torch.tensor([3.0, 4.0])  # squared move 25 in image 0, 0 in image 1
    prior = lambda images, x, out: torch.full((2, 2), 3.0)  # noqa: E731
    losses = torch.tensor([1.0, 3.0])
    full = XObjective({"centre": prior}, {"centre": 0.5}, proximal=0.1)
    assert float(full(losses, None, x, x0, None)) == pytest.approx(2 + 0.5 * 3 + 0.1 * 12.5)
    off = XObjective({"centre": prior}, {"centre": 0.0})  # weight 0: the prior is not computed
    assert float(off(losses, None, x, x0, None)) == pytest.approx(2.0)


def test_x_step_clip_bounds_every_iteration():
    """A constant-gradient objective: each of 3 iterations moves exactly min(lr * |g|, max_px)."""
    tr = make_trainer()
    batch = scene_batch()
    x0 = detections(tr, batch)
    pull = {"right": lambda images, x, out: -x[..., 0]}  # gradient -1 / (B K) along x
    zero = lambda out, batch: out.task.sum((1, 2)) * 0  # noqa: E731
    B, K = x0.shape[:2]
    step = XStep(XObjective(pull, {"right": 1.0}), lr=2.0 * B * K, iters=3, max_px=1.5)
    x = engine.x_step(tr.model, zero, step, batch, x0)
    torch.testing.assert_close(x[..., 0] - x0[..., 0], torch.full((B, K), 4.5))
    torch.testing.assert_close(x[..., 1:], x0[..., 1:])


def test_lifted_step_refuses_a_bad_x_step_or_weight_beta_before_any_work():
    """Before: lr=nan raised "the keypoints became nan", iters="3" a TypeError naming nothing,
    weight_beta=inf "beta must be ..." (no such argument), each once the task network and Adam
    had stepped; a negative lr (ascent) or iters was taken silently."""
    objective = XObjective()
    for kwargs, name in [
        ({"lr": float("nan"), "iters": 2}, "lr"),
        ({"lr": -5.0, "iters": 2}, "lr"),
        ({"lr": 1.0, "iters": "3"}, "iters"),
        ({"lr": 1.0, "iters": -3}, "iters"),
        ({"lr": 1.0, "iters": 2.0}, "iters"),
        ({"lr": 1.0, "iters": 2, "max_px": float("inf")}, "max_px"),
    ]:
        with pytest.raises(ValueError, match=f"^{name} must be a"):
            XStep(objective, **kwargs)
    with pytest.raises(TypeError, match="^objective must be an XObjective, got str"):
        XStep("centre", lr=1.0, iters=2)
    with pytest.raises(ValueError, match="^proximal must be a finite number >= 0, got nan"):
        XObjective(proximal=float("nan"))
    with pytest.raises(ValueError, match="^weights\\['centre'\\] must be a finite number >= 0"):
        XObjective(weights={"centre": -1.0})
    with pytest.raises(TypeError, match="^priors\\['centre'\\] must be callable, got float"):
        XObjective(priors={"centre": 0.5})
    # Before: AttributeError "'NoneType' object has no attribute 'items'"
    with pytest.raises(TypeError, match="^weights must be a dict of name -> value, got NoneType"):
        XObjective(weights=None)
    with pytest.raises(TypeError, match="^priors must be a dict of name -> value, got list"):
        XObjective(priors=[1])
    assert XStep(objective, lr=0, iters=0).iters == 0  # as the config allows: no x-step

    tr = make_trainer()
    model, opt_task, opt_heat, loss, heat, xs, beta = tr.step.args
    batch = scene_batch()
    tr.step(batch)  # Adam holds state to compare
    before = copy.deepcopy((model.state_dict(), opt_task.state_dict(), opt_heat.state_dict()))
    for bad_xs, bad_beta, error, message in [
        (xs, float("inf"), ValueError, "^weight_beta must be a finite number >= 0, got inf"),
        (xs, -1.0, ValueError, "^weight_beta must be a finite number >= 0, got -1.0"),
        (xs, "5", ValueError, "^weight_beta must be a finite number >= 0, got '5'"),
        ({"lr": 1.0}, beta, TypeError, "^xs must be an XStep, got dict"),
    ]:
        with pytest.raises(error, match=message):
            engine.lifted_step(model, opt_task, opt_heat, loss, heat, bad_xs, bad_beta, batch)
    after = (model.state_dict(), opt_task.state_dict(), opt_heat.state_dict())
    assert all(torch.equal(v, before[0][k]) for k, v in after[0].items())
    for old, new in zip(before[1:], after[1:], strict=True):
        assert [s["step"] for s in old["state"].values()] == [
            s["step"] for s in new["state"].values()
        ]


@pytest.mark.parametrize(
    "mode, lr_keypoints, sigma",
    # The mixture prior's gradient is 2 (x - c) / (B K): lr_keypoints < B K / 2 = 6 keeps it a contraction.
    [("patch", 30.0, 0.4), ("mixture", 3.0, 0.25)],
)
def test_x_step_centring_prior_pulls_keypoints_onto_the_rings(mode, lr_keypoints, sigma):
    """With ``centre_weight`` the x-step moves keypoints toward the nearest ring's centre of mass."""
    batch = scene_batch()
    tr = make_trainer()
    x0 = detections(tr, batch)
    # Start 3 px right of each ring centre, so the patch holds the ring and only it.
    start = torch.cat([batch.boxes[..., :2] + torch.tensor([3.0, 0.0]), x0[..., 2:]], -1)
    x = x_step(
        tr,
        batch,
        start,
        f"train.lr_keypoints={lr_keypoints}",
        "train.centre_weight=1",
        "train.keypoint_iters=20",
        "train.max_step_px=1",
        f"train.centre_mode={mode}",
        f"train.centre_sigma={sigma}",
    )
    before = (start - batch.boxes[..., :3])[..., :2].norm(dim=-1)
    after = (x - batch.boxes[..., :3])[..., :2].norm(dim=-1)
    assert float(before.mean()) == pytest.approx(3.0)
    assert float(after.mean()) < 1.0


def test_tau_step_updates_only_the_task_network():
    tr = make_trainer()
    model, batch = tr.model, scene_batch()
    heat_before = [p.detach().clone() for p in model.heatmap_net.parameters()]
    task_before = [p.detach().clone() for p in model.task_net.parameters()]
    x, _ = boxes_to_keypoints(batch.boxes, batch.labels, 20.0, 3)
    losses = engine.tau_step(model, tr.optimizers["task"], task_loss("classify"), batch, x)
    assert losses.shape == (4,) and not losses.requires_grad
    heat_after, task_after = model.heatmap_net.parameters(), model.task_net.parameters()
    assert all(torch.equal(a, p) for a, p in zip(heat_before, heat_after, strict=True))
    assert any(not torch.equal(a, p) for a, p in zip(task_before, task_after, strict=True))


def eta(tr: Trainer, h, x, weight=None):
    return engine.eta_step(tr.model, tr.optimizers["heatmap"], heatmap_loss, h, x, weight)


def test_eta_step_lowers_the_heatmap_loss_on_a_repeated_batch():
    tr = make_trainer()
    model, batch = tr.model, scene_batch()
    x, _ = boxes_to_keypoints(batch.boxes, batch.labels, 20.0, 3)
    losses = []
    for _ in range(30):
        _, h = model.log_heatmaps(batch.images)
        losses.append(float(eta(tr, h, x)))
    assert falls(losses)
    for p in model.task_net.parameters():
        assert p.grad is None


def test_eta_step_weights_images():
    tr = make_trainer()
    batch = scene_batch()
    x, _ = boxes_to_keypoints(batch.boxes, batch.labels, 20.0, 3)
    _, h = tr.model.log_heatmaps(batch.images)
    full = float(eta(tr, h.detach().requires_grad_(), x, torch.ones(4)))
    half = float(eta(tr, h.detach().requires_grad_(), x, torch.full((4,), 0.5)))
    assert half == pytest.approx(full / 2, rel=1e-5)


@pytest.mark.parametrize(
    "method, task",
    [("supervised", "classify"), ("channelwise", "classify"), ("grid", "reconstruct")],
)
def test_baseline_step_loss_falls_on_a_repeated_batch(method, task):
    k = ["model.k=9"] if method == "grid" else []  # the grid's 3 x 3 cells
    tr = make_trainer(f"train.method={method}", f"model.task={task}", *k)
    batch = scene_batch()
    results = [tr.step(batch) for _ in range(30)]
    assert falls([float(r.task) for r in results])
    assert all(r.x is None for r in results)  # no slack keypoints outside the lifted step
    if method == "supervised":
        assert falls([float(r.heatmap) for r in results])
    else:
        assert all(r.heatmap is None for r in results)


def test_reconstruction_mist_step_learns():
    tr = make_trainer("model.task=reconstruct", "train.lr_keypoints=3.2", "train.weight_beta=0")
    batch = scene_batch()
    assert falls([float(tr.step(batch).task) for _ in range(30)])


def test_non_finite_loss_stops_the_step():
    tr = make_trainer()
    with torch.no_grad():
        next(tr.model.task_net.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="task loss became nan"):
        tr.step(scene_batch())


def test_evaluate_restores_training_mode_and_counts_detections(monkeypatch):
    """Two of three detections per image on the ground truth, one far off: det_iou50 = 2/3."""
    tr = make_trainer()
    b = scene_batch()
    raw = {"image": b.images, "boxes": b.boxes, "labels": b.labels, "count": b.count}
    kp = torch.cat([b.boxes[..., :2], torch.full((4, 3, 1), 20.0)], -1)
    kp[:, 2, :2] = torch.tensor([-100.0, -100.0])  # no overlap with any box
    monkeypatch.setattr(tr.model, "detect", lambda h, k=None: (kp, torch.ones(4, 3)))
    tr.model.train()
    metrics = evaluate(tr.model, [raw, raw])
    assert tr.model.training
    assert metrics["n_images"] == 8 and metrics["n_instances"] == 24
    assert metrics["n_detections"] == 24
    assert metrics["det_iou50"] == pytest.approx(2 / 3)
    assert metrics["both"] <= metrics["det_iou50"]


def test_per_image_k_reconstructs_each_image_from_its_own_count():
    """Before: every image of a batch was rebuilt from the batch's largest count of patches,
    so an image's RMSE depended on the images batched with it."""
    tr = make_trainer("model.task=reconstruct")
    b = scene_batch()
    count = torch.tensor([1, 3, 2, 3])
    labels = torch.where(torch.arange(3) < count[:, None], b.labels, -1)
    raw = {"image": b.images, "boxes": b.boxes, "labels": labels, "count": count}
    alone = [{key: v[i : i + 1] for key, v in raw.items()} for i in range(4)]
    together = evaluate(tr.model, [raw], per_image_k=True)
    one_by_one = evaluate(tr.model, alone, per_image_k=True)
    assert together["rmse"] == pytest.approx(one_by_one["rmse"], rel=1e-5)
    assert together["rmse"] != pytest.approx(evaluate(tr.model, [raw], k=3)["rmse"], rel=1e-3)


@pytest.mark.parametrize(
    ("batches", "error", "message"),
    [
        ([], ValueError, "batches held no image"),
        (
            [{"image": torch.zeros(1, 1, 40, 40)}],
            ValueError,
            "a batch needs a tensor at 'boxes', got nothing",
        ),
        ([("image",)], TypeError, "a batch must be a dict, got tuple"),
    ],
)
def test_evaluate_refuses_no_batches_and_batches_that_are_not_scene_batches(
    batches, error, message
):
    """Before: ``evaluate(model, [])`` returned NaN metrics that looked measured, a batch
    without ``boxes`` failed with a bare KeyError."""
    tr = make_trainer()
    tr.model.train()
    with pytest.raises(error, match=message):
        evaluate(tr.model, batches)
    assert tr.model.training


def test_evaluate_scores_the_keypoints_of_a_reconstruction_model(monkeypatch):
    """Reconstruction reports RMSE and, with boxes in the data, class-agnostic detection."""
    tr = make_trainer("model.task=reconstruct")
    b = scene_batch()
    raw = {"image": b.images, "boxes": b.boxes, "labels": b.labels, "count": b.count}
    kp = torch.cat([b.boxes[..., :2], torch.full((4, 3, 1), 20.0)], -1)
    kp[:, 0, :2] += 9.0  # IoU of 20 px boxes 9 px apart on both axes: 121 / 679 < .5
    monkeypatch.setattr(tr.model, "detect", lambda h, k=None: (kp, torch.ones(4, 3)))
    metrics = evaluate(tr.model, [raw])
    assert metrics["det_iou50"] == pytest.approx(2 / 3)
    assert metrics["det_any50"] == pytest.approx(2 / 3)
    assert 0 < metrics["rmse"] < 1 and "classif" not in metrics
    no_boxes = {
        **raw,
        "count": torch.zeros(4, dtype=torch.long),
        "labels": -torch.ones(4, 3).long(),
    }
    assert "det_iou50" not in evaluate(tr.model, [no_boxes])


class _Recorder:
    """An extra meter that keeps what evaluate feeds it."""

    def __init__(self):
        self.seen = []

    def update(self, out, batch):
        self.seen.append((out.keypoints.clone(), out.task.clone(), batch.images.clone()))

    def sums(self):
        return torch.tensor([float(len(self.seen))], dtype=torch.float64)

    def load_sums(self, sums):
        self.reduced = sums

    def compute(self):
        return {"batches": len(self.seen)}


def test_evaluate_feeds_extra_meters_the_batches_and_outputs_it_scores():
    tr = make_trainer()
    batches = [scene_batch(seed=s) for s in (1, 2)]
    raws = [
        {"image": b.images, "boxes": b.boxes, "labels": b.labels, "count": b.count} for b in batches
    ]
    recorder = _Recorder()
    triple = lambda t: 3 * t  # noqa: E731
    with_meter = evaluate(tr.model, raws, meters=[recorder], reduce=triple)
    assert with_meter == evaluate(tr.model, raws, reduce=triple)  # the extra meter changes nothing
    tr.model.eval()
    with torch.inference_mode():
        expected = [tr.model(b.images) for b in batches]
    assert len(recorder.seen) == 2
    for (kp, task, images), out, b in zip(recorder.seen, expected, batches, strict=True):
        assert torch.equal(kp, out.keypoints) and torch.equal(task, out.task)
        assert torch.equal(images, b.images)
    assert recorder.reduced.tolist() == [6.0]  # its sums go through the same reduction


def test_step_stats_measure_the_x_move_and_the_border_share():
    x0 = torch.tensor([[[2.0, 20.0, 20.0], [20.0, 20.0, 20.0], [20.0, 35.0, 20.0], [9, 9, 20]]])
    x = x0.clone()
    x[0, 1, :2] += torch.tensor([3.0, 4.0])  # moves 5 px; the others stay
    result = StepResult(torch.tensor(1.5), torch.tensor(0.25), x0, x)
    stats = result.stats(40, 40)
    # x0[0] is 2 px from the left edge, x0[2] 4 px from the bottom (y = 35 > 40 - 1 - 8).
    assert stats == {
        "task": 1.5,
        "heatmap": 0.25,
        "move_mean": 1.25,
        "move_median": 0.0,
        "moved_1px": 0.25,
        "border": 0.5,
    }
    assert StepResult(torch.tensor(2.0)).stats(40, 40) == {"task": 2.0}


# -- the run loop ---------------------------------------------------------------------------------


def tiny_run_config(*overrides: str):
    return apply_overrides(
        load_preset("tiny-cpu"),
        ["data.n_train=32", "data.n_val=8", "train.val_batches=1", *overrides],
    )


def test_the_loop_keeps_the_last_good_checkpoint_on_a_non_finite_loss(tmp_path):
    cfg = tiny_run_config("train.steps=20", "train.ckpt_every=5", "train.val_every=100")

    def poison(trainer, result):
        if len(seen) == 7:  # after step 7 (checkpoint at 5): step 8 meets NaN weights
            with torch.no_grad():
                next(trainer.model.task_net.parameters()).fill_(float("nan"))
        seen.append(result)

    seen = []
    with pytest.raises(MistError, match="became nan.*last good checkpoint"):
        loop.train(cfg, tmp_path / "run", progress=False, callbacks=loop.Callbacks(on_step=poison))
    run = Run(tmp_path / "run")
    _, model, ckpt = run.load("last")
    assert ckpt.step == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not run.summary.exists()


def test_warm_start_copies_only_the_heatmap_network(tmp_path):
    cfg = load_preset("tiny-cpu")
    torch.manual_seed(1)
    source = build_model(cfg.model)
    save_checkpoint(tmp_path / "src.safetensors", source, config=cfg.to_dict(), step=3)
    torch.manual_seed(2)
    target = build_model(cfg.model)
    task_before = {k: v.clone() for k, v in target.task_net.state_dict().items()}
    warm_start(target, str(tmp_path / "src.safetensors"), "heatmap")
    for k, v in target.heatmap_net.state_dict().items():
        assert torch.equal(v, source.heatmap_net.state_dict()[k])
    for k, v in target.task_net.state_dict().items():
        assert torch.equal(v, task_before[k])
    cfg.model.heatmap_width = 4
    with pytest.raises(MistError, match="do not fit"):
        warm_start(build_model(cfg.model), str(tmp_path / "src.safetensors"), "heatmap")


def test_resume_before_the_first_checkpoint_restarts_with_a_clean_log(tmp_path):
    """A run killed before its first checkpoint restarts at step 0 without the old log lines."""
    cfg = tiny_run_config("train.steps=4", "train.log_every=1", "train.ckpt_every=100")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    run.last.unlink()  # as if killed before any checkpoint was written, which leaves
    run.summary.unlink()  # no summary either (one would show last.safetensors was deleted)
    old = run.log.read_text().splitlines()
    summary = loop.train(cfg, run.path, resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in run.log.read_text().splitlines()]
    assert summary["steps"] == 4
    assert len(old) > 0 and steps == sorted(steps)  # one pass 1..4, no stale duplicates
    assert steps.count(1) == 1


def test_moving_average_follows_the_weights_with_the_configured_decay():
    d = 0.8
    tr = make_trainer("train.lr_keypoints=300")
    averaged = ModelEma(tr.model, d)
    batch = scene_batch()
    seen = []
    for _ in range(3):
        tr.step(batch)
        averaged.update(tr.model)
        seen.append({k: v.detach().clone() for k, v in tr.model.named_parameters()})
    avg = dict(averaged.module.named_parameters())
    d1, d2 = 2 / 11, 3 / 12  # the warm-up decays (1 + n) / (10 + n), below d for n = 1, 2
    for k, v in avg.items():  # the first step copies, later steps blend with weight 1 - decay
        want = (seen[0][k] * d1 + (1 - d1) * seen[1][k]) * d2 + (1 - d2) * seen[2][k]
        torch.testing.assert_close(v, want)
    assert not torch.equal(avg["task_net.head.weight"], seen[2]["task_net.head.weight"])
    late = warmed_up_ema(d)  # from n = 10 / (1 - d) - 1 = 49 on, the configured decay
    avg, cur = [torch.zeros(3), torch.zeros(1, dtype=torch.long)], [torch.ones(3), torch.ones(1)]
    late(avg, [cur[0], cur[1].long() * 7], torch.tensor(500))
    torch.testing.assert_close(avg[0], torch.full((3,), 1 - d))
    assert avg[1].item() == 7  # integer buffers are copied
    assert make_trainer().average is None and make_trainer("train.ema_decay=0.5").average
    with pytest.raises(MistError, match=r"train.ema_decay must be in \[0, 1\), got 1.0"):
        make_trainer("train.ema_decay=1.0")


def test_runs_with_a_moving_average_validate_load_and_resume_with_it(tmp_path):
    cfg = tiny_run_config(
        "train.steps=6", "train.ckpt_every=3", "train.val_every=3", "train.ema_decay=0.5"
    )
    straight = Run(tmp_path / "straight")
    loop.train(cfg, straight.path, progress=False)
    _, model, ckpt = straight.load("last")
    assert ckpt.has_average
    averaged = ckpt.model_state(average=True)
    raw = ckpt.model_state()
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw)
    for k, v in model.state_dict().items():  # commands get the averaged weights
        assert torch.equal(v, averaged[k])

    resumed_cfg = tiny_run_config(
        "train.steps=3", "train.ckpt_every=3", "train.val_every=3", "train.ema_decay=0.5"
    )
    interrupted = Run(tmp_path / "interrupted")
    loop.train(resumed_cfg, interrupted.path, progress=False)
    saved = json.loads(interrupted.config.read_text())
    saved["train"]["steps"] = 6  # resume continues as configured: extend the schedule on disk
    interrupted.config.write_text(json.dumps(saved))
    loop.train(cfg, interrupted.path, resume=True, progress=False)
    resumed = Checkpoint(interrupted.last)
    for k, v in Checkpoint(straight.last).tensors.items():
        if k.startswith(("model.", "average.")):
            torch.testing.assert_close(resumed.tensors[k], v, msg=k)


def test_a_second_train_into_a_locked_run_directory_stops_with_one_line(tmp_path):
    from mistnet.locks import exclusive_lock
    from mistnet.outputs import create_directory

    run = tmp_path / "run"
    create_directory(run, "run")  # made by a train that is still running
    with exclusive_lock(run, "mist train"):  # as if another process were training there
        with pytest.raises(MistError, match=r"another mist train is writing to .*run \(pid \d+\)"):
            loop.train(tiny_run_config("train.steps=2"), run, progress=False)
    assert sorted(p.name for p in run.iterdir()) == [".lock", ".mistnet"]  # nothing written
    summary = loop.train(tiny_run_config("train.steps=2"), run, progress=False)  # now free
    assert summary["steps"] == 2


def test_a_fresh_run_that_fails_before_its_first_checkpoint_leaves_no_directory(tmp_path):
    cfg = tiny_run_config("model.in_channels=3")  # the data has one channel
    with pytest.raises(MistError, match="has 1-channel images but the run's model takes 3"):
        loop.train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_resume_drops_a_torn_last_log_line_and_refuses_a_damaged_one(tmp_path):
    cfg = tiny_run_config("train.steps=4", "train.log_every=1", "train.ckpt_every=2")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    lines = run.log.read_text().splitlines()
    run.log.write_text("\n".join(lines) + '\n{"step": 5, "split": "tr')  # killed mid-write
    saved = json.loads(run.config.read_text())
    saved["train"]["steps"] = 6
    run.config.write_text(json.dumps(saved))
    assert loop.train(cfg, run.path, resume=True, progress=False)["steps"] == 6
    steps = [json.loads(line)["step"] for line in run.log.read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 6
    run.log.write_text("not json\n" + run.log.read_text())
    saved["train"]["steps"] = 8
    run.config.write_text(json.dumps(saved))
    with pytest.raises(MistError, match=r"log.jsonl line 1: not valid JSON"):
        loop.train(cfg, run.path, resume=True, progress=False)


def test_select_metric_follows_what_the_data_measures():
    cfg = tiny_run_config()
    assert select_metric(cfg) == "both"
    assert select_metric(cfg, frozenset({"labels"})) == "classif"
    recon = tiny_run_config("model.task=reconstruct")
    assert select_metric(recon, frozenset()) == "rmse"
    cfg.train.select_metric = "det_iou50"
    with pytest.raises(MistError, match="det_iou50.*the data has no boxes"):
        select_metric(cfg, frozenset({"labels"}))


def test_expected_last_step_follows_the_deadline_or_the_steps():
    assert expected_last_step(1000, 10, 0, 5.0, math.inf) == 1000
    assert expected_last_step(1000, 10, 0, 5.0, 10.0) == 30  # 2 steps/s, 10 s left
    assert expected_last_step(25, 10, 0, 5.0, 10.0) == 25  # the steps end it first
    assert expected_last_step(1000, 10, 0, 5.0, -1.0) == 11  # past the deadline: this step
    assert expected_last_step(1000, 110, 100, 5.0, 10.0) == 130  # this session's rate


def test_a_deadline_too_far_to_reach_is_still_a_deadline():
    """Before: --max-minutes 1e308 made an infinite deadline, read as none: under torchrun that
    process skipped the others' agreement to stop, and the collectives fell out of step."""
    far, none = RunOptions(max_minutes=1e308), RunOptions(max_minutes=0.0)
    assert (far.timed, Progress(0, 10, 1e308, False).late(), none.timed) == (True, False, False)


def test_train_without_progress_prints_nothing(tmp_path, capfd):
    cfg = tiny_run_config("train.steps=4", "train.val_every=2", "train.log_every=1")
    summary = loop.train(cfg, tmp_path / "run", progress=False)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    vals = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 4 and sum(r["split"] == "val" for r in vals) == 2


def test_resume_checks_the_checkpoint_against_the_log_before_rewriting_it(tmp_path):
    cfg = tiny_run_config("train.steps=4", "train.log_every=1", "train.ckpt_every=2")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    log = run.log.read_text()
    c = Checkpoint(run.last)
    model = build_model(cfg.model)
    model.load_state_dict(c.model_state())

    def last_at(step):
        save_checkpoint(run.last, model, config=c.config, step=step, extra=c.extra)

    last_at(9)  # past train.steps = 4
    with pytest.raises(MistError, match=r"last.safetensors: step 9 is past train.steps = 4"):
        loop.train(cfg, run.path, resume=True, progress=False)
    assert run.log.read_text() == log  # untouched
    run.log.write_text(log.splitlines()[0] + "\n")  # a log of one step: cut short
    last_at(3)
    # before: "the log and the checkpoint are of different runs", of a log that lost its end
    with pytest.raises(MistError, match=r"log.jsonl has no line for step 3 but .* is at step 3;"
                       r" the log was cut short: restore it") as refused:  # fmt: skip
        loop.train(cfg, run.path, resume=True, progress=False)
    assert run.log.read_text() == log.splitlines()[0] + "\n"
    # Before: not pickled (its two arguments lost): a process pool running loop.train broke
    again = pickle.loads(pickle.dumps(refused.value))
    assert (str(again), again.problem) == (str(refused.value), refused.value.problem)
    run.log.write_text("[1, 2]\n" + log)
    with pytest.raises(MistError, match=r"log.jsonl line 1: not a log record"):
        loop.train(cfg, run.path, resume=True, progress=False)
    # Before: each refusal left a .lock, and a fresh train refused on a run of an earlier
    # version (no marker) its .mistnet as well.
    assert ".lock" not in {p.name for p in run.path.iterdir()}
    (run.path / ".mistnet").unlink()
    names = sorted(p.name for p in run.path.iterdir())
    with pytest.raises(MistError, match="already holds a run"):
        loop.train(cfg, run.path, progress=False)
    assert sorted(p.name for p in run.path.iterdir()) == names


@pytest.mark.parametrize("best", [False, True])
def test_a_run_killed_while_writing_its_first_checkpoint_resumes_from_the_start(tmp_path, best):
    """A SIGKILL in the first checkpoint's validation (its log lines written, no checkpoint)
    or between its best and last files: before, --resume refused for good ("last.safetensors
    is missing, but log.jsonl reaches step 2"), and a fresh train into it too ("already holds
    a run"). It starts again from step 0, as it would have gone."""
    cfg = tiny_run_config("train.steps=4", "train.log_every=1", "train.ckpt_every=2",
                          "train.val_every=2")  # fmt: skip
    ref = Run(tmp_path / "ref")
    loop.train(cfg, ref.path, progress=False)
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    run.last.unlink()
    run.summary.unlink()
    if not best:
        run.best.unlink()
    first = [line for line in run.log.read_text().splitlines() if json.loads(line)["step"] <= 2]
    run.log.write_text("\n".join(first) + "\n")
    loop.train(cfg, run.path, resume=True, progress=False)
    for name in ("last", "best"):
        a, b = Checkpoint(getattr(run, name)), Checkpoint(getattr(ref, name))
        assert a.step == b.step and all(torch.equal(v, b.tensors[k]) for k, v in a.tensors.items())
    strip = lambda text: [{k: v for k, v in json.loads(line).items() if k != "wall"}  # noqa: E731
                          for line in text.splitlines()]  # fmt: skip
    assert strip(run.log.read_text()) == strip(ref.log.read_text())


def test_resume_refuses_a_config_json_edited_since_the_last_checkpoint(tmp_path):
    """The optimisers' learning rates come back from the checkpoint: an edited lr would be
    ignored while config.json went on claiming it, so any edit but the steps is refused."""
    cfg = tiny_run_config("train.steps=4", "train.log_every=1", "train.ckpt_every=2")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    saved = json.loads(run.config.read_text())
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    # the record too when the checkpoint recorded it empty: names added to a run of unnamed
    # classes, and a dataset digest added (or blanked, to resume on other data) passed
    for section, key, value in (
        ("train", "lr_task", 0.5),
        ("data", "seed", 7),
        ("record", "class_names", list("abcdefghij")),
        ("record", "data_manifest", "sha256:0123456789abcdef"),
        # Before: taken for a moved folder: a warm start recorded for a run trained from scratch
        ("train", "init_from", str(tmp_path / "other")),
        # ... and a dataset named for a run whose scenes were generated
        ("data", "path", str(tmp_path)),
    ):
        edited = copy.deepcopy(saved)
        edited[section][key] = value
        run.config.write_text(json.dumps(edited))
        longer = apply_overrides(copy.deepcopy(cfg), ["train.steps=6"])
        with pytest.raises(MistError, match=rf"config.json: {section}.{key} is .* but "):
            loop.train(longer, run.path, resume=True, progress=False)
        run.config.write_text(before["config.json"].decode())
        after = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
        assert after == before  # refused before anything was rewritten
    assert loop.train(longer, run.path, resume=True, progress=False)["steps"] == 6


def test_a_finished_run_whose_summary_was_lost_gets_it_back_without_a_made_up_speed(tmp_path):
    # Before: the summary written again said images_per_s 0.0, a throughput never measured.
    cfg = tiny_run_config("train.steps=2")
    run = Run(tmp_path / "run")
    first = loop.train(cfg, run.path, progress=False)
    run.summary.unlink()  # as a kill between the last checkpoint and the summary leaves it
    again = loop.train(cfg, run.path, resume=True, progress=False)
    assert again["steps"] == first["steps"] == 2 and again["images_per_s"] is None
    assert json.loads(run.summary.read_text())["images_per_s"] is None


def test_a_run_trained_further_and_interrupted_keeps_no_summary_of_its_earlier_end(tmp_path):
    # Before: summary.json still said "stopped: steps" at the old end, as if finished.
    cfg = tiny_run_config("train.steps=2", "train.ckpt_every=1")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    assert run.summary.is_file()

    def interrupt(trainer, result):
        raise KeyboardInterrupt

    further = apply_overrides(copy.deepcopy(cfg), ["train.steps=4"])
    with pytest.raises(KeyboardInterrupt):
        loop.train(
            further, run.path, resume=True, progress=False, callbacks=loop.Callbacks(interrupt)
        )
    assert not run.summary.exists() and run.last.is_file()
    assert loop.train(further, run.path, resume=True, progress=False)["steps"] == 4


@pytest.mark.parametrize("name", ["summary", "best", "last", "lock"])
def test_resume_refuses_a_run_file_that_is_a_folder_before_training(tmp_path, name):
    """Before: a folder at summary.json trained to the end, then failed writing it ("Is a
    directory"); at best.safetensors it failed once validation improved, the run's log,
    config and last checkpoint rewritten by then; at last.safetensors it was "missing"; at
    .lock the system's bare "Is a directory"."""
    cfg = tiny_run_config("train.steps=2", "train.ckpt_every=1")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    path = run.path / ".lock" if name == "lock" else getattr(run, name)
    path.unlink(missing_ok=True)
    path.mkdir()
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    further = apply_overrides(copy.deepcopy(cfg), ["train.steps=4"])
    what = "is a directory, not mistnet's lock" if name == "lock" else "a directory, not a"
    with pytest.raises(MistError, match=f"{path.name}: {what}"):
        loop.train(further, run.path, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before


def test_resume_refuses_a_log_emptied_of_its_validation_lines(tmp_path):
    """Before: with a checkpoint at step 4 below ``log_every`` 5, an emptied log.jsonl was
    resumed from, the validation lines of steps 2 and 4 lost for good."""
    cfg = tiny_run_config(
        "train.steps=4", "train.log_every=5", "train.val_every=2", "train.ckpt_every=4"
    )
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    run.log.write_text("")
    further = apply_overrides(copy.deepcopy(cfg), ["train.steps=8"])
    with pytest.raises(MistError, match="log.jsonl has no validation line for step 4 but"):
        loop.train(further, run.path, resume=True, progress=False)
    assert run.log.read_text() == ""


@pytest.mark.parametrize("log", ["emptied", "deleted"])
def test_resume_refuses_a_lost_log_below_log_every_and_val_every(tmp_path, log):
    """Before: with the checkpoint at step 4 below both ``log_every`` and ``val_every`` (a
    4-step run, or one stopped by --max-minutes), an emptied or deleted log.jsonl was resumed
    from: the new log began at step 5, the history lost for good (every later resume passed)."""
    cfg = tiny_run_config("train.steps=4", "train.log_every=5", "train.val_every=5")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    assert Checkpoint(run.last).extra["best_step"] == 4  # validated at the end, line logged
    run.log.write_text("") if log == "emptied" else run.log.unlink()
    further = apply_overrides(copy.deepcopy(cfg), ["train.steps=6"])
    with pytest.raises(MistError, match=r"log.jsonl is missing or empty but .* its best at step 4"):
        loop.train(further, run.path, resume=True, progress=False)
    assert Checkpoint(run.last).step == 4 and run.log.exists() == (log == "emptied")


def test_a_best_checkpoint_of_another_run_is_refused_by_eval_load_and_resume(tmp_path):
    """Before: ``cp other/best.safetensors run/`` was evaluated, loaded and kept by a resume
    as this run's (the other run's metrics written into this run's eval record; ``load``
    reporting this run's learning rate and seed for the other run's weights)."""
    cfg = tiny_run_config("train.steps=2", "train.ckpt_every=1", "train.val_every=1")
    run, other = Run(tmp_path / "run"), Run(tmp_path / "other")
    loop.train(cfg, run.path, progress=False)
    loop.train(apply_overrides(copy.deepcopy(cfg), ["train.seed=5"]), other.path, progress=False)
    shutil.copyfile(other.best, run.best)
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    message = "train.seed is 0 but best.safetensors was trained with 5; it is another run's"
    with pytest.raises(MistError, match=message):
        evaluate_run(run.path, split="val")
    with pytest.raises(ValueError, match=message):
        mistnet.load(run.path)
    further = apply_overrides(copy.deepcopy(cfg), ["train.steps=4"])
    with pytest.raises(MistError, match="trained with 5; a resumed run goes on as it was"):
        loop.train(further, run.path, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before
    assert mistnet.load(run.path, which="last").checkpoint == run.last


def test_resume_removes_the_temporary_files_of_a_killed_writer(tmp_path):
    cfg = tiny_run_config("train.steps=2")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    proc = subprocess.Popen(["true"])  # a pid that no longer runs
    proc.wait()
    stale = run.path / f".last.safetensors.{proc.pid}.0123abcd.tmp.safetensors"
    stale.write_bytes(b"half a checkpoint")
    saved = json.loads(run.config.read_text())
    saved["train"]["steps"] = 3
    run.config.write_text(json.dumps(saved))
    assert loop.train(cfg, run.path, resume=True, progress=False)["steps"] == 3
    assert not stale.exists()
    assert not [p.name for p in run.path.iterdir() if ".tmp" in p.name]


def test_a_non_finite_loss_before_any_checkpoint_names_no_checkpoint(tmp_path):
    from mistnet.outputs import create_directory

    def diverging(trainer, result):
        raise NonFiniteLoss("task loss became nan")

    diverge = loop.Callbacks(on_step=diverging)
    with pytest.raises(MistError) as info:
        loop.train(tiny_run_config("train.steps=5"), tmp_path / "new" / "run", callbacks=diverge)
    assert str(info.value) == (
        "training diverged at step 1 (task loss became nan); lower the learning rates or "
        "model.softmax_strength (no checkpoint had been written yet)"
    )
    assert not (tmp_path / "new").exists()  # nor the parent made for it
    create_directory(tmp_path / "mine", "run")  # a run made earlier, killed before a checkpoint
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    with pytest.raises(MistError, match="no checkpoint had been written yet"):
        loop.train(tiny_run_config("train.steps=5"), tmp_path / "mine", callbacks=diverge)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == [".mistnet", "notes.txt"]


def test_training_data_is_checked_before_anything_is_written(tmp_path):
    from mistnet.data import write_dataset

    def arrays(n, label=3):
        return {
            "images": np.zeros((n, 1, 40, 40), np.uint8),
            "boxes": np.tile(np.float32([20, 20, 10, 10]), (n, 1, 1)),
            "labels": np.full((n, 1), label, np.int64),
            "counts": np.ones(n, np.int64),
        }

    empty_val = write_dataset(tmp_path / "ev", "t", {"train": arrays(32), "val": arrays(0)})
    with pytest.raises(MistError, match=r"ev: the val split is empty"):
        loop.train(tiny_run_config(f"data.path='{empty_val}'"), tmp_path / "r1", progress=False)
    wide = write_dataset(tmp_path / "l99", "t", {"train": arrays(32, 99), "val": arrays(8)})
    with pytest.raises(MistError, match=r"class ids up to 99 but the run's classifier has 10"):
        loop.train(tiny_run_config(f"data.path='{wide}'"), tmp_path / "r2", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev", "l99"]


def test_a_run_directory_written_the_old_way_loads_resumes_and_evaluates(tmp_path):
    """Runs written before the record had its own section kept it in ``model``."""
    from mistnet.evaluation import evaluate_run

    cfg = tiny_run_config("train.steps=2", "train.ckpt_every=2")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    old = json.loads(run.config.read_text())
    old["model"].update(old.pop("record"))
    del old["model"]["data_made_by"], old["model"]["data_manifest"]  # by later versions only
    old["train"]["steps"] = 4
    run.config.write_text(json.dumps(old))
    loaded, _, _ = run.load("last")
    assert loaded.record.image_size == (80, 80)
    assert loop.train(cfg, run.path, resume=True, progress=False)["steps"] == 4
    saved = json.loads(run.config.read_text())
    assert saved["record"]["image_size"] == [80, 80] and "image_size" not in saved["model"]
    assert math.isfinite(evaluate_run(run.path, split="val").metrics["both"])


@pytest.mark.parametrize(
    "option, error, message",
    [
        ({"max_minutes": -1}, ValueError, "max_minutes must be a number of minutes > 0"),
        ({"max_minutes": float("nan")}, ValueError, "max_minutes must be a finite number"),
        ({"max_minutes": True}, TypeError, "max_minutes must be a number of minutes"),
        ({"threads": -1}, ValueError, "threads must be 0"),
        ({"threads": True}, TypeError, "threads must be an integer"),
        ({"progress": "no"}, TypeError, "progress must be True or False, got 'no'"),
        ({"compile": "no"}, TypeError, "compile must be True or False"),
        ({"resume": "no"}, TypeError, "resume must be True or False"),
        ({"device": "gpu"}, ValueError, "device must be cpu, cuda, cuda:N or auto"),
        ({"device": 5}, TypeError, "device must be a string, got 5"),
    ],
)
def test_the_loop_checks_its_run_options_before_any_work(tmp_path, option, error, message):
    """Before: max_minutes -1, NaN or True trained without a cap, threads=-1 was taken,
    progress="no" drew the bar, resume="no" resumed; threads=True and device="gpu" failed
    inside torch (as fit refused them all)."""
    cfg = tiny_run_config("train.steps=1")
    with pytest.raises(error, match=message):
        loop.train(cfg, tmp_path / "run", **{"progress": False, **option})
    assert list(tmp_path.iterdir()) == []


def test_train_step_refuses_a_batch_it_cannot_train_on_and_leaves_the_model_as_it_was():
    """Before: one NaN pixel raised "the heatmaps became nan" after writing NaN into the
    BatchNorm running statistics (the model unusable, saving it refused); under no_grad a
    raw "does not require grad" RuntimeError; float64 images "mixed dtype (CPU)"."""
    tr = make_trainer()
    b = scene_batch()
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    nan = b.images.clone()
    nan[0, 0, 3, 3] = float("nan")
    cases = [
        (Batch(nan, b.boxes, b.labels, b.count), "batch.images holds NaN or infinite values"),
        (Batch(b.images.double(), b.boxes, b.labels, b.count), "images are torch.float64"),
        (Batch(b.images[:0], b.boxes[:0], b.labels[:0], b.count[:0]), "holds no image"),
        # labels 12 of 10 classes, -4 as padding, an image without a label: BatchNorm's
        # statistics changed before torch's IndexError or "the task loss became nan"
        (Batch(b.images, b.boxes, b.labels.clamp(max=0) + 12, b.count), "class ids in"),
        (
            Batch(b.images, b.boxes, torch.cat([b.labels, b.labels[:, :1] * 0 - 4], 1), b.count),
            "then -1 padding",
        ),
        (Batch(b.images, b.boxes, b.labels, b.count * 0), "its count \\(>= 1\\)"),
    ]
    for batch, message in cases:
        with pytest.raises(ValueError, match=message):
            tr.train_step(batch)
    with torch.no_grad(), pytest.raises(ValueError, match="train_step needs gradients"):
        tr.train_step(b)
    with pytest.raises(TypeError, match="batch must be a Batch"):
        tr.train_step({"image": b.images})
    assert all(torch.equal(v, before[k]) for k, v in tr.model.state_dict().items())
    # a model built (or loaded) under inference_mode: torch's "Inplace update to inference
    # tensor outside InferenceMode" at the first step
    cfg = tiny_config()
    with torch.inference_mode():
        frozen = build_model(cfg.model, cfg.train.method)
    with pytest.raises(ValueError, match="^model: its weights were made under torch.inference_"):
        build_trainer(frozen, cfg.train)


def _later(**hooks):
    callbacks = loop.Callbacks()
    for name, hook in hooks.items():
        setattr(callbacks, name, hook)
    return callbacks


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(data="train"), r"data must be a \(train, val\) pair of Datasets .*got str"),
        (dict(data=([1, 2], None)), r"pair of Datasets .*got \(list, NoneType\)"),
        (dict(data=("x",)), r"pair of Datasets .*got \(str\)"),
        # before: "'TensorDataset' object has no attribute 'height'", naming no argument
        (
            dict(data=(TensorDataset(torch.zeros(4, 1, 8, 8)), None)),
            r"data: its train dataset is a plain TensorDataset; wrap it as scenes",
        ),
        (
            dict(callbacks={"on_step": print}),
            "callbacks must be a mistnet.loop.Callbacks, got dict",
        ),
        # A hook set after construction passed __post_init__ and failed after the first step.
        (dict(callbacks=_later(on_step=5)), "callbacks.on_step must be callable or None, got 5"),
    ],
)
def test_the_loop_refuses_data_and_callbacks_of_the_wrong_type_before_any_work(
    tmp_path, kw, message
):
    """Before: raw unpacking and attribute errors ("too many values to unpack", "'list' object
    has no attribute 'height'", "'dict' object has no attribute 'on_step'"), some only once
    training had started."""
    cfg = load_preset("tiny-cpu")
    with pytest.raises(TypeError, match=message):
        loop.train(cfg, tmp_path / "r", progress=False, **kw)
    assert not (tmp_path / "r").exists()


def test_callbacks_refuse_a_hook_that_is_not_callable():
    """Before: ``Callbacks(on_step=5)`` was taken and raised "'int' object is not callable"
    after the run directory was made and training had started."""
    with pytest.raises(TypeError, match="callbacks.on_step must be callable or None, got 5"):
        loop.Callbacks(on_step=5)
    with pytest.raises(TypeError, match="callbacks.on_log must be callable"):
        loop.Callbacks(on_log="print")
    assert loop.Callbacks(on_validate=print).on_validate is print


def test_the_loop_names_the_data_it_was_given_when_it_refuses_it(tmp_path):
    """Before: Gabor scenes given as ``data=`` were refused as "mnist-easy [train] holds float32
    images ...", blaming the config's generator for the data given."""
    from mistnet.data import SceneDataset

    cfg = load_preset("tiny-cpu")
    cfg.data.name = "mnist-easy"
    gabor = SceneDataset("gabor", "train", size=8)
    with pytest.raises(MistError, match=r"^data \[train\] holds float32 images") as err:
        loop.train(cfg, tmp_path / "r", data=(gabor, None), progress=False)
    assert "mnist-easy" not in str(err.value)
    assert cfg.data.name == "mnist-easy"


def test_evaluate_names_a_model_meter_or_device_it_cannot_use():
    """Before: AttributeErrors on ``task_net`` (a module that is no MIST) and on ``update``
    (after the forward passes), and torch's errors for device "gpu" or 5."""
    cfg = tiny_config()
    model = build_model(cfg.model, cfg.train.method)
    for kwargs, error, message in [
        ({"model": None}, TypeError, "^model must be a MIST model"),
        ({"model": torch.nn.Linear(1, 1)}, TypeError, "^model must be a MIST model"),
        ({"meters": [5]}, TypeError, r"^meters\[0\] \(int\) is no meter: it has no update"),
        ({"meters": [DetectionMeter()]}, TypeError, "does not take \\(out, batch\\)"),
        ({"device": "gpu"}, ValueError, "device must be"),
    ]:
        with pytest.raises(error, match=message):
            engine.evaluate(**{"model": model, "batches": [], **kwargs})


def test_build_trainer_and_task_loss_name_a_setting_they_cannot_use():
    """Before: method "chanelwise" built MIST's lifted step without a word, task
    "reconstruction" the classification loss; an unknown loss name a KeyError, a whole Config
    an AttributeError."""
    from dataclasses import replace

    cfg = tiny_config()
    model = build_model(cfg.model, cfg.train.method)
    for train, message in (
        (replace(cfg.train, method="chanelwise"), "^train.method must be one of"),
        (replace(cfg.train, heatmap_loss="x"), "^train.heatmap_loss must be one of"),
        (replace(cfg.train, class_loss="bogus"), "^train.class_loss must be one of"),
        # ranges too: an average of weight 2 left the weights; -3 x-steps ran none
        (replace(cfg.train, ema_decay=2.0), r"^train.ema_decay must be in \[0, 1\), got 2.0"),
        (replace(cfg.train, ema_decay=math.nan), "^train.ema_decay must be a finite number"),
        (replace(cfg.train, keypoint_iters=-3), "^train.keypoint_iters must be >= 0, got -3"),
    ):
        with pytest.raises(ValueError, match=message):
            build_trainer(model, train)
    with pytest.raises(TypeError, match="^cfg must be a TrainConfig"):
        build_trainer(model, cfg)
    for args in (("reconstruction",), ("classify", "bogus")):
        with pytest.raises(ValueError, match="^task must be 'classify' or 'reconstruct' and"):
            task_loss(*args)


# A value each key takes that its default is not (the config's ranges allowing it).
OTHER_VALUES = {
    "lr_heatmap": 1e-2,
    "heatmap_loss": "nll",
    "lr_keypoints": 1.0,
    "keypoint_iters": 5,
    "proximal_weight": 1.0,
    "centre_weight": 1.0,
    "centre_sigma": 0.3,
    "centre_mode": "mixture",
    "max_step_px": 2.0,
    "weight_beta": 0.0,
    "class_loss": "set",
    "factors": (1.0, 0.5),
    "heatmap_width": 4,
    "heatmap_depth": 3,
    "heatmap_dilations": (1, 2),
    "background": "median",
    "base_side": 30.0,
    "softmax_window": 21,
    "softmax_strength": 3.0,
    "softmax_eps": 0.0,
    "nms_window": 7,
    "num_classes": 3,
}


@pytest.mark.parametrize(
    "overrides",
    [
        *(
            (f"train.method={method}", f"model.task={task}")
            for method in ("supervised", "channelwise", "grid")
            for task in ("classify", "reconstruct")
        ),
        ("train.keypoint_iters=0",),  # no x-step; and centre_weight = 0: no centring prior
    ],
    ids=lambda o: ",".join(x.split("=")[1] for x in o),
)
def test_the_keys_said_not_to_be_read_change_nothing_that_trains(overrides):
    # The rules of mistnet.configrules, checked: each key they name changed alone gives the
    # same weights after two steps (the config refuses them; here they are set past it).
    cfg = tiny_config(*overrides, "model.k=9")
    method = cfg.train.method
    batch = scene_batch()

    def trained(model_cfg, train_cfg):
        torch.manual_seed(0)
        tr = build_trainer(build_model(model_cfg, method), train_cfg)
        for _ in range(2):
            tr.step(batch)
        return [p.detach().clone() for p in tr.model.parameters()]

    before = trained(cfg.model, cfg.train)
    keys = [(s, k) for s, k, _ in unread_keys(cfg) if s != "data" and k != "k"]
    assert keys
    for section, key in keys:
        changed = copy.deepcopy(cfg)
        setattr(getattr(changed, section), key, OTHER_VALUES[key])
        after = trained(changed.model, changed.train)
        assert len(after) == len(before), f"{section}.{key}"
        assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True)), key


def test_batch_from_dict_refuses_what_no_collated_batch_is():
    from mistnet.errors import ArgumentError

    good = {
        "image": torch.rand(2, 1, 8, 8),
        "boxes": torch.zeros(2, 3, 4),
        "labels": torch.zeros(2, 3, dtype=torch.long),
        "count": torch.ones(2, dtype=torch.long),
    }
    assert engine.Batch.from_dict(good, "cpu").images.shape == (2, 1, 8, 8)
    # each was taken: a 3-D image, float labels, the count of another batch size
    for key, value, message in [
        ("image", torch.rand(1, 8, 8), r"'image' must be \(B, C, H, W\) floats"),
        ("labels", torch.zeros(2, 3), r"'labels' must be \(B, N\) with B = 2, integers"),
        ("count", torch.ones(3, dtype=torch.long), r"'count' must be \(B,\) = \(2,\)"),
    ]:
        with pytest.raises(ValueError, match=f"^a batch's {message}"):
            engine.Batch.from_dict({**good, key: value}, "cpu")
    with pytest.raises(ArgumentError, match="^device must be cpu, cuda, cuda:N or auto, got 'gpu'"):
        engine.Batch.from_dict(good, "gpu")  # torch's RuntimeError


class _Outputs:
    """A meter keeping the model's task outputs, to compare two evaluations bit for bit."""

    def __init__(self):
        self.seen = []

    def update(self, out, batch):
        self.seen.append(out.task.clone())

    def sums(self):
        return torch.zeros(0)

    def load_sums(self, sums):
        pass

    def compute(self):
        return {}


def test_training_and_evaluation_keep_out_the_callers_autocast(tmp_path):
    """Before: under a script's ``torch.autocast("cpu", dtype=torch.bfloat16)`` a run trained
    and was evaluated in bf16 (other losses, other metrics than ``mist eval``), while its
    config and records said nothing of it."""
    cfg = tiny_run_config("train.steps=2")
    plain, under = Run(tmp_path / "plain"), Run(tmp_path / "under")
    loop.train(copy.deepcopy(cfg), plain.path, progress=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loop.train(copy.deepcopy(cfg), under.path, progress=False)
        assert torch.is_autocast_enabled("cpu")  # the caller's, given back
    first, second = Checkpoint(plain.best), Checkpoint(under.best)
    assert all(torch.equal(t, second.tensors[n]) for n, t in first.tensors.items())
    meters = _Outputs(), _Outputs()
    evaluate_run(plain.path, split="val", meters=[meters[0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        evaluate_run(plain.path, split="val", meters=[meters[1]])
    assert meters[0].seen[0].dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(*(m.seen for m in meters), strict=True))


def test_a_path_key_may_name_another_folder_only_where_the_first_is_gone(tmp_path):
    """Before: any folder-to-folder edit of ``train.init_from`` passed as a move, so a run
    warm-started from ``a`` was resumed recording ``b`` (which still existed) as its start."""
    first = tiny_run_config("train.steps=2")
    loop.train(first, tmp_path / "a", progress=False)
    loop.train(copy.deepcopy(first), tmp_path / "b", progress=False)
    cfg = tiny_run_config("train.steps=2", f"train.init_from='{tmp_path / 'a'}'")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    saved = json.loads(run.config.read_text())
    longer = apply_overrides(copy.deepcopy(cfg), ["train.steps=4"])
    saved["train"]["init_from"] = str(tmp_path / "b")
    run.config.write_text(json.dumps(saved))
    with pytest.raises(MistError, match=r"train.init_from is .*b. but best.safetensors was"):
        loop.train(longer, run.path, resume=True, progress=False)
    (tmp_path / "a").rename(tmp_path / "a-moved")  # gone: the edit follows a move
    saved["train"]["init_from"] = str(tmp_path / "a-moved")
    run.config.write_text(json.dumps(saved))
    assert loop.train(longer, run.path, resume=True, progress=False)["steps"] == 4
