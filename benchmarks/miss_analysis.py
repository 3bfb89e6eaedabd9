"""Where a trained model's detections are lost: a census of the misses and the false detections.

Runs the run's best checkpoint on the first ``--scenes`` scenes of a split, matches its K
detections to the ground truth as ``det_iou50`` does (greedy, one-to-one, IoU > 0.5), and sorts
every **missed digit** and every **unmatched detection** into causes:

missed digit (no detection matched it):
- ``peak_suppressed``: the heatmap has a 3x3 local maximum within 3 px of the digit's centre, but
  the NMS window removed it (a stronger peak lies within the window);
- ``peak_outranked``: such a peak survived NMS but ranked below the K-th detection;
- ``no_peak``: no 3x3 local maximum within 3 px (the heatmap does not see the digit as one);
and, for each, the distance to the nearest other digit.

unmatched detection (K detections for K digits: each one is a miss elsewhere):
- ``double``: its nearest digit is matched by another detection (a digit found twice);
- ``off_centre``: its nearest digit is unmatched, but the IoU is <= 0.5;
- ``between``: two digits lie within 14 px of it and neither is within 5 px;
- ``background``: no digit centre within 10 px.
(Categories are checked in the order between, background, double, off_centre.)

    python benchmarks/miss_analysis.py RUN [--which best|last] [--data DIR] [--split test]
        [--scenes 2000] [--nms-window N] [--figure misses.png]

``--nms-window`` re-scores the same trained heatmap with another NMS window (evaluation only).
``--figure`` draws the first scenes that have a miss, with the digits (green: found, red:
missed) and the detections (blue: matched, orange: unmatched) over the heatmap.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import torch
import torch.nn.functional as F
from common import count

from mistnet.data.runs import open_data
from mistnet.data.sampling import loader
from mistnet.errors import MistError
from mistnet.ops import box_iou, keypoints_to_boxes, scale_pool
from mistnet.outfiles import check_new_file, new_file
from mistnet.rundir import Run

FIGURE_WRITER = "benchmarks/miss_analysis.py"  # named in its PNGs: a rerun replaces its own


def greedy(iou: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """For each ground truth (columns, in order) the matched detection (row) or -1."""
    taken = torch.zeros(iou.shape[0], dtype=torch.bool)
    out = torch.full((iou.shape[1],), -1, dtype=torch.long)
    for j in range(iou.shape[1]):
        col = iou[:, j].masked_fill(taken, -1.0)
        if col.numel() and col.max() > threshold:
            out[j] = int(col.argmax())
            taken[out[j]] = True
    return out


def census(
    log_h: torch.Tensor, kp: torch.Tensor, boxes: torch.Tensor, nms_window: int
) -> tuple[Counter, list[float], torch.Tensor, torch.Tensor]:
    """The causes in one scene: ``log_h`` ``(S, H, W)``, ``kp`` ``(K, 3)``, ``boxes`` ``(n, 4)``.

    Returns the counts, the nearest-neighbour distances of the missed digits, and which digits
    and which detections are matched.
    """
    counts: Counter = Counter()
    centres, det = boxes[:, :2], kp[:, :2]
    match = greedy(box_iou(keypoints_to_boxes(kp).double(), boxes.double()))
    found = match >= 0
    used = torch.zeros(len(kp), dtype=torch.bool)
    used[match[found]] = True
    pooled = scale_pool(log_h.exp()[None])[0, 0]  # (H, W)
    local3 = pooled >= F.max_pool2d(pooled[None, None], 3, 1, 1)[0, 0]
    localn = pooled >= F.max_pool2d(pooled[None, None], nms_window, 1, nms_window // 2)[0, 0]
    kth = pooled[det[:, 1].long(), det[:, 0].long()].min()
    ys, xs = torch.nonzero(local3, as_tuple=True)
    peaks = torch.stack([xs, ys], 1).double()
    gaps = torch.cdist(centres.double(), centres.double()).fill_diagonal_(float("inf"))
    near = []
    for j in torch.nonzero(~found).flatten().tolist():
        near.append(float(gaps[j].min()))
        d = (peaks - centres[j].double()).norm(dim=1)
        close = torch.nonzero(d <= 3).flatten()
        if not len(close):
            counts["missed/no_peak"] += 1
            continue
        best = close[pooled[ys[close], xs[close]].argmax()]
        if not localn[ys[best], xs[best]]:
            counts["missed/peak_suppressed"] += 1
        elif pooled[ys[best], xs[best]] <= kth:
            counts["missed/peak_outranked"] += 1
        else:  # survived and ranked, but its detection went elsewhere (tie, matching order)
            counts["missed/other"] += 1
    dist = torch.cdist(det.double(), centres.double())  # (K, n)
    for i in torch.nonzero(~used).flatten().tolist():
        d = dist[i]
        order = d.argsort()
        if len(d) >= 2 and d[order[1]] <= 14 and d[order[0]] > 5:
            counts["false/between"] += 1
        elif d.min() > 10:
            counts["false/background"] += 1
        elif found[order[0]]:
            counts["false/double"] += 1
        else:
            counts["false/off_centre"] += 1
    return counts, near, found, used


@torch.inference_mode()
def analyse(args: argparse.Namespace) -> dict:
    cfg, model, ckpt = Run(args.run).load(args.which, device="cpu")
    if args.nms_window:
        model.nms_window = args.nms_window
    _, dataset = open_data(cfg, args.data, args.split)
    dataset = torch.utils.data.Subset(dataset, range(min(args.scenes, len(dataset))))
    total: Counter = Counter()
    near_missed, near_all, n_truth, shown = [], [], 0, []
    for batch in loader(dataset, 64, 0):
        _, log_h = model.log_heatmaps(batch["image"])
        kp, _ = model.detect(log_h)
        for b in range(len(kp)):
            n = int(batch["count"][b])
            boxes = batch["boxes"][b, :n]
            counts, near, found, used = census(log_h[b], kp[b, :n], boxes, model.nms_window)
            total += counts
            near_missed += near
            gaps = torch.cdist(boxes[:, :2], boxes[:, :2]).fill_diagonal_(float("inf"))
            near_all += gaps.min(1).values.tolist()
            n_truth += n
            if near and len(shown) < args.show:
                shown.append((batch["image"][b], log_h[b], kp[b, :n], boxes, found, used))
    if args.figure and shown:
        draw(shown, args.figure)
    missed = sum(v for k, v in total.items() if k.startswith("missed/"))
    nm, na = torch.tensor(near_missed or [0.0]), torch.tensor(near_all)
    return {
        "run": args.run,
        "step": ckpt.step,
        "nms_window": model.nms_window,
        "scenes": len(dataset),
        "digits": n_truth,
        "det_iou50": round(1 - missed / n_truth, 4),
        "causes_per_1000_digits": {
            k: round(1000 * v / n_truth, 1) for k, v in sorted(total.items())
        },
        "nearest_neighbour_px": {
            "missed_median": round(float(nm.median()), 1),
            "all_median": round(float(na.median()), 1),
            "missed_share_below_16px": round(float((nm < 16).double().mean()), 3),
            "all_share_below_16px": round(float((na < 16).double().mean()), 3),
        },
    }


def draw(shown: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(shown), figsize=(2.6 * len(shown), 5.4), squeeze=False)
    for c, (image, log_h, kp, boxes, found, used) in enumerate(shown):
        for r, back in enumerate((image[0], scale_pool(log_h.exp()[None])[0, 0])):
            ax = axes[r, c]
            ax.imshow(back, cmap="gray" if r == 0 else "magma")
            for (x, y), f in zip(boxes[:, :2].tolist(), found.tolist(), strict=True):
                ax.plot(x, y, "o", ms=5, mfc="none", mec="lime" if f else "red", mew=1.5)
            for (x, y, _), u in zip(kp.tolist(), used.tolist(), strict=True):
                ax.plot(x, y, "+", ms=7, color="deepskyblue" if u else "orange", mew=1.5)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("heatmap")
    fig.suptitle(
        "circles: digits (green found, red missed); +: detections (blue matched, orange not)"
    )
    fig.tight_layout()
    with new_file(path, FIGURE_WRITER) as tmp:
        fig.savefig(tmp, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory")
    parser.add_argument("--data", default=None, help="dataset directory or generator name")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--scenes", type=count, default=2000)
    parser.add_argument("--which", default="best", choices=("best", "last"), help="checkpoint")
    parser.add_argument("--nms-window", type=int, default=0, help="0: the model's own")
    parser.add_argument("--figure", default=None, help="draw scenes with misses to this PNG")
    parser.add_argument("--show", type=int, default=6, help="scenes in the figure")
    args = parser.parse_args()
    try:  # a PNG of this script's, or none: never a file of the user's
        if args.figure:
            check_new_file(args.figure, FIGURE_WRITER, option="--figure")
    except MistError as exc:
        parser.error(str(exc))
    print(json.dumps(analyse(args), indent=1))


if __name__ == "__main__":
    main()
