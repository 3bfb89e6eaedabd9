"""Data-parallel training over torchrun's processes: N ranks × B/N images reproduce one process at B.

``torchrun --nproc-per-node N -m mistnet train ...`` starts N processes with ``RANK`` and
``WORLD_SIZE`` set; :func:`process_group` joins them (gloo on the CPU, NCCL on CUDA, one GPU per
rank by ``LOCAL_RANK``). Why not ``DistributedDataParallel``: the lifted step runs the task network
three ways per step (the tau-step's backward, the x-step's ``autograd.grad`` with respect to the
keypoints alone, a no-grad pass for the heatmap weights), and DDP's reducer expects every forward in
training mode to end in a parameter backward. Instead each optimiser averages its parameters'
gradients over the ranks just before it steps (:func:`average_gradients`), so the tau- and eta-steps
are all-reduced and the x-step, whose slack keypoints are per sample, communicates nothing. Every
rank then takes the same Adam step from the same gradients, so the weights, the BatchNorm buffers
and the moving average (``train.ema_decay``) stay identical without being sent; :func:`check_in_sync`
verifies it at the end of a run. Checkpoints hold the plain model (no ``module.`` prefixes), so a
run resumes with any N, 1 included.

Exactness: every loss is a batch mean of per-image terms (per-image weights included), so the mean
of the ranks' gradients is the gradient of the full batch; the x-step objective is a batch mean
too, so on B/N images its gradient per keypoint is N times larger, and :func:`shard_config` divides
its step size ``lr_keypoints`` by N. The heatmap network's input BatchNorm normalises with batch
statistics, which :class:`GlobalBatchNorm2d` computes over all ranks (torch's ``SyncBatchNorm``
needs a GPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from mistnet.config import Config, TrainConfig
from mistnet.data.runs import content_digest
from mistnet.device import cuda_devices, resolve_device
from mistnet.engine import StepResult
from mistnet.errors import ArgumentError, MistError
from mistnet.machine import decimal, shown_value, torchrun_world
from mistnet.runpaths import shared_settings
from mistnet.signals import default_signals


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: ``rank`` of ``size``."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0, the one process that writes the run directory and prints."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        """The world torchrun describes in ``RANK`` and ``WORLD_SIZE`` (one process without;
        another value is refused by name, :func:`~mistnet.machine.torchrun_world`)."""
        return cls(*torchrun_world())


#: How long the processes wait for each other to join: torch's default, 30 minutes, was spent
#: silently (and deaf to SIGTERM) when one of them was never started.
JOIN_TIMEOUT = timedelta(minutes=5)
#: After this many seconds of waiting to join, a line on stderr says what for.
WAIT_NOTICE_S = 5.0


@contextmanager
def process_group(device: str) -> Iterator[tuple[World, str]]:
    """Join torchrun's process group for the block; yields the world and this rank's device.

    With one process nothing is joined and ``device`` is kept. With several, CUDA means the GPU
    ``LOCAL_RANK`` and the NCCL backend; the CPU means gloo. A group initialised by the caller is
    used as it is and left open. The join waits at most :data:`JOIN_TIMEOUT` for the other
    processes (a line on stderr says so after :data:`WAIT_NOTICE_S`); SIGINT, SIGTERM and SIGHUP
    end the process meanwhile, as no Python handler can run during torch's wait.

    Raises:
        ArgumentError: with ``WORLD_SIZE`` > 1, ``RANK``, ``MASTER_ADDR`` or ``MASTER_PORT``
            missing or malformed, on CUDA a ``LOCAL_RANK`` that is no GPU of this machine or a
            device ``cuda:N`` (each process takes ``cuda:LOCAL_RANK``), or a join that failed
            or timed out; one line naming the variable, before any work.
    """
    world = World.from_env()
    if world.size == 1:
        yield world, device
        return
    address = _rendezvous_address(world)
    dev = _rank_device(device, world)
    backend = "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        backend = "nccl"
    owned = not dist.is_initialized()
    if owned:
        _join(backend, dev, world, address)
    try:
        yield world, str(dev)
    except RuntimeError as exc:
        if not _peer_lost(exc):
            raise
        raise MistError(  # was an internal error quoting gloo ("GLHF!") beside the real one
            f"process {world.rank} of {world.size}: another process of this run stopped (its "
            "own message says why); this one stops too"
        ) from exc
    finally:
        if owned:
            dist.destroy_process_group()


def _peer_lost(exc: RuntimeError) -> bool:
    """Whether ``exc`` is a collective's failure because another process ended (gloo's
    "Connection closed by peer", torch's distributed errors)."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or (
        "/gloo/" in text and ("closed by peer" in text or "reset by peer" in text)
    )


