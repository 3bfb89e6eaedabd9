"""A run directory on disk: its files, its log, its checkpoints, and whether it can resume.

A run directory holds ``config.json`` (the resolved config), ``last.safetensors`` (written every
``ckpt_every`` steps and at the end), ``best.safetensors`` (best validation metric),
``log.jsonl`` (one JSON line per logged step and per validation, read back by
:func:`mistnet.runlog.read_log`), ``summary.json``, ``.lock`` (held while a process trains into
it) and the ``.mistnet`` marker that names it a run (:func:`mistnet.outputs.claim_output`: training
writes only into a directory it made). The training loop (:mod:`mistnet.loop`)
writes it; everything that only reads runs (``mist eval``, ``show``, ``plot``, ``detect``,
:func:`mistnet.load`, ``mist reproduce``) imports this module and never the loop.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mistnet.checkpoint import Checkpoint
from mistnet.config import Config, load_json, validate
from mistnet.data.manifest import ANNOTATIONS
from mistnet.errors import ArgumentError, MistError, MistWarning, ResumeRefused
from mistnet.io import (
    atomic_write_text,
    first_unwritable,
    json_text,
    remove_path,
    remove_stale_temporaries,
)
from mistnet.locks import LOCK, exclusive_lock
from mistnet.markers import MARKER
from mistnet.metrics import unmeasured
from mistnet.models.build import build_to_load
from mistnet.models.mist import MIST
from mistnet.outputs import discard_new, entries, open_output
from mistnet.runhints import no_config, packaged_hint, pretrained_file
from mistnet.runlog import AFRESH, FROM_WEIGHTS, LogRecord, check_resume, read_log
from mistnet.runmatch import moved_here, require_trained_with
from mistnet.runpaths import absolute, stored
from mistnet.textfile import read_json
from mistnet.trainer import Trainer
from mistnet.validate import own_file, path_argument, regular_file, require_directory

MAXIMISE = {"both": True, "det_iou50": True, "classif": True, "ap50": True, "rmse": False}


RUN_DIRECTORY = "run directory"


def select_metric(cfg: Config, annotations: frozenset[str] = ANNOTATIONS) -> str:
    """The validation metric that picks ``best.safetensors``: ``train.select_metric``, else what
    the data can measure (``rmse`` for reconstruction; ``both`` with boxes and labels, else
    ``classif``).

    Raises:
        MistError: ``train.select_metric`` needs ground truth the data lacks.
    """
    chosen = cfg.train.select_metric
    skipped = unmeasured(cfg.model.task, annotations)
    if chosen in skipped:
        raise MistError(
            f"train.select_metric = {chosen!r} cannot be measured: {skipped[chosen]} "
            "(leave it empty to pick what the data measures)"
        )
    if chosen:
        return chosen
    if cfg.model.task == "reconstruct":
        return "rmse"
    return "both" if "both" not in skipped else "classif"


#: What ``mist train`` writes into a run directory by name; besides, a ``tb/`` of TensorBoard's
#: and ``mist eval``'s records ``eval-*.json``, told by their content where a run is replaced
#: (``demo.run_files``) or a failed one undone (only a ``tb/`` this training made).
TRAINING_FILES = (
    MARKER,
    LOCK,
    "config.json",
    "log.jsonl",
    "summary.json",
    "last.safetensors",
    "best.safetensors",
)


def _tensorboard_installed() -> bool:
    """Whether :meth:`Run.tensorboard` makes a writer: its import works (not merely found)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:  # noqa: BLE001 - optional: any failure means no writer
        return False
    return True


