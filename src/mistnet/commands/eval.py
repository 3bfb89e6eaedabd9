"""``mist eval``: SPEC §5 metrics of a run's best checkpoint on a dataset split.

Examples::

    mist eval runs/classify                               # the run's own data, test split
    mist eval runs/classify --data data/mnist-hard --split test --json results/table2.json
    mist eval runs/classify --data mnist-hard --per-image-k   # generator: run's seed and n_test
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mistnet.commands._args import add_device_argument
from mistnet.device import check_device, resolve_device
from mistnet.errors import MistError

SPLITS = ("train", "val", "test")


def add_run_data_arguments(p: argparse.ArgumentParser) -> None:
    """RUN, ``--data`` and ``--split``: the arguments of every command that reads a run's data."""
    p.add_argument("run", metavar="RUN", help="run directory written by mist train")
    p.add_argument(
        "--data",
        metavar="DIR|NAME",
        help="dataset directory or generator name (default: the run's own data)",
    )
    p.add_argument("--split", default="test", choices=SPLITS, help="split (default test)")


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


def open_data(cfg, data: str | None, split: str):
    """The ``split`` of ``data`` (a directory or generator name; default the run's own data).

    A generator is sampled with the run's data seed and split size, so ``mist eval`` on the
    run's generator sees the same scenes the run's own validation / test would.
    """
    from mistnet.data import open_dataset

    d = cfg.data
    source = data or d.path or d.name
    path = Path(source)
    looks_like_path = os.sep in source or source.startswith(".") or path.exists()
    if looks_like_path and not path.is_dir():
        raise MistError(f"data directory {source} does not exist")
    sizes = {"train": d.n_train, "val": d.n_val, "test": d.n_test}
    dataset = open_dataset(source, split, size=sizes[split], seed=d.seed, digits=d.digits)
    return source, dataset


def data_is_signed(dataset) -> bool:
    """Whether a dataset holds signed (Gabor) images rather than [0, 1] ones."""
    signed = getattr(dataset, "signed", None)
    if signed is not None:
        return bool(signed)
    arrays = getattr(dataset, "arrays", None)  # a dataset directory (SceneFolder)
    if isinstance(arrays, dict) and "images" in arrays:
        return np.dtype(arrays["images"].dtype).kind == "f"
    generator = getattr(dataset, "generator", None)
    if generator is not None and getattr(generator, "dtype", None) is not None:
        return np.dtype(generator.dtype).kind == "f"
    return str(getattr(dataset, "name", "")).startswith("gabor")


def check_data(cfg, dataset, image_size: tuple[int, int], source: str) -> None:
    """Reject data the run cannot be evaluated on, with a one-line reason."""
    m = cfg.model
    channels = int(dataset.channels)
    if channels != m.in_channels:
        raise MistError(
            f"{source} has {channels}-channel images but the run's model takes {m.in_channels}"
        )
    signed = data_is_signed(dataset)
    if signed and m.task == "classify":
        raise MistError(f"{source} holds Gabor textures without class labels; the run classifies")
    if m.task == "reconstruct" and signed != (m.output == "signed"):
        kind = "signed (Gabor)" if signed else "[0, 1]"
        raise MistError(
            f"{source} holds {kind} images but the run's auto-encoder has {m.output} output"
        )
    size = (int(dataset.height), int(dataset.width))
    if cfg.train.method == "grid" and size != tuple(image_size):
        raise MistError(
            f"{source} has {size[0]}x{size[1]} images but this grid baseline was trained on "
            f"{image_size[0]}x{image_size[1]}"
        )


def run(args: argparse.Namespace) -> int:
    from mistnet.engine import evaluate
    from mistnet.runner import Run, loader

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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out)
    print(
        f"{run_dir.path} ({ckpt.path.name}, step {ckpt.step}) on {source} [{args.split}], "
        f"{len(dataset)} images, K = {record['k']}"
    )
    for name, value in metrics.items():
        shown = f"{int(value)}" if float(value).is_integer() and value > 1 else f"{value:.4f}"
        print(f"  {name:16s} {shown}")
    print(f"wrote {out}")
    return 0
