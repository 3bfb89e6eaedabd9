"""``mist plot``: losses and validation metrics of several runs on one figure."""

import json
import os
import shutil

import pytest
from cli_helpers import assert_user_error, mist
from PIL import Image

from mistnet.commands.plot import _labels
from mistnet.rundir import Run
from mistnet.viz import log_curves


def test_plot_draws_losses_and_validation_metrics_of_runs(capsys, tiny_run, tmp_path):
    out = tmp_path / "curves.png"
    copy = shutil.copytree(tiny_run, tmp_path / "copy" / tiny_run.name)  # one run twice: refused
    rc, stdout, err = mist(capsys, "plot", tiny_run, copy, "--out", out)
    assert rc == 0, err
    assert "train/task, train/heatmap, val/ap50, val/ap50_agnostic, val/both" in stdout
    assert "of 2 run(s)" in stdout
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 600
    rc, stdout, err = mist(
        capsys, "plot", tiny_run, "--key", "val/both", "--minutes", "--out", tmp_path / "b.png"
    )
    assert rc == 0 and "wrote" in stdout and ": val/both of 1 run(s)" in stdout
    for keys in (["val/nope"], ["both"], ["val/both", "val/nope"]):
        argv = [a for k in keys for a in ("--key", k)]
        assert_user_error(
            mist(capsys, "plot", tiny_run, *argv, "--out", tmp_path / "c.png"),
            f"no run has the curve {keys[-1]!r}; the curves are train/",
            "val/both",
        )
    assert_user_error(mist(capsys, "plot", tmp_path / "missing"), "does not exist")
    assert not (tmp_path / "c.png").exists()


def test_log_curves_read_back_what_the_run_logged(tiny_run, tmp_path):
    records = Run(tiny_run).records()
    curves = log_curves(records)
    train = [r for r in records if r["split"] == "train"]
    assert [s for s, _, _ in curves["train/task"]] == [r["step"] for r in train] == [5, 10]
    assert [v for _, _, v in curves["train/task"]] == [r["task"] for r in train]
    (val,) = [r for r in records if r["split"] == "val"]
    assert curves["val/both"] == [(10, train[-1]["wall"] / 60, val["both"])]
    torn = tmp_path / "run"
    torn.mkdir()
    (torn / "config.json").write_text((tiny_run / "config.json").read_text())
    lines = (tiny_run / "log.jsonl").read_text()
    (torn / "log.jsonl").write_text(lines + '{"step": 11, "spl')  # a kill mid-write
    assert Run(torn).records() == [json.loads(line) for line in lines.splitlines()]


@pytest.mark.parametrize(
    "last, why",
    [
        ('{"step": 11, "split": "train", "task": NaN}', "NaN is not a JSON number"),
        ('{"step": 11, "step": 12, "split": "train"}', "appears twice"),
        ("\x00\x00", "not valid JSON"),
    ],
)
def test_a_whole_damaged_last_log_line_is_named_not_dropped(capsys, tiny_run, tmp_path, last, why):
    # Before: any last line that was not JSON was taken for one cut by a kill and dropped, a
    # whole line with its newline too: a one-line log was "empty; the run has not logged a
    # step yet", a longer one drew its curves without that record.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((tiny_run / "config.json").read_text())
    lines = (tiny_run / "log.jsonl").read_text()
    for log, line in ((last + "\n", 1), (lines + last + "\n", len(lines.splitlines()) + 1)):
        (run / "log.jsonl").write_text(log)
        out = tmp_path / "p.png"
        assert_user_error(mist(capsys, "plot", run, "--out", out), f"log.jsonl line {line}", why)
        assert not out.exists()


def test_plot_minutes_keeps_early_validations_and_names_untimed_points(capsys, tiny_run, tmp_path):
    """Before: ``mist plot --minutes`` left out, with no message, every validation logged before
    the first training line (``train.val_every`` below ``train.log_every``)."""
    logs = {
        "early": [
            {"step": 1, "split": "val", "both": 0.1},
            {"step": 2, "split": "val", "both": 0.2},
            {"step": 3, "split": "train", "wall": 30.0, "task": 1.0},
            {"step": 3, "split": "val", "both": 0.3},
        ],
        "stopped": [{"step": 1, "split": "val", "both": 0.1}],  # stopped before a training line
    }
    for name, records in logs.items():
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text((tiny_run / "config.json").read_text())
        (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    early = log_curves(Run(tmp_path / "early").records())["val/both"]
    assert [round(m, 6) for _, m, _ in early] == [round(m, 6) for m in (1 / 6, 1 / 3, 0.5)]
    out = tmp_path / "m.png"
    rc, _, err = mist(capsys, "plot", tmp_path / "early", "--minutes", "--out", out)
    assert rc == 0 and err == "" and out.exists()
    argv = ["plot", tmp_path / "early", tmp_path / "stopped", "--minutes"]
    rc, _, err = mist(capsys, *argv, "--out", tmp_path / "n.png")
    assert rc == 0, err
    assert err.strip() == (
        "mist plot: warning: stopped: 1 point(s) left out: its log has no training line with a "
        "time ('wall') to place them in minutes"
    )
    # Before: with no point left to place, the warning, then an empty figure written (exit 0)
    result = mist(capsys, "plot", tmp_path / "stopped", "--minutes", "--out", tmp_path / "o.png")
    assert_user_error(result, "no point to draw in minutes", "leave out --minutes")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "paths, want",
    [
        (["rr", "sub/rr"], ["rr", "sub/rr"]),  # was "/rr": a parent named by an empty name
        (["a/rr", "b/rr"], ["a/rr", "b/rr"]),
        (["x/a/rr", "y/a/rr"], ["a/rr (1)", "a/rr (2)"]),
        (["runs/x", "runs/y"], ["x", "y"]),
    ],
)
def test_each_run_is_labelled_by_its_name_and_a_parent_where_two_share_it(paths, want):
    assert _labels(paths) == want


