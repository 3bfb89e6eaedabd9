"""Paired comparison of the raw weights and moving averages of them, on one training run.

Trains a preset once (the demo's by default, on a ``make demo``-style dataset) and keeps, beside
the run's own weights, one ``AveragedModel`` per ``--decays`` value (with the library's warm-up,
:func:`mistnet.runner.warmed_up_ema`). Every validation point
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

from torch.optim.swa_utils import AveragedModel

from mistnet import runner
from mistnet.config import resolve
from mistnet.data import open_dataset
from mistnet.demo import build_data
from mistnet.models.mist import MIST
from mistnet.runner import warmed_up_ema
from mistnet.trainer import Trainer, build_trainer

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
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "manifest.json").exists():
        build_data(data, 20_000, 300, 500, seed=0)
    shutil.rmtree(out / "run", ignore_errors=True)  # OUT is scratch: the data is kept, not the run
    (out / "averages.jsonl").unlink(missing_ok=True)
    base = [f"data.path={json.dumps(str(data))}", "train.ema_decay=0"]
    cfg = resolve(args.preset, [*base, *args.overrides])
    averages: dict[str, AveragedModel] = {}
    raw: list[MIST] = []  # the run's model, once the runner has built it

    def averaging_trainer(model, train_cfg) -> Trainer:
        trainer = build_trainer(model, train_cfg)
        raw.append(model)
        for d in args.decays:
            averages[f"ema {d:g}"] = AveragedModel(
                model, multi_avg_fn=warmed_up_ema(d), use_buffers=True
            )

        def step(batch):
            result = trainer.step(batch)
            for a in averages.values():
                a.update_parameters(model)
            return result

        return Trainer(model, trainer.optimizers, step)

    evaluate = runner.evaluate

    def evaluate_all(model, batches, **kwargs):
        result = evaluate(model, batches, **kwargs)
        record = {"raw": result["both"]}
        record.update(
            {k: evaluate(a.module, batches, **kwargs)["both"] for k, a in averages.items()}
        )
        with (out / "averages.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        print("val both:", ", ".join(f"{k} {v:.3f}" for k, v in record.items()), flush=True)
        return result

    runner.evaluate, runner.build_trainer = evaluate_all, averaging_trainer
    summary = runner.train(cfg, out / "run", max_minutes=args.minutes, progress=False)
    print("steps", summary["steps"], "images/s", summary["images_per_s"])
    test = runner.loader(open_dataset(str(data), "test"), 32, 0)
    final = {}
    models = {"raw": raw[-1], **{k: a.module for k, a in averages.items()}}
    for name, model in models.items():
        result = evaluate(model, test)
        final[name] = {m: result[m] for m in METRICS}
        print(f"test {name:>10}: " + "  ".join(f"{m} {final[name][m]:.3f}" for m in METRICS))
    (out / "test.json").write_text(json.dumps(final, indent=1))


if __name__ == "__main__":
    main()
