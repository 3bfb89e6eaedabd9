import json
import math
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

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

    def crash(self, data):
        with open(self, "wb") as f:  # half a file, then the "power cut"
            f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, {"all": opt}, config=cfg.to_dict(), step=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]
    assert path.read_bytes() == before
    assert Checkpoint(path).step == 2


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint's bytes and what it holds."""
    cfg, model, opt = trained()
    path = tmp_path_factory.mktemp("ckpt") / "last.safetensors"
    save_checkpoint(path, model, {"all": opt}, config=cfg.to_dict(), step=2, extra={"best": 0.5})
    c = Checkpoint(path)
    return path.read_bytes(), c.tensors, (c.step, c.config, c.optimizers, c.extra)


def _header_end(raw: bytes) -> int:
    return 8 + struct.unpack("<Q", raw[:8])[0]


def test_a_changed_tensor_byte_is_refused_by_the_checksum(tmp_path, saved):
    raw, _, _ = saved
    buf = bytearray(raw)
    buf[_header_end(raw) + 40] ^= 0x01  # one bit of one weight: still a finite float
    (tmp_path / "best.safetensors").write_bytes(bytes(buf))
    with pytest.raises(MistError, match=r"best.safetensors is corrupt: its bytes do not match"):
        Checkpoint(tmp_path / "best.safetensors")


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_corruption_of_a_checkpoint_is_refused_or_harmless(tmp_path, saved, data):
    """A flipped byte anywhere (header, metadata, tensors) or a cut: one-line MistError, or the
    very same content (a flip that only made the file look like an older one without digest)."""
    raw, tensors, meta = saved
    buf = bytearray(raw)
    region = data.draw(st.sampled_from(["header", "tensors", "truncate"]))
    lo, hi = (0, _header_end(raw)) if region == "header" else (_header_end(raw), len(raw))
    at = data.draw(st.integers(lo, hi - 1))
    if region == "truncate":
        del buf[at:]
    else:
        buf[at] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "last.safetensors"
    path.write_bytes(bytes(buf))
    try:
        c = Checkpoint(path)
    except MistError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert (c.step, c.config, c.optimizers, c.extra) == meta
    assert c.tensors.keys() == tensors.keys()
    assert all(torch.equal(c.tensors[k], v) for k, v in tensors.items())


def test_non_finite_weights_and_a_negative_step_are_refused(tmp_path):
    cfg, model, _ = trained()
    save_checkpoint(tmp_path / "nan.safetensors", model, config=cfg.to_dict(), step=1)
    name = next(k for k in model.state_dict() if k.startswith("task_net."))
    _rewritten(
        tmp_path / "nan.safetensors", lambda t, m: t[f"model.{name}"].view(-1)[:1].fill_(math.nan)
    )
    with pytest.raises(MistError, match=r"nan.safetensors: model\.task_net\.\S+ holds 1 NaN"):
        Checkpoint(tmp_path / "nan.safetensors")
    # Before: save_checkpoint wrote NaN weights, a file its reader then refused
    with torch.no_grad():
        next(model.task_net.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=r"model\.task_net\.\S+ holds NaN or infinite values"):
        save_checkpoint(tmp_path / "nan2.safetensors", model, config=cfg.to_dict(), step=1)
    assert not (tmp_path / "nan2.safetensors").exists()
    _, model, _ = trained()
    # Before: save_checkpoint wrote step -5, which its reader then called damaged
    with pytest.raises(ValueError, match="step must be an integer in \\[0, 2\\*\\*63\\), got -5"):
        save_checkpoint(tmp_path / "neg.safetensors", model, config=cfg.to_dict(), step=-5)
    assert not (tmp_path / "neg.safetensors").exists()
    save_checkpoint(tmp_path / "neg.safetensors", model, config=cfg.to_dict(), step=5)
    _rewritten(tmp_path / "neg.safetensors", lambda t, m: m.update(step="-5"))
    with pytest.raises(MistError, match=r"neg.safetensors has damaged metadata \(step '-5' is no"):
        Checkpoint(tmp_path / "neg.safetensors")
    for kwargs, error, message in [
        ({"config": 5}, TypeError, "config must be a dict, got int"),
        ({"extra": {"best": "high"}}, ValueError, "extra: "),
        ({"model": 5}, TypeError, "model must be a torch module, got int"),
        ({"optimizers": [1]}, TypeError, "optimizers must be a dict"),
    ]:
        call = {"model": model, "config": cfg.to_dict(), "step": 1, **kwargs}
        with pytest.raises(error, match=message):
            save_checkpoint(tmp_path / "x.safetensors", **call)
    assert not (tmp_path / "x.safetensors").exists()


