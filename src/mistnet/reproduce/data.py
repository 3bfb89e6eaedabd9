"""Datasets of a reproduction, made once per (data key, budget, seed) and shared by every row.

Layout under the data root (``--data-root``, default ``OUT/data``)::

    <budget>/<generator>-seed<s>/                    a generator's scenes (our format)
    <budget>/mnist-hard-seed<s>-official-layout/     those scenes in the official MIST layout
    <budget>/mnist-hard-seed<s>-official-import/     ... read back into our format
    <budget>/svhn-seed<s>/                           SVHN format 1 under the paper's protocol
    <budget>-mnist/mnist-...                         the MNIST scenes above from full MNIST
                                                     (``--digits mnist``)
    <budget>/.lock                                   held while a dataset there is made

Every directory is written atomically (:func:`mistnet.data.store.write_dataset`), so an
interrupted reproduction never leaves half a dataset; an existing one is reused after checking
that it was made for the same sizes, seed and source.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mistnet.data import build_generator, make_scenes, write_dataset
from mistnet.data.manifest import read_manifest
from mistnet.data.official import export_official, import_official
from mistnet.data.store import is_dataset, load_split
from mistnet.data.svhn import load_svhn
from mistnet.errors import MistError
from mistnet.io import first_unwritable
from mistnet.locks import LOCK, exclusive_lock, unopened_lock
from mistnet.markers import output_kind
from mistnet.ownership import require_readable
from mistnet.reproduce.plan import Budget

OFFICIAL = "mnist-hard-official"


def data_dir(root: Path, budget: Budget, key: str, seed: int, digits: str = "embedded") -> Path:
    """Where the dataset ``key`` of ``budget`` and ``seed`` lives (for ``OFFICIAL``, the import).

    ``digits``: ``embedded`` or ``mnist``; the MNIST datasets of each have their own folder,
    so a reproduction on full MNIST never reuses (or is refused) those of one on the embedded
    digits. Gabor and SVHN datasets have no digits to choose: they are shared.
    """
    own = digits != "embedded" and key.startswith("mnist")
    base = root / (f"{budget.name}-{digits}" if own else budget.name)
    if key == OFFICIAL:
        return base / f"mnist-hard-seed{seed}-official-import"
    return base / f"{key}-seed{seed}"


def check_datasets(
    root: Path,
    budget: Budget,
    keys: list[str],
    seeds: list[int],
    digits: str = "embedded",
    svhn: Path | None = None,
) -> None:
    """Refuse, before a reproduction claims its ``--out``, a file where a budget's folder goes
    (left ``--out`` made, "File exists"), a folder of the user's where one of
    its datasets goes under ``root`` (it failed after ``--out`` was made, naming ``--out``), a
    ``.lock`` of the user's in a budget's folder there (:func:`check_lock`), and a dataset
    there made for other sizes, seed or source (it failed after ``--out`` was made too,
    leaving it behind).

    Raises:
        MistError: naming ``--data-root`` and the folder or file, or the dataset and what
            differs.
    """
    for key in keys:
        for seed in seeds:
            path = data_dir(root, budget, key, seed, digits)
            if os.path.lexists(path.parent) and not path.parent.is_dir():  # "File exists"
                raise MistError(
                    f"--data-root {root}: {path.parent} is not a folder, and the datasets of "
                    f"the {budget.name} budget go into it; move it away, or choose another "
                    "--data-root"
                )
            if first_unwritable([path.parent]):
                raise MistError(  # was "<budget>/.lock: Permission denied", --out left made
                    f"--data-root {root}: this user cannot write into {path.parent}, where "
                    f"the datasets of the {budget.name} budget go; choose another --data-root"
                )
            check_lock(root, path.parent)
            layout = path.parent / f"mnist-hard-seed{seed}-official-layout"
            # mistnet's: its marker, or what an older version wrote there: a dataset's
            # manifest; train.txt in the official layout only (a user's list of images else)
            places = [(path, "dataset", is_dataset), (layout, "official", _older_layout)]
            for place, kind, older in places[: 1 + (key == OFFICIAL)]:
                mine = place.is_dir() and not place.is_symlink()
                require_readable(place, "mistnet", "choose another --data-root")
                if os.path.lexists(place) and not (
                    mine and (output_kind(place) == kind or older(place))
                ):
                    raise MistError(
                        f"--data-root {root}: {place} exists and was not made by mistnet; move "
                        "it away, or choose another --data-root"
                    )
            source = data_dir(root, budget, "mnist-hard", seed, digits)
            made = (source, "mnist-hard") if key == OFFICIAL else (path, key)
            _reusable(*made, budget, seed, digits, svhn)


def _older_layout(path: Path) -> bool:
    return (path / "train.txt").is_file()


def check_lock(root: Path, base: Path) -> None:
    """Refuse a ``.lock`` in ``base``, the folder of the data root ``root`` whose lock
    :func:`prepare` takes (and removes: a file of the user's there would be lost), that is no
    lock of mistnet's: a link, no regular file, or one holding anything but a pid (a killed
    reproduction's, or none yet: it is taken over).

    Raises:
        MistError: naming ``--data-root`` and the file.
    """
    lock = base / LOCK
    if not os.path.lexists(lock):
        return
    if not lock.is_symlink() and lock.is_file() and not os.access(lock, os.R_OK | os.W_OK):
        # else --out was made first (a link is named as one below)
        raise unopened_lock(lock, ", or choose another --data-root")
    try:
        ours = (
            not lock.is_symlink()
            and lock.is_file()
            and lock.stat().st_size <= 32
            and re.fullmatch(rb"(\d+\n)?", lock.read_bytes()) is not None
        )
    except PermissionError:  # another user's (a 600 lock): not to be moved while theirs runs
        raise unopened_lock(lock, ", or choose another --data-root") from None
    except OSError:
        ours = False
    if not ours:
        raise MistError(
            f"--data-root {root}: {lock} is no lock of mistnet's; move it away, or choose "
            "another --data-root"
        )


def _manifest(path: Path) -> dict | None:
    return read_manifest(path) if (path / "manifest.json").is_file() else None


def _reusable(
    path: Path, key: str, budget: Budget, seed: int, digits: str, svhn: Path | None
) -> dict | None:
    """The manifest of the dataset ``key`` at ``path`` (None where there is none), refused when
    it was made for other split sizes, seed, digits or SVHN source than ``budget`` and ``seed``
    make (``svhn`` None: the source is not compared).

    Raises:
        MistError: naming the dataset and what differs.
    """
    meta = _manifest(path)
    if meta is None:
        return None
    if key == "svhn":
        want = {"generator": "svhn", "seed": seed}
        want.update({"source": str(Path(svhn).resolve())} if svhn is not None else {})
    else:
        full, have = budget.split_sizes(key), meta.get("splits", {})
        if not set(have) <= set(full) or any(have[s] != full[s] for s in have):
            have = full  # made with other sizes: the error names them
        made_of = build_generator(key, digits).digits
        want = {"generator": key, "seed": seed, "splits": have, "digits": made_of}
    for name, value in want.items():
        if meta.get(name) != value:
            raise MistError(
                f"{path} was made with {name} = {meta.get(name)!r}, not {value!r}; "
                "remove it or choose another --data-root"
            )
    return meta


def prepare(
    key: str,
    budget: Budget,
    seed: int,
    root: Path,
    svhn: Path | None = None,
    log: Callable[[str], None] = print,
    test_only: bool = False,
    digits: str = "embedded",
) -> Path:
    """Make (or reuse) the dataset ``key`` for ``budget`` and ``seed``; return its directory.

    ``digits``: where MNIST scenes take their digits (``embedded`` or ``mnist``, the cache).

    ``test_only``: the dataset is only evaluated on (e.g. ``mnist-hard-right``), so a generated
    one gets only its test split. A later request for all splits (a run training on it) adds
    the others; the test split comes out the same (scenes are seeded per split and index).

    Two reproductions may share ``root``: the one that comes second waits (saying so through
    ``log``) while the other makes a dataset, then reuses it. The lock is that of the folder
    the dataset goes in (``root/<budget>/.lock``, removed on leaving), never ``root/.lock``:
    ``root`` is a folder of the user's.

    Raises:
        MistError: an existing directory made differently, a ``.lock`` of the user's where the
            lock goes (:func:`check_lock`), or SVHN asked for without ``svhn``.
        DataError: corrupt SVHN input.
    """
    base = data_dir(root, budget, key, seed, digits).parent  # that of the official's source too
    check_lock(root, base)
    base.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(base, "mist reproduce", transient=True, wait=log):
        return _prepare(key, budget, seed, root, svhn, log, test_only, digits)


def _prepare(key, budget, seed, root, svhn, log, test_only, digits) -> Path:
    if key == "svhn":
        if svhn is None:
            raise MistError("SVHN data needs --svhn DIR")
        return _svhn(budget, seed, root, svhn, log)
    if key == OFFICIAL:
        return _official(budget, seed, root, log, digits)
    return _generated(key, budget, seed, root, log, test_only, digits)


def _generated(
    key: str,
    budget: Budget,
    seed: int,
    root: Path,
    log,
    test_only: bool = False,
    digits: str = "embedded",
) -> Path:
    path = data_dir(root, budget, key, seed, digits)
    full = budget.split_sizes(key)
    sizes = {"test": full["test"]} if test_only else full
    meta = _reusable(path, key, budget, seed, digits, None)
    replace = False
    if meta is not None:
        if all(s in meta["splits"] for s in sizes):
            return path
        replace = True  # an evaluation-only dataset that a run now trains on: add the splits
    generator = build_generator(key, digits)
    only = " (test split only: evaluation data)" if set(sizes) == {"test"} else ""
    counts = "/".join(str(n) for n in sizes.values())
    log(f"data: {key} seed {seed}, {counts}{only} -> {path}")
    splits = {s: make_scenes(generator, s, np.arange(n), seed) for s, n in sizes.items()}
    manifest = {
        "generator": key,
        "params": generator.params(),
        "seed": seed,
        "digits": generator.digits,
        "budget": budget.name,
    }
    return write_dataset(path, key, splits, manifest, overwrite=replace)


def _official(budget: Budget, seed: int, root: Path, log, digits: str) -> Path:
    source = _generated("mnist-hard", budget, seed, root, log, digits=digits)
    path = data_dir(root, budget, OFFICIAL, seed, digits)
    layout = path.parent / f"mnist-hard-seed{seed}-official-layout"
    if _manifest(path) is not None:
        return path
    progress = sys.stderr.isatty()
    if not (layout / "train.txt").is_file():
        log(f"data: {source.name} -> official MIST layout {layout}")
        export_official(source, layout, progress=progress)
    log(f"data: official layout {layout.name} -> our format {path}")
    return import_official(layout, path, progress=progress)


def _svhn(budget: Budget, seed: int, root: Path, svhn: Path, log) -> Path:
    path = data_dir(root, budget, "svhn", seed)
    source = str(Path(svhn).resolve())
    if _reusable(path, "svhn", budget, seed, "embedded", svhn) is not None:
        return path
    log(f"data: SVHN from {svhn} (seed {seed} validation hold-out) -> {path}")
    data = load_svhn(svhn, seed=seed, progress=sys.stderr.isatty())
    names = {split: arrays.pop("names") for split, arrays in data.items()}
    if any(len(n) == 0 for n in names.values()):
        empty = [s for s, n in names.items() if not n]
        raise MistError(f"{svhn}: no 2-digit SVHN images left in the {'/'.join(empty)} split")
    manifest = {
        "generator": "svhn",
        "seed": seed,
        "source": source,
        "budget": budget.name,
        "file_names": names,
    }
    return write_dataset(path, "svhn", data, manifest)


def roundtrip_identical(a: Path, b: Path) -> bool:
    """Whether two datasets in our format hold the same arrays in every split."""

    splits = sorted(read_manifest(a).get("splits", {}))
    if splits != sorted(read_manifest(b).get("splits", {})):
        return False
    for split in splits:
        x, _ = load_split(a, split)
        y, _ = load_split(b, split)
        if any(not np.array_equal(x[k], y[k]) for k in x):
            return False
    return True


def svhn_usable(svhn: str | Path) -> Path:
    """Check ``--svhn DIR`` before any work starts; return it as a path.

    Opens both ``digitStruct.mat`` files with h5py (cheap: only their index), so that a missing
    h5py or a corrupt file stops the reproduction before the first run, not at Table 4 after
    every other table of ``all``.

    Raises:
        MistError: the directory, its ``train/`` or ``test/`` folder or a ``digitStruct.mat``
            is missing, h5py is not installed, or a ``digitStruct.mat`` is not a readable SVHN
            index (not HDF5 / MATLAB v7.3, or without ``digitStruct/name`` and ``bbox``).
    """
    root = Path(svhn)
    if not root.is_dir():
        what = "a file, not a directory" if root.exists() else "no such directory"
        raise MistError(f"--svhn {svhn}: {what}")
    for sub in ("train", "test"):
        if not (root / sub / "digitStruct.mat").is_file():
            raise MistError(
                f"--svhn {svhn}: no {sub}/digitStruct.mat (expected SVHN format 1: "
                "train/ and test/ with digitStruct.mat and the PNGs)"
            )
    try:
        import h5py
    except ImportError:
        raise MistError("--svhn: reading SVHN needs h5py (pip install 'mistnet[svhn]')") from None
    for sub in ("train", "test"):
        path = root / sub / "digitStruct.mat"
        try:
            with h5py.File(path, "r") as f:
                names, boxes = f["digitStruct/name"], f["digitStruct/bbox"]
                if names.size != boxes.size or names.size == 0:
                    raise MistError(
                        f"--svhn: {path}: {names.size} names but {boxes.size} bbox entries"
                    )
        except MistError:
            raise
        except Exception as exc:  # h5py raises OSError, KeyError, TypeError, ...
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise MistError(
                f"--svhn: {path}: not a readable SVHN digitStruct.mat ({reason})"
            ) from None
    return root


__all__ = [
    "OFFICIAL",
    "check_datasets",
    "check_lock",
    "data_dir",
    "prepare",
    "roundtrip_identical",
    "svhn_usable",
]
