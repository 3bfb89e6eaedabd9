"""A training run on disk: data plumbing, the step loop, validation, checkpoints and resume.

A run directory holds ``config.json`` (the resolved config), ``last.safetensors`` (written every
``ckpt_every`` steps and at the end), ``best.safetensors`` (best validation metric),
``log.jsonl`` (one JSON line per logged step and per validation), ``summary.json`` and
``.lock`` (held while a process trains into it). The batch at step ``t`` is a pure function of
``(seed, t)``, so ``--resume`` after any interruption, SIGKILL included, continues with exactly
the losses an uninterrupted run would have produced.

Under torchrun (:mod:`mistnet.distributed`) every rank runs this loop on its shard of each batch;
rank 0 alone writes the run directory, validates and prints.
"""

from __future__ import annotations

import itertools
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, Dataset, Sampler

from mistnet.acceleration import accelerate
from mistnet.checkpoint import Checkpoint, save_checkpoint
from mistnet.config import Config, load_json
from mistnet.data.runs import check_data
from mistnet.data.store import ANNOTATIONS, annotations_of, classes_of
from mistnet.device import resolve_device
from mistnet.distributed import (
    World,
    any_rank,
    average_gradients,
    broadcast_model,
    check_in_sync,
    gather_result,
    global_batch_norms,
    process_group,
    shard_config,
    sum_over_ranks,
)
from mistnet.engine import Batch, StepResult, evaluate
from mistnet.errors import ArgumentError, MistError, NonFiniteLoss
from mistnet.io import (
    atomic_write_text,
    exclusive_lock,
    json_text,
    open_output,
    remove_empty,
    remove_stale_temporaries,
)
from mistnet.metrics import unmeasured
from mistnet.models.build import build_model
from mistnet.models.mist import MIST
from mistnet.runlog import LogRecord, read_log
from mistnet.trainer import build_trainer

MAXIMISE = {"both": True, "det_iou50": True, "classif": True, "ap50": True, "rmse": False}


def select_metric(cfg: Config, annotations: frozenset[str] = ANNOTATIONS) -> str:
    """The validation metric that picks ``best.safetensors``: ``train.select_metric``, else what
    the data can measure (``rmse`` for reconstruction; ``both`` with boxes and labels, else
    ``classif``).

    Raises:
        MistError: ``train.select_metric`` needs ground truth the data lacks.
    """
    chosen = cfg.train.select_metric
    skipped = unmeasured(cfg.model.task, annotations)
    if chosen in skipped:
        raise MistError(
            f"train.select_metric = {chosen!r} cannot be measured: {skipped[chosen]} "
            "(leave it empty to pick what the data measures)"
        )
    if chosen:
        return chosen
    if cfg.model.task == "reconstruct":
        return "rmse"
    return "both" if "both" not in skipped else "classif"


# -- data -----------------------------------------------------------------------------------


def open_split(cfg: Config, split: str) -> Dataset:
    """The dataset of one split: a directory when ``data.path`` is set, else a generator."""
    from mistnet.data import open_dataset

    d = cfg.data
    sizes = {"train": d.n_train, "val": d.n_val, "test": d.n_test}
    return open_dataset(d.path or d.name, split, size=sizes[split], seed=d.seed, digits=d.digits)


