"""The paths of a run's config.json: written so that they resolve the same from any directory."""

import json

from mistnet.config import Config, load_json
from mistnet.markers import mark
from mistnet.runpaths import stored


def _cfg(data: str = "", init: str = "") -> Config:
    cfg = Config()
    cfg.data.path, cfg.train.init_from = data, init
    return cfg


def _dataset(path):
    path.mkdir(parents=True)
    (path / "manifest.json").write_text("{}")
    return path


def test_a_path_beside_the_run_is_written_relative_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder in ("demo1/data", "demo1/old", "elsewhere/ds"):
        (tmp_path / folder).mkdir(parents=True)
    cfg = stored(_cfg("demo1/data", "demo1/old"), "demo1/run")
    assert (cfg.data.path, cfg.train.init_from) == ("../data", "../old")
    away = stored(_cfg("elsewhere/ds"), "demo1/run")  # not in the run's parent folder
    assert away.data.path == str(tmp_path / "elsewhere" / "ds")
    assert stored(_cfg("mnist-hard"), "demo1/run").data.path == "mnist-hard"  # no folder


def test_a_path_inside_the_reproduction_that_holds_the_run_is_written_relative(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    _dataset(tmp_path / "rp" / "data" / "ds")
    run = "rp/table2/mist/seed0"
    assert stored(_cfg("rp/data/ds"), run).data.path == str(tmp_path / "rp" / "data" / "ds")
    mark(tmp_path / "rp", "reproduce")  # now the run lies in a reproduction
    assert stored(_cfg("rp/data/ds"), run).data.path == "../../../data/ds"


def test_a_relative_path_is_read_from_the_run_directory(tmp_path, monkeypatch):
    data, run = _dataset(tmp_path / "demo" / "data"), tmp_path / "demo" / "run"
    run.mkdir()
    (run / "config.json").write_text(_cfg("../data").to_json())
    monkeypatch.chdir(run)  # anywhere: the working directory plays no part
    assert load_json(run / "config.json").data.path == str(data)


def test_a_run_of_an_older_version_is_read_from_the_working_directory(tmp_path, monkeypatch):
    """Written relative to where `mist train` ran: found there, and only when a dataset is."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(_cfg("ds").to_json())
    monkeypatch.chdir(tmp_path)
    assert load_json(run / "config.json").data.path == str(run / "ds")  # no dataset: named
    (tmp_path / "ds").mkdir()
    assert load_json(run / "config.json").data.path == str(run / "ds")  # a folder, no dataset
    (tmp_path / "ds" / "manifest.json").write_text("{}")
    assert load_json(run / "config.json").data.path == str(tmp_path / "ds")


def test_stored_then_resolved_is_the_same_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _dataset(tmp_path / "w" / "ds")
    (tmp_path / "w" / "run").mkdir()
    text = stored(_cfg("w/ds", "/abs/run"), "w/run").to_json()
    assert json.loads(text)["data"]["path"] == "../ds"
    (tmp_path / "w" / "run" / "config.json").write_text(text)
    monkeypatch.chdir(tmp_path / "w" / "run")
    cfg = load_json("config.json")
    assert (cfg.data.path, cfg.train.init_from) == (str(data), "/abs/run")


def test_the_settings_processes_compare_leave_out_where_each_keeps_its_data():
    """Under torchrun the processes compare :func:`shared_settings` (two machines may keep one
    dataset at other paths, its manifest's digest in ``record`` naming the content, and choose
    their own ``data.workers``)."""
    from mistnet.config import apply_overrides, load_preset
    from mistnet.runpaths import shared_settings

    def made(*settings: str):  # apply_overrides changes the config it is given
        return apply_overrides(load_preset("tiny-cpu"), list(settings))

    here = shared_settings(made("data.path=/a/ds", "train.init_from=/a/run"))
    there = shared_settings(made("data.path=../b/ds", "train.init_from=run", "data.workers=2"))
    assert here == there and here["data.path"] == '"(a folder)"' and "data.workers" not in here
    generated = shared_settings(made("train.init_from=/a/run"))  # no data.path: the same keys
    assert sorted(generated) == sorted(here) and generated["data.path"] == '""'
    for other in ("train.lr_task=0.123", "data.digits=mnist", "data.seed=3"):
        changed = shared_settings(made("data.path=/a/ds", "train.init_from=/a/run", other))
        assert [k for k in here if changed[k] != here[k]] == [other.split("=")[0]], other
    recorded = made("data.path=/a/ds", "train.init_from=/a/run")
    recorded.record.data_manifest = "sha256:" + "1" * 64
    assert shared_settings(recorded)["record.data_manifest"] != here["record.data_manifest"]
