"""Seeds of one auto-encoder recipe: train it with several seeds, each on its own MNIST-hard
scenes (the data seed is the run's seed), for the same number of steps, and report test RMSE and
class-agnostic det_iou50 of each best checkpoint with mean ± std.

    python benchmarks/recon_seeds.py --config RUN/config.json --steps 433 --seeds 0 1 2 \
        [--run 0=RUN] [--n-test 2000] [--threads 1] [--work bench-work/seeds] \
        [--out benchmarks/recon_seeds]

``--config`` is a run's recorded config (e.g. the MNIST-hard MIST run of ``mist reproduce
table1 --budget cpu``); every seed trains it with ``train.steps`` set to ``--steps`` and no time
cap, so that a seed's result does not depend on machine load. ``--run S=DIR`` takes an existing
run as seed S instead of training it (it must have trained the same config for the same steps on
data of seed S). The seeds train side by side, one process each with ``--threads`` threads.

Each seed is evaluated on the test split of its own dataset (``--n-test`` scenes; the training
and validation splits are those of ``mist data make mnist-hard --digits mnist --n-train 20000
--n-val 300 --seed S``, which do not depend on ``--n-test``). The logs, configs and test records
are copied to ``--out``; checkpoints stay in ``--work``. Full MNIST must be in the data cache.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from common import own_folders


def mist(*args: str) -> list[str]:
    return [sys.executable, "-m", "mistnet", *map(str, args)]


def dataset(work: Path, seed: int, n_test: int) -> Path:
    path = work / f"data-seed{seed}"
    if not (path / "manifest.json").is_file():
        subprocess.run(
            mist("data", "make", "mnist-hard", "--digits", "mnist", "--n-train", "20000",
                 "--n-val", "300", "--n-test", n_test, "--seed", seed, "--out", path),
            check=True,
        )  # fmt: skip
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--steps", required=True, type=int)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--run", action="append", default=[], metavar="S=DIR")
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("bench-work/seeds"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/recon_seeds"))
    args = p.parse_args()
    if any("=" not in item or not item.split("=", 1)[0].isdigit() for item in args.run):
        p.error("--run takes S=DIR: a seed, then the run directory of that seed")
    own_folders("recon_seeds.py", args.work, args.out)  # its logs and runs; copies of their files

    given = {int(s): Path(d) for s, d in (item.split("=", 1) for item in args.run)}
    data = {s: dataset(args.work, s, args.n_test) for s in args.seeds}
    runs = {s: given.get(s, args.work / f"seed{s}") for s in args.seeds}
    procs = []
    for s in args.seeds:
        if s in given or (runs[s] / "summary.json").is_file():
            continue
        cmd = mist("train", "--preset", args.config, "--data", data[s], "--out", runs[s],
                   "--threads", args.threads, "--no-progress",
                   "--set", f"train.steps={args.steps}", "--set", f"train.seed={s}",
                   "--set", f"data.seed={s}")  # fmt: skip
        log = open(args.work / f"seed{s}.out", "w")  # noqa: SIM115 (closed with the process)
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        if proc.wait() != 0:
            sys.exit(f"a training failed; see {log.name}")
        log.close()

    rows = []
    for s in args.seeds:
        record = args.out / f"seed{s}" / "eval-test.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        if not record.is_file():
            subprocess.run(
                mist("eval", runs[s], "--data", data[s], "--json", record), check=True,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
        for name in ("config.json", "log.jsonl", "summary.json"):
            shutil.copyfile(runs[s] / name, args.out / f"seed{s}" / name)
        result = json.loads(record.read_text())
        summary = json.loads((runs[s] / "summary.json").read_text())
        rows.append((s, summary["steps"], result["metrics"], result["images"]))

    print("| seed | steps | test scenes | RMSE | zero image | image mean | det_iou50 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s, steps, m, n in rows:
        print(f"| {s} | {steps} | {n} | {m['rmse']:.4f} | {m['rmse_zero']:.4f} | "
              f"{m['rmse_image_mean']:.4f} | {m['det_iou50']:.4f} |")  # fmt: skip
    for key in ("rmse", "det_iou50"):
        values = [m[key] for _, _, m, _ in rows]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{key}: {statistics.mean(values):.4f} ± {spread:.4f} (mean ± std, n={len(values)})")


if __name__ == "__main__":
    main()
