"""``mist train``: presets, overrides, its error paths, exact resume after SIGKILL."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import TINY, assert_user_error, mist, subprocess_env
from helpers import small_mnist
from PIL import Image

from mistnet import loop
from mistnet.checkpoint import Checkpoint
from mistnet.config import apply_overrides, load_json, load_preset
from mistnet.data import build_generator, make_scenes, write_dataset
from mistnet.errors import MistError


def test_list_presets(capsys):
    rc, out, _ = mist(capsys, "train", "--list-presets")
    assert rc == 0
    for name in ("mnist-hard-classify", "gabor-recon", "svhn-classify", "tiny-cpu"):
        assert name in out
    # Before: listed, every other option (a run to resume, --set) ignored without a word
    for extra in (["--resume", "--out", "r"], ["--set", "bogus.key=1"], ["--preset", "nope"],
                  ["--max-minutes", "5"], ["--threads", "1"], ["--precision", "bf16"],
                  ["--compile"], ["--device", "cpu"]):  # fmt: skip
        result = mist(capsys, "train", "--list-presets", *extra)
        assert_user_error(result, "--list-presets lists the presets and trains nothing; drop")


def test_unknown_preset(capsys, tmp_path):
    assert_user_error(
        mist(capsys, "train", "--preset", "mnist-medium", "--out", tmp_path / "r"),
        "unknown preset 'mnist-medium'",
    )
    assert not (tmp_path / "r").exists()
    assert_user_error(
        mist(capsys, "train", "--preset", "svhn-classify", "--out", tmp_path / "r"), "--data DIR"
    )


def test_bad_set_key_and_value(capsys, tmp_path):
    out = tmp_path / "r"
    base = ["train", "--preset", "tiny-cpu", "--out", out]
    assert_user_error(mist(capsys, *base, "--set", "train.lr=1"), "unknown config key train.lr")
    assert_user_error(mist(capsys, *base, "--set", "train.steps=abc"), "must be an integer")
    assert_user_error(mist(capsys, *base, "--set", "steps=3"), "section.key")
    assert_user_error(mist(capsys, *base, "--device", "tpu"), "--device")
    # A quoted string that is no TOML is an error, not the bare string with its quotes.
    bad = ["--set", 'data.path="d\\q"']
    assert_user_error(mist(capsys, *base, *bad), "invalid TOML value: Unescaped")
    assert not out.exists()


def test_a_dataset_folder_whose_name_is_not_utf8_trains(capsys, tmp_path):
    """A folder name with bytes that are not UTF-8 (Python: lone surrogates) reaches the run as
    it is, through --data and through the config the run records."""
    name = os.fsdecode(b"ds\xff")
    try:
        data = _tiny_dataset(tmp_path / name)
    except (OSError, UnicodeError):  # a filesystem that refuses such names
        pytest.skip("this filesystem refuses names that are not UTF-8")
    run = tmp_path / "r"
    argv = ["train", "--preset", "tiny-cpu", "--out", run, "--data", data, "--no-progress"]
    rc, _, err = mist(capsys, *argv, "--set", "train.steps=2", "--set", "train.val_every=2")
    assert rc == 0, err
    assert json.loads((run / "config.json").read_text())["data"]["path"] == f"../{name}"
    rc, _, err = mist(capsys, "eval", run, "--json", tmp_path / "m.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "m.json").read_text())["images"] == 4


def test_missing_preset_or_out(capsys, tmp_path):
    assert_user_error(mist(capsys, "train", "--preset", "tiny-cpu"), "--out")
    assert_user_error(mist(capsys, "train", "--out", tmp_path / "r"), "--preset")


def test_out_already_holding_a_run(capsys, tiny_run):
    before = (tiny_run / "last.safetensors").read_bytes()
    assert_user_error(
        mist(capsys, "train", "--preset", "tiny-cpu", "--out", tiny_run, "--no-progress"),
        "already holds a run",
        "--resume",
    )
    assert (tiny_run / "last.safetensors").read_bytes() == before


def _records(log: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k != "wall"}
        for line in log.read_text().splitlines()
    ]


@pytest.mark.slow
def test_resume_after_sigkill_continues_exactly(tmp_path):
    overrides = [
        *TINY,
        "train.steps=60",
        "train.ckpt_every=10",
        "train.log_every=1",
        "train.val_every=30",
    ]
    reference = tmp_path / "reference"
    cfg = apply_overrides(load_preset("tiny-cpu"), overrides)
    loop.train(cfg, reference, progress=False, threads=1)

    run = tmp_path / "interrupted"
    argv = [sys.executable, "-m", "mistnet", "train", "--preset", "tiny-cpu", "--out", str(run)]
    argv += ["--device", "cpu", "--no-progress", "--threads", "1"]
    argv += [a for o in overrides for a in ("--set", o)]
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        proc = subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.safetensors").exists():
            if proc.poll() is not None:
                pytest.fail(f"training ended before its first checkpoint: {stderr.read_text()}")
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)  # let it log a few steps past the checkpoint
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (run / "summary.json").exists(), "killed too late: the run had finished"
    resumed_from = Checkpoint(run / "last.safetensors").step
    assert 10 <= resumed_from < 60

    resume = subprocess.run(
        argv + ["--resume"], env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert resume.returncode == 0, resume.stderr
    assert json.loads((run / "summary.json").read_text())["steps"] == 60
    got, want = _records(run / "log.jsonl"), _records(reference / "log.jsonl")
    assert [r["step"] for r in got] == [r["step"] for r in want]
    assert got == want  # bit-identical losses and metrics, before and after the resume point
    assert any(r["step"] > resumed_from and r["split"] == "train" for r in got)


def test_train_from_a_dataset_directory_then_reconstruct_commands(capsys, tmp_path):

    gen = build_generator("mnist-easy")
    splits = {s: make_scenes(gen, s, range(n)) for s, n in (("train", 16), ("val", 8), ("test", 4))}
    data = write_dataset(tmp_path / "easy", "mnist-easy", splits)
    run = tmp_path / "recon"
    sets = [
        "model.task=reconstruct",
        "train.steps=4",
        "train.val_every=4",
        "train.lr_keypoints=3.2",
    ]
    argv = ["train", "--preset", "tiny-cpu", "--out", run, "--data", data, "--no-progress"]
    rc, out, err = mist(capsys, *argv, *[a for s in sets for a in ("--set", s)])
    assert rc == 0, err
    assert json.loads(out[out.index("{") :])["steps"] == 4
    assert json.loads((run / "config.json").read_text())["data"]["path"] == "../easy"

    rc, out, err = mist(capsys, "eval", run, "--json", tmp_path / "m.json")
    assert rc == 0, err
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["data"] == str(data) and record["images"] == 4
    assert record["metrics"]["rmse"] > 0
    rc, _, err = mist(capsys, "show", run, "--n", "2", "--out", tmp_path / "fig.png")
    assert rc == 0, err
    Image.fromarray(np.zeros((30, 50), np.uint8), "L").save(tmp_path / "blank.png")
    rc, _, err = mist(
        capsys, "detect", run, tmp_path / "blank.png", "--out", tmp_path / "d", "--min-score", "0"
    )
    assert rc == 0, err
    record = json.loads((tmp_path / "d" / "blank.json").read_text())
    assert "labels" not in record and len(record["boxes"]) == 9
    with Image.open(tmp_path / "d" / "blank-recon.png") as im:
        assert im.size == (50 * 6, 30 * 6)


def _tiny_dataset(path: Path, seed: int = 0) -> Path:
    gen = build_generator("mnist-easy")
    sizes = (("train", 16), ("val", 8), ("test", 4))
    splits = {s: make_scenes(gen, s, range(seed, seed + n)) for s, n in sizes}
    return write_dataset(path, "mnist-easy", splits)


def test_a_data_path_without_a_slash_that_is_not_there_is_named_as_a_path(
    capsys, tmp_path, monkeypatch
):
    """Before: ``--set data.path=mydata`` (or a preset's ``path = "mydata"``) that does not
    exist said "unknown scene generator 'mydata'": data.path names a folder, never one."""
    monkeypatch.chdir(tmp_path)
    result = mist(capsys, "train", "--preset", "tiny-cpu", "--out", "o", "--set=data.path=mydata")
    assert_user_error(result, "dataset mydata (data.path) does not exist")
    assert "generator" not in result[2] and os.listdir(tmp_path) == []


def test_a_run_finds_its_dataset_from_any_directory(capsys, tmp_path, monkeypatch):
    """data.path is written relative to the run (`../ds`): `cd o && mist eval ../run` reads
    the run's dataset, not an `o/ds` made since, and so does a resume; the folder can move."""
    work = tmp_path / "work"
    _tiny_dataset(work / "ds")
    monkeypatch.chdir(work)
    sets = ["--set=train.steps=2", "--set=train.val_every=2", "--set=model.task=reconstruct"]
    argv = ["train", "--preset", "tiny-cpu", "--out", "run", "--data", "ds", "--no-progress"]
    assert mist(capsys, *argv, *sets)[0] == 0
    assert json.loads(Path("run/config.json").read_text())["data"]["path"] == "../ds"
    _tiny_dataset(work / "o" / "ds", seed=100)  # a decoy of the same name
    monkeypatch.chdir(work / "o")
    rc, _, err = mist(capsys, "eval", "../run", "--json", "../m.json")
    assert rc == 0, err
    assert json.loads((work / "m.json").read_text())["data"] == str(work / "ds")
    rc, _, err = mist(capsys, "train", "--out", "../run", "--resume", "--set=train.steps=4")
    assert rc == 0 and "ignoring" not in err, err
    # Before: "ignoring data.n_train: 16 -> 5", then refused for naming it with a dataset
    resume = ["train", "--out", "../run", "--resume", "--set=train.steps=5"]
    rc, _, err = mist(capsys, *resume, "--set=data.n_train=5")
    note = "mist train: note: --resume continues the run as saved; ignoring data.n_train: 16 -> 5"
    assert rc == 0 and err.splitlines()[0] == note, err
    assert json.loads((work / "run/config.json").read_text())["data"]["path"] == "../ds"
    moved = tmp_path / "moved"
    work.rename(moved)
    monkeypatch.chdir(moved / "run")
    # m.json measured the weights of step 2, trained further since: not this run's to replace
    assert_user_error(mist(capsys, "eval", ".", "--json", "../m.json"), "m.json: exists and")
    rc, _, err = mist(capsys, "eval", ".", "--json", "../m2.json")
    assert rc == 0, err
    assert json.loads((moved / "m2.json").read_text())["data"] == str(moved / "ds")
    # Before: eval --data REL recorded "ds" as typed (mist models then showed "on ds" from
    # anywhere); --resume --data NEW of the dataset renamed, as its message advises, was
    # refused as another dataset
    monkeypatch.chdir(moved)
    rc, _, err = mist(capsys, "eval", "run", "--data", "ds", "--json", "m2.json")
    assert rc == 0, err
    assert json.loads((moved / "m2.json").read_text())["data"] == str(moved / "ds")
    (moved / "ds").rename(moved / "renamed")
    assert_user_error(
        mist(capsys, "eval", "run"), f"the run's dataset {moved / 'ds'} (data.path) does not exist"
    )
    rc, _, err = mist(capsys, "train", "--out", "run", "--resume", "--set=train.steps=6")
    assert_user_error((rc, _, err), "does not exist; pass the data (--data DIR")
    gen, sizes = build_generator("mnist-easy"), (("train", 16), ("val", 8), ("test", 4))
    splits = {s: make_scenes(gen, s, range(n), 7) for s, n in sizes}  # another dataset: refused
    write_dataset(moved / "other", "mnist-easy", splits, manifest={"seed": 7})
    resume = ["train", "--out", "run", "--resume", "--set=train.steps=6", "--data"]
    assert_user_error(mist(capsys, *resume, "other"), "a resumed run trains on the data it")
    rc, _, err = mist(capsys, *resume, "renamed")
    assert rc == 0, err
    assert json.loads((moved / "run/config.json").read_text())["data"]["path"] == "../renamed"


def test_a_run_finds_its_digits_folder_from_any_directory(capsys, tmp_path, monkeypatch):
    """Before: --set data.digits=idx was recorded as typed ("idx"), so `cd o && mist eval ../run`
    scored the run on o/idx (a decoy of all-black digits: det_iou50 0, rc 0), and from a folder
    without idx/ it failed; --set data.digits= (empty) trained on the working directory's IDX
    files and recorded "". Now the folder is written relative to the run, as data.path is."""
    work = tmp_path / "work"
    small_mnist(work / "idx", n_train=60, n_test=20)
    monkeypatch.chdir(work)
    sets = [f"--set={item}" for item in [*TINY, "train.steps=1", "data.digits=idx"]]
    argv = ["train", "--preset", "tiny-cpu", "--out", "run", "--no-progress", "--threads", "1"]
    assert mist(capsys, *argv, *sets)[0] == 0
    assert json.loads(Path("run/config.json").read_text())["data"]["digits"] == "../idx"
    assert load_json("run/config.json").data.digits == str(work / "idx")
    rc, _, err = mist(capsys, "eval", "run", "--json", "m.json")
    assert rc == 0, err
    small_mnist(work / "o" / "idx", n_train=60, n_test=20)  # a decoy of the same name
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        raw = (work / "o" / "idx" / name).read_bytes()
        (work / "o" / "idx" / name).write_bytes(raw[:16] + bytes(len(raw) - 16))  # black
    (work / "far").mkdir()
    for here in ("o", "far"):
        monkeypatch.chdir(work / here)
        rc, _, err = mist(capsys, "eval", "../run", "--json", f"../{here}.json")
        assert rc == 0, err
        assert _metrics(work / f"{here}.json") == _metrics(work / "m.json"), here
    monkeypatch.chdir(work)
    for empty in ("data.digits=", "data.digits=' '"):
        assert_user_error(
            mist(capsys, *argv[:4], "run2", *argv[5:], *sets, f"--set={empty}"),
            "data.digits must be 'embedded', 'mnist' or an IDX folder, got",
        )
    assert not (work / "run2").exists()


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text())["metrics"]


