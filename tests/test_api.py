"""mistnet.fit / mistnet.load and the in-memory dataset adapter (data.memory.SceneItems)."""

import copy
import functools
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import mistnet
import mistnet.prediction
from mistnet.data.memory import SceneItems
from mistnet.errors import MistError, MistWarning


def test_scene_items_read_images_labels_and_scene_dicts():
    grey = SceneItems([np.full((6, 7), 255, np.uint8)] * 2)
    assert (grey.channels, grey.height, grey.width) == (1, 6, 7) and grey.annotations == set()
    assert float(grey[0]["image"].max()) == 1.0 and int(grey[1]["count"]) == 0
    rgb = SceneItems([(Image.new("RGB", (5, 4), (255, 0, 0)), 3)])
    assert rgb.channels == 3 and rgb[0]["labels"].tolist() == [3]
    assert rgb[0]["image"][:, 0, 0].tolist() == [1.0, 0.0, 0.0]
    boxed = SceneItems(
        [{"image": torch.zeros(1, 8, 8), "labels": [1], "boxes": [[4.0, 4.0, 2.0, 2.0]]}]
    )
    assert boxed.annotations == {"boxes", "labels"} and boxed[0]["boxes"].shape == (1, 4)


class Named(torch.utils.data.Dataset):
    classes = ["a", "b"]

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_scene_items_refuse_what_they_cannot_use():
    assert SceneItems(Named([(torch.zeros(1, 4, 4), [0, 1])])).classes == ("a", "b")
    with pytest.raises(MistError, match="empty"):
        SceneItems([])
    with pytest.raises(MistError, match="C = 1 or 3"):
        SceneItems([torch.zeros(2, 4, 4)])
    mixed = SceneItems([torch.zeros(1, 4, 4), torch.zeros(1, 5, 4)])
    with pytest.raises(MistError, match="item 1 is .* one size"):
        mixed[1]
    with pytest.raises(MistError, match="other ground truth"):
        SceneItems([(torch.zeros(1, 4, 4), 1), torch.zeros(1, 4, 4)])[1]
    with pytest.raises(MistError, match="class indices"):
        SceneItems([(torch.zeros(1, 4, 4), [-1])])


def test_scene_items_read_pillow_images_as_image_files_are_read():
    """16-bit grey scaled (not clipped at 255), float kept, grey with alpha one channel."""
    a = np.zeros((8, 8), np.float32)
    a[2:4, 2:4], a[5:7, 5:7] = 1.0, 0.4
    deep = SceneItems([(Image.fromarray((a * 65535).astype(np.uint16)), [0])])[0]["image"]
    floats = SceneItems([(Image.fromarray(a, mode="F"), [0])])[0]["image"]
    alpha = SceneItems([(Image.fromarray((a * 255).astype(np.uint8)).convert("LA"), [0])])
    for image in (deep, floats):
        np.testing.assert_allclose(image[0].numpy(), a, atol=1e-4)
    assert alpha.channels == 1 and alpha[0]["image"].shape == (1, 8, 8)


def test_scene_items_take_an_image_without_instances_and_refuse_bad_boxes_and_tensors():
    """Before: ``[]`` (or a dict without labels) was refused as a float label; a box of negative
    size or outside the image was trained on; meta, sparse and uint64 inputs failed deep in
    torch."""
    x = torch.zeros(1, 8, 8)
    assert SceneItems([(x, [])])[0]["labels"].tolist() == []
    assert int(SceneItems([{"image": x}])[0]["count"]) == 0
    assert SceneItems([(x, np.array([1], np.uint64))])[0]["labels"].tolist() == [1]
    bad = [
        ({"image": x, "labels": [0], "boxes": [[4, 4, -5, -5]]}, r"box 0 .* needs w, h > 0"),
        ({"image": x, "labels": [0], "boxes": [[100, 100, 5, 5]]}, "lies outside the 8x8 image"),
        ((torch.zeros(1, 8, 8, device="meta"), [0]), "item 0: a tensor on the meta device"),
        ((x.to_sparse(), [0]), "item 0: a tensor of torch.sparse_coo layout"),
        ((torch.zeros(1, 0, 0), [0]), r"C = 1 or 3, got \(1, 0, 0\)"),
        ((x, np.array([2**64 - 1], np.uint64)), "class indices below 2\\*\\*63"),
    ]
    for item, message in bad:
        with pytest.raises(MistError, match=message):
            SceneItems([item])[0]


def test_scene_items_clip_boxes_past_the_edge_and_check_counts_and_tuples():
    """Before: a box reaching past the image was kept as given (import-images cuts it, with a
    warning), a count of 5 for 3 labels was ignored, and an (image, labels, extra) item was
    taken for an image ("expected a (C, H, W) image")."""
    x = torch.zeros(1, 8, 8)
    item = {"image": x, "labels": [0, 1], "boxes": [[7.0, 3.0, 4.0, 2.0], [3.0, 3.0, 2.0, 2.0]]}
    with pytest.warns(MistWarning, match="item 0: 1 box\\(es\\) reach past the image; clipped"):
        items = SceneItems([item, item])
    boxes = items[0]["boxes"]
    assert boxes.tolist() == [[6.25, 3.0, 2.5, 2.0], [3.0, 3.0, 2.0, 2.0]]  # x 5..7.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not at every item and epoch
        assert items[1]["boxes"].tolist() == boxes.tolist()
    # the edge is at -0.5 and W - 0.5 (pixel centres at integers), as the importers have it
    with pytest.raises(MistError, match="lies outside the 8x8 image"):
        SceneItems([{"image": x, "labels": [0], "boxes": [[8.5, 3.0, 2.0, 2.0]]}])
    with pytest.raises(MistError, match="item 0: count is 5 but the item has 1 labels"):
        SceneItems([{"image": x, "labels": [0], "count": 5}])
    assert int(SceneItems([{"image": x, "labels": [0], "count": torch.tensor(1)}])[0]["count"])
    with pytest.raises(MistError, match="item 0: an item is an image, .* got a tuple of 3"):
        SceneItems([(x, [0], "extra")])
    # Before: a count of True or 1.5 was taken as 1, bool boxes as 1 px sides, complex ones
    # lost their imaginary part with a torch warning, a meta box was "Tensor.item() ... meta"
    for count in (True, 1.5):
        with pytest.raises(MistError, match=f"item 0: count is {count!r}, not an integer"):
            SceneItems([{"image": x, "labels": [0], "count": count}])
    for boxes, message in (
        ([[True] * 4], "boxes must be real numbers, got bool"),
        (torch.ones(1, 4, dtype=torch.complex64), "boxes must be real numbers, got torch.comp"),
        (torch.ones(1, 4, device="meta"), "boxes: a tensor on the meta device holds no values"),
    ):
        with pytest.raises(MistError, match=re.escape(message)):
            SceneItems([{"image": x, "labels": [0], "boxes": boxes}])


