"""Text and JSON files from outside: UTF-8 only, strict JSON.

- :func:`read_text` / :func:`decode_text`: UTF-8 text (a UTF-8 byte-order mark is accepted;
  UTF-16 and UTF-32 are refused by name, with a byte-order mark or without one).
- :func:`read_json` / :func:`parse_json`: strict JSON (no ``NaN`` or ``Infinity``, no key
  twice in one object, no nesting deep enough to exhaust Python's stack).

Each raises :class:`~mistnet.errors.DataError` with one line naming the file.
"""

from __future__ import annotations

import json
import math
import os
import sys

from mistnet.errors import DataError
from mistnet.validate import regular_file

# Byte-order marks of the encodings a text file is most often saved in by mistake.
_OTHER_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _wide_without_bom(head: bytes) -> str | None:
    """The encoding whose NUL bytes an ASCII start of text in UTF-16 or UTF-32 (no byte-order
    mark) shows in its first four bytes: ``c\0\0\0`` UTF-32LE, ``c\0d\0`` UTF-16LE, ..."""
    if len(head) < 4:
        return None
    zero = [b == 0 for b in head]
    return {
        (False, True, True, True): "UTF-32-LE",
        (True, True, True, False): "UTF-32-BE",
        (False, True, False, True): "UTF-16-LE",
        (True, False, True, False): "UTF-16-BE",
    }.get(tuple(zero))


def decode_text(data: bytes, where: str | os.PathLike) -> str:
    r"""``data`` decoded as UTF-8, without the byte-order mark some editors write first.

    Raises:
        DataError: UTF-16 or UTF-32 (named from their byte-order mark), or other bytes that are
            not UTF-8 (with the offset of the first).

    Example:
        >>> decode_text(b"\xef\xbb\xbfcat", "labels.csv")
        'cat'
        >>> decode_text(b"\xff\xfec\x00", "labels.csv")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: labels.csv: UTF-16 text (from its byte-order mark); save it as UTF-8
    """
    for bom, name in _OTHER_BOMS:
        if data.startswith(bom):
            raise DataError(f"{where}: {name} text (from its byte-order mark); save it as UTF-8")
    if name := _wide_without_bom(data[:4]):  # else valid UTF-8 holding NULs, refused later
        raise DataError(
            f"{where}: {name} text (NUL bytes between its characters, no byte-order mark); "
            "save it as UTF-8"
        )
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{where}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); "
            "save it as UTF-8"
        ) from None


#: The largest text file read (a config, a record, a log, labels or COCO annotations: COCO's
#: own train2017 instances are 448 MB); a larger one is refused by name, not read until memory
#: runs out ("out of memory", naming nothing; a 3 GB sparse config.json took 6.6 GB).
MAX_TEXT_BYTES = 2**30


def read_text(path: str | os.PathLike) -> str:
    """The content of the regular file ``path`` decoded as UTF-8 (see :func:`decode_text`).

    Raises:
        DataError: not a regular file, unreadable, larger than :data:`MAX_TEXT_BYTES` or than
            memory, or not UTF-8 (with the byte offset).
    """
    path = regular_file(path)
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise DataError(
                f"{path}: {size / 2**30:.1f} GiB, more than the {MAX_TEXT_BYTES // 2**30} GiB "
                "of text mistnet reads (a damaged or wrong file?)"
            )
        data = path.read_bytes()
        return decode_text(data, path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except MemoryError:
        raise DataError(f"{path}: too large to read into this machine's memory") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def read_float(text: str) -> float:
    """``float(text)``, refusing a number that is not 0 but reads as 0 (``1e-400``: a setting
    of 0, no validation split or no step clip, taken silently).

    Raises:
        ValueError: ``"'1e-400' is too small for a float (it reads as 0); give 0 or a larger
            number"``.
    """
    value = float(text)
    if value == 0 and any(c in "123456789" for c in text.lower().partition("e")[0]):
        raise ValueError(
            f"{text!r} is too small for a float (it reads as 0); give 0 or a larger number"
        )
    return value


def _finite_float(text: str) -> float:
    value = read_float(text)
    if not math.isfinite(value):  # 1e400: Python would read Infinity, which JSON has not
        raise ValueError(f"{text} is beyond the range of floats")
    return value


def parse_json(text: str, where: str | os.PathLike) -> object:
    """``text`` as strict JSON: ``NaN``, ``Infinity`` (also spelled ``1e400``), a key twice in
    one object (Python would keep the last silently) and deep nesting are refused.

    Raises:
        DataError: ``"<where>: not valid JSON (...)"``.

    Example:
        >>> parse_json('{"id": Infinity}', "a.json")
        Traceback (most recent call last):
        ...
        mistnet.errors.DataError: a.json: not valid JSON (Infinity is not a JSON number)
    """
    try:
        return json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        what = exc.msg.removesuffix(" at")  # "Unterminated string starting at at line 4"
        raise DataError(
            f"{where}: not valid JSON ({what} at line {exc.lineno} column {exc.colno})"
        ) from None
    except ValueError as exc:
        raise DataError(f"{where}: not valid JSON ({parse_error(exc)})") from None
    except RecursionError:
        raise DataError(f"{where}: not valid JSON (nested too deeply)") from None


def parse_error(exc: ValueError) -> str:
    """The message of a parser's ``ValueError``, Python's integer digit limit said plainly.

    Python refuses to convert an integer of more than ``sys.get_int_max_str_digits()`` digits
    (a guard against quadratic time); its message advises a call no user can make.
    """
    if "integer string conversion" in str(exc):
        return f"an integer of more than {sys.get_int_max_str_digits()} digits"
    return str(exc)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {twice!r} appears twice in one object")
    return out


def read_json(path: str | os.PathLike) -> object:
    """The regular UTF-8 file ``path`` as strict JSON (:func:`read_text`, :func:`parse_json`)."""
    return parse_json(read_text(path), path)
