"""A run's data: the explicit ``signed`` of every dataset, opening the run's split, fit checks."""

from __future__ import annotations

import pytest

from mistnet.config import apply_overrides, load_preset
from mistnet.data import SceneDataset, SceneFolder, build_generator, make_scenes, write_dataset
from mistnet.data.runs import check_data, open_data
from mistnet.errors import DataError, MistError


@pytest.mark.parametrize(
    "name, signed",
    [("mnist-easy", False), ("mnist-hard", False), ("mnist-hard-3to9", False), ("gabor", True)],
)
def test_signed_is_the_same_for_generator_dataset_and_folder(tmp_path, name, signed):
    generator = build_generator(name)
    assert generator.signed is signed
    assert SceneDataset(generator, "test", size=1).signed is signed
    d = write_dataset(tmp_path / name, name, {"test": make_scenes(generator, "test", range(2))})
    assert SceneFolder(d, "test").signed is signed


def test_open_data_defaults_to_the_runs_generator_with_its_seed_and_size():
    cfg = apply_overrides(load_preset("tiny-cpu"), ["data.n_test=3", "data.seed=5"])
    source, dataset = open_data(cfg, None, "test")
    assert source == cfg.data.name and len(dataset) == 3 and dataset.seed == 5
    source, dataset = open_data(cfg, "gabor", "val")
    assert source == "gabor" and len(dataset) == cfg.data.n_val


def test_open_data_refuses_a_missing_directory(tmp_path):
    cfg = load_preset("tiny-cpu")
    with pytest.raises(MistError, match="does not exist"):
        open_data(cfg, str(tmp_path / "missing"), "test")
    with pytest.raises(DataError):
        open_data(cfg, "mnist-medium", "test")


def test_check_data_reasons():
    classify = load_preset("tiny-cpu")
    gabor = SceneDataset("gabor", "test", size=1)
    with pytest.raises(
        MistError, match=r"float32 images .* class labels; a classifier takes uint8"
    ):
        check_data(classify, gabor, "gabor")
    recon = apply_overrides(classify, ["model.task=reconstruct"])
    with pytest.raises(
        MistError,
        match=r"float32 \(read as signed textures, as Gabor noise\) images .* sigmoid output",
    ):
        check_data(recon, gabor, "gabor")
    check_data(recon, SceneDataset("mnist-hard", "test", size=1), "mnist-hard")
    grid = apply_overrides(classify, ["train.method=grid"])
    grid.record.image_size = (60, 60)
    with pytest.raises(MistError, match="80x80 images but this grid baseline was trained on 60x60"):
        check_data(grid, SceneDataset("mnist-hard", "test", size=1), "mnist-hard")


def test_the_data_helpers_name_what_they_refuse():
    """Before: ``open_data(cfg, None, "valid")`` was a bare KeyError (``valid`` is ``val``
    everywhere else), ``open_data(cfg, 5, ...)`` pathlib's TypeError; ``load_digits("")`` read
    the working directory's IDX files; ``build_generator(None)`` the regex module's TypeError;
    ``accelerate(nets, "cpu", "bf16")`` an AttributeError ('str' has no 'type')."""
    import torch

    from mistnet.acceleration import accelerate
    from mistnet.config import load_preset
    from mistnet.data.digits import load_digits
    from mistnet.data.runs import open_data
    from mistnet.data.scenes import build_generator
    from mistnet.errors import DataError

    cfg = load_preset("tiny-cpu")
    assert len(open_data(cfg, None, "valid")[1]) == cfg.data.n_val
    for call, error, message in [
        (lambda: open_data(cfg, None, "bogus"), ValueError, "split must be one of train"),
        (lambda: open_data(cfg, 5, "val"), TypeError, "data must be a directory or generator"),
        (lambda: load_digits(""), DataError, "digits '' is empty"),
        (lambda: build_generator(None), TypeError, "name must be a generator name"),
        (lambda: accelerate([5], "cpu"), TypeError, "nets must be a list or tuple of torch modul"),
    ]:
        with pytest.raises(error, match=message):
            call()
    net = torch.nn.Linear(2, 2)
    accelerate([net], "cpu", "bf16")
    assert net(torch.rand(1, 2)).dtype == torch.float32


def test_adopting_a_dataset_records_its_generator_and_only_its_class_names(tmp_path):
    """Before: a run on a mnist-hard dataset recorded the preset's data.name 'mnist-easy', and
    class names of its config (an edited config.json as preset) beside unnamed data."""
    from mistnet.data.runs import adopt_data

    generator = build_generator("mnist-hard")
    splits = {s: make_scenes(generator, s, range(4)) for s in ("train", "val")}
    ds = write_dataset(tmp_path / "ds", "mnist-hard", splits)
    cfg = apply_overrides(load_preset("mnist-hard-cpu"), ["data.name=mnist-easy"])
    cfg.data.path = str(ds)
    cfg.record.class_names = tuple(f"c{i}" for i in range(10))
    adopt_data(cfg, SceneFolder(ds, "train"), SceneFolder(ds, "val"))
    assert cfg.data.name == "mnist-hard" and cfg.record.class_names == ()
    assert cfg.record.data_made_by == "mnist-hard"
    # and its sizes and digits, not the preset's 20,000 / 300 / 500 it never read
    d = cfg.data
    assert (d.n_train, d.n_val, d.n_test, d.digits) == (4, 4, 0, "embedded")
