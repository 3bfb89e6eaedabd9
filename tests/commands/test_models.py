"""Pretrained models: ``mist models [package]``, ``--model NAME`` and ``mistnet.load("NAME")``.

A tiny-cpu run (with a moving average, so that packaging must take the average) is packaged into
a registry folder of the test's own ($MISTNET_MODELS), never the package's.
"""

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import TINY, assert_user_error, mist
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import mistnet
from mistnet import cli, loop, pretrained
from mistnet.checkpoint import Checkpoint
from mistnet.config import apply_overrides, load_preset
from mistnet.data.runs import manifest_digest
from mistnet.errors import MistError

NAME = "tiny-test"
COMMAND = "mist train --preset tiny-cpu --set train.steps=10 --out RUN"


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> tuple[Path, Path]:
    """``(run, registry)``: a 10-step tiny-cpu run, evaluated and packaged as ``NAME``."""
    root = tmp_path_factory.mktemp("pretrained")
    run = root / "run"
    overrides = [*TINY, "train.steps=10", "train.val_every=10", "train.ema_decay=0.9"]
    loop.train(apply_overrides(load_preset("tiny-cpu"), overrides), run, progress=False)
    assert cli.main(["eval", str(run)]) == 0  # writes RUN/eval-test.json
    package = ["models", "package", str(run), "--name", NAME, "--command", COMMAND]
    assert cli.main([*package, "--out", str(root)]) == 0
    return run, root


@pytest.fixture
def registry(packaged, monkeypatch) -> Path:
    monkeypatch.setenv(pretrained.ENV, str(packaged[1]))
    return packaged[1]


def test_packaging_writes_a_small_checkpoint_with_config_metrics_and_command(packaged):
    run, root = packaged
    path = root / f"{NAME}.safetensors"
    assert path.stat().st_size < 2_000_000
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    card = json.loads(meta["extra"])["pretrained"]
    recorded = json.loads((run / "eval-test.json").read_text())
    assert card["name"] == NAME and card["command"] == COMMAND
    assert card["metrics"] == recorded["metrics"]
    assert card["evaluated_on"] == {k: recorded[k] for k in ("data", "split", "images", "k")}
    assert json.loads(meta["config"]) == json.loads((run / "config.json").read_text())
    assert meta["digest"].startswith("sha256:")
    # the inference weights only: the run's moving average, no optimiser state
    tensors = load_file(str(path))
    average = Checkpoint(run / "best.safetensors").model_state(average=True)
    assert Checkpoint(run / "best.safetensors").has_average
    assert sorted(tensors) == sorted(f"model.{k}" for k in average)
    assert all(torch.equal(tensors[f"model.{k}"], v) for k, v in average.items())


def test_mist_models_lists_each_model_with_its_metrics_and_command(capsys, registry, tmp_path):
    rc, out, _ = mist(capsys, "models")
    assert rc == 0
    assert f"{NAME}: classify, K = 9, step 10" in out
    assert f"trained by: {COMMAND}" in out
    metrics = json.loads((registry / "run" / "eval-test.json").read_text())["metrics"]
    assert f"det_iou50 {metrics['det_iou50']:.4f}" in out
    assert "  test: det_iou50" in out  # the split measured on (was "test:" for any split)
    pretrained_env = str(tmp_path / "none")
    (tmp_path / "none").mkdir()
    with pytest.MonkeyPatch.context() as m:
        m.setenv(pretrained.ENV, pretrained_env)
        rc, out, _ = mist(capsys, "models")
    assert rc == 0 and out.strip() == f"no pretrained models in {pretrained_env}"


def _scenes(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = [folder / "a.png", folder / "b.png"]
    for path in paths:
        Image.fromarray((rng.random((64, 80)) * 255).astype(np.uint8), "L").save(path)
    return paths


def test_detect_with_a_model_gives_the_detections_of_its_run(capsys, registry, tmp_path):
    images = _scenes(tmp_path)
    run = registry / "run"
    assert mist(capsys, "detect", run, *images, "--out", tmp_path / "by-run")[0] == 0
    assert mist(capsys, "detect", "--model", NAME, *images, "--out", tmp_path / "by-name")[0] == 0
    written = sorted(p.name for p in (tmp_path / "by-run").iterdir())
    assert "detections.csv" in written and "a.json" in written
    for name in written:
        assert (tmp_path / "by-run" / name).read_bytes() == (
            tmp_path / "by-name" / name
        ).read_bytes(), name
    # one image: RUN is optional with --model
    rc, _, err = mist(capsys, "detect", "--model", NAME, images[0], "--out", tmp_path / "one")
    assert rc == 0, err
    assert (tmp_path / "one" / "a.json").read_bytes() == (
        tmp_path / "by-run" / "a.json"
    ).read_bytes()


def test_eval_with_a_model_reproduces_its_recorded_metrics(capsys, registry, tmp_path):
    out = tmp_path / "eval.json"
    rc, text, err = mist(capsys, "eval", "--model", NAME, "--json", out)
    assert rc == 0, err
    card = pretrained.read(NAME)[1]
    assert json.loads(out.read_text())["metrics"] == card.metrics
    assert json.loads(out.read_text())["run"] == NAME
    rc, text, _ = mist(capsys, "eval", "--model", NAME)  # no --json: printed, nothing written
    assert rc == 0 and "wrote" not in text and "det_iou50" in text


def test_run_and_model_exclude_each_other(capsys, registry, tmp_path):
    run, image = registry / "run", _scenes(tmp_path)[0]
    assert_user_error(mist(capsys, "eval", run, "--model", NAME), "RUN or --model", "both")
    assert_user_error(mist(capsys, "eval"), "RUN or --model", "neither")
    assert_user_error(mist(capsys, "detect", image, "--out", tmp_path / "d"), "neither")
    assert_user_error(
        mist(capsys, "detect", "--model", "nope", image, "--out", tmp_path / "d"),
        "no pretrained model 'nope'",
        NAME,
    )
    # a model's name where RUN goes (the README: "by name where a run directory goes", which
    # mistnet.load takes): "run directory NAME does not exist", with no word of --model
    hint = f"{NAME} is a pretrained model: give it as --model {NAME}"
    assert_user_error(mist(capsys, "eval", NAME), hint)
    assert_user_error(mist(capsys, "detect", NAME, image, "--out", tmp_path / "d"), hint)
    assert not (tmp_path / "d").exists()


def test_load_takes_a_name_or_a_run_and_refuses_anything_else_in_one_line(registry, tmp_path):
    by_name, by_run = mistnet.load(NAME), mistnet.load(registry / "run")
    assert not by_name.training and by_name.config.model.task == "classify"
    assert by_name.run == registry / f"{NAME}.safetensors"
    state = by_run.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in by_name.state_dict().items())
    with pytest.raises(MistError) as err:
        mistnet.load("mnist-hard-clasifier")
    message = str(err.value)
    assert "\n" not in message and "neither a run directory nor a pretrained model" in message
    assert NAME in message
    with pytest.raises(ValueError, match="which must be"):
        mistnet.load(NAME, which="bset")