@contextmanager
def main_holds(
    world: World, device: str, hold: Callable[[], AbstractContextManager]
) -> Iterator[None]:
    """Hold ``hold()`` (the run directory's claim and lock) in rank 0 alone for the block,
    which the other processes enter only once rank 0 has: they went on, removing stale
    temporaries in an ``--out`` rank 0 had refused, and then stopped with an internal error.

    Raises:
        MistError: in the other processes, when rank 0 could not (its own error says why).
    """
    with contextlib.ExitStack() as held:
        try:
            if world.main:
                held.enter_context(hold())
        except BaseException:
            if world.size > 1:
                with contextlib.suppress(Exception):  # the others wait for this word
                    _all_true(False, device)
            raise
        if world.size > 1 and not _all_true(True, device):
            raise MistError(
                f"process {world.rank} of {world.size}: process 0 could not claim the run "
                "directory (its own message says why); this one stops too"
            )
        yield


def _all_true(flag: bool, device: str) -> bool:
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def require_same_run(
    cfg: Config,
    world: World,
    device: torch.device | str,
    timed: bool,
    data: tuple[Dataset, Dataset | None] | None = None,
) -> None:
    """Refuse unless every process trains the same config on the same data, and every one or
    none has a time limit (``timed``), compared setting by setting
    (:func:`~mistnet.runpaths.shared_settings`, by digest) once the data is read, and the
    ``(train, val)`` splits of ``data`` by content (:func:`~mistnet.data.runs.content_digest`):
    two machines given other ``--set`` values trained to the end, then said their weights
    "diverged (a bug)"; datasets of one path made with other seeds, photos imported with the
    same options from other pixels or ``data.digits`` folders of other digits trained mixed,
    silently; a ``--max-minutes`` of one process only put the collectives out of step (gloo's
    abort).

    Raises:
        MistError: on every process at once, naming the settings that differ.
    """
    if world.size == 1:
        return
    settings = {**shared_settings(cfg), "--max-minutes": "given" if timed else "not given"}
    if data is not None:
        settings["the training data"] = content_digest(data[0])
        settings["the validation data"] = content_digest(data[1])
    names = sorted(settings)
    digests = [
        int.from_bytes(hashlib.sha256(settings[n].encode()).digest()[:7], "big") for n in names
    ]
    low = torch.tensor(digests, dtype=torch.int64, device=device)
    high = low.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    differ = [n for n, a, b in zip(names, low.tolist(), high.tolist(), strict=True) if a != b]
    if differ:
        shown = ", ".join(differ[:3]) + (f" and {len(differ) - 3} more" if len(differ) > 3 else "")
        raise MistError(
            f"the {world.size} processes of this run were given other settings or data "
            f"({shown} {'differs' if len(differ) == 1 else 'differ'}); start each with the same "
            "command and the same dataset"
        )