def squares(n: int, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        image = torch.zeros(1, 40, 40)
        x, y = (int(v) for v in torch.randint(4, 30, (2,), generator=g))
        image[0, y : y + 6, x : x + 6] = 1.0
        out.append((image, [int(x > 17)]))
    return out


def test_fit_writes_a_run_from_a_dataloader_and_trains_on_from_a_loaded_model(tmp_path):
    train = DataLoader(Named(squares(12, 0)), batch_size=3)
    model = mistnet.fit(
        "tiny-cpu", train, Named(squares(4, 1)), out=tmp_path / "a", steps=3, k=1, num_classes=2,
        train_seed=5, val_every=3,
    )  # fmt: skip
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["train"]["batch_size"] == 3 and cfg["train"]["seed"] == 5
    assert cfg["data"]["name"] == "in-memory" and cfg["record"]["class_names"] == ["a", "b"]
    sizes = [cfg["data"][key] for key in ("n_train", "n_val", "n_test")]
    assert sizes == [12, 4, 0]  # before: the preset's generator sizes, 64 / 32 / 32
    assert model.config.model.k == 1 and not model.training
    again = mistnet.load(tmp_path / "a")
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    more = mistnet.fit(
        model, train, out=tmp_path / "b", steps=1, lr_task=1e-9, lr_heatmap=1e-9, train_seed=99
    )
    cfg_b = json.loads((tmp_path / "b" / "config.json").read_text())
    start = model.checkpoint.name  # the very file the model was loaded from
    assert cfg_b["train"]["init_from"] == f"../a/{start}"  # relative to the run b, beside it
    assert mistnet.load(tmp_path / "b").config.train.init_from == str(tmp_path / "a" / start)
    assert cfg_b["train"]["init_parts"] == "all"
    pairs = zip(model.parameters(), more.parameters(), strict=True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in pairs)  # lr 1e-9: the loaded weights
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["select_metric"].startswith("none")


def test_fit_of_a_loaded_model_starts_from_the_file_it_was_loaded_from(tmp_path, monkeypatch):
    """Before: fit(model) read ``model.run`` again: its best checkpoint for a model loaded with
    ``which="last"``, the run of that relative name in the new working directory after a
    ``chdir``, and weights changed in memory were dropped without a word."""
    train = squares(8, 0)
    options = dict(k=1, num_classes=2, val_every=2, ckpt_every=1, progress=False)
    mistnet.fit("tiny-cpu", train, train[:4], out=tmp_path / "a", steps=4, **options)
    monkeypatch.chdir(tmp_path)
    last = mistnet.load("a", which="last")
    (tmp_path / "elsewhere" / "a").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "elsewhere")  # holds another "a"
    again = mistnet.fit(last, train, out=tmp_path / "b", steps=0, progress=False)
    assert again.config.train.init_from == str(tmp_path / "a" / "last.safetensors")
    for a, b in zip(last.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        next(last.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="its weights differ from .*last.safetensors"):
        mistnet.fit(last, train, out=tmp_path / "c", steps=0, progress=False)
    assert not (tmp_path / "c").exists()


def test_fit_refuses_unknown_and_ambiguous_keys_and_foreign_models(tmp_path):
    data = TensorDataset(torch.rand(8, 1, 32, 32))
    with pytest.raises(MistError, match="seed is in data and train"):
        mistnet.fit("tiny-cpu", data, out=tmp_path / "r", seed=1)
    with pytest.raises(MistError, match="unknown config key 'nope'"):
        mistnet.fit("tiny-cpu", data, out=tmp_path / "r", nope=1)
    with pytest.raises(MistError, match="model.k must be an integer"):
        mistnet.fit("tiny-cpu", data, out=tmp_path / "r", k="three")
    with pytest.raises(TypeError, match="mistnet.load"):
        mistnet.fit(torch.nn.Linear(1, 1), data, out=tmp_path / "r")
    # a key the method never reads (was recorded as used); the preset's own are put back
    with pytest.raises(ValueError, match=r"train.lr_heatmap = 0.001: not read under train.meth"):
        mistnet.fit("tiny-cpu", data, out=tmp_path / "r", method="grid", lr_heatmap=1e-3)
    cfg = mistnet.api._fit_config("mnist-hard-cpu", {"method": "grid"})
    assert (cfg.train.lr_heatmap, cfg.train.centre_weight, cfg.model.k) == (1e-4, 0.0, 9)
    assert not (tmp_path / "r").exists()


def image_item(**change):
    return {
        "image": torch.rand(1, 32, 32),
        "labels": [0],
        "boxes": [[8.0, 8.0, 6.0, 6.0]],
        **change,
    }


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "message"),
    [
        ([torch.randint(0, 256, (1, 32, 32))], {}, ValueError, "item 0: a int64 image; give uint8"),
        ([torch.rand(1, 32, 32) * 255], {}, ValueError, "item 0: image values in .* \\[0, 1\\]"),
        ([image_item(boxes=[[np.nan, 8.0, 6.0, 6.0]])], {}, ValueError, "boxes holds 1 NaN"),
        ([torch.rand(5, 32, 32)], {}, ValueError, "item 0: expected a .C, H, W. image"),
        ([], {}, ValueError, "the dataset is empty"),
        ([image_item(image=None)], {}, ValueError, "item 0: expected an image as numbers"),
        ([{"labels": [0]}], {}, ValueError, "item 0: a dict item needs an 'image' key"),
        (None, {}, TypeError, "train_data must be a Dataset"),
        (image_item(), {}, TypeError, "train_data must be a map-style Dataset .* a dict \\(one"),
        ([torch.rand(1, 32, 32)], {"minutes": "5"}, TypeError, "minutes must be a number"),
        ([torch.rand(1, 32, 32)], {"minutes": float("nan")}, ValueError, "minutes must be a fin"),
        ([torch.rand(1, 32, 32)], {"minutes": torch.tensor(-1.0)}, ValueError, "minutes > 0"),
        ([torch.rand(1, 32, 32)], {"minutes": torch.ones(2)}, TypeError, "minutes must be a n"),
        ([torch.rand(1, 32, 32)], {"minutes": 10**400}, ValueError, "an integer of 1329 bits"),
        # Python's "Exceeds the limit (4300 digits)", naming no argument
        ([torch.rand(1, 32, 32)], {"steps": 10**5000}, ValueError, "train.steps must be an int"),
        ([torch.rand(1, 32, 32)], {"threads": 10**5000}, ValueError, "threads must be at most"),
        # the OS's "File name too long" (an OSError), a bare "embedded null byte"
        ([torch.rand(1, 32, 32)], {"out": "x" * 300}, ValueError, "a name of 300 bytes, more than"),
        ([torch.rand(1, 32, 32)], {"out": "a\0b"}, ValueError, "^out '.*a.x00b' holds a NUL"),
        ([torch.rand(1, 32, 32)], {"device": "gpu"}, ValueError, "device must be cpu, cuda"),
        ([torch.rand(1, 32, 32)], {"threads": -1}, ValueError, "threads must be 0 .* or more"),
        ([torch.rand(1, 32, 32)], {"threads": 100_000}, ValueError, "threads must be at most"),
        ([torch.rand(1, 32, 32)], {"threads": "2"}, TypeError, "threads must be an integer"),
        ([torch.rand(1, 32, 32)], {"steps": -1}, ValueError, "train.steps must be"),
        ([torch.rand(1, 32, 32)], {"k": "three"}, ValueError, "model.k must be an integer"),
        ([torch.rand(1, 32, 32)], {"nope": 1}, ValueError, "unknown config key 'nope'"),
        # before: one of the two kept without a word
        ([torch.rand(1, 32, 32)], {"k": 4, "model_k": 5}, ValueError, "k and model_k both set"),
        ([torch.rand(1, 32, 32)], {"train_steps": 3}, ValueError, "train_steps and steps both"),
        # before: "model_in_channels and in_channels both set", in_channels never given
        ([torch.rand(3, 32, 32)], {"model_in_channels": 1}, ValueError, "3-channel images but"),
        ([torch.rand(1, 32, 32)], {"progress": "no"}, TypeError, "progress must be True"),
    ],
)
def test_fit_refuses_bad_data_and_arguments_before_any_work(tmp_path, data, kwargs, error, message):
    kwargs = {"steps": 1, "out": tmp_path / "r", **kwargs}
    if kwargs["out"] != tmp_path / "r":
        kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(error, match=message):
        mistnet.fit("tiny-cpu", data, **kwargs)
    assert list(tmp_path.iterdir()) == []