def _copy_model(registry: Path, folder: Path) -> Path:
    folder.mkdir()
    return Path(shutil.copy(registry / f"{NAME}.safetensors", folder))


def assert_not_listed(result, *fragments):
    """``mist models`` listed the rest and named the damaged model in one warning line."""
    code, _, err = result
    assert code == 0 and len(err.splitlines()) == 1, err
    assert err.startswith(f"mist models: warning: {NAME}: not listed ("), err
    assert all(fragment in err for fragment in fragments), err


def test_a_model_whose_bytes_changed_is_refused(capsys, registry, tmp_path, monkeypatch):
    path = _copy_model(registry, tmp_path / "models")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # a bit of the last tensor: a valid file, other weights
    path.write_bytes(bytes(data))
    monkeypatch.setenv(pretrained.ENV, str(path.parent))
    with pytest.raises(MistError, match="corrupt: its bytes do not match the checksum"):
        mistnet.load(NAME)
    assert_not_listed(mist(capsys, "models"), str(path), "checksum")
    out = tmp_path / "det"
    image = _scenes(tmp_path)[0]
    assert_user_error(mist(capsys, "detect", "--model", NAME, image, "--out", out), "checksum")
    assert not out.exists()


def test_a_link_to_nothing_among_the_models_is_named_not_skipped(capsys, tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / f"{NAME}.safetensors").symlink_to(tmp_path / "moved.safetensors")
    monkeypatch.setenv(pretrained.ENV, str(folder))
    assert pretrained.names() == [NAME]  # was []: "no pretrained models", the link unmentioned
    assert_not_listed(mist(capsys, "models"), "is a link to", "which does not exist")
    with pytest.raises(MistError, match="does not exist"):
        mistnet.load(NAME)


@pytest.mark.parametrize("kind, what", [("folder", "a directory"), ("fifo", "a FIFO")])
def test_a_folder_or_fifo_among_the_models_is_named_not_skipped(
    capsys, tmp_path, monkeypatch, kind, what
):
    """Before: left out of ``mist models`` without a word, then ``--model NAME`` said "no
    pretrained model 'NAME' (known pretrained models: none in ...)"."""
    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / f"{NAME}.safetensors"
    if kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    monkeypatch.setenv(pretrained.ENV, str(folder))
    assert pretrained.names() == [NAME]
    assert_not_listed(mist(capsys, "models"), f"{what}, not a regular file")
    assert_user_error(
        mist(capsys, "eval", "--model", NAME, "--data", "x"), f"{what}, not a regular"
    )


def test_a_model_without_its_checksum_is_refused(registry, tmp_path, monkeypatch):
    path = _copy_model(registry, tmp_path / "models")
    with safe_open(str(path), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "digest"}
    save_file(load_file(str(path)), str(path), metadata=meta)
    monkeypatch.setenv(pretrained.ENV, str(path.parent))
    with pytest.raises(MistError, match="carries no checksum"):
        mistnet.load(NAME)


def test_mist_models_does_not_list_a_model_whose_config_loading_refuses(
    capsys, registry, tmp_path, monkeypatch
):
    """Before: ``mist models`` listed a packaged model whose config (read with plain JSON:
    NaN taken) every load refused ("model.softmax_strength must be a finite number")."""
    from mistnet.checkpoint import _digest

    path = _copy_model(registry, tmp_path / "models")
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["config"])
    config["model"]["softmax_strength"] = math.nan
    meta["config"] = json.dumps(config)  # NaN written as JSON's NaN, which json.loads takes
    meta["digest"] = _digest(tensors, meta)  # a file of intact bytes
    save_file(tensors, str(path), metadata=meta)
    monkeypatch.setenv(pretrained.ENV, str(path.parent))
    assert_not_listed(mist(capsys, "models"), "softmax_strength must be a finite number")
    with pytest.raises(MistError, match="softmax_strength must be a finite number"):
        mistnet.load(NAME)


