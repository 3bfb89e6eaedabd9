"""Data-parallel training (mistnet.distributed): 2 gloo processes under torchrun reproduce one
process at the same global batch, only rank 0 writes, and the run resumes in one process."""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest
import torch
from cli_helpers import subprocess_env
from helpers import small_mnist

from mistnet import distributed, loop
from mistnet.config import apply_overrides, load_json, load_preset
from mistnet.data.digits import read_idx, write_idx
from mistnet.data.sampling import StepSampler
from mistnet.distributed import GlobalBatchNorm2d, World, shard_config
from mistnet.errors import MistError
from mistnet.io import atomic_write_text
from mistnet.rundir import Run

# 20 steps of tiny-cpu at its batch of 8 (4 images per rank), every step logged; validation
# at step 20 on 2 batches of 8 scenes (sharded: one batch per rank).
SETTINGS = ["train.steps=20", "train.log_every=1", "data.n_val=16"]
# From the same weights the sharded step is exact (the x-step on two halves at lr_keypoints / 2 gives
# bitwise the keypoints of the whole batch). Float rounding differs with the shard's batch size
# (convolution blocking, sums over 4 images instead of 8): measured over 20 steps, task losses
# agree to 1.4e-7 relative and the weights to 6e-6, but the heatmap loss, taken at keypoints
# that the x-step moved by lr_keypoints = 1e4 times a gradient and that E_K picks discretely, to 2.6e-3.
RTOL = (1e-4, 2e-2)  # (task, heatmap), with room for other CPUs


def _assert_close(ours, reference, steps):
    for step in steps:
        for name, a, b, rtol in zip(
            ("task", "heatmap"), ours[step], reference[step], RTOL, strict=True
        ):
            assert a == pytest.approx(b, rel=rtol), (step, name)


def _losses(run_dir, split="train"):
    return {
        r["step"]: (r["task"], r["heatmap"]) for r in Run(run_dir).records() if r["split"] == split
    }


def test_sampler_shards_partition_each_batch():
    one = list(StepSampler(20, 8, seed=3, start_step=1, steps=4))
    shards = [
        list(StepSampler(20, 8, seed=3, start_step=1, steps=4, rank=r, world_size=2))
        for r in range(2)
    ]
    for t in range(3):
        assert shards[0][4 * t : 4 * t + 4] + shards[1][4 * t : 4 * t + 4] == one[8 * t : 8 * t + 8]


