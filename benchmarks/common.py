"""What the benchmark scripts share: the folders they write, and their arguments' types.

The folders a script writes are made by it, or by it earlier, never a user's: a script that
copies a run's files into its ``--out``, writes logs into its ``--work`` or removes its own
earlier run there first claims the folder (:func:`own_folders`): a new or empty folder gets a
``.written-by`` file naming the script; an existing one must hold that file (the script's
earlier output), else the script stops with one line, touching nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from mistnet.commands._args import integer, number
from mistnet.device import check_device
from mistnet.errors import MistError

MARKER = ".written-by"


def own_folders(script: str, *folders: Path) -> None:
    """Make each of ``folders`` (with its parents) ``script``'s own, or accept it as such, once
    every one is checked (:func:`_check`): a refusal leaves nothing made or marked."""
    for folder in folders:
        _check(folder, script)
    made: list[Path] = []  # folders and markers, in the order made
    markers: set[Path] = set()  # (a folder may be named like one)
    try:
        for folder in folders:
            # listed first: a mkdir failing deep down leaves the parents it made
            made += reversed([p for p in (folder, *folder.parents) if not os.path.lexists(p)])
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / MARKER).is_file():
                made.append(folder / MARKER)
                markers.add(folder / MARKER)
                (folder / MARKER).write_text(script + "\n", encoding="utf-8")
    except OSError as exc:  # a folder this user cannot write into, a name too long, a full disk
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.unlink() if path in markers else path.rmdir()
        _refuse(f"{exc.filename}: {exc.strerror}; give another --out or --work")


def _check(folder: Path, script: str) -> None:
    """Exit status 2 with one line unless ``folder`` is missing, empty or marked ``script``'s."""
    marker = folder / MARKER
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        _refuse(f"{folder} is no folder of its own; give a new --out or --work")
    above = next(p for p in folder.absolute().parents if os.path.lexists(p))
    if not above.is_dir():  # a file where a parent would be made
        _refuse(f"{above} is not a folder; nothing can be made inside it")
    if folder.is_dir() and any(folder.iterdir()):
        mine = marker.is_file() and not marker.is_symlink()
        if not (mine and marker.read_text(encoding="utf-8", errors="replace").strip() == script):
            _refuse(
                f"{folder} exists and was not made by {script} (no {MARKER} naming it); give "
                "a new folder"
            )


def own_lines(path: Path, script: str, keys: set[str]) -> None:
    """Refuse (exit status 2) a ``path`` that ``script`` would append JSON lines to unless it is
    new, or a file of such lines already (each an object holding ``keys``)."""
    if not os.path.lexists(path):
        if not path.absolute().parent.is_dir():  # else found after the whole training
            _refuse(f"{path.parent} is no folder; give an --out in an existing folder")
        return
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        mine = path.is_file() and not path.is_symlink() and rows
        mine = mine and all(isinstance(r, dict) and keys <= set(r) for r in rows)
    except (OSError, ValueError):
        mine = False
    if not mine:
        _refuse(f"{path} exists and holds no JSON lines of {script}; give a new --out")


def _refuse(message: str) -> None:
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def count(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1 (steps, scenes, repeats, threads),
    spelled as ``mist``'s options take one (``'１'`` or ``'1_0'`` refused)."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def positive(text: str) -> float:
    """An ``argparse`` type: a finite number above 0 (a side, a learning rate), spelled as
    ``mist``'s options take one."""
    value = number(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text}")
    return value


def device(text: str) -> str:
    """An ``argparse`` type: a device mistnet takes (cpu, cuda, cuda:N, auto)."""
    try:
        return check_device(text, "device")
    except MistError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