def _rendezvous_address(world: World) -> str:
    """``MASTER_ADDR:MASTER_PORT``, where the processes of ``world`` meet, once ``RANK`` is
    known to be set (:func:`~mistnet.machine.torchrun_world` takes a missing one for 0)."""
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name, "").strip():
            raise ArgumentError(
                f"{name} is not set in the environment (WORLD_SIZE={world.size}): start the "
                "processes with torchrun, which sets RANK, MASTER_ADDR and MASTER_PORT"
            )
    port = os.environ["MASTER_PORT"]
    if not 1 <= (decimal(port) or 0) <= 65535:
        raise ArgumentError(
            f"MASTER_PORT={shown_value(port)} in the environment: a port number, 1 to 65535"
        )
    # as torch reads it (int() of 5,000 zeros and a port raised past 4,300 digits)
    os.environ["MASTER_PORT"] = port = str(decimal(port))
    return f"{os.environ['MASTER_ADDR']}:{port}"


def _rank_device(device: str, world: World) -> torch.device:
    """This rank's device: the CPU, or this machine's GPU ``LOCAL_RANK`` (one per process)."""
    dev = resolve_device(device)
    if dev.type != "cuda":
        return dev
    if dev.index is not None:  # every rank would take the same GPU, or the index be ignored
        raise ArgumentError(
            f"{device} under torchrun (WORLD_SIZE={world.size}): each process takes the GPU "
            "cuda:LOCAL_RANK; ask for the device cuda"
        )
    text, count = os.environ.get("LOCAL_RANK"), torch.cuda.device_count()
    if text is None:
        raise ArgumentError(
            f"LOCAL_RANK is not set in the environment (WORLD_SIZE={world.size}, on CUDA): "
            "start the processes with torchrun, which sets it"
        )
    index = decimal(text)
    if index is None or index >= count:
        raise ArgumentError(
            f"LOCAL_RANK={shown_value(text)} in the environment: this process's GPU, an integer "
            f"in [0, {count}) ({cuda_devices(count)})"
        )
    return torch.device("cuda", index)


def _join(backend: str, dev: torch.device, world: World, address: str) -> None:
    """Initialise the process group, waiting at most :data:`JOIN_TIMEOUT` for the others."""
    limit = _duration(JOIN_TIMEOUT)
    notice = threading.Timer(
        WAIT_NOTICE_S,
        lambda: print(
            f"waiting for the {world.size} processes of WORLD_SIZE at {address} "
            f"(up to {limit}) ...",
            file=sys.stderr,
            flush=True,
        ),
    )
    notice.daemon = True
    try:
        with default_signals():  # a Terminated raised by mistnet's handler would wait too
            notice.start()
            # the join alone is bounded: the group's collectives keep torch's default timeout
            store, rank, size = next(
                dist.rendezvous("env://", world.rank, world.size, timeout=JOIN_TIMEOUT)
            )
            device_id = dev if backend == "nccl" else None
            dist.init_process_group(
                backend, store=store, rank=rank, world_size=size, device_id=device_id
            )
    except dist.DistError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "timed out" in reason.lower():
            raise ArgumentError(
                f"the {world.size} processes of WORLD_SIZE did not all join at {address} "
                f"within {limit}: start every rank (torchrun starts them all) ({reason})"
            ) from None
        raise ArgumentError(
            f"could not join the {world.size} processes of WORLD_SIZE at {address}: {reason}"
        ) from None
    finally:
        notice.cancel()


def _duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} seconds"


def shard_config(cfg: TrainConfig, world: World) -> TrainConfig:
    """The train config one rank steps with: ``batch_size / N`` images, x-step size
    ``lr_keypoints / N``.

    Raises:
        MistError: ``train.batch_size`` is not a multiple of the number of processes.
    """
    if cfg.batch_size % world.size:
        raise MistError(
            f"train.batch_size = {cfg.batch_size} does not split over {world.size} processes "
            "(choose a multiple of --nproc-per-node)"
        )
    return dataclasses.replace(
        cfg, batch_size=cfg.batch_size // world.size, lr_keypoints=cfg.lr_keypoints / world.size
    )


