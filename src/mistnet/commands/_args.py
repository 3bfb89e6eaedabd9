"""Arguments shared by several ``mist`` commands."""

from __future__ import annotations

import argparse


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """The one ``--device`` option shared by every command that runs a model."""
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="cpu, cuda, cuda:N or auto (CUDA when available; default auto)",
    )
