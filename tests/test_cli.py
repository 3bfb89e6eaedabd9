"""The ``mist`` command line: train / eval / detect / show, their error paths, and exact resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, mist
from PIL import Image

from mistnet import cli, runner
from mistnet.checkpoint import Checkpoint
from mistnet.commands.detect import ANNOTATION_SIDE, read_image
from mistnet.config import apply_overrides, load_preset

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = ["data.n_train=32", "data.n_val=8", "data.n_test=8", "train.val_batches=1"]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 10-step tiny-cpu classifier run (best and last checkpoints)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = apply_overrides(load_preset("tiny-cpu"), [*TINY, "train.steps=10", "train.val_every=10"])
    runner.train(cfg, out, device="cpu", progress=False)
    return out


# -- help ----------------------------------------------------------------------------------------


def test_help_lists_the_commands():
    for argv in (
        [sys.executable, "-m", "mistnet", "--help"],
        [Path(sys.executable).parent / "mist", "--help"],
    ):
        if not Path(argv[0]).exists():
            continue
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=subprocess_env(), timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        for name in ("train", "eval", "detect", "show", "data"):
            assert name in proc.stdout


def test_sub_command_help(capsys):
    for name in ("train", "eval", "detect", "show"):
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        assert f"mist {name}" in capsys.readouterr().out


def test_list_presets(capsys):
    rc, out, _ = mist(capsys, "train", "--list-presets")
    assert rc == 0
    for name in ("mnist-hard-classify", "gabor-recon", "svhn-classify", "tiny-cpu"):
        assert name in out


# -- error paths: exit 2, one line, no traceback --------------------------------------------------


def test_missing_run_directory(capsys, tmp_path):
    for command in (["eval"], ["show", "--out", tmp_path / "f.png"]):
        assert_user_error(mist(capsys, *command, tmp_path / "nope"), "does not exist")
    assert_user_error(
        mist(capsys, "detect", tmp_path / "nope", "x.png", "--out", tmp_path / "d"),
        "does not exist",
    )


def test_run_directory_without_config(capsys, tmp_path):
    assert_user_error(mist(capsys, "eval", tmp_path), "not a mistnet run")
    assert_user_error(mist(capsys, "train", "--out", tmp_path, "--resume"), "not a mistnet run")


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
    assert not out.exists()


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


def test_eval_with_missing_data_directory(capsys, tiny_run, tmp_path):
    assert_user_error(
        mist(capsys, "eval", tiny_run, "--data", tmp_path / "no-data"), "does not exist"
    )
    assert_user_error(mist(capsys, "eval", tiny_run, "--data", "mnist-medium"), "mnist-medium")


def test_eval_with_data_the_run_cannot_use(capsys, tiny_run, tmp_path):
    assert_user_error(mist(capsys, "eval", tiny_run, "--data", "gabor"), "class labels")
    from mistnet.data import write_dataset

    n = 4
    rgb = {
        "images": np.zeros((n, 3, 80, 80), np.uint8),
        "boxes": np.zeros((n, 2, 4), np.float32),
        "labels": np.zeros((n, 2), np.int64),
        "counts": np.full(n, 2, np.int64),
    }
    data = write_dataset(tmp_path / "rgb", "rgb-test", {"test": rgb})
    assert_user_error(mist(capsys, "eval", tiny_run, "--data", data), "3-channel", "takes 1")


def test_detect_unreadable_image(capsys, tiny_run, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG garbage " * 20)
    out = tmp_path / "det"
    assert_user_error(mist(capsys, "detect", tiny_run, bad, "--out", out), str(bad), "readable")
    assert_user_error(
        mist(capsys, "detect", tiny_run, tmp_path / "missing.png", "--out", out), "missing.png"
    )
    assert not out.exists()


def test_detect_too_small_image(capsys, tiny_run, tmp_path):
    path = tmp_path / "thin.png"
    Image.fromarray(np.zeros((3, 40), np.uint8), "L").save(path)
    assert_user_error(
        mist(capsys, "detect", tiny_run, path, "--out", tmp_path / "d"), "thin.png", "too small"
    )


# -- successful commands --------------------------------------------------------------------------


def odd_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Write PNG/JPEG files of odd sizes and modes; returns {file name: (W, H)}."""
    rng = np.random.default_rng(0)
    u8 = lambda *s: (rng.random(s) * 255).astype(np.uint8)  # noqa: E731
    Image.fromarray(u8(61, 97), "L").save(folder / "gray.png")
    Image.fromarray(u8(80, 120, 4), "RGBA").save(folder / "rgba.png")
    Image.fromarray(u8(200, 64, 3), "RGB").convert("P").save(folder / "palette.png")
    Image.fromarray((rng.random((50, 70)) * 65535).astype(np.uint16)).save(folder / "deep.png")
    Image.fromarray(u8(45, 33, 3), "RGB").save(folder / "photo.jpg")
    Image.fromarray(u8(40, 41) > 128).save(folder / "bits.png")  # mode "1"
    return {
        "gray.png": (97, 61),
        "rgba.png": (120, 80),
        "palette.png": (64, 200),
        "deep.png": (70, 50),
        "photo.jpg": (33, 45),
        "bits.png": (41, 40),
    }