def adopt_data(cfg: Config, train_set: Dataset) -> None:
    """Check that ``cfg`` can train on ``train_set``; write its image size and class names.

    Raises:
        MistError: other channels, a class count that differs from ``model.num_classes``, a
            classifier on data without labels or on images without one, or the supervised
            baseline without boxes.
    """
    m = cfg.model
    if train_set.channels != m.in_channels:
        raise MistError(
            f"the data has {train_set.channels} channels but model.in_channels = {m.in_channels}"
        )
    found = annotations_of(train_set)
    if m.task == "classify" and "labels" not in found:
        raise MistError(
            "the training data has no labels; a classifier needs them "
            "(train an auto-encoder: --set model.task=reconstruct)"
        )
    counts = getattr(train_set, "arrays", {}).get("counts")
    if m.task == "classify" and cfg.train.method != "supervised" and counts is not None:
        empty = int((counts == 0).sum())
        if empty:  # eq. 9 and the set loss compare each image's labels with its K patches
            raise MistError(
                f"{empty} of the {len(counts)} training images have no label (an empty labels "
                "field); a classifier needs at least one per image: leave them out, or train an "
                "auto-encoder (--set model.task=reconstruct)"
            )
    if cfg.train.method == "supervised" and "boxes" not in found:
        raise MistError("train.method = supervised trains on boxes, which the data lacks")
    names = classes_of(train_set)
    if names and m.task == "classify" and len(names) != m.num_classes:
        raise MistError(
            f"the data names {len(names)} classes but model.num_classes = {m.num_classes} "
            f"(add --set model.num_classes={len(names)})"
        )
    m.image_size = (int(train_set.height), int(train_set.width))
    if m.task != "classify":
        m.class_names = ()
    elif names:
        m.class_names = names


def expected_last_step(steps: int, step: int, start: int, elapsed: float, left: float) -> int:
    """The step a run will stop at: ``steps``, or where its deadline falls at the rate so far.

    Args:
        steps: ``train.steps``.
        step: steps done; ``start``: the step this session started from.
        elapsed: seconds this session has trained; ``left``: seconds to the deadline (inf: none).

    Example:
        >>> expected_last_step(1000, 110, 100, 20.0, 60.0)  # 0.5 steps/s, one more minute
        140
    """
    if not math.isfinite(left) or step <= start or elapsed <= 0:
        return steps
    rate = (step - start) / elapsed
    return min(steps, step + max(1, math.ceil(rate * max(left, 0.0))))