def labelled(n, label=None, at=None, size=32):
    """``n`` ``(image, [i % 2])`` items, item ``at`` labelled ``label`` instead."""
    items = [(torch.rand(1, size, size), [i % 2]) for i in range(n)]
    if at is not None:
        items[at] = (torch.rand(1, size, size), label)
    return items


@pytest.mark.parametrize(
    ("train_data", "val", "message"),
    [
        (labelled(8, [5], at=5), None, "train_data item 5: label 5, but the model has 2 classes"),
        (labelled(8), labelled(4, [7], at=3), "val item 3: label 7, but the model has 2 classes"),
        (
            labelled(8, [True], at=2),
            None,
            "train_data item 2: labels must be class indices, got booleans",
        ),
        (labelled(8), labelled(4, size=24), "val item 0 is (1, 24, 24), train_data item 0 (1, 32"),
        (labelled(8, [], at=6), None, "train_data item 6: no label; a classifier learns from"),
    ],
)
def test_fit_names_the_item_and_argument_of_a_bad_label_or_size(tmp_path, train_data, val, message):
    # Before: a label past the classes failed in losses.py or matching.py, naming no item; True
    # was class 1; a val set of another image size was accepted; an image without a label
    # stopped training at the batch that drew it (a checkpoint written), naming no item.
    with pytest.raises(ValueError, match=re.escape(message)):
        mistnet.fit("tiny-cpu", train_data, val, out=tmp_path / "r", steps=3, num_classes=2, k=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("classes", "error", "message"),
    [
        (["", "b"], ValueError, "Named.classes: a class name is empty"),
        (["a\nb", "c"], ValueError, "Named.classes: class name 'a\\nb' holds the control"),
        (["a\x1b[31m", "b"], ValueError, "Named.classes: class name 'a\\x1b[31m' holds"),
        (["a", "a"], ValueError, "Named.classes: 'a' is named twice"),
        ([1, 2], TypeError, "Named.classes must be class names (str), got int"),
        ("ab", TypeError, "Named.classes must be a list of class names, got str"),
    ],
)
def test_fit_refuses_class_names_other_entry_points_refuse(
    tmp_path, monkeypatch, classes, error, message
):
    # Before: accepted (empty, a newline, an escape sequence), dropped silently ([1, 2]), read
    # as two classes ("ab"); a name twice failed only once the whole run was trained and written.
    monkeypatch.setattr(Named, "classes", classes)
    with pytest.raises(error, match=re.escape(message)):
        mistnet.fit("tiny-cpu", Named(squares(4, 0)), out=tmp_path / "r", steps=1, k=1)
    assert list(tmp_path.iterdir()) == []


def test_fit_checks_each_field_of_a_config_it_is_given(tmp_path):
    # Before: fields set by hand reached deep exceptions (TypeError in validate, ValueError in
    # nms 12 frames down), a data.path was dropped silently and record.class_names recorded.
    cfg = mistnet.config.load_preset("tiny-cpu")
    data = squares(8, seed=0)
    for section, key, value, error, message in [
        ("model", "k", "9", ValueError, "model.k must be an integer, got '9'"),
        ("model", "k", True, ValueError, "model.k must be an integer, got True"),
        ("model", "task", "detect", ValueError, "model.task must be one of"),
        ("train", "batch_size", None, ValueError, "train.batch_size must be an integer"),
        ("data", "path", "ds", ValueError, "the Config has data.path 'ds': fit trains on"),
    ]:
        bad = copy.deepcopy(cfg)
        setattr(getattr(bad, section), key, value)
        with pytest.raises(error, match=message):
            mistnet.fit(bad, data, out=tmp_path / "r", steps=1, num_classes=2, progress=False)
        assert not (tmp_path / "r").exists()
    # Before: a preset file's data.path was dropped without a word, as the Config's was.
    preset = tmp_path / "mine.toml"
    preset.write_text('[data]\nname = "mnist-hard"\npath = "ds"\n')
    with pytest.raises(ValueError, match=f"the preset {preset} has data.path 'ds'.*path=''"):
        mistnet.fit(preset, data, out=tmp_path / "r", steps=1, num_classes=2, progress=False)
    # Before: path="" (the way out it named: "clear data.path") was refused the same way
    for key in ("path", "data_path"):
        cleared = mistnet.fit(preset, data, out=tmp_path / key, steps=1, num_classes=2, k=2,
                              batch_size=8, progress=False, **{key: ""})  # fmt: skip
        assert cleared.config.data.path == "" and cleared.config.data.name == "in-memory"
    with pytest.raises(ValueError, match="path='elsewhere': fit trains on train_data"):
        mistnet.fit("tiny-cpu", data, out=tmp_path / "r", steps=1, path="elsewhere")
    named = copy.deepcopy(cfg)
    named.model.num_classes, named.record.class_names = 2, ("x", "y")
    # a 0-d tensor is a number of minutes, as it is an integer elsewhere (before: refused)
    model = mistnet.fit(named, data, out=tmp_path / "r", steps=1, progress=False,
                        minutes=torch.tensor(5.0))  # fmt: skip
    assert model.config.record.class_names == ()  # the data names none