def _rewritten(path, change):
    """The checkpoint ``path`` written again with ``change(tensors, metadata)`` applied and its
    digest made again (as a tool that knew the format would)."""
    from safetensors.torch import load, save

    from mistnet.checkpoint import DIGEST, _digest

    raw = path.read_bytes()
    tensors = load(raw)
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    change(tensors, meta)
    meta[DIGEST] = _digest(tensors, meta)
    path.write_bytes(save(tensors, metadata=meta))


def test_a_float8_tensor_and_a_step_of_other_digits_are_refused(tmp_path):
    """Before: a float8 tensor was an internal error (torch has no isfinite of float8);
    a step of Arabic-Indic digits or with spaces was read as 3 by int()."""
    cfg, model, _ = trained()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, config=cfg.to_dict(), step=3)
    _rewritten(path, lambda t, m: t.update(extra=torch.zeros(3).to(torch.float8_e4m3fn)))
    with pytest.raises(MistError, match="extra is of dtype torch.float8_e4m3fn, which no"):
        Checkpoint(path)
    for step in ("\u0663", " 3 "):
        save_checkpoint(path, model, config=cfg.to_dict(), step=3)
        _rewritten(path, lambda t, m, step=step: m.update(step=step))
        with pytest.raises(MistError, match="has damaged metadata \\(step '.*' is no whole"):
            Checkpoint(path)


def test_a_checkpoint_of_another_width_is_refused_in_one_short_line(tmp_path):
    cfg, model, _ = trained()
    save_checkpoint(tmp_path / "last.safetensors", model, config=cfg.to_dict(), step=1)
    _, wider = tiny(["model.heatmap_width=12"])
    with pytest.raises(MistError) as info:
        Checkpoint(tmp_path / "last.safetensors").load_model(wider)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    assert re.search(
        r"does not fit this model: \d+ tensors of other shapes \(first heatmap_net", message
    )
    assert "another config" in message


def test_integer_or_bool_weights_are_refused_not_cast(tmp_path):
    """Before: a checkpoint whose float weights were stored as int64 or bool (a file rewritten
    without its digest) was cast into the float parameters: a model that scored 0, without a
    word. Float weights of another width are still taken (a double model loads float32)."""
    cfg, model = tiny()
    for dtype in (torch.int64, torch.bool):
        path = tmp_path / f"{dtype}.safetensors"
        save_checkpoint(path, model, config=cfg.to_dict(), step=1)
        ckpt = Checkpoint(path)
        ckpt.tensors = {k: v.to(dtype) if v.is_floating_point() else v
                        for k, v in ckpt.tensors.items()}  # fmt: skip
        with pytest.raises(MistError, match=r"tensors of another kind of number \(first .*: "
                           f"{dtype} here, torch.float32 in this model"):  # fmt: skip
            ckpt.load_model(tiny()[1])
    path = tmp_path / "f.safetensors"
    save_checkpoint(path, model, config=cfg.to_dict(), step=1)
    double = tiny()[1].double()
    Checkpoint(path).load_model(double)
    pairs = zip(model.parameters(), double.parameters(), strict=True)
    assert all(torch.equal(a.double(), b) for a, b in pairs)


def test_a_checkpoint_gets_the_permissions_of_any_new_file(tmp_path):
    """Mode 0666 less the umask, as ``open`` gives: safetensors' own writer makes 0600 files,
    which another user of a shared run directory (or a packaged wheel) cannot read."""
    cfg, model = tiny()
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "c.safetensors", model, config=cfg.to_dict(), step=0)
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(old)
    mode = (tmp_path / "c.safetensors").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "key, value, why",
    [
        ("config", "[" * 100_000, "JSON nested too deeply"),
        ("step", "1" * 5001, "an integer of more than 4300 digits"),
        ("extra", "{", "Expecting property name"),
        # before: a resume trained on, then stopped with a TypeError in the loop (its summary
        # removed, its log extended); NaN never let best.safetensors be written again
        ("extra", '{"best": "high"}', "extra.best = 'high'"),
        ("extra", '{"best": NaN}', "Expecting value|extra.best"),
        ("extra", '{"wall": "long"}', "extra.wall = 'long'"),
        ("extra", '{"best_step": -1}', "extra.best_step = -1"),
        ("config", "[1]", "config is no map"),  # was "(step 1)"
    ],
)
def test_damaged_metadata_is_refused_in_one_line(tmp_path, key, value, why):
    # Before: metadata JSON nested 100,000 deep (no digest to check: an older checkpoint) was an
    # internal error (RecursionError); a step of 5,001 digits advised a Python call.
    from safetensors.torch import load, save

    cfg, model, _ = trained()
    save_checkpoint(tmp_path / "ok.safetensors", model, config=cfg.to_dict(), step=1)
    data = (tmp_path / "ok.safetensors").read_bytes()
    size = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + size])["__metadata__"]
    del meta["digest"]
    meta[key] = value
    (tmp_path / "bad.safetensors").write_bytes(save(load(data), metadata=meta))
    with pytest.raises(MistError, match=rf"bad.safetensors has damaged metadata \({why}"):
        Checkpoint(tmp_path / "bad.safetensors")


