"""Pretrained models: small checkpoints shipped with mistnet, loaded by name.

A pretrained model is a checkpoint of the usual format (:mod:`mistnet.checkpoint`) that holds
only the inference weights (the moving average when its run kept one) under ``model.``, the
run's resolved config, and under ``extra["pretrained"]`` its :class:`Card`: the test metrics
``mist eval`` measured, what they were measured on, and the command that trained it. Its digest
is required: a packaged file whose bytes changed is refused, as is one without a digest.

The registry is the folder ``weights/`` of the installed package, or the folder
``$MISTNET_MODELS`` names (for models of one's own, and for the tests); a model's name is its
file name without ``.safetensors``. ``mist models`` lists them, ``mist models package`` makes
one from a run, ``mist detect --model``, ``mist eval --model`` and :func:`mistnet.load` use one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mistnet.checkpoint import Checkpoint, save_checkpoint
from mistnet.config import Config, from_record
from mistnet.device import device_argument
from mistnet.errors import ArgumentError, DataError, MistError, unprintable
from mistnet.io import require_output_name, require_short_name
from mistnet.machine import shown_value
from mistnet.models.build import build_to_load
from mistnet.models.mist import MIST
from mistnet.outputs import check_outside
from mistnet.rundir import Run
from mistnet.textfile import read_json
from mistnet.validate import flag, path_argument, printable, require_directory

ENV = "MISTNET_MODELS"
SUFFIX = ".safetensors"
NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
NAME_RULE = "lowercase letters, digits and dashes, starting with a letter or digit"
MAX_COMMAND = 65_536  # characters of a card's command: its header is read whole


def registry() -> Path:
    """The folder of the pretrained models: ``$MISTNET_MODELS``, else the package's ``weights/``."""
    root = os.environ.get(ENV)  # "~/models" expanded, as $MISTNET_DATA is
    try:
        return Path(root).expanduser() if root else Path(__file__).parent / "weights"
    except RuntimeError as exc:  # ~nosuchuser, or no home: an internal error before
        why = str(exc).rstrip(".")
        raise ArgumentError(f"{ENV}={root!r}: {why}; set it to the folder of the models") from None


def names() -> list[str]:
    """The names of the models in the registry, sorted (none when the package's folder does not
    exist).

    Raises:
        ArgumentError: ``$MISTNET_MODELS`` names no folder (a typo would read as "no models").
    """
    root = registry()
    try:
        return _names(root)
    except OSError as exc:  # a name too long, a folder above it this user cannot enter
        where = f"{ENV}={shown_value(str(root))}" if os.environ.get(ENV) else str(root)
        why = exc.strerror or str(exc)
        raise ArgumentError(f"{where}: {why}; set it to the folder of the models") from None


def _names(root: Path) -> list[str]:
    if os.environ.get(ENV) and not root.is_dir():
        what = "not a folder" if os.path.lexists(root) else "no such folder"  # a file, a FIFO
        raise ArgumentError(f"{ENV}={root}: {what} of pretrained models")
    if not root.is_dir():
        return []
    if not os.access(root, os.R_OK | os.X_OK):  # glob saw nothing: "no pretrained models"
        where = f"{ENV}={root}" if os.environ.get(ENV) else str(root)
        raise ArgumentError(f"{where}: this user cannot read the folder of pretrained models")
    # a link to nothing, a folder or a FIFO of the name is named, so that reading it says what
    # it is ("no pretrained model 'ff'" of a folder ff.safetensors)
    models = (p for p in root.glob(f"*{SUFFIX}") if not p.name.startswith("."))
    return sorted(p.name.removesuffix(SUFFIX) for p in models)  # not a killed write's temporary


def unknown(message: str) -> ArgumentError:
    """``message`` and the names of the known models, as one line."""
    known = ", ".join(names()) or f"none in {registry()}"
    return ArgumentError(f"{message} (known pretrained models: {known})")