def test_load_refuses_an_unknown_checkpoint_name_and_a_damaged_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes(b"\xff\xfe{\x00}\x00")
    with pytest.raises(ValueError, match="which must be 'best' or 'last', got 'bset'"):
        mistnet.load(run, which="bset")
    with pytest.raises(ValueError, match="device must be"):
        mistnet.load(run, device="gpu")
    with pytest.raises(MistError, match="config.json: UTF-16 text"):
        mistnet.load(run)
    for empty in ("", " "):  # Path("") is the working directory: not loaded as a run
        with pytest.raises(ValueError, match="give a run directory or a model name, got"):
            mistnet.load(empty)
    with pytest.raises(ValueError, match="nope is neither a run directory nor a pretrained"):
        mistnet.load("nope")
    # a link to nothing, or a loop: said so, not "neither a run directory nor a model"
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "gone").symlink_to(tmp_path / "nothing")
    for link, message in (("loop", "a symbolic link loop"), ("gone", "a symbolic link to nowhere")):
        with pytest.raises(ValueError, match=f"{link}: {message}"):
            mistnet.load(tmp_path / link)
    with pytest.raises(TypeError, match="give a run directory or a model name, got int"):
        mistnet.load(3)
    (run / "best.safetensors").write_bytes(b"")
    with pytest.raises(MistError, match="best.safetensors is a file; give the run directory"):
        mistnet.load(run / "best.safetensors")


def test_fit_shows_progress_by_default_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    import sys

    seen = []
    monkeypatch.setattr("mistnet.api.train", lambda *a, **kw: seen.append(kw["progress"]))
    monkeypatch.setattr("mistnet.api.load", lambda *a, **kw: None)
    for tty in (True, False):
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty, raising=False)
        mistnet.fit("tiny-cpu", squares(2, 0), out=tmp_path / str(tty), num_classes=2, k=1)
    mistnet.fit("tiny-cpu", squares(2, 0), out=tmp_path / "x", progress=False, num_classes=2, k=1)
    assert seen == [True, False, False]


def test_fit_names_its_own_arguments_not_the_command_lines(tmp_path):
    # Before: "--device cuda:0 was asked for", "use --resume or another --out", "train.batch_size
    # must be an integer, got None", ".: a directory, not a regular file".
    data = squares(4, 0)
    fit = functools.partial(mistnet.fit, num_classes=2, k=1, steps=1, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^device cuda:0 was asked for but no CUDA"):
            fit("tiny-cpu", data, out=tmp_path / "r", device="cuda:0")
    # Before: "expected a map-style Dataset (len and indexing), got int", of either argument
    with pytest.raises(TypeError, match="^val must be a map-style Dataset .*, got int"):
        fit("tiny-cpu", data, 5, out=tmp_path / "r")
    loader = DataLoader(data, batch_size=None)
    with pytest.raises(TypeError, match="train_data is a DataLoader without a batch_size"):
        fit("tiny-cpu", loader, out=tmp_path / "r")
    for empty in ("", " "):
        with pytest.raises(ValueError, match=f"model_or_preset {empty!r} is empty"):
            fit(empty, data, out=tmp_path / "r")
    assert list(tmp_path.iterdir()) == []
    fit("tiny-cpu", data, out=tmp_path / "r", batch_size=2)
    before = sorted(p.name for p in (tmp_path / "r").iterdir())
    with pytest.raises(
        ValueError,
        match="already holds a run; give another out, or resume it exactly with mistnet.loop",
    ):
        fit("tiny-cpu", data, out=tmp_path / "r", batch_size=2)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == before
    (tmp_path / "r" / "last.safetensors").unlink()  # best.safetensors is still a run's
    with pytest.raises(
        ValueError,
        match="already holds a run; give another out, or resume it exactly with mistnet.loop",
    ):
        fit("tiny-cpu", data, out=tmp_path / "r", batch_size=2)
    with pytest.raises(ValueError, match=r"names 2 classes .* num_classes=2 in mistnet.fit\)$"):
        fit("tiny-cpu", Named(data), out=tmp_path / "s", num_classes=3)
    assert not (tmp_path / "s").exists()
    # Before: a loaded model was told to pass num_classes=2, which fit(model) then refused
    model = mistnet.load(tmp_path / "r")
    three = Named(data)
    three.classes = ["a", "b", "c"]
    message = "train_data names 3 classes but the model's classifier has 2; fit trains on"
    assert model.config.model.num_classes == 2
    with pytest.raises(ValueError, match=message):
        fit(model, three, out=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_fit_into_a_folder_this_user_cannot_write_is_a_value_error(tmp_path, monkeypatch):
    """Before (as a user who cannot write there): a bare PermissionError chained from a
    temporary's name, once the data and config were checked. (Root writes anywhere: the
    permission is stood in for; checked by hand as user 65534.)"""
    ro = tmp_path / "ro"
    ro.mkdir()
    access = os.access
    writable = lambda p, mode: not (Path(p) == ro and mode & os.W_OK)  # noqa: E731
    monkeypatch.setattr(os, "access", lambda p, mode: writable(p, mode) and access(p, mode))
    fit = functools.partial(mistnet.fit, num_classes=2, k=1, steps=1, progress=False)
    for out in (ro / "run", ro / "a" / "b"):
        with pytest.raises(ValueError, match=f"^out {out}: this user cannot write into {ro};"):
            fit("tiny-cpu", squares(4, 0), out=out)
    with pytest.raises(ValueError, match=f"^{ro}: this user cannot write into it; choose another"):
        fit("tiny-cpu", squares(4, 0), out=ro)  # an empty folder, as every writer refuses it
    assert list(ro.iterdir()) == []


def test_load_raises_a_value_error_for_a_folder_that_is_no_run_or_holds_no_checkpoint(tmp_path):
    # Before: "nope" (no such path) was a ValueError, but a folder that is no run, a run with
    # no checkpoint, a file given for the run or a damaged checkpoint a bare MistError, which an
    # ``except ValueError`` around load() did not catch.
    (tmp_path / "empty").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"model": {}, "data": {}, "train": {}}')
    (run / "notes.txt").write_text("mine")
    cases = {"empty": "is not a mistnet run", "run": "holds no checkpoint yet"}
    cases["run/notes.txt"] = "is a file; give the run directory"
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message):
            mistnet.load(tmp_path / name)
    (run / "best.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="best.safetensors is corrupt or truncated"):
        mistnet.load(run)
    # Before: a bare OSError (file name too long) and ValueError (embedded null byte).
    with pytest.raises(
        ValueError, match="a name of 5000 bytes, more than the 255 a file system takes"
    ):
        mistnet.load("x" * 5000)
    with pytest.raises(ValueError, match=r"run 'r\\x00' holds a NUL character"):
        mistnet.load("r\x00")
    model = mistnet.load("mnist-hard-classifier")
    with pytest.raises(ValueError, match=r"image 0 'a.png\\x00' holds a NUL character"):
        model.predict("a.png\x00")


def test_load_of_best_says_when_it_takes_last_and_refuses_a_folder(tmp_path):
    # Before: which="best" returned the last weights without a word, for a missing
    # best.safetensors and for a folder of that name alike.
    run = tmp_path / "run"
    mistnet.fit("tiny-cpu", squares(8, 0), out=run, steps=2, num_classes=2, progress=False)
    (run / "best.safetensors").unlink()
    with pytest.warns(MistWarning, match="no best.safetensors .*; using last.safetensors"):
        mistnet.load(run)
    (run / "best.safetensors").mkdir()
    with pytest.raises(ValueError, match="best.safetensors: a directory, not a regular file"):
        mistnet.load(run)


def test_load_and_fit_leave_the_callers_random_generator_and_threads(tmp_path):
    # Before: every load reseeded torch with 0, fit with train.seed; fit(threads=1) kept 1.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    mistnet.fit("tiny-cpu", squares(8, 0), out=tmp_path / "r", steps=1, num_classes=2,
                progress=False, threads=1)  # fmt: skip
    mistnet.load(tmp_path / "r")
    mistnet.load("mnist-hard-classifier")  # a pretrained model: it reseeded torch too
    torch.testing.assert_close(torch.rand(3), expected)
    assert torch.get_num_threads() == 2
    torch.set_num_threads(threads)


