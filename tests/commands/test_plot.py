"""``mist plot``: losses and validation metrics of several runs on one figure."""

import json
import shutil

from cli_helpers import assert_user_error, mist
from PIL import Image

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