@pytest.mark.parametrize(
    "change", ["image_size", "class_names", "generator", "seed", "sizes", "nothing"]
)
def test_a_resume_on_a_replaced_dataset_is_refused_and_leaves_the_run(capsys, tmp_path, change):
    """The folder at data.path replaced by a dataset of other images or classes: the resume
    would train the run's model on data it was not made for, and rewrite its config. Before:
    one made again with another seed or other split sizes was trained on silently. The same
    dataset made again (``nothing``) is the run's."""
    gen = build_generator("mnist-easy")
    sizes = (("train", 16), ("val", 8), ("test", 4))
    splits = {s: make_scenes(gen, s, range(n)) for s, n in sizes}
    data, run = write_dataset(tmp_path / "ds", "mnist-easy", splits), tmp_path / "run"
    sets = ["--set=train.steps=2", "--set=train.val_every=2", "--set=train.ckpt_every=2"]
    argv = ["train", "--preset", "tiny-cpu", "--out", run, "--data", data, "--no-progress"]
    assert mist(capsys, *argv, *sets)[0] == 0
    shutil.rmtree(data)
    manifest = {"seed": 5} if change == "seed" else None
    if change == "sizes":
        splits["train"] = {k: v[:12] for k, v in splits["train"].items()}
    if change == "image_size":
        for a in splits.values():
            a["images"] = np.pad(a["images"], ((0, 0), (0, 0), (0, 16), (0, 16)))
    elif change == "class_names":
        manifest = {"classes": list("abcdefghij")}
    write_dataset(
        data, "mnist-hard" if change == "generator" else "mnist-easy", splits, manifest=manifest
    )
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = mist(capsys, "train", "--out", run, "--resume", "--set=train.steps=4")
    if change == "nothing":
        assert result[0] == 0, result
        return
    made_again = "ds: its manifest.json is not that of the dataset the run was trained on"
    expected = {
        "seed": made_again,
        "sizes": made_again,
        "image_size": "ds has 96x96 images but the run was trained on 80x80 ones",
        "class_names": "names the classes a, b, c",
        "generator": "made by 'mnist-hard' but the run was trained on one made by 'mnist-easy'",
    }
    assert_user_error(result, expected[change], str(data))
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    if change in ("seed", "sizes"):  # before: eval and show read it silently
        assert_user_error(mist(capsys, "eval", run), made_again, "(--data DIR, data=DIR in Python)")
        assert_user_error(mist(capsys, "show", run, "--out", tmp_path / "s.png"), made_again)
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
        assert mist(capsys, "eval", run, "--data", data)[0] == 0  # named: taken as asked


