"""Runs left by a kill at one moment of training, and what ``--resume`` makes of them."""

from __future__ import annotations

import copy
import errno
import os
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY, assert_user_error, mist

from mistnet import loop
from mistnet.checkpoint import Checkpoint
from mistnet.config import apply_overrides, load_preset
from mistnet.errors import MistError
from mistnet.rundir import Run


def _config(*overrides: str):
    base = ["data.n_train=32", "data.n_val=8", "train.val_batches=1", "train.steps=4"]
    return apply_overrides(load_preset("tiny-cpu"), [*base, *overrides])


def test_a_run_killed_before_logging_its_first_best_checkpoint_resumes_from_the_start(tmp_path):
    """A SIGKILL at the first write to log.jsonl, after best.safetensors and before
    last.safetensors (the log's first line is the validation's) left best, config.json and an
    empty log: --resume refused ("last.safetensors is missing but best.safetensors exists")
    and a fresh train ("already holds a run"), for good. It starts again from step 0."""
    cfg = _config("train.val_every=2", "train.ckpt_every=2", "train.log_every=3")
    ref, run = Run(tmp_path / "ref"), Run(tmp_path / "run")
    loop.train(cfg, ref.path, progress=False)
    loop.train(apply_overrides(copy.deepcopy(cfg), ["train.steps=2"]), run.path, progress=False)
    assert Checkpoint(run.best).step == 2  # as the kill left it
    run.last.unlink()
    run.summary.unlink()
    run.log.write_text("")
    loop.train(cfg, run.path, resume=True, progress=False)
    for name in ("last", "best"):
        a, b = Checkpoint(getattr(run, name)), Checkpoint(getattr(ref, name))
        assert a.step == b.step and all(torch.equal(v, b.tensors[k]) for k, v in a.tensors.items())
    assert run.log.read_text().count("\n") == ref.log.read_text().count("\n")


def test_a_best_checkpoint_past_the_first_checkpoint_with_an_empty_log_is_still_refused(tmp_path):
    # a best of a later step than the first checkpoint's: last was written; an empty log
    # does not say the run stopped early
    cfg = _config("train.val_every=4", "train.ckpt_every=2")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    assert Checkpoint(run.best).step == 4
    run.last.unlink()
    run.summary.unlink()
    run.log.write_text("")
    with pytest.raises(MistError, match="last.safetensors is missing but best.safetensors"):
        loop.train(cfg, run.path, resume=True, progress=False)


def test_a_deleted_best_checkpoint_is_refused_not_made_of_the_last_weights(tmp_path):
    """Before: with best.safetensors deleted, a resume ended by saving the last weights as
    best.safetensors, while summary.json and the checkpoint still said the best was of the
    earlier step (``mist eval`` then scored the last weights as the best)."""
    cfg = _config("train.val_every=2", "train.ckpt_every=2")
    run = Run(tmp_path / "run")
    loop.train(cfg, run.path, progress=False)
    assert Checkpoint(run.last).extra.get("best_step") is not None
    run.best.unlink()
    longer = apply_overrides(copy.deepcopy(cfg), ["train.steps=6"])
    with pytest.raises(MistError, match=r"best.safetensors is missing, but last.safetensors rec"):
        loop.train(longer, run.path, resume=True, progress=False)
    assert not run.best.exists() and Checkpoint(run.last).step == 4  # nothing changed


def test_a_run_killed_before_its_config_was_written_says_to_train_again(tmp_path, capsys):
    """Before: a SIGKILL between making the run's folder and writing its config.json left
    ``.mistnet`` and ``.lock``; ``--resume`` said "is not a mistnet run (no config.json)"."""
    from mistnet.outputs import create_directory

    run = create_directory(tmp_path / "K", "run")[0]  # as the kill left it
    (run / ".lock").write_text("12345\n")
    result = mist(capsys, "train", "--out", run, "--resume", "--threads", "1")
    assert_user_error(result, "a run stopped before it wrote its config.json", "without --resume")
    argv = ["train", "--preset", "tiny-cpu", "--out", run, "--no-progress", "--threads", "1"]
    argv += [f"--set={s}" for s in [*TINY, "train.steps=2"]]
    rc, _, err = mist(capsys, *argv)  # as the message says
    assert rc == 0 and (run / "config.json").is_file() and not (run / ".lock").exists(), err
    # a run that lost only its config.json (its checkpoints and log are there) is no run that
    # stopped as it began: training into it again would refuse it ("already holds a run");
    # "is not a mistnet run (no config.json)" said nothing of what to do
    (run / "config.json").unlink()
    result = mist(capsys, "train", "--out", run, "--resume", "--threads", "1")
    assert_user_error(result, "the run's config.json is missing", "restore it")


def test_a_lock_left_by_a_kill_after_the_run_finished_goes_with_the_next_resume(
    tmp_path, capsys, monkeypatch
):
    """Before: a SIGKILL once summary.json was written left ``.lock``; every later ``--resume``
    was refused as finished before it took the lock, so nothing ever removed it."""
    run = Run(tmp_path / "run")
    loop.train(_config(), run.path, progress=False)
    (run.path / ".lock").write_text("12345\n")  # as the kill left it
    result = mist(capsys, "train", "--out", run.path, "--resume", "--threads", "1")
    assert_user_error(result, "the run finished at train.steps = 4")
    assert not (run.path / ".lock").exists()
    # Before (as a user who cannot write the run): "R/.lock: Permission denied" where the run
    # was said to be finished. Root writes anywhere: the permission is stood in for.
    (run.path / ".lock").write_text("12345\n")
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != run.path and access(p, mode))
    result = mist(capsys, "train", "--out", run.path, "--resume", "--threads", "1")
    assert_user_error(result, "the run finished at train.steps = 4")
    assert (run.path / ".lock").exists()  # not this user's to remove


def test_a_full_disk_while_appending_to_the_log_names_log_jsonl(tmp_path, capsys, monkeypatch):
    """ENOSPC while appending a line to log.jsonl: before, "mist train: error: No space left
    on device", naming no file, where every other write of the run names its own."""
    real_open = Path.open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_(self, mode="r", *args, **kwargs):
        f = real_open(self, mode, *args, **kwargs)
        return Full(f) if self.name == "log.jsonl" and mode == "a" else f

    monkeypatch.setattr(Path, "open", open_)
    out = tmp_path / "out"
    argv = ["train", "--preset", "tiny-cpu", "--out", out, "--no-progress", "--threads", "1"]
    sets = [*TINY, "train.steps=2", "train.val_every=2", "train.ckpt_every=2"]
    result = mist(capsys, *argv, *[a for s in sets for a in ("--set", s)])
    assert_user_error(result, f"{out / 'log.jsonl'}: No space left on device")
