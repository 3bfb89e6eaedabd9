"""mistnet's output directories: what a command writes, and the guarantees it keeps.

- An output is created, never adopted (:func:`claim_output`): a command writes a new directory,
  or one of its own kind that mistnet made earlier (the ``.mistnet`` marker, :data:`MARKER`,
  names the kind), never a directory of the user's. Replacing an earlier output removes it only
  when it holds nothing but mistnet's own entries
  (:func:`~mistnet.ownership.require_only_own`).
- An output never lies inside another output or inside one of the command's inputs
  (:func:`check_outside`), but where a command writes the children of its own output (a demo's
  dataset and run, a reproduction's: :func:`writing_inside`). An output written in place again
  (:func:`open_output`: ``mist train --resume demo/run``) was checked when it was made; only its
  inputs are checked again.
- An output is built in a temporary sibling and renamed into place in one step that never
  replaces what another process made meanwhile (:func:`new_directory`,
  :func:`~mistnet.io.rename_new`); one written in place over a long time (a run, a
  reproduction) is created that way, empty.
- Its temporaries are removed on every exit: an error, ``KeyboardInterrupt``, SIGTERM under the
  CLI; those of a killed process by the next write of the same target
  (:func:`mistnet.io.remove_stale_temporaries`). An earlier output set aside while its
  replacement is made has a name of its own, never taken for a temporary: a killed command's is
  put back, or kept with a warning when its place is taken
  (:func:`~mistnet.setaside.recover_set_aside`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from mistnet.errors import MistError
from mistnet.io import (
    check_dotdot,
    first_unwritable,
    make_parents,
    remove_empty,
    remove_path,
    remove_stale_temporaries,
    rename_new,
    require_output_name,
    temporary_sibling,
)
from mistnet.markers import MARKER, mark, output_kind, remove_marker_last
from mistnet.ownership import Own, is_own, made_directory, require_readable
from mistnet.setaside import is_set_aside, recover_set_aside, swap_in
from mistnet.signals import deferred_signals

#: How a message names an output of each kind (else by the kind).
_NOUNS = {
    "detections": "detections folder",
    "demo": "demo folder",
    "reproduce": "reproduction",
    "official": "official layout",
}
#: The outputs this process writes children into, with the children's names (writing_inside).
_HOLDING: ContextVar[tuple[tuple[Path, frozenset[str]], ...]] = ContextVar("holding", default=())


@contextmanager
def writing_inside(directory: str | os.PathLike, children: Iterable[str]) -> Iterator[None]:
    """While the block runs, let this process claim outputs at ``directory/<child>/...``: the
    one place where an output lies inside another (a demo's ``data/`` and ``run/``, a
    reproduction's datasets and runs); :func:`check_outside` refuses it to any other command."""
    held = (Path(directory).resolve(), frozenset(children))
    token = _HOLDING.set((*_HOLDING.get(), held))
    try:
        yield
    finally:
        _HOLDING.reset(token)


def _held(real: Path, parent: Path) -> bool:
    """Whether ``real`` is inside a child of ``parent`` that this process may write."""
    part = real.relative_to(parent).parts[:1]
    return any(parent == d and part and part[0] in names for d, names in _HOLDING.get())


def check_outside(
    path: str | os.PathLike,
    inputs: Iterable[tuple[str, str | os.PathLike]] = (),
    option: str = "--out",
    itself: bool = False,
    parents: bool = True,
) -> None:
    """Refuse an output ``path`` inside another output or inside one of the command's inputs,
    or with a ``..`` after a folder that does not exist.

    The parents of ``path`` (symbolic links resolved) are walked: one that is a mistnet output
    (its marker) refuses ``path``, unless this process is writing that child of it
    (:func:`writing_inside`). ``inputs`` are ``(description, directory)`` pairs (``("the
    dataset", DS)``), marked or not. ``itself``: ``path`` is a folder written into, not
    created, so it may not be an output or an input either. ``parents`` False checks the
    inputs only.

    Raises:
        MistError: ``--out DS/run is inside the dataset DS; choose a path outside it``.
    """
    path, hint = Path(path), "choose a path outside it"
    check_dotdot(path, option)
    real = path.resolve()
    for what, directory in inputs:
        home = Path(directory).resolve()
        if real.is_relative_to(home) and (itself or real != home):
            where = "is" if real == home else "is inside"
            raise MistError(f"{option} {path} {where} {what} {directory}; {hint}")
    for parent in ([real] * itself + list(real.parents)) * parents:
        kind = output_kind(parent)
        if kind is None:
            continue
        if parent != real and _held(real, parent):
            return  # the parent's own parents were checked when it was claimed
        written = (p for p in (path, *path.parents) if p.parts and p.absolute() == parent)
        shown = next(written, parent)  # as the user wrote it, unless a link leads there
        where = "is" if parent == real else "is inside"
        noun = _NOUNS.get(kind, kind)
        raise MistError(f"{option} {path} {where} the {noun} {shown}; {hint}")


def check_named(path: str | os.PathLike, option: str = "--out") -> None:
    """Refuse an output ``path`` that names no folder of its own (``.``, ``..``, ``a/..``,
    ``/``), or the working directory or a folder above it however spelled (``../here``): it
    cannot be built beside its place and renamed into it, and replacing the working directory
    would leave the shell in a deleted one.

    Raises:
        MistError: ``--out . names the working directory; give a new directory``.
    """
    path = Path(path)
    require_output_name(path, option)
    real, cwd = path.resolve(), Path.cwd().resolve()
    if path.name not in ("", "..") and not cwd.is_relative_to(real):  # ../here is here too
        return
    check_dotdot(path, option)  # new/..: the folder that is missing, rather
    where = (
        "the working directory"
        if real == cwd
        else "a folder above the working directory"
        if cwd.is_relative_to(real)
        else "no new folder (it ends in '..')"
    )
    raise MistError(f"{option} {path} names {where}; give a new directory")


def claim_output(
    path: str | os.PathLike,
    kind: str,
    command: str,
    legacy: Callable[[Path], bool] | None = None,
    inputs: Iterable[tuple[str, str | os.PathLike]] = (),
    in_place: bool = False,
    option: str = "--out",
    again: bool = True,
) -> bool:
    """Check that a command may write the output directory ``path``.

    An output is created, never adopted: ``path`` must not exist, be an empty directory (the
    new one replaces it, or :func:`open_output` writes into it), or be a directory of ``kind``
    that mistnet made earlier (its marker says so, or ``legacy(path)`` recognises one written
    before markers existed); and it lies
    neither inside another output nor inside one of ``inputs`` (:func:`check_outside`). With
    ``in_place`` (:func:`open_output`) an output of ``kind`` made earlier is written into again
    wherever it lies (``mist train --resume`` of a demo's run): only its inputs are checked.
    ``option``: how the command names ``path`` in its messages (``OUT`` when positional).
    ``again``: whether this call may write an output of ``kind`` made earlier (``data make``
    with ``--overwrite``), which a symbolic link to one is then told to give instead.

    Returns:
        True when ``path`` is an output of ``kind`` made earlier; False when it is new.

    Raises:
        MistError: ``path`` is a symbolic link, a file, another kind of mistnet output, a
            directory mistnet did not make, an empty one this user cannot write into (it
            would be replaced by one of this user's, its owner and group lost), or inside
            another output or an input.
    """
    path = Path(path)
    recover_set_aside(path)
    if path.is_symlink():
        # never written through (it may lead anywhere); an output written in place, as a run
        # resumed, is named by its own path
        target = Path(os.path.realpath(path))
        ours = again and target.is_dir() and output_kind(target) == kind  # else refused too
        hint = f"give {target} itself" if ours else "name a new directory"
        raise MistError(f"{path}: is a symbolic link; {option} must {hint}")
    found = None
    if path.is_dir():
        for place in (path, path / MARKER):  # unread: "was not made by", then marked again
            require_readable(place, command, f"choose another {option}")
        found = output_kind(path) or (kind if legacy is not None and legacy(path) else None)
    if not (in_place and found == kind):  # made or replaced: it needs a name of its own
        check_named(path, option)
    check_outside(path, inputs, option=option, parents=not (in_place and found == kind))
    if not path.exists():
        return False
    if not path.is_dir():
        raise MistError(f"{path}: exists and is not a directory; choose a new {option}")
    if found == kind:
        if not in_place and first_unwritable([path]):  # its .lock: "Permission denied"
            raise MistError(
                f"{path}: an earlier output this user cannot write into, so it cannot be "
                f"replaced; choose another {option}"
            )
        if not in_place and _sticky_for_others(path):  # set aside at the end: EPERM
            raise MistError(
                f"{path}: an earlier output of another user in {path.absolute().parent}, where "
                f"only a file's owner may move it (the sticky bit); choose another {option}"
            )
        return True
    if found is not None:
        raise MistError(f"{path}: is a mistnet {found} directory, not {command}'s output")
    if not any(path.iterdir()):
        if first_unwritable([path]):  # was replaced by a folder of this user's
            raise MistError(f"{path}: this user cannot write into it; choose another {option}")
        if not in_place and _sticky_for_others(path):  # the rename at the end: EPERM
            raise MistError(
                f"{path}: an empty folder of another user in {path.absolute().parent}, where "
                f"only a file's owner may replace it (the sticky bit); choose another {option}"
            )
        return False
    raise MistError(
        f"{path}: exists and was not made by {command}; choose a new {option} (mistnet never "
        "writes into a directory it did not create)"
    )


def _sticky_for_others(path: Path) -> bool:
    """Whether this user may not replace the folder ``path`` by a rename: its parent has the
    sticky bit (``/tmp``) and neither it nor the parent is this user's (root may)."""
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    parent = path.absolute().parent.stat()
    if uid == 0 or not parent.st_mode & stat.S_ISVTX:
        return False
    return uid not in (path.stat().st_uid, parent.st_uid)


def create_directory(path: str | os.PathLike, kind: str) -> list[Path]:
    """Create the output directory ``path`` of ``kind`` (marked) in one step.

    Returns:
        The directories created, ``path`` first, then the parents made for it.

    Raises:
        MistError: ``path`` appeared meanwhile (see :func:`~mistnet.io.rename_new`).
    """
    path = Path(path)
    created = make_parents(path.parent)
    try:
        with new_directory(path, kind):
            pass
    except BaseException:
        remove_empty(created)
        raise
    return [path, *created]


def open_output(
    path: str | os.PathLike,
    kind: str,
    command: str,
    legacy: Callable[[Path], bool] | None = None,
    inputs: Iterable[tuple[str, str | os.PathLike]] = (),
) -> list[Path]:
    """Create the output directory ``path`` of ``kind``, or accept one made earlier.

    For outputs that are written in place over a long time (a run, a reproduction) rather than
    renamed into place at the end. An output of an earlier version (``legacy``) gets its marker.

    An empty directory (the user's, perhaps made for it) is kept and marked in place, so that
    its permissions stay and a failure can leave it as it was: the caller removes what it added
    (:func:`remove_added`, with the names :func:`entries` gave before the call).

    Returns:
        The directories created (see :func:`create_directory`); none when ``path`` existed.

    Raises:
        MistError: ``path`` is not new and not of ``kind`` (see :func:`claim_output`).
    """
    if claim_output(path, kind, command, legacy, inputs, in_place=True):
        if first_unwritable([Path(path)]):  # was "<path>/.lock: Permission denied"
            raise MistError(
                f"{path}: an earlier output this user cannot write into; choose another --out"
            )
        if output_kind(path) != kind:  # an earlier version's: marked once, then left alone
            mark(path, kind)
        return []
    if Path(path).is_dir():  # empty (claim_output): never replaced, which would lose it
        mark(path, kind)
        return []
    return create_directory(path, kind)


def entries(directory: str | os.PathLike) -> set[str]:
    """The names in ``directory``; none when it does not exist (see :func:`remove_added`)."""
    try:
        return {entry.name for entry in Path(directory).iterdir()}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def remove_added(directory: str | os.PathLike, before: set[str], own: Iterable[str]) -> None:
    """Remove the entries of ``directory`` whose names are not in ``before`` (what a failed
    command added to a directory that existed: :func:`entries` gave ``before``) and that are
    its own (``own``: patterns as :func:`~mistnet.ownership.require_only_own` takes them, the marker and
    temporaries always); a file the user put there meanwhile stays."""
    own = [MARKER, *own]
    for name in entries(directory) - before:
        entry = Path(directory) / name
        if is_set_aside(entry):  # an earlier output, to be put back (replacing)
            continue
        if is_own(entry, own):
            remove_path(entry)


def discard_new(
    directory: str | os.PathLike, created: list[Path], before: set[str], own: Iterable[str]
) -> None:
    """Undo a failed command's output ``directory``: remove the directories it created
    (``created``, :func:`open_output`'s), else what it added of its ``own`` entries
    (:func:`remove_added`)."""
    if created:
        _take_back(Path(directory), created[1:])
    else:
        remove_added(directory, before, own)


@contextmanager
def new_directory(
    target: str | os.PathLike,
    kind: str,
    replace: bool = False,
    legacy: Callable[[Path], bool] | None = None,
    own: Own | None = None,
) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``target``; on success it becomes ``target``.

    Call :func:`claim_output` first: ``target`` is new, or an output of ``kind`` made earlier.
    The temporary holds the marker of ``kind``. On success it is renamed to a new ``target``
    in one step (:func:`~mistnet.io.rename_new`). An existing ``target`` is left as it is unless
    ``replace`` (the new directory takes its place, the old one is removed, once it is seen to
    hold only the entries of ``own``, see :data:`~mistnet.ownership.Own`), and
    only when it is still of ``kind`` (its marker, or ``legacy(target)``) at that moment. On
    any exception (KeyboardInterrupt and, under the CLI, SIGTERM included) the temporary
    directory and the parents made for it are removed and ``target`` is as it was.
    """
    target = Path(target)
    created = make_parents(target.parent)
    tmp = temporary_sibling(target)  # a name only
    try:  # a signal from here on takes back the parents made (it left them)
        remove_stale_temporaries(target.parent, target.name, own=made_directory)
        recover_set_aside(target)
        tmp.mkdir()
        mark(tmp, kind)
        yield tmp
        ours = output_kind(target) == kind or (legacy is not None and legacy(target))
        if replace and ours:
            swap_in(tmp, target, own)
        else:
            rename_new(tmp, target)
    except OSError as exc:
        _take_back(tmp, created)
        if str(exc.filename or tmp).startswith(str(tmp)):
            # A full disk or a size limit while writing: name the target, not the temporary.
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
        raise
    except BaseException:
        _take_back(tmp, created)
        raise


def _take_back(tmp: Path, created: list[Path]) -> None:
    """Remove the temporary ``tmp`` and the parents ``created`` for it, signals held until
    both are gone (a second Ctrl-C midway left parents, or a half-removed temporary)."""
    with deferred_signals():
        _remove_made(tmp)
        remove_empty(created)


def _remove_made(directory: Path) -> None:
    """Remove ``directory``, which this command made, even where it cannot read it: under a
    umask without the owner's bits (``umask 777``) it was made mode 000, which ``rmtree``
    cannot open, and it stayed, blocking every later command writing there. Its marker goes
    last (signals wait, :func:`_take_back`): a second Ctrl-C midway left a half-removed
    temporary without its marker, which no later command removes."""
    with contextlib.suppress(OSError):
        remove_marker_last(directory)
    if directory.is_dir() and not directory.is_symlink():
        with contextlib.suppress(OSError):
            directory.chmod(0o700)  # ours: opened to be removed
            remove_marker_last(directory)
