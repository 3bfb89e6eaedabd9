"""Our on-disk format (atomic writes, validation) and the official MIST layout round trip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, mist
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mistnet.data.dataset import SceneDataset
from mistnet.data.manifest import read_manifest, validate_arrays
from mistnet.data.official import export_official, import_official, read_official
from mistnet.data.scenes import build_generator, make_scenes
from mistnet.data.store import (
    SceneFolder,
    dataset_directory,
    load_split,
    open_dataset,
    write_dataset,
)
from mistnet.errors import DataError, MistError


def _splits(name="mnist-hard-3to9", sizes=(6, 3, 4), seed=0):
    kw = {"layout_bank": 16} if name.startswith("mnist-hard") else {}
    g = build_generator(name, **kw)
    out = {
        s: make_scenes(g, s, range(n), seed)
        for s, n in zip(("train", "val", "test"), sizes, strict=True)
    }
    return g, out


def test_write_read_round_trip(tmp_path):
    g, splits = _splits()
    d = write_dataset(tmp_path / "ds", g.name, splits, {"generator": g.name, "seed": 0})
    assert sorted(p.name for p in d.iterdir()) == [
        ".mistnet",
        "manifest.json",
        "test.npz",
        "train.npz",
        "val.npz",
    ]
    meta = json.loads((d / "manifest.json").read_text())
    assert meta["splits"] == {"train": 6, "val": 3, "test": 4}
    assert (meta["channels"], meta["height"], meta["width"], meta["max_count"]) == (1, 80, 80, 9)
    for split, arrays in splits.items():
        got, _ = load_split(d, split)
        for k in arrays:
            np.testing.assert_array_equal(got[k], arrays[k])
            assert got[k].dtype == arrays[k].dtype
    ds = SceneFolder(d, "val")
    ref = SceneDataset(g, "val", size=3)
    assert (ds.channels, ds.height, ds.width, ds.max_count, ds.name) == (1, 80, 80, 9, g.name)
    assert ds.manifest["generator"] == g.name and len(ds) == 3
    for i in range(3):
        a, b = ds[i], ref[i]
        assert set(a) == set(b)
        for k in a:
            assert torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype
    # indexed as SceneDataset is: 1.0 and True were numpy's IndexError, a slice its TypeError
    assert torch.equal(ds[-1]["image"], ref[2]["image"]) and len(list(ds)) == 3
    for index, error in ((1.0, TypeError), (True, TypeError), (slice(0, 2), TypeError),
                         (3, IndexError), (-4, IndexError)):  # fmt: skip
        for dataset in (ds, ref):
            with pytest.raises(error, match="^scene index"):
                dataset[index]
    assert isinstance(open_dataset(d, "test"), SceneFolder)
    assert isinstance(open_dataset("gabor", "test", size=2), SceneDataset)
    # Before: taken and ignored, the folder's scenes returned as they are
    for extra, name in (({"size": 2}, "size"), ({"seed": 3}, "seed"), ({"k": 1}, "k")):
        with pytest.raises(ValueError, match=f"holds its scenes; {name} apply to a generator"):
            open_dataset(d, "test", **extra)


def test_gabor_float_round_trip(tmp_path):
    g, splits = _splits("gabor", (2, 1, 2))
    d = write_dataset(tmp_path / "g", g.name, splits)
    ds = SceneFolder(d, "test")
    assert ds[0]["image"].dtype == torch.float32
    torch.testing.assert_close(ds[1]["image"], SceneDataset("gabor", "test", size=2)[1]["image"])


def test_existing_target_refused_and_atomic_failure(tmp_path):
    g, splits = _splits()
    d = write_dataset(tmp_path / "ds", g.name, splits)
    with pytest.raises(
        DataError,
        match="already holds a dataset; choose another output directory or remove this one, "
        "or pass overwrite=True to replace it$",  # its argument, not the command's --overwrite
    ):
        write_dataset(d, g.name, splits)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    with pytest.raises(MistError, match="choose a new out_dir"):  # was "--out", no such thing
        write_dataset(tmp_path / "mine", g.name, splits)
    with pytest.raises(RuntimeError):
        with dataset_directory(tmp_path / "new") as tmp:
            (tmp / "train.npz").write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "mine"]  # no partial, no temp
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    bad = dict(splits["train"], labels=splits["train"]["labels"][:, :3])
    with pytest.raises(DataError, match="labels must be"):
        write_dataset(tmp_path / "bad", g.name, {"train": bad})
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("empty", [False, True])
def test_overwrite_never_replaces_a_dataset_written_meanwhile(tmp_path, empty):
    """Before: two ``data make --overwrite`` into one new (or empty) folder both said they wrote
    it, and the first one's dataset was replaced by the second's without a word."""
    g, splits = _splits()
    out = tmp_path / "E"
    if empty:
        out.mkdir()
    with pytest.raises(MistError, match="E"):
        with dataset_directory(out, overwrite=True) as tmp:
            (tmp / "train.npz").write_bytes(b"ours")
            write_dataset(out, "theirs", splits)  # the other process, finished first
    assert read_manifest(out)["name"] == "theirs"  # theirs, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["E"]  # no temporary left


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    g, splits = _splits()
    d = write_dataset(tmp_path / "ds", g.name, splits)
    raw = (d / "train.npz").read_bytes()
    (d / "train.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"train\.npz: corrupt or truncated"):
        SceneFolder(d, "train")
    # Before: a .npy array: "TypeError: 'numpy.ndarray' object does not support the context
    # manager protocol" (an internal error); text: "This file contains pickled (object) data
    # ... load it unsafely using ... pickle.load()"
    np.save(tmp_path / "x.npy", np.zeros(3))
    for content, kind in [((tmp_path / "x.npy").read_bytes(), "a .npy array"),
                          (b"hello world\n", "no zip archive")]:  # fmt: skip
        (d / "train.npz").write_bytes(content)
        with pytest.raises(DataError, match=rf"train\.npz: not a split file \({kind}; an"):
            SceneFolder(d, "train")
    np.savez(d / "val.npz", images=np.zeros((3, 80, 80), np.uint8))
    with pytest.raises(DataError, match=r"val\.npz: missing arrays"):
        SceneFolder(d, "val")
    # Before: "out of memory; try smaller images, batches or network sizes", no file named
    # (numpy allocates the shape a header declares before it reads a byte)
    h = "{'descr': '|u1', 'fortran_order': False, 'shape': (10000000, 1, 1000, 1000), }"
    h = h + " " * (118 - len(h)) + "\n"
    with zipfile.ZipFile(d / "test.npz", "w") as z:
        z.writestr("images.npy", b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h.encode())
    with pytest.raises(DataError, match=r"test\.npz: an array header asks for more memory"):
        SceneFolder(d, "test")
    (d / "test.npz").unlink()  # was "split 'test' not in this dataset (have: test, ...)"
    with pytest.raises(DataError, match=r"test\.npz: missing, but the manifest lists the test"):
        SceneFolder(d, "test")
    for make, message in [
        (lambda p: p.symlink_to(p.name), "a symbolic link loop"),
        (lambda p: p.symlink_to("nowhere.npz"), "a symbolic link to nowhere"),
        (lambda p: p.mkdir(), "a directory, not a regular file$"),  # was "corrupt or truncated"
    ]:
        make(d / "test.npz")
        with pytest.raises(DataError, match=rf"test\.npz: {message}"):
            SceneFolder(d, "test")
        (d / "test.npz").rmdir() if (d / "test.npz").is_dir() else (d / "test.npz").unlink()
    (d / "manifest.json").rename(d / "m.json")
    (d / "manifest.json").symlink_to("manifest.json")  # was "missing dataset manifest"
    with pytest.raises(DataError, match="manifest.json: a symbolic link loop"):
        SceneFolder(d, "train")
    (d / "manifest.json").unlink()
    (d / "manifest.json").write_text('{"format": "mistnet-scenes", "name": "x", "classes": "abc"}')
    with pytest.raises(DataError, match="classes must be a list of class names, got str"):
        SceneFolder(d, "train")  # was a TypeError: an internal error of every command
    for link, message in [
        ("loop", "a symbolic link loop"),
        ("dangle", "a symbolic link to nowhere"),
    ]:
        (tmp_path / link).symlink_to(link if link == "loop" else "nowhere")
        with pytest.raises(DataError, match=f"{link}: {message}"):  # was "unknown generator"
            open_dataset(str(tmp_path / link), "train")
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest.json: not valid JSON"):
        SceneFolder(d, "train")
    with pytest.raises(DataError, match="no such dataset directory"):
        SceneFolder(tmp_path / "missing", "train")
    with pytest.raises(DataError, match="no such dataset directory"):
        open_dataset(str(tmp_path / "missing"), "train")


def test_official_round_trip(tmp_path):
    g, splits = _splits("mnist-hard", (5, 2, 3))
    d = write_dataset(tmp_path / "ds", g.name, splits)
    off = export_official(d, tmp_path / "official")
    lines = (off / "valid.txt").read_text().splitlines()
    assert len(lines) == 2 and (off / lines[0]).is_file()
    kp = np.load(off / "test_keypoints.npy")
    assert kp.shape == (3, 9, 3) and np.all(kp[..., 2] == 10.0)  # half side
    np.testing.assert_array_equal(kp[..., :2], splits["test"]["boxes"][..., :2])
    rows = (off / "test_labels.txt").read_text().splitlines()
    assert rows[0] == ",".join(str(v) for v in splits["test"]["labels"][0])
    from PIL import Image

    with Image.open(off / lines[0]) as im:
        assert im.mode == "RGB" and im.size == (80, 80)
    back = import_official(off, tmp_path / "back")
    for split, arrays in splits.items():
        got, meta = load_split(back, split)
        for k in arrays:
            np.testing.assert_array_equal(got[k], arrays[k])
    assert meta["generator"] == "official-import"


def test_official_partial_layout_and_rgb(tmp_path):
    g, splits = _splits("mnist-hard", (0, 0, 2))
    splits["test"]["images"] = np.repeat(splits["test"]["images"], 3, axis=1)
    splits["test"]["images"][:, 0] //= 2  # a real colour image
    d = write_dataset(tmp_path / "ds", g.name, {"test": splits["test"]})
    off = export_official(d, tmp_path / "official")
    assert not (off / "train.txt").exists()
    got = read_official(off, progress=False)
    assert list(got) == ["test"]
    np.testing.assert_array_equal(got["test"]["images"], splits["test"]["images"])
    ds = SceneFolder(import_official(off, tmp_path / "back"), "test")
    assert ds.channels == 3 and len(ds) == 2


def test_official_errors(tmp_path):
    g, splits = _splits("gabor", (1, 1, 1))
    d = write_dataset(tmp_path / "gabor", g.name, splits)
    with pytest.raises(DataError, match="8-bit PNGs"):
        export_official(d, tmp_path / "off")
    g, splits = _splits("mnist-hard-3to9", (8, 0, 0))
    d = write_dataset(tmp_path / "var", g.name, {"train": splits["train"]})
    with pytest.raises(DataError, match="same count"):
        export_official(d, tmp_path / "off")
    assert not (tmp_path / "off").exists()
    g, splits = _splits("mnist-hard", (2, 0, 0))
    off = export_official(
        write_dataset(tmp_path / "h", g.name, {"train": splits["train"]}), tmp_path / "off"
    )
    (off / "train_labels.txt").write_text("1,2\n")
    with pytest.raises(DataError, match="train_labels.txt: 1 label rows for 2 images"):
        read_official(off)
    (off / "train_keypoints.npy").unlink()
    with pytest.raises(DataError, match="train_keypoints.npy: missing"):
        read_official(off)
    with pytest.raises(DataError, match="not an official layout"):
        read_official(tmp_path / "h")


def _rewrite(d, split, **arrays):
    """Replace some arrays of ``d/<split>.npz`` (written uncompressed, as a user tool might)."""
    with np.load(d / f"{split}.npz") as z:
        content = {k: z[k] for k in z.files}
    np.savez(d / f"{split}.npz", **{**content, **arrays})


def _with(d, split, key, change):
    with np.load(d / f"{split}.npz") as z:
        a = z[key].copy()
    change(a)
    return {key: a}


@pytest.mark.parametrize(
    "key, index, value, message",
    [
        ("images", (0, 0, 5, 5), np.nan, "images holds 1 NaN or infinite values"),
        ("boxes", (1, 0, 0), np.inf, "boxes holds 1 NaN or infinite values"),
        ("labels", (0, 0), -3, "labels of counted instances must be class ids >= 0"),
        ("boxes", (0, 0, 2), -20.0, "boxes of counted instances must have width and height >= 0"),
        ("boxes", (0, 0, 0), 500.0, r"a box \(cx, cy, w, h\) = \(500, .* lies wholly outside"),
        ("boxes", (1, 0, 1), -30.0, r"a box .* lies wholly outside the \d+x\d+ image; 1 such box"),
    ],
    ids=["nan-image", "inf-box", "negative-label", "negative-side", "right-of", "above"],
)
def test_bad_values_in_a_split_are_refused_at_load(tmp_path, key, index, value, message):
    g, splits = _splits("gabor", (0, 0, 2))  # float images: NaN is representable
    d = write_dataset(tmp_path / "ds", g.name, {"test": splits["test"]})
    _rewrite(d, "test", **_with(d, "test", key, lambda a: a.__setitem__(index, value)))
    with pytest.raises(DataError, match=rf"test\.npz: {message}"):
        SceneFolder(d, "test")


def test_a_box_of_a_written_dataset_wholly_outside_its_image_is_refused(tmp_path):
    """Before: write_dataset (and eval of it) took a box no detection could reach, scored as a
    miss whatever the model did; one reaching past the edge is still an instance."""
    g, splits = _splits("mnist-hard-3to9", (0, 0, 2))
    test = {k: v.copy() for k, v in splits["test"].items()}
    W = test["images"].shape[3]
    test["boxes"][0, 0, :3] = [W + 3.0, 10.0, 4.0]  # x from W+1 to W+5
    with pytest.raises(DataError, match="lies wholly outside"):
        write_dataset(tmp_path / "out", g.name, {"test": test})
    assert not (tmp_path / "out").exists()
    test["boxes"][0, 0, :3] = [W - 1.0, 10.0, 4.0]  # reaches past the edge: kept
    assert len(SceneFolder(write_dataset(tmp_path / "in", g.name, {"test": test}), "test")) == 2


def test_a_negative_label_in_the_padding_is_fine_but_not_in_a_counted_slot(tmp_path):
    g, splits = _splits("mnist-hard-3to9", (0, 0, 4))
    d = write_dataset(tmp_path / "ds", g.name, {"test": splits["test"]})
    counts = splits["test"]["counts"]
    assert (counts < splits["test"]["labels"].shape[1]).any()  # some scenes have padding
    assert len(SceneFolder(d, "test")) == 4  # the padding slots hold -1 already
    i = int(np.argmin(counts))
    _rewrite(d, "test", **_with(d, "test", "labels", lambda a: a.__setitem__((i, 0), -1)))
    with pytest.raises(DataError, match="labels of counted instances"):
        SceneFolder(d, "test")


@pytest.mark.parametrize(
    "splits, message",
    [
        (["train", "test"], "got a list"),
        ({"train": "6"}, "got 'train': '6'"),
        ({"train": -1}, "got 'train': -1"),
        ({"valid": 3}, "got 'valid': 3"),
        ({"train": True}, "got 'train': True"),
    ],
)
def test_the_manifest_splits_must_map_split_names_to_counts(tmp_path, splits, message):
    g, arrays = _splits()
    d = write_dataset(tmp_path / "ds", g.name, arrays)
    meta = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**meta, "splits": splits}))
    with pytest.raises(DataError, match=rf"manifest.json: 'splits' must map .*{message}"):
        SceneFolder(d, "train")


@pytest.mark.parametrize(
    "seed, message",
    [
        ('0, "seed": 1', "'seed' appears twice"),
        ("NaN", "NaN is not a JSON number"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("1" + "0" * 5000, "not valid JSON"),
    ],
    ids=["key-twice", "nan", "deep", "huge-int"],
)
def test_a_manifest_is_read_as_strict_json(tmp_path, seed, message):
    g, arrays = _splits()
    d = write_dataset(tmp_path / "ds", g.name, arrays)
    text = (d / "manifest.json").read_text()
    (d / "manifest.json").write_text(text.replace("{", f'{{"seed": {seed}, ', 1))
    with pytest.raises(DataError, match=f"manifest.json: .*{message}") as err:
        SceneFolder(d, "train")
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_string_arrays_a_fifo_and_a_non_utf8_manifest_give_one_line(tmp_path):
    g, arrays = _splits()
    d = write_dataset(tmp_path / "ds", g.name, arrays)
    _rewrite(d, "train", labels=arrays["train"]["labels"].astype(str))
    with pytest.raises(DataError, match=r"train.npz: labels must be .* int64, got .* <U"):
        SceneFolder(d, "train")
    # Before: "corrupt or truncated split file": the file is whole, pickled on purpose
    _rewrite(d, "train", labels=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="train.npz: holds an array of Python objects"):
        SceneFolder(d, "train")
    (d / "val.npz").unlink()
    os.mkfifo(d / "val.npz")
    with pytest.raises(DataError, match="val.npz: a FIFO, not a regular file"):
        SceneFolder(d, "val")
    (d / "manifest.json").write_bytes(b'{"format": "mistnet-scenes", "name": "\xff"}')
    with pytest.raises(DataError, match="manifest.json: not UTF-8 text"):
        SceneFolder(d, "test")


def test_a_stale_temporary_directory_of_a_killed_writer_is_removed(tmp_path):
    g, arrays = _splits()
    proc = subprocess.Popen(["true"])
    proc.wait()
    stale = tmp_path / f".ds.{proc.pid}.0123abcd.tmp"
    stale.mkdir()
    (stale / ".mistnet").write_text("dataset\n")  # written first by the killed writer
    (stale / "train.npz").write_bytes(b"half")
    mine = tmp_path / f".ds.{proc.pid}.89abcdef.tmp"  # named so, but no writer's: kept
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    write_dataset(tmp_path / "ds", g.name, arrays)
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name, "ds"]


@pytest.fixture(scope="module")
def small_split(tmp_path_factory):
    g, arrays = _splits("mnist-hard-3to9", (0, 0, 3))
    d = write_dataset(tmp_path_factory.mktemp("corrupt") / "ds", g.name, {"test": arrays["test"]})
    return d, (d / "test.npz").read_bytes(), arrays["test"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_corruption_of_a_split_file_is_refused_or_harmless(small_split, data, tmp_path):
    """Flipped, zeroed or cut bytes anywhere in an npz: a DataError naming the file, or (when only
    zip bookkeeping such as a timestamp was hit) exactly the arrays that were written."""
    d, raw, want = small_split
    work = tmp_path / "ds"
    shutil.copytree(d, work, dirs_exist_ok=True)
    buf = bytearray(raw)
    kind = data.draw(st.sampled_from(["flip", "zero-run", "truncate"]))
    at = data.draw(st.integers(0, len(buf) - 1))
    if kind == "flip":
        buf[at] ^= data.draw(st.integers(1, 255))
    elif kind == "zero-run":
        end = min(len(buf), at + data.draw(st.integers(1, 64)))
        buf[at:end] = bytes(end - at)
    else:
        del buf[at:]
    (work / "test.npz").write_bytes(bytes(buf))
    try:
        got = SceneFolder(work, "test").arrays
    except DataError as exc:
        assert "test.npz" in str(exc) and "\n" not in str(exc)
        return
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value)


def test_a_zip_version_numpy_cannot_read_is_a_data_error(small_split, tmp_path):
    # Found by the corruption test above: one flipped byte in the "version needed to extract"
    # field of a central-directory entry makes zipfile raise NotImplementedError ("zip file
    # version 10.9").
    d, raw, _ = small_split
    work = tmp_path / "ds"
    shutil.copytree(d, work, dirs_exist_ok=True)
    at = raw.index(b"PK\x01\x02") + 6  # the first central-directory entry's field
    (work / "test.npz").write_bytes(raw[:at] + bytes([109]) + raw[at + 1 :])
    with pytest.raises(DataError, match=r"test\.npz: corrupt or truncated split file"):
        SceneFolder(work, "test")


@pytest.mark.parametrize("garbage", [b"ord\n'(", b'ord"\n)'])
def test_a_damaged_array_header_is_a_data_error(small_split, tmp_path, garbage):
    # Found by the corruption test above: numpy hands a damaged .npy header to Python's parser,
    # which raises SyntaxError or tokenize.TokenError rather than ValueError. An uncompressed
    # copy of the split puts the header's bytes where they can be damaged by hand.
    d, _, arrays = small_split
    work = tmp_path / "ds"
    shutil.copytree(d, work, dirs_exist_ok=True)
    np.savez(work / "test.npz", **arrays)
    raw = (work / "test.npz").read_bytes()
    assert b"order'" in raw
    (work / "test.npz").write_bytes(raw.replace(b"order'", garbage, 1))
    with pytest.raises(DataError, match=r"test\.npz: corrupt or truncated split file"):
        SceneFolder(work, "test")


def test_a_member_that_is_no_npy_array_is_a_data_error(small_split, tmp_path):
    # Found by the corruption test above: zeroed bytes in a central-directory entry turned a
    # deflated member into a "stored" one without its .npy magic, and numpy then hands back the
    # member's raw bytes instead of raising, which failed later as an AttributeError.
    d, _, _ = small_split
    work = tmp_path / "ds"
    shutil.copytree(d, work, dirs_exist_ok=True)
    with zipfile.ZipFile(d / "test.npz") as src, zipfile.ZipFile(work / "test.npz", "w") as dst:
        for name in src.namelist():
            dst.writestr(name, b"no array" if name == "counts.npy" else src.read(name))
    with pytest.raises(DataError, match=r"test\.npz: corrupt split file \(the array 'counts'"):
        SceneFolder(work, "test")


def test_a_class_name_with_a_control_character_is_refused_escaped(tmp_path):
    g, arrays = _splits()
    d = write_dataset(tmp_path / "ds", g.name, arrays)
    meta = json.loads((d / "manifest.json").read_text())
    names = [str(i) for i in range(9)] + ["nine\n\x1b[2J"]  # a written dataset edited by hand
    (d / "manifest.json").write_text(json.dumps({**meta, "classes": names}))
    with pytest.raises(DataError, match=r"classes: class name 'nine\\n\\x1b\[2J' holds") as err:
        SceneFolder(d, "train")
    assert "\n" not in str(err.value)


def test_a_split_whose_arrays_disagree_in_scenes_names_them_all():
    """Before: images cut to 6 of 8 scenes was "boxes must be (6,M,4) float32, got (8, 9, 4)",
    blaming the array left whole."""
    arrays = {
        "images": np.zeros((6, 1, 8, 8), np.uint8),
        "boxes": np.zeros((8, 1, 4), np.float32),
        "labels": np.zeros((8, 1), np.int64),
        "counts": np.zeros(8, np.int64),
    }
    message = "x.npz: the arrays hold different numbers of scenes (images 6, boxes 8, labels 8, "
    with pytest.raises(DataError, match=re.escape(message + "counts 8)")):
        validate_arrays(arrays, "x.npz")


def test_images_of_two_or_four_channels_are_refused():
    # Before: trained on, then detect and predict failed on every image file (read as 1 or 3).
    for channels in (2, 4):
        arrays = {
            "images": np.zeros((2, channels, 8, 8), np.uint8),
            "boxes": np.zeros((2, 1, 4), np.float32),
            "labels": np.zeros((2, 1), np.int64),
            "counts": np.zeros(2, np.int64),
        }
        with pytest.raises(DataError, match=f"with C = 1 or 3, got \\(2, {channels}, 8, 8\\)"):
            validate_arrays(arrays, "x.npz")


@pytest.mark.parametrize(
    ("name", "splits", "manifest", "message"),
    [
        ("x\x1b[31m", True, None, "name 'x\\x1b[31m' holds the control character"),
        ("x", True, {"classes": ["a", "a"]}, "classes: 'a' is named twice"),
        ("x", False, None, "no split given"),
        (5, True, None, "'name' must be text, got 5"),
        ("x", True, {"classes": ["a", "b"]}, "classes names 2 classes but train.npz holds label"),
        ("n" * 300, True, None, "'name' has 300 characters; at most 200"),
    ],
)
def test_write_dataset_refuses_what_its_readers_would(tmp_path, name, splits, manifest, message):
    """Before: each was written, a complete-looking dataset that open_dataset and every command
    then refused (a long name held data show for minutes; labels past the named classes were
    drawn half by name, half by number)."""
    g = build_generator("mnist-hard", layout_bank=16)
    arrays = {"train": make_scenes(g, "train", range(3), 0)} if splits else {}
    with pytest.raises(DataError, match=re.escape(message)):
        write_dataset(tmp_path / "d", name, arrays, manifest)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [" ", "", "../x/y"])
def test_a_manifest_name_the_writer_refuses_is_refused_as_read(capsys, tmp_path, name):
    """Before: a manifest edited to a blank name trained a run whose config.json no command
    could read again ("data.name must be a generator or dataset name", blaming the run); an
    empty one recorded the preset's dataset and sizes instead of this one."""
    g = build_generator("mnist-hard", layout_bank=16)
    d = write_dataset(
        tmp_path / "d",
        g.name,
        {s: make_scenes(g, s, range(4), 0) for s in ("train", "val", "test")},
    )
    meta = json.loads((d / "manifest.json").read_text())
    meta["name"] = name
    (d / "manifest.json").write_text(json.dumps(meta))
    argv = ["train", "--preset", "tiny-cpu", "--data", d, "--out", tmp_path / "r", "--threads", "1"]
    assert_user_error(mist(capsys, *argv), f"manifest.json: 'name' {name!r} must be a dataset name")
    assert not (tmp_path / "r").exists()


