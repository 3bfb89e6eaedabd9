"""Time one lifted training step and its parts, and report ratios measured in the same run.

Usage: python benchmarks/step_speed.py [--preset mnist-hard-cpu] [--threads 1] [--repeats 5]
           [--device cpu] [--precision bf16] [--compile]

Prints the median wall time of a full training step, of the heatmap network's forward+backward,
the tau-step and the x-step, as ratios to the full step, and the speed-up of the channels_last
memory format (the default) over the contiguous one on the heatmap network. ``--precision bf16``
and ``--compile`` (the ``mist train`` options) also time the full step of a fresh model with each
(both: all four combinations), as speed-ups over fp32 measured in the same run. Record results
with the machine in RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import count
from common import device as device_name

from mistnet import engine
from mistnet.acceleration import PRECISIONS, accelerate
from mistnet.config import load_preset
from mistnet.engine import Batch
from mistnet.models.build import build_model
from mistnet.models.heatmap import HeatmapNet
from mistnet.trainer import build_trainer, task_loss, x_step_schedule


def timer(fn, device: torch.device | None = None):
    """``fn`` as a call that returns its wall time (waiting for a GPU to finish)."""

    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return timed


def median_time(fn, repeats: int, device: torch.device | None = None) -> float:
    timed = timer(fn, device)
    timed()  # warm-up
    timed()
    return statistics.median(timed() for _ in range(repeats))


def variant_times(cfg, batch, device, repeats: int, precisions, compiles) -> dict[str, float]:
    """Median full-step time of a fresh model per (precision, compile) pair, by label.

    The variants take turns, one step each per round, so that a machine whose load changes
    (a shared CPU) slows them alike and their ratios stay fair.
    """
    steps = {}
    for compiled in compiles:
        for precision in precisions:
            torch.manual_seed(0)
            model = build_model(cfg.model).to(device)
            trainer = build_trainer(model, cfg.train)
            accelerate([model.heatmap_net, model.task_net], device, precision, compiled)
            label = precision + (" + compile" if compiled else "")
            steps[label] = timer(lambda t=trainer: t.step(batch), device)
            steps[label]()  # warm-up (and compilation)
            steps[label]()
    times = {label: [] for label in steps}
    for _ in range(repeats):
        for label, timed in steps.items():
            times[label].append(timed())
    return {label: statistics.median(t) for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="mnist-hard-cpu")
    parser.add_argument("--threads", type=count, default=1)
    parser.add_argument("--repeats", type=count, default=5)
    parser.add_argument("--device", type=device_name, default="cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = load_preset(args.preset)
    model = build_model(cfg.model).to(device)
    trainer = build_trainer(model, cfg.train)
    loss = task_loss(model.task, cfg.train.class_loss)
    xs = x_step_schedule(cfg.train)
    B, K = cfg.train.batch_size, cfg.model.k
    raw = {
        "image": torch.rand(B, cfg.model.in_channels, 80, 80),
        "boxes": torch.rand(B, K, 4) * 60 + 10,
        "labels": torch.randint(0, cfg.model.num_classes, (B, K)),
        "count": torch.full((B,), K),
    }
    batch = Batch.from_dict(raw, device)
    x0, _ = model.detect(model.log_heatmaps(batch.images)[1])

    def heat(net, images):
        return lambda: net(images).sum().backward()

    opt_task = trainer.optimizers["task"]
    step = median_time(lambda: trainer.step(batch), args.repeats, device)
    parts = {
        "heatmap fwd+bwd": median_time(heat(model.heatmap_net, batch.images), args.repeats, device),
        "tau-step": median_time(
            lambda: engine.tau_step(model, opt_task, loss, batch, x0), args.repeats, device
        ),
        "x-step": median_time(
            lambda: engine.x_step(model, loss, xs, batch, x0), args.repeats, device
        ),
    }
    print(f"preset {args.preset}, batch {B}, threads {args.threads}, device {device}")
    print(f"full step: {step * 1000:.0f} ms ({B / step:.0f} images/s)")
    for name, t in parts.items():
        print(f"  {name:16s} {t * 1000:6.0f} ms  = {t / step:.2f} x step")
    m = cfg.model
    plain = HeatmapNet(
        m.in_channels, m.factors, m.heatmap_width, m.heatmap_depth, channels_last=False
    )
    plain.load_state_dict(model.heatmap_net.state_dict())
    plain.to(device)
    contiguous = median_time(heat(plain, batch.images), args.repeats, device)
    print(
        "heatmap channels_last (the default) vs contiguous: "
        f"{contiguous / parts['heatmap fwd+bwd']:.2f}x faster"
    )
    precisions = sorted({"fp32", args.precision})
    compiles = [False, True] if args.compile else [False]
    if len(precisions) * len(compiles) > 1:
        times = variant_times(cfg, batch, device, args.repeats, precisions, compiles)
        base = times["fp32"]
        for label, t in times.items():
            print(
                f"full step {label:16s} {t * 1000:6.0f} ms  {1 / t:7.2f} steps/s  "
                f"= {base / t:.2f}x fp32"
            )


if __name__ == "__main__":
    main()
