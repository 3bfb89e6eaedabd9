"""Earlier outputs set aside while their replacement is made, and put back or removed.

A command replacing an output it made earlier (``data make --overwrite``, a second ``demo`` or
``detect``) renames the old one to a name of its own (:func:`~mistnet.io.aside_sibling`, never
taken for a temporary), builds the new one, puts it in place (:func:`swap_in`,
:func:`replacing`) and only then removes the old one (:func:`_discard`); a failure puts the old
one back. A killed command's set-aside output is put back by the next command writing the same
path, or kept with a warning when its place is taken (:func:`recover_set_aside`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mistnet.errors import MistError, MistWarning
from mistnet.io import (
    aside_sibling,
    is_temporary,
    remove_path,
    remove_stale_temporaries,
    rename_new,
    stale_set_aside,
    take_mode,
    temporary_sibling,
)
from mistnet.markers import discarded, mark_discarded, remove_marker_last
from mistnet.ownership import Mine, Own, left_by_a_writer, require_only_own, require_own_file
from mistnet.signals import deferred_signals


def _aside(directory: Path, own: Own | None) -> Path:
    """Rename ``directory`` to a temporary sibling, which it returns, once that holds only the
    entries of ``own`` (see :data:`Own`); else rename it back. Checked after the rename:
    nothing can be added meanwhile, nobody uses the new name.
    """
    old = aside_sibling(directory)
    os.rename(directory, old)
    _SET_ASIDE[old.absolute()] = directory.absolute()
    if old.is_symlink():  # put there while the command ran: the link would be lost
        with deferred_signals():
            _put_back(old, directory)
        raise MistError(
            f"{directory}: became a symbolic link while this command ran; it is left as it is"
        )
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
            remove_stale_temporaries(path.parent, path.name, own=left_by_a_writer)
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
    with deferred_signals():  # a signal halfway through left a half-removed temporary
        for path, old in moved:
            _discard(old, path)


def _remove_each(paths: list[Path]) -> None:
    """Remove each of ``paths``, the rest too when one fails (an error is raised after)."""
    for i, path in enumerate(paths):
        try:
            remove_path(path)
        except BaseException:
            _remove_each(paths[i + 1 :])
            raise


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


def swap_in(tmp: Path, target: Path, own: Own | None) -> None:
    """Put ``tmp`` in the place of the directory ``target``, then remove the old one (which
    holds only ``own``'s entries, see :func:`_aside`).

    Signals are held from the old one's set-aside to its removal, then acted on: a SIGTERM or
    Ctrl-C between the renames left the old output set aside with nothing at ``target``, or,
    once the new one was in place, failed to put it back ("Directory not empty", exit 2, kept
    for ever), and one during the removal left a half-removed temporary.
    """
    with deferred_signals():
        old = _aside(target, own)
        try:
            take_mode(tmp, old)  # a private or group-shared output stays so
            rename_new(tmp, target)
        except BaseException:
            _put_back(old, target)
            raise
        _discard(old, target)


def is_set_aside(path: Path) -> bool:
    """Whether ``path`` is an earlier output this process set aside and has not yet put back
    or removed (:func:`mistnet.outputs.remove_added` never takes one for something added)."""
    return path.absolute() in _SET_ASIDE
