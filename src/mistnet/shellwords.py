"""Command lines recorded for a person to run again: one line each, whatever the paths hold.

``mist reproduce`` writes the command it was started with and the ``mist train`` / ``mist eval``
commands of each run into its tables; a path holding a newline, printed by :func:`shlex.join`,
cut such a command in two.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def shell_word(arg: str) -> str:
    r"""``arg`` quoted for a shell, on one line: a string holding a control character (a newline
    in a folder's name) in bash's ``$'...'`` form, each character that is not printable written
    as the bytes of its UTF-8 encoding (``\xHH``, read back in any locale; ``\u`` needs a UTF-8
    one) and each byte of a name that is not UTF-8 as itself.

    Example:
        >>> print(shell_word("runs/a b"), shell_word("p\nq/n4"), shell_word("it's\t"))
        'runs/a b' $'p\x0aq/n4' $'it\'s\x09'
        >>> print(shell_word("a\u200bb"))
        $'a\xe2\x80\x8bb'
    """
    if arg.isprintable():
        return shlex.quote(arg)
    chars = []
    for c in arg:
        if 0xDC80 <= ord(c) <= 0xDCFF:  # a byte of a name that is not UTF-8
            chars.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif not c.isprintable():
            chars.extend(f"\\x{byte:02x}" for byte in c.encode("utf-8", "surrogatepass"))
        else:
            chars.append({"\\": "\\\\", "'": "\\'"}.get(c, c))
    return "$'" + "".join(chars) + "'"


def shell_join(argv: Iterable[str]) -> str:
    r"""The words of ``argv`` as one command line (:func:`shell_word` each).

    Example:
        >>> print(shell_join(["mist", "eval", "runs/a\nb"]))
        mist eval $'runs/a\x0ab'
    """
    return " ".join(shell_word(str(word)) for word in argv)
