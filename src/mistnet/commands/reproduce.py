"""``mist reproduce``: train and evaluate what a table of the paper needs; write paper vs ours.

Examples::

    mist reproduce table1 --budget smoke --out repro-smoke          # seconds: every path runs
    mist reproduce table2 --budget cpu --out repro --device cpu     # at most 2 h on 2 cores
    mist reproduce all --budget full --out repro-full --device cuda --seeds 3 --svhn ~/svhn
    mist reproduce table2 --budget cpu --out repro-mnist --digits mnist   # full MNIST

Interrupted? Run the same command again: runs with an eval.json are skipped, an interrupted
run is resumed from its last checkpoint (with the minutes it has left), and the tables are
rewritten. A run directory made under another plan (other steps, minutes, overrides or preset;
--threads does not count) is refused, never reused: use a fresh --out. One mist reproduce at a
time per --out (OUT/.lock). Writes OUT/<table>.md, OUT/results.json, OUT/<table>/<row>/seed<s>/ (run
directories with eval.json), OUT/figures/ and OUT/data/ (or --data-root).
"""

from __future__ import annotations

import argparse
import sys

from mistnet.commands._args import (
    TORCH_THREADS,
    add_compute_arguments,
    add_digits_argument,
    integer,
)
from mistnet.reproduce import reproduce
from mistnet.reproduce.plan import BUDGETS
from mistnet.shellwords import shell_join

TABLE_CHOICES = "table1, gabor, table2, table3, table4 or all"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="reproduce the paper's tables (train, evaluate, write paper vs ours)",
        description="Train and evaluate every run a table of the paper needs (through mist "
        "train's training loop and mist eval's metrics), then write OUT/<table>.md with the paper's "
        "numbers beside ours, OUT/results.json and figures. Re-running the same command "
        "continues an interrupted reproduction: finished runs (with eval.json) are skipped; "
        "runs made under another plan are refused (use a fresh --out).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="budgets:\n  "
        + "\n  ".join(f"{b.name}: {b.description}" for b in BUDGETS.values())
        + "\n\nexamples:"
        + __doc__.split("Examples::", 1)[1],
    )
    p.add_argument("table", metavar="TABLE", help=TABLE_CHOICES)
    p.add_argument(
        "--budget", required=True, metavar="BUDGET", help="smoke, cpu or full (see below)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    budget_threads = (f"{b.name} {b.threads or TORCH_THREADS}" for b in BUDGETS.values())
    add_compute_arguments(p, threads_default="the budget's: " + ", ".join(budget_threads))
    p.add_argument(
        "--seeds", type=integer, default=1, metavar="N", help="seeds 0..N-1 (default 1); mean ± std"
    )
    p.add_argument(
        "--svhn",
        metavar="DIR",
        help="SVHN format-1 root with train/ and test/ (digitStruct.mat + PNGs); without it "
        "Table 4 says 'not run'",
    )
    p.add_argument("--data-root", metavar="DIR", help="where datasets go (default OUT/data)")
    add_digits_argument(p, directories=False)
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    words = ["mist", "reproduce", *sys.argv[2:]]
    command = shell_join(words) if _from_shell() else None
    reproduce(
        args.table,
        args.budget,
        args.out,
        device=args.device,
        seeds=args.seeds,
        svhn=args.svhn,
        data_root=args.data_root,
        command=command,
        figures=not args.no_figures,
        threads=args.threads,
        digits=args.digits,
    )
    return 0


def _from_shell() -> bool:
    """Whether ``sys.argv`` is this very ``mist reproduce`` invocation (not a library call)."""
    return len(sys.argv) > 1 and sys.argv[1] == "reproduce"