class StepSampler(Sampler[int]):
    """Indices for steps ``start, start + 1, ...``: epoch ``e`` is a permutation seeded by ``e``.

    The index of sample ``j`` of step ``t`` depends only on ``(seed, t, j)``, which is what
    makes resumption exact. With ``world`` of N processes, rank ``r`` takes the ``r``-th of N
    equal consecutive slices of every batch (``batch_size`` is the whole batch).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start_step: int,
        steps: int,
        world: World | None = None,
    ) -> None:
        world = world or World()
        if n < batch_size:
            raise MistError(
                f"the training split has {n} scenes, fewer than one batch ({batch_size})"
            )
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.steps = start_step, steps
        self.shard = batch_size // world.size
        self.offset = world.rank * self.shard

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.shard

    def __iter__(self) -> Iterator[int]:
        per_epoch = self.n // self.batch_size
        epoch, perm = -1, None
        for t in range(self.start, self.steps):
            e, pos = divmod(t, per_epoch)
            if e != epoch:
                epoch = e
                perm = np.random.default_rng([self.seed, e]).permutation(self.n)
            first = pos * self.batch_size + self.offset
            yield from perm[first : first + self.shard].tolist()


def loader(
    dataset: Dataset, batch_size: int, workers: int, sampler: Sampler | None = None
) -> DataLoader:
    from mistnet.data import collate_scenes

    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_scenes,
        drop_last=sampler is not None,
        persistent_workers=False,
    )


# -- the run ---------------------------------------------------------------------------------


class Run:
    """Paths of a run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.last = self.path / "last.safetensors"
        self.best = self.path / "best.safetensors"
        self.log = self.path / "log.jsonl"
        self.summary = self.path / "summary.json"

    def records(self) -> list[dict[str, Any]]:
        """The lines of ``log.jsonl`` as dicts (a last line cut short by a kill is left out).

        Raises:
            MistError: not a run, no log or an empty one, or a damaged line (see
                :func:`mistnet.runlog.read_log`).
        """
        self.require()
        if not self.log.is_file():
            raise MistError(f"{self.path} has no log.jsonl yet")
        records = read_log(self.log)
        if not records:
            raise MistError(f"{self.log}: empty; the run has not logged a step yet")
        return [r.as_dict() for r in records]

    def is_legacy(self) -> bool:
        """Whether this is a run written before output directories were marked: its
        ``config.json`` is a run config and it holds a checkpoint."""
        if not (self.last.is_file() or self.best.is_file()):
            return False
        try:
            load_json(self.config)
        except (MistError, OSError, ValueError):
            return False
        return True

    def claim(self) -> list[Path]:
        """Make this run directory for writing, or accept one ``mist train`` made earlier.

        Returns:
            The directories created (none when the run existed; a legacy run gets its marker).

        Raises:
            MistError: ``path`` exists and is not a run (see :func:`mistnet.io.claim_output`).
        """
        return open_output(self.path, "run", "mist train", legacy=lambda path: self.is_legacy())

    def require(self) -> None:
        if self.path.is_file():
            raise MistError(f"{self.path} is a file; give the run directory ({self.path.parent})")
        if not self.path.is_dir():
            raise MistError(f"run directory {self.path} does not exist")
        if not self.config.is_file():
            raise MistError(f"{self.path} is not a mistnet run (no config.json)")

    def load(
        self, which: str = "best", device: torch.device | str = "cpu"
    ) -> tuple[Config, MIST, Checkpoint]:
        """Rebuild the model of this run from its config and a checkpoint (``best`` or ``last``).

        The weights are the moving average when the run kept one (``train.ema_decay > 0``).
        """
        if which not in ("best", "last"):
            raise ArgumentError(f"which must be 'best' or 'last', got {which!r}")
        self.require()
        cfg = load_json(self.config)
        if not self.best.is_file() and not self.last.is_file():
            raise MistError(f"{self.path} holds no checkpoint yet (no best or last.safetensors)")
        path = self.best if which == "best" and self.best.is_file() else self.last
        ckpt = Checkpoint(path, device=device)
        if not cfg.model.image_size and "image_size" in ckpt.extra:  # a run of an older version
            cfg.model.image_size = tuple(int(v) for v in ckpt.extra["image_size"])
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.train.method)
        ckpt.load_model(model, average=True)
        return cfg, model.to(device).eval(), ckpt


def warm_start(model: MIST, source: str, parts: str, device: torch.device | str = "cpu") -> None:
    """Copy the ``parts`` of ``model`` ("heatmap", "task" or "all") from a checkpoint or run.

    The source's moving-average weights are taken when it kept them.
    """
    path = Path(source)
    if path.is_dir():
        run = Run(path)
        path = run.best if run.best.is_file() else run.last
    ckpt = Checkpoint(path, device=device)
    prefix = {"heatmap": "heatmap_net.", "task": "task_net.", "all": ""}[parts]
    state = {k: v for k, v in ckpt.model_state(average=True).items() if k.startswith(prefix)}
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise MistError(f"{path}: its {parts} weights do not fit this model (different sizes?)")
    model.load_state_dict(state, strict=False)


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json_text(record, indent=None) + "\n")


def _read_log(path: Path) -> list[LogRecord]:
    """The records of ``log.jsonl`` (none when it does not exist); see :func:`read_log`."""
    return read_log(path) if path.exists() else []


def _check_resume(ckpt: Checkpoint, cfg: Config, log: list[LogRecord]) -> None:
    """Refuse a checkpoint whose step does not fit the run, before anything is rewritten.

    The train line of every ``log_every``-th step is appended before the checkpoint of that step
    is written, so the log of the run a checkpoint belongs to holds the line of the last such
    step at or before the checkpoint's (a missing log is no contradiction: nothing to keep).
    """
    t = cfg.train
    if ckpt.step > t.steps:
        raise MistError(
            f"{ckpt.path}: step {ckpt.step} is past train.steps = {t.steps}; "
            "the checkpoint does not belong to this run"
        )
    logged = {r.step for r in log if r.split == "train"}
    expected = ckpt.step // t.log_every * t.log_every
    if log and expected > 0 and expected not in logged:
        raise MistError(
            f"log.jsonl has no line for step {expected} but {ckpt.path} is at step {ckpt.step}; "
            "the log and the checkpoint are of different runs"
        )


