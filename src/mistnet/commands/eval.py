"""``mist eval``: SPEC §5 metrics of a run's best checkpoint on a dataset split.

Examples::

    mist eval runs/classify                               # the run's own data, test split
    mist eval runs/classify --data data/mnist-hard --split test --json results/table2.json
    mist eval runs/classify --data mnist-hard --per-image-k   # generator: run's seed and n_test
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mistnet.commands._args import add_device_argument, add_run_data_arguments
from mistnet.data.runs import check_data, open_data
from mistnet.device import check_device, resolve_device
from mistnet.engine import evaluate
from mistnet.errors import MistError
from mistnet.io import atomic_write_json
from mistnet.runner import Run, loader


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a trained run on a dataset split",
        description="Evaluate RUN's best checkpoint (SPEC §5 metrics) and write them as JSON.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    add_run_data_arguments(p)
    p.add_argument("--k", type=int, default=0, metavar="K", help="detections per image")
    p.add_argument(
        "--per-image-k",
        action="store_true",
        help="detect each image's ground-truth count of instances (Table 3)",
    )
    p.add_argument("--batch-size", type=int, default=0, metavar="B", help="default: the run's")
    p.add_argument("--json", metavar="OUT", help="metrics file (default RUN/eval-<split>.json)")
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.k < 0:
        raise MistError(f"--k must be positive, got {args.k}")
    if args.k and args.per_image_k:
        raise MistError("--k and --per-image-k exclude each other")
    device = resolve_device(check_device(args.device))
    run_dir = Run(args.run)
    cfg, model, ckpt = run_dir.load("best", device=device)
    image_size = tuple(ckpt.extra.get("image_size", (80, 80)))
    source, dataset = open_data(cfg, args.data, args.split)
    check_data(cfg, dataset, image_size, source)
    if len(dataset) == 0:
        raise MistError(f"{source}: the {args.split} split is empty")
    k = args.k or model.k
    metrics = evaluate(
        model,
        loader(dataset, args.batch_size or cfg.train.batch_size, 0),
        device=device,
        k=k,
        per_image_k=args.per_image_k,
        signed=cfg.model.output == "signed",
    )
    record: dict[str, Any] = {
        "run": str(run_dir.path),
        "checkpoint": ckpt.path.name,
        "step": ckpt.step,
        "data": source,
        "split": args.split,
        "images": len(dataset),
        "k": "per-image" if args.per_image_k else k,
        "metrics": metrics,
    }
    out = Path(args.json) if args.json else run_dir.path / f"eval-{args.split}.json"
    atomic_write_json(out, record)
    print(
        f"{run_dir.path} ({ckpt.path.name}, step {ckpt.step}) on {source} [{args.split}], "
        f"{len(dataset)} images, K = {record['k']}"
    )
    for name, value in metrics.items():
        shown = f"{int(value)}" if float(value).is_integer() and value > 1 else f"{value:.4f}"
        print(f"  {name:16s} {shown}")
    print(f"wrote {out}")
    return 0