def path_of(name: str) -> Path:
    """The file of the pretrained model ``name``.

    Raises:
        MistError: no such model (one line listing the known names).
    """
    if name not in names():
        raise unknown(f"no pretrained model {name!r}")
    return registry() / f"{name}{SUFFIX}"


@dataclass(frozen=True)
class Card:
    """What a pretrained model's metadata says about it.

    Attributes:
        name: the model's name.
        metrics: its test metrics, as ``mist eval`` wrote them.
        evaluated_on: the data, split, number of images and K of those metrics.
        command: the command that trained (and evaluated) it, to rerun.
    """

    name: str
    metrics: dict[str, float]
    evaluated_on: dict[str, Any]
    command: str

    @classmethod
    def of(cls, ckpt: Checkpoint) -> Card:
        """The card of a loaded checkpoint.

        Raises:
            MistError: the checkpoint has no digest or no card (it is no packaged model).
        """
        if ckpt.digest is None:
            raise MistError(f"{ckpt.path} carries no checksum; package the model again")
        card = ckpt.extra.get("pretrained")
        fields = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(card, dict) or sorted(card) != sorted(fields):
            raise MistError(f"{ckpt.path} is a checkpoint but no packaged model (no model card)")
        problem = card_problem(card)
        if problem:
            raise DataError(f"{ckpt.path}: its model card is damaged ({problem}); package it again")
        return cls(**card)


