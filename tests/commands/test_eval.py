"""``mist eval``: the metrics JSON, and data the run cannot be evaluated on."""

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, mist

import mistnet
from mistnet.config import load_json
from mistnet.data import write_dataset
from mistnet.data.runs import adopt_data, check_data, open_data
from mistnet.data.sampling import loader
from mistnet.data.store import SceneFolder
from mistnet.engine import evaluate
from mistnet.errors import MistError, MistWarning
from mistnet.evaluation import evaluate_run
from mistnet.metrics import DetectionMeter
from mistnet.rundir import Run


def test_eval_with_missing_data_directory(capsys, tiny_run, tmp_path):
    assert_user_error(
        mist(capsys, "eval", tiny_run, "--data", tmp_path / "no-data"), "does not exist"
    )
    assert_user_error(mist(capsys, "eval", tiny_run, "--data", "mnist-medium"), "mnist-medium")


def _scenes(channels: int, n: int = 4) -> dict[str, np.ndarray]:
    """``n`` blank 80x80 scenes of two boxes of class 0 each."""
    return {
        "images": np.zeros((n, channels, 80, 80), np.uint8),
        "boxes": np.tile(np.float32([20, 20, 20, 20]), (n, 2, 1)),
        "labels": np.zeros((n, 2), np.int64),
        "counts": np.full(n, 2, np.int64),
    }


def test_eval_with_data_the_run_cannot_use(capsys, tiny_run, tmp_path):
    assert_user_error(mist(capsys, "eval", tiny_run, "--data", "gabor"), "class labels")
    data = write_dataset(tmp_path / "rgb", "rgb-test", {"test": _scenes(3)})
    assert_user_error(mist(capsys, "eval", tiny_run, "--data", data), "3-channel", "takes 1")


def test_a_classifier_is_evaluated_on_boxes_without_labels_class_agnostically(
    capsys, tiny_run, tmp_path
):
    """Before: refused ("has no labels; a classifier needs them (an auto-encoder does not:
    model.task=reconstruct)", advice for training), though its boxes measure the detector."""
    arrays = _scenes(1)
    boxes = write_dataset(tmp_path / "b", "b", {"test": arrays}, {"annotations": ["boxes"]})
    rc, out, err = mist(capsys, "eval", tiny_run, "--data", boxes, "--json", tmp_path / "m.json")
    assert rc == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert {"det_iou50", "det_any50", "ap50_agnostic"} <= set(metrics)
    assert not {"classif", "both", "ap50"} & set(metrics)
    assert "not measured: classif, both, ap50 (the data has no labels)" in out
    bare = write_dataset(tmp_path / "n", "n", {"test": arrays}, {"annotations": []})
    result = mist(capsys, "eval", tiny_run, "--data", bare)
    assert_user_error(result, "has no labels; a classifier needs them or boxes to be evaluated on")
    # training still needs the labels, and says what trains without them
    cfg = load_json(tiny_run / "config.json")
    with pytest.raises(MistError, match=r"no labels; a classifier needs them \(an auto-encoder"):
        check_data(cfg, SceneFolder(boxes, "test"), "b", training=True)
    # and validates on them: boxes alone as the val split chose best.safetensors by an
    # unmeasured classif (a review found it trained so, "best": null)
    labelled = write_dataset(
        tmp_path / "l", "l", {"train": arrays}, {"annotations": ["boxes", "labels"]}
    )
    pair = (SceneFolder(labelled, "train"), SceneFolder(boxes, "test"))
    with pytest.raises(MistError, match=r"\[val\] has no labels; a classifier validates on them"):
        adopt_data(cfg, *pair)


def test_data_naming_no_classes_for_a_run_of_named_classes_is_said_to_be_read_by_id(
    tiny_run, tmp_path
):
    """Before: a run trained on classes a..j evaluated on data naming none (generated scenes)
    was scored by class id as a..j without a word; the other way round is refused."""
    cfg = load_json(tiny_run / "config.json")
    unnamed = SceneFolder(write_dataset(tmp_path / "u", "u", {"test": _scenes(1)}), "test")
    cfg.record.class_names = tuple("abcdefghij")
    with pytest.warns(MistWarning, match=r"u names no classes: its class ids 0..9 are read as "):
        check_data(cfg, unnamed, "u")
    cfg.record.class_names = tuple(map(str, range(10)))  # named by their ids: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_data(cfg, unnamed, "u")


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
    assert "both" in stdout
    # The same scenes evaluated in-process give exactly the same numbers ...
    cfg, model, _ = Run(tiny_run).load("best")
    ref = evaluate(model, loader(open_data(cfg, None, "test")[1], 8, 0))
    assert record["metrics"] == ref
    # ... and so does the library call behind mist eval, as a record with the same keys.
    again = evaluate_run(tiny_run, "mnist-hard", "test")
    assert again.to_dict() == {**record, "run": str(tiny_run)}
    assert record["metrics"]["n_images"] == 8
    assert record["metrics"]["both"] <= min(
        record["metrics"]["det_iou50"], record["metrics"]["classif"]
    )


