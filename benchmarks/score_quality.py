"""How well a detection's score separates true detections from false ones.

Runs a trained model on a dataset's scenes as ``mist detect`` does (``detection.detect_image``
on each whole image, all K detections kept) and matches the detections to the ground truth
(IoU > 0.5, greedily in score order, each true box matched once: a match is a true detection,
the rest false). It prints one JSON line:

- ``ap50``: average precision at IoU 0.5 with the detections of all scenes ranked by score
  (all-point interpolated, as PASCAL VOC 2010+), class-agnostic; ``ap50_classes`` also asks for
  the right class (a classifier only);
- at ``--min-score`` (default ``mist detect``'s for the model; repeat it for several): ``kept_true`` (the
  fraction of true detections kept), ``dropped_false`` (the fraction of false ones dropped),
  ``precision`` and ``recall`` of what is kept, under ``at`` by threshold;
- the score ranges of true and false detections, and the counts.

    python benchmarks/score_quality.py RUN|MODEL [--data DIR_OR_GENERATOR] [--split test]
        [--scenes 500] [--min-score S ...]
"""

from __future__ import annotations

import argparse
import json

import torch
from common import count

from mistnet.data.runs import open_data
from mistnet.detection import default_min_score, detect_image
from mistnet.ops import box_iou, keypoints_to_boxes
from mistnet.pretrained import load_any


def average_precision(scores: torch.Tensor, true: torch.Tensor, n_truth: int) -> float:
    """All-point interpolated AP of detections ``scores`` ``(N,)`` marked ``true`` ``(N,)``.

    Example:
        >>> average_precision(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([True, False, True]), 2)
        0.8333333333333333
    """
    if n_truth == 0:
        return float("nan")
    order = scores.argsort(descending=True, stable=True)
    hits = true[order].double()
    tp = hits.cumsum(0)
    precision = tp / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    # the precision envelope: the best precision at this recall or beyond
    envelope = precision.flip(0).cummax(0).values.flip(0)
    return float((envelope * hits).sum() / n_truth)


def match(
    kp: torch.Tensor, boxes: torch.Tensor, same: torch.Tensor | None = None, iou: float = 0.5
) -> torch.Tensor:
    """Which of the ``(N, 3)`` detections (highest score first) match a distinct ``(M, 4)``
    ground-truth box with IoU > ``iou`` (and, given ``same`` ``(N, M)``, where it is True):
    ``(N,)`` bool."""
    overlap = box_iou(keypoints_to_boxes(kp).double(), boxes.double())  # (N, M)
    if same is not None:
        overlap = overlap.masked_fill(~same, -1.0)
    free = torch.ones(boxes.shape[0], dtype=torch.bool)
    hit = torch.zeros(kp.shape[0], dtype=torch.bool)
    for n in range(kp.shape[0]):
        o = overlap[n].masked_fill(~free, -1.0)
        if o.numel() and o.max() > iou:
            free[o.argmax()] = False
            hit[n] = True
    return hit


@torch.inference_mode()
def measure(
    run: str, data: str | None, split: str, scenes: int, min_scores: list[float] | None = None
) -> dict:
    """Detect on the first ``scenes`` scenes of ``split`` and score the scores."""
    cfg, model, _ = load_any(run, "best", device="cpu")
    min_scores = min_scores or [default_min_score(model)]
    source, dataset = open_data(cfg, data, split)
    signed = cfg.model.output == "signed"
    scores, true, right, n_truth = [], [], [], 0
    for i in range(min(scenes, len(dataset))):
        item = dataset[i]
        n = int(item["count"])
        x = 2 * item["image"] - 1 if signed else item["image"]
        pred = detect_image(model, x, model.k)
        hit = match(pred.keypoints, item["boxes"][:n])
        scores.append(pred.scores)
        true.append(hit)
        if pred.logits is not None and "labels" in item:
            same = pred.logits.argmax(-1)[:, None] == item["labels"][:n][None, :]  # (K, n)
            right.append(match(pred.keypoints, item["boxes"][:n], same))
        n_truth += n
    s, t = torch.cat(scores), torch.cat(true)
    out = {
        "run": run,
        "data": source,
        "split": split,
        "scenes": len(scores),
        "truth": n_truth,
        "detections": len(s),
        "ap50": round(average_precision(s, t, n_truth), 4),
        "at": {str(m): _cut(s, t, n_truth, m) for m in min_scores},
        "true_scores": _range(s[t]),
        "false_scores": _range(s[~t]),
    }
    if right:
        out["ap50_classes"] = round(average_precision(s, torch.cat(right), n_truth), 4)
    return out


def _cut(s: torch.Tensor, t: torch.Tensor, n_truth: int, min_score: float) -> dict:
    """What ``--min-score min_score`` keeps of the detections scored ``s``, true where ``t``."""
    kept = s >= min_score
    return {
        "kept_true": round(float(kept[t].double().mean()), 4) if t.any() else None,
        "dropped_false": round(float((~kept[~t]).double().mean()), 4) if (~t).any() else None,
        "precision": round(float(t[kept].double().mean()), 4) if kept.any() else None,
        "recall": round(float(t[kept].sum()) / max(n_truth, 1), 4),
    }


def _range(s: torch.Tensor) -> list[float] | None:
    """Min, median and max of ``s``, or None when empty."""
    if not len(s):
        return None
    return [round(float(v), 4) for v in (s.min(), s.median(), s.max())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory or shipped model name")
    parser.add_argument("--data", default=None, help="dataset directory or generator name")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--scenes", type=count, default=500, help="scenes to measure on")
    parser.add_argument("--min-score", type=float, action="append", help="threshold(s)")
    args = parser.parse_args()
    print(json.dumps(measure(args.run, args.data, args.split, args.scenes, args.min_score)))


if __name__ == "__main__":
    main()
