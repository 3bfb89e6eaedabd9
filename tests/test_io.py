"""Atomic writes: the target holds the old or the new content, and no temporary file is left."""

import json
import os

import pytest

from mistnet.io import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    temporary_sibling,
)


class Boom(Exception):
    pass


def test_writes_replace_the_content_and_leave_only_the_target(tmp_path):
    path = tmp_path / "sub" / "a.txt"  # the parent directory is created
    assert atomic_write_text(path, "old") == path
    atomic_write_text(path, "new ±")
    assert path.read_text(encoding="utf-8") == "new ±"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    atomic_write_json(path, {"b": 1, "a": [2]})
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    2\n  ]\n}\n'
    assert os.listdir(path.parent) == ["a.txt"]


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_content_and_removes_the_temporary_file(tmp_path, error):
    path = tmp_path / "eval.json"
    atomic_write_json(path, {"v": 1})
    seen = []

    def half_then_fail(tmp):
        seen.append(tmp)
        tmp.write_text('{"v": 2')  # half a file
        raise error("disk full")

    with pytest.raises(error, match="disk full"):
        atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"v": 1}
    assert not seen[0].exists()
    assert os.listdir(tmp_path) == ["eval.json"]


def test_a_failed_first_write_creates_no_target(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"not json": object()})
    assert os.listdir(tmp_path) == []


def test_temporary_names_are_hidden_siblings_unique_per_call_and_keep_the_suffix(tmp_path):
    target = tmp_path / "fig.png"
    a, b = temporary_sibling(target), temporary_sibling(target)
    assert a != b and a.parent == b.parent == tmp_path
    assert a.name.startswith(f".fig.png.{os.getpid()}.") and a.suffix == ".png"
