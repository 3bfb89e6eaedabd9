"""``mist data``: make, show, convert and download the datasets of the paper.

Sub-commands::

    mist data make NAME --out DIR [--n-train N --n-val N --n-test N --seed S --digits SRC]
    mist data make svhn --svhn DIR --out DIR [--seed S]
    mist data show DIR [--split test --n 16] --out grid.png
    mist data export-official DIR OUT
    mist data import-official DIR OUT
    mist data import-images SRC --out DIR [--labels FILE.csv | --boxes FILE] [--size H W | ...]
    mist data download mnist [--from DIR]

User errors (unknown names, missing or corrupt inputs, impossible parameters) raise
:class:`mistnet.errors.DataError`, which ``mist`` prints on one line with exit status 2. Datasets
are written under a temporary name and renamed at the end, so a failure leaves no partial output.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mistnet import validate
from mistnet.commands import images
from mistnet.commands._args import (
    add_digits_argument,
    add_max_pixels_argument,
    checked_max_pixels,
    integer,
)
from mistnet.data.digits import SPLIT_ALIASES
from mistnet.data.manifest import read_manifest
from mistnet.data.mnist import download_mnist, install_mnist
from mistnet.data.official import export_official, import_official
from mistnet.data.preview import save_scene_grid
from mistnet.data.scenes import (
    GENERATORS,
    MAX_LAYOUT_BANK,
    build_generator,
    empty_arrays,
    make_scenes,
    require_memory,
)
from mistnet.data.store import (
    claim_dataset,
    is_dataset,
    open_dataset,
    replacing_dataset,
    write_dataset,
)
from mistnet.data.svhn import load_svhn
from mistnet.errors import DataError, say
from mistnet.outfiles import check_new_file, new_file

CHUNK = 1000
#: The most scenes `data show` draws: one panel each, in one figure.
MAX_GRID = 256


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group to the ``mist`` parser."""
    parser = subparsers.add_parser(
        "data",
        help="make, show, convert and download datasets",
        description="Make, show, convert and download the datasets of the MIST paper.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    _add_make(sub)

    show = sub.add_parser("show", help="draw scenes with their ground-truth boxes and labels")
    show.add_argument("dir", help="dataset directory (or a generator name for on-the-fly scenes)")
    show.add_argument("--split", default="test", help="train, val or test (default test)")
    show.add_argument(
        "--n", type=integer, default=16, help=f"the first N scenes (default 16, at most {MAX_GRID})"
    )
    show.add_argument(
        "--seed", type=integer, default=0, help="seed of a generator's scenes (not a directory's)"
    )
    show.add_argument("--out", required=True, help="PNG file to write")
    show.set_defaults(func=cmd_show)

    exp = sub.add_parser(
        "export-official",
        help="write a dataset in the official MIST layout",
        description="Write the dataset DIR in the official MIST code's layout (<mode>.txt, "
        "<mode>_labels.txt, <mode>_keypoints.npy, 3-channel PNGs) into the new folder OUT. "
        "It needs boxes and labels, square boxes, the same count K >= 1 in every image and "
        "8-bit images.",
    )
    exp.add_argument("dir", metavar="DIR", help="a dataset folder (mist data make, import-images)")
    exp.add_argument("out", metavar="OUT", help="the new folder of the layout")
    exp.set_defaults(func=cmd_export_official)

    imp = sub.add_parser(
        "import-official",
        help="read an official MIST layout into our format",
        description="Read the official MIST code's layout DIR (any of train, valid, test) into "
        "the new dataset folder OUT. Images whose three channels are equal become one-channel "
        "(grey), as an exported grey dataset was; 16-bit grey PNGs are scaled to 8 bits.",
    )
    imp.add_argument("dir", metavar="DIR", help="the layout's root folder")
    imp.add_argument("out", metavar="OUT", help="the new dataset folder")
    add_max_pixels_argument(imp)
    imp.set_defaults(func=cmd_import_official)

    images.register(sub)

    dl = sub.add_parser(
        "download",
        help="put full MNIST into the data cache (for --digits mnist)",
        description="Download the four MNIST IDX files (the only use of the network in "
        "mistnet), or take them from a local folder with --from, into the data cache "
        "($MISTNET_DATA, default ~/.cache/mistnet). Each file's decompressed content is "
        "checked against the canonical MD5.",
    )
    dl.add_argument("name", help="mnist")
    dl.add_argument(
        "--from",
        dest="source",
        metavar="DIR",
        help="a folder holding the four MNIST IDX files (plain or .gz) instead of the internet",
    )
    dl.set_defaults(func=cmd_download)


def _add_make(sub: argparse._SubParsersAction) -> None:
    """Add ``make`` to the ``mist data`` actions."""
    make = sub.add_parser(
        "make",
        help="generate a dataset (mnist-easy, mnist-hard[-AtoB], gabor, svhn) to disk",
        description="Generate the train, val and test scenes of a generator (or read SVHN) "
        "into a new dataset directory. A generator's split sizes default to the paper's, "
        "50,000 / 5,000 / 10,000 scenes: give smaller --n-train, --n-val and --n-test for a "
        "quick dataset.",
    )
    make.add_argument(
        "name",
        help="mnist-easy, mnist-hard, mnist-hard-6to9, mnist-hard-3to9, "
        "mnist-hard-<a>to<b>, mnist-hard-left, mnist-hard-right, gabor or svhn",
    )
    make.add_argument("--out", required=True, help="new output directory")
    make.add_argument(
        "--n-train", type=integer, default=50_000, help="train scenes (default 50,000)"
    )
    make.add_argument("--n-val", type=integer, default=5_000, help="val scenes (default 5,000)")
    make.add_argument("--n-test", type=integer, default=10_000, help="test scenes (default 10,000)")
    make.add_argument("--seed", type=integer, default=0, help="seeds the scenes (default 0)")
    add_digits_argument(make)
    make.add_argument(
        "--svhn", default=None, help="SVHN format-1 root with train/ and test/ (for svhn)"
    )
    make.add_argument(
        "--layout-bank",
        type=integer,
        default=1024,
        help="cached Poisson-disk samples per split (default 1024; 0: a fresh scipy sample "
        "per scene)",
    )
    make.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    make.set_defaults(func=cmd_make)
    make.set_defaults(make_defaults={dest: make.get_default(dest) for dest in _READ_BY})


def _progress() -> bool:
    return sys.stderr.isatty()


#: The options of ``mist data make`` that some sources do not read (their ``args`` names): a
#: test of the generator's name whether it reads one, and the words for those that do.
_READ_BY = {
    "n_train": (lambda name: name != "svhn", "the generators (svhn takes the splits of --svhn)"),
    "n_val": (lambda name: name != "svhn", "the generators (svhn takes the splits of --svhn)"),
    "n_test": (lambda name: name != "svhn", "the generators (svhn takes the splits of --svhn)"),
    "digits": (lambda name: name.startswith("mnist"), "the MNIST scenes"),
    "layout_bank": (lambda name: name.startswith("mnist-hard"), "the mnist-hard scenes"),
    "svhn": (lambda name: name == "svhn", "'mist data make svhn'"),
}


def _refuse_unread(args: argparse.Namespace) -> None:
    """Refuse an option of :data:`_READ_BY` given (other than its default) to a generator that
    does not read it: else ignored silently. An unknown name is left to
    :func:`~mistnet.data.scenes.build_generator` to refuse."""
    name = args.name
    if not (name == "svhn" or name in GENERATORS or name.startswith("mnist-hard")):
        return
    for dest, (reads, where) in _READ_BY.items():
        if getattr(args, dest) != args.make_defaults[dest] and not reads(name):
            option = "--" + dest.replace("_", "-")
            raise DataError(f"{option} only applies to {where}; {name} does not read it")


def cmd_make(args: argparse.Namespace) -> int:
    _refuse_unread(args)
    sizes = {"train": args.n_train, "val": args.n_val, "test": args.n_test}
    for split, n in sizes.items():
        if n < 1:  # training refuses an empty train or val split, evaluation an empty test one
            raise DataError(f"--n-{split} must be at least 1, got {n}")
    validate.seed(args.seed, "--seed")
    svhn = [("the SVHN folder", args.svhn)] if args.svhn and Path(args.svhn).is_dir() else []
    existing = claim_dataset(args.out, args.overwrite, inputs=svhn, overwrite_option="--overwrite")
    with replacing_dataset(args.out, existing):  # a dataset now: its .lock is no harm
        return _make(args, sizes, existing)


def _write(args: argparse.Namespace, name: str, splits, manifest, existing: bool) -> None:
    """Write the dataset, replacing only one that was at ``--out`` when the command began: one
    another process wrote into a new or empty ``--out`` meanwhile is refused, not replaced
    (both said they wrote it, the first one's lost)."""
    option = "" if args.overwrite else "--overwrite"  # given: not suggested again
    if args.overwrite and not existing and is_dataset(Path(args.out)):  # "already holds"
        raise DataError(
            f"{args.out}: another command wrote a dataset there while this one made its "
            "scenes; it is kept (--overwrite replaces what was there when a command began): "
            "choose another --out, or run again to replace it"
        )
    write_dataset(args.out, name, splits, manifest, overwrite=existing, overwrite_option=option)


def _make(args: argparse.Namespace, sizes: dict[str, int], existing: bool) -> int:
    if args.name == "svhn":
        return _make_svhn(args, existing)
    gen = build_generator(args.name, args.digits, **_generator_kwargs(args))
    require_memory(gen, sizes)
    total = sum(sizes.values())
    splits = {}
    start = time.perf_counter()
    with tqdm(
        total=total, desc=f"make {gen.name}", unit="scene", disable=not _progress() or total < 5000
    ) as bar:
        for split, n in sizes.items():
            arrays = empty_arrays(gen, n)
            for lo in range(0, n, CHUNK):
                hi = min(lo + CHUNK, n)
                part = make_scenes(gen, split, np.arange(lo, hi), seed=args.seed)
                for k, v in part.items():
                    arrays[k][lo:hi] = v
                bar.update(hi - lo)
            splits[split] = arrays
    elapsed = time.perf_counter() - start
    manifest = {
        "generator": gen.name,
        "params": gen.params(),
        "seed": args.seed,
        "digits": gen.digits,
        "scene_seeding": "np.random.SeedSequence([seed, split_id, index]); split_id train=0 val=1 test=2",
    }
    _write(args, gen.name, splits, manifest, existing)
    say(
        f"wrote {args.out}: {gen.name} "
        + ", ".join(f"{s} {n}" for s, n in sizes.items())
        + f" ({total / max(elapsed, 1e-9):.0f} scenes/s)"
    )
    return 0


def _generator_kwargs(args: argparse.Namespace) -> dict:
    if args.name.startswith("mnist-hard"):
        if not 0 <= args.layout_bank <= MAX_LAYOUT_BANK:  # 2**64: numpy's error, exit 1
            raise DataError(
                f"--layout-bank must be in [0, {MAX_LAYOUT_BANK:,}], got "
                f"{validate.shown(args.layout_bank)}"
            )
        return {"layout_bank": args.layout_bank}
    return {}


def _make_svhn(args: argparse.Namespace, existing: bool) -> int:
    if args.svhn is None:
        raise DataError("svhn needs --svhn DIR (the SVHN format-1 root with train/ and test/)")
    data = load_svhn(args.svhn, seed=args.seed, progress=_progress())
    splits, names = {}, {}
    for split, arrays in data.items():
        names[split] = arrays.pop("names")
        splits[split] = arrays
    manifest = {
        "generator": "svhn",
        "params": {
            "height": 60,
            "width": 240,
            "digits_per_image": 2,
            "min_test_box_height": 30,
            "val_fraction": 0.05,
        },
        "seed": args.seed,
        "source": str(Path(args.svhn).resolve()),
        "file_names": names,
    }
    _write(args, "svhn", splits, manifest, existing)
    say(f"wrote {args.out}: svhn " + ", ".join(f"{s} {len(n)}" for s, n in names.items()))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    inputs = [("the dataset", args.dir)] if Path(args.dir).is_dir() else []
    check_new_file(args.out, "mist data show", inputs)
    if not 1 <= args.n <= MAX_GRID:  # a generator would make them all first
        raise DataError(f"--n must be in [1, {MAX_GRID}] (one panel each), got {args.n}")
    validate.seed(args.seed, "--seed")
    if args.split not in SPLIT_ALIASES:  # was "split must be one of", naming no option
        raise DataError(f"--split must be one of train, val, test; got {args.split!r}")
    if Path(args.dir).is_dir() and args.seed != 0:  # else ignored: as open_dataset(seed=)
        raise DataError(
            f"--seed {args.seed}: {args.dir} is a dataset directory, which holds its scenes; "
            "--seed draws a generator's (mist data show mnist-hard --seed S)"
        )
    try:
        if Path(args.dir).is_dir():  # its own scenes: --seed is the generators'
            ds = open_dataset(args.dir, args.split)
        else:
            ds = open_dataset(args.dir, args.split, size=max(args.n, 1), seed=args.seed)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if len(ds) == 0:
        raise DataError(f"{args.dir}: split {args.split!r} is empty")
    with new_file(args.out, "mist data show", inputs) as tmp:
        save_scene_grid(ds, tmp, n=args.n, title=f"{ds.name} [{args.split}]")
    say(f"wrote {args.out}")
    return 0


def cmd_export_official(args: argparse.Namespace) -> int:
    export_official(args.dir, args.out, progress=_progress())
    say(f"wrote {args.out} (official MIST layout)")
    return 0


def cmd_import_official(args: argparse.Namespace) -> int:
    out = import_official(
        args.dir, args.out, progress=_progress(), max_pixels=checked_max_pixels(args)
    )
    meta = read_manifest(out)
    grey = (
        " (the layout's images are grey: one channel, or three equal ones)"
        if meta["channels"] == 1
        else ""
    )
    say(
        f"wrote {args.out}: {meta['channels']}-channel {meta['width']}x{meta['height']} images{grey}"
    )
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    if args.name != "mnist":
        raise DataError(f"unknown download {args.name!r} (known: mnist)")
    if args.source is None:
        cache = download_mnist(progress=_progress())
    else:
        cache = install_mnist(args.source)
    say(f"MNIST verified in the data cache {cache}; use --digits mnist")
    return 0
