"""The folders a run's ``config.json`` names (``data.path``, ``train.init_from``, a folder of
``data.digits``), as written and read.

A run must find its dataset from any working directory, and a folder moved with its run (a
demo's ``data/`` beside its ``run/``, a reproduction's ``OUT/data/`` moved with its
``OUT/<table>/<row>/seed<s>/``) must still be found. So a path inside the run's parent folder,
or inside the mistnet output that holds the run (a demo, a reproduction), is written relative
to the run directory (``../data``, ``../../../data/...``), any other absolute. Reading, a
relative path is taken from the run directory; one that is not there is a run of an older version,
written relative to the directory ``mist train`` ran from, and is taken from the current
directory when a dataset (or run) is there.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mistnet.markers import output_kind

if TYPE_CHECKING:
    from mistnet.config import Config

#: ``(section, key)`` of the config's paths, and the file that marks the folder one names (a
#: dataset's manifest, a run's config, MNIST's training images, plain or ``.gz``; ``init_from``
#: may also be a checkpoint file).
PATHS = (
    ("data", "path", "manifest.json"),
    ("train", "init_from", "config.json"),
    ("data", "digits", "train-images-idx3-ubyte"),
)
#: The values of ``data.digits`` that name digits, not a folder (:func:`mistnet.data.load_digits`).
DIGIT_NAMES = ("embedded", "mnist")


def is_folder(key: str, value: str) -> bool:
    """Whether ``value`` of the path key ``key`` names a folder or file: not empty, and not
    one of :data:`DIGIT_NAMES` for ``digits`` (a folder ``./mnist`` is not what it reads)."""
    return bool(value) and not (key == "digits" and value in DIGIT_NAMES)


def _marked(folder: Path, key: str, marker: str) -> bool:
    """Whether ``folder`` holds what the path key ``key`` names, by its ``marker`` file."""
    if key == "init_from" and folder.is_file():
        return True
    names = (marker, f"{marker}.gz") if key == "digits" else (marker,)
    return any((folder / name).is_file() for name in names)


def _home(run: Path) -> Path:
    """The folder whose contents move with the run ``run``: the demo or reproduction that
    holds it (its nearest marked ancestor of those kinds), else its parent folder."""
    for parent in run.parents:
        if output_kind(parent) in ("demo", "reproduce"):
            return parent
    return run.parent


def stored(cfg: Config, run_dir: str | os.PathLike) -> Config:
    """A copy of ``cfg`` as the run at ``run_dir`` writes it: its paths (as given, relative to
    the current directory) relative to ``run_dir`` inside its parent folder or the output that
    holds it (:func:`_home`), else absolute."""
    cfg = copy.deepcopy(cfg)
    run = Path(run_dir).resolve()
    home = _home(run)
    for section, key, _ in PATHS:
        value = getattr(getattr(cfg, section), key)
        if is_folder(key, value) and Path(value).exists():  # else a name, a missing one: as given
            target = Path(value).resolve()
            inside = target.is_relative_to(run.parent) or target.is_relative_to(home)
            value = os.path.relpath(target, run) if inside else str(target)
            setattr(getattr(cfg, section), key, value)
    return cfg


def resolved(cfg: Config, run_dir: str | os.PathLike) -> Config:
    """``cfg`` as read from the ``config.json`` in ``run_dir``, its paths made absolute (in place).

    A relative path is taken from ``run_dir``; where nothing is there, from the current
    directory (a run of an older version) when that holds a dataset or run, else from
    ``run_dir`` all the same, for the command that reads it to name as missing.
    """
    run = Path(run_dir).resolve()
    for section, key, marker in PATHS:
        value = getattr(getattr(cfg, section), key)
        if not is_folder(key, value) or Path(value).is_absolute():
            continue
        here, old = run / value, Path(value)
        if not here.exists() and _marked(old, key, marker):
            here = old
        setattr(getattr(cfg, section), key, str(here.resolve()))
    return cfg


def absolute(cfg: Config) -> Config:
    """A copy of ``cfg`` with its paths (relative to the current directory) made absolute, to
    compare with a run's config as :func:`resolved` reads it."""
    cfg = copy.deepcopy(cfg)
    for section, key, _ in PATHS:
        value = getattr(getattr(cfg, section), key)
        if is_folder(key, value):
            setattr(getattr(cfg, section), key, str(Path(value).resolve()))
    return cfg


#: Settings each machine of a run may choose for itself: they change its speed, not the data.
PER_MACHINE = (("data", "workers"),)


def shared_settings(cfg: Config) -> dict[str, str]:
    """``{"section.key": value as JSON}`` of ``cfg`` that the processes of one run must agree
    on: all but its folder paths (each machine may keep the dataset elsewhere, each is said to
    be a folder: the data's content is compared apart, :func:`mistnet.data.runs.content_digest`) and
    :data:`PER_MACHINE`. Every config gives the same keys (the processes compare them in
    order: a key left out on one process only put the collective out of step)."""
    settings = cfg.to_dict()
    for section, key, _ in PATHS:
        if is_folder(key, settings[section][key]):  # not data.digits "mnist": compared
            settings[section][key] = "(a folder)"
    return {
        f"{section}.{key}": json.dumps(value, sort_keys=True)
        for section, values in settings.items()
        for key, value in values.items()
        if (section, key) not in PER_MACHINE
    }
