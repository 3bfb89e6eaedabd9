"""``mist eval``: the metrics (docs/design.md) of a run's best checkpoint on a dataset split.

Examples::

    mist eval runs/classify                               # the run's own data, test split
    mist eval runs/classify --data data/mnist-hard --split test --json results/table2.json
    mist eval --model mnist-hard-classifier --data data/t10k   # a pretrained model, on
        # scenes of t10k digits (mist data make ... --digits mnist): the embedded digits are
        # in the training pool the shipped models learnt from
    mist eval runs/classify --data mnist-hard --per-image-k   # generator: run's seed and n_test
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mistnet.checkpoint import Checkpoint
from mistnet.commands._args import (
    add_compute_arguments,
    add_k_argument,
    add_run_data_arguments,
    compute_device,
    integer,
    run_or_model,
)
from mistnet.errors import MistError, say
from mistnet.evaluation import evaluate_run, read_record
from mistnet.io import atomic_write_json, first_unwritable, nearest_existing
from mistnet.outfiles import file_name
from mistnet.outputs import check_outside
from mistnet.ownership import require_readable
from mistnet.rundir import Run


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a trained run on a dataset split",
        description="Evaluate RUN's best checkpoint, or a pretrained model (--model NAME), on a "
        "split and write its metrics as JSON.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    add_run_data_arguments(p, model=True)
    add_k_argument(p)
    p.add_argument(
        "--per-image-k",
        action="store_true",
        help="detect each image's ground-truth count of instances (Table 3)",
    )
    p.add_argument(
        "--batch-size", type=integer, default=None, metavar="B", help="default: the run's"
    )
    p.add_argument(
        "--json",
        metavar="OUT",
        help="metrics file (default RUN/eval-<split>.json, RUN/eval-<split>-per-image-k.json "
        "with --per-image-k; with --model none unless given)",
    )
    add_compute_arguments(p)
    p.set_defaults(func=run)


def shown(value: float, name: str) -> str:
    """The metric ``name`` as printed: a count (``n_*``) as an integer, a rate or an error to
    four decimals (a count of 1 read "1.0000", a rate of 2.0 would have read "2").

    Example:
        >>> shown(1.0, "n_images"), shown(1.0, "both"), shown(0.12345, "rmse")
        ('1', '1.0000', '0.1235')
    """
    return (
        f"{int(value)}" if name.startswith("n_") and float(value).is_integer() else f"{value:.4f}"
    )


def _within(path: Path, directory: str | None) -> bool:
    if directory is None or not Path(directory).is_dir():
        return False  # a generator name, or no run: nothing on disk to protect
    return Path(directory).resolve() in path.resolve().parents


def _is_record_of(path: Path, run: str, inside: bool = False, model: bool = False) -> bool:
    """Whether ``path`` is a metrics file of ``mist eval`` of ``run`` (the pretrained model of
    that name where ``model``): any record ``inside`` the run's own directory (which may have
    been moved or copied since it was written); else one whose ``run_dir`` is the run's, or no
    run directory any more with the checksum of this run's checkpoint (:func:`_same_weights`);
    a record of an earlier version has only ``run``, as given then: taken from here; of a
    pretrained model, one naming it, whose ``run_dir`` is null (a run folder of the model's
    name and the model took each other's records)."""
    doc = read_record(path)
    if doc is None:
        return False
    named = doc["run"]
    if inside:
        return True
    of_a_model = "run_dir" in doc and doc["run_dir"] is None
    if model or of_a_model:
        return model and named == run and doc.get("run_dir") is None
    recorded = doc.get("run_dir")
    if isinstance(recorded, str):  # this run, or the same weights moved (with their record)
        return Path(recorded) == Path(run).resolve() or (
            not Path(recorded).is_dir() and _same_weights(doc, Path(run))
        )
    return Path(named).resolve() == Path(run).resolve()


def _same_weights(doc: dict, run: Path) -> bool:
    """Whether the record ``doc`` of a run no longer where it was measured the checkpoint of
    ``run`` it names, by its checksum: the run moved, its record with it. A namesake's record
    (``exp2/run`` deleted, ``exp1/run`` evaluated) was replaced by its folder name alone, and
    its metrics may exist nowhere else; a record without a checksum is not taken."""
    digest, name = doc.get("checkpoint_digest"), doc.get("checkpoint")
    if not isinstance(digest, str) or name not in ("best.safetensors", "last.safetensors"):
        return False
    try:
        return Checkpoint(run / name).digest == digest
    except (MistError, OSError):
        return False


def check_json_out(
    out: Path, run: str | None, data: str | None, model: str | None = None, given: bool = True
) -> None:
    """Refuse a metrics file that could replace what eval of ``run`` (or of the pretrained
    ``model``) did not write (its name is checked by :func:`~mistnet.outfiles.file_name`):
    inside the run directory
    be named ``eval-*.json`` (beside the checkpoints and the config), never inside the dataset
    nor inside any other mistnet output (:func:`~mistnet.outputs.check_outside`); and an
    existing file must be an earlier record of eval of the same run. ``given``: ``out`` is
    the user's ``--json`` (else the run's own record), for the message.

    Raises:
        MistError: the first of these that ``out`` breaks.
    """
    in_run = _within(out, run)
    if in_run and not (out.parent.resolve() == Path(run).resolve() and out.match("eval-*.json")):
        raise MistError(
            f"{out}: inside the run directory {run}, --json may only be an eval-*.json directly "
            "in it"
        )
    if not in_run and _within(out, data):
        raise MistError(f"{out}: is inside the dataset directory {data}; choose another --json")
    if not in_run:
        check_outside(out, option="--json")
    this = f"the run {run}" if run is not None else f"the pretrained model {model}"
    if out.is_symlink():  # never written through: it may lead anywhere
        hint = "--json must name a file of its own" if given else "move it away, or give --json"
        raise MistError(f"{out}: is a symbolic link; {hint}")
    if not out.is_dir():  # a folder is never a record: "is not a metrics file" is right
        require_readable(out, "mist eval", "choose another --json" if given else "give --json")
    if out.exists() and not _is_record_of(out, run or model, inside=in_run, model=run is None):
        doc, whose = read_record(out), ""
        if doc is not None and "run_dir" in doc and doc["run_dir"] is None:
            whose = f" (it is the record of the pretrained model {doc['run']})"
        elif doc is not None:  # a record: say of what ("not a metrics file" read as untrue)
            where = doc.get("run_dir") or doc["run"]
            gone = "" if Path(where).is_dir() else ", no longer there, of other or unknown weights"
            whose = f" (it is the record of {where}{gone})"
        raise MistError(
            f"{out}: exists and is not a metrics file of mist eval of {this}{whose}; "
            + ("choose another" if given else "move it away, or give --json")
        )


def run(args: argparse.Namespace) -> int:
    run_or_model(args)
    for option, value in (("--k", args.k), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise MistError(
                f"{option} must be at least 1 (leave it out for the run's), got {value}"
            )
    if args.k and args.per_image_k:
        raise MistError("--k and --per-image-k exclude each other")
    if args.run is not None:  # before its record's path: a file or typo was told of --json
        Run(args.run).require()
    out = _record(args)
    if out is not None:  # before the evaluation: a record of another's there is refused first
        check_json_out(out, args.run, args.data, args.model, given=bool(args.json))
        _check_writable(out, given=bool(args.json))
    device = compute_device(args)
    result = evaluate_run(
        args.run,
        args.data,
        args.split,
        k=args.k or 0,
        per_image_k=args.per_image_k,
        batch_size=args.batch_size or 0,
        device=device,
        model=args.model,
    )
    say(
        f"{result.run} ({result.checkpoint}, step {result.step}) on {result.data} "
        f"[{result.split}], {result.images} images, K = {result.k}"
    )
    for name, value in result.metrics.items():
        say(f"  {name:16s} {shown(value, name)}")
    for reason in sorted(set(result.not_measured.values())):
        names = [n for n, r in result.not_measured.items() if r == reason]
        say(f"  not measured: {', '.join(names)} ({reason})")
    if out is not None:  # after the metrics are shown: a failed write loses none of them
        # the run's own data is known only now
        check_json_out(out, args.run, result.data, args.model, given=bool(args.json))
        atomic_write_json(out, result.to_dict())
        say(f"wrote {out}")
    return 0


def _record(args: argparse.Namespace) -> Path | None:
    """Where the record goes: ``--json``, else the run's ``eval-<split>.json`` (a per-image-K
    record beside the fixed-K one, which alone ``models package`` reads); a pretrained
    model's goes nowhere without ``--json``."""
    if args.json:
        return file_name(args.json, "--json", ".json")
    if args.model is not None:
        return None
    kind = "-per-image-k" if args.per_image_k else ""
    return Path(args.run) / f"eval-{args.split}{kind}.json"


def _check_writable(out: Path, given: bool) -> None:
    """Refuse, before the evaluation, a record ``out`` (:func:`_record`) that could not be
    written: its folder, or the nearest one of it that exists, not writable by this user or
    no directory (the whole evaluation ran, then failed to write). ``given``: ``out`` is the
    user's ``--json``.

    Raises:
        MistError: naming the folder, and ``--json`` as the way out.
    """
    folder = nearest_existing(out.absolute().parent)
    hint = "choose another --json" if given else "give --json FILE elsewhere"
    if not folder.is_dir():  # a file in the way: found only once the whole evaluation ran
        if not given:  # RUN itself a file: the run's own checks say what it is
            return
        raise MistError(f"{folder} is not a directory, so {out} cannot be written; {hint}")
    if first_unwritable([folder]):
        raise MistError(
            f"{folder}: this user cannot write into it, so the record cannot be kept; {hint}"
        )
