"""Full MNIST in the data cache: ``mist data download mnist`` and ``--digits mnist``.

The data cache is ``$MISTNET_DATA`` (default ``~/.cache/mistnet``); full MNIST lives in its
``mnist/`` folder as the four IDX files, decompressed. They get there only by an explicit
command: downloaded from a mirror (:func:`download_mnist`, the one use of the network in
mistnet) or taken from a local folder (:func:`install_mnist`, for machines offline). Either
way each file is checked against the MD5 of the canonical *decompressed* content
(:data:`MNIST_MD5`), so a re-compressed copy passes and a damaged one is refused; and again
each time ``--digits mnist`` reads the cache (:func:`cached_mnist`). The four files
are written into a temporary sibling of ``mnist/`` that is renamed into place in one step: the
cache holds all of MNIST or none of it, and a failure (no network, a damaged file, an
interrupt) leaves nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from mistnet.errors import DataError
from mistnet.io import (
    a_file,
    make_parents,
    remove_empty,
    remove_path,
    remove_stale_temporaries,
    temporary_sibling,
)
from mistnet.outputs import check_outside
from mistnet.signals import deferred_signals
from mistnet.validate import regular_file

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: MD5 of each MNIST file's decompressed content, the one table every check reads (the gzip
#: bytes differ between mirrors and re-compressed copies; the content does not).
MNIST_MD5: dict[str, str] = {
    IDX_FILES["train_images"]: "6bbc9ace898e44ae57da46a324031adb",
    IDX_FILES["train_labels"]: "a25bea736e30d166cdddb491f175f624",
    IDX_FILES["test_images"]: "2646ac647ad5339dbf082846283269ea",
    IDX_FILES["test_labels"]: "27ae3e4e09519cfbb04c329615203637",
}
MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
HOW_TO_FILL = (
    "fill it with `mist data download mnist` (needs internet) or "
    "`mist data download mnist --from DIR` (a folder holding the four MNIST IDX files)"
)
_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK = 1 << 20


def data_cache() -> Path:
    """The data cache: ``$MISTNET_DATA``, or ``~/.cache/mistnet`` when it is unset or empty.

    Raises:
        DataError: a ``~user`` of no such user, or no home directory for the default (pathlib's
            RuntimeError "Could not determine home directory" before).
    """
    root = os.environ.get("MISTNET_DATA")
    try:
        return Path(root).expanduser() if root else Path.home() / ".cache" / "mistnet"
    except RuntimeError as exc:
        where = f"MISTNET_DATA={root!r}" if root else "the data cache ~/.cache/mistnet"
        why = str(exc).rstrip(".")
        raise DataError(f"{where}: {why}; set MISTNET_DATA to the cache folder") from None


def mnist_cache() -> Path:
    """The folder of full MNIST in the data cache (it may not exist)."""
    return data_cache() / "mnist"


def cached_mnist() -> Path:
    """The cache folder of full MNIST, holding the four IDX files, each checked against
    :data:`MNIST_MD5` (the four files, 55 MB, hash in about 0.1 s: a file changed in the cache
    since it was filled is never used).

    Raises:
        DataError: the cache holds no MNIST (one line saying how to fill it), or a file whose
            content is not MNIST's (one line naming it and how to refill the cache).
    """
    cache = mnist_cache()
    if not all((cache / stem).is_file() for stem in MNIST_MD5):
        raise DataError(  # "--digits mnist" named an option a model's recorded digits are not
            f"full MNIST digits (digits mnist) are asked for, but the data cache {cache} holds "
            f"no MNIST; {HOW_TO_FILL}"
        )
    for stem, want in MNIST_MD5.items():
        got = _file_md5(cache / stem)
        if got != want:
            raise DataError(
                f"{cache / stem}: damaged (MD5 of its content {got}, expected {want}); refill "
                "the cache with `mist data download mnist --from DIR` (or online, without --from)"
            )
    return cache


def find_idx(directory: Path, stem: str) -> Path:
    """The file of ``stem`` in ``directory`` under any of its usual names, plain or ``.gz``.

    Raises:
        DataError: none of the names is a file (one that is something else is named), the
            file is a symbolic link out of ``directory`` (only the folder given is read), or
            two of the names are files of different contents (``gunzip -k`` keeps two of one).
    """
    dotted = stem.replace("-idx", ".idx")  # the spelling of some re-distributions
    names = [directory / name for name in (stem, stem + ".gz", dotted, dotted + ".gz")]
    found = [path for path in names if path.is_file()]
    for path in found:
        real = path.resolve()
        if not real.is_relative_to(directory.resolve()):
            raise DataError(
                f"{path}: a symbolic link to {real}, outside {directory}; give the folder "
                "that holds the file (or copy it in)"
            )
    for other in found[1:]:  # the first was read, the others never looked at
        if not _same_content(found[0], other):
            raise DataError(
                f"{found[0]} and {other.name} hold different {stem} files; keep the one to read"
            )
    if found:
        return found[0]
    for path in names:
        if os.path.lexists(path):  # a FIFO, a folder, a link to nowhere: not "missing"
            regular_file(path)
    raise DataError(f"{directory / stem}: missing MNIST file (plain or .gz)")


def open_idx(path: Path) -> BinaryIO:
    """Open an IDX file for reading, decompressing it when it is gzipped (by content, not name)."""
    f = path.open("rb")
    if f.read(2) == _GZIP_MAGIC:
        f.close()
        return gzip.open(path, "rb")
    f.seek(0)
    return f


def _same_content(a: Path, b: Path) -> bool:
    """Whether the IDX files ``a`` and ``b`` hold the same bytes once decompressed.

    Raises:
        DataError: one is a damaged gzip file (``gunzip -k`` beside a cut download), naming it:
            it was an internal error (``EOFError``), or "Unknown compression method" alone.
    """
    with open_idx(a) as fa, open_idx(b) as fb:
        while True:
            chunk = _read_block(fa, a)
            if chunk != _read_block(fb, b):
                return False
            if not chunk:
                return True


def _read_block(f: BinaryIO, path: Path) -> bytes:
    try:
        return f.read(1 << 20)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: damaged gzip file ({exc})") from None


def _copy_checked(source: Path, dest: Path | None, md5: str, name: str, stem: str = "") -> None:
    """Write the decompressed content of ``source`` to ``dest`` (None: only read it); refuse it
    unless its MD5 is ``md5``. ``name`` is how errors call the source (its path, or the URL it
    came from), ``stem`` the MNIST file it should be (default ``dest``'s name)."""
    digest = hashlib.md5()
    try:
        with open_idx(source) as f, open(dest or os.devnull, "wb") as out:
            for block in iter(lambda: f.read(_BLOCK), b""):
                digest.update(block)
                out.write(block)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{name}: damaged gzip file ({exc})") from None
    if digest.hexdigest() != md5:
        raise DataError(
            f"{name}: not the canonical MNIST {stem or dest.name} (MD5 of its content "
            f"{digest.hexdigest()}, expected {md5})"
        )


def _file_md5(path: Path) -> str:
    """The MD5 of the file at ``path``, in hex."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _holds_mnist(cache: Path, md5: Mapping[str, str]) -> bool:
    """Whether ``cache`` holds every file of ``md5`` with its content, each a file of its own (a
    link was "verified" here, then refused by every ``--digits mnist`` reader)."""
    return all(
        (cache / s).is_file() and not (cache / s).is_symlink() and _file_md5(cache / s) == want
        for s, want in md5.items()
    )


def _partial(entry: Path, md5: Mapping[str, str]) -> bool:
    """Whether ``entry`` is what filling the cache leaves when killed: a directory (no link)
    of MNIST's files (some of them, or none)."""
    if not entry.is_dir() or entry.is_symlink():
        return False
    return all(child.name in md5 and a_file(child) for child in entry.iterdir())


def _check_replaceable(cache: Path, md5: Mapping[str, str]) -> None:
    """Refuse to replace ``cache`` unless it is missing or a folder of nothing but the files of
    ``md5``: it is replaced as a whole, and a user's files put there (the ``.gz`` originals
    given to ``--from``, notes) would go with it."""
    if not os.path.lexists(cache):
        return
    if cache.is_symlink() or not cache.is_dir():
        kind = "a symbolic link" if cache.is_symlink() else "a file"
        raise DataError(
            f"{cache}: is {kind}, not the MNIST cache folder; move it away (or set "
            "MISTNET_DATA to another folder)"
        )
    with os.scandir(cache) as entries:
        foreign = sorted(
            e.name for e in entries if e.name not in md5 or not e.is_file(follow_symlinks=False)
        )
    if foreign:
        what = "a symbolic link, not" if (cache / foreign[0]).is_symlink() else "not"
        raise DataError(
            f"{cache}: holds {foreign[0]!r}, which is {what} one of the four MNIST files kept "
            "there; the cache is replaced as a whole: move it away first"
        )


def _fill_cache(
    cache: Path | None, md5: Mapping[str, str], put: Callable[[str, Path], None]
) -> Path:
    """Fill ``cache`` (default :func:`mnist_cache`) with the files of ``md5``, one
    ``put(stem, dest)`` each, unless it already holds them; return it.

    The files go into a temporary sibling of ``cache`` that is renamed onto it at the end. On any
    failure (an interrupt included) the temporary folder and the parents made for it are
    removed. An existing ``cache`` (one that failed the check) is renamed aside first and
    removed after: a kill in between leaves no cache, never half of one, and the next run
    removes the leftovers (:func:`~mistnet.io.remove_stale_temporaries`). A ``cache`` that
    holds anything else is refused before any file is fetched (:func:`_check_replaceable`).
    """
    cache = mnist_cache() if cache is None else cache
    if _holds_mnist(cache, md5):
        return cache
    _check_replaceable(cache, md5)
    # 55 MB inside a run or a dataset would block its replacement ("not part of a dataset")
    check_outside(cache, option="the MNIST cache ($MISTNET_DATA/mnist)")
    created = make_parents(cache.parent)
    tmp = temporary_sibling(cache)
    try:
        remove_stale_temporaries(cache.parent, cache.name, own=lambda entry: _partial(entry, md5))
        tmp.mkdir()
        for stem in md5:
            put(stem, tmp / stem)
        # signals wait from the old cache's set-aside to its removal (a Ctrl-C between the
        # renames left no cache, the old one aside; one after, the old one for ever)
        with deferred_signals():
            if cache.exists() or cache.is_symlink():
                old = temporary_sibling(cache)
                os.rename(cache, old)
                try:
                    os.rename(tmp, cache)
                except BaseException:
                    os.rename(old, cache)
                    raise
                remove_path(old)
            else:
                os.rename(tmp, cache)
    except BaseException as exc:
        with deferred_signals():  # a second Ctrl-C midway left half of it
            shutil.rmtree(tmp, ignore_errors=True)
            remove_empty(created)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):
            # a full disk or a size limit while filling it: name the cache (as an output)
            raise OSError(exc.errno, exc.strerror or str(exc), str(cache)) from exc
        raise
    return cache


