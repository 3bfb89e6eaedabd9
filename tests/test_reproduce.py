"""``mist reproduce``: every table end to end on the smoke budget (one shared output directory),
the paper's numbers beside ours, results equal to ``mist eval``, skipping finished runs, resuming
interrupted ones, Table 4 without SVHN, and the error paths."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_user_error, entries_under, mist, subprocess_env
from helpers import fill_small_mnist_cache

from mistnet import cli
from mistnet.errors import MistError
from mistnet.reproduce import TABLE_NAMES, TABLES, report
from mistnet.reproduce.paper import PAPER
from mistnet.reproduce.plan import BUDGETS, PaperOnly

HERE = Path(__file__).resolve().parent


def _write_digit_struct():
    """The ``digitStruct.mat`` writer of tests/data/test_svhn.py (h5py, MATLAB v7.3 layout)."""
    spec = importlib.util.spec_from_file_location("_svhn_test_helpers", HERE / "data/test_svhn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # skips the caller when h5py is missing
    return module.write_digit_struct


def make_svhn(root: Path) -> Path:
    """A tiny SVHN format-1 tree: 40 two-digit train pictures, 6 test pictures (5 kept)."""
    from PIL import Image

    write = _write_digit_struct()
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 6)):
        d = root / split
        d.mkdir(parents=True)
        pictures = []
        for i in range(n):
            name = f"{i + 1}.png"
            Image.fromarray(rng.integers(0, 256, (50, 100, 3), dtype=np.uint8)).save(d / name)
            tall = 20 if (split == "test" and i == 5) else 30  # 20 px -> 24 px: filtered out
            boxes = [
                dict(left=10 + i % 7, top=8, width=20, height=tall, label=1 + i % 10),
                dict(left=50, top=6, width=22, height=34, label=1 + (3 * i) % 10),
            ]
            pictures.append((name, boxes))
        write(d / "digitStruct.mat", pictures)
    return root


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """``mist reproduce all --budget smoke`` once, with the SVHN fixture; shared by the tests."""
    base = tmp_path_factory.mktemp("reproduce")
    svhn = make_svhn(base / "svhn")
    out = base / "out"
    argv = ["reproduce", "all", "--budget", "smoke", "--out", str(out), "--device", "cpu"]
    argv += ["--svhn", str(svhn)]
    assert cli.main(argv) == 0
    return {"out": out, "svhn": svhn, "argv": argv}


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_every_table_runs_and_has_its_files(smoke):
    out = smoke["out"]
    doc = _results(out)
    assert doc["format"] == "mistnet-reproduce" and doc["budget"] == "smoke"
    assert set(doc["tables"]) == set(TABLE_NAMES)
    # Before: OUT/.lock and the data root's .lock stayed after the reproduction had finished.
    assert not (out / ".lock").exists() and not (out / "data" / ".lock").exists()
    for name in TABLE_NAMES:
        assert (out / f"{name}.md").is_file()
        entry = doc["tables"][name]
        assert entry["budget"] == "smoke" and entry["seeds"] == [0] and entry["device"] == "cpu"
        assert entry["digits"] == {"source": "embedded", "train": 4000, "val": 500, "test": 500}
        assert "- **digits**: embedded (4,000 / 500 / 500 train" in (out / f"{name}.md").read_text()
        for row in TABLES[name].runs():
            run = out / name / row.key / "seed0"
            for f in ("eval.json", "config.json", "best.safetensors", "log.jsonl"):
                assert (run / f).is_file(), run / f
        assert entry["figures"], name
        for fig in entry["figures"]:
            assert (out / fig["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        report.check_own_files(out, name)  # a rerun takes its table and figures for its own
    # data made once per (generator, budget, seed) and shared: Table 1, 2 and 3 use one mnist-hard
    hard = {
        json.loads((out / "table1/mnist-hard-mist/seed0/eval.json").read_text())["data"],
        json.loads((out / "table2/mist/seed0/eval.json").read_text())["data"],
        json.loads((out / "table3/k9/seed0/eval.json").read_text())["data"],
    }
    assert hard == {str(out / "data/smoke/mnist-hard-seed0")}


@pytest.mark.slow
def test_results_hold_the_paper_numbers_and_valid_ours(smoke):
    doc = _results(smoke["out"])
    for name, table in doc["tables"].items():
        for row in table["rows"]:
            key = row["key"].split("/")[0]
            if "/" not in row["key"]:
                assert row["paper"] == PAPER.get(name, {}).get(key, {}), row["key"]
            if row["status"] != "run":
                continue
            assert row["steps"] == [4]
            for metric, stats in row["ours"].items():
                v = stats["mean"]
                assert v is not None and math.isfinite(v), (name, row["key"], metric)
                assert stats["values"] == [v] and stats["std"] is None
                if metric == "rmse":
                    assert 0.0 <= v < 2.0
                else:
                    assert 0.0 <= v <= 1.0, (name, row["key"], metric, v)
            m = row["all_metrics"][0]
            if "both" in m:
                assert m["both"] <= min(m["det_iou50"], m["classif"]) + 1e-9
    t2 = {r["key"]: r for r in doc["tables"]["table2"]["rows"]}
    assert t2["official-layout"]["official_roundtrip_identical"] is True
    # same data (round trip exact), same seed, CPU: the official-layout run is the MIST run
    assert t2["official-layout"]["ours"] == t2["mist"]["ours"]
    assert {"uneven", "uneven/right", "uneven/even"} <= set(t2)
    t1 = {r["key"]: r for r in doc["tables"]["table1"]["rows"]}
    assert t1["mnist-hard-air"]["status"] == "paper only"
    assert t1["mnist-hard-air"]["paper"] == {"rmse": 0.154}


@pytest.mark.slow
def test_markdown_shows_paper_and_ours(smoke):
    out = smoke["out"]
    doc = _results(out)
    md1 = (out / "table1.md").read_text()
    assert "mist reproduce all --budget smoke" in md1 and "**budget**: smoke" in md1
    for paper in ("0.038", "0.039", "0.042", "0.100", "0.169", "0.053", "0.062", "0.128"):
        assert f"| {paper} |" in md1
    assert md1.count("from the paper (not run)") == 4
    ours = doc["tables"]["table1"]["rows"][0]["ours"]["rmse"]["mean"]
    assert f"| 0.038 | {ours:.4f} |" in md1
    md2 = (out / "table2.md").read_text()
    for cell in ("| 97.8% |", "| 25.4% |", "| 99.6% |", "| 98.8% |", "| 24.8% |"):
        assert cell in md2
    assert "uneven layout" in md2 and "official MIST layout" in md2
    mist = doc["tables"]["table2"]["rows"][0]["ours"]
    assert f"| 97.8% | {100 * mist['det_iou50']['mean']:.1f}% |" in md2
    md3 = (out / "table3.md").read_text()
    for cell in ("| 92.2% |", "| 90.1% |", "| 90.8% |"):
        assert cell in md3
    md4 = (out / "table4.md").read_text()
    for cell in ("| 82.6% |", "| 4.2% |", "| 65.6% |", "| 11.0% |"):
        assert cell in md4
    assert "not run" not in md4
    mdg = (out / "gabor.md").read_text()
    assert "| 0.095 |" in mdg and "impulses found" in mdg
    # the command line and wall time of every run are there
    assert re.search(
        r"\| MNIST easy · MIST \| RMSE \| 0\.038 \| [0-9.]+ \| 1 \| 4 \| cpu \| \d+ s \|", md1
    )
    assert "mist train --preset mnist-hard-cpu" in md2 and "--per-image-k" in md3


@pytest.mark.slow
def test_results_equal_mist_eval(smoke, capsys, tmp_path):
    out = smoke["out"]
    rows = {(t, r["key"]): r for t, e in _results(out)["tables"].items() for r in e["rows"]}
    for table, key, metric in (("table3", "k6to9", "ap50"), ("table1", "mnist-easy-grid", "rmse")):
        run = out / table / key / "seed0"
        record = json.loads((run / "eval.json").read_text())
        argv = ["eval", run, "--data", record["data"], "--json", tmp_path / f"{key}.json"]
        argv += ["--device", "cpu"] + (["--per-image-k"] if record["k"] == "per-image" else [])
        rc, _, err = mist(capsys, *argv)
        assert rc == 0, err
        again = json.loads((tmp_path / f"{key}.json").read_text())
        assert again["metrics"] == record["metrics"]
        assert again["step"] == record["step"] and again["k"] == record["k"]
        assert rows[(table, key)]["ours"][metric]["mean"] == again["metrics"][metric]


@pytest.mark.slow
def test_extra_metrics_table4_and_gabor(smoke):
    out = smoke["out"]
    record = json.loads((out / "table4/mist/seed0/eval.json").read_text())
    assert set(record["extra"]) == {"ap00", "ap50", "ap60", "ap70", "ap80", "ap90"}
    assert record["extra"]["ap50"] == pytest.approx(record["metrics"]["ap50"])  # two meters agree
    assert record["images"] == 5  # the SVHN test filter dropped the short-box picture
    aps = [record["extra"][k] for k in ("ap50", "ap60", "ap70", "ap80", "ap90")]
    assert all(a >= b for a, b in zip(aps, aps[1:], strict=False))  # stricter IoU, fewer matches
    gabor = json.loads((out / "gabor/gabor-mist/seed0/eval.json").read_text())
    for key in ("impulses_found", "impulses_found_image_maxima"):
        assert 0.0 <= gabor["extra"][key] <= 1.0


@pytest.mark.slow
def test_rerun_skips_finished_runs(smoke, capsys):
    out = smoke["out"]
    ckpts = sorted(out.glob("*/*/seed0/last.safetensors"))
    assert len(ckpts) == sum(len(TABLES[t].runs()) for t in TABLE_NAMES)
    before = {p: p.stat().st_mtime_ns for p in ckpts}
    evals = {p: p.read_text() for p in out.glob("*/*/seed0/eval.json")}
    rc, stdout, err = mist(capsys, *smoke["argv"], "--no-figures")
    assert rc == 0, err
    assert stdout.count("skipped") == len(ckpts)
    assert "training" not in stdout and "data:" not in stdout
    assert {p: p.stat().st_mtime_ns for p in ckpts} == before
    assert {p: p.read_text() for p in evals} == evals


@pytest.mark.slow
def test_interrupted_run_is_resumed(smoke, capsys):
    """A run directory without eval.json continues from last.safetensors to the same steps."""
    out = smoke["out"]
    run = out / "table3" / "k9" / "seed0"
    (run / "eval.json").unlink()
    (run / "summary.json").unlink()  # as if killed during training, after its last checkpoint
    rc, stdout, err = mist(
        capsys, "reproduce", "table3", "--budget", "smoke", "--out", out, "--device", "cpu",
        "--no-figures",
    )  # fmt: skip
    assert rc == 0, err
    assert "resuming the interrupted run" in stdout
    assert stdout.count("skipped") == len(TABLES["table3"].runs()) - 1
    record = json.loads((run / "eval.json").read_text())
    assert record["train"]["steps"] == 4


_KILLED_BEFORE_LAST = """
import os, sys
from mistnet import cli, loop
snapshot = loop.Session.snapshot
def dies_at_last(self, path):
    if path.name == "last.safetensors":
        os._exit(9)  # as a SIGKILL: best.safetensors written, last not yet
    snapshot(self, path)
