"""Helpers shared by the command-line tests: run ``mist`` in-process and check a user error."""

import os
import shutil
import sys
from pathlib import Path

from mistnet import cli

SRC = str(Path(__file__).resolve().parents[1] / "src")

#: Overrides that make a tiny-cpu run small enough for a test.
TINY = ["data.n_train=32", "data.n_val=8", "data.n_test=8", "train.val_batches=1"]


def mist(capsys, *argv) -> tuple[int, str, str]:
    """Run ``mist *argv`` in this process; return (exit status, stdout, stderr)."""
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(result, *fragments: str) -> None:
    """A user error: exit 2, one line on stderr containing every fragment, no traceback."""
    rc, _, err = result
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def subprocess_env() -> dict[str, str]:
    """The environment for ``python -m mistnet`` in a subprocess: this checkout's sources first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def hide_matplotlib(monkeypatch) -> None:
    """Make ``import matplotlib`` (and its submodules) fail, as without the ``figures`` extra."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (hidden ones included) by relative path, with its content."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<not a regular file>"
        for p in sorted(Path(root).rglob("*"))
        if not p.is_dir()
    }


def entries_under(root: Path) -> dict[str, bytes | str]:
    """Every entry below ``root``: a file's bytes, a link's target, ``<dir>`` or, for a FIFO
    (which a read would wait on) or other special file, ``<special>``."""
    out: dict[str, bytes | str] = {}
    for p in sorted(Path(root).rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = f"-> {os.readlink(p)}"
        elif p.is_dir():
            out[key] = "<dir>"
        elif not p.is_file():
            out[key] = "<special>"
        else:
            out[key] = p.read_bytes()
    return out


def check_refused(capsys, tmp_path: Path, tiny_run: Path, make, snapshot=files_under) -> None:
    """Run the case ``make(tmp_path, run) -> (argv, fragments)`` on a copy of ``tiny_run``: a
    one-line user error naming every fragment, and ``snapshot(tmp_path)`` as it was."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    argv, fragments = make(tmp_path, run)
    before = snapshot(tmp_path)
    assert_user_error(mist(capsys, *argv), *fragments)
    assert snapshot(tmp_path) == before
