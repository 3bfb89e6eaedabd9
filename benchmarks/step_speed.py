"""Time one lifted training step and its parts, and report ratios measured in the same run.

Usage: python benchmarks/step_speed.py [--preset mnist-hard-cpu] [--threads 1] [--repeats 5]

Prints the median wall time of a full training step, of the heatmap network's forward+backward,
the tau-step and the x-step, as ratios to the full step, and the speed-up of the channels_last
memory format (the default) over the contiguous one on the heatmap network. Record results with
the machine in RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mistnet import engine
from mistnet.config import load_preset
from mistnet.engine import Batch
from mistnet.models.build import build_model
from mistnet.models.heatmap import HeatmapNet
from mistnet.trainer import build_trainer, task_loss, x_step_schedule


def median_time(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="mnist-hard-cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_preset(args.preset)
    model = build_model(cfg.model)
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
    batch = Batch.from_dict(raw, "cpu")
    x0, _ = model.detect(model.log_heatmaps(batch.images)[1])

    def heat(net, images):
        return lambda: net(images).sum().backward()

    opt_task = trainer.optimizers["task"]
    step = median_time(lambda: trainer.step(batch), args.repeats)
    parts = {
        "heatmap fwd+bwd": median_time(heat(model.heatmap_net, batch.images), args.repeats),
        "tau-step": median_time(
            lambda: engine.tau_step(model, opt_task, loss, batch, x0), args.repeats
        ),
        "x-step": median_time(lambda: engine.x_step(model, loss, xs, batch, x0), args.repeats),
    }
    print(f"preset {args.preset}, batch {B}, threads {args.threads}")
    print(f"full step: {step * 1000:.0f} ms ({B / step:.0f} images/s)")
    for name, t in parts.items():
        print(f"  {name:16s} {t * 1000:6.0f} ms  = {t / step:.2f} x step")
    m = cfg.model
    plain = HeatmapNet(
        m.in_channels, m.factors, m.heatmap_width, m.heatmap_depth, channels_last=False
    )
    plain.load_state_dict(model.heatmap_net.state_dict())
    contiguous = median_time(heat(plain, batch.images), args.repeats)
    print(
        "heatmap channels_last (the default) vs contiguous: "
        f"{contiguous / parts['heatmap fwd+bwd']:.2f}x faster"
    )


if __name__ == "__main__":
    main()