def _truncate_log(path: Path, log: list[LogRecord], step: int) -> None:
    """Rewrite ``log.jsonl`` without the lines past ``step`` (written after the checkpoint)."""
    if path.is_file():
        atomic_write_text(path, "".join(r.line + "\n" for r in log if r.step <= step))


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(str(path / "tb"))


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


def moving_average(model: MIST, decay: float) -> AveragedModel | None:
    """The moving average of ``model``'s weights that ``train.ema_decay`` asks for, or None."""
    if decay <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=warmed_up_ema(decay), use_buffers=True)


# A keypoint this close to the image edge counts as "on the border" in the training log: the
# lifted loop's failure mode is keypoints collapsing onto the border (RESULTS.md), and a 20 px
# box centred closer than 8 px to the edge hangs at least 2 px over it.
BORDER_PX = 8.0


def step_stats(result: StepResult, height: int, width: int) -> dict[str, float]:
    """The logged floats of one step: its losses and, for the lifted step, how x moved."""
    stats = {"task": float(result.task)}
    if result.heatmap is not None:
        stats["heatmap"] = float(result.heatmap)
    if result.x is None or result.x0 is None:
        return stats
    x0 = result.x0
    moved = (result.x - x0)[..., :2].norm(dim=-1)  # (B, K)
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


