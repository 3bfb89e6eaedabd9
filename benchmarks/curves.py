"""Validation metrics of several runs against training minutes and steps: a figure and a table.

    python benchmarks/curves.py RUN [RUN ...] [--metric both --metric det_iou50] [--out curves.png]
        [--label NAME ...]

Reads each run directory's ``log.jsonl`` (``mistnet.rundir.Run.records``); a validation gets the
wall time of the training line logged at its step or the last one before it
(``mistnet.viz.log_curves``). Prints one Markdown table per metric (rows: runs) for RESULTS.md and
draws one panel per metric against training minutes (``mistnet.viz.plot_runs``, as
``mist plot --minutes``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mistnet.errors import MistError
from mistnet.rundir import Run
from mistnet.viz import log_curves, plot_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--metric", action="append", default=[])
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--out", type=Path, help="figure file (PNG); no figure without it")
    args = parser.parse_args()
    metrics = args.metric or ["both"]
    if len(args.label) > len(args.runs):
        parser.error(f"{len(args.label)} --label for {len(args.runs)} runs")
    labels = args.label + [run.name for run in args.runs[len(args.label) :]]
    try:
        records = {lab: Run(r).records() for lab, r in zip(labels, args.runs, strict=True)}
    except MistError as exc:  # no run there, a damaged log
        parser.error(str(exc))
    curves = {lab: log_curves(recs) for lab, recs in records.items()}
    for metric in metrics:
        print(f"\n{metric} at validation (step / minutes: value)\n")
        print("| run | points |\n|---|---|")
        for label, by_key in curves.items():
            points = by_key.get(f"val/{metric}", [])
            print(
                f"| {label} | " + ", ".join(f"{s} / {m:.1f}: {v:.3f}" for s, m, v in points) + " |"
            )
    if args.out:
        try:  # never over a file of the user's (a figure mistnet wrote is replaced)
            plot_runs(records, args.out, keys=[f"val/{m}" for m in metrics], minutes=True)
        except MistError as exc:
            parser.error(str(exc))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
