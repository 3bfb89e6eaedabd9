"""mistnet's output directories: what a command writes, and the guarantees it keeps.

- An output is created, never adopted (:func:`claim_output`): a command writes a new directory,
  or one of its own kind that mistnet made earlier (the ``.mistnet`` marker, :data:`MARKER`,
  names the kind), never a directory of the user's. Replacing an earlier output removes it only
  when it holds nothing but mistnet's own entries (:func:`require_only_own`).
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
  put back, or kept with a warning when its place is taken (:func:`recover_set_aside`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from mistnet.errors import MistError, MistWarning
from mistnet.io import (
    a_file,
    aside_sibling,
    check_dotdot,
    is_temporary,
    lock_holder,
    make_parents,
    remove_empty,
    remove_path,
    remove_stale_temporaries,
    rename_new,
    require_short_name,
    stale_set_aside,
    take_mode,
    temporary_sibling,
)
from mistnet.markers import MARKER, discarded, mark, mark_discarded, output_kind, remove_marker_last
from mistnet.signals import deferred_signals

#: How a message names an output of each kind (else by the kind).
_NOUNS = {"detections": "detections folder", "demo": "demo folder", "reproduce": "reproduction"}
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
    require_short_name(path, option)
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

    Returns:
        True when ``path`` is an output of ``kind`` made earlier; False when it is new.

    Raises:
        MistError: ``path`` is a symbolic link, a file, another kind of mistnet output, a
            directory mistnet did not make, or inside another output or an input.
    """
    path = Path(path)
    recover_set_aside(path)
    if path.is_symlink():
        # never written through (it may lead anywhere); an output written in place, as a run
        # resumed, is named by its own path
        target = Path(os.path.realpath(path))
        ours = in_place and target.is_dir() and output_kind(target) == kind  # else refused too
        hint = f"give {target} itself" if ours else "name a new directory"
        raise MistError(f"{path}: is a symbolic link; {option} must {hint}")
    found = None
    if path.is_dir():
        found = output_kind(path) or (kind if legacy is not None and legacy(path) else None)
    if not (in_place and found == kind):  # made or replaced: it needs a name of its own
        check_named(path, option)
    check_outside(path, inputs, option=option, parents=not (in_place and found == kind))
    if not path.exists():
        return False
    if not path.is_dir():
        raise MistError(f"{path}: exists and is not a directory; choose a new {option}")
    if found == kind:
        return True
    if found is not None:
        raise MistError(f"{path}: is a mistnet {found} directory, not {command}'s output")
    if not any(path.iterdir()):
        return False
    raise MistError(
        f"{path}: exists and was not made by {command}; choose a new {option} (mistnet never "
        "writes into a directory it did not create)"
    )


def _own(entry: Path, patterns: Iterable[str]) -> bool:
    if is_temporary(entry.name):  # an atomic write's, finished or killed
        return True
    if entry.is_symlink():
        return False
    for pattern in patterns:
        if pattern.endswith("/"):
            if entry.is_dir() and fnmatch.fnmatchcase(entry.name, pattern[:-1]):
                return True
        elif entry.is_file() and fnmatch.fnmatchcase(entry.name, pattern):
            return True
    return False


def require_only_own(
    directory: str | os.PathLike,
    patterns: Iterable[str],
    what: str,
    shown: str | os.PathLike | None = None,
) -> None:
    """Check that ``directory`` holds nothing but the entries mistnet writes into ``what``.

    A command that replaces (and so deletes) an output it made earlier must not take along
    what the user put there since: notes, a run trained into a dataset's folder.

    Args:
        directory: the output to be replaced.
        patterns: ``fnmatch`` patterns of its own names: a regular file, or with a trailing
            ``/`` a directory (never a symbolic link). Temporaries of atomic writes are own too.
        what: the kind of output, for the message (``"a dataset"``).
        shown: the name of ``directory`` in the message (default ``directory``).

    Raises:
        MistError: naming the first entry (by name) that is not one of its own, or the
            process that holds its ``.lock`` (a run being trained).
    """
    patterns, shown = list(patterns), Path(shown or directory)
    pid = lock_holder(directory)
    if pid is not None:
        raise MistError(
            f"{shown}: another process (pid {pid}) is writing to it, so it is not replaced; "
            "wait for it to finish or choose another --out"
        )
    for entry in sorted(Path(directory).iterdir()):
        if not _own(entry, patterns):
            raise MistError(
                f"{shown / entry.name}: is not part of {what}, so {shown} is not replaced; "
                "move it away and run again, or choose another --out"
            )


#: What an output holds of its own: ``(what, patterns)`` (see :func:`require_only_own`), the
#: patterns given or found in the directory itself (``patterns(directory)``).
Own = tuple[str, Iterable[str] | Callable[[Path], Iterable[str]]]