def test_a_split_holding_an_array_twice_is_refused(tmp_path):
    """Before: a .npz with two ``images.npy`` members was read, numpy taking the last (other zip
    readers take the first)."""
    import zipfile

    g = build_generator("mnist-hard", layout_bank=16)
    d = write_dataset(tmp_path / "d", g.name, {"test": make_scenes(g, "test", range(2), 0)})
    with zipfile.ZipFile(d / "test.npz") as z:
        members = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(d / "test.npz", "w") as z, pytest.warns(UserWarning, match="Duplicate"):
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("images.npy", members["images.npy"])
    with pytest.raises(DataError, match="test.npz: holds the array 'images' twice"):
        load_split(d, "test")


def test_write_dataset_checks_the_types_of_its_arguments(tmp_path):
    """Before: ``overwrite="no"`` replaced the dataset, ``{"val": a, "valid": b}`` kept one split
    of the two without a word, and ``splits=None``, images as a list or a numpy seed in the
    manifest failed deep inside (AttributeError, "int64 is not JSON serializable"; a numpy
    integer or bool is now written as Python's, a value JSON has no form for refused)."""
    g = build_generator("mnist-hard", layout_bank=16)
    arrays = make_scenes(g, "train", range(3), 0)
    write_dataset(tmp_path / "keep", "mine", {"train": arrays})
    before = (tmp_path / "keep" / "train.npz").read_bytes()
    for kwargs, error, message in [
        ({"overwrite": "no"}, TypeError, "overwrite must be True or False, got 'no'"),
        ({"compress": 1}, TypeError, "compress must be True or False, got 1"),
        ({"splits": {"val": arrays, "valid": arrays}}, ValueError, "'val' and 'valid' both"),
        ({"splits": None}, TypeError, "splits must be a dict of split name to arrays"),
        ({"splits": {"train": [arrays]}}, TypeError, "splits['train'] must be a dict"),
        ({"splits": {"train": {**arrays, "images": [[1]]}}}, TypeError, "['images'] must be a"),
        ({"manifest": {"seed": {3}}}, TypeError, "manifest must hold JSON values only"),
        ({"manifest": [1]}, TypeError, "manifest must be a dict, got list"),
        # replaced by what the arrays say, without a word
        ({"manifest": {"splits": 5}}, ValueError, "manifest: 'splits' is written by write_da"),
        ({"manifest": {"height": 9}}, ValueError, "manifest: 'height' is written by write_da"),
        ({"out_dir": ""}, ValueError, "out_dir '' is an empty path"),
        # Before: os's and pathlib's TypeErrors, naming no argument
        ({"out_dir": None}, TypeError, "out_dir must be a path as text, got NoneType"),
        ({"out_dir": b"/tmp/x"}, TypeError, "out_dir must be a path as text, got bytes"),
        # Before: written, and then "trained on the dataset , not ..." in messages
        ({"name": ""}, ValueError, "name '' must be a dataset name: not blank, no / in it"),
        ({"name": " "}, ValueError, "name ' ' must be a dataset name"),
        ({"name": "a/b"}, ValueError, "name 'a/b' must be a dataset name"),
    ]:
        call = {"out_dir": tmp_path / "keep", "name": "mine", "splits": {"train": arrays}}
        call.update(kwargs)
        with pytest.raises(error, match=re.escape(message)):
            write_dataset(**call)
    assert (tmp_path / "keep" / "train.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
    manifest = {"seed": np.int64(3), "flip": np.True_}
    write_dataset(tmp_path / "np", "mine", {"train": arrays}, manifest=manifest)
    written = json.loads((tmp_path / "np" / "manifest.json").read_text())
    assert (written["seed"], written["flip"]) == (3, True)


def test_open_dataset_names_an_argument_of_the_wrong_type(tmp_path, monkeypatch):
    """Before: ``""`` read the working directory as the dataset; ``size=2**70`` was accepted
    and ``len()`` then raised OverflowError; bytes or ``digits=None`` gave pathlib's TypeError."""
    monkeypatch.chdir(tmp_path)
    for args, kwargs, error, message in [
        (("", "train"), {}, ValueError, "dir_or_name '' is empty"),
        ((b"ds", "train"), {}, TypeError, "dir_or_name must be a path as text, got bytes"),
        (("mnist-hard", "train"), {"size": 2**70}, ValueError, "size must be an integer in 0.."),
        (("mnist-hard", "train"), {"digits": None}, TypeError, "digits must be 'embedded'"),
    ]:
        with pytest.raises(error, match=re.escape(message)):
            open_dataset(*args, **kwargs)


def test_write_dataset_refuses_a_manifest_key_that_is_no_string(tmp_path):
    """Before: ``manifest={1: "a"}`` passed the pre-check (run without sort_keys) and the write
    then raised TypeError "'<' not supported between instances of 'str' and 'int'"; a huge int
    was refused as a TypeError."""
    g = build_generator("mnist-hard", layout_bank=16)
    arrays = make_scenes(g, "train", range(3), 0)
    for manifest, error, message in [
        ({1: "a"}, TypeError, "manifest must hold JSON values only: key 1 is no string"),
        ({"a": {2: "b"}}, TypeError, "manifest must hold JSON values only: key 2 is no string"),
        ({"x": 10**5000}, ValueError, "manifest must hold JSON values only: an integer of"),
    ]:
        with pytest.raises(error, match=re.escape(message)):
            write_dataset(tmp_path / "ds", "mine", {"train": arrays}, manifest=manifest)
    assert list(tmp_path.iterdir()) == []


def _labels_only():
    """One split of 3 grey 8x8 images with one labelled instance each and no boxes (zeros)."""
    return {
        "images": np.zeros((3, 1, 8, 8), np.uint8),
        "boxes": np.zeros((3, 1, 4), np.float32),
        "labels": np.zeros((3, 1), np.int64),
        "counts": np.ones(3, np.int64),
    }


def test_write_dataset_reads_a_missing_annotations_entry_as_its_readers_do(tmp_path):
    """Before: the writer's check read an absent "annotations" as none, its readers as boxes
    and labels, so boxes of side 0 were written and then scored as real (det_iou50 0.0)."""
    with pytest.raises(DataError, match=r"annotations absent \(read as boxes and labels\), but "):
        write_dataset(tmp_path / "ds", "x", {"train": _labels_only()}, {"generator": "mine"})
    assert not (tmp_path / "ds").exists()
    write_dataset(tmp_path / "ok", "x", {"train": _labels_only()}, {"annotations": ["labels"]})


def test_a_manifest_whose_annotations_entry_was_removed_is_refused_at_load(tmp_path):
    """An import with labels (no boxes) whose manifest lost "annotations": read as boxes too."""
    d = write_dataset(tmp_path / "ds", "x", {"train": _labels_only()}, {"annotations": ["labels"]})
    meta = json.loads((d / "manifest.json").read_text())
    del meta["annotations"]
    (d / "manifest.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"manifest.json: annotations absent .* boxes of side 0"):
        SceneFolder(d, "train")


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (2, "version 2 was made by a newer mistnet (this one reads version 1)"),
        (99, "version 99 was made by a newer mistnet"),
        ("1", "'version' must be a whole number >= 1, got '1'"),
        (0, "'version' must be a whole number >= 1, got 0"),
    ],
)
def test_a_manifest_of_a_version_this_mistnet_does_not_write_is_refused(tmp_path, version, message):
    """Before: "version": 2 or 99 was read as version 1 without a word."""
    d = write_dataset(tmp_path / "ds", "x", {"train": _labels_only()}, {"annotations": ["labels"]})
    meta = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**meta, "version": version}))
    with pytest.raises(DataError, match=re.escape(f"{d / 'manifest.json'}: {message}")):
        load_split(d, "train")


