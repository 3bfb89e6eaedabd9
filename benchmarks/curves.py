"""Validation metrics of several runs against training minutes and steps: a figure and a table.

    python benchmarks/curves.py RUN [RUN ...] [--metric both --metric det_iou50] [--out curves.png]
        [--label NAME ...]

Reads each run directory's ``log.jsonl``; a validation line gets the wall time of the training
line logged at its step (or the last one before it). Prints one Markdown table per metric
(rows: runs, columns: minutes) for RESULTS.md and draws one panel per metric.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def read_curve(run: Path, metric: str) -> list[tuple[int, float, float]]:
    """``[(step, minutes, value), ...]`` of ``metric`` at the validations of ``run``."""
    wall: dict[int, float] = {}
    points: list[tuple[int, float]] = []
    for line in (run / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "train":
            wall[record["step"]] = record["wall"]
        elif record.get("split") == "val" and metric in record:
            points.append((record["step"], record[metric]))
    curve = []
    for step, value in points:
        before = [s for s in wall if s <= step]
        minutes = wall[max(before)] / 60 if before else math.nan
        curve.append((step, minutes, value))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--metric", action="append", default=[])
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--out", type=Path, help="figure file (PNG); no figure without it")
    args = parser.parse_args()
    metrics = args.metric or ["both"]
    labels = args.label + [run.name for run in args.runs[len(args.label) :]]
    curves = {
        m: {lab: read_curve(r, m) for lab, r in zip(labels, args.runs, strict=True)}
        for m in metrics
    }
    for metric, by_run in curves.items():
        print(f"\n{metric} at validation (step / minutes: value)\n")
        print("| run | " + " | ".join(["points"]) + " |\n|---|---|")
        for label, curve in by_run.items():
            cells = ", ".join(f"{s} / {m:.1f}: {v:.3f}" for s, m, v in curve)
            print(f"| {label} | {cells} |")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
        for ax, (metric, by_run) in zip(axes[0], curves.items(), strict=True):
            for label, curve in by_run.items():
                ax.plot([m for _, m, _ in curve], [v for _, _, v in curve], marker="o", label=label)
            ax.set_xlabel("training minutes")
            ax.set_ylabel(f"validation {metric}")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
