"""Time to accuracy: the minutes and steps each recipe needs to reach validation "both" (a digit
found at IoU .5 *and* classified right) of .90 and .95 on MNIST-hard scenes of full MNIST.

    python benchmarks/time_to_accuracy.py [--minutes 30] [--threads 1] [--work tta-work]
        [--recipe demo --recipe paper] [--report-only] [--out benchmarks/time_to_accuracy]

The recipes train side by side, one process each with ``--threads`` threads, so that they share
the machine's load (compare their minutes with each other; a run alone is faster). Each is
``mist train --preset P --max-minutes M`` on the same data and seed:

    demo   mnist-hard-cpu: the `make demo` recipe (small networks, Hungarian set loss, centring
           prior, a moving average of the weights)
    paper  mnist-hard-classify: the paper's sizes and settings (validation every 100 steps
           instead of 500, for the curve's resolution)

Then each run's best checkpoint is evaluated on the 2,000 test scenes, and the script prints a
Markdown table (minutes / steps to .90 and .95, the best validation point, test det / classif /
both) and writes the curves of validation both and det_iou50 against minutes. The run logs,
configs and test metrics are copied to ``--out`` (checkpoints stay in ``--work``); a recipe already
there is reported from that copy, not trained again (remove its folder to retrain). Full MNIST must
be in the data cache (``mist data download mnist``, or ``--from DIR`` offline).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from common import own_folders

from mistnet.rundir import Run
from mistnet.viz import log_curves, plot_runs

MAKE_DATA = "data make mnist-hard --digits mnist --n-train 20000 --n-val 300 --n-test 2000 --seed 0"
RECIPES = {
    "demo": ["--preset", "mnist-hard-cpu", "--set", "train.steps=100000"],
    "paper": [
        "--preset",
        "mnist-hard-classify",
        "--set",
        "train.steps=100000",
        "--set",
        "train.val_every=100",
        "--set",
        "train.ckpt_every=100",
    ],
}
THRESHOLDS = (0.90, 0.95)


def mist(*args: str) -> list[str]:
    return [sys.executable, "-m", "mistnet", *args]


def train(names: list[str], data: Path, work: Path, minutes: float, threads: int) -> None:
    procs = []
    for name in names:
        run = work / name
        if (run / "log.jsonl").exists():
            print(f"{run} exists: not trained again (remove it to retrain)")
            continue
        argv = mist("train", *RECIPES[name], "--data", str(data), "--out", str(run))
        argv += ["--max-minutes", str(minutes), "--threads", str(threads), "--no-progress"]
        print(" ".join(argv[2:]), flush=True)
        log = (work / f"{name}.out").open("w")
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"a training failed: {proc.args} (see {work}/*.out)")


def first_reach(points: list[tuple[int, float, float]], level: float) -> str:
    for step, minutes, value in points:
        if value >= level:
            return f"{minutes:.1f} min / {step}"
    return "not reached"


def report(names: list[str], work: Path, out: Path, threads: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    records, rows = {}, []
    for name in names:
        keep = out / name
        run = work / name
        if not (run / "log.jsonl").exists() and (keep / "log.jsonl").exists():
            run = keep  # reported from the copy an earlier call kept (its checkpoints are gone)
        test = run / "eval-test.json"
        if not test.exists():
            subprocess.run(
                mist("eval", str(run), "--split", "test", "--threads", str(threads)), check=True
            )
        metrics = json.loads(test.read_text())["metrics"]
        records[name] = Run(run).records()
        curves = log_curves(records[name])
        both = curves["val/both"]
        best = max(both, key=lambda p: p[2])
        last_train = [r for r in records[name] if r.get("split") == "train"][-1]
        rows.append(
            f"| {name} | {last_train['wall'] / 60:.1f} min / {last_train['step']} | "
            + " | ".join(first_reach(both, level) for level in THRESHOLDS)
            + f" | {best[2]:.3f} at {best[1]:.1f} min / {best[0]} | "
            + f"{metrics['det_iou50']:.3f} / {metrics['classif']:.3f} / {metrics['both']:.3f} |"
        )
        if run != keep:
            keep.mkdir(exist_ok=True)
            for file in ("config.json", "log.jsonl", "eval-test.json"):
                shutil.copy2(run / file, keep / file)
    print(
        "\n| recipe | trained (minutes / steps) | both ≥ .90 | both ≥ .95 | best validation both "
        "| test det / classif / both (best checkpoint, 2,000 scenes) |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    figure = out / "curves.png"
    plot_runs(records, figure, keys=["val/both", "val/det_iou50"], minutes=True)
    print(f"\nwrote {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("tta-work"))
    parser.add_argument("--recipe", action="append", choices=sorted(RECIPES), default=[])
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/time_to_accuracy"))
    args = parser.parse_args()
    own_folders("time_to_accuracy.py", args.work, args.out)  # its data, runs, logs; copies
    names = args.recipe or list(RECIPES)
    data = args.work / "mnist-hard"
    if not data.exists():
        subprocess.run(mist(*MAKE_DATA.split(), "--out", str(data)), check=True)
    if not args.report_only:
        kept = [n for n in names if (args.out / n / "log.jsonl").exists()]
        fresh = [n for n in names if n not in kept or (args.work / n / "log.jsonl").exists()]
        train(fresh, data, args.work, args.minutes, args.threads)
    report(names, args.work, args.out, args.threads)


if __name__ == "__main__":
    main()
