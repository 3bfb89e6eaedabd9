"""``mist demo`` end to end, on a tiny budget: data, run, metrics, figure, and the run directory
is usable by ``mist eval`` with the same numbers; the auto-encoder task; no figure without
matplotlib; bad options."""

import fcntl
import fnmatch
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, entries_under, hide_matplotlib, mist
from helpers import fill_small_mnist_cache

import mistnet.demo
import mistnet.outputs
from mistnet.cli import main as mist_main
from mistnet.data.mnist import mnist_cache
from mistnet.demo import demo_slots, run_demo
from mistnet.errors import MistError
from mistnet.io import is_temporary
from mistnet.signals import deferred_signals
from mistnet.viz import output_figure

# Tiny networks and six steps: checks the job, learns nothing.
TINY = [
    "--set", "model.heatmap_width=8", "--set", "model.heatmap_depth=2",
    "--set", "model.heatmap_dilations=[1, 2]",
    "--set", "model.patch_base_width=4", "--set", "train.steps=6",
    "--set", "train.val_every=3", "--set", "train.ckpt_every=3",
    "--set", "train.batch_size=8", "--threads", "1", "--minutes", "1",
]  # fmt: skip
SIZES = ["--n-train", "64", "--n-val", "16", "--n-test", "24"]


def test_demo_writes_run_metrics_and_figure_that_eval_reproduces(tmp_path, capsys, monkeypatch):
    captions = []

    def drawn(*args, caption="", **kwargs):
        captions.append(caption)
        return output_figure(*args, caption=caption, **kwargs)

    monkeypatch.setattr(mistnet.demo, "output_figure", drawn)
    out = tmp_path / "demo"
    assert mist_main(["demo", "--out", str(out), *SIZES, *TINY]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["digits"] == {"source": "embedded", "train": 4000, "val": 500, "test": 500}
    assert "digits: the embedded digits" in capsys.readouterr().out
    metrics = record["metrics"]
    assert metrics["n_images"] == 24 and metrics["n_instances"] == 24 * 9
    assert metrics["both"] <= min(metrics["det_iou50"], metrics["classif"])
    assert record["train"]["steps"] == 6
    # The best checkpoint is the one evaluated, on all 24 test scenes with K = 9.
    assert (record["checkpoint"], record["step"]) == (
        "best.safetensors",
        record["train"]["best_step"],
    )
    assert (record["split"], record["images"], record["k"]) == ("test", 24, 9)
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A demo again over this one takes its metrics and figure for its own (a user's file of
    # those names is refused: commands/test_outputs.py).
    assert all(own(path) for path, own in demo_slots(out)[2:])
    # The figure names the preset, the steps trained, the best step and the test metrics.
    m = metrics
    assert captions == [
        f"mnist-hard-cpu, 6 steps (best checkpoint: step {record['train']['best_step']}); test: "
        f"det_iou50 {m['det_iou50']:.4f}, classif {m['classif']:.4f}, both {m['both']:.4f}, "
        f"ap50 {m['ap50']:.4f}"
    ]
    assert json.loads((out / "run" / "config.json").read_text())["model"]["task"] == "classify"

    eval_json = tmp_path / "eval.json"
    rc = mist_main(
        ["eval", str(out / "run"), "--data", str(out / "data"), "--json", str(eval_json)]
    )
    assert rc == 0
    again = json.loads(eval_json.read_text())
    # mist eval (batch 8) gives the numbers the demo (batch 50) wrote: the counts and rates
    # exactly; AP sums its precision curve in batch order, so it may differ in the last bit.
    ap = {k: v for k, v in record["metrics"].items() if k.startswith("ap")}
    assert {k: again["metrics"][k] for k in ap} == pytest.approx(ap, rel=1e-12, abs=0)
    assert {k: v for k, v in again["metrics"].items() if k not in ap} == {
        k: v for k, v in record["metrics"].items() if k not in ap
    }
    assert {k: v for k, v in again.items() if k != "metrics"} == {
        k: v for k, v in record.items() if k not in ("metrics", "digits", "train", "wall_s")
    }


def test_demo_on_full_mnist_takes_the_cache_and_says_so(tmp_path, capsys, monkeypatch):
    fill_small_mnist_cache(monkeypatch, tmp_path / "mnist")
    out = tmp_path / "demo"
    argv = ["demo", "--out", out, "--digits", "mnist", *SIZES, *TINY, "--set", "train.steps=2"]
    rc, printed, err = mist(capsys, *argv)
    assert rc == 0, err
    record = json.loads((out / "metrics.json").read_text())
    assert record["digits"] == {"source": "mnist", "train": 50, "val": 10, "test": 20}
    # The metrics block is JSON on its lines (was one line of literal \n); no bars in a log.
    block = printed[printed.index("{\n") : printed.index("\n}\n") + 2]
    assert json.loads(block)["n_images"] == record["metrics"]["n_images"] and "\r" not in err
    assert f"digits: full MNIST from the data cache ({mnist_cache()})" in printed
    assert json.loads((out / "data" / "manifest.json").read_text())["digits"] == "mnist"


def test_a_demo_into_a_folder_whose_name_is_not_utf8(tmp_path, capsys):
    out = tmp_path / os.fsdecode(b"demo\xff")
    try:
        out.mkdir()
        out.rmdir()
    except (OSError, UnicodeError):  # a filesystem that refuses such names
        pytest.skip("this filesystem refuses names that are not UTF-8")
    rc, printed, err = mist(capsys, "demo", "--out", out, *SIZES, *TINY, "--set", "train.steps=2")
    assert rc == 0, err
    assert json.loads((out / "metrics.json").read_text())["images"] == 24
    assert json.loads((out / "run" / "config.json").read_text())["data"]["path"] == "../data"
    assert "demo\\udcff" in printed  # printed escaped, not a failure after the work


def test_reconstruct_demo_without_matplotlib_reports_rmse_and_names_the_extra(
    capsys, monkeypatch, tmp_path
):
    hide_matplotlib(monkeypatch)
    out = tmp_path / "demo"
    rc, stdout, _ = mist(capsys, "demo", "--out", out, "--task", "reconstruct", *SIZES, *TINY)
    assert rc == 0
    record = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "run" / "config.json").read_text())["model"]["task"] == "reconstruct"
    assert 0 < record["metrics"]["rmse"] < 1 and record["train"]["steps"] == 6
    assert not (out / "figure.png").exists()
    notes = [line for line in stdout.splitlines() if "no figure.png" in line]
    assert notes == [
        "note: no figure.png: drawing figures needs matplotlib (pip install 'mistnet[figures]')"
    ]
    assert '"rmse"' in stdout  # the metrics are printed


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--minutes", "0"], "--minutes must be a number of minutes > 0, got 0"),
        (["--n-test", "0"], "--n-test must be at least 1"),
        (["--threads", "-1"], "--threads must be 0 (torch's choice) or more"),
        (["--device", "tpu"], "--device must be"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--set", "train.nope=1"], "train.nope"),
        # before: every scene made, then "the training split has 31 scenes, fewer than one batch"
        (
            ["--n-train", "31"],
            "--n-train 31 (n_train= in Python) is fewer scenes than one batch",
        ),
    ],
)
def test_demo_bad_options_are_one_line_errors_before_any_work(capsys, tmp_path, argv, match):
    out = tmp_path / "demo"
    assert_user_error(mist(capsys, "demo", "--out", out, *argv), match)
    assert not (out / "data").exists()