def _number(value: object) -> bool:
    """A finite number: a card's NaN is written null (a NaN or Infinity read back from the
    JSON failed ``int()`` in the count check, an internal error of ``mist models``), and an
    int of 400 digits is none (``mist models`` failed to print it as a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def metric_problem(key: str, value: object) -> str | None:
    """What is wrong with ``value`` as the metric ``key`` of ``mist eval``'s record, or None:
    a finite number (or null, a NaN measured), counts (``n_*``) whole and errors (``rmse*``)
    >= 0, every other metric a fraction in [0, 1].

    Example:
        >>> metric_problem("rmse", -3)
        'outside >= 0'
    """
    if value is None:
        return None
    if not _number(value):
        return "not a finite number (or null)"
    fraction = not str(key).startswith(("n_", "rmse"))
    if value < 0 or (fraction and value > 1):
        return f"outside {'[0, 1]' if fraction else '>= 0'}"
    if str(key).startswith("n_") and value != int(value):
        return "not a count"
    return None


def card_problem(card: dict[str, Any]) -> str | None:
    """The first thing wrong in a card's fields (``name``, ``metrics``, ``evaluated_on``,
    ``command``, as :class:`Card` holds them), or None.

    Metrics map names to numbers (``null`` where ``mist eval`` measured NaN); ``evaluated_on``
    names the data and split as text, the images and K as counts.

    Example:
        >>> card_problem({"metrics": {"det": "high"}})
        "metrics['det'] is 'high', not a finite number (or null)"
    """
    if not isinstance(card, dict):  # None: an AttributeError on .get
        return f"the card is {type(card).__name__}, not a map of its fields"
    metrics = card.get("metrics")
    if not isinstance(metrics, dict):
        return f"metrics is {type(metrics).__name__}, not a map of names to numbers"
    if not metrics:  # the card read "test:  on ..."
        return "metrics is empty; a card names what the model measured"
    if any(not str(key).strip() for key in metrics):  # printed ": 0.5" beside the others
        return "metrics has a metric of no name"
    for key, value in metrics.items():
        problem = metric_problem(key, value)
        if problem is not None:
            return f"metrics[{key!r}] is {value!r}, {problem}"
    if all(str(key).startswith("n_") for key in metrics):  # "test:  on ..." too
        return "metrics holds counts alone (n_*); a card names what the model measured"
    on = card.get("evaluated_on", {})
    for key, kind in (("data", str), ("split", str), ("images", int), ("k", int)):
        value = on.get(key) if isinstance(on, dict) else None
        low = 1 if key == "k" else 0  # K detections per image: at least one
        if (
            not isinstance(value, kind)
            or isinstance(value, bool)
            or (kind is int and not low <= value < 2**63)  # 10**30 images was printed in full
        ):
            return f"{key} is {value!r}, not {'text' if kind is str else 'a count'}"
    if not on["data"].strip():  # printed "on , 16 images"
        return "data is empty; a card names the data it was measured on"
    if on["split"] not in ("train", "val", "test"):
        return f"split is {on['split']!r}, not train, val or test"
    if metrics.get("n_images", on["images"]) != on["images"]:
        return f"metrics['n_images'] is {metrics['n_images']!r} but images {on['images']!r}"
    for key in ("name", "command"):
        if key in card and not isinstance(card[key], str):
            return f"{key} is {card[key]!r}, not text"
        if key in card and any(unprintable(c) for c in card[key]):
            return f"{key} {card[key]!r} holds a control character"  # mist models prints it
    return None


def read(name: str, device: torch.device | str = "cpu") -> tuple[Checkpoint, Card]:
    """The checkpoint of the pretrained model ``name`` and its card (see :func:`path_of`).

    Raises:
        ArgumentError: ``device`` is no device name, or CUDA where there is none.
    """
    ckpt = Checkpoint(path_of(name), device=device_argument(device))
    return ckpt, Card.of(ckpt)


def load(name: str, device: torch.device | str = "cpu") -> tuple[Config, MIST, Checkpoint]:
    """The pretrained model ``name`` as :meth:`mistnet.rundir.Run.load` gives a run's.

    Raises:
        MistError: no such model (one line listing the known names), a file whose bytes do not
            match its checksum, or one that is no packaged model.
    """
    device = device_argument(device)
    ckpt, _ = read(name, device)
    cfg = from_record(ckpt.config, str(ckpt.path))
    model = build_to_load(cfg.model, cfg.train.method)
    ckpt.load_model(model)
    return cfg, model.to(device).eval(), ckpt


def load_any(
    source: str | os.PathLike, which: str = "best", device: torch.device | str = "cpu"
) -> tuple[Config, MIST, Checkpoint]:
    """The model of a run directory (``which`` checkpoint) when ``source`` is a path that
    exists, else the pretrained model of that name.

    Raises:
        TypeError: ``source`` is no string or path.
        ArgumentError: ``which`` is neither ``best`` nor ``last``, ``source`` is empty, or
            neither (one line listing the known names; a link to nothing says so), or a
            pretrained model asked for another checkpoint than ``best`` (it has one).
    """
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"give a run directory or a model name, got {type(source).__name__}")
    if which not in ("best", "last"):  # before which model: the value is wrong for any
        raise ArgumentError(f"which must be 'best' or 'last', got {which!r}")
    if not str(source).strip():  # Path("") is the working directory
        raise ArgumentError(f"give a run directory or a model name, got {str(source)!r}")
    device = device_argument(device)
    if Path(source).exists():
        return Run(source).load(which, device=device)
    if str(source) not in names() and os.path.lexists(source):  # a link to nowhere, a loop
        require_directory(source, "run directory")  # says which
    if str(source) not in names():
        raise unknown(f"{source} is neither a run directory nor a pretrained model")
    if which != "best":  # else the one checkpoint would be given for "last" silently
        raise ArgumentError(
            f"which={which!r}: the pretrained model {source} has one checkpoint (the run's "
            "best); leave which out"
        )
    return load(str(source), device)


def _check_package_arguments(run, name, command, out, metrics, overwrite) -> None:
    """Refuse :func:`package` arguments of the wrong type, and an empty ``run``, ``out`` (the
    working directory) or ``metrics``, as the command line refuses an empty argument."""
    for label, value in (("run", run), ("out", out)):
        if not path_argument(value, label):
            raise ArgumentError(f"{label} '' is an empty path; give the {label} directory")
    if metrics is not None and not path_argument(metrics, "metrics"):
        raise ArgumentError(
            "metrics '' is an empty path; give mist eval's record, or leave it out for "
            "RUN/eval-test.json"
        )
    for label, value in (("name", name), ("command", command)):
        if not isinstance(value, str):
            raise TypeError(f"{label} must be a string, got {type(value).__name__}")
    flag(overwrite, "overwrite")


def package(
    run: str | os.PathLike,
    name: str,
    command: str,
    out: str | os.PathLike,
    metrics: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the best checkpoint of ``run`` as the pretrained model ``out/name.safetensors``.

    Args:
        run: a run directory.
        name: the model's name (lowercase letters, digits and dashes).
        command: the command that trained the run, recorded for anyone to rerun.
        out: the folder to write into (the registry, or any other but a mistnet output such
            as a run or a dataset, or a folder inside one).
        metrics: the ``mist eval`` record of the run's best checkpoint (default
            ``RUN/eval-test.json``, what ``mist eval RUN`` writes).
        overwrite: replace a packaged model of that name in ``out`` (its weights may exist
            nowhere else); never a file that is no packaged model.

    Returns:
        The file written.

    Raises:
        TypeError: ``run``, ``out`` or ``metrics`` that is no path, ``name`` or ``command``
            that is no string, an ``overwrite`` that is no bool.
        MistError: an empty path, a bad name or empty command, ``out`` in a mistnet output or
            in ``run``, no metrics or metrics of another checkpoint than the best, or a file of that name in
            ``out`` that is no packaged model.
    """
    _check_package_arguments(run, name, command, out, metrics, overwrite)
    if not NAME.fullmatch(name):
        raise MistError(f"--name {name!r}: use {NAME_RULE}")
    require_short_name(f"{name}{SUFFIX}", "--name: the file")
    check_outside(out, [("the run", run)], "--out", itself=True)
    if not os.path.lexists(out):  # a folder this makes: named as every new output is
        require_output_name(out, "--out")
    if not command.strip():
        raise MistError("--command is empty; give the command that trained the run")
    printable(command, "--command", "give the command on one line (mist models prints it)")
    if len(command) > MAX_COMMAND:  # written, then refused as no checkpoint (header > 16 MiB)
        raise MistError(f"--command has {len(command):,} characters; at most {MAX_COMMAND:,}")
    cfg, model, ckpt = Run(run).load("best")
    where = Path(metrics or Path(run) / "eval-test.json")
    record = _eval_record(where, run, ckpt, metrics)
    if record["k"] != model.k:  # the card says "K = 9" beside metrics measured at --k 3
        raise MistError(
            f"{where} is no mist eval record at the model's K: "
            f"it measured K = {record['k']}, the model's K = {model.k}; package a record of "
            "mist eval without --k"
        )
    card = Card(
        name=name,
        metrics=record["metrics"],
        evaluated_on={
            **{key: record[key] for key in ("split", "images", "k")},
            "data": _portable(record["data"]),
        },
        command=command.strip(),
    )
    target = Path(out) / f"{name}{SUFFIX}"
    replacing = _replaces(target, overwrite)
    save_checkpoint(
        target,
        model,
        config=dataclasses.replace(
            cfg, data=dataclasses.replace(cfg.data, path=_portable(cfg.data.path))
        ).to_dict(),
        step=ckpt.step,
        extra={"pretrained": dataclasses.asdict(card)},
        exclusive=not replacing,  # another package of that name meanwhile is kept
    )
    return target