@pytest.mark.parametrize("key, value", [("n_images", math.nan), ("n_instances", math.inf),
                                        ("both", math.nan)])  # fmt: skip
def test_a_card_whose_metrics_are_not_finite_is_named_damaged(
    capsys, registry, tmp_path, monkeypatch, key, value
):
    """Before: a NaN or infinite count made ``mist models`` (the whole listing), ``detect
    --model`` and ``load`` an internal error ("cannot convert float NaN to integer"); a NaN
    fraction was listed as ``nan``, though a card writes one as null."""
    from mistnet.checkpoint import _digest

    path = _copy_model(registry, tmp_path / "models")
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    extra = json.loads(meta["extra"])
    extra["pretrained"]["metrics"][key] = value
    meta["extra"] = json.dumps(extra)  # written as JSON's NaN, which json.loads takes
    meta["digest"] = _digest(tensors, meta)  # a file of intact bytes
    save_file(tensors, str(path), metadata=meta)
    monkeypatch.setenv(pretrained.ENV, str(path.parent))
    message = f"its model card is damaged (metrics[{key!r}] is {value!r}, not a finite number"
    assert_not_listed(mist(capsys, "models"), message)
    with pytest.raises(MistError, match=re.escape(message)):
        mistnet.load(NAME)


def test_packaging_refuses_stale_metrics_a_bad_name_and_a_file_of_the_users(
    capsys, packaged, tmp_path
):
    run = packaged[0]
    stale = tmp_path / "eval.json"
    record = json.loads((run / "eval-test.json").read_text())
    stale.write_text(json.dumps({**record, "step": 5}))
    # Before: a mistyped --metrics was told "run mist eval on the run first"
    typo = ["models", "package", run, "--command", COMMAND, "--out", tmp_path, "--name", NAME]
    assert_user_error(mist(capsys, *typo, "--metrics", tmp_path / "eval-tst.json"),
                      "eval-tst.json does not exist; name the record mist eval wrote")  # fmt: skip
    package = ["models", "package", run, "--command", COMMAND, "--out", tmp_path]
    assert_user_error(
        mist(capsys, *package, "--name", NAME, "--metrics", stale), "step 5", "mist eval"
    )
    # Before: the record of another run at the same step was published with this run's weights.
    stale.write_text(json.dumps({**record, "run": "runB", "run_dir": str(tmp_path / "runB")}))
    result = mist(capsys, *package, "--name", NAME, "--metrics", stale)
    # the directory it measured, not its relative name (a copied run's is the same)
    assert_user_error(result, f"eval.json measured the run '{tmp_path / 'runB'}', not", "this run")
    # Before: the same record copied into the run as its eval-test.json was taken as the run's
    # own (another run of the same steps' metrics on this run's model card); one whose run
    # directory is gone (the run moved since) still is
    copied = tmp_path / "copied"
    shutil.copytree(run, copied)
    (tmp_path / "runB").mkdir()
    (copied / "eval-test.json").write_text(stale.read_text())
    moved = ["models", "package", copied, "--command", COMMAND, "--out", tmp_path / "m"]
    result = mist(capsys, *moved, "--name", NAME)
    assert_user_error(result, f"eval-test.json measured the run '{tmp_path / 'runB'}', not")
    (tmp_path / "runB").rmdir()
    assert mist(capsys, *moved, "--name", NAME)[0] == 0
    shutil.rmtree(copied)
    shutil.rmtree(tmp_path / "m")
    result = mist(capsys, *package, "--name", "Bad Name")
    assert_user_error(result, "--name 'Bad Name'")
    assert result[2].startswith("mist models package: error:")  # not the --command text
    for command in ("x\ny", "mist train \x1b[31m"):  # was accepted; mist models printed it raw
        result = mist(capsys, *package[:3], "--command", command, "--out", tmp_path, "--name", NAME)
        assert_user_error(result, f"--command {command!r} holds the control character")
    mine = tmp_path / f"{NAME}.safetensors"
    mine.write_bytes(b"my own file")
    assert_user_error(mist(capsys, *package, "--name", NAME), f"{mine}: exists and is no packaged")
    assert mine.read_bytes() == b"my own file"
    assert_user_error(mist(capsys, *package, "--name", NAME, "--overwrite"), "is no packaged")
    assert mine.read_bytes() == b"my own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", mine.name]
    # Before: a second package of that name replaced the first model (perhaps its only copy).
    mine.unlink()
    assert mist(capsys, *package, "--name", NAME)[0] == 0
    first = mine.read_bytes()
    result = mist(capsys, *package, "--name", NAME, "--command", "mist train again")
    assert_user_error(result, "a packaged model of that name exists; --overwrite replaces it")
    assert mine.read_bytes() == first
    assert mist(capsys, *package, "--name", NAME, "--command", "again", "--overwrite")[0] == 0
    assert mine.read_bytes() != first
    # Before: a packaged model cut short was "no packaged model ... (mistnet never overwrites a
    # file it did not write)": it did write it; why it cannot tell is said
    mine.write_bytes(mine.read_bytes()[:1000])
    result = mist(capsys, *package, "--name", NAME, "--overwrite")
    assert_user_error(result, "no packaged model mistnet can read (checkpoint", "or remove it")
    assert len(mine.read_bytes()) == 1000


