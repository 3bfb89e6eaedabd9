"""Single output files: a figure a command writes (``mist plot``, ``show``, ``data show``) is
stamped with the command's name, so that it is rewritten by the same command only and never
overwrites a file of the user's (see :mod:`mistnet.outputs` for output directories)."""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mistnet.errors import MistError
from mistnet.io import atomic_path, rename_new, require_output_name
from mistnet.outputs import check_outside
from mistnet.ownership import require_readable

#: The key of the PNG text chunk that names the command which wrote a figure (:func:`new_file`).
STAMP = b"mistnet"
_PNG = b"\x89PNG\r\n\x1a\n"


def written_by(path: str | os.PathLike) -> str | None:
    """The command named by the ``mistnet`` text chunk of the PNG file ``path``, or None.

    Only the chunks before the image data are read (a few hundred bytes); a file that is not a
    regular PNG file (a FIFO, a folder, a link) is None, unopened.
    """
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            if f.read(8) != _PNG:
                return None
            for _ in range(32):
                head = f.read(8)
                if len(head) < 8 or head[4:] in (b"IDAT", b"IEND"):
                    return None
                size = int.from_bytes(head[:4], "big")
                if head[4:] == b"tEXt" and size < 1024:
                    key, _, text = f.read(size).partition(b"\0")
                    if key == STAMP:
                        return text.decode("latin-1")
                    f.seek(4, os.SEEK_CUR)
                else:
                    f.seek(size + 4, os.SEEK_CUR)
    except OSError:
        return None
    return None


def _stamp(path: Path, command: str) -> None:
    """Insert the text chunk ``mistnet: command`` after the header chunk of the PNG ``path``."""
    data = path.read_bytes()
    if data[:8] != _PNG or data[12:16] != b"IHDR":
        raise ValueError(f"{path}: the figure written is not a PNG file")
    end = 8 + 12 + int.from_bytes(data[8:12], "big")  # signature, then IHDR and its CRC
    body = b"tEXt" + STAMP + b"\0" + command.encode("latin-1")
    chunk = (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    path.write_bytes(data[:end] + chunk + data[end:])


def file_name(path: str | os.PathLike, option: str, suffix: str) -> Path:
    """``path`` once it names a file ending in ``suffix`` (any case, as ``x.PNG``), not one
    ending in a separator or ``/.``: ``x.png/`` and ``x.png/.`` name a directory, which
    ``Path`` would silently drop.

    Raises:
        MistError: ``"<option> <path>: give a file name ending in <suffix>"``.
    """
    text = os.fspath(path)
    last = text.replace(os.sep, "/").rsplit("/", 1)[-1]  # "x.png/." names a directory too
    if last.lower() == suffix:
        raise MistError(f"{option} {text}: give a file name before {suffix} (as x{suffix})")
    if Path(last).name != last or Path(last).suffix.lower() != suffix:
        raise MistError(f"{option} {text}: give a file name ending in {suffix}")
    require_output_name(text, option)
    return Path(text)


def check_new_file(
    path: str | os.PathLike,
    command: str,
    inputs: Iterable[tuple[str, str | os.PathLike]] = (),
    suffix: str = ".png",
    option: str = "--out",
) -> None:
    """Check that ``command`` may write the single file ``path`` (a figure).

    ``path`` ends in ``suffix``; it is new, or a file the same command wrote earlier (its
    ``mistnet`` PNG text chunk names ``command``, see :func:`written_by`); and it lies neither
    inside a mistnet output nor inside one of ``inputs`` (:func:`check_outside`).

    Raises:
        MistError: naming ``path`` and the first of these it breaks.
    """
    path = file_name(path, option, suffix)
    if path.is_symlink():
        raise MistError(f"{path}: is a symbolic link; {option} must name a new file")
    check_outside(path, inputs, option)
    if not path.is_dir():  # a folder is never the figure: "was not written by" is right
        require_readable(path, command, f"choose a new {option}")  # else "not written by"
    if path.exists() and written_by(path) != command:
        raise MistError(
            f"{path}: exists and was not written by {command}; choose a new {option} (mistnet "
            "never overwrites a file it did not write)"
        )


@contextmanager
def new_file(
    path: str | os.PathLike,
    command: str,
    inputs: Iterable[tuple[str, str | os.PathLike]] = (),
) -> Iterator[Path]:
    """Yield a temporary PNG path to write; on success it becomes ``path``, stamped.

    ``path`` is checked first (:func:`check_new_file`). The temporary gets the text chunk
    naming ``command`` and then takes the place of ``path``: of a file ``command`` wrote (still
    so at that moment), or of none (never of a file another process made meanwhile:
    :func:`~mistnet.io.rename_new`). On any exception the temporary and the folders made for it are
    removed and ``path`` is as it was.
    """
    path = Path(path)
    check_new_file(path, command, inputs)

    def commit(tmp: Path, path: Path) -> None:
        _stamp(tmp, command)
        if written_by(path) == command:
            os.replace(tmp, path)
        else:
            rename_new(tmp, path)

    with atomic_path(path, commit) as tmp:
        yield tmp


def written_json(*keys: str) -> Callable[[Path], bool]:
    """A :data:`~mistnet.ownership.Mine` for a JSON record a command writes: an object holding
    each of ``keys`` (a file of the user's of that name, JSON or not, is refused)."""

    def mine(path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                record = json.loads(f.read(1 << 24).decode("utf-8-sig"))
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(record, dict) and all(key in record for key in keys)

    return mine


def written_png(path: Path) -> bool:
    """A :data:`~mistnet.ownership.Mine` for a figure: a PNG file whose ``Software`` text says
    mistnet made it (:func:`mistnet.viz.canvas.made_by_mistnet`)."""
    from mistnet.viz.canvas import made_by_mistnet  # torch and Pillow: only when asked

    return made_by_mistnet(path)