def _replaces(target: Path, overwrite: bool) -> bool:
    """Whether :func:`package` replaces the model ``target``: a packaged model there, with
    ``overwrite``; never a link or a file of the user's (refused, as is a model without
    ``overwrite``).

    Raises:
        MistError: naming ``target`` and what to do.
    """
    if target.is_symlink():  # replacing it would lose the user's link (its target kept)
        raise MistError(f"{target}: is a symbolic link; --name must name a file of its own")
    if not target.exists():
        return False
    try:  # replace a packaged model only, never a file of the user's
        Card.of(Checkpoint(target))
    except MistError as exc:  # a damaged model of ours too: said why, not "did not write"
        raise MistError(
            f"{target}: exists and is no packaged model mistnet can read ({exc}); choose "
            "another --name or --out, or remove it (mistnet never overwrites a file it "
            "cannot tell it wrote)"
        ) from None
    if not overwrite:
        raise MistError(f"{target}: a packaged model of that name exists; --overwrite replaces it")
    return True


def _portable(path: str) -> str:
    """A dataset folder as a model records it: relative to the working directory when it lies
    inside it, as the card's commands (run there) name it; the packaging machine's absolute
    path (``/home/me/work/...``) names nothing on another. The working directory itself stays
    absolute: ``.`` names wherever the reader is (a card said "on ., 4 images")."""
    if not path or not Path(path).is_absolute():
        return path
    here, there = Path.cwd().resolve(), Path(path).resolve()
    return os.path.relpath(path, here) if there != here and there.is_relative_to(here) else path