@pytest.mark.parametrize(
    "change, message",
    [
        ({"metrics": 5}, "metrics is int, not a map"),
        ({"metrics": {"det": "high"}}, "metrics['det'] is 'high', not a finite number"),
        ({"images": "many"}, "images is 'many', not a count"),
        ({"metrics": {"both": 5.0}}, "metrics['both'] is 5.0, outside [0, 1]"),  # was listed
        ({"metrics": {"rmse": -1.0}}, "metrics['rmse'] is -1.0, outside >= 0"),
        ({"k": 0}, "k is 0, not a count"),
        # Before: packaged; mist models showed "K = 9" beside metrics measured at K = 3
        ({"k": 3}, "it measured K = 3, the model's K ="),
        ({"data": None}, "data is None, not text"),
        # Before: packaged, the card then printing "test:  on ...", 31 digits of images, a
        # count of 36.5 instances, or refused a string step as "at step 4, not ... at step 4"
        ({"metrics": {}}, "metrics is empty"),
        ({"metrics": {"n_images": 16}}, "metrics holds counts alone (n_*)"),
        ({"metrics": {"": 0.5, "both": 0.5}}, "metrics has a metric of no name"),
        ({"images": 10**30}, f"images is {10**30}, not a count"),
        ({"metrics": {"n_instances": 36.5}}, "metrics['n_instances'] is 36.5, not a count"),
        ({"metrics": {"n_images": 10**6, "both": 0.5}}, "metrics['n_images'] is 1000000 but"),
        # Before: an internal error, "int too large to convert to float"
        ({"metrics": {"both": 10**400}}, "metrics['both'] is 1000"),
        # Before: packaged (an error >= 0 has no upper bound), mist models then failing whole
        ({"metrics": {"rmse": 10**400}}, "metrics['rmse'] is 1000"),
        ({"step": "4"}, "step is '4', not a count"),
        # Before: packaged, mist models then printing "bogus: ..." and "on , 16 images", or the
        # checksum comparison skipped
        ({"split": "bogus"}, "split is 'bogus', not train, val or test"),
        ({"data": " "}, "data is empty"),
        ({"checkpoint_digest": 5}, "checkpoint_digest is 5"),
    ],
)
def test_packaging_refuses_a_malformed_metrics_record(capsys, packaged, tmp_path, change, message):
    run = packaged[0]
    record = json.loads((run / "eval-test.json").read_text())
    (tmp_path / "eval.json").write_text(json.dumps({**record, **change}))
    package = ["models", "package", run, "--command", COMMAND, "--out", tmp_path / "m"]
    result = mist(capsys, *package, "--name", NAME, "--metrics", tmp_path / "eval.json")
    assert_user_error(result, "eval.json is no mist eval record", message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]