def test_detect_on_odd_sizes_and_modes(capsys, tiny_run, tmp_path):
    sizes = odd_images(tmp_path)
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert Image.open(tmp_path / "palette.png").mode == "P"
    out = tmp_path / "det"
    rc, stdout, err = mist(capsys, "detect", tiny_run, *[tmp_path / f for f in sizes], "--out", out)
    assert rc == 0, err
    for name, (W, H) in sizes.items():
        stem = Path(name).stem
        record = json.loads((out / f"{stem}.json").read_text())
        assert (record["width"], record["height"], record["k"]) == (W, H, 9)
        boxes = np.array(record["boxes"])
        assert boxes.shape == (9, 3)
        assert (boxes[:, 2] == 20.0).all()
        assert (
            (boxes[:, 0] >= 0) & (boxes[:, 0] < W) & (boxes[:, 1] >= 0) & (boxes[:, 1] < H)
        ).all()
        assert len(record["scores"]) == 9
        assert record["scores"] == sorted(record["scores"], reverse=True)
        assert len(record["labels"]) == 9 and all(0 <= v < 10 for v in record["labels"])
        scale = max(1, ANNOTATION_SIDE // max(W, H))
        with Image.open(out / f"{stem}.png") as im:
            assert im.size == (W * scale, H * scale)
            assert im.mode == "RGB"
    assert stdout.count("9 boxes") == len(sizes)


def test_detect_k_option(capsys, tiny_run, tmp_path):
    odd_images(tmp_path)
    rc, _, err = mist(
        capsys, "detect", tiny_run, tmp_path / "gray.png", "--k", "4", "--out", tmp_path / "d"
    )
    assert rc == 0, err
    assert len(json.loads((tmp_path / "d" / "gray.json").read_text())["boxes"]) == 4


def test_read_image_conversions(tmp_path):
    deep = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    x = read_image(tmp_path / "deep.png", 1)
    assert x.shape == (1, 2, 2) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.from_numpy(deep / 65535.0).float())
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere ...
    rgba[0, :, 3] = 255  # ... opaque in the first row, transparent in the second
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    x = read_image(tmp_path / "rgba.png", 3)
    assert x.shape == (3, 2, 3)
    assert torch.equal(x[:, 0], torch.tensor([1.0, 0, 0])[:, None].expand(3, 3))
    assert torch.equal(x[:, 1], torch.zeros(3, 3))  # transparent over black
    gray = read_image(tmp_path / "rgba.png", 1)
    assert gray.shape == (1, 2, 3)
    assert float(gray[0, 0, 0]) == pytest.approx(round(0.299 * 255) / 255, abs=1 / 255)
    x3 = read_image(tmp_path / "deep.png", 3)
    assert x3.shape == (3, 2, 2) and torch.equal(x3[0], x3[2])


def test_eval_writes_metrics_json(capsys, tiny_run, tmp_path):
    out = tmp_path / "metrics.json"
    rc, stdout, err = mist(capsys, "eval", tiny_run, "--data", "mnist-hard", "--json", out)
    assert rc == 0, err
    record = json.loads(out.read_text())
    assert {"run", "data", "split", "k", "metrics"} <= set(record)
    assert (record["data"], record["split"], record["k"], record["images"]) == (
        "mnist-hard",
        "test",
        9,
        8,
    )
    assert 0.0 <= record["metrics"]["both"] <= record["metrics"]["det_iou50"] <= 1.0
    assert "both" in stdout
    # The same scenes evaluated in-process give the same numbers.
    from mistnet.engine import evaluate

    cfg, model, _ = runner.Run(tiny_run).load("best")
    ref = evaluate(model, runner.loader(runner.open_split(cfg, "test"), 8, 0))
    assert record["metrics"] == pytest.approx(ref)


def test_show_writes_a_figure(capsys, tiny_run, tmp_path):
    out = tmp_path / "fig.png"
    rc, _, err = mist(capsys, "show", tiny_run, "--n", "2", "--out", out)
    assert rc == 0, err
    with Image.open(out) as im:
        assert im.size[0] > im.size[1] > 100


# -- resume after SIGKILL -------------------------------------------------------------------------


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
        "train.threads=1",
    ]
    reference = tmp_path / "reference"
    runner.train(apply_overrides(load_preset("tiny-cpu"), overrides), reference, progress=False)

    run = tmp_path / "interrupted"
    argv = [sys.executable, "-m", "mistnet", "train", "--preset", "tiny-cpu", "--out", str(run)]
    argv += ["--device", "cpu", "--no-progress"] + [a for o in overrides for a in ("--set", o)]
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
    from mistnet.data import build_generator, make_scenes, write_dataset

    gen = build_generator("mnist-easy")
    splits = {s: make_scenes(gen, s, range(n)) for s, n in (("train", 16), ("val", 8), ("test", 4))}
    data = write_dataset(tmp_path / "easy", "mnist-easy", splits)
    run = tmp_path / "recon"
    sets = ["model.task=reconstruct", "train.steps=4", "train.val_every=4", "train.lr_k=3.2"]
    argv = ["train", "--preset", "tiny-cpu", "--out", run, "--data", data, "--no-progress"]
    rc, out, err = mist(capsys, *argv, *[a for s in sets for a in ("--set", s)])
    assert rc == 0, err
    assert json.loads(out[out.index("{") :])["steps"] == 4
    assert json.loads((run / "config.json").read_text())["data"]["path"] == str(data)

    rc, out, err = mist(capsys, "eval", run, "--json", tmp_path / "m.json")
    assert rc == 0, err
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["data"] == str(data) and record["images"] == 4
    assert record["metrics"]["rmse"] > 0
    rc, _, err = mist(capsys, "show", run, "--n", "2", "--out", tmp_path / "fig.png")
    assert rc == 0, err
    Image.fromarray(np.zeros((30, 50), np.uint8), "L").save(tmp_path / "blank.png")
    rc, _, err = mist(capsys, "detect", run, tmp_path / "blank.png", "--out", tmp_path / "d")
    assert rc == 0, err
    record = json.loads((tmp_path / "d" / "blank.json").read_text())
    assert "labels" not in record and len(record["boxes"]) == 9
    with Image.open(tmp_path / "d" / "blank-recon.png") as im:
        assert im.size == (50 * 6, 30 * 6)
