"""``mist train``: train a preset (plus ``--set`` overrides) into a run directory.

Examples::

    mist train --list-presets
    mist train --preset mnist-hard-classify --out runs/classify --device auto
    mist train --preset tiny-cpu --out runs/tiny --set train.steps=100 --set train.lr_keypoints=3e3
    mist train --preset runs/classify/config.json --out runs/again   # any TOML file also works
    mist train --out runs/classify --resume                          # continue after a crash
    mist train --preset mnist-hard-classify --out runs/c --device cuda --precision bf16 --compile
    torchrun --standalone --nproc-per-node 2 -m mistnet train --preset tiny-cpu --out runs/ddp
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

from mistnet import config, machine
from mistnet.acceleration import PRECISIONS
from mistnet.commands._args import (
    add_compute_arguments,
    add_set_argument,
    checked_threads,
    number,
)
from mistnet.data.manifest import read_manifest
from mistnet.data.memory import IN_MEMORY
from mistnet.device import check_device
from mistnet.distributed import World
from mistnet.errors import MistError, printed
from mistnet.io import json_text
from mistnet.loop import train
from mistnet.progress import terminal_bar
from mistnet.rundir import Run
from mistnet.validate import minutes, require_directory


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a preset",
        description="Train MIST (or a baseline) from a preset into a run directory holding "
        "config.json, last/best.safetensors, log.jsonl and summary.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    p.add_argument(
        "--preset",
        metavar="NAME|FILE",
        help="a shipped preset (its name always means it; ./NAME for a file so named), a .toml "
        "file or a run's config.json",
    )
    p.add_argument("--list-presets", action="store_true", help="list the shipped presets and exit")
    p.add_argument("--out", metavar="RUN", help="run directory to create (or resume)")
    p.add_argument("--data", metavar="DIR", help="dataset directory (sets data.path)")
    add_set_argument(p)
    p.add_argument(
        "--max-minutes",
        type=number,
        metavar="M",
        help="stop training after M minutes of this invocation (with --resume: M more "
        "minutes; default: no cap); a last validation (train.val_batches of the validation "
        "split, 0: all of it) and the checkpoints follow, outside the M minutes",
    )
    add_compute_arguments(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from last.safetensors, as it was configured: a larger "
        "train.steps trains it further, other values of --preset and --set are ignored (a note "
        "names them); a smaller --set train.steps, another --data or dataset, or a deleted "
        "last.safetensors is refused",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="bf16: the networks' forward passes under bfloat16 autocast, losses in float32 "
        "(default fp32); speed only, not part of the run",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the heatmap and task networks; speed only, not part of the run",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (none either when stderr is not a terminal); one line per "
        "validation on stderr instead",
    )
    p.set_defaults(func=run)


def list_presets() -> None:
    for name in config.preset_names():
        cfg = config.load_preset(name)
        m, t = cfg.model, cfg.train
        print(f"{name:24s} {m.task:11s} {t.method:11s} data={cfg.data.name} K={m.k}")


def _resumed_steps(args: argparse.Namespace, saved: config.Config) -> int:
    """The ``train.steps`` a resume of the run ``saved`` trains to (``--set`` may raise them).

    Raises:
        MistError: a run of data in memory, or fewer steps than the run's.
    """
    if saved.data.name == IN_MEMORY:  # its data lives in the script that trained it
        raise MistError(
            f"{args.out} was trained on data in memory (mistnet.fit); mist train cannot "
            "resume it: in Python, resume it exactly with mistnet.loop.train(config, RUN, "
            "resume=True, data=(SceneItems(train), SceneItems(val))), or train on from its "
            "weights with mistnet.fit(mistnet.load(RUN), data, out=NEW)"
        )
    steps = config.apply_overrides(copy.deepcopy(saved), args.overrides).train.steps
    if steps < saved.train.steps:  # said outright; a preset's own is ignored with a note
        raise MistError(
            f"--set train.steps={steps} is below the {saved.train.steps} steps of the run "
            f"{args.out}; --resume trains it to {saved.train.steps}, or further with more"
        )
    return steps


def _list_presets_alone(args: argparse.Namespace) -> None:
    """Refuse ``--list-presets`` beside an option that trains: it was ignored without a word."""
    given = {"--preset": args.preset, "--out": args.out, "--data": args.data}
    given |= {"--set": args.overrides, "--resume": args.resume, "--compile": args.compile}
    given |= {"--max-minutes": args.max_minutes is not None, "--threads": args.threads != 0}
    given |= {"--device": args.device != "auto", "--precision": args.precision != "fp32"}
    given |= {"--no-progress": args.no_progress}
    if extra := [option for option, value in given.items() if value]:
        raise MistError(f"--list-presets lists the presets and trains nothing; drop {extra[0]}")


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        _list_presets_alone(args)
        list_presets()
        return 0
    if not args.out:
        raise MistError("--out RUN is required")
    device = check_device(args.device)
    max_minutes = 0.0 if args.max_minutes is None else minutes(args.max_minutes, "--max-minutes")
    threads = checked_threads(args)
    overrides = list(args.overrides)
    sets = config.overridden(args.overrides)
    if args.data:
        if "data.path" in sets:  # one would win silently
            raise MistError(
                f"--data {args.data} and --set {sets['data.path']} name two datasets; give one"
            )
        if os.path.lexists(args.data):  # a link loop or to nowhere: said so
            require_directory(args.data, "dataset directory")
        else:
            raise MistError(f"--data {args.data}: no such dataset directory")
        overrides.append(config.override("data.path", args.data))
    if args.resume:
        run_dir = Run(args.out)
        saved = run_dir.resume_config()[0]
        steps = _resumed_steps(args, saved)
        if args.preset:
            asked = config.resolve(args.preset, overrides)
            asked.train.steps = steps  # only --set raises them, never the preset's own
        else:
            asked = config.apply_overrides(copy.deepcopy(saved), overrides)
        cfg, ignored = run_dir.resume_config(asked)
        if ignored and machine.torchrun_world()[0] == 0:  # once, not by every process
            note = "; ".join(ignored)
            print(
                printed(f"mist train: note: --resume continues the run as saved; ignoring {note}"),
                file=sys.stderr,
            )
    else:
        if not args.preset:
            raise MistError("--preset NAME is required (see mist train --list-presets)")
        cfg = config.resolve(args.preset, overrides)
    unused = [k for k in ("data.n_train", "data.n_val", "data.n_test", "data.digits") if k in sets]
    if cfg.data.path and unused and not args.resume:  # they size a generator's scenes
        # (a resume ignores them, as its note says: it was refused after the note)
        raise MistError(
            f"--set {sets[unused[0]]}: training reads the dataset {cfg.data.path}, whose splits "
            f"and digits are made; leave out {unused[0]} (mist data make sets them)"
        )
    if cfg.data.path and "data.name" in sets and not args.resume:
        # The run would record a generator it never used (reproduce's commands name the same).
        made = str(read_manifest(cfg.data.path).get("name", ""))
        if made != cfg.data.name:
            raise MistError(
                f"--set {sets['data.name']} names another generator than the dataset "
                f"{cfg.data.path} that training reads (made by {made!r}); leave out data.name"
            )
    if not cfg.data.path and cfg.data.name == "svhn":
        raise MistError(
            "SVHN is read from a dataset directory: add --data DIR "
            "(make one with mist data make svhn --svhn SVHN_ROOT --out DIR)"
        )
    summary = train(
        cfg,
        args.out,
        device=device,
        resume=args.resume,
        max_minutes=max_minutes,
        threads=threads,
        precision=args.precision,
        compile=args.compile,
        **terminal_bar(not args.no_progress),
    )
    if World.from_env().main:  # under torchrun, one summary
        print(json_text({"run": str(args.out), **summary}))
    return 0
