"""The training loop: :func:`train` a config into a run directory (:mod:`mistnet.rundir`).

A :class:`Session` is one process's training of a run: it opens and checks the data, builds the
model and the trainer (:func:`mistnet.trainer.build_trainer`), restores ``last.safetensors`` on
``--resume``, then each step calls ``trainer.train_step(batch)``, logs its statistics, validates
every ``val_every`` steps (best: ``best.safetensors``) and checkpoints every ``ckpt_every``
steps (``last.safetensors``). Step ``t``'s batch is a pure function of ``(seed, t)``
(:class:`mistnet.data.sampling.StepSampler`): a resumed run logs an uninterrupted one's losses.
Under torchrun (:mod:`mistnet.distributed`) each rank trains on its shard; rank 0 alone writes.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mistnet import distributed
from mistnet.acceleration import accelerate
from mistnet.checkpoint import save_checkpoint
from mistnet.config import Config
from mistnet.data.runs import adopt_data, require_same_sizes, training_split
from mistnet.data.sampling import StepSampler, loader
from mistnet.device import resolve_device
from mistnet.distributed import World
from mistnet.engine import Batch, StepResult, evaluate
from mistnet.errors import MistError, NonFiniteLoss, NonFiniteState
from mistnet.io import atomic_write_text, json_text
from mistnet.metrics import unmeasured
from mistnet.models.build import build_seeded
from mistnet.progress import Progress
from mistnet.rundir import MAXIMISE, Run, select_metric, warm_start
from mistnet.runoptions import RunOptions, as_given, check_callbacks, check_data_pair, check_hooks
from mistnet.torchstate import callers_torch_state
from mistnet.trainer import Trainer, build_trainer


@dataclass
class Callbacks:
    """Hooks into the loop: ``on_step(trainer, result)`` after every step on every rank;
    ``on_log(step, stats)`` and ``on_validate(step, metrics)`` where rank 0 logs them."""

    on_step: Callable[[Trainer, StepResult], None] | None = None
    on_log: Callable[[int, dict[str, float]], None] | None = None
    on_validate: Callable[[int, dict[str, float]], None] | None = None

    def __post_init__(self) -> None:
        check_hooks(self)  # on_step=5 was called once training had started


def train(
    cfg: Config,
    out: str | Path,
    device: str | torch.device = "cpu",
    resume: bool = False,
    max_minutes: float = 0.0,
    progress: bool = True,
    threads: int = 0,
    data: tuple[Dataset, Dataset | None] | None = None,
    precision: str = "fp32",
    compile: bool = False,
    callbacks: Callbacks | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` into the run directory ``out`` (:meth:`Run.writing`); the summary.

    The keyword arguments are :class:`RunOptions`. On ``resume`` the run goes on as it was
    configured (:meth:`Run.resume_config`; a larger ``train.steps`` trains it further).
    ``data`` gives ``(train, val)`` datasets in memory (``val`` None: no validation; the best
    checkpoint is the last) instead of the splits ``cfg.data`` names; a resume needs them again.
    The caller's torch generators, threads and default dtype are kept (:mod:`mistnet.torchstate`).

    Raises:
        MistError: bad data, config, options or torchrun variables, ``out`` neither new nor a
            run nor outside its inputs (:meth:`Run.claim`), a finished or non-resumable run,
            another process training into ``out``, divergence (the last good checkpoint kept).
        TypeError: ``data`` no ``(train, val)`` pair of Datasets, ``callbacks`` no Callbacks.
    """
    options = RunOptions(device, resume, max_minutes, progress, threads, precision, compile)
    check_data_pair(data)
    check_callbacks(callbacks, Callbacks)
    run = Run(out, "out")
    cfg = run.config_to_train(cfg, resume)  # checked before anything is written
    with callers_torch_state(), distributed.process_group(options.device) as (world, rank_device):
        options.device, options.progress = rank_device, progress and world.main
        # rank 0 writes the run directory; the other ranks only read it, once it is claimed
        with distributed.main_holds(world, rank_device, lambda: run.writing(resume, cfg)):
            return Session(cfg, run, options, world, data, callbacks or Callbacks()).train()