def test_eval_k_options_are_checked_before_anything_loads(capsys, tmp_path):
    missing = tmp_path / "no-run"
    assert_user_error(mist(capsys, "eval", missing, "--k", "-1"), "--k must be at least 1")
    assert_user_error(
        mist(capsys, "eval", missing, "--k", "3", "--per-image-k"), "exclude each other"
    )


def test_eval_threads_sets_torchs_threads_and_a_bad_count_is_refused(
    capsys, tiny_run, tmp_path, monkeypatch
):
    asked = []
    monkeypatch.setattr(torch, "set_num_threads", asked.append)
    out = tmp_path / "m.json"
    rc, _, err = mist(capsys, "eval", tiny_run, "--threads", "1", "--json", out)
    assert rc == 0, err
    assert asked and set(asked) == {1} and out.is_file()  # set, and given back as set
    calls = len(asked)
    assert_user_error(mist(capsys, "eval", tiny_run, "--threads", "-1"), "--threads must be 0")
    assert len(asked) == calls  # refused before any is set


def test_eval_json_takes_an_upper_case_suffix_as_plot_does(capsys, tiny_run, tmp_path):
    # Before: eval --json m.JSON was refused while plot --out x.PNG was accepted.
    out = tmp_path / "m.JSON"
    rc, _, err = mist(capsys, "eval", tiny_run, "--json", out)
    assert rc == 0, err
    assert json.loads(out.read_text())["split"] == "test"
    assert_user_error(mist(capsys, "eval", tiny_run, "--json", tmp_path / "m.txt"), "ending in")


def test_a_checkpoint_whose_model_outputs_nan_is_refused_not_scored_as_misses(
    capsys, tmp_path, tiny_run
):
    """Before: finite weights whose outputs are NaN (a negative BatchNorm variance) were
    scored as misses: metrics of 0.0, written as the run's record."""
    from mistnet.checkpoint import Checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    saved = Checkpoint(run / "best.safetensors")
    model = mistnet.load(run)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(-buffer - 1)
    save_checkpoint(run / "best.safetensors", model, config=saved.config, step=saved.step,
                    extra=saved.extra)  # fmt: skip
    (run / "eval-test.json").unlink(missing_ok=True)
    result = mist(capsys, "eval", run, "--threads", "1")
    assert_user_error(result, "best.safetensors on", "the model's outputs are NaN or infinite")
    assert not (run / "eval-test.json").exists()
    # Before: "heatmaps holds 6400 NaN or infinite values (of 6400)", naming no file
    result = mist(capsys, "show", run, "--out", tmp_path / "s.png", "--n", "1")
    assert_user_error(result, "best.safetensors on", "the model's outputs are NaN or infinite")
    assert not (tmp_path / "s.png").exists()


def test_evaluate_run_checks_its_arguments_before_any_work(tiny_run):
    """Before: a run and a model both given scored the model as the run's (the run ignored);
    split "valid" a bare KeyError; k=True, batch_size=-1, device="gpu" errors deep in torch."""
    for kwargs, message in [
        ({"model": "mnist-hard-classifier"}, "give run or model"),
        ({"split": "training"}, "split must be one of train, val, test"),
        ({"k": True}, "k must be an integer >= 0"),
        ({"batch_size": -1}, "batch_size must be an integer >= 0"),
        ({"device": "gpu"}, "device must be cpu, cuda"),
        ({"per_image_k": "no"}, "per_image_k must be True or False"),
        ({"k": 2, "per_image_k": True}, "k and per_image_k exclude each other"),
        ({"data": 3}, "data must be a path or a generator name"),
        # before: "" evaluated the run's own data, where `mist eval --data ""` is refused
        ({"data": ""}, "data '' is empty; give a dataset, or None for the run's"),
    ]:
        with pytest.raises(ValueError, match=message):
            evaluate_run(tiny_run, **kwargs)
    with pytest.raises(ValueError, match="give run or model"):
        evaluate_run(None)
    assert evaluate_run(tiny_run, split="valid").split == "val"