def train(
    cfg: Config,
    out: str | Path,
    device: str = "cpu",
    resume: bool = False,
    max_minutes: float = 0.0,
    progress: bool = True,
    threads: int = 0,
    data: tuple[Dataset, Dataset | None] | None = None,
    precision: str = "fp32",
    compile: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into the run directory ``out`` and return the summary.

    ``threads > 0`` sets torch's intra-op threads for the run (0 keeps torch's default).
    ``precision`` (``"fp32"`` or ``"bf16"``) and ``compile`` are speed options
    (:mod:`mistnet.acceleration`), not part of the run. Started by torchrun, this process trains
    its shard of every batch with the others (:mod:`mistnet.distributed`); only rank 0 writes.
    ``data`` gives the ``(train, val)`` datasets in memory (items as
    :class:`~mistnet.data.SceneDataset` yields them; ``val`` None: no validation, the best
    checkpoint is the last) instead of the splits ``cfg.data`` names; a resume needs them again.
    With ``progress`` off nothing is printed.

    ``out`` must be new, empty, or a run that ``train`` made earlier (:meth:`Run.claim`). An
    exclusive lock on ``out/.lock`` stops a second ``train`` into the same directory. A fresh
    run that fails (or, under the CLI, is stopped by a signal) before its first checkpoint
    removes the directory it created, or the files it wrote into a run that existed.

    Raises:
        MistError: bad data or config, a non-resumable directory, another process training into
            ``out``, or a non-finite loss (after keeping the last good checkpoint).
    """
    run = Run(out)
    if resume:
        run.require()
    speed = {"threads": threads, "precision": precision, "compile": compile}
    with process_group(device) as (world, device):
        if not world.main:  # reads the run directory, never writes it
            return _train(cfg, run, device, resume, max_minutes, False, data, speed, world)
        created = run.claim()
        before = set() if created else {p.name for p in run.path.iterdir()}
        with exclusive_lock(run.path, "mist train"):
            try:
                return _train(cfg, run, device, resume, max_minutes, progress, data, speed, world)
            except BaseException:
                if not run.last.exists():  # nothing worth keeping: leave what was there before
                    if created:
                        shutil.rmtree(run.path, ignore_errors=True)
                        remove_empty(created[1:])
                    elif not resume:
                        for entry in run.path.iterdir():
                            if entry.name in before:
                                continue
                            if entry.is_dir():
                                shutil.rmtree(entry, ignore_errors=True)
                            else:
                                entry.unlink(missing_ok=True)
                raise


def _train(
    cfg: Config,
    run: Run,
    device: str,
    resume: bool,
    max_minutes: float,
    progress: bool,
    data: tuple[Dataset, Dataset | None] | None,
    speed: dict[str, Any],
    world: World,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    dev = resolve_device(device)
    if speed["threads"] > 0:
        torch.set_num_threads(speed["threads"])
    if resume:
        saved = load_json(run.config)
        if saved.to_dict() != cfg.to_dict():
            cfg = saved  # resume always continues the run as it was configured
    elif run.last.exists():
        raise MistError(f"{run.path} already holds a run; use --resume or another --out")
    remove_stale_temporaries(run.path)  # files of a writer killed mid-write; we hold the lock
    train_set, val_set = data or (open_split(cfg, "train"), open_split(cfg, "val"))
    adopt_data(cfg, train_set)
    source = cfg.data.path or cfg.data.name
    if val_set is not None and len(val_set) == 0:
        raise MistError(f"{source}: the val split is empty; training validates on it")
    for split, dataset in (("train", train_set), ("val", val_set)):
        if dataset is not None:  # class ids, signedness, the val split's classes and size
            check_data(cfg, dataset, f"{source} [{split}]")
    image_size = cfg.model.image_size
    annotations = annotations_of(train_set if val_set is None else val_set)
    metric = select_metric(cfg, annotations)
    if world.main:
        atomic_write_text(run.config, cfg.to_json())

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, cfg.train.method).to(dev)
    if cfg.train.init_from and not (resume and run.last.is_file()):
        warm_start(model, cfg.train.init_from, cfg.train.init_parts, dev)
    if world.size > 1:
        global_batch_norms(model)
        broadcast_model(model)
    trainer = build_trainer(model, shard_config(cfg.train, world))
    for opt in trainer.optimizers.values():
        average_gradients(opt, world)
    averaged = moving_average(model, cfg.train.ema_decay)
    accelerate([model.heatmap_net, model.task_net], dev, speed["precision"], speed["compile"])
    inference_model = model if averaged is None else averaged.module
    maximise = MAXIMISE.get(metric, True)
    state = {"step": 0, "best": None, "best_step": None, "wall": 0.0}
    if resume and run.last.is_file():
        ckpt = Checkpoint(run.last, device=dev)
        log = _read_log(run.log)
        _check_resume(ckpt, cfg, log)
        ckpt.load_model(model)
        for name, opt in trainer.optimizers.items():
            ckpt.load_optimizer(name, opt)
        if averaged is not None:
            ckpt.load_average(averaged)
        state.update({key: ckpt.extra[key] for key in state if key in ckpt.extra})
        state["step"] = ckpt.step
        if world.main:
            _truncate_log(run.log, log, ckpt.step)
    elif world.main:  # a fresh start (also a resume killed before its first checkpoint)
        run.log.unlink(missing_ok=True)
    start = state["step"]
    steps = cfg.train.steps
    writer = _tensorboard(run.path) if world.main else None

    last_written = {"step": start if resume and run.last.is_file() else None}

    def snapshot(path: Path) -> None:
        if not world.main:
            return
        save_checkpoint(
            path,
            model,
            trainer.optimizers,
            config=cfg.to_dict(),
            step=state["step"],
            extra=state,
            averaged=averaged,
        )
        if path == run.last:
            last_written["step"] = state["step"]

    def validate() -> dict[str, float]:
        # Sharded: rank r scores batches r, r + N, ... of the first train.val_batches (0: all)
        # and the meters' sums are added over the ranks, so every rank gets the whole split's
        # metrics (the same as one process's, up to float summation order).
        if val_set is None:
            return {}
        batches = loader(val_set, cfg.train.batch_size, 0)
        stop = cfg.train.val_batches or None
        val = evaluate(
            inference_model,
            itertools.islice(batches, world.rank, stop, world.size),
            device=dev,
            signed=cfg.model.output == "signed",
            annotations=annotations,
            reduce=sum_over_ranks,
        )
        if not world.main:
            return val
        value = val.get(metric, math.nan)
        better = state["best"] is None or (
            value > state["best"] if maximise else value < state["best"]
        )
        if better and math.isfinite(value):
            state["best"], state["best_step"] = value, state["step"]
            snapshot(run.best)
        _append_log(run.log, {"step": state["step"], "split": "val", **val})
        if writer:
            for key, v in val.items():
                writer.add_scalar(f"val/{key}", v, state["step"])
        return val

    sampler = StepSampler(len(train_set), cfg.train.batch_size, cfg.data.seed, start, steps, world)
    batches = loader(train_set, sampler.shard, cfg.data.workers, sampler)
    t0 = time.monotonic() - state["wall"]
    t_session = time.monotonic()
    deadline = t_session + 60 * max_minutes if max_minutes > 0 else math.inf
    bar = tqdm(total=steps, initial=start, disable=not progress, desc="train", dynamic_ncols=True)
    stopped = "steps"
    model.train()
    try:
        for raw in batches:
            result = trainer.step(Batch.from_dict(raw, dev))
            if averaged is not None:
                averaged.update_parameters(model)
            state["step"] += 1
            step = state["step"]
            state["wall"] = time.monotonic() - t0
            if step % cfg.train.log_every == 0 or step == steps:
                stats = step_stats(gather_result(result, world), *image_size)
            if world.main and (step % cfg.train.log_every == 0 or step == steps):
                _append_log(
                    run.log, {"step": step, "split": "train", "wall": state["wall"], **stats}
                )
                bar.set_postfix(
                    {k: f"{v:.4g}" for k, v in stats.items() if k in ("task", "heatmap", "border")}
                )
                if writer:
                    for key, v in stats.items():
                        writer.add_scalar(f"train/{key}", v, step)
            now = time.monotonic()
            bar.total = expected_last_step(steps, step, start, now - t_session, deadline - now)
            bar.update(1)
            if step % cfg.train.val_every == 0 or step == steps:
                val = validate()
                if progress and val:
                    bar.write(
                        f"step {step}: "
                        + ", ".join(f"{k} {v:.4f}" for k, v in val.items() if k in MAXIMISE)
                    )
            if step % cfg.train.ckpt_every == 0:
                snapshot(run.last)
            if math.isfinite(deadline) and any_rank(time.monotonic() > deadline, dev):
                stopped = "max_minutes"
                break
    except NonFiniteLoss as exc:
        bar.close()
        if last_written["step"] is not None:
            kept = f"last good checkpoint: {run.last}, step {last_written['step']}"
        else:
            kept = "no checkpoint had been written yet"
        raise MistError(
            f"training diverged at step {state['step'] + 1} ({exc}); lower the learning rate "
            f"({kept})"
        ) from exc
    finally:
        bar.close()
        if writer:
            writer.close()
    if state["step"] % cfg.train.val_every != 0 and state["step"] != steps:
        validate()
    snapshot(run.last)
    if world.main and not run.best.exists():
        snapshot(run.best)
    check_in_sync([model] if averaged is None else [model, averaged], dev)
    summary = {
        "steps": state["step"],
        "stopped": stopped,
        "wall_s": round(state["wall"], 1),
        "select_metric": metric if val_set is not None else "none (no validation data)",
        "not_measured": unmeasured(cfg.model.task, annotations),
        "best": state["best"],
        "best_step": state["best_step"],
        "images_per_s": round(
            (state["step"] - start)
            * cfg.train.batch_size
            / max(1e-9, time.monotonic() - t_session),
            2,
        ),
        "device": str(dev),
    }
    if world.size > 1:
        summary["processes"] = world.size
    if world.main:
        atomic_write_text(run.summary, json_text(summary))
    return summary