def test_packaging_names_a_nul_run_a_dash_name_and_an_endless_command(capsys, packaged, tmp_path):
    """Before: a record whose run_dir held a NUL was an internal error ("embedded null byte");
    --name=-a was told to use "lowercase letters, digits and dashes", which it does; a command
    of 17 million characters was written, then refused as no checkpoint by --overwrite."""
    run = packaged[0]
    record = json.loads((run / "eval-test.json").read_text())
    (tmp_path / "eval.json").write_text(json.dumps({**record, "run_dir": "a\0b"}))
    package = ["models", "package", run, "--out", tmp_path / "m"]
    result = mist(capsys, *package, "--name", NAME, "--command", COMMAND, "--metrics",
                  tmp_path / "eval.json")  # fmt: skip
    assert_user_error(result, "eval.json measured the run 'a\\x00b', not")
    result = mist(capsys, *package, "--name=-a", "--command", COMMAND)
    assert_user_error(result, "--name '-a': use lowercase letters, digits and dashes, starting")
    with pytest.raises(ValueError, match="--command has 65,537 characters; at most 65,536"):
        pretrained.package(run, NAME, "x" * 65_537, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_an_unreadable_registry_or_model_file_is_named_so(capsys, registry, monkeypatch):
    """Before (as a user who may not read them): a folder of models of mode 700 was "no
    pretrained models in M" (glob saw nothing), a model file of mode 600 "corrupt or
    truncated ([Errno 13] Permission denied)". Run by hand as user 65534 too."""
    real_access, real_read = os.access, Path.read_bytes
    denied = {str(registry)}
    monkeypatch.setattr(os, "access", lambda p, m, **k: str(p) not in denied and real_access(p, m))
    result = mist(capsys, "models")
    assert_user_error(result, f"MISTNET_MODELS={registry}: this user cannot read the folder")
    denied.clear()

    def read_bytes(path):
        if path.suffix == ".safetensors":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(ValueError, match=f"{NAME}.safetensors: this user cannot read it"):
        mistnet.load(NAME)


def test_a_registry_under_an_unknown_home_is_one_line(capsys, monkeypatch):
    """Before: MISTNET_MODELS='~nosuchuser/m' was an internal error (pathlib's RuntimeError
    "Could not determine home directory"), as MISTNET_DATA had been."""
    monkeypatch.setenv(pretrained.ENV, "~nosuchuser/m")
    result = mist(capsys, "models")
    assert_user_error(result, "MISTNET_MODELS='~nosuchuser/m': Could not determine home")


def test_a_missing_run_is_not_blamed_on_a_bad_registry(capsys, tmp_path, monkeypatch):
    """Before: with MISTNET_MODELS naming a file, `mist eval nosuchrun` (detect, show) said
    "MISTNET_MODELS=afile: not a folder of pretrained models", looking RUN up as a model."""
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv(pretrained.ENV, str(tmp_path / "afile"))
    monkeypatch.chdir(tmp_path)
    for argv in (["eval", "nosuchrun"], ["show", "nosuchrun", "--out", "x.png"]):
        assert_user_error(mist(capsys, *argv), "run directory nosuchrun does not exist")
    # Before: one that cannot even be looked at (a name too long, a folder above it this user
    # cannot enter) was an OSError, said as "File name too long" of the run (and of no
    # variable by `mist models`)
    monkeypatch.setenv(pretrained.ENV, str(tmp_path / ("m" * 300)))
    for argv in (["eval", "nosuchrun"], ["show", "nosuchrun", "--out", "x.png"]):
        assert_user_error(mist(capsys, *argv), "run directory nosuchrun does not exist")
    result = mist(capsys, "models")
    assert_user_error(result, "MISTNET_MODELS='/", "characters): File name too long; set it to")
    # a folder named as a model is none: plot was told "bar is a pretrained model"
    (tmp_path / "reg" / "bar.safetensors").mkdir(parents=True)
    monkeypatch.setenv(pretrained.ENV, str(tmp_path / "reg"))
    result = mist(capsys, "plot", "bar", "--out", "p.png")
    assert_user_error(result, "run directory bar does not exist")
    assert "pretrained" not in result[2]


def test_a_model_s_name_where_a_run_is_read_says_it_is_a_model(capsys, registry, tmp_path):
    """Before: `mist plot NAME`, `models package NAME` said "run directory NAME does not exist"
    and `--set train.init_from=NAME` "checkpoint NAME does not exist", with no word of the
    pretrained model of that name (as `show` and `eval` had been)."""
    said = f"run directory {NAME} does not exist; {NAME} is a pretrained model, which is no run"
    assert_user_error(mist(capsys, "plot", NAME, "--out", tmp_path / "p.png"), said)
    package = ["models", "package", NAME, "--name", "m", "--command", COMMAND]
    assert_user_error(mist(capsys, *package, "--out", tmp_path / "m"), said)
    train = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "r", "--threads", "1"]
    result = mist(capsys, *train, "--set", f"train.init_from={NAME}", "--no-progress")
    file = registry / f"{NAME}.safetensors"
    assert_user_error(result, f"{NAME} is a pretrained model: give its file, {file}")
    assert sorted(tmp_path.iterdir()) == []
    # as told: the file starts a run from the model's weights
    result = mist(capsys, *train, "--set", f"train.init_from={file}", "--set", "train.steps=1")
    assert result[0] == 0, result


def test_packaging_names_a_per_image_k_record_and_a_record_of_other_weights(
    capsys, packaged, tmp_path
):
    """Before: ``--metrics RUN/eval-test-per-image-k.json``, mist eval's own record, was "no
    mist eval record: k is 'per-image', not a count"; a record of other weights at the same
    step and checkpoint name (copied in from a namesake run) was packaged as the run's."""
    run = shutil.copytree(packaged[0], tmp_path / "run")
    assert mist(capsys, "eval", run, "--per-image-k", "--threads", "1")[0] == 0
    package = ["models", "package", run, "--command", COMMAND, "--out", tmp_path / "m"]
    result = mist(capsys, *package, "--name", NAME, "--metrics", run / "eval-test-per-image-k.json")
    assert_user_error(result, "is mist eval's record with each scene's own K (--per-image-k)")
    record = json.loads((run / "eval-test.json").read_text())
    (run / "eval-test.json").write_text(
        json.dumps({**record, "run_dir": str(run), "checkpoint_digest": "sha256:" + "0" * 64})
    )
    result = mist(capsys, *package, "--name", NAME)
    assert_user_error(result, "measured other weights than best.safetensors of", "mist eval")
    assert not (tmp_path / "m").exists()


def test_mist_models_names_a_model_whose_card_is_damaged(capsys, packaged, tmp_path, monkeypatch):
    run, root = packaged
    record = json.loads((run / "eval-test.json").read_text())
    (tmp_path / "m").mkdir()
    pretrained.package(run, "good", COMMAND, tmp_path / "m")
    monkeypatch.setattr(pretrained, "_eval_record", lambda *a: {**record, "metrics": [1]})
    pretrained.package(run, NAME, COMMAND, tmp_path / "m")  # as an older mistnet let it
    monkeypatch.setenv(pretrained.ENV, str(tmp_path / "m"))
    # Before: the whole listing failed on the one damaged file.
    code, out, err = mist(capsys, "models")
    assert code == 0 and out.startswith("good: ") and NAME not in out
    assert f"warning: {NAME}: not listed" in err and "its model card is damaged" in err
    with pytest.raises(ValueError, match="metrics is list"):
        mistnet.load(NAME)
    monkeypatch.setenv(pretrained.ENV, str(tmp_path / "nowhere"))  # was "no pretrained models"
    assert_user_error(mist(capsys, "models"), "nowhere: no such folder of pretrained models")
    # Before: a file or FIFO there was "no such folder"
    monkeypatch.setenv(pretrained.ENV, str(tmp_path / "m" / "good.safetensors"))
    assert_user_error(mist(capsys, "models"), "good.safetensors: not a folder of pretrained")
    # Before: every model damaged, the warnings alone and nothing on stdout (exit 0)
    (tmp_path / "m" / "good.safetensors").unlink()
    monkeypatch.setenv(pretrained.ENV, str(tmp_path / "m"))
    code, out, err = mist(capsys, "models")
    assert code == 0 and out.startswith("no usable pretrained models in ") and NAME in err