def test_load_and_fit_leave_the_callers_gpu_generators_unseeded(tmp_path, monkeypatch):
    """Before: torch.manual_seed seeded every CUDA (and MPS, XPU) generator too, queued until
    CUDA starts where it has not, and fork_rng(devices=[]) gave back the CPU one alone: a
    script's CUDA random numbers after `load` were seed 0's, after `fit` train.seed's."""
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: seeded.append(seed))
    mistnet.fit("tiny-cpu", squares(8, 0), out=tmp_path / "r", steps=1, num_classes=2,
                progress=False, threads=1, train_seed=7)  # fmt: skip
    mistnet.load(tmp_path / "r")
    mistnet.load("mnist-hard-classifier")
    assert seeded == []


def test_a_pillow_image_of_a_closed_file_is_named(tmp_path):
    # Before: Pillow's "Operation on closed image", naming no item.
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    closed = Image.open(tmp_path / "a.png")
    closed.close()
    with pytest.raises(MistError, match="item 0: not a readable image"):
        SceneItems([(closed, [0])])[0]


def test_predict_and_fit_read_premultiplied_alpha_images():
    # Before: Pillow's "conversion from La to L not supported".
    model = mistnet.load("mnist-hard-classifier")
    la = Image.new("LA", (80, 80), (200, 255)).convert("La")
    assert len(model.predict(la)) == 1
    assert SceneItems([(la, [0])])[0]["image"].shape == (1, 80, 80)


def test_load_refuses_the_last_checkpoint_of_a_pretrained_model():
    # Before: the shipped model's only checkpoint was returned for which="last" silently.
    with pytest.raises(ValueError, match="which='last': the pretrained model mnist-hard-class"):
        mistnet.load("mnist-hard-classifier", which="last")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_load_names_a_missing_cuda_device_and_takes_auto(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ValueError, match="device cuda was asked for but no CUDA device is available"
    ):
        mistnet.load("mnist-hard-classifier", device="cuda")
    model = mistnet.load("mnist-hard-classifier", device="auto")
    assert next(model.parameters()).device.type == "cpu"
    # Before: a torch.device, which evaluate_run and pretrained.load take, was refused
    for device in (torch.device("cpu"), torch.device("cpu", 0)):  # cpu:0 was refused
        model = mistnet.load("mnist-hard-classifier", device=device)
        assert next(model.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="device cuda was asked for"):
        mistnet.load("mnist-hard-classifier", device=torch.device("cuda"))
    with pytest.raises(ValueError, match="device cuda was asked for"):
        mistnet.fit("tiny-cpu", [torch.rand(1, 32, 32)], out="r", device=torch.device("cuda"))
    assert not (tmp_path / "r").exists()


