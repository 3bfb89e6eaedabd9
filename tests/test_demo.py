"""The `make demo` job end to end, on a tiny budget: data, run, metrics, figure, and the run
directory is usable by `mist eval` with the same numbers."""

import json

from mistnet.cli import main as mist
from mistnet.demo import main as demo


def test_demo_writes_run_metrics_and_figure_that_eval_reproduces(tmp_path):
    out = tmp_path / "demo"
    tiny = [
        "--set", "model.heatmap_width=8", "--set", "model.heatmap_depth=2",
        "--set", "model.patch_base_width=4", "--set", "train.steps=6",
        "--set", "train.val_every=3", "--set", "train.ckpt_every=3",
        "--set", "train.batch_size=8", "--set", "train.threads=1",
    ]  # fmt: skip
    args = ["--out", str(out), "--n-train", "64", "--n-val", "16", "--n-test", "24"]
    assert demo([*args, "--minutes", "1", *tiny]) == 0
    record = json.loads((out / "metrics.json").read_text())
    metrics = record["metrics"]
    assert metrics["n_images"] == 24 and metrics["n_instances"] == 24 * 9
    for key in ("det_iou50", "classif", "both"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["both"] <= min(metrics["det_iou50"], metrics["classif"]) + 1e-9
    assert record["train"]["steps"] == 6
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    eval_json = tmp_path / "eval.json"
    rc = mist(["eval", str(out / "run"), "--data", str(out / "data"), "--json", str(eval_json)])
    assert rc == 0
    again = json.loads(eval_json.read_text())["metrics"]
    for key in ("det_iou50", "classif", "both"):
        assert again[key] == metrics[key]