def test_mist_models_names_a_model_whose_command_holds_a_newline(
    capsys, packaged, tmp_path, monkeypatch
):
    run, _ = packaged
    monkeypatch.setattr(pretrained, "printable", lambda text, *a: text)  # as an older mistnet
    (tmp_path / "m").mkdir()
    pretrained.package(run, NAME, "x\ny", tmp_path / "m")
    monkeypatch.setenv(pretrained.ENV, str(tmp_path / "m"))
    assert_not_listed(mist(capsys, "models"), f"{NAME}.safetensors: its model card is damaged")
    with pytest.raises(ValueError, match="command 'x\\\\ny' holds a control character"):
        mistnet.load(NAME)


SHARED_MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"full MNIST not found at {SHARED_MNIST}")
@pytest.mark.parametrize("name", pretrained.names())
def test_a_shipped_model_reproduces_its_card_on_data_its_card_remakes(
    capsys, tmp_path, monkeypatch, name
):
    """The package's own models (not a test registry): the `mist data make` of the card's
    command, with a token training split (the test split does not depend on it), gives the
    test scenes on which `mist eval --model` reproduces the card's metrics."""
    monkeypatch.delenv(pretrained.ENV, raising=False)
    card = pretrained.read(name)[1]
    assert mist(capsys, "data", "download", "mnist", "--from", SHARED_MNIST)[0] == 0
    [make] = [c for c in card.command.split(" && ") if c.startswith("mist data make ")]
    argv = make.split()[1:]
    assert argv[argv.index("--out") + 1] == card.evaluated_on["data"]
    argv[argv.index("--out") + 1] = str(tmp_path / "data")
    sizes = {s: int(argv[argv.index(f"--n-{s}") + 1]) for s in ("train", "val", "test")}
    argv[argv.index("--n-train") + 1] = "8"
    argv[argv.index("--n-val") + 1] = "8"
    assert mist(capsys, *argv)[0] == 0
    # the model records the dataset the card's command makes: the same manifest, but sizes
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    manifest["splits"] = sizes
    assert pretrained.load(name)[0].record.data_manifest == manifest_digest(manifest)
    out = tmp_path / "eval.json"
    split = ["--split", card.evaluated_on["split"]]
    rc, _, err = mist(
        capsys, "eval", "--model", name, "--data", tmp_path / "data", *split, "--json", out
    )
    assert rc == 0, err
    got = json.loads(out.read_text())
    assert got["images"] == card.evaluated_on["images"]
    assert got["metrics"] == pytest.approx(card.metrics, abs=1e-4)


@pytest.mark.parametrize("name", pretrained.names())
def test_a_shipped_model_records_the_dataset_its_card_names(monkeypatch, name):
    """Before: the stored config named /work/pre/mnist-hard-full, a folder of the machine
    that trained the models, while the card's commands make and train on another; `mist eval
    --model` without --data named the former. And it said embedded digits and 500 test scenes
    (an older version's record): `--data mnist-hard` drew scenes of embedded digits, which the
    models trained on, and a folder of other options at the recorded path was scored."""
    monkeypatch.delenv(pretrained.ENV, raising=False)
    cfg = pretrained.load(name)[0]
    card = pretrained.read(name)[1]
    [train] = [c for c in card.command.split(" && ") if c.startswith("mist train ")]
    argv = train.split()
    assert cfg.data.path == card.evaluated_on["data"] == argv[argv.index("--data") + 1]
    [make] = [c for c in card.command.split(" && ") if c.startswith("mist data make ")]
    argv = make.split()
    assert cfg.data.name == argv[3] == cfg.record.data_made_by
    for option, value in [("--digits", cfg.data.digits), ("--seed", str(cfg.data.seed))] + [
        (f"--n-{s}", str(getattr(cfg.data, f"n_{s}"))) for s in ("train", "val", "test")
    ]:
        assert argv[argv.index(option) + 1] == value, option