def test_shard_config_splits_batch_and_x_step():
    cfg = load_preset("tiny-cpu").train
    shard = shard_config(cfg, World(1, 4))
    assert (shard.batch_size, shard.lr_keypoints) == (cfg.batch_size // 4, cfg.lr_keypoints / 4)
    with pytest.raises(MistError, match="does not split over 3 processes"):
        shard_config(cfg, World(0, 3))


def test_global_batch_norm_is_batch_norm_in_one_process():
    torch.manual_seed(0)
    plain = torch.nn.BatchNorm2d(2)
    ours = GlobalBatchNorm2d(2)
    x = torch.randn(3, 2, 5, 5)
    torch.testing.assert_close(ours(x), plain(x))
    torch.testing.assert_close(ours.running_var, plain.running_var)


def test_two_gloo_processes_match_one_and_resume_in_one(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    argv = ["--preset", "tiny-cpu", "--out", str(two), "--no-progress", "--threads", "1"]
    for s in SETTINGS:
        argv += ["--set", s]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + ["-m", "mistnet", "train", *argv],
        capture_output=True,
        text=True,
        env={**subprocess_env(), "OMP_NUM_THREADS": "1"},
        cwd=tmp_path,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]  # includes the ranks' weights check
    summary = json.loads(done.stdout)  # one summary: rank 1 printed nothing
    assert summary["processes"] == 2 and summary["steps"] == 20

    # Only rank 0 wrote: one log line per step (not two), nothing outside the run directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]
    assert len(_losses(two)) == 20 and len(Run(two).records()) == 21

    cfg = apply_overrides(load_preset("tiny-cpu"), [*SETTINGS[1:], "train.steps=24"])
    loop.train(cfg, one, progress=False, threads=1)
    reference, ours = _losses(one), _losses(two)
    _assert_close(ours, reference, range(1, 21))

    # Sharded validation saw the whole split (rank 0 alone would count 8 scenes) and agrees
    # with one process's: the same ground truth counts, metrics at near-identical weights.
    (val_two,) = [r for r in Run(two).records() if r["split"] == "val"]
    (val_one,) = [r for r in Run(one).records() if r["split"] == "val" and r["step"] == 20]
    assert val_two["n_images"] == 16 and val_two["n_instances"] == val_one["n_instances"]
    for key in ("det_iou50", "classif", "both"):
        assert val_two[key] == pytest.approx(val_one[key], abs=0.02), key

    # Resume the 2-process run in one process for 4 more steps.
    saved = load_json(two / "config.json")
    saved.train.steps = 24
    atomic_write_text(two / "config.json", saved.to_json())
    summary = loop.train(cfg, two, resume=True, progress=False, threads=1)
    assert summary["steps"] == 24 and "processes" not in summary
    resumed = _losses(two)
    _assert_close(resumed, reference, range(21, 25))


def _agents(tmp_path, extra: list[list[str]], steps: int = 6) -> list[tuple[int, str, str]]:
    """Two torchrun agents of one process each (``node0/``, ``node1/``) training tiny-cpu into
    ``run``, each with its own extra arguments; their exit statuses, stdout and stderr."""
    port = _free_port()
    agents = []
    for node in (0, 1):
        (tmp_path / f"node{node}").mkdir(exist_ok=True)
        launch = ["--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1"]
        launch += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}"]
        argv = ["train", "--preset", "tiny-cpu", "--out", "run", "--no-progress", "--threads", "1"]
        argv += ["--set", f"train.steps={steps}", *extra[node]]
        agents.append(
            subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "mistnet", *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**subprocess_env(), "OMP_NUM_THREADS": "1"},
                cwd=tmp_path / f"node{node}",
            )
        )
    outputs = [agent.communicate(timeout=180) for agent in agents]
    return [(a.returncode, out, err) for a, (out, err) in zip(agents, outputs, strict=True)]


def test_two_machines_rendezvous_and_only_global_rank_0_writes(tmp_path):
    """Two torchrun agents, one process each, meeting through the c10d rendezvous as two
    machines would (here both on 127.0.0.1): one run of 2 processes, written once."""
    val = ["--set", "data.n_val=16"]  # data.workers is each machine's own (it was refused)
    ended = _agents(tmp_path, [[*val, "--set", "data.workers=1"], val])
    for code, _, err in ended:
        assert code == 0, err[-3000:]
    written = [node for node in (0, 1) if (tmp_path / f"node{node}" / "run").exists()]
    assert len(written) == 1  # global rank 0's machine, whichever the rendezvous chose
    (out,) = [o for _, o, _ in ended if o.strip()]
    summary = json.loads(out)
    assert summary["processes"] == 2 and summary["steps"] == 6
    run_dir = tmp_path / f"node{written[0]}" / "run"
    (val,) = [r for r in Run(run_dir).records() if r["split"] == "val"]
    assert val["n_images"] == 16  # validation sharded over both machines' processes


def _mist_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mist train:")]


