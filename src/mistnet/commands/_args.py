"""Arguments shared by several ``mist`` commands."""

from __future__ import annotations

import argparse
import os
import re

import torch

from mistnet import machine, validate
from mistnet.data.digits import SPLITS
from mistnet.device import check_device, resolve_device
from mistnet.errors import MistError
from mistnet.imagefile import DEFAULT_MAX_PIXELS
from mistnet.runhints import pretrained_file
from mistnet.textfile import read_float

#: What ``--threads 0`` leaves: torch's own count, the cores of the machine.
TORCH_THREADS = "torch's choice"

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)


def integer(text: str) -> int:
    """The ``type`` of every integer option: ASCII digits with an optional sign, as the file
    parsers read numbers. Python's ``int`` also takes ``'１'``, ``'٣'``, ``'1_6'`` and
    ``' 5 '``, which labels, box CSVs and checkpoints refuse.

    Raises:
        argparse.ArgumentTypeError: anything else (argparse: ``argument --k: invalid int
            value: '１' ...``, with exit status 2).

    Example:
        >>> integer("-3"), integer("+07")
        (-3, 7)
    """
    if not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid int value: {text!r} (ASCII digits 0-9 with an optional sign)"
        )
    return int(text)


def number(text: str) -> float:
    """The ``type`` of every real-valued option: ASCII ``12``, ``-0.5``, ``.5``, ``1e-3`` (and
    ``inf`` / ``nan``, which each option's range check refuses by name, as before), never the
    full-width, Arabic-Indic, ``_``-separated or space-padded spellings Python's ``float``
    takes.

    Raises:
        argparse.ArgumentTypeError: anything else (argparse names the option).

    Example:
        >>> number("1e-3"), number("-.5")
        (0.001, -0.5)
    """
    if not _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid float value: {text!r} (ASCII digits 0-9 with an optional sign, '.' "
            "and exponent, as in -0.5 or 1e-3)"
        )
    try:  # --val 1e-400 was read as 0: "no validation split", silently
        return read_float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_compute_arguments(
    parser: argparse.ArgumentParser, threads_default: str = TORCH_THREADS
) -> None:
    """``--device`` and ``--threads``: the two options of every command that runs a model, with
    one default on every command, so that ``mist train`` and ``mist eval`` of one run agree.

    Args:
        threads_default: what ``--threads 0`` (the default) means, for the help.
    """
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="cpu, cuda, cuda:N or auto (default auto: CUDA when available, else the CPU; the "
        "default of every mist command, so that a CPU-only machine needs no option and a GPU "
        "is never left idle)",
    )
    parser.add_argument(
        "--threads",
        type=integer,
        default=0,
        metavar="N",
        help=f"torch CPU threads (default 0: {threads_default}; at most "
        f"{machine.max_threads()}); changes speed and the last bits of the sums (resume "
        "with the same N to continue bit for bit); use 1 when other jobs share the cores",
    )


def checked_threads(args: argparse.Namespace) -> int:
    """``args.threads``, checked (0: leave torch's choice; see :func:`mistnet.validate.threads`)."""
    return validate.threads(args.threads, "--threads")


def compute_device(args: argparse.Namespace) -> torch.device:
    """The device ``--device`` names, once torch has ``--threads`` CPU threads (0: its choice).

    Raises:
        MistError: a bad ``--threads`` or ``--device``, or CUDA asked for where there is none.
    """
    if checked_threads(args):
        torch.set_num_threads(args.threads)
    return resolve_device(check_device(args.device))


def add_max_pixels_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-pixels``: the pixel cap of every command that reads image files."""
    parser.add_argument(
        "--max-pixels",
        type=integer,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse images of more pixels, from the header (default {DEFAULT_MAX_PIXELS:,})",
    )


def checked_max_pixels(args: argparse.Namespace) -> int:
    """``args.max_pixels``, checked."""
    return validate.max_pixels(args.max_pixels, "--max-pixels")


def add_digits_argument(parser: argparse.ArgumentParser, directories: bool = True) -> None:
    """``--digits``: where MNIST scenes take their digits from (``directories``: a folder too)."""
    folder = ", or a directory of MNIST IDX files" if directories else ""
    parser.add_argument(
        "--digits",
        default="embedded",
        choices=None if directories else ("embedded", "mnist"),
        metavar="SRC",
        help="embedded (the 5,000 MNIST digits shipped with mistnet; default), mnist (full MNIST "
        f"from the data cache, filled by mist data download mnist){folder}",
    )


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable): the config overrides of a preset."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (TOML syntax: 3e-4, true, [1.0, 0.5]); repeatable",
    )


def add_model_argument(p: argparse.ArgumentParser) -> None:
    """``--model NAME``: a pretrained model instead of a run directory."""
    p.add_argument(
        "--model",
        metavar="NAME",
        help="a pretrained model instead of RUN (mist models lists them)",
    )


def run_or_model(args: argparse.Namespace) -> None:
    """Check that exactly one of RUN and ``--model`` was given, and that a RUN that is no path
    but a pretrained model's name is said to go as ``--model``.

    Raises:
        MistError: both or neither; a pretrained model's name as RUN ("run directory ... does
            not exist" before, with no word of ``--model``).
    """
    if (args.run is None) == (args.model is None):
        which = "both" if args.model else "neither"
        raise MistError(f"give a run directory RUN or --model NAME ({which} given)")
    if args.run is not None and not os.path.lexists(args.run) and pretrained_file(args.run):
        raise MistError(
            f"run directory {args.run} does not exist; {args.run} is a pretrained model: give "
            f"it as --model {args.run}"
        )


def add_k_argument(p: argparse.ArgumentParser, whose: str = "run") -> None:
    """``--k K``: the detections per image (default the run's or the model's K)."""
    p.add_argument(
        "--k", type=integer, metavar="K", help=f"detections per image (default the {whose}'s)"
    )


def add_run_data_arguments(p: argparse.ArgumentParser, model: bool = False) -> None:
    """RUN, ``--data`` and ``--split``: the arguments of every command that reads a run's data
    (``model``: RUN is optional, ``--model NAME`` the alternative)."""
    if model:
        p.add_argument("run", metavar="RUN", nargs="?", help="run directory written by mist train")
        add_model_argument(p)
    else:
        p.add_argument("run", metavar="RUN", help="run directory written by mist train")
    p.add_argument(
        "--data",
        metavar="DIR|NAME",
        help="dataset directory or generator name (default: the run's own data)",
    )
    p.add_argument("--split", default="test", choices=SPLITS, help="split (default test)")