def test_a_model_records_a_dataset_under_the_working_directory_as_its_card_names_it(
    capsys, tmp_path, monkeypatch
):
    """Before: ``models package`` (so ``make pretrained``) stored the absolute path of the
    packaging machine's dataset, in the config and the card, where the card's commands name
    ``pretrained-work/...`` from the working directory."""
    monkeypatch.chdir(tmp_path)
    data = Path("work") / "d"
    sizes = ["--n-train", "8", "--n-val", "4", "--n-test", "4"]
    assert mist(capsys, "data", "make", "mnist-hard", "--out", data, *sizes)[0] == 0
    train = ["train", "--preset", "tiny-cpu", "--data", data, "--out", "work/r", "--threads", "1"]
    assert mist(capsys, *train, "--set", "train.steps=2", "--no-progress")[0] == 0
    assert mist(capsys, "eval", "work/r", "--threads", "1")[0] == 0
    package = ["models", "package", "work/r", "--name", "m", "--command", COMMAND, "--out", "M"]
    assert mist(capsys, *package)[0] == 0
    monkeypatch.setenv(pretrained.ENV, str(tmp_path / "M"))
    assert pretrained.load("m")[0].data.path == str(data)
    assert pretrained.read("m")[1].evaluated_on["data"] == str(data)
    # Before: packaged from inside the dataset, it was stored as "." (the card: "on .")
    monkeypatch.chdir(data)
    package[2], package[-1] = str(tmp_path / "work" / "r"), str(tmp_path / "M2")
    assert mist(capsys, *package)[0] == 0
    monkeypatch.setenv(pretrained.ENV, str(tmp_path / "M2"))
    assert pretrained.load("m")[0].data.path == str(tmp_path / data)
    assert pretrained.read("m")[1].evaluated_on["data"] == str(tmp_path / data)


def test_package_and_pretrained_load_check_their_arguments(packaged, tmp_path, monkeypatch):
    """Before: package(out="") wrote into the working directory, overwrite="no" replaced a
    model, command=None an AttributeError; pretrained.load(device="gpu") torch's error."""
    run = packaged[0]
    monkeypatch.chdir(tmp_path)
    for kwargs, error, message in [
        ({"out": ""}, ValueError, "out '' is an empty path"),
        ({"run": ""}, ValueError, "run '' is an empty path"),
        ({"overwrite": "no"}, TypeError, "overwrite must be True or False, got 'no'"),
        ({"command": None}, TypeError, "command must be a string, got NoneType"),
        ({"name": 5}, TypeError, "name must be a string, got int"),
    ]:
        call = {"run": run, "name": NAME, "command": COMMAND, "out": tmp_path / "o", **kwargs}
        with pytest.raises(error, match=message):
            pretrained.package(**call)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="device must be cpu, cuda, cuda:N or auto, got 'gpu'"):
        pretrained.load_any(run, device="gpu")


def test_a_model_packaged_under_the_same_name_meanwhile_is_kept(packaged, tmp_path, monkeypatch):
    """Before: two ``mist models package`` of one name without ``--overwrite`` both passed the
    check that the name was free; the second write replaced the first's model."""
    run = packaged[0]
    first = pretrained.package(run, "raced", "mist train --out THE-OTHER", tmp_path)
    kept = first.read_bytes()  # its card differs from the one this call would write
    first.rename(tmp_path / "aside")
    real_save = pretrained.save_checkpoint

    def other_process_first(path, *args, **kwargs):  # the other package lands after the check
        (tmp_path / "aside").rename(path)
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(pretrained, "save_checkpoint", other_process_first)
    with pytest.raises(MistError, match="raced.safetensors: exists; it is left as it is"):
        pretrained.package(run, "raced", COMMAND, tmp_path)
    assert first.read_bytes() == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raced.safetensors"]


def test_package_refuses_metrics_that_are_no_path_or_empty(packaged, tmp_path, monkeypatch):
    """Before: metrics=5 raised "expected str, bytes or os.PathLike object, not int" and
    metrics=b"x" "argument should be a str object ...", naming no argument; metrics="" was
    taken as RUN/eval-test.json."""
    run = packaged[0]
    monkeypatch.chdir(tmp_path)
    for metrics, error, message in [
        (5, TypeError, "^metrics must be a path as text, got int$"),
        (b"x", TypeError, "^metrics must be a path as text, got bytes$"),
        ("", ValueError, "^metrics '' is an empty path; give mist eval's record"),
    ]:
        with pytest.raises(error, match=message):
            pretrained.package(run, NAME, COMMAND, tmp_path / "o", metrics=metrics)
    assert list(tmp_path.iterdir()) == []


def test_load_any_says_which_must_be_best_or_last_for_a_pretrained_name(registry):
    """Before: load_any(NAME, which="bset") said "the pretrained model ... has one checkpoint
    (the run's best); leave which out", as if "bset" were a checkpoint."""
    for source in (NAME, registry / "run"):
        with pytest.raises(ValueError, match=r"^which must be 'best' or 'last', got 'bset'$"):
            pretrained.load_any(source, which="bset")
    with pytest.raises(ValueError, match="has one checkpoint"):  # a valid which: still said
        pretrained.load_any(NAME, which="last")


def test_detect_refuses_a_run_directory_with_model(capsys, registry, tmp_path):
    """Before: ``mist detect --model NAME RUN IMAGE`` took RUN for an image and said
    "RUN: a directory, not a regular file"; now it says, as ``mist eval`` does, that RUN and
    ``--model`` exclude each other."""
    run, image, out = registry / "run", _scenes(tmp_path)[0], tmp_path / "d"
    result = mist(capsys, "detect", "--model", NAME, run, image, "--out", out)
    assert_user_error(result, "give a run directory RUN or --model NAME (both given)")
    assert "not a regular file" not in result[2] and not out.exists()


def test_the_models_folder_of_the_environment_may_start_with_a_tilde(packaged, monkeypatch):
    """Before: MISTNET_MODELS='~/models' was "no such folder of pretrained models" (the
    tilde not expanded, as it is in MISTNET_DATA)."""
    monkeypatch.setenv("HOME", str(packaged[1].parent))
    monkeypatch.setenv(pretrained.ENV, f"~/{packaged[1].name}")
    assert pretrained.registry() == packaged[1] and NAME in pretrained.names()


