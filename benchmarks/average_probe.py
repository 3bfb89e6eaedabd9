"""Paired comparison of the raw weights and moving averages of them, on one training run.

Trains a preset once (the demo's by default, on a ``make demo``-style dataset) and keeps, beside
the run's own weights, one ``AveragedModel`` per ``--decays`` value (with the library's warm-up,
:func:`mistnet.trainer.warmed_up_ema`). Every validation point
evaluates all of them on the same scenes, and the end of the run evaluates them on the test
split, so the differences come from the averaging alone and not from run-to-run noise. The run
itself should have ``train.ema_decay=0`` (the default override below) so that the raw weights
are what it validates and selects on.

    python benchmarks/average_probe.py --out /tmp/avg --minutes 12

prints one ``val`` line per validation point and a final ``test`` table, and writes
``OUT/averages.jsonl`` and ``OUT/test.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from common import own_folders

from mistnet.config import resolve
from mistnet.data import open_dataset
from mistnet.data.sampling import loader
from mistnet.demo import build_data
from mistnet.engine import evaluate
from mistnet.loop import Callbacks, train
from mistnet.trainer import ModelEma

METRICS = ("det_iou50", "classif", "both")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory for the data and the run")
    parser.add_argument("--preset", default="mnist-hard-cpu")
    parser.add_argument("--minutes", type=float, default=12.0, help="training time cap")
    parser.add_argument("--decays", type=float, nargs="+", default=[0.99, 0.995, 0.998])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    out = Path(args.out)
    own_folders("average_probe.py", out)  # its run/ is removed below
    data = out / "data"
    if not (data / "manifest.json").exists():
        build_data(data, 20_000, 300, 500, seed=0)
    shutil.rmtree(
        out / "run", ignore_errors=True
    )  # the script's own: the data is kept, not the run
    (out / "averages.jsonl").unlink(missing_ok=True)
    base = [f"data.path={json.dumps(str(data))}", "train.ema_decay=0"]
    cfg = resolve(args.preset, [*base, *args.overrides])
    averages: dict[str, ModelEma] = {}
    raw = []  # the run's model, once the loop has built it
    val = list(loader(open_dataset(str(data), "val"), cfg.train.batch_size, 0))
    if cfg.train.val_batches:
        val = val[: cfg.train.val_batches]

    def average(trainer, result) -> None:
        if not raw:  # an average's first update copies the weights: no step is missed
            raw.append(trainer.model)
            averages.update({f"ema {d:g}": ModelEma(trainer.model, d) for d in args.decays})
        for a in averages.values():
            a.update(trainer.model)

    def evaluate_all(step: int, metrics: dict[str, float]) -> None:
        record = {"raw": metrics["both"]}
        record.update({k: evaluate(a.module, val)["both"] for k, a in averages.items()})
        with (out / "averages.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        print("val both:", ", ".join(f"{k} {v:.3f}" for k, v in record.items()), flush=True)

    hooks = Callbacks(on_step=average, on_validate=evaluate_all)
    summary = train(cfg, out / "run", max_minutes=args.minutes, progress=False, callbacks=hooks)
    print("steps", summary["steps"], "images/s", summary["images_per_s"])
    test = loader(open_dataset(str(data), "test"), 32, 0)
    final = {}
    models = {"raw": raw[-1], **{k: a.module for k, a in averages.items()}}
    for name, model in models.items():
        result = evaluate(model, test)
        final[name] = {m: result[m] for m in METRICS}
        print(f"test {name:>10}: " + "  ".join(f"{m} {final[name][m]:.3f}" for m in METRICS))
    (out / "test.json").write_text(json.dumps(final, indent=1))


if __name__ == "__main__":
    main()