def test_a_preset_with_resume_never_raises_the_steps(capsys, tmp_path):
    # Before: a finished run whose summary was lost was trained on to the preset's 40 steps,
    # its config and checkpoints rewritten unasked.
    out = tmp_path / "r"
    argv = ["train", "--preset", "tiny-cpu", "--out", out, "--no-progress", "--threads", "1"]
    sets = [
        f"--set={o}" for o in [*TINY, "train.steps=4", "train.val_every=2", "train.ckpt_every=2"]
    ]
    assert mist(capsys, *argv, *sets)[0] == 0
    best = (out / "best.safetensors").read_bytes()
    (out / "summary.json").unlink()
    assert mist(capsys, *argv, "--resume")[0] == 0
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 4
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    assert (out / "best.safetensors").read_bytes() == best


@pytest.mark.parametrize("flag", [["--no-progress"], []])
def test_no_progress_prints_one_line_per_validation(capsys, tmp_path, flag):
    """Without the bar, each validation still shows: its step and the metric, on stderr. A
    stderr that is no terminal (here captured; a log file) gets the same, never the bar's
    carriage returns (before: kilobytes of them)."""
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "r", *flag]
    argv += ["--threads", "1", *(f"--set={o}" for o in TINY)]
    argv += ["--set", "train.steps=4", "--set", "train.val_every=2", "--set", "train.log_every=2"]
    rc, stdout, err = mist(capsys, *argv)
    assert rc == 0, err
    assert json.loads(stdout)["steps"] == 4  # stdout stays the summary alone
    vals = [r for r in _records(tmp_path / "r" / "log.jsonl") if r["split"] == "val"]
    expected = [
        f"step {r['step']}: det_iou50 {r['det_iou50']:.4f}, classif {r['classif']:.4f}, "
        f"both {r['both']:.4f}, ap50 {r['ap50']:.4f}"
        for r in vals
    ]
    assert [r["step"] for r in vals] == [2, 4]
    assert err.splitlines() == expected and "\r" not in err, err


