"""Training on CUDA (marker ``cuda``; skipped without a GPU; run by benchmarks/gpu_check.sh):
the first step's losses match the CPU's (eager, bf16, compiled), a few steps stay finite in fp32 and bf16, and two GPUs
under torchrun (NCCL) match one."""

import json
import subprocess
import sys

import pytest
import torch
from cli_helpers import subprocess_env

from mistnet import loop
from mistnet.acceleration import accelerate
from mistnet.config import apply_overrides, load_preset
from mistnet.data.runs import adopt_data, open_data
from mistnet.data.sampling import loader
from mistnet.engine import Batch
from mistnet.models.build import build_model
from mistnet.rundir import Run
from mistnet.trainer import build_trainer

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SMALL = ["train.steps=6", "train.log_every=1", "train.val_batches=1", "data.n_val=8"]


def _first_step(device: str, precision: str = "fp32", compile: bool = False):
    cfg = load_preset("tiny-cpu")
    _, train_set = open_data(cfg, None, "train")
    adopt_data(cfg, train_set, None)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, cfg.train.method).to(device)
    trainer = build_trainer(model, cfg.train)
    accelerate([model.heatmap_net, model.task_net], torch.device(device), precision, compile)
    raw = next(iter(loader(train_set, cfg.train.batch_size, 0)))
    result = trainer.step(Batch.from_dict(raw, device))
    return float(result.task), float(result.heatmap)


def test_first_step_on_cuda_matches_the_cpu():
    cpu, cuda = _first_step("cpu"), _first_step("cuda")
    # cuDNN's kernels (TF32 convolutions on recent GPUs) round differently from the CPU's.
    assert cuda == pytest.approx(cpu, rel=1e-2)
    assert _first_step("cuda", "bf16") == pytest.approx(cpu, rel=1e-1)
    assert _first_step("cuda", compile=True) == pytest.approx(cuda, rel=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_few_cuda_steps_stay_finite(tmp_path, precision):
    cfg = apply_overrides(load_preset("tiny-cpu"), SMALL)
    summary = loop.train(cfg, tmp_path / "run", device="cuda", progress=False, precision=precision)
    assert summary["steps"] == 6 and summary["device"].startswith("cuda")
    records = Run(tmp_path / "run").records()
    losses = [r[k] for r in records if r["split"] == "train" for k in ("task", "heatmap")]
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_under_torchrun_match_one(tmp_path):
    argv = ["--preset", "tiny-cpu", "--no-progress", "--device", "cuda"]
    for s in SMALL:
        argv += ["--set", s]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + ["-m", "mistnet", "train", "--out", str(tmp_path / "two"), *argv],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["processes"] == 2
    cfg = apply_overrides(load_preset("tiny-cpu"), SMALL)
    loop.train(cfg, tmp_path / "one", device="cuda", progress=False)
    one, two = (
        [r["task"] for r in Run(tmp_path / d).records() if r["split"] == "train"]
        for d in ("one", "two")
    )
    assert two == pytest.approx(one, rel=1e-3)