loop.Session.snapshot = dies_at_last
cli.main(sys.argv[1:])
"""


def test_a_run_killed_between_its_best_and_last_checkpoints_is_resumed(tmp_path, capsys):
    """Before: ``reproduce`` killed after a run's first ``best.safetensors`` and before its
    ``last.safetensors`` could never go on: "already holds a run; use --resume or another
    --out", an option reproduce does not have."""
    argv = ["reproduce", "gabor", "--budget", "smoke", "--device", "cpu", "--no-figures"]
    argv += ["--threads", "1", "--out", str(tmp_path / "rp")]
    env = subprocess_env()
    killed = subprocess.run([sys.executable, "-c", _KILLED_BEFORE_LAST, *argv], env=env)
    assert killed.returncode == 9
    run = tmp_path / "rp" / "gabor" / "gabor-mist" / "seed0"
    assert (run / "best.safetensors").is_file() and not (run / "last.safetensors").exists()
    rc, stdout, err = mist(capsys, *argv)
    assert rc == 0, err
    assert "resuming the interrupted run" in stdout
    assert json.loads((run / "eval.json").read_text())["train"]["steps"] == 4


def test_a_run_that_cannot_resume_is_told_in_reproduces_terms(tmp_path, capsys):
    """Before: a reproduction's interrupted run whose log was lost said "start a new run from
    these weights (--set train.init_from=RUN)", an option reproduce does not have."""
    argv = ["reproduce", "gabor", "--budget", "smoke", "--device", "cpu", "--no-figures"]
    argv += ["--threads", "1", "--out", str(tmp_path / "rp")]
    assert mist(capsys, *argv)[0] == 0
    run = tmp_path / "rp" / "gabor" / "gabor-mist" / "seed0"
    (run / "eval.json").unlink()
    (run / "summary.json").unlink()  # as if killed during training, after its last checkpoint
    (run / "log.jsonl").write_text("")
    kept = {p: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = mist(capsys, *argv)
    assert_user_error(
        result, "log.jsonl is missing or empty", f"or move {run} away to have it trained again"
    )
    assert "--set" not in result[2] and "--out" not in result[2]
    assert {p: p.read_bytes() for p in run.iterdir() if p.is_file()} == kept


def test_a_run_trained_on_by_hand_is_refused_not_reported(tmp_path, capsys):
    # Before: its eval.json of the plan's steps was reported while best.safetensors was of
    # the steps trained on by hand.
    argv = ["reproduce", "gabor", "--budget", "smoke", "--device", "cpu", "--no-figures"]
    argv += ["--out", tmp_path / "rp"]
    assert mist(capsys, *argv)[0] == 0
    run = next((tmp_path / "rp").glob("**/seed0"))
    steps = json.loads((run / "config.json").read_text())["train"]["steps"]
    further = ["train", "--out", run, "--resume", "--set", f"train.steps={steps + 2}"]
    assert mist(capsys, *further, "--no-progress")[0] == 0
    result = mist(capsys, *argv)
    assert_user_error(result, f"{run}: trained on since", f"the plan's {steps}")


def test_a_moved_reproduction_continues_without_retraining(tmp_path, capsys, monkeypatch):
    """The data inside OUT is fingerprinted relative to OUT (here given relative to the working
    directory, too): a reproduction moved elsewhere skips its finished run and resumes its
    interrupted one."""
    monkeypatch.chdir(tmp_path)
    argv = ["reproduce", "gabor", "--budget", "smoke", "--device", "cpu", "--no-figures"]
    assert mist(capsys, *argv, "--out", "a/rp")[0] == 0
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "rp").rename(tmp_path / "b" / "moved")
    run = tmp_path / "b" / "moved" / "gabor" / "gabor-mist" / "seed0"
    checkpoints = {p: p.read_bytes() for p in run.glob("*.safetensors")}
    rc, stdout, err = mist(capsys, *argv, "--out", "b/moved")
    assert rc == 0, err
    assert "skipped" in stdout and "training" not in stdout and "data:" not in stdout
    assert {p: p.read_bytes() for p in run.glob("*.safetensors")} == checkpoints
    # Before: the table and results.json named a/rp's run, data and commands
    report = (tmp_path / "b" / "moved" / "gabor.md").read_text()
    report += (tmp_path / "b" / "moved" / "results.json").read_text()
    assert "a/rp" not in report and str(tmp_path / "a") not in report
    assert "b/moved/gabor/gabor-mist/seed0" in report
    # ... with the threads it was trained with (the command rebuilt took this rerun's)
    assert mist(capsys, *argv, "--out", "b/moved", "--threads", "2")[0] == 0
    report = (tmp_path / "b" / "moved" / "gabor.md").read_text()
    trains = [line for line in report.splitlines() if line.startswith("mist train ")]
    assert trains and not any("--threads 2" in line for line in trains), trains
    (run / "eval.json").unlink()
    (run / "summary.json").unlink()  # as if killed after its last checkpoint
    (tmp_path / "b" / "moved").rename(tmp_path / "c")
    rc, stdout, err = mist(capsys, *argv, "--out", tmp_path / "c")
    assert rc == 0, err
    assert "resuming the interrupted run" in stdout and "data:" not in stdout


