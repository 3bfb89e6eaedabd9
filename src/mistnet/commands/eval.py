"""``mist eval``: SPEC §5 metrics of a run's best checkpoint on a dataset split.

Examples::

    mist eval runs/classify                               # the run's own data, test split
    mist eval runs/classify --data data/mnist-hard --split test --json results/table2.json
    mist eval runs/classify --data mnist-hard --per-image-k   # generator: run's seed and n_test
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mistnet.commands._args import add_compute_arguments, add_run_data_arguments, compute_device
from mistnet.evaluation import evaluate_run
from mistnet.io import atomic_write_json


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
    add_compute_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    device = compute_device(args)
    result = evaluate_run(
        args.run,
        args.data,
        args.split,
        k=args.k,
        per_image_k=args.per_image_k,
        batch_size=args.batch_size,
        device=device,
    )
    out = Path(args.json) if args.json else Path(result.run) / f"eval-{args.split}.json"
    atomic_write_json(out, result.to_dict())
    print(
        f"{result.run} ({result.checkpoint}, step {result.step}) on {result.data} "
        f"[{result.split}], {result.images} images, K = {result.k}"
    )
    for name, value in result.metrics.items():
        shown = f"{int(value)}" if float(value).is_integer() and value > 1 else f"{value:.4f}"
        print(f"  {name:16s} {shown}")
    for reason in sorted(set(result.not_measured.values())):
        names = [n for n, r in result.not_measured.items() if r == reason]
        print(f"  not measured: {', '.join(names)} ({reason})")
    print(f"wrote {out}")
    return 0