@pytest.mark.parametrize(
    "sets, match",
    [
        (["model.k=100000"], "too few pixels for model.k"),
        (["model.num_classes=2"], "scenes hold classes 0..9 but the run's classifier has 2"),
        (["model.base_side=1e-300"], "model.base_side must be"),
        (["model.base_side=1e12"], "boxes of model.base_side = 1e+12 px are larger than them"),
        # before: accepted, 100 px boxes at the coarsest level of 80 px images
        (["model.factors=[1.0, 0.2]"], "model.base_side / min(model.factors) = 20 / 0.2 = 100"),
        (
            ["model.heatmap_depth=40"],
            "80x80 images, 80 px on a side at pyramid factor 1; the heatmap network",
        ),
        (["model.factors=[1.0, 1e-30]"], "1 px on a side at pyramid factor 1e-30"),
        (["train.lr_task=1e6", "train.lr_heatmap=1e6", "train.steps=5"], "training diverged"),
        (["train.steps=2", "train.val_every=2", "train.ckpt_every=2"], None),
    ],
)
def test_train_into_an_empty_folder_of_the_users_keeps_the_folder(capsys, tmp_path, sets, match):
    # Before: the folder was replaced by a new one (750 became 755), and a failure before the
    # first checkpoint deleted it.
    out = tmp_path / "e"
    out.mkdir()
    out.chmod(0o750)
    argv = ["train", "--preset", "tiny-cpu", "--out", out, "--no-progress"]
    result = mist(capsys, *argv, *(a for s in [*TINY, *sets] for a in ("--set", s)))
    if match is None:
        assert result[0] == 0, result[2]
        assert (out / "last.safetensors").is_file()
    else:
        assert_user_error(result, match)
        assert list(out.iterdir()) == []
    assert stat.S_IMODE(out.stat().st_mode) == 0o750