def test_a_checkpoint_path_that_is_no_file_says_what_it_is(tmp_path):
    # Before: "checkpoint /dev/null does not exist" (train.init_from="/dev/null").
    with pytest.raises(MistError, match="/dev/null: a character device, not a regular file"):
        Checkpoint("/dev/null")
    with pytest.raises(MistError, match=f"checkpoint {tmp_path / 'x'} does not exist"):
        Checkpoint(tmp_path / "x")


def test_a_checkpoint_larger_than_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    # Before: a bare MemoryError from reading a huge (or sparse) file whole.
    from mistnet import checkpoint

    path = tmp_path / "huge.safetensors"
    with path.open("wb") as f:
        f.truncate(10_000_000)  # sparse: 10 MB that take no disk
    monkeypatch.setattr(checkpoint, "available_memory", lambda: 1_000_000)
    with pytest.raises(MistError, match="10,000,000 bytes, more than the 1,000,000 bytes"):
        Checkpoint(path)


def test_an_optimiser_tensor_of_a_strange_name_is_refused_in_one_line(tmp_path):
    """Before: ``optim.all.x`` or ``optim.all.abc.exp_avg`` gave an internal error (the name
    split and read as an index outside the check)."""
    from safetensors.torch import load, save

    cfg, model, opt = trained()
    save_checkpoint(tmp_path / "ok.safetensors", model, {"all": opt}, config=cfg.to_dict(), step=1)
    data = (tmp_path / "ok.safetensors").read_bytes()
    size = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + size])["__metadata__"]
    del meta["digest"]
    for name in ("optim.all.x", "optim.all.abc.exp_avg"):
        tensors = {**load(data), name: torch.zeros(1)}
        (tmp_path / "bad.safetensors").write_bytes(save(tensors, metadata=meta))
        with pytest.raises(MistError, match="the state of optimiser 'all' does not fit"):
            Checkpoint(tmp_path / "bad.safetensors").load_optimizer("all", opt)


def test_a_file_that_is_no_checkpoint_is_named_so(tmp_path):
    """Before: ``--set train.init_from=RUN/config.json`` said the checkpoint was "corrupt or
    truncated (Error while deserializing: header too large)"."""
    (tmp_path / "config.json").write_text('{"model": {}}')
    with pytest.raises(MistError, match="config.json is no checkpoint .*give a run directory"):
        Checkpoint(tmp_path / "config.json")


class _Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        self.b.weight = self.a.weight
        self.register_buffer("x", torch.arange(6.0))
        self.register_buffer("y", self.x[2:4])  # a view of x


