import json
import os

import pytest
import torch
from safetensors.torch import save_file

from mistnet import checkpoint as ckpt_mod
from mistnet.checkpoint import Checkpoint, save_checkpoint
from mistnet.config import apply_overrides, load_preset
from mistnet.errors import MistError
from mistnet.models.build import build_model


def tiny(overrides=()):
    cfg = apply_overrides(load_preset("tiny-cpu"), list(overrides))
    torch.manual_seed(0)
    return cfg, build_model(cfg.model, cfg.train.method)


def trained(seed=0):
    """A tiny model and an Adam whose state is not trivial (two steps taken)."""
    cfg, model = tiny()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(2):
        images = torch.rand(2, 1, 32, 32, generator=g)
        kp = torch.tensor([[[10.0, 12.0, 20.0], [20.0, 15.0, 20.0]]]).expand(2, -1, -1)
        logits = model.run_task(images, kp).task
        loss = logits.logsumexp(-1).mean() + model.heatmap_net(images).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cfg, model, opt


def test_round_trip_model_and_adam_state(tmp_path):
    cfg, model, opt = trained()
    path = tmp_path / "last.safetensors"
    extra = {"best": 0.5, "history": [1, 2]}
    save_checkpoint(path, model, {"all": opt}, config=cfg.to_dict(), step=17, extra=extra)

    _, fresh = tiny()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    ck = Checkpoint(path)
    ck.load_model(fresh)
    ck.load_optimizer("all", fresh_opt)
    assert ck.step == 17 and ck.extra == extra
    assert ck.config == json.loads(cfg.to_json())

    ref, got = model.state_dict(), fresh.state_dict()
    assert ref.keys() == got.keys()
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    a, b = opt.state_dict(), fresh_opt.state_dict()
    # JSON metadata turns the betas tuple into a list; Adam reads either.
    assert json.loads(json.dumps(a["param_groups"])) == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for idx in a["state"]:
        for field, value in a["state"][idx].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][idx][field]))

    # The restored pair continues exactly like the original one.
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    for m, o in ((model, opt), (fresh, fresh_opt)):
        loss = m.heatmap_net(images).pow(2).mean()
        o.zero_grad()
        loss.backward()
        o.step()
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_missing_file(tmp_path):
    with pytest.raises(MistError, match="does not exist"):
        Checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file_is_rejected(tmp_path):
    cfg, model, opt = trained()
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model, {"all": opt}, config=cfg.to_dict(), step=3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MistError, match="corrupt or truncated"):
        Checkpoint(path)


def test_garbage_file_is_rejected(tmp_path):
    path = tmp_path / "best.safetensors"
    path.write_bytes(os.urandom(3000))
    with pytest.raises(MistError):
        Checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(MistError):
        Checkpoint(path)


def test_foreign_safetensors_file_is_rejected(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(MistError, match="not a mistnet checkpoint"):
        Checkpoint(path)


def test_wrong_model_is_rejected(tmp_path):
    cfg, model, _ = trained()
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model, config=cfg.to_dict(), step=1)
    _, wider = tiny(["model.heatmap_width=12"])
    with pytest.raises(MistError, match="does not fit this model"):
        Checkpoint(path).load_model(wider)
    _, recon = tiny(["model.task=reconstruct"])
    with pytest.raises(MistError, match="does not fit this model"):
        Checkpoint(path).load_model(recon)
    with pytest.raises(MistError, match="no state for optimiser 'task'"):
        Checkpoint(path).load_optimizer("task", torch.optim.Adam(wider.parameters()))


def test_atomic_write_leaves_no_temporary_files(tmp_path, monkeypatch):
    cfg, model, opt = trained()
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model, {"all": opt}, config=cfg.to_dict(), step=1)
    save_checkpoint(path, model, {"all": opt}, config=cfg.to_dict(), step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:  # half a file, then the "power cut"
            f.write(b"\x00" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, {"all": opt}, config=cfg.to_dict(), step=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]
    assert path.read_bytes() == before
    assert Checkpoint(path).step == 2
