"""The ``mist`` entry point: help, sub-command help, and user errors every command shares."""

import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, mist, subprocess_env

from mistnet import cli


def test_help_lists_the_commands():
    for argv in (
        [sys.executable, "-m", "mistnet", "--help"],
        [Path(sys.executable).parent / "mist", "--help"],
    ):
        if not Path(argv[0]).exists():
            continue
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=subprocess_env(), timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        for name in ("train", "eval", "detect", "show", "data"):
            assert name in proc.stdout


def test_sub_command_help(capsys):
    for name in ("train", "eval", "detect", "show"):
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        assert f"mist {name}" in capsys.readouterr().out


def test_missing_run_directory(capsys, tmp_path):
    for command in (["eval"], ["show", "--out", tmp_path / "f.png"]):
        assert_user_error(mist(capsys, *command, tmp_path / "nope"), "does not exist")
    assert_user_error(
        mist(capsys, "detect", tmp_path / "nope", "x.png", "--out", tmp_path / "d"),
        "does not exist",
    )


def test_run_directory_without_config(capsys, tmp_path):
    assert_user_error(mist(capsys, "eval", tmp_path), "not a mistnet run")
    assert_user_error(mist(capsys, "train", "--out", tmp_path, "--resume"), "not a mistnet run")
