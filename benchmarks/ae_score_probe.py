"""Could an auto-encoder's detection score judge its boxes as the class probability does a
classifier's? Three per-box confidences, alone and times the window mass (the score today):

- ``explained``: the share of the box's patch that its decoded patch rebuilds,
  ``1 - |p - d|^2 / |p|^2`` clipped to [0, 1];
- ``unique``: how much worse the whole reconstruction gets without this patch, over the ink
  in its box, ``sum(e^2 + 2 e (I - R)) / sum_box(I^2)`` clipped to [0, 1] (``e`` the patch
  pasted alone, ``R`` the sum of all): what this box explains that no other box does.

Each is matched against the ground truth as ``score_quality.py`` does (IoU > .5, one to one)
and printed with its AP@.5, the true and false medians, and (kept true, dropped false) at
cuts .3 to .7.

    python benchmarks/ae_score_probe.py [MODEL_OR_RUN] --data DIR [--split val] [--scenes 300]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch
from common import count

from mistnet.data.runs import open_data
from mistnet.ops import paste_patches
from mistnet.pretrained import load_any

_spec = importlib.util.spec_from_file_location(
    "score_quality", Path(__file__).with_name("score_quality.py")
)
score_quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(score_quality)


def confidences(model, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Keypoints ``(K, 3)`` and each confidence ``(K,)`` for one ``(1, C, H, W)`` image."""
    out = model(x)
    _, K, C, P, _ = out.task.shape
    H, W = x.shape[-2:]
    kp = out.keypoints
    p, d = out.patches[0], out.task[0]
    explained = 1 - ((p - d) ** 2).flatten(1).sum(1) / (p**2).flatten(1).sum(1).clamp_min(1e-6)
    each = torch.stack(
        [paste_patches(out.task[:, k : k + 1], kp[:, k : k + 1], H, W)[0] for k in range(K)]
    )  # (K, C, H, W)
    resid = x[0] - each.sum(0)
    gain = (each**2 + 2 * each * resid).flatten(1).sum(1)
    ones = torch.ones(1, 1, C, P, P)
    box = torch.stack([paste_patches(ones, kp[:, k : k + 1], H, W)[0] for k in range(K)]) > 0
    ink = ((x[0] ** 2) * box).flatten(1).sum(1).clamp_min(1e-6)
    mass = out.scores[0]
    conf = {"explained": explained.clamp(0, 1), "unique": (gain / ink).clamp(0, 1)}
    scores = {"mass": mass, **conf, **{f"mass x {n}": mass * c for n, c in conf.items()}}
    return kp[0], scores


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="mnist-hard-autoencoder")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--scenes", type=count, default=300)
    args = parser.parse_args()
    cfg, model, _ = load_any(args.run, "best", device="cpu")
    _, dataset = open_data(cfg, args.data, args.split)
    found, hits, n_truth = {}, [], 0
    for i in range(min(args.scenes, len(dataset))):
        item = dataset[i]
        n = int(item["count"])
        kp, scores = confidences(model, item["image"][None])
        order = scores["mass"].argsort(descending=True, stable=True)  # E_K's ranking
        hit = torch.empty(len(kp), dtype=torch.bool)
        hit[order] = score_quality.match(kp[order], item["boxes"][:n])
        hits.append(hit)
        n_truth += n
        for name, s in scores.items():
            found.setdefault(name, []).append(s)
    t = torch.cat(hits)
    print(f"{len(t)} boxes, {int((~t).sum())} false, {n_truth} digits ({args.split})")
    for name, parts in found.items():
        s = torch.cat(parts)
        cuts = " ".join(
            f"{m}: {float((s[t] >= m).double().mean()):.3f}/{float((s[~t] < m).double().mean()):.3f}"
            for m in (0.3, 0.4, 0.5, 0.6, 0.7)
        )
        ap = score_quality.average_precision(s, t, n_truth)
        print(
            f"{name:18s} AP {ap:.4f}  median true {float(s[t].median()):.3f} "
            f"false {float(s[~t].median()):.3f}  kept/dropped {cuts}"
        )


if __name__ == "__main__":
    main()
