"""The boundary checks: contained paths, regular files, UTF-8 text, image size caps, finiteness."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import png_size_bomb
from PIL import Image

from mistnet import errors, validate
from mistnet.errors import DataError
from mistnet.imagefile import open_image
from mistnet.textfile import parse_json, read_text
from mistnet.validate import inside, regular_file, require_finite


@pytest.fixture
def root(tmp_path):
    (tmp_path / "root" / "images").mkdir(parents=True)
    (tmp_path / "root" / "images" / "0.png").write_bytes(b"x")
    (tmp_path / "outside.png").write_bytes(b"secret")
    (tmp_path / "root" / "images" / "out.png").symlink_to(tmp_path / "outside.png")
    (tmp_path / "root" / "images" / "in.png").symlink_to(tmp_path / "root" / "images" / "0.png")
    return tmp_path / "root"


@pytest.mark.parametrize(
    "name, message",
    [
        ("/etc/passwd", "is an absolute path"),
        ("../outside.png", r"holds '\.\.'; give paths inside the dataset root .* without it"),
        ("images/../../outside.png", r"holds '\.\.'"),
        # Before: said to leave the root, which it does not (refused all the same: '..')
        ("images/../images/x.png", r"'images/\.\./images/x.png' holds '\.\.'; give paths"),
        ("images/out.png", "is a link to .*outside.png, outside the dataset root"),
        ("images/\0.png", "holds a NUL byte"),
    ],
)
def test_a_listed_path_must_stay_inside_the_root(root, name, message):
    with pytest.raises(DataError, match=f"train.txt: .*{message}"):
        inside(root, name, root / "train.txt")


def test_paths_and_links_within_the_root_are_kept(root):
    assert inside(root, "images/0.png", "l") == root / "images" / "0.png"
    assert inside(root, "images/in.png", "l") == root / "images" / "in.png"  # link inside


def test_only_regular_files_are_opened(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(DataError, match="fifo: a FIFO, not a regular file"):
        regular_file(tmp_path / "fifo")
    with pytest.raises(DataError, match="a directory, not a regular file"):
        regular_file(tmp_path)
    with pytest.raises(DataError, match="missing: no such file"):
        read_text(tmp_path / "missing")
    with pytest.raises(DataError, match="a FIFO"):  # returns at once instead of blocking
        open_image(tmp_path / "fifo")


def test_text_must_be_utf8(tmp_path):
    (tmp_path / "ok.txt").write_text("é,1\n", encoding="utf-8")
    assert read_text(tmp_path / "ok.txt") == "é,1\n"
    (tmp_path / "latin.txt").write_bytes("1,2\n3,\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.txt: not UTF-8 text \(byte 6 is 0xe9\)"):
        read_text(tmp_path / "latin.txt")


def test_an_image_is_sized_from_its_header_before_it_is_decoded(tmp_path):
    png_size_bomb(tmp_path / "bomb.png", 60000, 60000)  # 3.6 GP: beyond Pillow's own limit
    with pytest.raises(DataError, match=r"bomb.png: more than [\d,]+ pixels \(Pillow's limit\)"):
        open_image(tmp_path / "bomb.png")
    png_size_bomb(tmp_path / "wide.png", 5000, 3000)  # 15 MP: below Pillow's limit
    with pytest.raises(
        DataError, match=r"5000x3000 = 15,000,000 pixels, more than the limit of 10,"
    ):
        open_image(tmp_path / "wide.png", max_pixels=10_000_000)
    Image.fromarray(np.full((30, 40), 9, np.uint8)).save(tmp_path / "ok.png")
    im = open_image(tmp_path / "ok.png", max_pixels=1200)  # exactly at the cap is fine
    assert im.size == (40, 30) and np.asarray(im)[0, 0] == 9
    with pytest.raises(DataError, match="1,200 pixels, more than the limit of 1,199"):
        open_image(tmp_path / "ok.png", max_pixels=1199)
    raw = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.png: not a readable image"):
        open_image(tmp_path / "cut.png")


def test_an_image_this_user_cannot_read_is_said_so(tmp_path, monkeypatch):
    """Before: "X.png: not a readable image ([Errno 13] Permission denied: 'X.png')", read as
    a format error, the path twice (the image in a folder it cannot enter was said plainly).
    (Root reads anything: the refusal is stood in for.)"""
    import mistnet.imagefile

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(mistnet.imagefile.Image, "open", denied)
    with pytest.raises(DataError, match=r"x.png: cannot read \(Permission denied\)$"):
        open_image(tmp_path / "x.png")


@pytest.mark.parametrize("make", [np.array, torch.tensor], ids=["numpy", "torch"])
def test_non_finite_values_are_counted_and_named(make):
    require_finite(make([[1.0, 2.0]]), "x")
    require_finite(make([[1, 2]]), "x")  # integers are always finite
    require_finite(np.zeros((0, 3, 4), np.float32), "empty")
    with pytest.raises(DataError, match=r"^w holds 2 NaN or infinite values \(of 4\)$"):
        require_finite(make([[1.0, float("nan")], [float("-inf"), 0.0]]), "w")


def test_finiteness_is_checked_in_every_chunk_of_a_large_array():
    images = np.zeros((3000, 1, 2, 2), np.float32)
    images[2999, 0, 1, 1] = np.inf  # in the last chunk of 1024 scenes
    with pytest.raises(DataError, match="holds 1 NaN"):
        require_finite(images, "images")


def test_json_with_a_key_twice_in_one_object_is_refused():
    doc = '{"annotations": [{"image_id": 1, "bbox": [1, 1, 5, 5], "bbox": [30, 30, 5, 5]}]}'
    with pytest.raises(DataError, match=r"c\.json: not valid JSON \(key 'bbox' appears twice"):
        parse_json(doc, "c.json")
    assert parse_json('{"a": {"b": 1}, "b": {"a": 2}}', "ok.json") == {"a": {"b": 1}, "b": {"a": 2}}


@pytest.mark.parametrize("name", ["\u202ecat", "cat\u2066", "\ud800"])
def test_a_class_name_with_a_bidi_control_or_a_lone_surrogate_is_refused_escaped(name):
    """U+202E reorders what a terminal shows after it; a lone surrogate cannot be encoded, so a
    run holding it would fail later in ``mist detect``'s CSV. Both are refused, and the message
    itself stays printable."""
    with pytest.raises(DataError, match="holds the control character") as caught:
        validate.class_name(name, "classes")
    message = str(caught.value)
    assert message.encode("utf-8") and not any(errors.unprintable(c) for c in message)


def test_zero_width_joiners_stay_allowed_in_class_names():
    assert validate.class_name("\u0645\u06cc\u200c\u0631\u0648\u062f", "classes")  # Persian ZWNJ


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (np.int64(3), 3),
        (np.uint8(3), 3),
        (torch.tensor(3), 3),
        (np.array(3), 3),
        (True, None),
        (np.True_, None),
        (torch.tensor(True), None),
        (3.0, None),
        (torch.tensor(3.0), None),
        (torch.tensor([3]), None),
        (np.array([3]), None),
        (torch.tensor(3, device="meta"), None),
        ("3", None),
    ],
)
def test_as_integer_takes_numpy_integers_and_0d_integer_tensors_only(value, expected):
    """Before: ``seed``, ``threads`` and the config's integers refused ``torch.tensor(3)``
    ("must be an integer, got tensor(3)"); a meta tensor was a RuntimeError."""
    n = validate.as_integer(value)
    assert n == expected and type(n) is type(expected)


def test_seed_and_threads_take_0d_integer_tensors_and_name_what_they_refuse():
    assert validate.seed(torch.tensor(5)) == 5 and validate.threads(np.int64(2)) == 2
    with pytest.raises(TypeError, match=r"^seed must be an integer, got tensor\(\[5\]\)$"):
        validate.seed(torch.tensor([5]))
    with pytest.raises(TypeError, match=r"^threads must be an integer, got np\.True_$"):
        validate.threads(np.True_)
    with pytest.raises(errors.ArgumentError, match=r"^seed must be an integer in \[0, 2\*\*63\)"):
        validate.seed(torch.tensor(-1))
    assert validate.flag(np.False_, "progress") is False


def test_a_json_syntax_error_names_where_once():
    # Before: "Unterminated string starting at at line 1 column 7" (json's message ends in "at")
    for doc, what in [('{"a": "x', "Unterminated string starting"),
                      ('{"a": "\x01"}', "Invalid control character"),
                      ('{"a" 1}', "Expecting ':' delimiter")]:  # fmt: skip
        with pytest.raises(DataError, match=rf"^c\.json: not valid JSON \({what} at line 1 col"):
            parse_json(doc, "c.json")


def test_read_text_refuses_a_file_larger_than_it_reads_naming_it(tmp_path, monkeypatch):
    """Before: a 4 GB (sparse) config.json was read whole: under a memory limit "out of
    memory", naming no file; without one, 6.6 GB of memory before the JSON error."""
    big = tmp_path / "config.json"
    with big.open("wb") as f:
        f.truncate(2**30 + 2**29)  # sparse: nothing written to the disk
    with pytest.raises(DataError, match=r"config\.json: 1\.5 GiB, more than the 1 GiB of text"):
        read_text(big)
    small = tmp_path / "log.jsonl"
    small.write_text("{}\n")

    def no_memory(self):
        raise MemoryError

    monkeypatch.setattr(Path, "read_bytes", no_memory)
    with pytest.raises(DataError, match=r"log\.jsonl: too large to read into this machine's"):
        read_text(small)