def test_a_failed_train_keeps_a_file_the_user_put_into_its_folder_meanwhile(
    capsys, tmp_path, monkeypatch
):
    # Before: a failure before the first checkpoint removed every entry new to the folder,
    # the user's notes.txt too; then every name of a run's (an eval-*.json, a whole tb/),
    # though training writes neither (tb/ only when tensorboard made it).
    out = tmp_path / "e"
    out.mkdir()

    def fails_after_the_user_wrote(session):
        (session.run.path / "log.jsonl").write_text("{}\n")
        (out / "notes.txt").write_text("mine")
        (out / "mine").mkdir()
        (out / "eval-mine.json").write_text("{}")  # names of a run's, not of training's
        (out / "tb").mkdir()
        (out / "tb" / "notes.txt").write_text("mine")
        raise MistError("training failed")

    monkeypatch.setattr(loop.Session, "train", fails_after_the_user_wrote)
    argv = ["train", "--preset", "tiny-cpu", "--out", out, "--no-progress"]
    assert_user_error(mist(capsys, *argv, *(a for s in TINY for a in ("--set", s))), "failed")
    kept = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert kept == ["eval-mine.json", "mine", "notes.txt", "tb", "tb/notes.txt"]


def _bytes_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("blocker", ["file", "link out", "dangling link"])
def test_a_tb_that_is_no_folder_of_the_run_is_refused_before_a_resume(
    capsys, tmp_path, tiny_run, blocker
):
    """Before (with tensorboard installed): a file or a dangling link at RUN/tb gave "RUN/tb:
    File exists" once config.json was rewritten and a finished run's summary.json removed; a
    link to a folder of the user's had the event files written into it."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    if blocker == "file":
        (run / "tb").write_text("my notes")
    else:
        (run / "tb").symlink_to(mine if blocker == "link out" else tmp_path / "nowhere")
    before = _bytes_under(tmp_path)
    result = mist(capsys, "train", "--out", run, "--resume", "--set", "train.steps=12")
    what = "not a folder" if blocker == "file" else "a symbolic link"
    assert_user_error(result, f"{run / 'tb'}: {what}", "move it away")
    assert _bytes_under(tmp_path) == before


@pytest.mark.parametrize("denied", ["log.jsonl", "the run", "tb"])
def test_a_run_this_user_cannot_write_is_refused_before_a_resume(
    capsys, tmp_path, tiny_run, monkeypatch, denied
):
    """Before (as a user who cannot write the run): config.json was rewritten, a finished
    run's summary.json removed and steps trained, then "log.jsonl: Permission denied"; a
    read-only tb/ printed the TensorBoard writer thread's traceback. (Root writes anywhere:
    the permission is stood in for.)"""
    from mistnet import rundir

    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "tb").mkdir(exist_ok=True)
    place = {"log.jsonl": run / "log.jsonl", "the run": run, "tb": run / "tb"}[denied]
    access, installed = os.access, rundir._tensorboard_installed()
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != place and access(p, mode))
    with monkeypatch.context() as m:  # tb/ is written only with tensorboard installed
        m.setattr(rundir, "_tensorboard_installed", lambda: True)
        before = _bytes_under(tmp_path)
        result = mist(capsys, "train", "--out", run, "--resume", "--set", "train.steps=12")
    assert_user_error(result, f"{place}: this user cannot write it, and training writes there")
    assert _bytes_under(tmp_path) == before
    if denied == "tb" and not installed:  # nothing goes into it: resumed
        rc, _, err = mist(capsys, "train", "--out", run, "--resume", "--set", "train.steps=12")
        assert rc == 0, err


class _Writer:
    """Stands in for TensorBoard's SummaryWriter (not installed here): an event file per
    writer, and the arguments it was opened with."""

    opened: list[tuple[str, int | None]] = []

    def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
        os.makedirs(log_dir, exist_ok=True)
        name = f"events.out.tfevents.{len(self.opened)}"
        Path(log_dir, name).write_text("")
        self.opened.append((log_dir, purge_step))

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def test_tensorboard_drops_a_killed_attempts_events(tmp_path, monkeypatch):
    """Before: a fresh start into a run killed before its first checkpoint kept that attempt's
    event files beside its own, and a resume kept the events past its checkpoint: TensorBoard
    drew two curves over the same steps."""
    import types

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = _Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    monkeypatch.setattr(_Writer, "opened", [])
    run = tmp_path / "run"
    cfg = apply_overrides(load_preset("tiny-cpu"), [*TINY, "train.steps=4", "train.val_every=2"])
    cfg.train.ckpt_every = 2
    (run / "tb").mkdir(parents=True)  # as a killed first attempt left it, with its files
    (run / "tb" / "events.out.tfevents.killed").write_text("")
    (run / "config.json").write_text(cfg.to_json())
    (run / ".mistnet").write_text("run\n")
    loop.train(cfg, run, progress=False)
    assert sorted(p.name for p in (run / "tb").iterdir()) == ["events.out.tfevents.0"]
    cfg.train.steps = 6
    loop.train(cfg, run, resume=True, progress=False)
    assert _Writer.opened == [(str(run / "tb"), None), (str(run / "tb"), 5)]