def test_table4_without_svhn_says_not_run(tmp_path, capsys):
    rc, stdout, err = mist(
        capsys, "reproduce", "table4", "--budget", "smoke", "--out", tmp_path, "--device", "cpu"
    )
    assert rc == 0, err
    md = (tmp_path / "table4.md").read_text()
    assert md.count("not run: SVHN not available") == 2 * 6  # two columns, six thresholds
    assert "| 76.5% |" in md  # the paper's numbers are still shown
    rows = _results(tmp_path)["tables"]["table4"]["rows"]
    assert all(r["status"].startswith("not run: SVHN not available") for r in rows)
    assert not (tmp_path / "table4").exists()


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    base = ["--budget", "smoke", "--device", "cpu"]
    assert_user_error(
        mist(capsys, "reproduce", "table9", *base, "--out", tmp_path / "a"),
        "unknown table 'table9'",
    )
    assert_user_error(
        mist(capsys, "reproduce", "table1", "--budget", "huge", "--out", tmp_path / "a"),
        "unknown budget 'huge'",
    )
    for seeds in ("0", "100000"):
        assert_user_error(
            mist(capsys, "reproduce", "table1", *base, "--out", tmp_path / "a", "--seeds", seeds),
            f"--seeds must be from 1 to 100 (each seed trains the whole table again), got {seeds}",
        )
    assert_user_error(
        mist(capsys, "reproduce", "table1", *base, "--out", tmp_path / "a", "--threads", "-1"),
        "--threads must be 0 (torch's choice) or more",
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(
        mist(capsys, "reproduce", "table1", *base, "--out", blocker / "sub"),
        f"{blocker} is not a directory",
    )
    assert_user_error(
        mist(
            capsys,
            "reproduce",
            "table4",
            *base,
            "--out",
            tmp_path / "b",
            "--svhn",
            tmp_path / "none",
        ),
        "--svhn",
        "no such directory",
    )
    demo = tmp_path / "demo"  # before: "--data-root demo/data is the dataset demo/data"
    demo.mkdir()
    (demo / ".mistnet").write_text("demo\n")
    (demo / "data").mkdir()
    (demo / "data" / ".mistnet").write_text("dataset\n")
    assert_user_error(
        mist(capsys, "reproduce", "table1", *base, "--out", demo),
        f"{demo}: is a mistnet demo directory, not mist reproduce's output",
    )
    for table in ("table1", "table4"):  # table1 runs no SVHN: a mistyped --svhn still is one
        result = mist(capsys, "reproduce", table, *base, "--out", tmp_path / "b", "--svhn", "nope")
        assert_user_error(result, "--svhn nope: no such directory")
    assert not (tmp_path / "b").exists()
    (tmp_path / "svhn.tar").write_bytes(b"")  # Before: "no such directory", though it exists
    result = mist(capsys, "reproduce", "table1", *base, "--out", tmp_path / "b", "--svhn",
                  tmp_path / "svhn.tar")  # fmt: skip
    assert_user_error(result, "svhn.tar: a file, not a directory")
    (tmp_path / "half" / "train").mkdir(parents=True)
    assert_user_error(
        mist(
            capsys,
            "reproduce",
            "table4",
            *base,
            "--out",
            tmp_path / "b",
            "--svhn",
            tmp_path / "half",
        ),
        "train/digitStruct.mat",
    )
    corrupt = tmp_path / "corrupt"
    for sub in ("train", "test"):
        (corrupt / sub).mkdir(parents=True)
        (corrupt / sub / "digitStruct.mat").write_bytes(b"not hdf5")
    assert_user_error(
        mist(capsys, "reproduce", "table4", *base, "--out", tmp_path / "b", "--svhn", corrupt),
        "digitStruct.mat",
    )


@pytest.mark.slow
def test_out_dir_of_another_budget_is_refused(smoke, capsys):
    assert_user_error(
        mist(capsys, "reproduce", "table1", "--budget", "cpu", "--out", smoke["out"]),
        "--budget smoke",
    )


CPU_TABLE_MINUTES = {"table1": 45.0, "table2": 110.0, "table3": 110.0}  # else 18


def test_budgets_and_tables_are_consistent():
    # every run's data and paper key exist; PaperOnly rows have a paper number
    for name, table in TABLES.items():
        for row in table.rows:
            if isinstance(row, PaperOnly):
                assert set(PAPER[name][row.key]) == set(table.metrics)
        assert TABLES[name].metrics
    for budget in BUDGETS.values():
        assert set(budget.split_sizes("mnist-hard")) == {"train", "val", "test"}
    cpu = BUDGETS["cpu"]
    for name, table in TABLES.items():  # at most 2 hours of training per table on 2 cores
        assert sum(r.time_share for r in table.runs()) == pytest.approx(len(table.runs()))
        assert len(table.runs()) * cpu.run_minutes(name) <= CPU_TABLE_MINUTES.get(name, 18.0), name
    assert cpu.run_steps("classify", cpu.run_minutes("table2")) == 3000
    assert BUDGETS["full"].presets == {} and BUDGETS["full"].run_minutes("table2") == 0


def test_every_run_config_resolves_under_every_budget(tmp_path):
    """No budget/row combination has an unknown key; cpu classification runs mnist-hard-cpu and
    cpu auto-encoders mnist-hard-recon-cpu, each still on its own dataset, K and output."""
    from mistnet.reproduce.runs import make_spec

    for budget in BUDGETS.values():
        for name, table in TABLES.items():
            for row in table.runs():
                data = {ev.data: tmp_path / ev.data for ev in row.all_evals()}
                spec = make_spec(name, row, 1, budget, tmp_path, data)
                cfg = spec.config()
                assert cfg.data.path == str(tmp_path / row.data)
                assert cfg.train.seed == 1 and cfg.data.seed == 1
                assert spec.run_dir == tmp_path / name / row.key / "seed1"
                if budget.name == "full":
                    assert spec.preset == row.preset and spec.minutes == 0
                elif row.kind == "classify":
                    assert spec.preset == "mnist-hard-cpu"
                elif budget.name == "cpu":
                    assert spec.preset == "mnist-hard-recon-cpu"
                    side = 20.0 if cfg.train.method == "grid" else 22.0  # the grid reads none
                    assert (cfg.model.base_side, cfg.model.patch_size) == (side, 23)
                if row.data in ("mnist-easy", "mnist-hard", "gabor"):
                    assert cfg.data.name == row.data
                if row.data == "gabor":
                    assert (cfg.model.k, cfg.model.output) == (20, "signed")
                if row.data == "svhn":
                    assert (cfg.model.in_channels, cfg.model.k, cfg.model.factors) == (3, 2, (0.5,))
                if name == "table3":
                    assert cfg.model.k == {"k9": 9, "k6to9": 7, "k3to9": 6}[row.key]
                method = next((o.split("=")[1] for o in row.overrides if "method" in o), "mist")
                assert cfg.train.method == method
                one = make_spec(name, row, 1, budget, tmp_path, data, threads=1)
                assert one.threads == 1 and spec.threads == budget.threads
                assert "--threads 1" in one.commands("cpu")[0]
                assert one.config() == cfg  # threads change speed, not the run
                # the budget sizes what the row's method has: the grid no heatmap network
                widths = [o for o in spec.overrides if o.startswith("model.heatmap_width")]
                assert bool(widths) == (budget.name == "smoke" and method != "grid")


def test_a_run_recorded_with_keys_its_method_never_read_keeps_its_fingerprint(tmp_path):
    """A grid run of an earlier version recorded the cpu preset's heatmap and x-step keys (now
    put back to their defaults): the reproduction still takes it as the same run."""
    from mistnet.reproduce.runs import _comparable, make_spec

    row = next(r for r in TABLES["table1"].runs() if r.key.endswith("-grid"))
    data = {ev.data: tmp_path / ev.data for ev in row.all_evals()}
    spec = make_spec("table1", row, 0, BUDGETS["cpu"], tmp_path, data)
    new = spec.config().to_dict()
    old = json.loads(json.dumps(new))
    old["train"].update(lr_heatmap=1e-3, centre_weight=1.0, heatmap_loss="nll")
    old["model"].update(heatmap_width=8, heatmap_dilations=[1, 2, 4, 8])
    assert new["train"]["lr_heatmap"] == 1e-4 and new["model"]["heatmap_width"] == 32
    assert _comparable(old, tmp_path) == _comparable(new, tmp_path)
    old["train"]["lr_task"] = 5e-4  # what the grid reads still tells runs apart
    assert _comparable(old, tmp_path) != _comparable(new, tmp_path)


def test_help_says_a_rerun_continues(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["reproduce", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "mist reproduce" in text and "--budget" in text and "--svhn" in text
    assert "continues an interrupted reproduction" in text and "skipped" in text
    for budget in BUDGETS:
        assert f"{budget}:" in text


def test_unreadable_svhn_stops_all_before_any_training(tmp_path, capsys, monkeypatch):
    """h5py opens both digitStruct.mat files up front: `all` fails before Table 1 trains."""
    base = ["reproduce", "all", "--budget", "smoke", "--device", "cpu"]
    corrupt = tmp_path / "corrupt"
    for sub in ("train", "test"):
        (corrupt / sub).mkdir(parents=True)
    (corrupt / "train" / "digitStruct.mat").write_bytes(b"not hdf5")
    (corrupt / "test" / "digitStruct.mat").write_bytes(b"not hdf5")
    out = tmp_path / "out"
    assert_user_error(
        mist(capsys, *base, "--out", out, "--svhn", corrupt),
        f"{corrupt / 'train' / 'digitStruct.mat'}: not a readable SVHN digitStruct.mat",
    )
    assert not (out / "table1").exists() and not (out / "data").exists()
    # HDF5 but no digitStruct group (only the test file is wrong)
    svhn = make_svhn(tmp_path / "svhn")
    import h5py

    (svhn / "test" / "digitStruct.mat").unlink()
    h5py.File(svhn / "test" / "digitStruct.mat", "w").close()
    assert_user_error(
        mist(capsys, *base, "--out", out, "--svhn", svhn),
        f"{svhn / 'test' / 'digitStruct.mat'}: not a readable SVHN digitStruct.mat",
    )
    assert not (out / "table1").exists()
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py -> ImportError
    assert_user_error(mist(capsys, *base, "--out", out, "--svhn", svhn), "needs h5py")
    assert not (out / "table1").exists()


def test_stats_count_the_finite_seeds():
    """Mean and sample std (n - 1) over finite seeds; the markdown says how many of them."""
    from mistnet.reproduce.report import _fmt_stats, _stats

    nan = float("nan")
    one = _stats([0.5])
    assert (one["mean"], one["std"], one["n"], one["values"]) == (0.5, None, 1, [0.5])
    assert _fmt_stats("ap50", one) == "50.0%"
    two = _stats([0.2, 0.4])
    assert two["mean"] == pytest.approx(0.3) and two["n"] == 2
    assert two["std"] == pytest.approx(math.sqrt(0.02))  # ((.1)^2 + (.1)^2) / (2 - 1)
    assert _fmt_stats("ap50", two) == "30.0 ± 14.1%"
    three = _stats([0.1, 0.2, 0.6])
    assert three["mean"] == pytest.approx(0.3) and three["n"] == 3
    assert three["std"] == pytest.approx(math.sqrt(0.07))  # (.04 + .01 + .09) / (3 - 1)
    assert _fmt_stats("rmse", three) == "0.3000 ± 0.2646"
    failed = _stats([0.2, nan, 0.4])  # the diverged seed leaves the mean, and the table says so
    assert failed["mean"] == pytest.approx(0.3) and failed["std"] == pytest.approx(math.sqrt(0.02))
    assert failed["n"] == 2 and failed["values"] == [0.2, None, 0.4]
    assert _fmt_stats("ap50", failed) == "30.0 ± 14.1% (n=2 of 3)"
    lone = _stats([nan, 0.25, None])
    assert (lone["mean"], lone["std"], lone["n"]) == (0.25, None, 1)
    assert _fmt_stats("rmse", lone) == "0.2500 (n=1 of 3)"
    none = _stats([nan])
    assert (none["mean"], none["std"], none["n"]) == (None, None, 0)
    assert _fmt_stats("ap50", none) == "– (n=0 of 1)"
    json.dumps(failed, allow_nan=False)  # results.json stays strict JSON


@pytest.mark.slow
def test_failing_figures_keep_the_table(smoke, capsys, monkeypatch):
    """The table is written before the figures; a figure error is a one-line warning."""
    import mistnet.reproduce

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts\nat all")

    out = smoke["out"]
    listed = _results(out)["tables"]["gabor"]["figures"]
    (out / "gabor.md").unlink()
    # reproduce_table looks the name up in its own module
    monkeypatch.setattr(mistnet.reproduce, "table_figures", broken)
    rc, stdout, err = mist(
        capsys, "reproduce", "gabor", "--budget", "smoke", "--out", out, "--device", "cpu"
    )
    assert rc == 0, err
    warnings = [line for line in stdout.splitlines() if "warning" in line]
    assert warnings == ["[gabor] warning: figures not drawn (RuntimeError: no fonts at all)"]
    md = (out / "gabor.md").read_text()
    assert "| 0.095 |" in md
    assert _results(out)["tables"]["gabor"]["figures"] == listed  # the earlier ones still exist
    assert all(f["path"] in md for f in listed)


def test_without_matplotlib_no_figures_line_and_no_figures_folder(smoke, capsys, monkeypatch):
    """Before: "[gabor] figures -> OUT/figures" was printed, then the warning, and an empty
    figures/ folder was left."""
    import mistnet.reproduce
    from mistnet.reproduce import figures

    def missing():
        raise MistError("drawing figures needs matplotlib: pip install 'mistnet[figures]'")

    out = smoke["out"]
    (out / "gabor.md").unlink()
    monkeypatch.setattr(mistnet.reproduce, "require_matplotlib", missing)
    rc, stdout, err = mist(
        capsys, "reproduce", "gabor", "--budget", "smoke", "--out", out, "--device", "cpu"
    )
    assert rc == 0, err
    assert "figures ->" not in stdout and "figures not drawn (MistError: drawing" in stdout
    monkeypatch.setattr(figures, "require_matplotlib", missing)
    with pytest.raises(MistError, match="needs matplotlib"):
        figures.table_figures("gabor", {}, smoke["out"].parent / "new", 1, "cpu")
    assert not (smoke["out"].parent / "new").exists()


def test_a_second_reproduction_into_the_same_out_is_refused(tmp_path, capsys):
    """OUT/.lock is flock-ed for the whole invocation; a second one stops with one line."""
    import fcntl

    from mistnet.outputs import create_directory

    out = tmp_path / "out"
    create_directory(out, "reproduce")  # made by the reproduction that is still running
    argv = ["reproduce", "table4", "--budget", "smoke", "--out", out, "--device", "cpu"]
    with (out / ".lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another process's reproduction
        held.write("4242\n")
        held.flush()
        assert_user_error(
            mist(capsys, *argv), f"another mist reproduce is writing to {out} (pid 4242)"
        )
        assert sorted(p.name for p in out.iterdir()) == [".lock", ".mistnet"]  # nothing touched
    rc, _, err = mist(capsys, *argv)  # released: runs, and releases it in turn
    assert rc == 0, err
    assert (out / "table4.md").is_file()
    with (out / ".lock").open("a+") as again:
        fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if still held


def _a_finished_reproduction(out: Path) -> Path:
    """The files a smoke reproduction of table2 leaves that a rerun reads first, without the
    training: the output's markers, its data root, and the record of one finished run."""
    from mistnet.io import atomic_write_json
    from mistnet.outputs import create_directory

    create_directory(out, "reproduce")
    (out / "data").mkdir()
    marker = {"format": "mistnet-reproduce", "budget": "smoke", "digits": "embedded"}
    atomic_write_json(out / "reproduce.json", marker)  # as the reproduction wrote it
    run = out / "table2" / "mist" / "seed0"
    run.mkdir(parents=True)
    record = {"metrics": {"det_iou50": 0.5, "rmse": None}, "extra": {}, "data": "d"}
    record |= {"train": {"steps": 4}, "wall_s": {"total": 1.0}, "run": str(run)}
    record |= {"device": "cpu", "commands": [], "evals": {}}
    (run / "eval.json").write_text(json.dumps(record))
    return run / "eval.json"


def _record(**changed) -> bytes:
    """A finished run's eval.json, as the reproduction reads it, with ``changed`` fields."""
    record = {"metrics": {"det_iou50": 0.5}, "extra": {}, "data": "d", "step": 4, "run": "r"}
    record |= {"train": {"steps": 4}, "wall_s": {"total": 1.0}, "device": "cpu"}
    return json.dumps({**record, "commands": [], "evals": {}, **changed}).encode()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("eval", b"\xff", "not UTF-8 text"),
        ("eval", b"5", "(a int, not a JSON object)"),
        ("eval", b'{"metrics": NaN}', "NaN is not a JSON number"),
        ("eval", b'{"metrics": {"rmse": "low"}, "data": "d"}', 'metrics.rmse is "low"'),
        ("eval", b'{"metrics": {}, "data": "d", "evals": {"x": 1}}', "evals is not an object"),
        # Before: internal errors (OverflowError, a TypeError joining the commands); a step of
        # null was blamed on training by hand
        ("eval", _record(metrics={"rmse": 10**400}), "not a number"),
        ("eval", _record(wall_s={"total": 10**400}), "wall_s.total is not a number"),
        # Before: an edited record's impossible metrics were put in the tables as given
        ("eval", _record(metrics={"rmse": -3}), "metrics.rmse is -3, outside >= 0"),
        ("eval", _record(evals={"k": {"metrics": {"both": 1.5}, "data": "d"}}), "outside [0, 1]"),
        ("eval", _record(commands=[1, 2]), "commands is not a list of command lines"),
        ("eval", _record(step=None), "step is null, not the step of a checkpoint"),
        ("results", b"\xff", "not UTF-8 text"),
        ("results", b"5", "not a results.json of mist reproduce"),
        ("results", b'{"format": "mistnet-reproduce", "tables": {"t": {"figures": 1}}}', "not a"),
        ("marker", b"\xff", "not UTF-8 text"),
        ("marker", b"5", "not a JSON object"),
    ],
)
def test_damaged_files_of_a_reproduction_are_refused_in_one_line(
    tmp_path, capsys, name, content, message
):
    """A rerun reads its own eval.json, results.json and reproduce.json strictly: a damaged
    one is named, with what to do, and nothing is trained or written."""
    from mistnet.reproduce.runs import read_record

    out = tmp_path / "rp4"
    record = _a_finished_reproduction(out)
    assert read_record(record)["metrics"]["det_iou50"] == 0.5  # the faked record is a record
    path = {"eval": record, "results": out / "results.json", "marker": out / "reproduce.json"}
    path[name].write_bytes(content)
    hint = {"eval": "delete it to evaluate the run again", "results": "delete it and run each"}
    hint["marker"] = "delete it to continue the reproduction"
    before = entries_under(tmp_path)
    stamp = os.stat(out / "reproduce.json").st_mtime_ns
    argv = ["reproduce", "table2", "--budget", "smoke", "--out", out, "--device", "cpu"]
    assert_user_error(mist(capsys, *argv), f"{path[name]}: ", message, hint[name])
    assert entries_under(tmp_path) == before  # its .lock too is gone
    # Before: reproduce.json was written again (the same bytes) before the refusal
    assert os.stat(out / "reproduce.json").st_mtime_ns == stamp


@pytest.mark.parametrize("what", ["fifo", "folder", "link"])
def test_a_reproduce_json_that_is_no_file_of_its_own_is_refused(tmp_path, capsys, what):
    """Before: ``OUT/reproduce.json`` as a FIFO was replaced unread (exit 0); as a folder it
    was a bare "Is a directory"; as a link to a file outside OUT it was read through, then
    replaced by a regular file."""
    out = tmp_path / "rp"
    _a_finished_reproduction(out)
    marker = out / "reproduce.json"
    elsewhere = tmp_path / "mine.json"
    elsewhere.write_bytes(marker.read_bytes())
    marker.unlink()
    if what == "fifo":
        os.mkfifo(marker)
    elif what == "folder":
        marker.mkdir()
    else:
        marker.symlink_to(elsewhere)
    before = entries_under(tmp_path)
    argv = ["reproduce", "table2", "--budget", "smoke", "--out", out, "--device", "cpu"]
    message = {"fifo": "a FIFO, not a regular file", "folder": "a directory, not a regular file"}
    message["link"] = "a symbolic link; it is the reproduction's record: move it away"
    assert_user_error(mist(capsys, *argv), f"{marker}: {message[what]}")
    assert entries_under(tmp_path) == before


def _smoke_with(monkeypatch, **changes):
    """Make the smoke budget a different plan (as after an edit of plan.py) for this test."""
    import dataclasses

    monkeypatch.setitem(BUDGETS, "smoke", dataclasses.replace(BUDGETS["smoke"], **changes))


@pytest.mark.slow
def test_runs_of_another_plan_are_refused_not_reused(smoke, capsys, monkeypatch):
    """A finished or interrupted run made under other steps/minutes stops the rerun at once."""
    out = smoke["out"]
    argv = ["reproduce", "table3", "--budget", "smoke", "--out", out, "--device", "cpu"]
    argv += ["--no-figures"]
    run = out / "table3" / "k9" / "seed0"
    record = json.loads((run / "eval.json").read_text())
    assert record["fingerprint"] == json.loads((run / "fingerprint.json").read_text())
    assert record["fingerprint"]["minutes"] == 0.5 and record["fingerprint"]["preset"]
    assert "threads" not in record["fingerprint"]["config"]["train"]
    evals = {p: p.read_bytes() for p in out.glob("table3/*/seed0/eval.json")}
    # threads only change speed: a rerun with other threads reuses every run
    rc, stdout, err = mist(capsys, *argv, "--threads", "2")
    assert rc == 0, err
    assert stdout.count("skipped") == 3 and "training" not in stdout
    # other steps: the finished runs are refused before anything is made or trained
    steps = ("train.steps=5",)
    _smoke_with(monkeypatch, overrides={"*": BUDGETS["smoke"].overrides["*"] + steps})
    assert_user_error(
        mist(capsys, *argv),
        f"{run} was made under another plan",
        "config.train.steps 4 -> 5",
        "use a fresh --out, or delete that run directory",
    )
    # an interrupted run (no eval.json) is checked against its fingerprint.json: other minutes
    monkeypatch.undo()
    _smoke_with(monkeypatch, minutes={"*": 0.75})
    kept = run / "eval.json.kept"
    (run / "eval.json").rename(kept)
    try:
        assert_user_error(mist(capsys, *argv), f"{run} was made", "minutes 0.5 -> 0.75")
        # a finished run from before fingerprints: its config.json is compared
        monkeypatch.undo()
        _smoke_with(monkeypatch, overrides={"*": BUDGETS["smoke"].overrides["*"] + steps})
        (run / "fingerprint.json").rename(run / "fingerprint.json.kept")
        legacy = {k: v for k, v in record.items() if k != "fingerprint"}
        (run / "eval.json").write_text(json.dumps(legacy))
        assert_user_error(mist(capsys, *argv), f"{run} was made", "config.train.steps 4 -> 5")
        # ... but under the same plan it is reused, even if its config.json predates a key
        monkeypatch.undo()
        config = (run / "config.json").read_text()
        old_config = json.loads(config)
        del old_config["train"]["init_from"]  # as if added to Config later (default: "")
        (run / "config.json").write_text(json.dumps(old_config))
        rc, stdout, err = mist(capsys, *argv)
        (run / "config.json").write_text(config)
        assert rc == 0, err
        assert stdout.count("skipped") == 3
    finally:
        kept.replace(run / "eval.json")
        if (run / "fingerprint.json.kept").exists():
            (run / "fingerprint.json.kept").rename(run / "fingerprint.json")
    assert {p: p.read_bytes() for p in evals} == evals  # nothing retrained or rewritten
    monkeypatch.undo()
    rc, stdout, err = mist(capsys, *argv)  # the same plan again: reused
    assert rc == 0, err
    assert stdout.count("skipped") == 3


@pytest.mark.slow
def test_table3_evaluates_with_the_per_image_k(smoke):
    """K = each image's ground-truth count: as many detections as instances, fewer than 9 each."""
    doc = _results(smoke["out"])
    rows = {r["key"]: r for r in doc["tables"]["table3"]["rows"]}
    for key, train_k in (("k6to9", 7), ("k3to9", 6), ("k9", 9)):
        record = json.loads((smoke["out"] / "table3" / key / "seed0" / "eval.json").read_text())
        m = record["metrics"]
        assert record["k"] == "per-image" and rows[key]["all_metrics"][0] == m
        assert m["n_images"] == record["images"] == 32
        assert m["n_detections"] == m["n_instances"], key
        if key == "k9":
            assert m["n_instances"] == 9 * m["n_images"]
        else:  # variable counts: a fixed K (train K or 9) would give K * n_images detections
            assert m["n_instances"] < 9 * m["n_images"]
            assert m["n_detections"] != train_k * m["n_images"]


@pytest.mark.slow
def test_evaluation_only_data_has_only_a_test_split(smoke):
    from mistnet.data.manifest import read_manifest

    right = smoke["out"] / "data" / "smoke" / "mnist-hard-right-seed0"
    assert read_manifest(right)["splits"] == {"test": 32}
    assert sorted(p.name for p in right.glob("*.npz")) == ["test.npz"]
    trained = read_manifest(smoke["out"] / "data" / "smoke" / "mnist-hard-left-seed0")
    assert trained["splits"] == {"train": 64, "val": 16, "test": 32}


def test_test_only_data_gains_its_other_splits_when_trained_on(tmp_path):
    """A test-only data set asked for with all splits is completed; its test split is kept."""
    from mistnet.data.manifest import read_manifest
    from mistnet.data.store import load_split
    from mistnet.reproduce.data import prepare

    budget, logged = BUDGETS["smoke"], []
    path = prepare("mnist-hard-right", budget, 0, tmp_path, log=logged.append, test_only=True)
    assert read_manifest(path)["splits"] == {"test": 32} and "test split only" in logged[0]
    test, _ = load_split(path, "test")
    assert prepare("mnist-hard-right", budget, 0, tmp_path, log=logged.append, test_only=True)
    assert len(logged) == 1  # reused
    assert prepare("mnist-hard-right", budget, 0, tmp_path, log=logged.append) == path
    assert len(logged) == 2 and read_manifest(path)["splits"] == budget.split_sizes("x")
    again, _ = load_split(path, "test")
    assert all(np.array_equal(test[k], again[k]) for k in test)
    prepare("mnist-hard-right", budget, 0, tmp_path, log=logged.append, test_only=True)
    prepare("mnist-hard-right", budget, 0, tmp_path, log=logged.append)
    assert len(logged) == 2  # the full one serves both


def test_full_mnist_data_has_its_own_folder_and_records_its_digits(tmp_path, monkeypatch):
    from mistnet.data.manifest import read_manifest
    from mistnet.reproduce.data import OFFICIAL, data_dir, prepare

    fill_small_mnist_cache(monkeypatch, tmp_path / "mnist")
    budget = BUDGETS["smoke"]
    root = tmp_path / "data"
    assert data_dir(root, budget, OFFICIAL, 0, "mnist").parent == root / "smoke-mnist"
    assert data_dir(root, budget, "gabor", 0, "mnist") == data_dir(root, budget, "gabor", 0)
    path = prepare("mnist-hard", budget, 0, root, log=lambda _: None, digits="mnist")
    assert path == root / "smoke-mnist" / "mnist-hard-seed0"
    assert read_manifest(path)["digits"] == "mnist"
    embedded = prepare("mnist-hard", budget, 0, root, log=lambda _: None)
    assert embedded == root / "smoke" / "mnist-hard-seed0"
    assert read_manifest(embedded)["digits"] == "embedded"


def test_an_out_of_other_digits_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    fill_small_mnist_cache(monkeypatch, tmp_path / "mnist")
    out = tmp_path / "out"
    out.mkdir()
    marker = out / "reproduce.json"
    marker.write_text('{"format": "mistnet-reproduce", "budget": "smoke"}')  # before --digits
    argv = ["reproduce", "table2", "--budget", "smoke", "--out", out, "--digits", "mnist"]
    before = entries_under(out)
    assert_user_error(mist(capsys, *argv), "--digits embedded; use another --out", "mnist")
    assert entries_under(out) == before  # before: a .mistnet marker was left


@pytest.mark.parametrize(
    "content",
    [b'{"title": "my reproduction notes", "todo": ["table1", "gabor"]}\n', b"steps:\n1. ...\n"],
    ids=["json", "text"],
)
def test_a_folder_of_the_users_holding_a_reproduce_json_is_refused_untouched(
    tmp_path, capsys, content
):
    """Before: any reproduce.json made a folder an earlier version's reproduction: a JSON object
    of the user's was overwritten and mistnet's files added beside the user's; other text was
    refused, telling the user to delete their file, and left a .mistnet marker behind."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "reproduce.json").write_bytes(content)
    (proj / "notes.txt").write_text("my notes")
    before = entries_under(tmp_path)
    argv = ["reproduce", "table4", "--budget", "smoke", "--out", proj, "--device", "cpu"]
    result = mist(capsys, *argv)
    assert_user_error(result, f"{proj}: exists and was not made by mist reproduce", "new --out")
    assert entries_under(tmp_path) == before


def test_an_earlier_versions_reproduction_is_continued_and_left_unmarked_when_refused(
    tmp_path, capsys
):
    """A folder holding the reproduce.json an earlier version wrote (no .mistnet) is continued
    and marked; one of another budget is refused with no marker added (before: marked)."""
    out = tmp_path / "old"
    out.mkdir()
    marker = out / "reproduce.json"
    marker.write_text('{"format": "mistnet-reproduce", "budget": "cpu"}')
    before = entries_under(tmp_path)
    argv = ["reproduce", "table4", "--budget", "smoke", "--out", out, "--device", "cpu"]
    assert_user_error(mist(capsys, *argv), f"{out} holds a reproduction with --budget cpu")
    assert entries_under(tmp_path) == before
    marker.write_text('{"format": "mistnet-reproduce", "budget": "smoke"}')
    rc, _, err = mist(capsys, *argv)
    assert rc == 0, err
    assert (out / ".mistnet").read_text().startswith("reproduce") and (out / "table4.md").is_file()


def _extra_by_a_second_pass(model, batches, extra):
    """The extra metrics as a separate evaluation loop computed them, for comparison."""
    import torch

    from mistnet.engine import Batch
    from mistnet.metrics import APMeter, match_points
    from mistnet.ops import topk_keypoints
    from mistnet.reproduce.runs import IMPULSE_RADIUS

    ap, found, found_ref, total = APMeter(num_classes=10), 0, 0, 0
    model.eval()
    with torch.inference_mode():
        for raw in batches:
            b = Batch.from_dict(raw, "cpu")
            out = model(b.images)
            if extra == "svhn_ap":
                ap.update(out.keypoints, out.task.argmax(-1), b.boxes, b.labels, b.count)
                continue
            found += int(
                match_points(out.keypoints, b.boxes, IMPULSE_RADIUS, gt_count=b.count).sum()
            )
            ref, _ = topk_keypoints(
                b.images.clamp(min=0), model.k, model.sides[:1], model.nms_window
            )
            found_ref += int(match_points(ref, b.boxes, IMPULSE_RADIUS, gt_count=b.count).sum())
            total += int(b.count.sum())
    if extra == "svhn_ap":
        return {k: v for k, v in ap.compute().items() if k != "n_images"}
    return {"impulses_found": found / total, "impulses_found_image_maxima": found_ref / total}


@pytest.mark.parametrize(
    "extra, preset, data",
    [("svhn_ap", "tiny-cpu", "mnist-hard"), ("impulses", "gabor-recon", "gabor")],
)
def test_extra_meters_give_the_numbers_of_a_second_pass(extra, preset, data):
    """The extra metrics, fed by engine.evaluate in its own pass, equal those of a separate loop
    over the same batches (the numbers a reproduction writes in eval.json's "extra")."""
    import torch

    from mistnet.config import resolve
    from mistnet.data import SceneDataset
    from mistnet.data.sampling import loader
    from mistnet.engine import evaluate
    from mistnet.models.build import build_model
    from mistnet.reproduce.runs import extra_meters

    cfg = resolve(preset, ["model.heatmap_width=4", "model.patch_base_width=4"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.train.method)
    batches = list(loader(SceneDataset(data, "test", size=6), 3, 0))
    meters = extra_meters(extra, cfg)
    evaluate(model, batches, signed=data == "gabor", meters=meters)
    assert meters[0].compute() == _extra_by_a_second_pass(model, batches, extra)
    assert extra_meters("", cfg) == []
    with pytest.raises(ValueError, match="unknown extra metric 'nope'"):
        extra_meters("nope", cfg)


def test_a_shared_data_root_waits_for_the_other_reproduction_then_reuses(tmp_path):
    """Two reproductions sharing --data-root: the second waits while the first makes a
    dataset, then reuses it (before: it failed with "already holds a dataset; remove it")."""
    import threading

    from mistnet.locks import exclusive_lock
    from mistnet.reproduce.data import _prepare, prepare

    budget, first, second = BUDGETS["smoke"], [], []
    done: list[Path] = []
    (tmp_path / "smoke").mkdir()
    with exclusive_lock(tmp_path / "smoke", "mist reproduce"):  # the budget's folder, made
        waiter = threading.Thread(
            target=lambda: done.append(
                prepare("mnist-hard", budget, 0, tmp_path, None, second.append)
            )
        )
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive() and len(second) == 1 and second[0].startswith("waiting for")
        made = _prepare("mnist-hard", budget, 0, tmp_path, None, first.append, False, "embedded")
    waiter.join(timeout=60)
    assert done == [made] and len(second) == 1  # reused: no "data: ..." line of its own


@pytest.mark.parametrize("name", ["notes.txt", "train.txt"])
def test_a_folder_of_the_users_in_the_data_root_is_refused_before_out_is_made(
    tmp_path, capsys, name
):
    """Before: refused once --out was made (left with .lock, .mistnet, reproduce.json; a 700
    empty --out of the user's filled), telling the user to choose another --out (with a
    train.txt, taken for an older official layout, another "out_dir")."""
    mine = tmp_path / "root" / "smoke" / "mnist-hard-seed0"
    mine.mkdir(parents=True)
    (mine / name).write_text("mine")
    (tmp_path / "empty").mkdir()
    for out in ("new", "empty"):
        argv = ["table2", "--budget", "smoke", "--out", tmp_path / out, "--no-figures"]
        result = mist(capsys, "reproduce", *argv, "--data-root", tmp_path / "root")
        assert_user_error(result, f"--data-root {tmp_path / 'root'}: {mine} exists and was not")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "root"]
    assert list((tmp_path / "empty").iterdir()) == [] and (mine / name).read_text() == "mine"


def test_a_lock_file_of_the_users_in_the_data_root_is_left_as_it_was(tmp_path, capsys):
    """The datasets of a budget are made under the lock of its own folder (root/<budget>/.lock,
    removed after), never root/.lock, a file of the user's that was emptied, then deleted; a
    .lock of the user's in the budget's folder is refused before anything is made; one a killed
    reproduction left (its pid) is taken and removed."""
    from mistnet.reproduce.data import prepare

    root = tmp_path / "shared"
    root.mkdir()
    (root / ".lock").write_text("owner=alice\n")
    path = prepare("gabor", BUDGETS["smoke"], 0, root, log=lambda _: None, test_only=True)
    assert path == root / "smoke" / "gabor-seed0"
    assert sorted(p.name for p in root.iterdir()) == [".lock", "smoke"]
    assert (root / ".lock").read_text() == "owner=alice\n"
    assert not (root / "smoke" / ".lock").exists()
    (root / "smoke" / ".lock").write_text("4242\n")  # left by a killed reproduction
    prepare("mnist-hard-right", BUDGETS["smoke"], 0, root, log=lambda _: None, test_only=True)
    assert not (root / "smoke" / ".lock").exists()
    (root / "smoke" / ".lock").write_text("owner=alice\n")
    before = entries_under(tmp_path)
    argv = ["reproduce", "gabor", "--budget", "smoke", "--out", tmp_path / "rep"]
    result = mist(capsys, *argv, "--data-root", root, "--no-figures")
    lock = root / "smoke" / ".lock"
    assert_user_error(result, f"--data-root {root}: {lock} is no lock of mistnet's")
    assert entries_under(tmp_path) == before
    # another user's lock (600, unreadable here) was "no lock of mistnet's; move it away"
    from mistnet.reproduce.data import check_lock

    read = Path.read_bytes

    def denied(path):
        if path == lock:
            raise PermissionError(13, "Permission denied", str(path))
        return read(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "read_bytes", denied)
        with pytest.raises(MistError, match=r"\.lock: this user cannot open the lock \(this"):
            check_lock(root, root / "smoke")  # root's own here: made unreadable
        patch.setattr(os, "geteuid", lambda: 4242)
        with pytest.raises(MistError, match=r"open the lock \(another user's.*--data-root$"):
            check_lock(root, root / "smoke")
        # readable but not writable (root's 644): --out was made, then left, before the lock
        patch.setattr(Path, "read_bytes", read)
        access = os.access
        patch.setattr(
            os, "access", lambda p, m: not (Path(p) == lock and m & os.W_OK) and access(p, m)
        )
        with pytest.raises(MistError, match=r"open the lock \(another user's.*--data-root$"):
            check_lock(root, root / "smoke")
        # a link there is named as one (its target's access made it "this user's own lock")
        lock.unlink()
        (tmp_path / "elsewhere").write_text("")
        lock.symlink_to(tmp_path / "elsewhere")
        patch.setattr(os, "access", lambda p, m: False)
        with pytest.raises(MistError, match=r"\.lock is no lock of mistnet's; move it away"):
            check_lock(root, root / "smoke")


def test_a_file_where_a_budgets_folder_goes_is_refused_before_out_is_made(tmp_path, capsys):
    """Before: a file at ``ROOT/smoke`` was found once ``--out`` was made ("ROOT/smoke: File
    exists"), leaving it marked with its reproduce.json."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "smoke").write_text("my notes")
    before = entries_under(tmp_path)
    argv = ["reproduce", "gabor", "--budget", "smoke", "--out", tmp_path / "o", "--no-figures"]
    result = mist(capsys, *argv, "--data-root", root)
    assert_user_error(result, f"--data-root {root}: {root / 'smoke'} is not a folder")
    assert entries_under(tmp_path) == before
    # Before (as a user who cannot write ROOT/smoke): "ROOT/smoke/.lock: Permission denied",
    # --out left made. (Root writes anywhere: the permission is stood in for.)
    (root / "smoke").unlink()
    (root / "smoke").mkdir()
    access = os.access
    with pytest.MonkeyPatch.context() as m:
        m.setattr(os, "access", lambda p, mode: Path(p) != root / "smoke" and access(p, mode))
        result = mist(capsys, *argv, "--data-root", root)
    assert_user_error(result, f"this user cannot write into {root / 'smoke'}, where the datasets")
    assert not (tmp_path / "o").exists()


def test_a_refused_plan_makes_no_data_root(tmp_path, capsys, monkeypatch):
    """Before: the data root (``--data-root newr/a/b``, or ``OUT/data``) was made before the
    plan was checked, and stayed when an earlier run of another plan refused the rerun."""
    import mistnet.reproduce as rep

    def refuses(*args, **kwargs):
        raise MistError("OUT/gabor/gabor-mist/seed0 was made under another plan")

    monkeypatch.setattr(rep, "check_plan", refuses)
    argv = ["reproduce", "gabor", "--budget", "smoke", "--out", tmp_path / "o", "--no-figures"]
    assert_user_error(mist(capsys, *argv), "was made under another plan")  # makes OUT
    before = entries_under(tmp_path)
    for root in ([], ["--data-root", tmp_path / "newr" / "a" / "b"]):
        assert_user_error(mist(capsys, *argv, *root), "was made under another plan")
        assert entries_under(tmp_path) == before


def test_a_data_root_that_cannot_be_a_folder_is_refused_before_out_is_made(tmp_path, capsys):
    """Before: refused only once --out was made (a new one left with .mistnet and
    reproduce.json, an empty one of the user's filled with them)."""
    (tmp_path / "afile").write_text("notes")
    (tmp_path / "empty").mkdir()
    for out in ("new", "empty"):
        argv = ["table2", "--budget", "smoke", "--out", tmp_path / out, "--no-figures"]
        result = mist(capsys, "reproduce", *argv, "--data-root", tmp_path / "afile" / "x")
        assert_user_error(result, "afile/x: not a writable directory", "afile is no directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty"]
    assert list((tmp_path / "empty").iterdir()) == []


def test_reproduce_in_python_checks_its_options_before_out_is_made(tmp_path, monkeypatch):
    """Before: data_root="" made the datasets in the working directory, seeds=True and
    figures="no" were taken, a command holding a newline was recorded, log=None failed only
    once OUT was made (its .lock, marker and plan left)."""
    from mistnet.reproduce import reproduce

    monkeypatch.chdir(tmp_path)
    for kwargs, error, message in [
        ({"data_root": ""}, ValueError, "data_root '' is an empty path"),
        ({"seeds": True}, TypeError, "seeds must be an integer, got True"),
        ({"figures": "no"}, TypeError, "figures must be True or False"),
        ({"command": "a\nb"}, ValueError, "command 'a\\\\nb' holds the control character"),
        ({"command": 5}, TypeError, "command must be a string"),
        ({"log": None}, TypeError, "log must be a callable"),
    ]:
        with pytest.raises(error, match=message):
            reproduce("table1", "smoke", "out", device="cpu", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_reproduce_refuses_arguments_of_the_wrong_type_or_empty_by_name(tmp_path, monkeypatch):
    """Before: out=5 and svhn=5 raised "expected str, bytes or os.PathLike object, not int", a
    list of tables or budgets (and get_budget([])) "unhashable type: 'list'", out="" said
    "--out . names the working directory", and svhn="" was read as the working directory
    ("--svhn : no train/digitStruct.mat")."""
    from mistnet.reproduce import plan, reproduce

    monkeypatch.chdir(tmp_path)
    for args, kwargs, error, message in [
        (("gabor", "smoke", 5), {}, TypeError, "^out must be a path as text, got int$"),
        (("gabor", "smoke", "o1"), {"svhn": 5}, TypeError, "^svhn must be a path as text, got"),
        (("gabor", ["smoke"], "o1"), {}, TypeError, r"^budget must be a budget name .*\['smoke'\]"),
        ((["gabor"], "smoke", "o1"), {}, TypeError, "^table must be one table name"),
        (("gabor", "smoke", ""), {}, ValueError, "^out '' is an empty path; give the output"),
        (("gabor", "smoke", "o1"), {"svhn": ""}, ValueError, "^svhn '' is an empty path"),
    ]:
        with pytest.raises(error, match=message):
            reproduce(*args, device="cpu", **kwargs)
    with pytest.raises(TypeError, match=r"^budget must be a budget name \(smoke, cpu, full\)"):
        plan.get_budget([])
    assert list(tmp_path.iterdir()) == []


def test_report_reader_and_markdown_name_what_is_wrong(tmp_path):
    """Before: read_results("r") raised "unsupported operand type(s) for /: 'str' and 'str'",
    read_results(5) a raw TypeError, and render_markdown({}) "KeyError: 'seeds'"."""
    from mistnet.reproduce import report

    assert report.read_results(str(tmp_path)) is None  # a string is a path: nothing there yet
    (tmp_path / "results.json").write_text('{"format": "mistnet-reproduce", "tables": {}}')
    assert report.read_results(str(tmp_path))["tables"] == {}
    with pytest.raises(TypeError, match="^out must be a path as text, got int$"):
        report.read_results(5)
    with pytest.raises(ValueError, match="^out '' is an empty path"):
        report.read_results("")
    with pytest.raises(ValueError, match="^entry is no table entry of results.json: it lacks "):
        report.render_markdown({})
    entry = {key: [] for key in report.ENTRY_KEYS}
    del entry["seeds"], entry["notes"]
    with pytest.raises(ValueError, match="it lacks seeds, notes$"):
        report.render_markdown(entry)
    with pytest.raises(TypeError, match="^entry must be a table entry of results.json, got list"):
        report.render_markdown([])


def test_render_markdown_names_the_field_of_an_entry_it_cannot_read():
    """Before: rows=[{"key": "x"}] raised "KeyError: 'paper'", metrics="ap50" "KeyError: 'a'"
    and seeds=3 "object of type 'int' has no len()"."""
    from mistnet.reproduce import report

    stats = {"mean": 0.5, "std": None, "n": 1, "values": [0.5]}
    ran = {
        "key": "mist", "label": "MIST", "status": "run", "paper": {"ap50": 0.9},
        "ours": {"ap50": stats}, "runs": ["runs/mist-seed0"], "steps": [10], "device": ["cpu"],
        "wall_s": 12.0, "commands": {"seed0": ["mist train ..."]}, "data": "data/mnist",
    }  # fmt: skip
    entry = {
        "title": "Table 1", "source": "the paper", "command": "mist reproduce table1",
        "budget": "smoke", "budget_description": "tiny", "minutes_per_run": 1.0, "seeds": [0],
        "device": "cpu", "wall_s": 12.0, "written": "today", "figures": [], "metrics": ["ap50"],
        "rows": [ran, {"key": "base", "label": "Base", "status": "paper only", "paper": {}}],
        "notes": ["a note"],
    }  # fmt: skip
    assert "| MIST | AP IoU=.50 | 90.0% | 50.0% | 1 | 10 | cpu | 12 s |" in (
        report.render_markdown(entry)
    )
    for change, error, message in [
        ({"rows": [{"key": "x"}]}, ValueError,
         r"^entry\['rows'\]\[0\] is no row of a table entry: it lacks label, status, paper$"),
        ({"rows": [{**ran, "ours": {}}]}, ValueError,
         r"^entry\['rows'\]\[0\]\['ours'\] holds no statistics of the metric 'ap50'$"),
        ({"rows": [{k: v for k, v in ran.items() if k != "steps"}]}, ValueError,
         r"^entry\['rows'\]\[0\] is no row of a table entry: it lacks steps$"),
        ({"metrics": "ap50"}, TypeError,
         r"^entry\['metrics'\]: expected a list of metric names, got 'ap50'$"),
        ({"seeds": 3}, TypeError, r"^entry\['seeds'\]: expected a list of seeds \(integers\), got 3$"),
        ({"seeds": [True]}, TypeError, r"^entry\['seeds'\]: expected a list of seeds"),
        ({"rows": [5]}, TypeError, r"^entry\['rows'\]: expected a list of rows \(dicts\), got"),
        ({"wall_s": "12"}, TypeError, r"^entry\['wall_s'\]: expected a number, got '12'$"),
        ({"figures": ["a.png"]}, TypeError, r"^entry\['figures'\]: expected a list of \{'path'"),
        ({"rows": [{**ran, "paper": None}]}, TypeError,
         r"^entry\['rows'\]\[0\]\['paper'\]: expected a dict \{metric: value\}, got None$"),
    ]:  # fmt: skip
        with pytest.raises(error, match=message):
            report.render_markdown({**entry, **change})


def test_only_the_reproduction_s_own_figures_are_listed_again(tmp_path):
    """Before: a results.json entry edited to ``/etc/passwd`` or ``../../x`` was listed as one of
    the table's figures whenever they were not drawn again (``--no-figures``)."""
    from mistnet.reproduce.report import previous_figures

    out = tmp_path / "rp"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "t-a.png").write_bytes(b"png")
    (tmp_path / "x.png").write_bytes(b"png")
    (out / "figures" / "link.png").symlink_to(tmp_path / "x.png")
    paths = ["figures/t-a.png", "/etc/passwd", "../x.png", "figures/../../x.png"]
    paths += ["figures/link.png", "figures/gone.png"]
    doc = {"format": "mistnet-reproduce", "version": 1, "budget": "smoke"}
    doc["tables"] = {"t": {"figures": [{"path": p, "caption": "c"} for p in paths]}}
    (out / "results.json").write_text(json.dumps(doc))
    assert previous_figures(out, "t") == [("figures/t-a.png", "c")]


def test_a_recorded_command_names_a_path_of_control_characters_on_one_line():
    """Before: ``reproduce ... --out $'p\\nq/n4'`` (a folder above the output, which mist train
    takes) was refused: "command ... holds the control character"; the command is now recorded
    with bash's ``$'...'`` words, which give the path back."""
    import shutil

    from mistnet.reproduce.runs import make_spec
    from mistnet.shellwords import shell_word

    # a tag character (a flag emoji's) needed bash's \U; \u and \U give a character back only
    # in a UTF-8 locale (under LANG=C a zero-width space was not): UTF-8 bytes as \xHH now
    tags = "flag\U0001f3f4\U000e0067\U000e0062\U000e007f"
    for arg in [
        "runs/a b",
        "p\nq/n4",
        "it's\t",
        "a\\b\x1b[1m",
        "é\x85z",
        "x\udcff y",
        tags,
        "a\u200bb",
    ]:
        word = shell_word(arg)
        assert word.isprintable() and "\n" not in word
        if shutil.which("bash"):
            for env in ({}, {"LC_ALL": "C"}):
                said = subprocess.run(
                    ["bash", "-c", f"printf '%s' {word}"], capture_output=True, env=env
                )
                assert said.stdout == os.fsencode(arg), (arg, env)
    # Before: each run's mist train / eval commands were joined by shlex: a newline in the
    # reproduction's folder cut them in two in TABLE.md, results.json and eval.json
    row = TABLES["table1"].runs()[0]
    home = Path("p\nq/REP")
    data = {ev.data: home / ev.data for ev in row.all_evals()}
    lines = make_spec("table1", row, 0, BUDGETS["smoke"], home, data).commands("cpu")
    assert lines and all("\n" not in line and "$'p\\x0aq/REP" in line for line in lines)