def test_a_packaged_model_file_given_as_a_run_says_how_to_use_it_by_name(
    capsys, registry, packaged
):
    """Before: "models/m.safetensors is a file; give the run directory (models)", then, given
    that, "models is not a mistnet run (no config.json)": advice in a circle."""
    path = registry / f"{NAME}.safetensors"
    hint = f"a packaged model is used by name: MISTNET_MODELS={registry}, then mist eval or "
    hint += f"detect --model {NAME}"
    assert_user_error(mist(capsys, "eval", path), hint)
    with pytest.raises(ValueError, match=re.escape(hint)):
        mistnet.load(path)
    (registry / "notes.txt").write_text("mine")  # no model: no such hint
    result = mist(capsys, "eval", registry / "notes.txt")
    assert_user_error(result, "notes.txt is a file, not a run directory")
    assert "packaged" not in result[2]
    # Before: any checkpoint was told to go by name, which then said "no model card"
    loose = shutil.copy(packaged[0] / "best.safetensors", registry / "mine.safetensors")
    result = mist(capsys, "eval", loose)
    assert_user_error(result, "is a file, not a run directory; a checkpoint is read from its run")
    assert "packaged" not in result[2]
    # Before: a packaged model under a name --model cannot take was "read from its run directory"
    odd = shutil.copy(path, registry / "My_Model.safetensors")
    result = mist(capsys, "eval", odd)
    assert_user_error(result, "a packaged model is used by name, and 'My_Model' is none")


def test_a_folder_named_like_a_model_says_it_hides_the_model(
    capsys, registry, monkeypatch, tmp_path
):
    """Before: ``mistnet.load(NAME)`` beside a folder of that name (detect's output, say) said
    "NAME is not a mistnet run (no config.json)", never that the model was there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / NAME).mkdir()
    hint = f"{NAME} is not a mistnet run (no config.json); this folder hides the pretrained model"
    with pytest.raises(ValueError, match=re.escape(hint)):
        mistnet.load(NAME)
    assert_user_error(mist(capsys, "eval", NAME), hint, "--model NAME")
    (tmp_path / "other").mkdir()  # no model of that name: no such hint
    with pytest.raises(ValueError, match=r"other is not a mistnet run \(no config.json\)$"):
        mistnet.load("other")


def test_eval_of_a_shipped_model_without_data_says_its_data_is_not_here(
    capsys, monkeypatch, tmp_path
):
    """Before: "the run's dataset /work/pre/... (data.path) does not exist": a folder of the
    machine that trained the model, named as if it were the user's run."""
    monkeypatch.delenv(pretrained.ENV, raising=False)  # the models mistnet ships
    monkeypatch.chdir(tmp_path)  # the recorded folder is relative: not here
    name = "mnist-hard-classifier"
    recorded = pretrained.load(name)[0].data.path
    if not recorded or Path(recorded).is_dir():
        pytest.skip(f"{name} records no dataset folder, or it is on this machine")
    assert_user_error(
        mist(capsys, "eval", "--model", name),
        f"{name}: the dataset it was trained on ({recorded}) is not here (the path is relative "
        "to the folder the model was packaged in)",
        "--data DIR",
        "mist models",
    )


def test_eval_of_a_shipped_model_refuses_other_data_at_its_recorded_folder(
    capsys, monkeypatch, tmp_path
):
    """Before: a folder of other options (embedded digits, 4 test scenes) at the path the
    model records was scored as if it were the card's data, without a word."""
    monkeypatch.delenv(pretrained.ENV, raising=False)
    name = "mnist-hard-classifier"
    monkeypatch.chdir(tmp_path)
    recorded = pretrained.load(name)[0].data.path
    make = ["data", "make", "mnist-hard", "--out", recorded, "--n-train", "1", "--n-val", "1"]
    assert mist(capsys, *make, "--n-test", "4")[0] == 0
    assert_user_error(
        mist(capsys, "eval", "--model", name),
        f"{recorded}: its manifest.json is not that of the dataset",
        "--data DIR",
    )


def test_a_run_folder_named_like_a_model_and_the_model_keep_their_own_records(
    capsys, registry, packaged, tmp_path, monkeypatch
):
    """Before: with a run folder called NAME in the working directory, ``eval --model NAME
    --json m.json`` replaced the run's record with the model's, and the reverse: the record's
    ``run`` was compared as a name."""
    shutil.copytree(packaged[0], tmp_path / NAME)
    monkeypatch.chdir(tmp_path)
    for first, second, whose in [
        (["--model", NAME], [NAME], f"(it is the record of the pretrained model {NAME})"),
        ([NAME], ["--model", NAME], f"(it is the record of {tmp_path / NAME})"),
    ]:
        Path("m.json").unlink(missing_ok=True)
        assert mist(capsys, "eval", *first, "--json", "m.json", "--threads", "1")[0] == 0
        before = Path("m.json").read_bytes()
        result = mist(capsys, "eval", *second, "--json", "m.json", "--threads", "1")
        assert_user_error(result, "m.json: exists and is not a metrics file of mist eval", whose)
        assert Path("m.json").read_bytes() == before
        assert mist(capsys, "eval", *first, "--json", "m.json", "--threads", "1")[0] == 0