def _stop_at_evaluation(*args, **kwargs):
    raise MistError("evaluation failed")


@pytest.mark.parametrize(
    "stop, argv, match",
    [
        (None, ["--set", "model.k=100000"], "too few pixels for model.k"),
        (_stop_at_evaluation, [], "evaluation failed"),
    ],
)
def test_a_failed_second_demo_leaves_the_first_as_it_was(
    capsys, tmp_path, monkeypatch, stop, argv, match
):
    # Before: the second demo deleted the first's run before it began; a failure left
    # metrics.json and figure.png describing a run that was gone.
    out = tmp_path / "demo"
    hide_matplotlib(monkeypatch)  # a figure is one more file, and slow; the rest is the point
    assert mist_main(["demo", "--out", str(out), *SIZES, *TINY]) == 0
    before = entries_under(tmp_path)
    if stop is not None:
        monkeypatch.setattr(mistnet.demo, "evaluate_run", stop)
    rc, _, err = mist(capsys, "demo", "--out", out, *SIZES, *TINY, *argv)
    assert rc == 2 and match in err.strip().splitlines()[-1]  # after the progress bars
    assert entries_under(tmp_path) == before


def test_a_second_signal_while_a_failed_demo_restores_the_first_keeps_it(tmp_path, monkeypatch):
    # Before: a second Ctrl-C while the first demo's run was being put back left it set aside
    # under a temporary name, which the cleanup then removed as the failed demo's own: the
    # first demo's run held only the new log.jsonl.
    out = tmp_path / "demo"
    hide_matplotlib(monkeypatch)
    assert mist_main(["demo", "--out", str(out), *SIZES, *TINY]) == 0
    before = entries_under(tmp_path)

    def interrupted_training(cfg, run_dir, **kwargs):
        (run_dir / "log.jsonl").write_text("{}\n")
        raise KeyboardInterrupt

    calls = []

    def second_ctrl_c(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_rmtree(*args, **kwargs)

    real_rmtree = shutil.rmtree
    monkeypatch.setattr(mistnet.demo, "train", interrupted_training)
    monkeypatch.setattr(shutil, "rmtree", second_ctrl_c)  # the removal's, in io
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, preset="tiny-cpu", n_train=64, n_val=16, n_test=16,
                 overrides=["train.steps=3"], log=lambda message: None)  # fmt: skip
    monkeypatch.undo()
    assert calls  # the second signal came
    kept = entries_under(tmp_path)  # but the new run, which the failing removal left
    assert {k: v for k, v in kept.items() if not any(map(is_temporary, Path(k).parts))} == before


