"""``mist demo``: the main job — data, training, test metrics and a figure in one command.

MIST learns to find the digits of MNIST-hard scenes without location labels, on a CPU: with
--task classify (default) from the multiset of digit labels of each image, with
--task reconstruct from the pixels alone. It writes OUT/data (the scenes, made from the
5,000 MNIST digits shipped with mistnet, or with --digits mnist from full MNIST in the data
cache), OUT/run (a run directory for mist eval, mist detect and mist show),
OUT/metrics.json (the best checkpoint on the test split, and which digits were used) and
OUT/figure.png (with the figures extra).

Examples::

    mist demo                                  # classification, 12 minutes of training, ./demo
    mist demo --out demo-recon --task reconstruct --minutes 20
    mist demo --minutes 1 --threads 1          # a quick look
    mist demo --digits mnist                   # full MNIST (first: mist data download mnist)
"""

from __future__ import annotations

import argparse

from mistnet import validate
from mistnet.commands._args import (
    add_compute_arguments,
    add_digits_argument,
    add_set_argument,
    checked_threads,
    integer,
    number,
)
from mistnet.demo import PRESETS, run_demo
from mistnet.device import check_device, resolve_device
from mistnet.errors import MistError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the main job: make MNIST-hard, train MIST on the CPU, print test metrics",
        description=__doc__.split("Examples::", 1)[0].split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:" + __doc__.split("Examples::", 1)[1],
    )
    p.add_argument("--out", default="demo", metavar="DIR", help="output directory (default demo)")
    p.add_argument(
        "--task",
        choices=sorted(PRESETS),
        help="classify (preset mnist-hard-cpu, default) or reconstruct (mnist-hard-recon-cpu); "
        "with --preset, that preset's task",
    )
    p.add_argument(
        "--minutes", type=number, default=12.0, metavar="M", help="training time cap (default 12)"
    )
    p.add_argument("--preset", metavar="NAME|FILE", help="another preset instead of the task's")
    p.add_argument("--n-train", type=integer, default=20_000, metavar="N")
    p.add_argument("--n-val", type=integer, default=300, metavar="N")
    p.add_argument("--n-test", type=integer, default=500, metavar="N")
    p.add_argument("--seed", type=integer, default=0, help="data seed (default 0)")
    add_digits_argument(p)
    add_compute_arguments(p)
    add_set_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    minutes = validate.minutes(args.minutes, "--minutes")
    seed = validate.seed(args.seed, "--seed")
    threads = checked_threads(args)
    for name in ("n_train", "n_val", "n_test"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise MistError(f"{flag} must be at least 1, got {getattr(args, name)}")
    run_demo(
        args.out,
        task=args.task,
        preset=args.preset,
        minutes=minutes,
        threads=threads,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=seed,
        digits=args.digits,
        device=str(resolve_device(check_device(args.device))),
        overrides=args.overrides,
    )
    return 0