@pytest.mark.parametrize(
    ("extra", "differs"),
    [
        (["--set", "train.lr_task=0.01"], "train.lr_task differs"),
        (["--max-minutes", "5"], "--max-minutes differs"),  # Before: gloo's abort (exit 134)
        # Before: a folder path on one process only left the key out there: gloo's abort
        (["--data", "{D}"], "data.n_test, data.n_train, data.n_val and 5 more differ"),
    ],
)
def test_processes_given_other_settings_refuse_together_before_training(tmp_path, extra, differs):
    """Before: two machines given other --set values trained all their steps, then said their
    weights "diverged (a bug: please report it)", the run's config naming one side's values;
    datasets of one path made with other seeds trained mixed, silently; --max-minutes given to
    one only put the collectives out of step."""
    if "{D}" in extra:
        data = tmp_path / "D"
        make = ["data", "make", "mnist-hard", "--out", data, "--n-train", "16", "--n-val", "8"]
        subprocess.run(
            [sys.executable, "-m", "mistnet", *map(str, make), "--n-test", "4"],
            check=True, capture_output=True, env=subprocess_env(), timeout=120,
        )  # fmt: skip
        extra = [str(data) if a == "{D}" else a for a in extra]
    ended = _agents(tmp_path, [[], extra])
    for code, _, err in ended:
        assert code != 0 and _mist_lines(err) == [
            "mist train: error: the 2 processes of this run were given other settings or data "
            f"({differs}); start each with the same command and the same dataset"
        ], err[-2000:]
    assert not (tmp_path / "node0" / "run").exists() and not (tmp_path / "node1" / "run").exists()


def test_processes_given_data_digits_folders_of_other_digits_refuse_together(tmp_path):
    """Before: each machine's ``data.digits`` folder was compared as "(a folder)" only: with
    other digits in one (here inverted), the two processes trained on mixed data, exit 0."""
    for node in (0, 1):
        idx = tmp_path / f"node{node}" / "idx"
        small_mnist(idx, n_train=120, n_test=40)
        if node == 1:
            stem = idx / "train-images-idx3-ubyte"
            write_idx(stem, 255 - read_idx(stem, 3))
    digits = ["--set", "data.digits=idx", "--set", "data.n_train=16", "--set", "data.n_val=8"]
    ended = _agents(tmp_path, [digits, digits])
    for code, _, err in ended:
        assert code != 0 and _mist_lines(err) == [
            "mist train: error: the 2 processes of this run were given other settings or data "
            "(the training data, the validation data differ); start each with the same "
            "command and the same dataset"
        ], err[-2000:]
    assert not (tmp_path / "node0" / "run").exists() and not (tmp_path / "node1" / "run").exists()


def test_the_content_digest_tells_imported_photos_of_other_pixels_apart(tmp_path):
    """Before: processes compared ``record.data_manifest``, the digest of the options a dataset
    was made with: two machines' imports of other photos under the same names trained mixed."""
    from mistnet.data.runs import content_digest, manifest_digest
    from mistnet.data.store import SceneFolder, write_dataset

    def photos(folder, value):
        arrays = {"images": np.full((2, 1, 8, 8), value, np.uint8)}
        arrays |= {"boxes": np.zeros((2, 0, 4), np.float32), "labels": np.zeros((2, 0), np.int64)}
        arrays["counts"] = np.zeros(2, np.int64)
        write_dataset(folder, "images", {"train": arrays, "val": arrays}, {"generator": "images"})
        return SceneFolder(folder, "train")

    a, b = photos(tmp_path / "a", 1), photos(tmp_path / "b", 2)
    assert manifest_digest(a.manifest) == manifest_digest(b.manifest)  # the options agree
    assert content_digest(a) != content_digest(b)
    assert content_digest(a) == content_digest(photos(tmp_path / "c", 1))
    assert content_digest(None) == "none"


def test_other_processes_wait_for_rank_0_s_claim_of_the_run_directory(tmp_path):
    """Before: with rank 0 refusing --out (a folder of the user's), rank 1 went on: it removed
    what looked like a killed writer's temporary in that folder, then stopped at its first
    collective with an internal error quoting gloo."""
    for node in (0, 1):
        user = tmp_path / f"node{node}" / "run"
        user.mkdir(parents=True)
        (user / "notes.txt").write_text("mine")
        (user / ".notes.txt.3999999.deadbeef.tmp").write_text("draft")
    ended = _agents(tmp_path, [[], []])
    lines = sorted(line for _, _, err in ended for line in _mist_lines(err))
    assert [code for code, _, _ in ended] != [0, 0] and len(lines) == 2, ended
    assert "run: exists and was not made by mist train" in lines[1]
    assert lines[0].endswith(
        "of 2: process 0 could not claim the run directory (its own message says why); "
        "this one stops too"
    )
    for node in (0, 1):
        names = sorted(p.name for p in (tmp_path / f"node{node}" / "run").iterdir())
        assert names == [".notes.txt.3999999.deadbeef.tmp", "notes.txt"]