def test_signals_during_deferred_signals_come_after_it():
    got = []
    # Python's own Ctrl-C handler, whatever the test runner set (pytest-xdist's workers ignore
    # SIGINT, and an ignored signal is rightly still ignored after the block)
    runner = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), deferred_signals():
            signal.raise_signal(signal.SIGINT)
            got.append("the block went on")
    finally:
        signal.signal(signal.SIGINT, runner)
    assert got == ["the block went on"]


@pytest.mark.parametrize("held", [".", "run"])
def test_a_demo_into_a_folder_another_demo_or_run_is_writing_is_refused(
    capsys, tmp_path, monkeypatch, held
):
    # Before: a second demo set the first one's live run aside; both failed and the first
    # demo's run was gone.
    out = tmp_path / "demo"
    hide_matplotlib(monkeypatch)
    assert mist_main(["demo", "--out", str(out), *SIZES, *TINY]) == 0
    lock = out / held / ".lock"
    lock.write_text("4242\n")  # as another process's exclusive_lock leaves it
    before, _ = entries_under(tmp_path), capsys.readouterr()
    with lock.open() as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        rc, _, err = mist(capsys, "demo", "--out", out, *SIZES, *TINY)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "(pid 4242)" in err, err
    assert entries_under(tmp_path) == before


