"""Full MNIST in the data cache: ``mist data download mnist [--from DIR]`` and ``--digits mnist``.

The checks run on small IDX files each test writes, with their own MD5s passed in place of the
canonical ones; the tests on the real set read ``../shared/data/mnist`` (beside the repository)
and skip without it. Nothing here uses the network: the no-network case downloads from a port
on this machine that nothing listens on.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, files_under, mist
from helpers import fill_small_mnist_cache, md5s, small_mnist

from mistnet.data import load_digits, mnist
from mistnet.data.mnist import MNIST_MD5, data_cache, download_mnist, install_mnist, mnist_cache
from mistnet.data.store import SceneFolder
from mistnet.errors import DataError

SHARED_MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"
needs_shared_mnist = pytest.mark.skipif(
    not SHARED_MNIST.is_dir(), reason=f"full MNIST not found at {SHARED_MNIST}"
)


def test_from_a_folder_of_plain_and_gzipped_files_fills_the_cache_that_digits_mnist_reads(
    tmp_path, monkeypatch
):
    content = small_mnist(
        tmp_path / "src", gzipped=("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    )
    monkeypatch.setattr(mnist, "MNIST_MD5", md5s(content))  # what --digits mnist checks
    cache = install_mnist(tmp_path / "src", md5=md5s(content))
    assert cache == data_cache() / "mnist" == mnist_cache()
    # The cache holds the decompressed files, nothing else (no temporary left beside it).
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == content
    assert sorted(p.name for p in cache.parent.iterdir()) == ["mnist"]
    # Before: with the cache full, a folder of damaged files was "verified" (the files unread)
    (tmp_path / "bad").mkdir()
    for name in content:
        (tmp_path / "bad" / name).write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"bad/train-images-idx3-ubyte: not the canonical MNIST"):
        install_mnist(tmp_path / "bad", md5=md5s(content))
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == content
    # Before: a cache of links to the files was "verified", then refused by every reader
    # (a link out of its folder) with nothing that said to remove it
    for name in content:
        (cache / name).rename(tmp_path / name)
        (cache / name).symlink_to(tmp_path / name)
    with pytest.raises(DataError, match="holds 't10k-images-idx3-ubyte', which is a symbolic link"):
        install_mnist(tmp_path / "src", md5=md5s(content))
    for name in content:  # as it was, for what follows
        (cache / name).unlink()
        (tmp_path / name).rename(cache / name)
    pools = load_digits("mnist")
    assert pools.source == "mnist"
    assert [len(pools.split(s)[1]) for s in ("train", "val", "test")] == [10, 2, 6]
    assert pools.record() == {"source": "mnist", "train": 10, "val": 2, "test": 6}
    assert str(cache) in pools.describe() and "10 / 2 / 6" in pools.describe()


def test_a_recompressed_copy_passes_the_check_of_the_content(tmp_path):
    content = small_mnist(tmp_path / "src")
    stem = "train-images-idx3-ubyte"
    recompressed = gzip.compress(content[stem], compresslevel=1, mtime=12345)
    assert recompressed != gzip.compress(content[stem])  # other bytes, same content
    (tmp_path / "src" / stem).unlink()
    # A usual re-distribution spelling, and gzip recognised by content, not by the name.
    (tmp_path / "src" / "train-images.idx3-ubyte").write_bytes(recompressed)
    cache = install_mnist(tmp_path / "src", md5=md5s(content))
    assert (cache / stem).read_bytes() == content[stem]


@pytest.mark.parametrize("damage", ["flipped byte", "cut gzip"])
def test_a_damaged_file_is_refused_naming_it_and_nothing_is_left(tmp_path, damage):
    content = small_mnist(tmp_path / "src", gzipped=("t10k-images-idx3-ubyte",))
    bad = tmp_path / "src" / "t10k-images-idx3-ubyte.gz"
    if damage == "flipped byte":
        raw = bytearray(content["t10k-images-idx3-ubyte"])
        raw[100] ^= 0xFF
        bad.write_bytes(gzip.compress(bytes(raw)))
        match = "t10k-images-idx3-ubyte.gz: not the canonical MNIST t10k-images-idx3-ubyte"
    else:
        bad.write_bytes(bad.read_bytes()[:-30])
        match = "t10k-images-idx3-ubyte.gz: damaged gzip file"
    before = files_under(tmp_path)
    with pytest.raises(DataError, match=match):
        install_mnist(tmp_path / "src", md5=md5s(content))
    assert files_under(tmp_path) == before
    assert not data_cache().exists()  # not even the cache folder itself: made here, removed


def test_the_command_fills_the_cache_and_refuses_a_damaged_copy_in_one_line(
    capsys, tmp_path, monkeypatch
):
    content = small_mnist(tmp_path / "src", gzipped=tuple(MNIST_MD5))
    monkeypatch.setattr(mnist, "MNIST_MD5", md5s(content))
    (tmp_path / "src" / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(content["train-labels-idx1-ubyte"][:-1] + b"\x09")
    )
    before = files_under(tmp_path)
    result = mist(capsys, "data", "download", "mnist", "--from", tmp_path / "src")
    assert_user_error(result, "train-labels-idx1-ubyte.gz", "not the canonical MNIST")
    assert files_under(tmp_path) == before and not data_cache().exists()

    (tmp_path / "src" / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(content["train-labels-idx1-ubyte"])
    )
    rc, out, err = mist(capsys, "data", "download", "mnist", "--from", tmp_path / "src")
    assert rc == 0, err
    assert f"MNIST verified in the data cache {mnist_cache()}; use --digits mnist" in out
    assert {p.name: p.read_bytes() for p in mnist_cache().iterdir()} == content


def test_a_cache_that_holds_mnist_is_kept_and_a_damaged_one_replaced(tmp_path):
    content = small_mnist(tmp_path / "src")
    md5 = md5s(content)
    cache = install_mnist(tmp_path / "src", md5=md5)
    inode = cache.stat().st_ino
    assert install_mnist(tmp_path / "src", md5=md5) == cache
    assert cache.stat().st_ino == inode  # verified, left as it was
    (cache / "t10k-labels-idx1-ubyte").write_bytes(b"damaged")
    install_mnist(tmp_path / "src", md5=md5)
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == content
    assert sorted(p.name for p in cache.parent.iterdir()) == ["mnist"]


def test_from_a_folder_that_is_missing_or_incomplete_is_one_line(capsys, tmp_path):
    small_mnist(tmp_path / "src")
    (tmp_path / "src" / "t10k-labels-idx1-ubyte").unlink()
    before = files_under(tmp_path)
    result = mist(capsys, "data", "download", "mnist", "--from", tmp_path / "src")
    assert_user_error(result, "t10k-labels-idx1-ubyte: missing MNIST file")
    # Before: a link to nowhere in its place was "missing MNIST file (plain or .gz)" too
    (tmp_path / "src" / "t10k-labels-idx1-ubyte").symlink_to(tmp_path / "src" / "moved")
    before = files_under(tmp_path)
    result = mist(capsys, "data", "download", "mnist", "--from", tmp_path / "src")
    assert_user_error(result, "t10k-labels-idx1-ubyte: a symbolic link to nowhere")
    result = mist(capsys, "data", "download", "mnist", "--from", tmp_path / "none")
    assert_user_error(result, "--from", "none: not a directory")
    assert_user_error(mist(capsys, "data", "download", "cifar"), "unknown download 'cifar'")
    assert files_under(tmp_path) == before and not data_cache().exists()


def test_a_plain_and_a_gzipped_file_of_one_name_must_agree(capsys, tmp_path):
    """Before: with both NAME and NAME.gz in the folder, the plain one was read and the other
    never looked at, whatever it held. The same content (``gunzip -k``) is read; different
    contents are refused, naming both."""
    import gzip

    content = small_mnist(tmp_path / "src")
    labels = tmp_path / "src" / "t10k-labels-idx1-ubyte"
    with gzip.open(f"{labels}.gz", "wb") as f:
        f.write(content[labels.name][:-1] + b"\x07")  # the last label another
    before = files_under(tmp_path)
    out = tmp_path / "ds"
    result = mist(capsys, "data", "make", "mnist-easy", "--digits", tmp_path / "src", "--out", out)
    assert_user_error(result, f"{labels} and {labels.name}.gz hold different", "keep the one")
    result = mist(capsys, "data", "download", "mnist", "--from", tmp_path / "src")
    assert_user_error(result, "hold different t10k-labels-idx1-ubyte files")
    assert files_under(tmp_path) == before and not data_cache().exists()
    with gzip.open(f"{labels}.gz", "wb") as f:
        f.write(content[labels.name])  # as gunzip -k leaves them: read
    assert len(load_digits(str(tmp_path / "src")).split("test")[1]) == 6
    # Before: the .gz cut short was an internal error (EOFError), one of a bad header said
    # "Unknown compression method" naming no file
    whole = Path(f"{labels}.gz").read_bytes()
    for i, damaged in enumerate((whole[:-8], b"\x1f\x8b\x07\0\0\0\0\0\0\x03abcdefgh")):
        src = shutil.copytree(tmp_path / "src", tmp_path / f"damaged{i}")  # not read before
        (src / f"{labels.name}.gz").write_bytes(damaged)
        before = files_under(tmp_path)
        for argv in (["make", "mnist-easy", "--digits", src, "--out", out],
                     ["download", "mnist", "--from", src]):  # fmt: skip
            result = mist(capsys, "data", *argv)
            assert_user_error(result, f"{src / labels.name}.gz: damaged gzip file (")
        assert files_under(tmp_path) == before and not data_cache().exists()


def test_a_link_out_of_the_folder_is_refused_naming_it(capsys, tmp_path):
    # Before: `--from DIR` and `--digits DIR` read an IDX file that a symbolic link in DIR
    # pointed at anywhere on the disk; only the folder given is read now, as import-images does.
    small_mnist(tmp_path / "src")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "src" / "t10k-labels-idx1-ubyte").rename(tmp_path / "elsewhere" / "labels")
    (tmp_path / "src" / "t10k-labels-idx1-ubyte").symlink_to(tmp_path / "elsewhere" / "labels")
    (tmp_path / "src" / "t10k-images-idx3-ubyte").rename(tmp_path / "src" / "images")
    (tmp_path / "src" / "t10k-images-idx3-ubyte").symlink_to("images")  # inside: read
    before = files_under(tmp_path)
    message = "t10k-labels-idx1-ubyte: a symbolic link to "
    result = mist(capsys, "data", "download", "mnist", "--from", tmp_path / "src")
    assert_user_error(result, message, "elsewhere/labels, outside", "copy it in")
    out = tmp_path / "ds"
    result = mist(capsys, "data", "make", "mnist-easy", "--digits", tmp_path / "src", "--out", out)
    assert_user_error(result, message, "outside")
    assert files_under(tmp_path) == before and not data_cache().exists()
    (tmp_path / "src" / "t10k-labels-idx1-ubyte").unlink()
    (tmp_path / "elsewhere" / "labels").rename(tmp_path / "src" / "t10k-labels-idx1-ubyte")
    pools = load_digits(str(tmp_path / "src"))  # the link inside the folder is followed
    assert len(pools.split("test")[1]) == 6


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_download_without_network_is_one_line_and_leaves_no_folder(capsys, tmp_path, monkeypatch):
    # The cache's parents do not exist yet: a failed download must not leave them either.
    monkeypatch.setenv("MISTNET_DATA", str(tmp_path / "home" / ".cache" / "mistnet"))
    monkeypatch.setattr(mnist, "MNIST_URLS", (f"http://127.0.0.1:{_closed_port()}/",))
    result = mist(capsys, "data", "download", "mnist")
    assert_user_error(result, "cannot download MNIST", "train-images-idx3-ubyte.gz", "--from DIR")
    assert list(tmp_path.iterdir()) == []


def test_a_download_tries_the_next_mirror_and_checks_the_content(tmp_path, monkeypatch):
    content = small_mnist(tmp_path / "src")
    fetched = []

    def fetch(url, dest, progress):
        fetched.append(url)
        stem = url.rsplit("/", 1)[1].removesuffix(".gz")
        dest.write_bytes(gzip.compress(content[stem] if "good" in url else b"corrupted"))

    monkeypatch.setattr(mnist, "_fetch", fetch)
    monkeypatch.setattr(mnist, "MNIST_URLS", ("https://bad/", "https://good/"))
    cache = download_mnist(progress=False, md5=md5s(content))
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == content
    assert len(fetched) == 8  # each file: the bad mirror refused by its MD5, the good one kept
    download_mnist(progress=False, md5=md5s(content))
    assert len(fetched) == 8  # a cache that holds the files is not downloaded again

    monkeypatch.setattr(mnist, "MNIST_URLS", ("https://bad/",))
    with pytest.raises(DataError, match="https://bad/train-images-idx3-ubyte.gz: not the canon"):
        download_mnist(cache=tmp_path / "other", progress=False, md5=md5s(content))
    assert not (tmp_path / "other").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_a_cache_file_changed_since_it_was_filled_is_refused_naming_it(
    capsys, tmp_path, monkeypatch
):
    """The MD5s are checked each time --digits mnist reads the cache, not only when filled."""
    fill_small_mnist_cache(monkeypatch, tmp_path / "src")
    labels = mnist_cache() / "t10k-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10  # still a valid label: only the digest tells
    labels.write_bytes(bytes(raw))
    before = files_under(tmp_path)
    argv = ["data", "make", "mnist-hard", "--digits", "mnist", "--out", tmp_path / "scenes"]
    result = mist(capsys, *argv, "--n-train", 2, "--n-val", 2, "--n-test", 2)
    assert_user_error(result, f"{labels}: damaged", "mist data download mnist --from DIR")
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    "argv",
    [
        ("data", "make", "mnist-easy", "--out", "{tmp}/scenes", "--digits", "mnist"),
        ("demo", "--out", "{tmp}/demo", "--digits", "mnist", "--minutes", "1"),
        ("reproduce", "table2", "--budget", "smoke", "--out", "{tmp}/r", "--digits", "mnist"),
        # Before: "--digits mnist: ...", an option not given (the model records its digits)
        (
            "eval",
            "--model",
            "mnist-hard-classifier",
            "--data",
            "mnist-hard",
            "--json",
            "{tmp}/e.json",
        ),
    ],
    ids=["data make", "demo", "reproduce", "eval --model"],
)
def test_digits_mnist_with_an_empty_cache_says_how_to_fill_it(capsys, tmp_path, argv):
    result = mist(capsys, *(a.format(tmp=tmp_path) for a in argv))
    assert_user_error(
        result,
        f"the data cache {mnist_cache()} holds no MNIST",
        "mist data download mnist",
        "--from DIR",
    )
    assert "--digits" in argv or "--digits" not in result[2]  # no option the user never gave
    assert list(tmp_path.iterdir()) == []


def test_reproduce_takes_only_embedded_or_mnist_digits(capsys, tmp_path):
    argv = ("reproduce", "table2", "--budget", "smoke", "--out", tmp_path, "--digits", "x")
    with pytest.raises(SystemExit) as exit_:
        mist(capsys, *argv)
    assert exit_.value.code == 2 and "invalid choice: 'x'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@needs_shared_mnist
def test_the_real_mnist_passes_the_canonical_md5s_and_makes_scenes(capsys, tmp_path):
    before = {p.name: os.stat(p).st_mtime_ns for p in SHARED_MNIST.iterdir()}
    rc, _, err = mist(capsys, "data", "download", "mnist", "--from", SHARED_MNIST)
    assert rc == 0, err
    assert {p.name: os.stat(p).st_mtime_ns for p in SHARED_MNIST.iterdir()} == before
    for stem, md5 in MNIST_MD5.items():
        assert hashlib.md5((mnist_cache() / stem).read_bytes()).hexdigest() == md5
    pools = load_digits("mnist")
    assert [len(pools.split(s)[1]) for s in ("train", "val", "test")] == [50_000, 10_000, 10_000]
    sizes = ("--n-train", 2, "--n-val", 2, "--n-test", 2)
    out = tmp_path / "scenes"
    rc, _, err = mist(
        capsys, "data", "make", "mnist-hard", "--out", out, "--digits", "mnist", *sizes
    )
    assert rc == 0, err
    assert SceneFolder(out, "test").manifest["digits"] == "mnist"


def test_a_cache_folder_holding_files_of_the_users_is_never_replaced(capsys, tmp_path, monkeypatch):
    """Before: the cache folder was replaced as a whole, deleting what else it held: the ``.gz``
    originals when ``--from`` was the cache itself, notes, a file named ``mnist``."""
    cache = mnist_cache()
    content = small_mnist(cache, gzipped=tuple(MNIST_MD5))  # the originals kept in the cache
    monkeypatch.setattr(mnist, "MNIST_MD5", md5s(content))
    (cache / "notes.txt").write_text("mine")
    before = files_under(data_cache())
    result = mist(capsys, "data", "download", "mnist", "--from", cache)
    assert_user_error(result, str(cache), "'notes.txt'", "move it away first")
    assert files_under(data_cache()) == before

    (cache / "notes.txt").unlink()  # the .gz originals alone are not the cache's either
    result = mist(capsys, "data", "download", "mnist", "--from", cache)
    assert_user_error(result, "'t10k-images-idx3-ubyte.gz'", "replaced as a whole")

    small_mnist(tmp_path / "src", gzipped=tuple(MNIST_MD5))
    for path in cache.iterdir():
        path.unlink()
    cache.rmdir()
    cache.write_text("a file of mine")
    result = mist(capsys, "data", "download", "mnist", "--from", tmp_path / "src")
    assert_user_error(result, str(cache), "is a file, not the MNIST cache folder")
    assert cache.read_text() == "a file of mine"


def test_the_cache_is_never_filled_inside_a_mistnet_output(capsys, tmp_path, monkeypatch):
    """Before: MISTNET_DATA=DS put 55 MB into the dataset DS, whose replacement then failed."""
    from mistnet.data import build_generator, make_scenes, write_dataset

    g = build_generator("mnist-hard", layout_bank=16)
    ds = write_dataset(tmp_path / "ds", g.name, {"test": make_scenes(g, "test", range(2), 0)})
    monkeypatch.setenv("MISTNET_DATA", str(ds))
    small_mnist(tmp_path / "src")
    before = files_under(tmp_path)
    result = mist(capsys, "data", "download", "mnist", "--from", tmp_path / "src")
    assert_user_error(result, "the MNIST cache ($MISTNET_DATA/mnist)", "is inside the dataset")
    assert files_under(tmp_path) == before


def test_a_cache_under_an_unknown_home_is_one_line(capsys, tmp_path, monkeypatch):
    """Before: MISTNET_DATA='~nosuchuser/cache' was an internal error (pathlib's RuntimeError
    "Could not determine home directory")."""
    monkeypatch.setenv("MISTNET_DATA", "~nosuchuser/cache")
    small_mnist(tmp_path / "src")
    before = files_under(tmp_path)
    result = mist(capsys, "data", "download", "mnist", "--from", tmp_path / "src")
    assert_user_error(result, "MISTNET_DATA='~nosuchuser/cache': Could not determine home")
    out = tmp_path / "d"
    result = mist(capsys, "data", "make", "mnist-hard", "--digits", "mnist", "--out", out)
    assert_user_error(result, "MISTNET_DATA='~nosuchuser/cache'", "set MISTNET_DATA to")
    assert files_under(tmp_path) == before


def test_a_file_size_limit_while_filling_the_cache_names_the_cache(tmp_path):
    """Before: "File too large" alone, naming no file (every other writer names its output)."""
    import resource

    content = small_mnist(tmp_path / "src")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))  # EFBIG past 100 bytes
    try:
        with pytest.raises(OSError) as info:
            install_mnist(tmp_path / "src", md5=md5s(content))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert info.value.filename == str(mnist_cache())
    assert not mnist_cache().exists()


def test_an_interrupt_while_the_cache_is_swapped_in_leaves_one_cache_and_no_temporary(
    tmp_path, monkeypatch
):
    """Before: Ctrl-C between the renames left no cache (the old one aside under a temporary
    name), and a SIGTERM once the new one was in place left the old one for ever."""
    import signal

    from mistnet.data import mnist as mnist_module

    md5 = {"f": hashlib.md5(b"new").hexdigest()}
    cache = tmp_path / "mnist"
    cache.mkdir()
    (cache / "f").write_bytes(b"old, damaged")
    real = os.rename

    def rename(src, dst):  # the signal as the old cache is set aside
        real(src, dst)
        if str(src) == str(cache):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(mnist_module.os, "rename", rename)
    # Python's own Ctrl-C handler, whatever the runner set (pytest-xdist's workers ignore it)
    runner = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            mnist_module._fill_cache(cache, md5, lambda stem, dest: dest.write_bytes(b"new"))
    finally:
        signal.signal(signal.SIGINT, runner)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist"]
    assert (cache / "f").read_bytes() == b"new"