#: Whether an existing file at one of an output's names is the one the command wrote there
#: (:func:`replacing`; :func:`mistnet.outfiles.written_json`,
#: :func:`~mistnet.outfiles.written_png`).
Mine = Callable[[Path], bool]


def _aside(directory: Path, own: Own | None) -> Path:
    """Rename ``directory`` to a temporary sibling, which it returns, once that holds only the
    entries of ``own`` (see :data:`Own`); else rename it back. Checked after the rename:
    nothing can be added meanwhile, nobody uses the new name.
    """
    old = aside_sibling(directory)
    os.rename(directory, old)
    _SET_ASIDE[old.absolute()] = directory.absolute()
    if own is not None:
        try:
            what, patterns = own
            patterns = patterns(old) if callable(patterns) else patterns
            require_only_own(old, patterns, what, shown=directory)
        except BaseException:
            with deferred_signals():
                _put_back(old, directory)
            raise
    return old


#: The earlier outputs this process has set aside (:func:`_aside`) and not yet put back or
#: removed, each with the path it was at: :func:`remove_added` never takes them for something a
#: failed command added, and :func:`recover_set_aside` never takes such a path for a free one.
_SET_ASIDE: dict[Path, Path] = {}


def _put_back(old: Path, path: Path) -> None:
    os.rename(old, path)
    _SET_ASIDE.pop(old.absolute(), None)


#: The set-aside outputs :func:`recover_set_aside` has named as kept (one warning each).
_WARNED: set[Path] = set()