def test_a_failed_demo_keeps_a_file_the_user_put_into_its_folder_meanwhile(tmp_path, monkeypatch):
    # Before: a failure removed every entry new to the folder, the user's notes.txt too.
    out = tmp_path / "demo"
    out.mkdir()

    def fails_after_the_user_wrote(cfg, run_dir, **kwargs):
        run_dir.mkdir()
        (run_dir / "log.jsonl").write_text("{}\n")
        (out / "notes.txt").write_text("mine")
        raise MistError("training failed")

    hide_matplotlib(monkeypatch)
    monkeypatch.setattr(mistnet.demo, "train", fails_after_the_user_wrote)
    with pytest.raises(MistError, match="training failed"):
        run_demo(out, preset="tiny-cpu", n_train=64, n_val=16, n_test=16,
                 overrides=["train.steps=3"], log=lambda message: None)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("name", ["figure.png", "metrics.json"])
@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_demo_again_keeps_a_folder_or_link_of_the_users_named_like_its_files(
    capsys, tmp_path, monkeypatch, name, kind
):
    # Before: a second demo set OUT/figure.png aside whatever it was and removed it once done:
    # a folder of the user's of that name went with everything in it.
    out = tmp_path / "demo"
    hide_matplotlib(monkeypatch)
    assert mist_main(["demo", "--out", str(out), *SIZES, *TINY]) == 0
    (out / name).unlink(missing_ok=True)
    if kind == "folder":
        (out / name).mkdir()
        (out / name / "notes.txt").write_text("mine")
    else:
        (tmp_path / "mine.png").write_text("mine")
        (out / name).symlink_to(tmp_path / "mine.png")
    before, _ = entries_under(tmp_path), capsys.readouterr()
    rc, _, err = mist(capsys, "demo", "--out", out, *SIZES, *TINY)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{out / name}: is a {kind if kind == 'folder' else 'symbolic link'}" in err
    assert entries_under(tmp_path) == before


@pytest.mark.parametrize("item", ["data.path=elsewhere", "data.name=gabor", " data.path = 'x'"])
def test_a_demo_refuses_to_train_on_or_record_another_dataset(capsys, tmp_path, item):
    # Before: --set data.path=DS trained on DS while the demo made, and evaluated on, OUT/data;
    # --set data.name=gabor recorded a generator the run never saw.
    (tmp_path / "elsewhere").mkdir()
    before = entries_under(tmp_path)
    rc, _, err = mist(capsys, "demo", "--out", tmp_path / "demo", *SIZES, *TINY, "--set", item)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--set {item}: mist demo trains on the MNIST-hard scenes it makes in" in err
    assert entries_under(tmp_path) == before


@pytest.mark.parametrize(
    "item, instead",
    [
        (
            "data.digits=/nonexistent",
            "leave out data.digits (give --digits SRC, digits= in Python)",
        ),
        ("data.n_train=99999", "leave out data.n_train (give --n-train N, n_train= in Python)"),
        ("data.n_val=7", "leave out data.n_val (give --n-val N"),
        ("data.n_test=7", "leave out data.n_test (give --n-test N"),
    ],
)
def test_a_demo_refuses_the_digits_and_sizes_of_its_own_scenes_as_overrides(
    capsys, tmp_path, item, instead
):
    """Before: --set data.digits=/nonexistent --set data.n_train=99999 were accepted and written
    into the run's config.json, while the demo made 64 scenes of the embedded digits."""
    before = entries_under(tmp_path)
    rc, _, err = mist(capsys, "demo", "--out", tmp_path / "demo", *SIZES, *TINY, "--set", item)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--set {item}: mist demo trains on the MNIST-hard scenes it makes in" in err
    assert instead in err
    assert entries_under(tmp_path) == before
    with pytest.raises(MistError, match=f"leave out {item.split('=')[0]}"):
        run_demo(tmp_path / "api", n_train=4, n_val=4, n_test=4, overrides=[item])


