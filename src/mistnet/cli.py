"""The ``mist`` command line: one sub-command group per module in :mod:`mistnet.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func=handler`` on it. Handlers return an exit status. User errors (:class:`MistError`, and
missing files) are printed as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mistnet import __version__
from mistnet.errors import MistError

# Modules under mistnet.commands, in the order they appear in ``mist --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "data",
    "train",
    "eval",
    "detect",
    "show",
    "plot",
    "reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mist",
        description="MIST: Multiple Instance Spatial Transformers. Find K instances of "
        "recurring things in images without location labels.",
    )
    parser.add_argument("--version", action="version", version=f"mistnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mistnet.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except (MistError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        print(f"mist {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mist {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