def test_a_split_file_the_manifest_does_not_list_is_refused(capsys, tmp_path):
    """Before: train.npz was read by ``mist data show --split train`` and ``mist train`` though
    the manifest's splits no longer listed train."""
    splits = {"train": _labels_only(), "val": _labels_only()}
    d = write_dataset(tmp_path / "ds", "x", splits, {"annotations": ["labels"]})
    meta = json.loads((d / "manifest.json").read_text())
    del meta["splits"]["train"]
    (d / "manifest.json").write_text(json.dumps(meta))
    message = f"{d / 'manifest.json'}: lists no train split (have: val), though train.npz is there"
    with pytest.raises(DataError, match=re.escape(message)):
        SceneFolder(d, "train")
    assert len(SceneFolder(d, "val")) == 3
    argv = ["data", "show", d, "--split", "train", "--out", tmp_path / "s.png"]
    assert_user_error(mist(capsys, *argv), "lists no train split")
    assert not (tmp_path / "s.png").exists()


def test_a_split_swapped_in_is_refused_by_the_digest_the_manifest_records(tmp_path):
    """Before: only the manifest was compared with a run's record, so ``cp val.npz test.npz``
    (or a test split of another dataset) was scored as the test split. The digest is of the
    arrays: the same scenes written again have it, and a dataset written before it (none
    recorded) is read as it was."""
    from mistnet.data.runs import manifest_digest

    a = write_dataset(tmp_path / "a", "x", _splits()[1])
    b = write_dataset(tmp_path / "b", "x", _splits()[1], compress=False)  # other bytes
    meta = json.loads((a / "manifest.json").read_text())
    assert meta["split_digests"] == json.loads((b / "manifest.json").read_text())["split_digests"]
    assert len(set(meta["split_digests"].values())) == 3
    shutil.copy(a / "val.npz", a / "test.npz")
    edit = {**meta, "splits": {**meta["splits"], "test": meta["splits"]["val"]}}
    (a / "manifest.json").write_text(json.dumps(edit))
    with pytest.raises(DataError, match="test.npz: its scenes are not those manifest.json"):
        load_split(a, "test")
    assert load_split(a, "val")[0]["images"].shape[0] == 3
    del edit["split_digests"]  # as written before digests: read unchecked
    (a / "manifest.json").write_text(json.dumps(edit))
    assert load_split(a, "test")[0]["images"].shape[0] == 3
    assert manifest_digest(edit) == manifest_digest({**edit, "split_digests": {"test": "x"}})
    (a / "manifest.json").write_text(json.dumps({**edit, "split_digests": ["x"]}))
    with pytest.raises(DataError, match="split_digests must map each split to a digest"):
        load_split(a, "test")


def test_a_split_given_an_array_that_is_not_saved_is_read_back(tmp_path):
    """Before: the digest took every array given, ``_save_npz`` saved the four it reads, so a
    split given an extra ``ids`` array was written and then refused by every read."""
    splits = _splits()[1]
    splits["train"]["ids"] = np.arange(len(splits["train"]["images"]))
    d = write_dataset(tmp_path / "d", "x", splits)
    assert load_split(d, "train")[0]["images"].shape[0] == 6


def test_load_split_and_scene_folder_name_a_directory_that_is_no_path(tmp_path, monkeypatch):
    """Before: None was pathlib's "expected str, bytes or os.PathLike object", naming nothing;
    a 300-byte name a raw OSError; "" read the working directory as the dataset."""
    write_dataset(tmp_path / "ds", "x", _splits()[1])
    monkeypatch.chdir(tmp_path / "ds")
    for read in (load_split, SceneFolder):
        with pytest.raises(TypeError, match="^directory must be a path as text, got NoneType"):
            read(None, "train")
        with pytest.raises(ValueError, match="^directory '' is empty; give the folder to read"):
            read("", "train")
        with pytest.raises(ValueError, match="a name of 300 bytes"):
            read("x" * 300, "train")