def install_mnist(
    source: str | os.PathLike, cache: Path | None = None, md5: Mapping[str, str] | None = None
) -> Path:
    """Copy the four MNIST files from the folder ``source`` into the cache, checked.

    Args:
        source: a folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or gzipped,
            under its usual names (:func:`find_idx`).
        cache: the MNIST cache folder (default :func:`mnist_cache`).
        md5: the expected MD5 of each file's decompressed content (default :data:`MNIST_MD5`;
            tests pass the digests of the small files they write).

    Returns:
        The cache folder. A cache already holding the right files is left as it is.

    Raises:
        DataError: ``source`` is not a folder, a file is missing, damaged or not MNIST (one
            line naming the file); the cache is then as it was.
    """
    folder = Path(source)
    md5 = MNIST_MD5 if md5 is None else md5
    if not folder.is_dir():
        raise DataError(f"--from {source}: not a directory")
    files = {stem: find_idx(folder, stem) for stem in md5}
    cache = mnist_cache() if cache is None else cache
    if _holds_mnist(cache, md5):
        # the cache needs none of them, but the files named are checked all the same (a
        # folder of damaged files was "verified" when the cache was full)
        for stem, path in files.items():
            _copy_checked(path, None, md5[stem], str(path), stem)
        return cache  # verified once: _fill_cache would read the whole cache again

    def put(stem: str, dest: Path) -> None:
        _copy_checked(files[stem], dest, md5[stem], str(files[stem]))

    return _fill_cache(cache, md5, put)


