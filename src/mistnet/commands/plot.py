"""``mist plot``: training losses and validation metrics of one or more runs, on one figure.

By default the training losses ``train/task`` and ``train/heatmap`` and every validation
metric of the runs' ``log.jsonl`` (``val/both``, ``val/rmse``, ...; training logs no
per-class ``val/classif/<name>``, which ``mist eval`` reports) get a panel each, each run a line in it. --key picks the curves instead,
the logged training diagnostics included (``train/move_mean``, ``train/move_median``,
``train/moved_1px``, ``train/border``).

Examples::

    mist plot runs/photos --out curves.png
    mist plot runs/a runs/b --key val/both --key train/task --minutes --out ab.png
"""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path

from mistnet.errors import DataError, MistError, MistWarning, say
from mistnet.outfiles import check_new_file, new_file
from mistnet.rundir import Run
from mistnet.validate import printable
from mistnet.viz import plot_runs
from mistnet.viz.curves import check_keys, log_curves


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw the losses and validation metrics of runs",
        description=__doc__.split("Examples::", 1)[0].split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:" + __doc__.split("Examples::", 1)[1],
    )
    p.add_argument("runs", metavar="RUN", nargs="+", help="run directories")
    p.add_argument("--out", default="curves.png", metavar="FILE.png", help="default curves.png")
    p.add_argument(
        "--key", action="append", default=[], metavar="KEY", help="a curve to draw (repeatable)"
    )
    p.add_argument("--minutes", action="store_true", help="training minutes on the x axis")
    p.set_defaults(func=run)


def _labels(paths: list[str]) -> list[str]:
    """Each run's directory name, with its parent where two share a name, then a number."""
    names = [Path(p).name or str(p) for p in paths]
    labels = [
        f"{Path(p).parent.name}/{n}" if names.count(n) > 1 and Path(p).parent.name else n
        for p, n in zip(paths, names, strict=True)
    ]
    return [
        f"{lab} ({labels[:i].count(lab) + 1})" if labels.count(lab) > 1 else lab
        for i, lab in enumerate(labels)
    ]


def run(args: argparse.Namespace) -> int:
    seen: dict[Path, int] = {}
    for i, path in enumerate(args.runs):  # one run twice would be drawn as two
        first = seen.setdefault(Path(path).resolve(), i)
        if first != i:
            raise MistError(
                f"the run {path} is given twice (as {args.runs[first]}); name each run once"
            )
    printable(args.out, "--out", "give a file name of printable characters")
    try:
        check_keys(args.key, "--key")  # the check of plot_runs, before the runs are read
    except ValueError as exc:
        raise MistError(str(exc)) from None
    inputs = [("the run", path) for path in args.runs]
    check_new_file(args.out, "mist plot", inputs)
    runs = {
        label: Run(path).records()
        for label, path in zip(_labels(args.runs), args.runs, strict=True)
    }
    try:
        with new_file(args.out, "mist plot", inputs) as tmp:
            keys = plot_runs(runs, tmp, keys=args.key, minutes=args.minutes)
    except DataError as exc:  # values too large to draw: the logs they were read from
        raise MistError(f"{_logs(args.runs)}: {exc}") from None
    except MistError:
        raise
    except ValueError as exc:  # a --key no run has, none of the default curves, no curve
        if "no curves to draw" in str(exc):  # which runs: every one
            raise MistError(f"{_logs(args.runs)}: no curve to draw (no logged value)") from None
        raise MistError(str(exc)) from None
    drawn = 0
    for records, path in zip(runs.values(), args.runs, strict=True):
        curves = log_curves(records)
        points = [p for key in keys for p in curves.get(key, [])]
        # with minutes, a point without them is left out (plot_runs said so)
        drawn += any(math.isfinite(m) for _, m, _ in points) if args.minutes else bool(points)
        if not points:  # counted as drawn, unsaid
            warnings.warn(f"{Run(path).log}: none of the curves drawn", MistWarning, 2)
    say(f"wrote {args.out}: {', '.join(keys)} of {drawn} run(s)")
    return 0


def _logs(runs: list[str]) -> str:
    return ", ".join(str(Run(path).log) for path in runs)
