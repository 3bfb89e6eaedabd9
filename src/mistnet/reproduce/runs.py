"""One run of a reproduction: its config, training (or resuming) and evaluation.

A run lives in ``OUT/<table>/<row>/seed<s>/``: a run directory of :func:`mistnet.loop.train`
plus ``eval.json``, written last. ``eval.json`` holds the record ``mist eval`` writes for the
test split (same keys, same numbers) and, besides, the extra metrics, the other evaluations of
the row, the training summary, wall times and the equivalent ``mist`` commands. A run with
``eval.json`` is finished and never retrained; one with ``last.safetensors`` but no
``summary.json`` was interrupted and is resumed with the minutes it has left.

Reuse is only safe for the same run: every run records its *fingerprint* (the preset, the
resolved config, its data inside the reproduction by a path relative to it, and its minutes;
not its threads, which change speed and only the last bits of the sums) in
``fingerprint.json`` before training and in ``eval.json``. Before a run is skipped, resumed or
evaluated, the fingerprint of the current plan is compared with the recorded one
(:func:`check_fingerprint`); a run made under another plan is an error, never silently reused.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from mistnet.checkpoint import Checkpoint
from mistnet.config import Config, load_json, override, resolve, upgrade
from mistnet.configrules import unread_keys
from mistnet.engine import Batch, Meter
from mistnet.errors import DataError, MistError, ResumeRefused
from mistnet.evaluation import evaluate_run
from mistnet.io import atomic_write_json
from mistnet.loop import train
from mistnet.metrics import APMeter, match_points
from mistnet.models import MISTOutput
from mistnet.ops import topk_keypoints
from mistnet.pretrained import metric_problem
from mistnet.reproduce.data import roundtrip_identical
from mistnet.reproduce.plan import Budget, Row
from mistnet.rundir import Run
from mistnet.shellwords import shell_join
from mistnet.textfile import read_json

#: Distance (px) within which a detection counts as finding a Gabor impulse.
IMPULSE_RADIUS = 3.0

#: The run's fingerprint in its directory, written before training starts.
FINGERPRINT = "fingerprint.json"


@dataclass
class RunSpec:
    """Everything needed to train and evaluate one (row, seed)."""

    table: str
    row: Row
    seed: int
    run_dir: Path
    preset: str
    overrides: list[str]
    minutes: float
    data: dict[str, Path]  # evaluation name -> dataset directory (its test split)
    threads: int = 0  # torch threads (0: torch's default); not in the fingerprint

    @property
    def eval_file(self) -> Path:
        return self.run_dir / "eval.json"

    @property
    def fingerprint_file(self) -> Path:
        return self.run_dir / FINGERPRINT

    @property
    def home(self) -> Path:
        """The reproduction directory ``OUT`` of ``OUT/<table>/<row>/seed<s>``."""
        return self.run_dir.parents[2]

    def config(self) -> Config:
        return resolve(self.preset, self.overrides)

    def fingerprint(self) -> dict[str, Any]:
        """What makes this run this run: preset, resolved config, minutes."""
        return {
            "preset": self.preset,
            "config": _comparable(self.config().to_dict(), self.home),
            "minutes": self.minutes,
        }

    def commands(self, device: str) -> list[str]:
        """The ``mist train`` / ``mist eval`` command lines equivalent to this run."""
        train = ["mist", "train", "--preset", self.preset, "--out", str(self.run_dir)]
        train += ["--device", device]
        if self.minutes > 0:
            train += ["--max-minutes", f"{self.minutes:g}"]
        if self.threads > 0:
            train += ["--threads", str(self.threads)]
        for item in self.overrides:
            train += ["--set", item]
        lines = [shell_join(train)]
        for ev in self.row.all_evals():
            cmd = ["mist", "eval", str(self.run_dir), "--data", str(self.data[ev.name])]
            if self.row.per_image_k:
                cmd.append("--per-image-k")
            cmd += ["--json", str(self.run_dir / f"eval-{ev.name}.json"), "--device", device]
            lines.append(shell_join(cmd))
        return lines


def make_spec(
    table: str,
    row: Row,
    seed: int,
    budget: Budget,
    out: Path,
    data: dict[str, Path],
    threads: int = 0,
) -> RunSpec:
    """The run of ``row`` under ``budget`` with ``seed``, training on ``data[row.data]``.

    ``threads > 0`` replaces the budget's threads (speed, and the last bits of the sums).
    """
    minutes = budget.run_minutes(table) * row.time_share
    steps = budget.run_steps(row.kind, minutes)
    asked = resolve(budget.presets.get(row.kind, row.preset), list(row.overrides))
    unread = {f"{s}.{k}" for s, k, _ in unread_keys(asked)}
    overrides = [  # the budget's sizes of what the row's method has (the grid no heatmap)
        *(o for o in budget.overrides_for(row.kind) if o.split("=")[0].strip() not in unread),
        *([f"train.steps={steps}"] if steps else []),
        *row.overrides,
        override("data.path", str(data[row.data])),
        f"data.seed={seed}",
        f"train.seed={seed}",
    ]
    return RunSpec(
        table=table,
        row=row,
        seed=seed,
        run_dir=out / table / row.key / f"seed{seed}",
        preset=budget.presets.get(row.kind, row.preset),
        overrides=overrides,
        minutes=minutes,
        data={ev.name: data[ev.data] for ev in row.all_evals()},
        threads=threads or budget.threads,
    )


def _data_path(path: str, home: Path, base: Path | None = None) -> str:
    """A data path as a fingerprint holds it: relative to the reproduction directory ``home``
    when inside it (the reproduction may move, its data with it), else absolute. A relative
    ``path`` is taken from ``base`` (default: the working directory)."""
    where = ((base or Path.cwd()) / path).resolve()
    inside = where.is_relative_to(home.resolve())
    return where.relative_to(home.resolve()).as_posix() if inside else str(where)


def _comparable(cfg: dict[str, Any], home: Path, base: Path | None = None) -> dict[str, Any]:
    """A config dict as JSON has it, with its data path as :func:`_data_path` gives it (a
    relative one taken from ``base``), and without what training recorded from the data the
    plan names (``record``; older runs kept it in ``model``, which
    :func:`mistnet.config.upgrade` moves), nor a dataset directory's split sizes and digits
    (a run records the dataset's, its path stands for them).

    Keys a recorded config lacks (added to :class:`~mistnet.config.Config` since) take their
    defaults, and older keys their current names, as :func:`mistnet.config.load_json` gives
    them to the run.
    """
    cfg = upgrade(json.loads(json.dumps(cfg)), "the recorded fingerprint")
    defaults = json.loads(json.dumps(Config().to_dict()))
    cfg = {**defaults, **cfg}
    for section, values in defaults.items():
        if isinstance(values, dict) and isinstance(cfg[section], dict):
            cfg[section] = {**values, **cfg[section]}
    cfg.pop("record", None)
    if all(isinstance(cfg.get(s), dict) for s in ("model", "data", "train")):
        sections = SimpleNamespace(**{s: SimpleNamespace(**cfg[s]) for s in defaults if s in cfg})
        for section, key, _ in unread_keys(sections):  # as load_json reads the run's
            cfg[section][key] = defaults[section][key]
    data = cfg.get("data", {})
    if data.get("path"):
        data["path"] = _data_path(data["path"], home, base)
        for key in ("n_train", "n_val", "n_test", "digits"):  # the dataset's, as a run records
            data.pop(key, None)  # them (data.runs.adopt_data); the path stands for them
    return cfg


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for key, value in d.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else key))
    return out


def recorded_fingerprint(spec: RunSpec) -> dict[str, Any] | None:
    """The fingerprint the run directory was made under, or ``None`` for a new run.

    From ``eval.json``, else ``fingerprint.json``; a run directory from before fingerprints
    gives what it has: its ``config.json`` (and the preset ``eval.json`` recorded).
    """
    record = read_record(spec.eval_file) if spec.eval_file.is_file() else None
    if record is not None and isinstance(record.get("fingerprint"), dict):
        return record["fingerprint"]
    for path in (spec.fingerprint_file, spec.run_dir / "config.json"):
        try:
            doc = read_json(path)
        except DataError:  # missing, or damaged: the next one (or a new run) decides
            continue
        if not isinstance(doc, dict):
            continue
        if path.name == FINGERPRINT:
            return doc
        legacy = {"config": _comparable(doc, spec.home, base=spec.run_dir)}
        if record is not None and "preset" in record:
            legacy["preset"] = record["preset"]
        return legacy
    return None


def read_record(path: Path) -> dict[str, Any]:
    """The ``eval.json`` of a finished run, checked for what the report reads from it.

    A damaged record is refused rather than re-evaluated silently: the file is the user's
    evidence of the run, and deleting it is one step (the run is then evaluated again from its
    checkpoint, not retrained).

    Raises:
        DataError: (one line) not strict JSON, or not a record of this shape, naming the file,
            the problem and that deleting it evaluates the run again.
    """
    again = "delete it to evaluate the run again"
    try:
        record = read_json(path)
    except DataError as exc:
        raise DataError(f"{exc}; {again}") from None
    problem = _record_problem(record)
    if problem is not None:
        raise DataError(f"{path}: not a record of mist reproduce ({problem}); {again}")
    return record


def _is_number(value: Any) -> bool:
    """A JSON number the report can read as a float (an integer of 400 digits overflowed in
    ``math.isfinite``: an internal error)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _metrics_problem(record: dict[str, Any], where: str) -> str | None:
    for key in ("metrics", "extra"):
        values = record.get(key, {})
        if not isinstance(values, dict):
            return f"{where}{key} is not an object"
        for name, value in values.items():
            if value is not None and not _is_number(value):
                problem = "not a number"
            else:  # a metric as mist eval measures one (an edited rmse of -3 was shown as given)
                problem = metric_problem(name, value) if key == "metrics" else None
            if problem is not None:
                return f"{where}{key}.{name} is {json.dumps(value)}, {problem}"
    if "metrics" not in record or not isinstance(record.get("data"), str):
        return f"{where}metrics or data missing"
    return None


def _record_problem(record: Any) -> str | None:
    """What makes ``record`` unusable as an ``eval.json`` of a reproduction, or ``None``."""
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not a JSON object"
    evals = record.get("evals", {})
    if not isinstance(evals, dict) or not all(isinstance(e, dict) for e in evals.values()):
        return "evals is not an object of records"
    for name, sub in [("", record), *((f"evals.{k}.", v) for k, v in evals.items())]:
        problem = _metrics_problem(sub, name)
        if problem is not None:
            return problem
    train, wall = record.get("train"), record.get("wall_s")
    if not (isinstance(train, dict) and _is_count(train.get("steps"))):
        return "train.steps is not a whole number of steps"
    if "step" in record and not _is_count(record["step"]):  # blamed on training by hand
        return f"step is {json.dumps(record['step'])}, not the step of a checkpoint"
    if not (isinstance(wall, dict) and _is_number(wall.get("total"))):
        return "wall_s.total is not a number"
    if not all(isinstance(record.get(k), str) for k in ("run", "device")):
        return "run or device is not a string"
    commands = record.get("commands")
    if not (isinstance(commands, list) and all(isinstance(c, str) for c in commands)):
        return "commands is not a list of command lines"
    return None


def check_fingerprint(spec: RunSpec) -> None:
    """Refuse to reuse a run directory made under another plan.

    Raises:
        MistError: (one line) the run directory, what differs, and what to do.
    """
    have = recorded_fingerprint(spec)
    if have is None:
        return
    want = spec.fingerprint()
    data = have.get("config", {}).get("data") if isinstance(have.get("config"), dict) else None
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        # recorded absolute by an earlier version: relative to OUT when inside it
        data["path"] = _data_path(data["path"], spec.home, base=spec.home)
    parts = [k for k in want if k in have]  # a run from before fingerprints has only its config
    old, new = _flat({k: have[k] for k in parts}), _flat({k: want[k] for k in parts})
    diffs = [
        f"{key} {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise MistError(
            f"{spec.run_dir} was made under another plan than this one ({shown}); use a fresh "
            "--out, or delete that run directory to retrain it"
        )


def train_spec(spec: RunSpec, device: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Train the run, resuming an interrupted one with its remaining minutes."""

    run = Run(spec.run_dir)
    progress = sys.stderr.isatty()
    if run.summary.is_file() and run.last.is_file():
        log("  training finished earlier; evaluating")
        summary = read_json(run.summary)
        if not isinstance(summary, dict):
            raise DataError(f"{run.summary}: not a summary of mist train (not a JSON object)")
        return summary
    # a run killed before its first last.safetensors (its best written) resumes too: train
    # refused it as "already holds a run; use --resume", an option reproduce does not have
    if run.last.is_file() or run.config.is_file():
        wall = Checkpoint(run.last).extra.get("wall", 0.0) if run.last.is_file() else 0.0
        done = float(wall) / 60
        left = max(spec.minutes - done, 1e-3) if spec.minutes > 0 else 0.0
        log(f"  resuming the interrupted run ({done:.1f} min done)")
        try:
            return train(
                spec.config(),
                run.path,
                device=device,
                resume=True,
                max_minutes=left,
                progress=progress,
                threads=spec.threads,
            )
        except ResumeRefused as e:  # its hint is of mist train's options
            raise MistError(
                f"{e.problem}, or move {run.path} away to have it trained again as planned"
            ) from None
    return train(
        spec.config(),
        run.path,
        device=device,
        max_minutes=spec.minutes,
        progress=progress,
        threads=spec.threads,
    )


class SvhnAP:
    """Table 4's AP at IoU .0, .5, ..., .9 of the model's K detections (an evaluate meter,
    :class:`mistnet.engine.Meter`, over :class:`mistnet.metrics.APMeter`)."""

    def __init__(self, num_classes: int) -> None:
        self.ap = APMeter(num_classes=num_classes)

    def update(self, out: MISTOutput, batch: Batch) -> None:
        labels = out.task.argmax(-1)
        self.ap.update(out.keypoints, labels, batch.boxes, batch.labels, batch.count)

    def sums(self) -> torch.Tensor:
        return self.ap.sums()

    def load_sums(self, sums: torch.Tensor) -> None:
        self.ap.load_sums(sums)

    def compute(self) -> dict[str, float]:
        return {k: v for k, v in self.ap.compute().items() if k != "n_images"}


class ImpulsesFound:
    """The fraction of Gabor impulses with a detection within :data:`IMPULSE_RADIUS` px, one to
    one (:func:`mistnet.metrics.match_points`); an evaluate meter (:class:`mistnet.engine.Meter`).

    As a reference that needs no learning, the same fraction for the K highest local maxima of
    the texture itself (E_K on the image's positive part, K as many as the model detects): a
    kernel peaks at its impulse, so bright maxima already find many impulses where kernels do
    not overlap.

    Args:
        nms_window: E_K's NMS window for the reference (the model's).
        side: the reference boxes' side; matching compares centres only.
    """

    def __init__(self, nms_window: int, side: float) -> None:
        self.nms_window, self.side = nms_window, side
        self.found, self.found_ref, self.total = 0, 0, 0

    def update(self, out: MISTOutput, batch: Batch) -> None:
        K = out.keypoints.shape[1]
        hit = match_points(out.keypoints, batch.boxes, IMPULSE_RADIUS, gt_count=batch.count)
        maxima = batch.images.clamp(min=0)  # (B, 1, H, W): one scale, the image itself
        ref_kp, _ = topk_keypoints(maxima, K, (self.side,), self.nms_window)
        ref = match_points(ref_kp, batch.boxes, IMPULSE_RADIUS, gt_count=batch.count)
        self.found += int(hit.sum())
        self.found_ref += int(ref.sum())
        self.total += int(batch.count.sum())

    def sums(self) -> torch.Tensor:
        return torch.tensor([self.found, self.found_ref, self.total], dtype=torch.float64)

    def load_sums(self, sums: torch.Tensor) -> None:
        self.found, self.found_ref, self.total = (round(v) for v in sums.tolist())

    def compute(self) -> dict[str, float]:
        if not self.total:
            return {"impulses_found": float("nan"), "impulses_found_image_maxima": float("nan")}
        return {
            "impulses_found": self.found / self.total,
            "impulses_found_image_maxima": self.found_ref / self.total,
        }


def extra_meters(extra: str, cfg: Config) -> list[Meter]:
    """The meters of a row's extra metrics (``svhn_ap`` or ``impulses``; none for ``""``),
    for the run of ``cfg``; :func:`evaluate_spec` feeds them in its evaluation's pass."""
    if not extra:
        return []
    if extra == "svhn_ap":
        return [SvhnAP(cfg.model.num_classes)]
    if extra == "impulses":
        return [ImpulsesFound(cfg.model.nms_window, cfg.model.base_side)]
    raise ValueError(f"unknown extra metric {extra!r}")


def evaluate_spec(spec: RunSpec, device: str) -> dict[str, Any]:
    """Evaluate the run's best checkpoint on the test split of each of its evaluations.

    Returns:
        ``{name: record}``; each record is what ``mist eval RUN --data PATH [--per-image-k]``
        writes (:class:`~mistnet.evaluation.Evaluation`) plus ``extra`` (see
        :func:`extra_meters`).
    """
    cfg = load_json(spec.run_dir / "config.json")
    records = {}
    for ev in spec.row.all_evals():
        meters = extra_meters(spec.row.extra, cfg)
        result = evaluate_run(
            spec.run_dir,
            str(spec.data[ev.name]),
            "test",
            per_image_k=spec.row.per_image_k,
            device=device,
            meters=meters,
        )
        extra = {k: v for m in meters for k, v in m.compute().items()}
        records[ev.name] = {**result.to_dict(), "extra": extra}
    return records


def run_spec(
    spec: RunSpec, device: str, budget: Budget, log: Callable[[str], None]
) -> tuple[dict[str, Any], bool]:
    """Train (unless finished) and evaluate one run; returns ``(eval.json record, ran)``.

    Raises:
        MistError: the run directory was made under another plan (:func:`check_fingerprint`),
            or any user error of training and evaluation.
    """
    name = f"[{spec.table}] {spec.row.key} seed {spec.seed}"
    check_fingerprint(spec)
    record = read_record(spec.eval_file) if spec.eval_file.is_file() else None
    _check_as_planned(spec, record)
    if record is not None:
        log(f"{name}: finished earlier ({spec.eval_file} exists), skipped")
        return _named_here(spec, record), False
    fingerprint = spec.fingerprint()
    Run(spec.run_dir).claim()  # a run directory of mist train's, which the fingerprint joins
    atomic_write_json(spec.fingerprint_file, fingerprint)
    limit = f", at most {spec.minutes:g} min" if spec.minutes > 0 else ""
    # The row's overrides can replace the preset's method (channelwise on mnist-hard-cpu): name it.
    method = spec.config().train.method
    log(
        f"{name}: training method {method}, preset {spec.preset} ({budget.name} budget{limit}) "
        f"-> {spec.run_dir}"
    )
    t0 = time.monotonic()
    summary = train_spec(spec, device, log)
    train_s = time.monotonic() - t0
    t1 = time.monotonic()
    evals = evaluate_spec(spec, device)
    eval_s = time.monotonic() - t1
    record = dict(evals["test"])
    record.update(
        evals={k: v for k, v in evals.items() if k != "test"},
        table=spec.table,
        row=spec.row.key,
        seed=spec.seed,
        budget=budget.name,
        preset=spec.preset,
        overrides=spec.overrides,
        train=summary,
        device=summary.get("device", device),
        wall_s={
            "train": round(float(summary.get("wall_s", train_s)), 1),
            "eval": round(eval_s, 1),
            "total": round(float(summary.get("wall_s", train_s)) + eval_s, 1),
        },
        commands=spec.commands(device),
        fingerprint=fingerprint,
    )
    if spec.row.data == "mnist-hard-official":
        source = spec.data["test"].parent / f"mnist-hard-seed{spec.seed}"
        record["official_roundtrip_identical"] = roundtrip_identical(source, spec.data["test"])
    atomic_write_json(spec.eval_file, record)
    shown = {k: v for k, v in {**record["metrics"], **record["extra"]}.items() if _is_rate(k)}
    log(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    return record, True


def _named_here(spec: RunSpec, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` naming its run, data and commands where the reproduction is now: one moved
    or copied elsewhere reported the first one's paths (its commands pointed at them)."""
    trained = record["commands"][0].split() if record["commands"] else []
    threads = trained[trained.index("--threads") + 1] if "--threads" in trained else "0"
    then = replace(spec, threads=int(threads) if threads.isdigit() else 0)  # as it was trained
    here = {
        "run": str(spec.run_dir),
        "commands": then.commands(record["device"]),
        "data": str(Path(spec.data["test"]).resolve()),
    }
    evals = {
        k: {**v, "data": str(Path(spec.data[k]).resolve())} if k in spec.data else v
        for k, v in record.get("evals", {}).items()
    }
    return {**record, **here, "evals": evals}


def _check_as_planned(spec: RunSpec, record: dict[str, Any] | None) -> None:
    """Refuse a run of the reproduction trained on by hand since (``mist train --resume --set
    train.steps=N``): its ``config.json`` no longer has the plan's steps, or its best
    checkpoint is not the one its ``eval.json`` measured. The table would describe weights
    that are not the plan's, or no longer exist.

    Raises:
        MistError: naming the run, both step counts, and what to do.
    """
    run = Run(spec.run_dir)
    if not run.config.is_file():
        return
    steps, planned = load_json(run.config).train.steps, spec.config().train.steps
    evaluated = None if record is None else record.get("step")
    best = Checkpoint(run.best).step if record is not None and run.best.is_file() else evaluated
    if steps != planned or best != evaluated:
        raise MistError(
            f"{spec.run_dir}: trained on since the reproduction made it (train.steps {steps}, "
            f"the plan's {planned}; best checkpoint at step {best}, eval.json of step "
            f"{evaluated}); move the run away to have it trained again as planned"
        )


def _is_rate(key: str) -> bool:
    return key in ("rmse", "det_iou50", "classif", "both", "ap50", "impulses_found", "ap00")