def download_mnist(
    cache: Path | None = None, progress: bool = True, md5: Mapping[str, str] | None = None
) -> Path:
    """Download the four MNIST files into the cache, checked (see :func:`install_mnist`).

    Each file is tried from every mirror of :data:`MNIST_URLS` in turn.

    Returns:
        The cache folder. A cache already holding the right files is not downloaded again.

    Raises:
        DataError: no mirror gave a file with the right content (no network, say), in one line;
            nothing is left behind.
    """
    md5 = MNIST_MD5 if md5 is None else md5
    return _fill_cache(cache, md5, lambda stem, dest: _download(dest, md5[stem], progress))


def _download(dest: Path, md5: str, progress: bool) -> None:
    """Download ``dest``'s name from the first mirror that gives the content of ``md5``."""
    errors = []
    archive = dest.with_name(dest.name + ".gz")
    for base in MNIST_URLS:
        url = f"{base}{archive.name}"
        try:
            _fetch(url, archive, progress)
            _copy_checked(archive, dest, md5, url)
            return
        except DataError as exc:
            errors.append(str(exc))
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            errors.append(f"{url}: {' '.join(str(exc).split()) or type(exc).__name__}")
        finally:
            archive.unlink(missing_ok=True)
    raise DataError(
        f"cannot download MNIST ({'; '.join(errors)}); offline, use "
        "`mist data download mnist --from DIR`"
    )


def _fetch(url: str, dest: Path, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=60) as resp, dest.open("wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            for block in iter(lambda: resp.read(1 << 16), b""):
                out.write(block)
                bar.update(len(block))
