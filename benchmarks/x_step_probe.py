"""Does the x-step repair the detections that the heatmap gets wrong?

Loads a classification run's checkpoint, takes E_K's detections ``x0`` on a split's scenes and
runs the run's own x-step (Algorithm 1, line 4: the keypoints alone optimised against the task
loss and the priors, with the image's labels) from them, as training does. Prints det_iou50
(class-agnostic, greedy one-to-one, IoU > 0.5) of ``x0`` and of the x-step's keypoints ``x``,
and how many digits each one finds that the other misses. The heatmap is regressed onto ``x``,
so a digit that ``x`` misses is one the heatmap is never taught.

    python benchmarks/x_step_probe.py RUN [--which last] [--data DIR] [--split test]
        [--scenes 500] [--set train.KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json

import torch
from common import count
from miss_analysis import greedy

from mistnet.config import apply_overrides
from mistnet.data.runs import open_data
from mistnet.data.sampling import loader
from mistnet.engine import Batch, x_step
from mistnet.ops import box_iou, keypoints_to_boxes
from mistnet.rundir import Run
from mistnet.trainer import task_loss, x_step_schedule


def found(kp: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Which of the ``(n, 4)`` digits the ``(K, 3)`` keypoints match, ``(n,)`` bool."""
    return greedy(box_iou(keypoints_to_boxes(kp).double(), boxes.double())) >= 0


def probe(args: argparse.Namespace) -> dict:
    cfg, model, ckpt = Run(args.run).load(args.which, device="cpu")
    cfg = apply_overrides(cfg, args.sets)
    loss, schedule = task_loss(model.task, cfg.train.class_loss), x_step_schedule(cfg.train)
    _, dataset = open_data(cfg, args.data, args.split)
    dataset = torch.utils.data.Subset(dataset, range(min(args.scenes, len(dataset))))
    hits = torch.zeros(4, dtype=torch.long)  # x0, x, x0 only, x only
    n_truth = 0
    for raw in loader(dataset, 50, 0):
        batch = Batch.from_dict(raw, "cpu")
        with torch.no_grad():
            _, log_h = model.log_heatmaps(batch.images)
            x0, _ = model.detect(log_h)
        x = x_step(model, loss, schedule, batch, x0)
        for b in range(len(x0)):
            n = int(batch.count[b])
            f0, f1 = found(x0[b], batch.boxes[b, :n]), found(x[b], batch.boxes[b, :n])
            hits += torch.stack([f0.sum(), f1.sum(), (f0 & ~f1).sum(), (f1 & ~f0).sum()])
            n_truth += n
    return {
        "run": args.run,
        "step": ckpt.step,
        "scenes": len(dataset),
        "digits": n_truth,
        "det_x0": round(int(hits[0]) / n_truth, 4),
        "det_x": round(int(hits[1]) / n_truth, 4),
        "lost_by_x_step_per_1000": round(1000 * int(hits[2]) / n_truth, 1),
        "found_by_x_step_per_1000": round(1000 * int(hits[3]) / n_truth, 1),
        "x_step": {"iters": schedule.iters, "lr": schedule.lr, "max_px": schedule.max_px},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory of a classification run")
    parser.add_argument("--which", default="last", choices=("best", "last"))
    parser.add_argument("--data", default=None, help="dataset directory or generator name")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--scenes", type=count, default=500)
    parser.add_argument("--set", action="append", default=[], dest="sets", help="train.KEY=V")
    print(json.dumps(probe(parser.parse_args())))


if __name__ == "__main__":
    main()