def test_a_demo_records_the_mnist_hard_scenes_it_made_whatever_the_preset(tmp_path, monkeypatch):
    # Before: --preset mnist-easy-grid trained on the demo's MNIST-hard scenes but recorded
    # data.name = "mnist-easy" in the run's config.json.
    trained = []

    def record(cfg, run_dir, **kwargs):
        trained.append(cfg)
        raise MistError("stop here")

    monkeypatch.setattr(mistnet.demo, "train", record)
    with pytest.raises(MistError, match="stop here"):
        run_demo(tmp_path / "demo", preset="mnist-easy-grid", n_train=32, n_val=4, n_test=4,
                 log=lambda message: None)  # fmt: skip
    assert trained[0].data.name == "mnist-hard"
    assert Path(trained[0].data.path) == tmp_path / "demo" / "data"


def test_run_demo_refuses_a_time_cap_that_is_none_before_making_the_scenes(tmp_path):
    """Before: run_demo(minutes=-1) made every scene, printed "[2/4] ... for at most -1 min",
    then raised (the command line checked --minutes itself)."""
    said = []
    for minutes, error in ((-1, ValueError), (float("nan"), ValueError), ("5", TypeError)):
        with pytest.raises(error, match="^minutes must be a"):
            run_demo(tmp_path / "demo", n_train=4, n_val=4, n_test=4, minutes=minutes,
                     log=said.append)  # fmt: skip
    assert said == [] and list(tmp_path.iterdir()) == []


def test_a_demo_removes_with_its_run_only_eval_records_and_tensorboard_events(tmp_path):
    """Before: every ``eval-*.json`` and any ``tb/`` were the run's by their names alone."""
    from mistnet.demo import run_files
    from mistnet.evaluation import Evaluation

    run = tmp_path / "run"
    (run / "tb" / "sub").mkdir(parents=True)
    record = Evaluation("run", "best.safetensors", 6, "data", "test", 24, 9, {"both": 0.5})
    (run / "eval-test.json").write_text(json.dumps(record.to_dict()))
    (run / "eval-[x].json").write_text(json.dumps(record.to_dict()))  # fnmatch's brackets
    (run / "eval-notes.json").write_text('{"my": "notes"}')
    (run / "tb" / "sub" / "events.out.tfevents.1.host").write_bytes(b"")
    names = run_files(run)
    assert {"eval-test.json", "eval-[[]x].json", "tb/", "config.json"} <= set(names)
    assert not any(fnmatch.fnmatchcase("eval-notes.json", n) for n in names)
    (run / "tb" / "notes.txt").write_text("mine")
    assert "tb/" not in run_files(run)


def test_a_task_that_the_preset_does_not_train_is_refused_before_the_scenes(capsys, tmp_path):
    """Before: ``mist demo --task reconstruct --preset mnist-hard-cpu`` trained a classifier
    without a word (the preset took the place of the task's)."""
    before = entries_under(tmp_path)
    result = mist(capsys, "demo", "--out", tmp_path / "d", "--task", "reconstruct",
                  "--preset", "mnist-hard-cpu", *SIZES)  # fmt: skip
    message = "task reconstruct (--task) but the preset mnist-hard-cpu trains model.task = classify"
    assert_user_error(result, message)
    assert entries_under(tmp_path) == before
    with pytest.raises(MistError, match="task classify .* model.task = reconstruct"):
        run_demo(tmp_path / "d", task="classify", preset="mnist-hard-recon-cpu",
                 n_train=4, n_val=4, n_test=4, log=lambda message: None)  # fmt: skip
    assert entries_under(tmp_path) == before
    # Before: the preset was blamed for what --set model.task changed
    result = mist(capsys, "demo", "--out", tmp_path / "d", "--task", "classify", "--set",
                  "model.task=reconstruct", "--set", "train.select_metric=rmse", *SIZES)  # fmt: skip
    message = "task classify (--task) but --set model.task=reconstruct trains model.task ="
    assert_user_error(result, message)
    assert entries_under(tmp_path) == before