def test_a_process_whose_peer_stopped_says_so_in_one_line(monkeypatch):
    """Before: when one process stopped (SIGTERM, a damaged split on its machine, a refused
    --out), the others' next collective raised gloo's RuntimeError ("Connection closed by
    peer ... GLHF!"): an internal error with a traceback file, beside the real message."""
    joins = _fake_gpus(monkeypatch, 0)
    monkeypatch.setenv("RANK", "1")
    gloo = "[/w/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [::1]:5"
    with pytest.raises(MistError, match=r"^process 1 of 2: another process of this run stopped"):
        with distributed.process_group("cpu"):
            raise RuntimeError(gloo)
    with pytest.raises(RuntimeError, match="^some other failure$"):  # a bug stays one
        with distributed.process_group("cpu"):
            raise RuntimeError("some other failure")
    assert len(joins) == 2


def test_a_port_of_leading_zeros_reaches_torch_as_its_number(monkeypatch):
    """Before: taken as 29533, but torch's env:// rendezvous read the variable itself (int() of
    5,005 digits): an internal error."""
    joins = _fake_gpus(monkeypatch, 0)
    monkeypatch.setenv("MASTER_PORT", "0" * 5000 + "29533")
    with distributed.process_group("cpu"):
        assert os.environ["MASTER_PORT"] == "29533"
    assert joins[0][3] == "127.0.0.1:29533"


@pytest.mark.parametrize(("batch_size", "world_size"), [(0, 1), (8, 3), (8, 0)])
def test_step_sampler_refuses_a_batch_that_does_not_split_over_the_processes(
    batch_size, world_size
):
    """Before: batch_size 0 failed with ZeroDivisionError when iterated; 8 over 3 processes
    silently dropped two scenes of every batch."""
    with pytest.raises(ValueError, match="must be a positive multiple of world_size"):
        StepSampler(20, batch_size, seed=0, start_step=0, steps=2, world_size=world_size)


def test_step_sampler_refuses_an_epoch_whose_order_does_not_fit_in_memory(monkeypatch):
    """Before: ``data.n_train = 2**40`` on-the-fly scenes failed as "out of memory; try smaller
    images, batches or network sizes", naming nothing the user had set."""
    monkeypatch.setattr("mistnet.machine.available_memory", lambda: 10**9)
    with pytest.raises(ValueError, match=r"1,099,511,627,776 training scenes need .* \(data.n_tra"):
        StepSampler(2**40, 8, seed=0, start_step=0, steps=2)
    assert len(StepSampler(10**6, 8, seed=0, start_step=0, steps=2)) == 16  # 8 MB: fits


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "RANK is not set in the environment (WORLD_SIZE=2)"),
        ({"RANK": "0"}, "MASTER_ADDR is not set in the environment (WORLD_SIZE=2)"),
        ({"RANK": "0", "MASTER_ADDR": "localhost"}, "MASTER_PORT is not set"),
        (
            {"RANK": "0", "MASTER_ADDR": "localhost", "MASTER_PORT": "notaport"},
            "MASTER_PORT='notaport' in the environment: a port number, 1 to 65535",
        ),
        (
            {"RANK": "1", "MASTER_ADDR": "localhost", "MASTER_PORT": "65536"},
            "MASTER_PORT='65536'",
        ),
        (  # Before: int() of 5,000 digits, a ValueError at exit (internal error, exit 1)
            {"RANK": "1", "MASTER_ADDR": "localhost", "MASTER_PORT": "0" * 5000 + "70000"},
            "MASTER_PORT='00000000000000000000'... (5,005 characters) in the environment",
        ),
    ],
)
def test_several_processes_need_rank_and_the_rendezvous_address(
    monkeypatch, capsys, tmp_path, env, message
):
    """Before: torchrun_world took a missing RANK for 0 and torch's ValueError ("RANK expected,
    but not set") was an internal error (exit 1)."""
    from cli_helpers import assert_user_error, mist

    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "r", "--threads", "1"]
    assert_user_error(mist(capsys, *argv, "--no-progress"), message)
    cfg = load_preset("tiny-cpu")
    with pytest.raises(MistError, match=re.escape(message)):  # fit's ValueError too
        loop.train(cfg, tmp_path / "r", progress=False, threads=1)
    assert not (tmp_path / "r").exists()


