"""A run's ``log.jsonl``, read back into typed records: the one reader of every log line.

The training loop appends one JSON object per line: ``{"step": 25, "split": "train", "wall":
91.2, "task": 403.1, ...}`` for a logged step, ``{"step": 250, "split": "val", "both": 0.8,
...}`` for a validation (a NaN metric is written as ``null``). ``--resume`` reads the log to
check it against the checkpoint and ``mist plot`` to draw it; both go through :func:`read_log`,
which refuses a damaged log with one line naming the file, the line, the key and the value.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mistnet.errors import DataError, MistError, ResumeRefused
from mistnet.textfile import parse_json, read_text
from mistnet.validate import path_argument, shown

if TYPE_CHECKING:
    from mistnet.checkpoint import Checkpoint
    from mistnet.config import Config


@dataclass(frozen=True)
class LogRecord:
    """One line of ``log.jsonl``.

    Attributes:
        step: the training step (>= 0) the line was logged at.
        split: ``"train"`` (losses) or ``"val"`` (metrics).
        wall: seconds of training up to ``step`` (train lines), else None.
        values: every other key: a loss or a metric, None where the line holds ``null``.
        line: the line as written, for rewriting the log on resume.
    """

    step: int
    split: str
    wall: float | None
    values: dict[str, float | None]
    line: str

    def as_dict(self) -> dict[str, Any]:
        """The line's JSON object."""
        wall = {} if self.wall is None else {"wall": self.wall}
        return {"step": self.step, "split": self.split, **wall, **self.values}


def _number(value: Any) -> bool:
    """A finite JSON number (an integer of hundreds of digits is no float), or numpy's (a
    record built in Python: ``np.float32(1)`` was "must be a finite number")."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def parse_record(line: str, where: str) -> LogRecord:
    """One log line as a :class:`LogRecord`.

    Raises:
        DataError: ``"<where>: ..."`` for a line that is not JSON, not an object, without a
            ``step`` >= 0 or a ``split`` of ``"train"`` or ``"val"``, or with a value that is
            not a number.

    Example:
        >>> parse_record('{"step": 5, "split": "train", "wall": 6.0, "task": null}', "log").values
        {'task': None}
        >>> parse_record('{"step": 5, "split": "train", "wall": "6"}', "log.jsonl line 2")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: log.jsonl line 2: 'wall' must be a number >= 0 (seconds), got '6'
    """
    return check_record(parse_json(line, where), line, where)


def check_record(record: Any, line: str, where: str) -> LogRecord:
    """A decoded log line (``record``, a JSON object; ``line`` its text, for the record) as a
    :class:`LogRecord`, checked as :func:`parse_record` checks one (``where`` names it)."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: not a log record (a JSON object), got {type(record).__name__}")
    for key in ("step", "split"):
        if key not in record:
            raise DataError(f"{where}: no {key!r} key")
    step, split, wall = record.pop("step"), record.pop("split"), record.pop("wall", None)
    whole = isinstance(step, numbers.Integral) and not isinstance(step, bool | np.bool_)
    if not whole or not 0 <= step < 2**63:  # np.int64(1) is one
        raise DataError(f"{where}: 'step' must be an integer in [0, 2**63), got {shown(step)}")
    step = int(step)
    if split not in ("train", "val"):  # a "test" line was drawn as curves of its own
        raise DataError(f'{where}: \'split\' must be "train" or "val", got {shown(split)}')
    if wall is not None and not (_number(wall) and wall >= 0):
        raise DataError(f"{where}: 'wall' must be a number >= 0 (seconds), got {shown(wall)}")
    for key, value in record.items():
        if value is not None and not _number(value):
            raise DataError(f"{where}: {key!r} must be a finite number or null, got {shown(value)}")
    values = {k: None if v is None else float(v) for k, v in record.items()}
    return LogRecord(step, split, None if wall is None else float(wall), values, line)