class Session:
    """One process's training of a run: set up in the constructor, then :meth:`train`."""

    def __init__(
        self,
        cfg: Config,
        run: Run,
        options: RunOptions,
        world: World,
        data: tuple[Dataset, Dataset | None] | None,
        callbacks: Callbacks,
    ) -> None:
        self.cfg, self.run, self.options, self.world = cfg, run, options, world
        self.callbacks = callbacks
        self.dev = resolve_device(options.device)
        if options.threads > 0:
            torch.set_num_threads(options.threads)
        self.resumed = options.resume and run.last.is_file()
        if world.main:  # under the lock (Run.writing); the other processes only read the run
            run.begin(options.resume)
        self.train_set, self.val_set = data or (self._split("train"), self._split("val"))
        require_same_sizes(cfg, data, options.resume)  # fit's data, given again
        named = as_given(cfg) if data else cfg  # data= was named as cfg.data's
        self.annotations = adopt_data(named, self.train_set, self.val_set, self.resumed)
        distributed.require_same_run(
            cfg, world, self.dev, options.timed, (self.train_set, self.val_set)
        )
        self.metric = select_metric(cfg, self.annotations)
        if world.main:
            atomic_write_text(run.config, run.stored(cfg).to_json())
        self.trainer = self._build_trainer()
        self.step, self.best, self.best_step, self.wall = 0, None, None, 0.0
        self.last_written: int | None = None  # the step of the newest last.safetensors
        if self.resumed:
            ckpt = run.restore(self.trainer, cfg, self.dev, truncate_log=world.main)
            self.step = self.last_written = ckpt.step
            self.best, self.best_step = ckpt.extra.get("best"), ckpt.extra.get("best_step")
            self.wall = ckpt.extra.get("wall", 0.0)
        elif world.main:  # a fresh start (also a resume killed before its first checkpoint)
            run.log.unlink(missing_ok=True)
        self.writer = run.tensorboard(self.step if self.resumed else None) if world.main else None

    def _split(self, split: str) -> Dataset:
        return training_split(self.cfg, split)

    def _build_trainer(self) -> Trainer:
        cfg, world = self.cfg, self.world
        model = build_seeded(cfg.model, cfg.train.method, cfg.train.seed).to(self.dev)
        if cfg.train.init_from and not self.resumed:
            warm_start(model, cfg.train.init_from, cfg.train.init_parts, self.dev)
        if world.size > 1:
            distributed.global_batch_norms(model)
            distributed.broadcast_model(model)
        trainer = build_trainer(model, distributed.shard_config(cfg.train, world))
        for opt in trainer.optimizers.values():
            distributed.average_gradients(opt, world)
        o = self.options
        accelerate([model.heatmap_net, model.task_net], self.dev, o.precision, o.compile)
        return trainer

    def train(self) -> dict[str, Any]:
        """Step to ``train.steps`` (or the deadline); validate and checkpoint; the summary."""
        cfg, o, start = self.cfg.train, self.options, self.step
        sampler = StepSampler(
            len(self.train_set), cfg.batch_size, self.cfg.data.seed, start, cfg.steps,
            self.world.rank, self.world.size,
        )  # fmt: skip
        batches = loader(self.train_set, sampler.shard, self.cfg.data.workers, sampler)
        t0 = time.monotonic() - self.wall
        self.progress = Progress(start, cfg.steps, o.max_minutes, o.progress)
        stopped = "steps"
        self.trainer.model.train()
        try:
            for raw in batches:
                self.step += 1  # the step under way, as a divergence names it
                result = self.trainer.train_step(Batch.from_dict(raw, self.dev))
                self.wall = time.monotonic() - t0
                self._after_step(result)
                if o.timed and distributed.any_rank(self.progress.late(), self.dev):
                    stopped = "max_minutes"
                    break
        except NonFiniteLoss as exc:
            raise self._diverged(exc) from exc
        finally:
            self.progress.close()
            if self.writer:
                self.writer.close()
        return self._finish(stopped, start)

    def _after_step(self, result: StepResult) -> None:
        """Log, validate and checkpoint as the step number asks."""
        t, step, stats = self.cfg.train, self.step, None
        if self.callbacks.on_step:
            self.callbacks.on_step(self.trainer, result)
        if step % t.log_every == 0 or step == t.steps:
            stats = distributed.gather_result(result, self.world).stats(*self.cfg.record.image_size)
            if self.world.main:
                self._record("train", {"wall": self.wall, **stats}, self.callbacks.on_log)
        self.progress.advance(step, stats if self.world.main else None)
        if step % t.val_every == 0 or step == t.steps:
            val = self.validate()
            self.progress.write(step, {k: v for k, v in val.items() if k in MAXIMISE})
        if step % t.ckpt_every == 0:
            self.snapshot(self.run.last)

    def _record(self, split: str, values: dict[str, float], callback) -> None:
        """Rank 0: one line of ``log.jsonl``, TensorBoard scalars, the callback."""
        self.run.append_log({"step": self.step, "split": split, **values})
        if self.writer:
            for key, v in values.items():
                if key != "wall":
                    self.writer.add_scalar(f"{split}/{key}", v, self.step)
        if callback:
            callback(self.step, values)

    def validate(self) -> dict[str, float]:
        """The validation metrics; a better one writes ``best.safetensors``.

        Sharded: rank r scores batches r, r + N, ... of the first ``train.val_batches`` (0:
        all) and the meters' sums are added over the ranks, so every rank gets the whole
        split's metrics (the same as one process's, up to float summation order).
        """
        if self.val_set is None:
            return {}
        t, world = self.cfg.train, self.world
        batches = itertools.islice(
            loader(self.val_set, t.batch_size, 0), world.rank, t.val_batches or None, world.size
        )
        val = evaluate(
            self.trainer.inference_model,
            batches,
            device=self.dev,
            signed=self.cfg.model.output == "signed",
            annotations=self.annotations,
            reduce=distributed.sum_over_ranks,
        )
        if not world.main:
            return val
        value, maximise = val.get(self.metric, math.nan), MAXIMISE.get(self.metric, True)
        best = self.best
        if math.isfinite(value) and (best is None or (value > best if maximise else value < best)):
            self.best, self.best_step = value, self.step
            self.snapshot(self.run.best)
        self._record("val", val, self.callbacks.on_validate)
        return val

    def _diverged(self, exc: NonFiniteLoss) -> MistError:
        """The one line of a run that diverged, naming its last good checkpoint."""
        kept = "no checkpoint had been written yet"
        if self.last_written is not None:
            kept = f"last good checkpoint: {self.run.last}, step {self.last_written}"
        why = f"lower the learning rates or model.softmax_strength ({kept})"
        return MistError(f"training diverged at step {self.step} ({exc}); {why}")

    def snapshot(self, path: Path) -> None:
        """Rank 0: a checkpoint of the weights, optimisers, average and history at ``path``
        (an optimiser's state no longer finite while the loss is: training diverged)."""
        if not self.world.main:
            return
        history = {"step": self.step, "best": self.best, "best_step": self.best_step}
        try:
            save_checkpoint(
                path,
                self.trainer.model,
                self.trainer.optimizers,
                config=self.run.stored(self.cfg).to_dict(),
                step=self.step,
                extra={**history, "wall": self.wall},
                averaged=self.trainer.average,
            )
        except NonFiniteState as exc:
            raise self._diverged(exc) from exc
        if path == self.run.last:
            self.last_written = self.step

    def _finish(self, stopped: str, start: int) -> dict[str, Any]:
        """The last validation and checkpoints, and ``summary.json``."""
        t, world = self.cfg.train, self.world
        if self.step % t.val_every != 0 and self.step != t.steps:
            self.validate()
        self.snapshot(self.run.last)
        if world.main and not self.run.best.exists():
            self.snapshot(self.run.best)
        average = self.trainer.average
        distributed.check_in_sync([self.trainer.model, *([average] if average else [])], self.dev)
        seconds = max(1e-9, self.progress.seconds)
        trained = (self.step - start) * t.batch_size  # 0: a lost summary of a finished run
        metric = self.metric if self.val_set is not None else "none (no validation data)"
        summary = {
            "steps": self.step,
            "stopped": stopped,
            "wall_s": round(self.wall, 1),
            "select_metric": metric,
            "not_measured": unmeasured(self.cfg.model.task, self.annotations),
            "best": self.best,
            "best_step": self.best_step,
            "images_per_s": round(trained / seconds, 2) if trained else None,
            "device": str(self.dev),
        }
        if world.size > 1:
            summary["processes"] = world.size
        if world.main:
            atomic_write_text(self.run.summary, json_text(summary))
        return summary