def _fake_gpus(monkeypatch, count: int) -> list:
    """Pretend a machine with ``count`` GPUs under torchrun; the joins that would happen."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    joins = []
    monkeypatch.setattr(distributed, "_join", lambda *args: joins.append(args))
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: None)
    env = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return joins


@pytest.mark.parametrize(
    ("local_rank", "device", "message"),
    [
        ("abc", "cuda", "LOCAL_RANK='abc' in the environment: this process's GPU, an integer"),
        (
            "2",
            "cuda",
            "LOCAL_RANK='2' in the environment: this process's GPU, an integer in [0, 2)",
        ),
        ("0" * 5000 + "2", "cuda", "LOCAL_RANK='00000000000000000000'... (5,001 characters)"),
        (None, "cuda", "LOCAL_RANK is not set in the environment (WORLD_SIZE=2, on CUDA)"),
        ("0", "cuda:1", "cuda:1 under torchrun (WORLD_SIZE=2): each process takes the GPU"),
    ],
)
def test_cuda_under_torchrun_takes_the_gpu_local_rank(monkeypatch, local_rank, device, message):
    """Before: LOCAL_RANK=abc was a raw ValueError, LOCAL_RANK=7 gave cuda:7 on a machine of
    fewer GPUs, and ``--device cuda:1`` was silently cuda:LOCAL_RANK."""
    joins = _fake_gpus(monkeypatch, 2)
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    with pytest.raises(MistError, match=re.escape(message)):
        with distributed.process_group(device):
            pass
    assert joins == []  # refused before joining
    monkeypatch.setenv("LOCAL_RANK", "1")
    with distributed.process_group("cuda") as (world, rank_device):
        assert (world, rank_device) == (World(0, 2), "cuda:1")
    assert joins[0][0] == "nccl"


def test_a_process_whose_others_never_come_says_so_and_gives_up(monkeypatch, capsys):
    """Before: one process of WORLD_SIZE=2 waited silently 30 minutes in torch's rendezvous."""
    port = _free_port()
    env = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed, "JOIN_TIMEOUT", timedelta(seconds=2))
    monkeypatch.setattr(distributed, "WAIT_NOTICE_S", 0.0)
    message = f"the 2 processes of WORLD_SIZE did not all join at 127.0.0.1:{port} within 2 seconds"
    with pytest.raises(MistError, match=re.escape(message)) as exc:
        with distributed.process_group("cpu"):
            pass
    assert "\n" not in str(exc.value)
    err = capsys.readouterr().err
    assert f"waiting for the 2 processes of WORLD_SIZE at 127.0.0.1:{port} (up to 2 seconds)" in err
    assert not torch.distributed.is_initialized()


def test_sigterm_ends_a_process_waiting_for_the_others(tmp_path):
    """Before: SIGTERM and Ctrl-C did nothing while torch's C++ join waited (mistnet's handler
    raises an exception that cannot run there): the process had to be killed."""
    script = (
        "from mistnet import distributed\n"
        "from mistnet.signals import signals_as_exceptions\n"
        "distributed.WAIT_NOTICE_S = 0.0\n"
        "with signals_as_exceptions(), distributed.process_group('cpu'):\n"
        "    pass\n"
    )
    env = {**subprocess_env(), "WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    env["MASTER_PORT"] = str(_free_port())
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    try:
        # the line says the join has begun (import torch first: a few seconds)
        ready, _, _ = select.select([proc.stderr], [], [], 30)
        assert ready and "waiting for the 2 processes" in proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
