"""Whether a run's checkpoint and data are the ones its ``config.json`` names: the config a
checkpoint recorded, against the file (:func:`require_trained_with`), where a folder may have
moved (:func:`path_may_differ`) and a dataset found elsewhere is the run's own (:func:`same_dataset`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mistnet.checkpoint import Checkpoint
from mistnet.config import Config, from_record
from mistnet.configupgrade import upgrade
from mistnet.data.manifest import read_manifest
from mistnet.data.runs import manifest_digest, same_files
from mistnet.errors import MistError, ResumeRefused
from mistnet.runpaths import PATHS, is_folder, resolved


def _moved(key: str, was: str, value: str) -> bool:
    """Whether the path key ``key`` going from ``was`` (a checkpoint's) to ``value`` (the
    config's) is a move: from a folder to a folder, the first no longer there or the same
    place. Else the config names what the run did not train with: init_from "" -> a run (a
    warm start recorded for a run trained from scratch), from one run to another that is
    still there, other digits named (embedded -> mnist), a dataset named for a generator's."""
    if not (is_folder(key, was) and is_folder(key, value)):
        return False
    return not os.path.lexists(was) or Path(was).resolve() == Path(value).resolve()


def path_may_differ(key: str, was: str, value: str, recorded: dict[str, Any]) -> bool:
    """Whether the path key ``key`` of a config may be ``value`` where its checkpoint, whose
    record is ``recorded``, says ``was``: a folder moved (:func:`_moved`), a dataset's path
    emptied, or another folder holding the dataset the run recorded (a copy: a project copied
    whole, its config pointed at its own copy of the data, was "another run's checkpoint").
    The record's digest says what the run needs in the last two."""
    if _moved(key, was, value):
        return True
    if key != "path" or not is_folder(key, was):
        return False
    return not value or same_dataset(value, recorded.get("data_manifest"), was)


def same_dataset(path: str, digest: object, was: str) -> bool:
    """Whether the dataset folder ``path`` is the one a run trained on at ``was``, with the
    manifest ``digest``: the run's dataset moved (``was`` gone), made again with the same
    options where ``was`` is gone, or a copy of ``was`` (the same files, byte for byte: photos
    changed and imported again keep the manifest's digest)."""
    if not (digest and isinstance(digest, str) and os.path.isdir(path)):
        return False
    try:
        if manifest_digest(read_manifest(path)) != digest:
            return False
    except MistError:
        return False  # refused by the caller, naming both
    return not os.path.lexists(was) or same_files(was, path)


def moved_here(saved: Config, path: str) -> bool:
    """Whether the dataset at ``path`` is the run's, moved, renamed or copied: its manifest
    has the digest the run recorded (a path emptied lost its name: "trained on the dataset
    mnist-easy" refused the very dataset; a copy beside the original was refused too)."""
    return same_dataset(path, saved.record.data_manifest, saved.data.path)


def require_trained_with(
    ckpt: Checkpoint, saved: Config, config: Path, hint: str = "", afresh: str = ""
) -> None:
    """Refuse the checkpoint ``ckpt`` of a run, whose ``config.json`` is ``config``, when the config it records differs from
    ``saved`` (its ``config.json``): another run's checkpoint copied in, or the file
    edited since. Where its folders are (:data:`~mistnet.runpaths.PATHS`, a dataset
    moved) may differ, and ``train.steps`` (a run trained further).

    Args:
        hint: what to do, ``{was!r}`` the checkpoint's value (default: for a reader).
        afresh: where the run is to be resumed, how to start over instead (then
            :class:`~mistnet.errors.ResumeRefused` is raised).

    Raises:
        MistError: naming the first key that differs and both values.
    """
    trained = resolved(from_record(ckpt.config, str(ckpt.path)), config.parent).to_dict()
    recorded = upgrade(ckpt.config, str(ckpt.path)).get("record")
    recorded = recorded if isinstance(recorded, dict) else {}
    paths = {(section, key) for section, key, _ in PATHS}
    hint = hint or (
        "it is another run's checkpoint, or config.json was edited since; put {was!r} "
        "back, or evaluate the run it came from"
    )
    for section, values in saved.to_dict().items():
        for key, value in values.items():
            was = trained[section][key]
            # the record as training wrote it (class names, the dataset's digest), empty
            # ones too; a checkpoint of an older version recorded less. (Before: a value
            # empty on either side passed: names added to a run of unnamed classes, a
            # digest blanked to resume on other data.)
            unrecorded = section == "record" and key not in recorded
            free_here = (section, key) == ("train", "steps") or (
                (section, key) in paths and path_may_differ(key, was, value, recorded)
            )
            if not unrecorded and not free_here and was != value:
                problem = (
                    f"{config}: {section}.{key} is {value!r} but {ckpt.path.name} was "
                    f"trained with {was!r}; " + hint.format(was=was)
                )
                raise ResumeRefused(problem, afresh) if afresh else MistError(problem)
