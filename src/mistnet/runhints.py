"""What a path given where a run goes is instead, and what to do: a pretrained model's name,
a packaged model's file, a folder without a ``config.json`` (:meth:`mistnet.rundir.Run.require`
and the commands that take a run or a model)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mistnet.checkpoint import Checkpoint
from mistnet.data.manifest import official_lists
from mistnet.errors import MistError
from mistnet.markers import output_kind


def pretrained_file(name: str | os.PathLike) -> Path | None:
    """The file of the pretrained model ``name`` when ``name`` is one's (none where the
    registry cannot be read: a missing run is then said as missing, not blamed on it)."""
    from mistnet import pretrained

    try:
        file = pretrained.path_of(str(name))
    except MistError:  # no model of that name, or no registry to read
        return None
    return file if file.is_file() else None  # a folder of the name is no model


def packaged_hint(path: Path) -> str:
    """How to use the file ``path`` if it is a packaged model (it has a model card), which
    ``--model`` takes by its file name (any checkpoint was told to go by name, which then
    failed: "no model card"); else ""."""
    from mistnet import pretrained  # which reads runs: imported here, not at the top

    try:
        pretrained.Card.of(Checkpoint(path))
    except (MistError, OSError):
        return ""
    use = f"MISTNET_MODELS={path.parent}, then mist eval or detect --model"
    if not pretrained.NAME.fullmatch(path.stem):  # was told to read it from a run directory
        return (
            f"; a packaged model is used by name, and {path.stem!r} is none "
            f"({pretrained.NAME_RULE}): rename the file, then {use} NAME"
        )
    return f"; a packaged model is used by name: {use} {path.stem} (mistnet.load(name))"


def no_config(path: Path, files: Iterable[Path]) -> MistError:
    """Why the folder ``path``, without a ``config.json``, is read as no run, and what to do:
    one this user cannot enter, a run that lost its config or stopped as it began (none of its
    ``files``, checkpoints and log, there), another output (a demo's names its run), a folder
    hiding the pretrained model of its name."""
    kind = output_kind(path) or ("official" if official_lists(path) else None)
    if not os.access(path, os.X_OK):  # cannot enter it: was "not a mistnet run (no config.json)"
        return MistError(f"{path}: this user cannot enter it, so it is read as no run")
    if kind == "run" and not any(os.path.lexists(p) for p in files):
        return MistError(  # killed as it began
            f"{path}: a run stopped before it wrote its config.json, so it holds nothing to "
            "read or resume; train into it again without --resume"
        )
    if kind == "run":  # "not a mistnet run" left no way out
        return MistError(
            f"{path}: the run's config.json is missing, though its checkpoints or log are "
            "there; restore it to read or resume the run, or train afresh into another --out"
        )
    hint = {
        "demo": f"; it is a demo's folder, whose run is {path / 'run'}",
        "official": "; it is an official layout (mist data import-official reads it)",
    }.get(kind or "", f"; it is a mistnet {kind} directory" if kind else "")
    if pretrained_file(path):  # the folder is read first: the model went unsaid
        hint = (
            f"; this folder hides the pretrained model {path}, which is read by name from "
            "another working directory (mist eval and detect: --model NAME)"
        )
    return MistError(f"{path} is not a mistnet run (no config.json){hint}")
