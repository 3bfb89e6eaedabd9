"""``make demo``: MIST learns to find and classify digits with no location labels, on a CPU.

Steps: write an MNIST-hard dataset from the embedded digits (``demo/data``), train MIST
classification with the ``mnist-hard-cpu`` preset into ``demo/run``, evaluate the best
checkpoint on the test split (``demo/metrics.json``), and draw the paper's Fig. 5-style picture
(``demo/figure.png``). The run directory works with ``mist eval``, ``mist detect`` and
``mist show``. Run ``python -m mistnet.demo --help`` for the knobs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mistnet.config import resolve
from mistnet.data import build_generator, make_scenes, open_dataset, write_dataset
from mistnet.errors import MistError
from mistnet.evaluation import evaluate_run
from mistnet.io import atomic_write_json
from mistnet.runner import Run, loader, train
from mistnet.viz import mist_figure


def build_data(out: Path, n_train: int, n_val: int, n_test: int, seed: int) -> Path:
    generator = build_generator("mnist-hard")
    splits = {}
    chunk = 500
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        parts = []
        for start in tqdm(range(0, n, chunk), desc=f"scenes/{split}", leave=False):
            parts.append(make_scenes(generator, split, range(start, min(n, start + chunk)), seed))
        splits[split] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    manifest = {"generator": "mnist-hard", "seed": seed, "digits": "embedded"}
    return write_dataset(out, "mnist-hard", splits, manifest, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mistnet.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default="demo", help="output directory (default demo)")
    parser.add_argument("--preset", default="mnist-hard-cpu")
    parser.add_argument("--minutes", type=float, default=12.0, help="training time cap")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-val", type=int, default=300)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    out = Path(args.out)
    t0 = time.monotonic()
    try:
        data_dir = out / "data"
        print(f"[1/4] MNIST-hard scenes from the embedded digits -> {data_dir}", flush=True)
        build_data(data_dir, args.n_train, args.n_val, args.n_test, args.seed)
        run_dir = out / "run"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        cfg = resolve(args.preset, [f"data.path={json.dumps(str(data_dir))}", *args.overrides])
        print(
            f"[2/4] training preset {args.preset} for at most {args.minutes:g} min -> {run_dir}",
            flush=True,
        )
        summary = train(
            cfg, run_dir, device=args.device, max_minutes=args.minutes, threads=args.threads
        )
        print(
            f"[3/4] evaluating the best checkpoint (step {summary['best_step']}) on the test split",
            flush=True,
        )
        result = evaluate_run(run_dir, str(data_dir), "test", batch_size=50, device=args.device)
        metrics = result.metrics
        record = {
            **result.to_dict(),
            "train": summary,
            "wall_s": round(time.monotonic() - t0, 1),
        }
        atomic_write_json(out / "metrics.json", record)
        print(f"[4/4] figure -> {out / 'figure.png'}", flush=True)
        _, model, _ = Run(run_dir).load("best", device=args.device)
        batch = next(iter(loader(open_dataset(data_dir, "test"), 4, 0)))
        with torch.inference_mode():
            res = model(batch["image"].to(args.device))
        mist_figure(
            batch["image"],
            res.heatmaps.cpu(),
            res.keypoints.cpu(),
            res.task.argmax(-1).cpu(),
            res.patches.cpu(),
            out / "figure.png",
            gt_boxes=batch["boxes"],
        )
    except MistError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, indent=2
        )
    )
    print(f"demo finished in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