def read_log(path: str | os.PathLike) -> list[LogRecord]:
    """The records of the log file ``path``, in file order.

    A last line that is not JSON and has no newline (cut short by a kill mid-write) is dropped;
    any other damage is an error (a whole last line of ``NaN`` or a key twice is no cut).

    Raises:
        DataError: the file is not a regular UTF-8 file, a line is damaged (see
            :func:`parse_record`), a step is lower than the line's before, or a step and split
            come twice.
        TypeError: ``path`` is no path (None: "argument should be a str or an os.PathLike
            object", naming nothing).
    """
    path = Path(path_argument(path, "path"))
    text = read_text(path)
    cut = not text.endswith("\n")  # every line is written whole with its newline
    # split at newlines only: str.splitlines() also cuts at U+2028, which JSON strings may hold
    lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    records: list[LogRecord] = []
    seen: set[tuple[int, str]] = set()
    for i, (n, line) in enumerate(lines):
        where = f"{path} line {n}"
        try:
            parsed = parse_json(line, where)
        except DataError:
            if cut and i == len(lines) - 1:
                break
            raise
        record = check_record(parsed, line, where)
        if records and record.step < records[-1].step:  # plotted zig-zag, kept by a resume
            raise DataError(
                f"{where}: step {record.step} after step {records[-1].step}; a run's log only "
                "goes forward (two logs joined?)"
            )
        if (record.step, record.split) in seen:  # drawn as two points at one step
            raise DataError(
                f"{where}: a second {record.split} line of step {record.step}; a run logs each "
                "step once (two logs joined?)"
            )
        seen.add((record.step, record.split))
        records.append(record)
    return records


# how `mist train` starts over from a run it refuses to resume (ResumeRefused)
FROM_WEIGHTS = "start a new run from these weights (--set train.init_from=RUN)"
AFRESH = "train afresh into another --out"


def check_resume(ckpt: Checkpoint, cfg: Config, log: list[LogRecord]) -> None:
    """Refuse a checkpoint whose step does not fit the run, before anything is rewritten.

    The train line of every ``log_every``-th step is appended before the checkpoint of that step
    is written, so the log of the run a checkpoint belongs to holds the line of the last such
    step at or before the checkpoint's; a missing or empty log past that step lost the run's
    history (the resumed log would start mid-run, its summary naming steps it has not).
    A run that validated (its checkpoint names a best step; a run trained without validation
    data names none) holds the line of the last ``val_every``-th step too.
    """
    t = cfg.train
    if ckpt.step > t.steps:
        raise MistError(
            f"{ckpt.path}: step {ckpt.step} is past train.steps = {t.steps}; "
            "the checkpoint does not belong to this run"
        )
    logged = {r.step for r in log if r.split == "train"}
    expected = ckpt.step // t.log_every * t.log_every
    if not log and expected > 0:
        raise ResumeRefused(
            f"log.jsonl is missing or empty but {ckpt.path} is at step {ckpt.step}; restore "
            "the log to resume",
            FROM_WEIGHTS,
        )
    if log and expected > 0 and expected not in logged:
        problem = (
            f"{ckpt.path.parent / 'log.jsonl'} has no line for step {expected} but "
            f"{ckpt.path} is at step {ckpt.step}; "
        )
        if expected > max(logged, default=0):  # lines lost at its end, not another run's
            raise ResumeRefused(
                problem + "the log was cut short: restore it to resume", FROM_WEIGHTS
            )
        raise MistError(problem + "the log and the checkpoint are of different runs")
    checked = ckpt.step // t.val_every * t.val_every
    best = ckpt.extra.get("best_step")
    validated = {r.step for r in log if r.split == "val"}
    if best is not None and checked > 0 and checked not in validated:
        raise ResumeRefused(
            f"log.jsonl has no validation line for step {checked} but {ckpt.path} is at step "
            f"{ckpt.step}; restore the log to resume",
            FROM_WEIGHTS,
        )
    # the best step's line is logged before any later checkpoint: below log_every and
    # val_every (a run stopped at step 4), an emptied log was taken, its history lost for good
    if isinstance(best, int) and best > 0 and best not in validated:
        what = "is missing or empty" if not log else f"has no validation line for step {best}"
        raise ResumeRefused(
            f"log.jsonl {what} but {ckpt.path} is at step {ckpt.step}, its best at step "
            f"{best}; restore the log to resume",
            FROM_WEIGHTS,
        )