def test_evaluate_run_resolves_its_device_and_checks_the_rest(tiny_run):
    """Before: ``device="auto"`` failed on every machine (``Tensor.to("auto")``), ``"cuda"``
    without CUDA raised torch's AssertionError, ``meters=[5]`` an AttributeError once batches
    ran, ``batch_size=2**70`` an islice error; ``split=None`` was shown as ``'?'``, bytes and
    ints as ``run`` gave pathlib's TypeError, and ``k`` was named ``--k`` alone."""
    import re

    auto = evaluate_run(tiny_run, device="auto", batch_size=2**70)
    assert auto.metrics == evaluate_run(tiny_run, device=torch.device("cpu")).metrics
    cuda = [] if torch.cuda.is_available() else [({"device": "cuda"}, ValueError, "no CUDA")]
    for kwargs, error, message in [
        *cuda,
        ({"device": 0}, TypeError, "device must be a string, got 0"),
        ({"device": torch.device("meta")}, ValueError, "device must be cpu, cuda"),
        ({"meters": [5]}, TypeError, "meters[0] (int) is no meter: it has no update"),
        # Before: mistnet's metric meter passed, and failed after the first forward pass
        ({"meters": [DetectionMeter()]}, TypeError, "meters[0] (DetectionMeter) is no meter: its"),
        ({"meters": None}, TypeError, "meters must be a sequence of meters"),
        ({"split": None}, ValueError, "split must be one of train, val, test; got None"),
        ({"k": 10**6}, ValueError, "--k 1000000 (k= in Python):"),
    ]:
        with pytest.raises(error, match=re.escape(message)):
            evaluate_run(tiny_run, **kwargs)
    for run, error, message in [
        (b"run", TypeError, "run must be a path as text, got bytes"),
        (5, TypeError, "run must be a path as text, got int"),
        ("", ValueError, "run '' is an empty path"),
    ]:
        with pytest.raises(error, match=re.escape(message)):
            evaluate_run(run)


def test_evaluate_run_takes_a_path_as_data_and_a_numpy_integer_as_k(tiny_run, tmp_path):
    """Before: data=Path(...) a TypeError deep in open_data; k=np.int64(2), as a numpy
    computation gives it, refused as no integer; per_image_k="no" was taken as true."""
    n = 6
    scenes = {
        "images": np.zeros((n, 1, 80, 80), np.uint8),
        "boxes": np.tile(np.float32([[10, 10, 8, 8], [40, 40, 8, 8]]), (n, 1, 1)),
        "labels": np.ones((n, 2), np.int64),
        "counts": np.full(n, 2, np.int64),
    }
    write_dataset(tmp_path / "ds", "zeros", {"test": scenes})
    result = evaluate_run(tiny_run, tmp_path / "ds", k=np.int64(2))
    assert result.k == 2 and type(result.k) is int and result.images == 6
    assert result.data == str(tmp_path / "ds")


@pytest.mark.parametrize("method", ["channelwise", "grid"])
def test_a_k_that_a_fixed_k_baseline_cannot_give_is_refused_by_every_command(
    capsys, tmp_path, method
):
    """Before (once the models refused another k): eval, show and detect with --k 5 (and eval
    --per-image-k) on a channel-wise or grid run ended in "internal error ... k is fixed";
    earlier still, --k was silently ignored."""
    from cli_helpers import TINY
    from PIL import Image

    from mistnet import loop
    from mistnet.config import apply_overrides, load_preset

    run = tmp_path / method
    overrides = [*TINY, "train.steps=1", "train.val_every=1", f"train.method={method}"]
    overrides += ["model.k=9"] if method == "grid" else []
    cfg = apply_overrides(load_preset("tiny-cpu"), overrides)
    loop.train(cfg, run, progress=False)
    Image.new("L", (48, 48)).save(tmp_path / "p.png")
    name = {"channelwise": "ChannelWiseMIST", "grid": "GridMIST"}[method]
    for argv in (
        ["eval", run, "--k", 5],
        ["eval", run, "--per-image-k"],
        ["show", run, "--k", 5, "--out", tmp_path / "s.png"],
        ["detect", run, tmp_path / "p.png", "--k", 5, "--out", tmp_path / "found"],
    ):
        assert_user_error(mist(capsys, *argv), f"{name} always finds its K", "drop --k")
    assert sorted(p.name for p in tmp_path.iterdir()) == [method, "p.png"]