def recover_set_aside(path: str | os.PathLike) -> None:
    """Put back the earlier output of ``path`` that a killed command set aside
    (:func:`_aside`) and never put back or removed, when ``path`` is free; else keep it, with a
    warning naming it, for the user to rename back or remove (never removed here: it may be
    the only copy of a run)."""
    path = Path(path)
    # A path whose output this process set aside is not free: its new output is being made.
    replaced = path.absolute() in _SET_ASIDE.values()
    for old in stale_set_aside(path.parent, path.name):
        if discarded(old):  # replaced, but its removal failed: no earlier output to offer
            with contextlib.suppress(OSError):
                remove_marker_last(old, remove_path)
            continue
        if not replaced and not os.path.lexists(path):
            try:
                rename_new(old, path)
            except MistError:  # taken meanwhile: kept, as below
                pass
            else:
                warnings.warn(
                    f"{path}: put back; a command that was killed had set it aside as {old.name}",
                    MistWarning,
                    stacklevel=2,
                )
                continue
        if old.absolute() in _WARNED:  # once a command: every step that writes path asks
            continue
        _WARNED.add(old.absolute())
        warnings.warn(
            f"{old}: an earlier {path.name} that a killed command set aside; it is kept (rename "
            f"it back to {path.name} to restore it, or remove it)",
            MistWarning,
            stacklevel=2,
        )


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
    its own (``own``: patterns as :func:`require_only_own` takes them, the marker and
    temporaries always); a file the user put there meanwhile stays."""
    own = [MARKER, *own]
    for name in entries(directory) - before:
        entry = Path(directory) / name
        if entry.absolute() in _SET_ASIDE:  # an earlier output, to be put back (replacing)
            continue
        if _own(entry, own):
            remove_path(entry)


def discard_new(
    directory: str | os.PathLike, created: list[Path], before: set[str], own: Iterable[str]
) -> None:
    """Undo a failed command's output ``directory``: remove the directories it created
    (``created``, :func:`open_output`'s), else what it added of its ``own`` entries
    (:func:`remove_added`)."""
    if created:
        shutil.rmtree(directory, ignore_errors=True)
        remove_empty(created[1:])
    else:
        remove_added(directory, before, own)


@contextmanager
def replacing(slots: Iterable[tuple[Path, Own | Mine]]) -> Iterator[None]:
    """Move each existing entry of ``slots`` aside while the block writes new ones in place.

    ``slots`` are ``(path, own)`` pairs: a directory checked to hold only ``own``'s entries
    (see :func:`_aside`), or a regular file that ``own`` (a :data:`Mine`) sees to be the one
    the command wrote (a file of the user's of that name, or a folder or link, is refused).
    On success the old entries are removed; on
    any exception (KeyboardInterrupt and, under the CLI, SIGTERM included) what the block made
    at those paths is removed and the old entries are put back, so a failed second ``mist
    demo`` leaves the first one's dataset, run, metrics and figure as they were.
    """
    moved: list[tuple[Path, Path]] = []
    try:
        for path, own in slots:
            remove_stale_temporaries(path.parent, path.name, own=_left_by_a_writer)
            recover_set_aside(path)
            if os.path.lexists(path):
                if callable(own):
                    require_own_file(path, own)
                with deferred_signals():  # set aside and recorded, or neither
                    moved.append((path, _aside(path, None if callable(own) else own)))
        yield
    except BaseException:
        # Put the old entries back first, with signals held (a second Ctrl-C must not leave
        # them set aside); only then remove what the block made, set aside in their stead.
        made: list[Path] = []
        with deferred_signals():
            for path, old in reversed(moved):
                if os.path.lexists(path):
                    made.append(temporary_sibling(path))
                    os.rename(path, made[-1])
                _put_back(old, path)
            _remove_each(made)
        raise
    for path, old in moved:
        _discard(old, path)


def require_own_file(path: Path, mine: Mine, writer: str = "mistnet") -> None:
    """Refuse to replace ``path`` unless it is a regular file that ``mine`` sees to be the one
    the command (``writer``, as the message names it) wrote: a folder, a symbolic link or
    another file of that name is the user's. A missing ``path`` passes."""
    if not os.path.lexists(path):
        return
    if path.is_symlink():
        what = "a symbolic link"
    elif path.is_dir():
        what = "a folder"
    elif not path.is_file():
        what = "not a regular file"
    elif not mine(path):
        what = "a file of another content"
    else:
        return
    raise MistError(
        f"{path}: is {what}, not a file {writer} wrote, so it is not replaced; move it "
        "away and run again, or choose another --out"
    )


def _remove_each(paths: list[Path]) -> None:
    """Remove each of ``paths``, the rest too when one fails (an error is raised after)."""
    for i, path in enumerate(paths):
        try:
            remove_path(path)
        except BaseException:
            _remove_each(paths[i + 1 :])
            raise


def _made_directory(entry: Path) -> bool:
    """Whether ``entry`` is what :func:`new_directory` or :func:`_discard` leaves when killed:
    a directory (no link) holding its marker, or nothing but the marker's temporary (killed
    while the marker was written; such a folder was kept for ever), or empty."""
    if not entry.is_dir() or entry.is_symlink():
        return False
    if (entry / MARKER).is_file():
        return True
    return all(e.name.startswith(f".{MARKER}.") and is_temporary(e.name) for e in entry.iterdir())


def _left_by_a_writer(entry: Path) -> bool:
    """A temporary file, or a directory :func:`_made_directory` takes."""
    return a_file(entry) or _made_directory(entry)


def _discard(old: Path, path: Path) -> None:
    """Remove ``old``, the earlier output of ``path`` set aside (:func:`_aside`), once the new
    one is in place: renamed to a temporary of ``path`` first (no longer an earlier output that
    :func:`recover_set_aside` offers back), then emptied with its marker last, so that a kill
    midway leaves a marked temporary the next command writing ``path`` removes. (A kill in the
    middle of removing it left it set aside, half removed, and offered back for ever.) If that
    rename fails it is marked discarded and removed where it is; what is left is a warning:
    the new output is in place (before: exit 2, the old one offered back as a killed one's)."""
    trash = temporary_sibling(path)
    try:
        os.rename(old, trash)
    except OSError:
        trash = old
        if old.is_dir() and not old.is_symlink():
            with contextlib.suppress(OSError):  # then left to the user, as the warning says
                mark_discarded(old)
    _SET_ASIDE.pop(old.absolute(), None)
    reason = ""
    try:
        remove_marker_last(trash, remove_path)  # looked up now: a test stands in for it
    except OSError as exc:
        reason = f" ({exc.strerror})"
    if os.path.lexists(trash):
        later = is_temporary(trash.name) or discarded(trash)
        warnings.warn(
            f"{trash}: the earlier {path.name}, replaced, could not be removed{reason}; "
            + (f"the next command writing {path.name} removes it" if later else "remove it"),
            MistWarning,
            stacklevel=2,
        )


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
    hold only the entries of ``own``, see :data:`Own`), and
    only when it is still of ``kind`` (its marker, or ``legacy(target)``) at that moment. On
    any exception (KeyboardInterrupt and, under the CLI, SIGTERM included) the temporary
    directory and the parents made for it are removed and ``target`` is as it was.
    """
    target = Path(target)
    created = make_parents(target.parent)
    remove_stale_temporaries(target.parent, target.name, own=_made_directory)
    recover_set_aside(target)
    tmp = temporary_sibling(target)
    try:
        tmp.mkdir()
        mark(tmp, kind)
        yield tmp
        ours = output_kind(target) == kind or (legacy is not None and legacy(target))
        if replace and ours:
            _swap(tmp, target, own)
        else:
            rename_new(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_empty(created)
        if str(exc.filename or tmp).startswith(str(tmp)):
            # A full disk or a size limit while writing: name the target, not the temporary.
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_empty(created)
        raise


def _swap(tmp: Path, target: Path, own: Own | None) -> None:
    """Put ``tmp`` in the place of the directory ``target``, then remove the old one (which
    holds only ``own``'s entries, see :func:`_aside`)."""
    old = _aside(target, own)
    try:
        take_mode(tmp, old)  # a private or group-shared output stays so
        rename_new(tmp, target)
    except BaseException:
        with deferred_signals():
            _put_back(old, target)
        raise
    _discard(old, target)