def average_gradients(optimizer: torch.optim.Optimizer, world: World) -> None:
    """Make ``optimizer`` average its gradients over the ranks (one all-reduce) before each step.

    Parameters without a gradient are left out; the step's graph is the same on every rank, so
    they are the same parameters everywhere.
    """
    if world.size == 1:
        return

    def hook(opt: torch.optim.Optimizer, args, kwargs) -> None:
        grads = [
            p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None
        ]
        flat = torch.cat([g.reshape(-1) for g in grads])  # one message per step
        dist.all_reduce(flat)
        flat /= world.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    optimizer.register_step_pre_hook(hook)


def broadcast_model(model: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (a safeguard: the seed makes them equal)."""
    if dist.is_initialized():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, 0)


def gather_result(result: StepResult, world: World) -> StepResult:
    """The :class:`StepResult` of the whole batch: losses averaged, keypoints in batch order."""
    if world.size == 1:
        return result
    losses = torch.stack([result.task, torch.zeros_like(result.task)])
    if result.heatmap is not None:
        losses[1] = result.heatmap
    dist.all_reduce(losses)
    losses /= world.size

    def cat(t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        parts = [torch.empty_like(t) for _ in range(world.size)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    heat = None if result.heatmap is None else losses[1]
    return StepResult(losses[0], heat, cat(result.x0), cat(result.x))


def any_rank(flag: bool, device: torch.device | str) -> bool:
    """True on every rank when ``flag`` is true on one (the ranks agree to stop together)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_ranks(values: Tensor) -> Tensor:
    """``values`` summed over the ranks (every rank gets the sum); unchanged in one process.

    Sharded validation: each rank scores every N-th validation batch and the meters' sums
    (:meth:`mistnet.metrics.SceneMeter.sums`, counts and float64 sums) add up to one process's.
    """
    if not dist.is_initialized():
        return values
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    total = values.to(device, copy=True)
    dist.all_reduce(total)
    return total.to(values.device)


def check_in_sync(modules: list[nn.Module], device: torch.device | str) -> None:
    """Raise when the ranks' weights or buffers differ (compared by float64 sums per tensor).

    Raises:
        MistError: the ranks diverged.
    """
    if not dist.is_initialized():
        return
    sums = torch.stack(
        [t.detach().double().sum() for m in modules for t in [*m.parameters(), *m.buffers()]]
    ).to(device)
    low, high = sums.clone(), sums.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise MistError("the training processes' weights diverged (a bug: please report it)")


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole batch over all ranks.

    One process, or eval mode: exactly ``nn.BatchNorm2d``. Several: the per-channel sums, sums
    of squares and counts are all-reduced (in float64), the input is normalised with the global
    mean and biased variance and the running buffers move as ``nn.BatchNorm2d`` moves them. The
    statistics carry no gradient, which is exact where the input needs none: in mistnet the
    heatmap network's input normalisation, which sees the images.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if x.requires_grad:
            raise ValueError("GlobalBatchNorm2d gives no gradient to its input; it got one")
        C = x.shape[1]
        with torch.no_grad():
            n = x.numel() // C
            stats = torch.cat([x.sum((0, 2, 3)), x.pow(2).sum((0, 2, 3)), x.new_tensor([n])])
            stats = stats.double()
            dist.all_reduce(stats)
            count = stats[-1]
            mean = stats[:C] / count
            var = (stats[C : 2 * C] / count - mean**2).clamp(min=0)
            if self.track_running_stats:
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1 / self.num_batches_tracked
                self.running_mean.lerp_(mean.to(x.dtype), m)
                self.running_var.lerp_((var * count / (count - 1)).to(x.dtype), m)
        return F.batch_norm(
            x, mean.to(x.dtype), var.to(x.dtype), self.weight, self.bias, False, 0.0, self.eps
        )


def global_batch_norms(module: nn.Module) -> None:
    """Turn every ``nn.BatchNorm2d`` of ``module`` into :class:`GlobalBatchNorm2d` (same state)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            bn = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine).to(
                next(child.buffers()).device
            )
            bn.load_state_dict(child.state_dict())
            setattr(module, name, bn)
        else:
            global_batch_norms(child)