def test_a_run_whose_config_lost_its_dataset_folder_is_not_scored_on_a_generator(capsys, tmp_path):
    """Before: with ``data.path`` emptied in config.json, ``mist eval`` scored the run on
    freshly generated scenes of ``data.name`` (it was trained on a dataset folder, its record
    says so) and ``train --resume`` called the generator "a dataset made by 'no generator'"."""
    run = _trained_on(capsys, tmp_path / "ds")
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["path"] = ""
    (run / "config.json").write_text(json.dumps(cfg))
    message = "the run was trained on a dataset folder (record.data_manifest) but its config"
    assert_user_error(mist(capsys, "eval", run), message, "--data DIR")
    resume = ["train", "--out", run, "--resume", "--set", "train.steps=4"]
    assert_user_error(mist(capsys, *resume), message, "a resumed run trains on the data")
    assert not list(run.glob("eval-*.json"))
    assert mist(capsys, "eval", run, "--data", tmp_path / "ds")[0] == 0  # named: it is used
    # Before: "was trained on the dataset mnist-easy, not DS" of the very dataset it trained on
    rc, _, err = mist(capsys, *resume, "--data", tmp_path / "ds")
    assert rc == 0, err
    assert json.loads((run / "config.json").read_text())["data"]["path"] == "../ds"


def test_a_run_copied_with_its_dataset_takes_its_own_copy(capsys, tmp_path):
    """Before: a project copied whole (dataset and run), its run's ``data.path`` pointed at the
    copy while the original was still there, was "another run's checkpoint, or config.json
    was edited since" for eval and resume, and ``--resume --data COPY`` "trained on the
    dataset ..., not COPY": the data the run trained on, byte for byte."""
    run = _trained_on(capsys, tmp_path / "a")
    make = ["data", "make", "mnist-easy", "--n-train", 4, "--n-val", 2, "--n-test", 2]
    assert mist(capsys, *make, "--seed", 1, "--out", tmp_path / "other")[0] == 0
    shutil.copytree(tmp_path / "a", tmp_path / "b")

    def point_at(folder: str) -> None:
        cfg = json.loads((run / "config.json").read_text())
        cfg["data"]["path"] = str(tmp_path / folder)
        (run / "config.json").write_text(json.dumps(cfg))

    point_at("other")  # another dataset is still refused
    assert_user_error(mist(capsys, "eval", run), "data.path is", "but best.safetensors was")
    point_at("b")
    rc, _, err = mist(capsys, "eval", run)
    assert rc == 0, err
    resume = ["train", "--out", run, "--resume", "--no-progress", "--set"]
    rc, _, err = mist(capsys, *resume, "train.steps=3")
    assert rc == 0, err
    point_at("a")  # the original named; the copy given
    rc, _, err = mist(capsys, *resume, "train.steps=4", "--data", tmp_path / "b")
    assert rc == 0, err
    assert json.loads((run / "config.json").read_text())["data"]["path"] == "../b"
    assert_user_error(
        mist(capsys, *resume, "train.steps=5", "--data", tmp_path / "other"),
        "a resumed run trains on the data it started with",
    )