def _recorded_path(value: object) -> Path | None:
    """A record's ``run_dir`` or ``run`` as a path; None where it names none (no text, empty,
    or holding a NUL, which ``resolve`` fails on: an internal error of ``models package``)."""
    return Path(value) if isinstance(value, str) and value and "\0" not in value else None


def _eval_record(
    path: Path, run: str | os.PathLike, ckpt: Checkpoint, given: object = None
) -> dict[str, Any]:
    """The ``mist eval`` record at ``path``, once it is checked to be of ``run``'s ``ckpt``
    (a record inside the run is the run's; another must say it measured this run). ``given``:
    the ``--metrics`` the user named (a typo there was told to run mist eval)."""
    if not path.exists():
        if given is not None:
            raise MistError(f"--metrics {path} does not exist; name the record mist eval wrote")
        raise MistError(f"{path} does not exist; run mist eval on the run first")
    record = read_json(path)
    keys = ("metrics", "data", "split", "images", "k", "step", "checkpoint")
    if not isinstance(record, dict) or any(key not in record for key in keys):
        raise MistError(f"{path} is no mist eval record (it needs {', '.join(keys)})")
    if record["k"] == "per-image":  # "no mist eval record: k is 'per-image', not a count"
        raise MistError(
            f"{path} is mist eval's record with each scene's own K (--per-image-k); a model "
            f"card holds the record at the model's K: name {Path(path).parent / 'eval-test.json'}"
            " or run mist eval on the run without --per-image-k"
        )
    problem = card_problem({"metrics": record["metrics"], "evaluated_on": record})
    if problem:
        raise MistError(f"{path} is no mist eval record: {problem}")
    here = Path(run).resolve()
    named = _recorded_path(record.get("run_dir", record.get("run")))
    names_here = named is not None and named.resolve() == here
    if path.resolve().is_relative_to(here):
        # the run's own record, unless its run_dir (absolute) is another run still there: a
        # record copied in (a run moved since names a directory that no longer is)
        other = _recorded_path(record.get("run_dir"))
        foreign = other is not None and other.resolve() != here and other.is_dir()
    else:
        foreign = not names_here
    if foreign:  # the directory it measured, as recorded (a relative run name may be the same)
        measured = record.get("run_dir") or record.get("run")
        raise MistError(
            f"{path} measured the run {measured!r}, not {run} ({here}); run mist eval on this run"
        )
    if not isinstance(record["step"], int) or isinstance(record["step"], bool):  # "4" as 4
        raise MistError(f"{path} is no mist eval record: step is {record['step']!r}, not a count")
    if record["step"] != ckpt.step or record["checkpoint"] != ckpt.path.name:
        raise MistError(
            f"{path} measured {record['checkpoint']} at step {record['step']}, not "
            f"{ckpt.path.name} at step {ckpt.step}; run mist eval on the run again"
        )
    digest = record.get("checkpoint_digest")  # absent from the records of older versions
    if digest is not None and not isinstance(digest, str):  # 5 skipped the comparison
        raise MistError(f"{path} is no mist eval record: checkpoint_digest is {digest!r}")
    if isinstance(digest, str) and digest != ckpt.digest:  # a record copied in from a namesake
        raise MistError(
            f"{path} measured other weights than {ckpt.path.name} of {run} (another checksum); "
            "run mist eval on the run again"
        )
    return record