def test_tied_weights_are_saved_and_valueless_or_float8_tensors_refused_by_name(tmp_path):
    """Before: tied weights (and a buffer viewing another) failed with safetensors' multi-line
    "Some tensors share memory" RuntimeError, meta and sparse tensors with torch's errors, and
    a float8 buffer was written, then refused by the reader."""
    tied = _Tied()
    save_checkpoint(tmp_path / "tied.safetensors", tied, config={}, step=0)
    back = _Tied()
    Checkpoint(tmp_path / "tied.safetensors").load_model(back)
    assert torch.equal(back.b.weight, tied.a.weight) and torch.equal(back.y, torch.tensor([2.0, 3]))
    sparse, f8 = torch.nn.Module(), torch.nn.Module()
    sparse.register_buffer("s", torch.eye(2).to_sparse())
    f8.register_buffer("s", torch.zeros(2, dtype=torch.float8_e4m3fn))
    for module, message in [
        (torch.nn.Linear(2, 2, device="meta"), "model.weight: a tensor on the meta device"),
        (sparse, "model.s: a tensor of torch.sparse_coo layout"),
        (f8, "model.s is of dtype torch.float8_e4m3fn"),
    ]:
        with pytest.raises(ValueError, match=message):
            save_checkpoint(tmp_path / "x.safetensors", module, config={}, step=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tied.safetensors"]


def test_a_dotdot_after_a_missing_folder_leaves_no_folder_behind(tmp_path, monkeypatch):
    """Before: save_checkpoint("made/../ok.safetensors") (and the figure writers) wrote the
    file and left the empty folder made/ behind."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MistError, match=r"made is no folder, so '\.\.' after it leads nowhere"):
        save_checkpoint("made/../ok.safetensors", torch.nn.Linear(1, 1), config={}, step=0)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_path_and_extras_json_cannot_write_are_refused_by_name(tmp_path):
    """Before: a directory as ``path`` raised IsADirectoryError from the final rename, numpy
    scalars as ``best`` / ``best_step`` were refused ("extra: extra.best = np.float32(0.5)")
    and a numpy array in ``extra`` raised json's "Object of type ndarray is not JSON
    serializable", naming no key."""
    import numpy as np

    model = torch.nn.Linear(2, 2)
    (tmp_path / "run").mkdir()
    with pytest.raises(MistError, match=r"checkpoint path .*run is a directory; give the file"):
        save_checkpoint(tmp_path / "run", model, config={}, step=0)
    for extra, error, message in [
        (
            {"history": [1, {"x": np.zeros(2)}]},
            TypeError,
            r"^extra\['history'\]\[1\]\['x'\]: "
            "Object of type ndarray is not JSON serializable",
        ),  # fmt: skip
        ({"lr": torch.tensor(1.0)}, TypeError, r"^extra\['lr'\]: Object of type Tensor"),
        ({"wall": torch.tensor(1.0)}, ValueError, r"^extra: extra\.wall = tensor\(1\.\)"),
        ({"best": np.float32("nan")}, ValueError, r"^extra: extra\.best = np\.float32\(nan\)"),
        ({"best_step": np.bool_(True)}, ValueError, r"^extra: extra\.best_step = np\.True_"),
    ]:
        with pytest.raises(error, match=message):
            save_checkpoint(tmp_path / "x.safetensors", model, config={}, step=0, extra=extra)
    with pytest.raises(TypeError, match=r"^config\['model'\]\['k'\]: Object of type Tensor"):
        save_checkpoint(tmp_path / "x.safetensors", model, config={"model": {"k": torch.tensor(3)}},
                        step=0)  # fmt: skip
    # optimisers that are not: an AttributeError on .state_dict; a list's many-line repr
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for optimizers, message in (
        ({"a": 5}, r"^optimizers\['a'\] must be a torch optimiser, got a int$"),
        ([opt], r"^optimizers must be a dict of name to optimiser, got a list$"),
    ):
        with pytest.raises(TypeError, match=message):
            save_checkpoint(tmp_path / "x.safetensors", model, optimizers, config={}, step=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written
    extra = {"best": np.float32(0.5), "best_step": np.int64(3), "wall": np.float64(2.0),
             "flags": [np.True_]}  # fmt: skip
    save_checkpoint(tmp_path / "ok.safetensors", model, config={}, step=np.int64(4), extra=extra)
    ckpt = Checkpoint(tmp_path / "ok.safetensors")
    assert ckpt.step == 4 and ckpt.extra == {"best": 0.5, "best_step": 3, "wall": 2.0,
                                             "flags": [True]}  # fmt: skip
    assert [type(ckpt.extra[k]) for k in ("best", "best_step")] == [float, int]
    with pytest.raises(TypeError, match="^model must be a torch module, got NoneType$"):
        ckpt.load_model(None)  # an AttributeError before
    # a path that is no path: pathlib's "expected str, bytes or os.PathLike object, not int";
    # a NUL: "does not exist", while save_checkpoint said what it was
    with pytest.raises(TypeError, match="^path must be a path as text, got int$"):
        Checkpoint(5)
    with pytest.raises(ValueError, match="holds a NUL character"):
        Checkpoint(tmp_path / "a\0b.safetensors")


def test_save_checkpoint_replaces_only_a_checkpoint(tmp_path):
    """Before: ``save_checkpoint("notes.txt", ...)`` replaced the user's notes with safetensors
    bytes, a symbolic link by a file and a FIFO too; ``model=None`` was an AttributeError and
    a step of 10**30 was written (config refuses anything from 2**63)."""
    import os

    model = torch.nn.Linear(2, 2)
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "link.safetensors").symlink_to(tmp_path / "notes.txt")
    os.mkfifo(tmp_path / "fifo.safetensors")
    for name, message in (
        ("notes.txt", "notes.txt exists and is no checkpoint mistnet wrote; give a new file name"),
        ("link.safetensors", "link.safetensors is a symbolic link; give a new file name"),
        ("fifo.safetensors", "fifo.safetensors exists and is no checkpoint mistnet wrote"),
    ):
        with pytest.raises(MistError, match=message):
            save_checkpoint(tmp_path / name, model, config={}, step=1)
    with pytest.raises(TypeError, match="^model must be a torch module, got NoneType$"):
        save_checkpoint(tmp_path / "new.safetensors", None, config={}, step=1)
    with pytest.raises(ValueError, match=r"step must be an integer in \[0, 2\*\*63\), got 10{30}"):
        save_checkpoint(tmp_path / "new.safetensors", model, config={}, step=10**30)
    assert (tmp_path / "notes.txt").read_text() == "my notes"
    assert (tmp_path / "link.safetensors").is_symlink()
    assert not (tmp_path / "new.safetensors").exists()
    for step in (1, 2):  # a checkpoint of its own is replaced
        save_checkpoint(tmp_path / "c.safetensors", model, config={}, step=step)
    assert Checkpoint(tmp_path / "c.safetensors").step == 2


def test_checkpoint_checks_its_device_before_reading(tmp_path):
    """Before: ``device="meta"`` was "Cannot copy out of meta tensor", ``device=5`` "Cannot
    access accelerator device when none is available", both after the file was read."""
    save_checkpoint(tmp_path / "c.safetensors", torch.nn.Linear(2, 2), config={}, step=1)
    with pytest.raises(ValueError, match="device must be cpu, cuda, cuda:N or auto, got 'meta'"):
        Checkpoint(tmp_path / "c.safetensors", device="meta")
    with pytest.raises(TypeError, match="device must be a string, got 5"):
        Checkpoint(tmp_path / "c.safetensors", device=5)
    assert Checkpoint(tmp_path / "c.safetensors", device="cpu:0").step == 1  # torch's spelling


@pytest.mark.parametrize(
    "config, extra, named",
    [
        ({"train": {"lr": float("nan")}}, None, "config['train']['lr'] is nan"),
        ({}, {"note": float("inf")}, "extra['note'] is inf"),
        ({}, {"history": [{"loss": np.float32("-inf")}]}, "extra['history'][0]['loss'] is -inf"),
    ],
)
def test_save_checkpoint_refuses_nan_or_infinity_in_config_or_extra_naming_the_key(
    tmp_path, config, extra, named
):
    """Before: NaN and infinity were written as null without a word (strict JSON), and read
    back as None."""
    path = tmp_path / "c.safetensors"
    with pytest.raises(ValueError, match=re.escape(f"{named}; a checkpoint's JSON holds no NaN")):
        save_checkpoint(path, nn.Linear(2, 2), config=config, step=1, extra=extra)
    assert not path.exists()


def test_load_model_refuses_a_module_on_the_meta_device(tmp_path):
    """Before: returned as if it had loaded; nothing was (torch only warned that copying into a
    meta parameter "is a no-op")."""
    path = tmp_path / "lin.safetensors"
    save_checkpoint(path, nn.Linear(2, 2), config={}, step=0)
    meta = nn.Linear(2, 2, device="meta")
    message = (
        r"^model: its parameter weight is on the meta device and holds no values to load "
        r"into; build it on a real device"
    )
    with pytest.raises(ValueError, match=message):
        Checkpoint(path).load_model(meta)
    assert meta.weight.is_meta  # untouched
    back = nn.Linear(2, 2)
    Checkpoint(path).load_model(back)  # a real module still loads


def test_a_checkpoint_whose_header_the_reader_would_refuse_is_not_written(tmp_path):
    """Before: 17 MB of extra records (a packaged model's card with a huge data name or
    half a million metrics) were written, then refused by ``--overwrite`` as "no checkpoint
    mistnet wrote" (is_checkpoint reads a header of at most 16 MiB)."""
    cfg, model = tiny()
    path = tmp_path / "m.safetensors"
    with pytest.raises(MistError, match="m.safetensors: a header of .* bytes .*; at most 16,777"):
        save_checkpoint(path, model, config=cfg.to_dict(), step=1, extra={"x": "y" * (1 << 24)})
    assert list(tmp_path.iterdir()) == []
    save_checkpoint(path, model, config=cfg.to_dict(), step=1, extra={"x": "y" * (1 << 20)})
    assert Checkpoint(path).extra["x"] == "y" * (1 << 20)