def test_a_dataset_of_the_same_manifest_but_other_pixels_is_no_copy(capsys, tmp_path):
    """Before: a dataset whose manifest had the run's digest was taken for the run's own copy
    while the original was still there, though its pixels differ (photos changed and
    imported again keep the digest): eval scored it and ``--resume --data`` trained on it."""
    run = _trained_on(capsys, tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with np.load(tmp_path / "b" / "test.npz") as z:
        arrays = dict(z)
    arrays["images"] = 255 - arrays["images"]
    np.savez(tmp_path / "b" / "test.npz", **arrays)
    config = run / "config.json"
    cfg = json.loads(config.read_text())
    cfg["data"]["path"] = str(tmp_path / "b")
    config.write_text(json.dumps(cfg))
    assert_user_error(mist(capsys, "eval", run), "data.path is", "but best.safetensors was")
    assert not list(run.glob("eval-*.json"))
    cfg["data"]["path"] = "../a"
    config.write_text(json.dumps(cfg))
    before = config.read_bytes()
    resume = ["train", "--out", run, "--resume", "--no-progress", "--set", "train.steps=3"]
    assert_user_error(
        mist(capsys, *resume, "--data", tmp_path / "b"),
        "a resumed run trains on the data it started with",
    )
    assert config.read_bytes() == before


def test_a_per_image_k_evaluation_is_written_beside_the_fixed_k_record(capsys, tmp_path, tiny_run):
    """Before: --per-image-k replaced RUN/eval-test.json, which models package then refused
    ("k is 'per-image', not a count") though mist eval had written it."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert mist(capsys, "eval", run, "--threads", "1")[0] == 0
    fixed = (run / "eval-test.json").read_bytes()
    rc, _, err = mist(capsys, "eval", run, "--per-image-k", "--threads", "1")
    assert rc == 0, err
    assert (run / "eval-test.json").read_bytes() == fixed
    assert json.loads((run / "eval-test-per-image-k.json").read_text())["k"] == "per-image"


def test_eval_into_a_run_this_user_cannot_write_is_refused_before_evaluating(
    capsys, tiny_run, tmp_path, monkeypatch
):
    """Before: the whole evaluation ran, then "eval-test.json: Permission denied", the
    metrics never shown. (Root writes anywhere: the permission is stood in for.)"""
    import mistnet.commands.eval as command

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "eval-test.json").unlink(missing_ok=True)
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != run and access(path, mode))
    monkeypatch.setattr(command, "evaluate_run", lambda *a, **k: pytest.fail("evaluated"))
    result = mist(capsys, "eval", run, "--threads", "1")
    assert_user_error(result, f"{run}: this user cannot write into it", "give --json FILE")
    assert not (run / "eval-test.json").exists()
    monkeypatch.undo()
    code, out, _ = mist(capsys, "eval", run, "--json", tmp_path / "m.json", "--threads", "1")
    assert code == 0 and out.index("det_iou50") < out.index("wrote")  # shown, then written


def test_a_file_of_the_users_at_the_runs_record_is_refused_before_evaluating(
    capsys, tiny_run, tmp_path, monkeypatch
):
    """Before: the whole evaluation ran and printed, then "RUN/eval-test.json: exists and is
    not a metrics file of mist eval of RUN"."""
    import mistnet.commands.eval as command

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "eval-test.json").write_text('{"my": "notes"}')
    monkeypatch.setattr(command, "evaluate_run", lambda *a, **k: pytest.fail("evaluated"))
    result = mist(capsys, "eval", run, "--threads", "1")
    assert_user_error(result, "eval-test.json: exists and is not a metrics file of mist eval")
    assert (run / "eval-test.json").read_text() == '{"my": "notes"}'


@pytest.mark.parametrize("way", ["file", "dangling link"])
def test_a_json_under_a_file_is_refused_before_evaluating(
    capsys, tiny_run, tmp_path, monkeypatch, way
):
    """Before: ``--json afile/m.json`` ran the whole evaluation, then "afile is not a
    directory"."""
    import mistnet.commands.eval as command

    blocker = tmp_path / "afile"
    if way == "file":
        blocker.write_text("notes")
    else:
        blocker.symlink_to(tmp_path / "nowhere")
    monkeypatch.setattr(command, "evaluate_run", lambda *a, **k: pytest.fail("evaluated"))
    result = mist(capsys, "eval", tiny_run, "--json", blocker / "sub" / "m.json")
    assert_user_error(result, f"{blocker} is not a directory", "choose another --json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def _trained_on(capsys, data: Path) -> Path:
    """``data`` made (mnist-easy, 4/2/2 scenes) and a two-step run ``run`` beside it trained
    on it; returns the run."""
    make = ["data", "make", "mnist-easy", "--n-train", 4, "--n-val", 2, "--n-test", 2]
    assert mist(capsys, *make, "--out", data)[0] == 0
    train = ["train", "--preset", "tiny-cpu", "--data", data, "--no-progress"]
    sets = ["train.steps=2", "train.batch_size=2", "train.val_every=2"]
    run = data.parent / "run"
    assert mist(capsys, *train, "--out", run, *(a for s in sets for a in ("--set", s)))[0] == 0
    return run