def test_fit_names_a_bad_out_and_refuses_it_with_a_value_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "" would be this folder
    data = [torch.rand(1, 32, 32)]
    for out, error, message in (
        ("", ValueError, "out '' is an empty path"),
        (5, TypeError, "out must be a path .*, got int"),
        (None, TypeError, "out must be a path .*, got NoneType"),
        (".", ValueError, "out . names the working directory; give a new directory"),
        ("..", ValueError, "out .. names a folder above the working directory"),
    ):
        with pytest.raises(error, match=message):
            mistnet.fit("tiny-cpu", data, out=out, steps=1)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt: exists and is not a directory"):
        mistnet.fit("tiny-cpu", data, out=tmp_path / "notes.txt", steps=1)
    # Before: named the command line's --out, and "mist train" for fit's own runs
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / ".mistnet").write_text("dataset\n")
    for out, message in (
        ("mine", "mine: exists and was not made by mist train or fit; choose a new out "),
        ("ds/run", "out ds/run is inside the dataset ds; choose a path outside it"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            mistnet.fit("tiny-cpu", data, out=out, steps=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "mine", "notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert [p.name for p in (tmp_path / "ds").iterdir()] == [".mistnet"]


@pytest.mark.parametrize(
    "key", ["path", "data_path", "name", "data_name", "n_train", "data_n_test", "digits"]
)
def test_fit_refuses_a_dataset_path_or_name_it_would_ignore(tmp_path, key):
    # Before: fit(..., path="ds") (or n_train=5, digits=...) trained on train_data and dropped
    # or recorded the value silently.
    with pytest.raises(ValueError, match=f"{key}='ds': fit trains on train_data and val"):
        mistnet.fit("tiny-cpu", squares(2, 0), out=tmp_path / "run", num_classes=2, **{key: "ds"})
    assert list(tmp_path.iterdir()) == []


def test_fit_load_and_predict_work_under_a_float64_default_dtype(tmp_path):
    """Before: ``torch.set_default_dtype(torch.float64)`` (common in scientific scripts) made
    fit fail inside torch ("mixed dtype") and load return a float64 model."""
    torch.set_default_dtype(torch.float64)
    try:
        model = mistnet.fit("tiny-cpu", squares(8, 0), out=tmp_path / "r", steps=2,
                            num_classes=2, k=1, progress=False)  # fmt: skip
        loaded = mistnet.load(tmp_path / "r")
        assert {p.dtype for p in [*model.parameters(), *loaded.parameters()]} == {torch.float32}
        (got,) = loaded.predict(squares(1, 3)[0][0].double(), min_score=0)
        assert got.boxes.shape == (1, 4) and torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)


def test_the_training_loop_names_an_out_that_is_no_path(tmp_path, monkeypatch):
    """Before: pathlib's "argument should be a str or an os.PathLike object ..., not
    <class 'bytes'>" and "expected str, bytes or os.PathLike object, not int", naming nothing."""
    from mistnet import loop
    from mistnet.config import load_preset

    monkeypatch.chdir(tmp_path)
    for out, error, message in [
        (b"g", TypeError, "out must be a path as text, got bytes"),
        (3, TypeError, "out must be a path as text, got int"),
        ("a\0b", ValueError, r"out 'a\\x00b' holds a NUL character"),
    ]:
        with pytest.raises(error, match=message):
            loop.train(load_preset("tiny-cpu"), out)
    assert list(tmp_path.iterdir()) == []


def test_fit_and_load_under_a_meta_default_device_are_refused_naming_it(tmp_path):
    """Before: fit failed deep in torch ("Cannot copy out of meta tensor"), load blamed a
    parameter of the model ("build it on a real device"), a device the caller never passed."""
    items = squares(8, 0)
    with torch.device("meta"):
        with pytest.raises(ValueError, match="torch's default device is meta"):
            mistnet.fit("tiny-cpu", items, out=tmp_path / "r", steps=1, num_classes=2,
                        progress=False)  # fmt: skip
        with pytest.raises(ValueError, match="torch's default device is meta"):
            mistnet.load("mnist-hard-classifier")
    assert list(tmp_path.iterdir()) == []


def test_the_training_loop_leaves_the_callers_generator_threads_and_dtype(tmp_path):
    """Before: ``mistnet.loop.train`` (public, with its Callbacks) reseeded torch and left
    ``threads`` set; only ``fit`` gave them back."""
    from mistnet.config import load_preset
    from mistnet.data.memory import SceneItems
    from mistnet.loop import train

    cfg = load_preset("tiny-cpu")
    cfg.train.steps, cfg.model.num_classes, cfg.model.k = 1, 2, 1
    cfg.data.path, cfg.data.name = "", "in-memory"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    data = (SceneItems(squares(8, 0), "train_data"), None)
    train(cfg, tmp_path / "r", data=data, threads=1, progress=False)
    torch.testing.assert_close(torch.rand(2), expected)
    assert torch.get_num_threads() == 2
    torch.set_num_threads(threads)


def test_an_image_that_requires_grad_is_taken_as_data_without_a_warning():
    """Before: torch warned "Converting a tensor with requires_grad=True to a scalar"."""
    import warnings

    x = torch.rand(1, 8, 8, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        item = SceneItems([(x, [0])])[0]
    assert not item["image"].requires_grad and torch.equal(item["image"], x.detach())


def test_a_dict_item_with_a_key_mistnet_does_not_read_is_refused(tmp_path):
    """Before: ``label`` or ``bbox`` for ``labels`` / ``boxes`` in validation items was taken as
    an item without ground truth: classif null, best null, without a word."""
    x = torch.rand(1, 48, 48)
    val = [{"image": x, "label": [0], "bbox": [[10, 10, 5, 5]]} for _ in range(4)]
    with pytest.raises(
        ValueError, match="val item 0: a dict item has the key\\(s\\) 'label', 'bbox'"
    ):
        mistnet.fit("tiny-cpu", squares(8, 0), val, out=tmp_path / "r", steps=1, num_classes=2,
                    progress=False)  # fmt: skip
    assert not (tmp_path / "r").exists()
    items = SceneItems([{"image": x, "labels": [0]}, {"image": x, "labels": [0], "box": 1}])
    with pytest.raises(ValueError, match="item 1: a dict item has the key\\(s\\) 'box', which"):
        items.check_labels()


def test_a_dict_item_of_boxes_without_labels_is_told_what_counts_its_instances(tmp_path):
    """Before: "boxes must be (0, 4), got (1, 4)": the missing labels were read as no
    instance, and the boxes blamed."""
    items = [{"image": torch.rand(1, 48, 48), "boxes": [[10, 10, 5, 5]]}] * 8
    with pytest.raises(
        ValueError, match="boxes must be \\(0, 4\\), got \\(1, 4\\); the item has no 'labels'"
    ):
        mistnet.fit("tiny-cpu", items, out=tmp_path / "r", task="reconstruct", steps=1,
                    progress=False)  # fmt: skip
    assert not (tmp_path / "r").exists()
    empty = SceneItems([{"image": torch.rand(1, 48, 48), "boxes": [], "labels": []}])[0]
    assert empty["boxes"].shape == (0, 4)  # Before: "boxes must be (0, 4), got (0,)"
    with pytest.raises(ValueError, match=r"boxes must be \(0, 4\), got \(1, 0\)"):  # [[]]: no
        SceneItems([{"image": torch.rand(1, 48, 48), "boxes": [[]], "labels": []}])[0]
    with pytest.raises(ValueError, match="^dataset item 0: boxes must be numbers, got str$"):
        SceneItems([{"image": torch.rand(1, 48, 48), "boxes": "abc"}])[0]
    with_labels = [{**item, "labels": [0]} for item in items]  # as told: it trains
    mistnet.fit("tiny-cpu", with_labels, out=tmp_path / "r", task="reconstruct", steps=1,
                progress=False, threads=1)  # fmt: skip
    assert (tmp_path / "r" / "best.safetensors").is_file()


def test_boxes_that_require_grad_are_taken_as_data():
    """Before: torch's "Can't call numpy() on Tensor that requires grad", as a tensor and as a
    list of rows."""
    x = torch.rand(1, 48, 48)
    boxes = torch.tensor([[10.0, 10, 5, 5]], requires_grad=True)
    side = torch.tensor(5.0, requires_grad=True)
    for given in (boxes, [boxes[0]], [[10.0, 10.0, side, 5.0]]):  # a tensor, rows, elements
        item = SceneItems([{"image": x, "labels": [0], "boxes": given}])[0]
        assert item["boxes"].tolist() == [[10.0, 10.0, 5.0, 5.0]]
    # labels that require grad are floats (refused as such, not by numpy()'s RuntimeError)
    with pytest.raises(ValueError, match="labels must be class indices >= 0"):
        SceneItems([(x, [torch.tensor(1.0, requires_grad=True)])])[0]


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_a_float8_image_is_refused_naming_the_image(dtype):
    """Before: torch's NotImplementedError ("isfinite" / "min_all" not implemented for
    Float8) from fit's items, predict and detect_image."""
    from mistnet.detection import detect_image

    x = torch.rand(1, 48, 48).to(dtype)
    model = mistnet.load("mnist-hard-classifier")
    with pytest.raises(ValueError, match="item 0: a float8_e.* image; give uint8 .*16 bits"):
        SceneItems([(x, [0])])[0]
    with pytest.raises(ValueError, match="image 0: a tensor must be float \\(16 bits or more"):
        model.predict(x)
    with pytest.raises(ValueError, match="image must be a float tensor \\(16 bits or more\\)"):
        detect_image(model, x, 3)


def test_an_exact_resume_of_a_fit_run_refuses_data_of_other_sizes(tmp_path):
    """Before: ``loop.train(cfg, RUN, resume=True, data=...)`` of a fit run resumed on 16 items
    where it had trained on 8 (config.json still saying 8), without a word."""
    from mistnet import loop
    from mistnet.config import apply_overrides, load_json

    out = tmp_path / "r"
    mistnet.fit("tiny-cpu", squares(8, 0), squares(4, 1), out=out, steps=2, k=1, num_classes=2,
                batch_size=4, ckpt_every=2, progress=False)  # fmt: skip
    cfg = apply_overrides(load_json(out / "config.json"), ["train.steps=4"])
    for train, val in [(squares(16, 0), squares(4, 1)), (squares(8, 0), squares(6, 1))]:
        with pytest.raises(MistError, match=r"data has \d+ items but the run was trained on"):
            loop.train(copy.deepcopy(cfg), out, resume=True, progress=False,
                       data=(SceneItems(train), SceneItems(val)))  # fmt: skip
    same = (SceneItems(squares(8, 0)), SceneItems(squares(4, 1)))
    # killed before its first checkpoint (no last.safetensors): the resume starts again from
    # step 0, on the data it was given; before, on other sizes than config.json says
    for name in ("last.safetensors", "best.safetensors", "log.jsonl", "summary.json"):
        (out / name).unlink(missing_ok=True)
    with pytest.raises(MistError, match=r"the train data has 16 items but the run was trained"):
        loop.train(copy.deepcopy(cfg), out, resume=True, progress=False,
                   data=(SceneItems(squares(16, 0)), SceneItems(squares(4, 1))))  # fmt: skip
    assert loop.train(cfg, out, resume=True, progress=False, data=same)["steps"] == 4


def test_a_fit_run_is_refused_by_mist_train_resume_with_what_to_do(capsys, tmp_path):
    """Before: a fit run without validation data was refused for a log "without the
    validation line" (it never validated); one with validation data was told to pass
    --data DIR, which --resume then refused as another dataset."""
    from cli_helpers import assert_user_error, mist

    for val, out in ((None, tmp_path / "nv"), (squares(4, 1), tmp_path / "v")):
        mistnet.fit("tiny-cpu", squares(8, 0), val=val, out=out, steps=2, k=2, num_classes=2,
                    val_every=2, ckpt_every=1, batch_size=4)  # fmt: skip
        result = mist(capsys, "train", "--out", out, "--resume", "--set", "train.steps=4")
        assert_user_error(result, "was trained on data in memory (mistnet.fit); mist train cannot")
        # before: only fit(load(RUN)), which starts the optimisers and the steps afresh
        assert "resume it exactly with mistnet.loop.train(config, RUN, resume=True" in result[2]


def test_a_fit_run_evaluated_on_a_generator_says_it_records_no_split_size(capsys, tmp_path):
    """Before: ``mist eval FIT_RUN --data mnist-hard`` said "mnist-hard: the test split is
    empty" (fit records 0 test scenes, and a generator made that many)."""
    from cli_helpers import assert_user_error, mist

    out = tmp_path / "r"
    mistnet.fit("tiny-cpu", squares(8, 0), out=out, steps=1, k=2, num_classes=2, batch_size=4)
    result = mist(capsys, "eval", out, "--data", "mnist-hard")
    assert_user_error(result, "records no test size to make mnist-hard scenes of", "--data DIR")


def test_fit_and_evaluate_run_take_numpy_bools_and_0d_integer_tensors(tmp_path, monkeypatch):
    """Before: ``progress=np.False_`` was refused ("progress must be True, False or None"),
    ``k=torch.tensor(2)`` too ("model.k must be an integer, got tensor(2)", and
    ``evaluate_run``'s "k must be an integer >= 0 (0: the run's), got tensor(2)")."""
    from mistnet.errors import ArgumentError
    from mistnet.evaluation import evaluate_run

    seen = []
    monkeypatch.setattr(
        "mistnet.api.train",
        lambda cfg, out, **kw: seen.append((cfg.model.k, kw["progress"], kw["threads"])),
    )
    monkeypatch.setattr("mistnet.api.load", lambda *a, **kw: None)
    mistnet.fit("tiny-cpu", squares(2, 0), out=tmp_path / "a", num_classes=2, k=torch.tensor(2),
                progress=np.False_, threads=np.int64(1))  # fmt: skip
    assert seen == [(2, False, 1)] and [type(v) for v in seen[0]] == [int, bool, int]
    for kwargs, error, message in [
        ({"k": torch.tensor([2])}, ValueError, r"model\.k must be an integer, got tensor\(\[2\]\)"),
        ({"k": torch.tensor(2.0)}, ValueError, r"model\.k must be an integer, got tensor\(2\.\)"),
        ({"k": torch.tensor(True)}, ValueError, r"model\.k must be an integer, got tensor\(True"),
        ({"progress": 1}, TypeError, "progress must be True or False, got 1"),
    ]:
        with pytest.raises(error, match=message):
            mistnet.fit("tiny-cpu", squares(2, 0), out=tmp_path / "b", num_classes=2, **kwargs)
    assert len(seen) == 1 and not (tmp_path / "b").exists()
    with pytest.raises(MistError, match="run directory .* does not exist"):  # past the checks
        evaluate_run(tmp_path / "none", k=torch.tensor(2), batch_size=np.int64(2))
    for k in (torch.tensor([2]), torch.tensor(2.0), np.True_, 2.0):
        with pytest.raises(ArgumentError, match=r"^k must be an integer >= 0 \(0: the run's\)"):
            evaluate_run(tmp_path / "none", k=k)


def test_every_error_a_user_can_fix_is_a_value_error(tmp_path):
    """Before: ``MistError`` itself was no ``ValueError``, so ``except ValueError`` missed what
    ``mistnet.config``, checkpoints and datasets refused (an unknown preset, a bad value, a
    missing checkpoint, a folder of the user's as a dataset's out), while ``fit`` and ``load``
    raised ``ValueError`` for the same problems."""
    from mistnet.checkpoint import Checkpoint
    from mistnet.config import load_preset, resolve, set_value
    from mistnet.data.store import write_dataset

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    calls = [
        lambda: set_value(resolve("tiny-cpu"), "model", "k", "three"),
        lambda: load_preset("nope"),
        lambda: Checkpoint(tmp_path / "none.safetensors"),
        lambda: write_dataset(tmp_path / "mine", "d", {}, overwrite=True),
    ]
    for call in calls:
        with pytest.raises(ValueError) as caught:
            call()
        assert "\n" not in str(caught.value)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_scene_items_take_big_endian_arrays_and_refuse_longdouble_naming_the_item():
    """Before: a big-endian image or label array failed in torch ("byte order different from
    the native byte order"), big-endian boxes were "boxes must be numbers, got ndarray" and a
    longdouble image a raw TypeError; boxes of 1e39 were "NaN or infinite", 1e-46 a w of 0.0,
    and a float64 image of 1 + 1e-12 was "in [1, 1]"."""
    rng = np.random.default_rng(0)
    image = rng.random((1, 8, 8))
    items = SceneItems([(image.astype(">f4"), np.array([1, 0], ">i8"))], "train_data")
    assert torch.equal(items[0]["image"], torch.from_numpy(image.astype(np.float32)))
    assert items[0]["labels"].tolist() == [1, 0]
    boxes = np.array([[4, 4, 2, 2]], ">f8")
    scene = SceneItems([{"image": image.astype(">f8"), "labels": [0], "boxes": boxes}])
    assert scene[0]["boxes"].tolist() == [[4.0, 4.0, 2.0, 2.0]]
    x = torch.rand(1, 8, 8)
    for item, message in [
        (image.astype(np.longdouble), "train_data item 0: an image of numpy float128"),
        ((x, np.array([1], np.longdouble)), "train_data item 0: labels of numpy float128"),
        (
            {"image": x, "labels": [0], "boxes": [[4, 4, 1e39, 2]]},
            "train_data item 0: box 0 [4.0, 4.0, 1e+39, 2.0] lies beyond float32's range",
        ),
        (
            {"image": x, "labels": [0], "boxes": [[4, 4, 1e-46, 2]]},
            "train_data item 0: box 0 [4.0, 4.0, 1e-46, 2.0] has a side too small for float32",
        ),
        (
            torch.full((1, 8, 8), 1 + 1e-12, dtype=torch.float64),
            "image values in [1.000000000001, 1.000000000001]",
        ),
    ]:
        with pytest.raises(MistError, match=re.escape(message)):
            SceneItems([item], "train_data")


def test_fit_of_a_loaded_model_takes_the_new_datas_record_and_refuses_another_head(
    tmp_path, monkeypatch
):
    """Before: ``fit(model, data, num_classes=3)`` (or ``task="reconstruct"``) was refused for
    "record.class_names must be [] or num_classes = 3 distinct names, got ['a', 'b']", a field
    the caller never set: the loaded model's record was checked against the new setting,
    while the weights fit trains on from could not take either."""
    model = mistnet.fit("tiny-cpu", Named(squares(8, 0)), out=tmp_path / "a", steps=1, k=1,
                        num_classes=2, progress=False)  # fmt: skip
    assert model.config.record.class_names == ("a", "b")
    seen = []
    monkeypatch.setattr("mistnet.api.train", lambda cfg, out, **kw: seen.append(cfg))
    monkeypatch.setattr("mistnet.api.load", lambda *a, **kw: None)
    for kwargs, message in [
        ({"num_classes": 3}, "num_classes=3: the model's classifier has 2 classes; fit trains on"),
        ({"task": "reconstruct"}, "task='reconstruct': the model does 'classify'; fit trains on"),
        # before: "train.init_parts must be left out without train.init_from, got 'all'", a
        # value fit had set itself
        ({"init_from": ""}, "init_from: fit(model) trains on from the model's own weights"),
        ({"train_init_from": str(tmp_path / "a")}, "pass its config (model.config) instead"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            mistnet.fit(model, squares(8, 0), out=tmp_path / "b", **kwargs)
    assert not seen
    mistnet.fit(model, squares(8, 0), out=tmp_path / "c")  # unnamed classes: none recorded
    assert seen[0].record.class_names == () and seen[0].model.num_classes == 2


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_fit_trains_with_gradients_under_the_callers_no_grad_or_inference_mode(tmp_path, mode):
    """Before: under ``torch.no_grad()`` fit failed with "train_step needs gradients: it was
    called under no_grad/inference_mode", under ``torch.inference_mode()`` with "model: its
    weights were made under torch.inference_mode()", though the caller called neither."""
    with mode():
        model = mistnet.fit("tiny-cpu", squares(8, 0), out=tmp_path / "r", steps=1, k=1,
                            num_classes=2, progress=False)  # fmt: skip
        assert not torch.is_grad_enabled()  # the caller's mode, given back
        assert torch.is_inference_mode_enabled() == (mode is torch.inference_mode)
    assert model.checkpoint.exists()


def test_predict_keeps_out_the_callers_autocast():
    """Before: under a script's ``torch.autocast("cpu", dtype=torch.bfloat16)`` predict (and
    ``detect_image``) computed in bf16: other boxes, scores and classes than ``mist detect``
    gives, float32 tensors all the same, without a word."""
    model = mistnet.load("mnist-hard-classifier")
    images = torch.rand(3, 1, 80, 80, generator=torch.Generator().manual_seed(0))
    plain = model.predict(images, min_score=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = model.predict(images, min_score=0)
        assert torch.is_autocast_enabled("cpu")  # the caller's, given back
    for a, b in zip(plain, under, strict=True):
        assert torch.equal(a.scores, b.scores) and torch.equal(a.boxes, b.boxes)
        assert torch.equal(a.classes, b.classes)


@pytest.mark.parametrize("damaged", ["first weight", "heatmap running_var", "task head"])
def test_predict_refuses_a_models_non_finite_boxes_and_scores_as_mist_detect_does(damaged):
    """Before: NaN scores failed every min_score, so a diverged model gave no detection and
    no error, even at min_score=0 ("0 keeps all K")."""
    model = mistnet.load("mnist-hard-classifier")
    image = torch.rand(1, 80, 80)
    assert len(model.predict(image, min_score=0)[0].scores) == model.k
    name = {
        "first weight": next(n for n, _ in model.named_parameters()),
        "heatmap running_var": "heatmap_net.body.input_norm.running_var",
        "task head": "task_net.head.bias",
    }[damaged]
    with torch.no_grad():
        model.state_dict(keep_vars=True)[name].fill_(float("nan"))  # the tensor itself
    with pytest.raises(
        mistnet.errors.DataError, match="^image 0: the model's boxes and scores holds 9 NaN"
    ):
        model.predict([image, image], min_score=0)


def test_predict_checks_that_every_path_is_a_file_before_detecting_any(tmp_path, monkeypatch):
    """Before: 30 images were detected (6.5 s) before "nofile.png: no such file", which gave no
    item index."""
    model = mistnet.load("mnist-hard-classifier")
    Image.new("L", (80, 80)).save(tmp_path / "a.png")

    def detect_image(*args, **kwargs):
        raise AssertionError("an image was detected before every path was checked")

    monkeypatch.setattr(mistnet.prediction, "detect_image", detect_image)
    image = torch.rand(1, 80, 80)
    for bad, message in [
        (tmp_path / "nofile.png", "no such file"),
        (tmp_path, "a directory, not a regular file"),
    ]:
        with pytest.raises(mistnet.errors.DataError, match=f"^image 2: {re.escape(str(bad))}: "):
            model.predict([tmp_path / "a.png", image, bad])
        with pytest.raises(mistnet.errors.DataError, match=message):
            model.predict([image, image, str(bad)])
    # Before: "p1.py: not a readable image ...", the only message of predict without its index
    monkeypatch.undo()
    (tmp_path / "p1.py").write_text("print(1)\n")
    with pytest.raises(mistnet.errors.DataError, match=r"^image 1: .*p1.py: not a readable"):
        model.predict([image, tmp_path / "p1.py"])