def _run_with_log(tiny_run, run, records):
    run.mkdir()
    (run / "config.json").write_text((tiny_run / "config.json").read_text())
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_plot_of_runs_without_a_default_curve_lists_the_curves_and_points_to_key(
    capsys, tiny_run, tmp_path
):
    """Before: "the runs have no curves to draw", though ``--key train/foo`` drew one."""
    run = _run_with_log(
        tiny_run,
        tmp_path / "run",
        [
            {"step": 1, "split": "train", "wall": 1.0, "foo": 1.0},
            {"step": 1, "split": "val", "classif/zero": 1.0},
        ],
    )
    out = tmp_path / "x.png"
    assert_user_error(
        mist(capsys, "plot", run, "--out", out),
        "the runs have none of the curves drawn by default (train/task, train/heatmap, "
        "val/<metric>); the curves are train/foo, val/classif/zero: name those to draw with "
        "keys (--key of mist plot)",
    )
    assert not out.exists()
    rc, stdout, err = mist(capsys, "plot", run, "--key", "train/foo", "--out", out)
    assert rc == 0 and ": train/foo of 1 run(s)" in stdout, err
    # Before: a run with no value at all, "the runs have no curves to draw", naming none; beside
    # a run that draws, counted as drawn ("of 2 run(s)") without a word
    bare = _run_with_log(tiny_run, tmp_path / "bare", [{"step": 1, "split": "train"}])
    result = mist(capsys, "plot", bare, "--out", tmp_path / "y.png")
    assert_user_error(result, f"{bare / 'log.jsonl'}: no curve to draw (no logged value)")
    rc, stdout, err = mist(capsys, "plot", tiny_run, bare, "--out", tmp_path / "y.png")
    assert rc == 0 and "of 1 run(s)" in stdout, err
    assert f"{bare / 'log.jsonl'}: none of the curves drawn" in err
    # with --minutes a run of validation lines alone gives no point (no training time)
    val = _run_with_log(tiny_run, tmp_path / "val", [{"step": 1, "split": "val", "both": 0.5}])
    argv = ["plot", tiny_run, val, "--minutes", "--key", "val/both", "--out", tmp_path / "z.png"]
    rc, stdout, err = mist(capsys, *argv)
    assert rc == 0 and "of 1 run(s)" in stdout, err  # was "of 2 run(s)"


def test_plot_refuses_an_out_name_holding_a_control_character(capsys, tiny_run, tmp_path):
    """Before: ``--out $'new\\nline.png'`` wrote a file with a newline in its name."""
    out = tmp_path / "new\nline.png"
    assert_user_error(
        mist(capsys, "plot", tiny_run, "--out", out),
        "--out",
        "holds the control character '\\n'; give a file name of printable characters",
    )
    assert list(tmp_path.iterdir()) == []
    # Before: a name's byte that is not UTF-8 was "holds the control character '\\udce9'"
    out = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.png")
    assert_user_error(mist(capsys, "plot", tiny_run, "--out", out), "the byte 0xe9, which is not")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("leads", ["out", "nowhere"])
def test_plot_and_eval_name_a_run_file_that_is_a_link_out_or_to_nowhere(
    capsys, tiny_run, tmp_path, leads
):
    """Before: ``plot`` drew a ``log.jsonl`` linked from outside the run as the run's curves
    (``--resume`` refused it), and a ``config.json`` linked to nowhere was "not a mistnet run
    (no config.json)"."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    elsewhere = tmp_path / "elsewhere.jsonl"
    shutil.move(run / "log.jsonl", elsewhere)
    (run / "log.jsonl").symlink_to(elsewhere if leads == "out" else run / "gone.jsonl")
    why = "is a symbolic link to" if leads == "out" else "a symbolic link to nowhere"
    assert_user_error(mist(capsys, "plot", run, "--out", tmp_path / "p.png"), "log.jsonl", why)
    assert not (tmp_path / "p.png").exists()
    if leads == "nowhere":
        (run / "config.json").unlink()
        (run / "config.json").symlink_to(run / "gone.json")
        assert_user_error(mist(capsys, "eval", run), "config.json: a symbolic link to nowhere")