def tensorboard_only(folder: Path) -> bool:
    """Whether ``folder`` is a directory holding TensorBoard's event files and nothing else."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    for root, dirs, files in os.walk(folder):
        if any(os.path.islink(os.path.join(root, d)) for d in dirs):
            return False
        if not all(f.startswith("events.out.tfevents.") for f in files):
            return False
    return True


class Run:
    """Paths of a run directory, and the reading and writing of its log."""

    def __init__(self, path: str | Path, what: str = "run directory") -> None:
        """``what``: how a message names ``path`` where it is no path (``out``: pathlib's
        "argument should be a str or an os.PathLike object" named nothing)."""
        self.path = Path(path_argument(path, what))
        self.config = self.path / "config.json"
        self.last = self.path / "last.safetensors"
        self.best = self.path / "best.safetensors"
        self.log = self.path / "log.jsonl"
        self.summary = self.path / "summary.json"
        self._made_tb = False  # tb/ made by this process (tensorboard), removed on failure

    def stored(self, cfg: Config) -> Config:
        """``cfg`` as this run writes it (:func:`mistnet.runpaths.stored`): its paths relative
        to the run inside the run's parent folder, else absolute."""
        return stored(cfg, self.path)

    def begin(self, resume: bool) -> None:
        """Before training into the run, its lock held (:meth:`writing`): refuse a checkpoint
        a fresh run would overwrite (another process may have trained into it meanwhile), and
        remove the temporaries of a writer killed mid-write."""
        if not resume:
            self.require_no_checkpoint()
        remove_stale_temporaries(self.path)

    def require(self) -> None:
        if self.path.is_file():
            if (self.path.parent / "config.json").is_file():  # a checkpoint of the run
                raise MistError(
                    f"{self.path} is a file; give the run directory ({self.path.parent})"
                )
            hint = ""
            if self.path.suffix == ".safetensors":  # its folder is no run either
                hint = "; a checkpoint is read from its run directory, beside its config.json"
            hint = hint and (packaged_hint(self.path) or hint)
            raise MistError(f"{self.path} is a file, not a run directory{hint}")
        if not os.path.lexists(self.path) and pretrained_file(self.path):  # "does not exist"
            raise MistError(
                f"run directory {self.path} does not exist; {self.path} is a pretrained model, "
                f"which is no run (mist eval and detect read it as --model {self.path})"
            )
        require_directory(self.path, "run directory")
        if not os.path.lexists(self.config):  # a link to nowhere was "no config.json"
            raise no_config(self.path, (self.last, self.best, self.log))
        regular_file(self.config)  # a FIFO, a folder or a link to nowhere is no missing file

    def records(self) -> list[dict[str, Any]]:
        """The lines of ``log.jsonl`` as dicts (a last line cut short by a kill is left out).

        Raises:
            MistError: not a run, no log or an empty one, or a damaged line (see
                :func:`mistnet.runlog.read_log`).
        """
        self.require()
        if not os.path.lexists(self.log):  # a link to nowhere is named below
            raise MistError(f"{self.path} has no log.jsonl yet")
        records = read_log(own_file(self.log, RUN_DIRECTORY))  # plot read a link out of the run
        if not records:
            raise MistError(f"{self.log}: empty; the run has not logged a step yet")
        return [r.as_dict() for r in records]

    def read_log(self) -> list[LogRecord]:
        """The records of ``log.jsonl`` (none when it does not exist); see
        :func:`mistnet.runlog.read_log`."""
        if not self.log.exists():
            return []
        return read_log(own_file(self.log, RUN_DIRECTORY))  # appended to: never through a link

    def is_legacy(self) -> bool:
        """Whether this is a run written before output directories were marked: its
        ``config.json`` is a run config and it holds a checkpoint."""
        if not (self.last.is_file() or self.best.is_file()):
            return False
        try:
            load_json(self.config)
        except (MistError, OSError, ValueError):
            return False
        return True

    def claim(self, cfg: Config | None = None) -> list[Path]:
        """Make this run directory for writing, or accept one ``mist train`` made earlier.

        Returns:
            The directories created (none when the run existed; a legacy run gets its marker).

        Raises:
            MistError: ``path`` exists and is not a run, or lies inside another output or in
                a folder the run of ``cfg`` reads (see :func:`mistnet.outputs.claim_output`).
        """
        legacy, inputs = (lambda path: self.is_legacy()), inputs_of(cfg)
        return open_output(self.path, "run", "mist train", legacy=legacy, inputs=inputs)

    def finished(self, steps: int) -> bool:
        """Whether the run trained ``steps`` steps: its ``summary.json`` (written as training
        ends; none when it was killed) and its last checkpoint both say so.

        Raises:
            MistError: a damaged last checkpoint (see :class:`~mistnet.checkpoint.Checkpoint`).
        """
        try:
            done = read_json(self.summary).get("steps")
        except (MistError, OSError, AttributeError):
            return False  # a damaged summary is rewritten as the resumed run ends
        if done != steps or not self.last.is_file():
            return False
        return Checkpoint(self.last).step == steps  # past them: check_resume names it

    def append_log(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line of ``log.jsonl``.

        Raises:
            OSError: the line could not be written (a full disk), under ``log.jsonl``'s name
                as every other write of the run says its error (before: none named).
        """
        try:
            with self.log.open("a") as f:
                f.write(json_text(record, indent=None) + "\n")
        except OSError as exc:
            if exc.filename is not None:
                raise
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.log)) from exc

    def truncate_log(self, log: list[LogRecord], step: int) -> None:
        """Rewrite ``log.jsonl`` without the lines past ``step`` (written after the checkpoint)."""
        if self.log.is_file():
            atomic_write_text(self.log, "".join(r.line + "\n" for r in log if r.step <= step))

    def config_to_train(self, cfg: Config, resume: bool) -> Config:
        """The config training ``cfg`` into this directory goes on with: on ``resume`` the
        run's own (:meth:`resume_config`), else ``cfg``, once the directory holds no run;
        ``cfg`` checked (:func:`~mistnet.config.validate`, on a copy) either way.

        Raises:
            MistError: see :meth:`resume_config` and :meth:`require_no_checkpoint`.
        """
        cfg = validate(copy.deepcopy(cfg))  # built in Python, it never met the parser
        self.require_writable(resume)
        if resume:
            return self.resume_config(cfg)[0]
        self.require_no_checkpoint()
        return cfg

    def require_writable(self, resume: bool) -> None:
        """Refuse a ``tb/`` training would not write its TensorBoard scalars into: a file
        ("File exists" once config.json was rewritten and a finished run's summary removed), a
        link (followed out of the run) or a folder this user cannot write (a thread's traceback);
        on ``resume``, a run this user cannot write (config.json rewritten, the summary removed
        and steps trained before "log.jsonl: Permission denied")."""
        tb = self.path / "tb"
        if tb.is_symlink() or (os.path.lexists(tb) and not tb.is_dir()):
            what = "a symbolic link" if tb.is_symlink() else "not a folder"
            raise MistError(
                f"{tb}: {what}; the run's TensorBoard scalars are written there: move it away"
            )
        writes_tb = _tensorboard_installed()  # else tb/ is not written
        if denied := first_unwritable([*[self.path, self.log] * resume, *[tb] * writes_tb]):
            raise MistError(f"{denied}: this user cannot write it, and training writes there")

    def require_no_checkpoint(self) -> None:
        """Refuse a fresh start in a directory that holds a checkpoint of a run."""
        if self.last.exists() or self.best.exists():
            raise MistError(f"{self.path} already holds a run; use --resume or another --out")

    def resume_config(self, asked: Config | None = None) -> tuple[Config, list[str]]:
        """The config a resumed run continues with (its own, as saved, but a larger
        ``train.steps`` of ``asked``), and what of ``asked`` it ignores (``section.key: saved
        -> asked`` lines; none when ``asked`` is None).

        Raises:
            MistError: not a run, or (``asked`` given) a run that finished, when ``asked``
                does not raise its ``train.steps``.
        """
        self.require()
        for path in (self.last, self.log):  # read, and the log appended to, once it resumes
            own_file(path, RUN_DIRECTORY)
        saved = load_json(own_file(self.config, RUN_DIRECTORY))
        if asked is None:
            return saved, []
        for path in (self.last, self.best, self.summary):
            # a folder there is no missing file; a folder at best.safetensors or summary.json
            # would fail only once training had rewritten the run (as validation improves,
            # as training ends)
            if os.path.lexists(path):
                regular_file(path)
        self._check_last_checkpoint(saved)
        self._check_config_of_last(saved)
        # A larger train.steps trains a stopped or finished run further (the batch of step t
        # depends on the seed and t alone, and no schedule on the number of steps).
        steps = saved.train.steps = max(saved.train.steps, asked.train.steps)
        if self.finished(steps):  # nothing to train: a resume would only rewrite its files
            self._remove_stale_lock()
            raise MistError(
                f"{self.path}: the run finished at train.steps = {steps}; to train it further, "
                f"resume with --set train.steps=N, N > {steps}"
            )
        a, b = absolute(asked).to_dict(), saved.to_dict()  # paths compared as absolute
        if a["data"]["path"] and moved_here(saved, a["data"]["path"]):
            saved.data.path = b["data"]["path"] = a["data"]["path"]  # written with the run
        if a["data"]["path"] and a["data"]["path"] != b["data"]["path"]:
            raise MistError(
                f"{self.path} was trained on the dataset {b['data']['path'] or b['data']['name']}"
                f", not {a['data']['path']}; a resumed run trains on the data it started with"
            )
        diff = [
            f"{section}.{key}: {b[section][key]!r} -> {value!r}"
            for section, values in a.items()
            for key, value in values.items()
            if b[section][key] != value and section != "record"
        ]
        return saved, diff

    def _check_config_of_last(self, saved: Config) -> None:
        """Refuse a ``config.json`` that says otherwise than the config ``last.safetensors`` was
        trained with (:meth:`require_trained_with`): resuming restores the optimisers' state
        (their learning rates with it) from the checkpoint, so an edit would be half applied
        and the file would no longer say how the run was trained; and a ``best.safetensors``
        of another run, which the resumed run would keep as its best.

        Raises:
            MistError: naming the first key that differs and both values.
        """
        resume = "a resumed run goes on as it was trained: put {was!r} back"
        if self.best.is_file():
            self.require_trained_with(Checkpoint(self.best), saved, resume, FROM_WEIGHTS)
        if not self.last.is_file():
            return
        ckpt = Checkpoint(self.last)
        self.require_trained_with(ckpt, saved, resume, FROM_WEIGHTS)
        # before config.json is written again
        check_resume(ckpt, saved, self.read_log())

    def require_trained_with(
        self, ckpt: Checkpoint, saved: Config, hint: str = "", afresh: str = ""
    ) -> None:
        """Refuse the checkpoint ``ckpt`` of this run when the config it records differs from
        ``saved`` (its ``config.json``): see :func:`~mistnet.runmatch.require_trained_with`."""
        require_trained_with(ckpt, saved, self.config, hint, afresh)

    def _remove_stale_lock(self) -> None:
        """Remove the ``.lock`` a kill left once the run had finished (a resume, refused as
        finished, never took it): where this user may, and not through a link; held by a
        live process, or not removable, it stays (the refusal says what matters)."""
        lock = self.path / LOCK
        if not os.path.lexists(lock) or self.path.is_symlink() or first_unwritable([self.path]):
            return
        with contextlib.suppress(MistError, OSError):
            with exclusive_lock(self.path, "mist train", transient=True):
                pass

    def _check_last_checkpoint(self, saved: Config) -> None:
        """Refuse to resume without ``last.safetensors`` once one had been written (a fresh
        start would empty the log and overwrite ``best.safetensors``), or while
        ``best.safetensors`` is there with no log; a run stopped before its first checkpoint
        was whole (its log, empty too, at that step at most; its best no later) starts again
        from step 0, as it would have gone.

        Raises:
            MistError: naming the missing file and what shows it existed, or a damaged
                ``best.safetensors``.
        """
        if self.last.is_file():
            best_step = Checkpoint(self.last).extra.get("best_step")
            if best_step is not None and not os.path.lexists(self.best):  # else the last
                # weights were kept as the best at the end, recorded as of the old best step
                raise ResumeRefused(
                    f"{self.best} is missing, but {self.last.name} records a best at step "
                    f"{best_step}; restore it to resume",
                    AFRESH,
                )
            return
        every = saved.train.ckpt_every
        reached = max((r.step for r in self.read_log()), default=0)
        # past the first checkpoint's step: it was written. At that step the log's lines come
        # before the checkpoint (a kill in its validation, or between best and last, left a
        # run that --resume refused for good, naming a checkpoint that never existed).
        if reached > every or self.summary.exists():
            shown = (
                f"{self.log.name} reaches step {reached}, past the first checkpoint (one is "
                f"written every {every})"
                if reached > every
                else f"{self.summary.name} says the run finished"
            )
            raise ResumeRefused(
                f"{self.last} is missing, but {shown}; restore it to resume", AFRESH
            )
        # best.safetensors is written before its validation's log line: a kill between them
        # leaves best, an empty log and no last (refused for good before). A best past the
        # first checkpoint's step, or no log at all, says nothing of how early it stopped.
        if self.best.exists() and reached == 0 and self._best_past(every):
            raise ResumeRefused(
                f"{self.last} is missing but {self.best.name} exists; restore it to resume", AFRESH
            )

    def _best_past(self, every: int) -> bool:
        """Whether ``best.safetensors`` may be of a later step than the first checkpoint's:
        there is no log, or its step is past ``every``.

        Raises:
            MistError: a damaged ``best.safetensors``.
        """
        return not self.log.exists() or Checkpoint(self.best).step > every

    def restore(
        self, trainer: Trainer, cfg: Config, device: torch.device, truncate_log: bool
    ) -> Checkpoint:
        """Load ``last.safetensors`` into ``trainer`` (weights, optimisers, the moving average)
        once :func:`check_resume` accepts it; ``truncate_log`` (the writing rank): drop the
        log's later lines, and the summary of a run to be trained further (interrupted, it has
        none, as a fresh run has not)."""
        ckpt = Checkpoint(own_file(self.last, RUN_DIRECTORY), device=device)
        log = self.read_log()
        check_resume(ckpt, cfg, log)
        ckpt.load_model(trainer.model)
        for name, opt in trainer.optimizers.items():
            ckpt.load_optimizer(name, opt)
        if trainer.average is not None:
            ckpt.load_average(trainer.average)
        if truncate_log:
            self.truncate_log(log, ckpt.step)
            if ckpt.step < cfg.train.steps:  # to be trained further: that end is no more its end
                self.summary.unlink(missing_ok=True)
        return ckpt

    @contextmanager
    def writing(self, resume: bool, cfg: Config | None = None) -> Iterator[None]:
        """Hold ``.lock`` while training ``cfg`` into the directory, made or accepted by
        :meth:`claim`.

        A fresh run that fails (or, under the CLI, is stopped by a signal:
        :func:`mistnet.signals.signals_as_exceptions`) before its first checkpoint removes the
        directory it created, or the files it wrote into a run that existed.

        Raises:
            MistError: ``path`` is not a run (:meth:`claim`), or another process holds the lock.
        """
        before = entries(self.path)  # an empty folder of the user's stays, empty, on failure
        created = self.claim(cfg)
        # transient: a refused or failed call leaves no .lock in a run it did not change
        with exclusive_lock(self.path, "mist train", transient=True):
            try:
                yield
            except BaseException:
                # nothing worth keeping: leave what was there before
                if not self.last.exists() and (created or not resume):
                    # what training writes, not a run's every name: an eval-*.json or a tb/
                    # the user put into their folder meanwhile stays
                    writes = [*TRAINING_FILES, *["tb/"] * self._made_tb]
                    discard_new(self.path, created, before, writes)
                raise

    def tensorboard(self, resumed_at: int | None = None):
        """A TensorBoard writer into ``tb/``, or None without the optional package.

        A fresh start removes the event files of an attempt killed before its first checkpoint,
        a run resumed at step ``resumed_at`` hides its events past that step (an attempt killed
        past the checkpoint): TensorBoard showed both attempts' curves over the same steps.
        """
        if not _tensorboard_installed():  # tensorboard is optional
            return None
        from torch.utils.tensorboard import SummaryWriter

        tb = self.path / "tb"
        if resumed_at is None and tensorboard_only(tb):
            remove_path(tb)
        self._made_tb = not os.path.lexists(tb)
        purge_step = None if resumed_at is None else resumed_at + 1
        return SummaryWriter(str(tb), purge_step=purge_step)

    def load(
        self, which: str = "best", device: torch.device | str = "cpu"
    ) -> tuple[Config, MIST, Checkpoint]:
        """Rebuild the model of this run from its config and a checkpoint (``best`` or ``last``).

        The weights are the moving average when the run kept one (``train.ema_decay > 0``).
        """
        if which not in ("best", "last"):
            raise ArgumentError(f"which must be 'best' or 'last', got {which!r}")
        self.require()
        cfg = load_json(own_file(self.config, RUN_DIRECTORY))
        if not os.path.lexists(self.best) and not os.path.lexists(self.last):
            raise MistError(f"{self.path} holds no checkpoint yet (no best or last.safetensors)")
        path = self.best if which == "best" else self.last
        if which == "best" and not os.path.lexists(self.best):  # stopped before validating
            warnings.warn(
                f"{self.path} has no best.safetensors (a run stopped before its first "
                "validation, or the file was removed); using last.safetensors",
                MistWarning,
                stacklevel=2,
            )
            path = self.last
        regular_file(own_file(path, RUN_DIRECTORY))  # a folder or a link to one is none
        ckpt = Checkpoint(path, device=device)
        self.require_trained_with(ckpt, cfg)
        if not cfg.record.image_size and "image_size" in ckpt.extra:  # a run of an older version
            cfg.record.image_size = tuple(int(v) for v in ckpt.extra["image_size"])
        model = build_to_load(cfg.model, cfg.train.method)
        ckpt.load_model(model, average=True)
        return cfg, model.to(device).eval(), ckpt


def inputs_of(cfg: Config | None) -> list[tuple[str, str]]:
    """The folders a run of ``cfg`` reads (its dataset, the run it starts from), which its
    directory may not lie in (:func:`mistnet.outputs.check_outside`)."""
    if cfg is None:
        return []
    found = [("the dataset", cfg.data.path), ("the run", cfg.train.init_from)]
    return [(what, path) for what, path in found if path and Path(path).is_dir()]


def warm_start(model: MIST, source: str, parts: str, device: torch.device | str = "cpu") -> None:
    """Copy the ``parts`` of ``model`` ("heatmap", "task" or "all") from a checkpoint or run.

    The source's moving-average weights are taken when it kept them.
    """
    path = Path(source)
    if not os.path.lexists(path) and (file := pretrained_file(source)):  # "does not exist"
        raise MistError(
            f"train.init_from {source}: no such checkpoint or run; {source} is a pretrained "
            f"model: give its file, {file}"
        )
    if path.is_dir():
        run = Run(path)
        path = own_file(run.best if run.best.is_file() else run.last, RUN_DIRECTORY)
    ckpt = Checkpoint(path, device=device)
    prefix = {"heatmap": "heatmap_net.", "task": "task_net.", "all": ""}[parts]
    state = {k: v for k, v in ckpt.model_state(average=True).items() if k.startswith(prefix)}
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        which = "weights" if parts == "all" else f"{parts} network's weights"
        raise MistError(
            f"{path}: its {which} do not fit this model (other network sizes?); a run started "
            "from it keeps its architecture"
        )
    model.load_state_dict(state, strict=False)
