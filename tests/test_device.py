import re

import pytest
import torch

from mistnet.device import check_device, resolve_device
from mistnet.errors import MistError


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:12", "auto"])
def test_check_device_accepts_the_documented_names(name):
    assert check_device(name) == name


@pytest.mark.parametrize("name", ["tpu", "cuda:", "cuda:x", "CPU", "", "gpu"])
def test_check_device_rejects_anything_else(name):
    with pytest.raises(MistError, match="--device must be"):
        check_device(name)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(want)
    if not torch.cuda.is_available():
        with pytest.raises(MistError, match="no CUDA device"):
            resolve_device("cuda:0")


@pytest.mark.parametrize("name", ["cuda:007", "cuda:01", "cuda:+1", "cuda:-1", "cuda: 1"])
def test_check_device_refuses_an_index_torch_does_not_write(name):
    """Before: ``cuda:007`` passed, and torch's own RuntimeError was an internal error."""
    with pytest.raises(
        MistError, match=re.escape(f"must be cpu, cuda, cuda:N or auto, got '{name}'")
    ):
        check_device(name)


def test_check_device_refuses_an_index_of_thousands_of_digits(monkeypatch):
    """Before: int() raised on 5,000 digits, a ValueError out of the check (internal error)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    name = "cuda:" + "1" * 5000
    with pytest.raises(MistError, match=re.escape("got 'cuda:111111111111111'... (5,005 char")):
        check_device(name)


@pytest.mark.parametrize("name", ["cuda:1", "cuda:99", "cuda:99999999999999999999"])
def test_resolve_device_refuses_an_index_past_the_machine_s_gpus(monkeypatch, name):
    """Before: ``cuda:99`` on a one-GPU machine was taken, and failed at the first tensor put
    there (a huge index in torch, a RuntimeError: an internal error)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(MistError, match=f"--device {name}: this machine has one CUDA device, "):
        resolve_device(check_device(name))
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.parametrize("device", [torch.device("cpu"), torch.device("cpu", 0), "cpu:0"])
def test_loop_train_takes_a_torch_device_and_records_its_name(tmp_path, device):
    """Before: a ``torch.device`` failed with AttributeError ('startswith') in resolve_device;
    ``"cpu:0"`` was recorded as ``cpu:0`` where the command line records ``cpu``."""
    import json

    from mistnet import loop
    from mistnet.config import resolve

    cfg = resolve("tiny-cpu", ["train.steps=1", "data.n_val=8", "train.val_batches=1"])
    summary = loop.train(cfg, tmp_path / "run", device=device, progress=False, threads=1)
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["device"] == written["device"] == "cpu"
