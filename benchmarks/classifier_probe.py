"""How fast can the patch classifier learn, given perfect keypoints? (issue 12's upper bound)

Trains only the patch classifier T_tau of a preset on patches cut at the ground-truth centres
(the side and patch size of the preset), with per-patch cross-entropy and Adam, and reports the
patch accuracy on the validation scenes against steps and seconds. This isolates the classifier's
learning speed from localisation: the supervised MIST variant does the same plus the heatmap.

    python benchmarks/classifier_probe.py --data DIR --steps 1500 [--set model.patch_base_width=32]
        [--lr 1e-3] [--weight-decay 0] [--threads 1] [--out probe.jsonl]

DIR is a dataset directory (``mist data make mnist-hard --out DIR``). Prints one line per
evaluation and appends JSON lines to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import count, own_lines, positive

from mistnet.config import resolve
from mistnet.data import open_dataset
from mistnet.data.sampling import StepSampler, loader
from mistnet.engine import Batch
from mistnet.models.build import build_task_net
from mistnet.ops import boxes_to_keypoints, extract_patches


def gt_patches(batch: Batch, side: float, k: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    kp, labels = boxes_to_keypoints(batch.boxes, batch.labels, side, k)
    patches = extract_patches(batch.images, kp, patch)  # (B, K, C, P, P)
    return patches.flatten(0, 1), labels.flatten()  # (B*K, C, P, P), (B*K,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--preset", default="mnist-hard-cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=count, default=1500)
    parser.add_argument("--lr", type=positive, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0, help="> 0: AdamW")
    parser.add_argument("--eval-every", type=count, default=250)
    parser.add_argument("--threads", type=count, default=1)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.out:  # appended to: a file of its own lines, or a new one
        own_lines(Path(args.out), "classifier_probe.py", {"label", "step", "val_acc"})
    torch.set_num_threads(args.threads)
    cfg = resolve(args.preset, args.overrides)
    m = cfg.model
    torch.manual_seed(0)
    net = build_task_net(m)
    if args.weight_decay > 0:
        opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    train, val = open_dataset(args.data, "train"), open_dataset(args.data, "val")
    B = cfg.train.batch_size
    val_batches = [Batch.from_dict(b, "cpu") for b in loader(val, 100, 0)]
    sampler = StepSampler(len(train), B, 0, 0, args.steps)
    spent, t0 = 0.0, time.perf_counter()

    def accuracy() -> float:
        net.eval()
        right = total = 0
        with torch.inference_mode():
            for b in val_batches:
                x, y = gt_patches(b, m.base_side, m.k, m.patch_size)
                keep = y >= 0
                right += int((net(x[keep]).argmax(-1) == y[keep]).sum())
                total += int(keep.sum())
        net.train()
        return right / total

    for step, raw in enumerate(loader(train, B, 0, sampler), start=1):
        x, y = gt_patches(Batch.from_dict(raw, "cpu"), m.base_side, m.k, m.patch_size)
        loss = F.cross_entropy(net(x), y, ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            spent += time.perf_counter() - t0
            record = {
                "label": args.label,
                "step": step,
                "train_s": round(spent, 1),
                "ms_per_step": round(1000 * spent / step, 1),
                "loss": round(float(loss.detach()), 4),
                "val_acc": round(accuracy(), 4),
            }
            print(json.dumps(record), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(record) + "\n")
            t0 = time.perf_counter()


if __name__ == "__main__":
    main()
