"""The ``mist`` entry point: help, sub-command help, and user errors every command shares."""

import json
import re
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


@pytest.mark.parametrize("argv", [[], ["data"]], ids=["mist", "mist_data"])
def test_no_command_is_a_usage_error_on_stderr(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert err.startswith("usage: mist") and "the following arguments are required" in err


def test_a_usage_error_quoting_a_huge_value_is_cut(capsys):
    """Before: ``--split`` of 100,000 characters was quoted whole by argparse ("invalid
    choice: 'aaa...'"), one line of 100 KB."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["eval", "--model", "x", "--split", "a" * 100_000])
    err = capsys.readouterr()[1]
    last = err.strip().splitlines()[-1]
    assert exc.value.code == 2 and "invalid choice" in last and "characters left out" in last
    assert len(last) < 2100
    with pytest.raises(SystemExit):  # mist's own parser too (a command of that name)
        cli.main(["a" * 100_000])
    last = capsys.readouterr()[1].strip().splitlines()[-1]
    assert "invalid choice" in last and len(last) < 2100


@pytest.mark.parametrize(
    "argv, message",
    [
        # Before: argparse dropped the value '--': --data became [], read as not given (the
        # run trained on the preset's generated scenes, exit 0); other options an internal
        # error. The innermost command names itself.
        (["train", "--preset", "tiny-cpu", "--data=--", "--out", "{tmp}/r"], "mist train: error: --data=--: '--' is no value"),
        (["data", "make", "mnist-hard", "--out=--"], "mist data make: error: --out=--: '--' is no"),
        # Before: completed to --seeds 3 (seeds 0, 1, 2 trained, seed 3 never)
        (["reproduce", "table1", "--budget", "smoke", "--out", "{tmp}/rp", "--seed", "3"], "mist reproduce: error: unrecognized arguments: --seed 3"),
    ],
    ids=["option=--", "data make --out=--", "abbreviation"],
)  # fmt: skip
def test_an_option_valued_double_dash_or_abbreviated_is_refused(capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main([a.format(tmp=tmp_path) for a in argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


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


#: The commands that run a model, each with its required arguments.
COMPUTING = {
    "demo": [],
    "train": [],
    "eval": ["RUN"],
    "detect": ["RUN", "x.png", "--out", "d"],
    "show": ["RUN", "--out", "f.png"],
    "reproduce": ["table1", "--budget", "smoke", "--out", "o"],
}


def test_every_computing_command_has_device_and_threads_with_one_default():
    parser = cli.build_parser()
    for name, required in COMPUTING.items():
        args = parser.parse_args([name, *required])
        assert (args.device, args.threads) == ("auto", 0), name
        args = parser.parse_args([name, *required, "--device", "cpu", "--threads", "1"])
        assert (args.device, args.threads) == ("cpu", 1), name


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "RUN", "--bogus", "1"],
        ["detect", "RUN", "x.png", "--out", "d", "--bogus", "1"],
        ["data", "import-images", "src", "--out", "d", "--bogus", "1"],
    ],
)
def test_an_unknown_argument_shows_the_commands_usage(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    command = " ".join(argv[: 2 if argv[0] == "data" else 1])
    assert err.startswith(f"usage: mist {command} "), err
    assert err.splitlines()[-1] == f"mist {command}: error: unrecognized arguments: --bogus 1"


# Run ``python -m mistnet data show ds --out e.png`` with Ctrl-C arriving as the module named
# by argv[1] is imported (the import hook raises it: a timer would race the interpreter).
_INTERRUPT_AT_IMPORT = """
import runpy, sys

AT = sys.argv[1]

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == AT:
            raise KeyboardInterrupt

sys.meta_path.insert(0, Interrupt())
sys.argv = ["mist", "data", "show", "ds", "--out", "e.png"]
runpy.run_module("mistnet", run_name="__main__")
"""


@pytest.mark.parametrize("module", ["torch", "mistnet.commands.data", "mistnet.signals"])
def test_ctrl_c_during_startup_is_one_line_and_exit_130(tmp_path, module):
    """Ctrl-C while the commands import torch, or while mistnet.cli itself is imported."""
    proc = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_AT_IMPORT, module],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert (proc.returncode, proc.stderr, proc.stdout) == (130, "mist: interrupted\n", "")
    assert list(tmp_path.iterdir()) == []


_INTERRUPT_AT_SHUTDOWN = """
import atexit, signal, sys
atexit.register(signal.raise_signal, signal.{})  # a signal while the interpreter shuts down
sys.argv = ["mist", "models"]
from mistnet.cli import run
run()
"""


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_ctrl_c_once_the_command_is_done_changes_nothing(tmp_path, name):
    """Before: a Ctrl-C during the interpreter's shutdown, after the output was whole, printed
    "Exception ignored in atexit callback ... KeyboardInterrupt" (status 0); SIGTERM and
    SIGHUP, which stop a command as Ctrl-C does, ended it silently with 143 and 129."""
    proc = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_AT_SHUTDOWN.format(name)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert "mnist-hard-classifier" in proc.stdout


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly():
    """`mist models | head -1`: no "Broken pipe" error, the status of a filter killed by
    SIGPIPE (141), as `cat big | head -1` ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mistnet", "models"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    proc.stdout.close()  # before the command has started to write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""


def test_a_torchrun_variable_it_cannot_have_is_one_line_and_only_where_it_is_read(tmp_path):
    """Before: ``WORLD_SIZE=two mist data make ...`` wrote the dataset, then printed a raw
    ``int()`` traceback at exit (status 1); ``mist train`` an internal error."""
    env = {**subprocess_env(), "WORLD_SIZE": "two"}
    make = ["data", "make", "mnist-easy", "--out", "ds", "--n-train", "8", "--n-val", "8"]
    proc = subprocess.run(
        [sys.executable, "-m", "mistnet", *make, "--n-test", "8"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (0, "")
    train = ["train", "--preset", "tiny-cpu", "--data", "ds", "--out", "r"]
    for rank, size, message in (
        ("0", "two", "WORLD_SIZE='two'"),
        ("3", "2", "RANK=3, WORLD_SIZE=2"),
        ("-1", "2", "RANK='-1' in the environment: torchrun sets an integer in [0, WORLD_SIZE)"),
        # Before: int() refused 5,000 digits: a raw traceback at exit (exit 1)
        ("0", "1" * 5000, "WORLD_SIZE='11111111111111111111'... (5,000 characters)"),
        # Before: the cap counted digits after the leading zeros, int() took them all: the same
        ("0", "0" * 5000 + "2", "MASTER_ADDR is not set in the environment (WORLD_SIZE=2)"),
    ):
        env = {**subprocess_env(), "RANK": rank, "WORLD_SIZE": size}
        proc = subprocess.run(
            [sys.executable, "-m", "mistnet", *train],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert message in proc.stderr and not (tmp_path / "r").exists()


def test_a_closed_standard_stream_is_taken_for_dev_null(tmp_path):
    # Before: `mist ... >&-` did the work, then failed at exit flushing a stdout of None
    # (internal error, status 1); with stderr closed, reading a TIFF failed the same way.
    make = "data make mnist-easy --n-train 2 --n-val 1 --n-test 1 --out"
    for closed, argv, code in (
        (">&-", f"{make} {tmp_path / 'e'}", 0),
        ("2>&-", f"eval {tmp_path / 'none'}", 2),
        ("<&- >&- 2>&-", f"{make} {tmp_path / 'f'}", 0),
    ):
        line = f"exec {sys.executable} -m mistnet {argv} {closed}"
        proc = subprocess.run(
            ["bash", "-c", line], capture_output=True, text=True, env=subprocess_env(), timeout=120
        )
        assert proc.returncode == code, (line, proc.stderr)
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    for name in ("e", "f"):  # whole datasets, no line of the command's in one of their files
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [
            ".mistnet",
            "manifest.json",
            "test.npz",
            "train.npz",
            "val.npz",
        ]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_standard_stream_costs_no_work(tmp_path):
    # Before: `mist train 2>/dev/full` died at its first progress line (the message could not
    # be printed either: internal error, the run removed); `mist models >/dev/full` said "No
    # space left on device" naming no file.
    make = "data make mnist-easy --n-train 4 --n-val 2 --n-test 2 --out ds"
    train = "train --preset tiny-cpu --data ds --out r --no-progress " + " ".join(
        f"--set train.{key}" for key in ("steps=4", "batch_size=2", "val_every=2")
    )
    for argv, redirect, code in (
        (make, ">/dev/full", 2),
        (train, "2>/dev/full", 0),
        ("models", ">/dev/full", 2),
        ("--help", ">/dev/full", 2),
    ):
        line = f"exec {sys.executable} -m mistnet {argv} {redirect}"
        proc = subprocess.run(
            ["bash", "-c", line], capture_output=True, text=True, env=subprocess_env(),
            cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert proc.returncode == code, (line, proc.stderr)
        if code == 2:
            assert proc.stderr.count("\n") == 1, proc.stderr
            assert "cannot write to standard output: No space left on device" in proc.stderr
    assert (tmp_path / "ds" / "manifest.json").is_file()  # written before its summary failed
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["stopped"] == "steps"


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["eval", "RUN"], "eval"),
        (["detect", "RUN", "x.png", "--out", "d"], "detect"),
        (["data", "make", "mnist-easy", "--out", "ds"], "data make"),
        (["demo", "--out", "demo"], "demo"),
    ],
)
def test_only_train_runs_under_torchrun(capsys, monkeypatch, tmp_path, argv, name):
    """Before: under torchrun every copy ran: eval wrote its JSON twice, detect and data make
    raced and one copy failed with a misleading "created by another process"."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.chdir(tmp_path)
    message = f"mist {name} runs in one process (WORLD_SIZE=2 in the environment): only mist train"
    assert_user_error(mist(capsys, *argv), message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("threads", [1, -1, "lots", 100000, [1, 2]])
def test_a_preset_s_train_threads_is_refused_with_where_it_went(threads):
    """Before: ``[train] threads = 1`` in a TOML preset was dropped silently (``--set
    train.threads=1`` is refused); an old run's recorded config.json still drops it."""
    from mistnet.configupgrade import upgrade
    from mistnet.errors import MistError

    data = {"train": {"threads": threads, "steps": 4}}
    message = "p.toml: train.threads is now a run-time option: mist train --threads N "
    with pytest.raises(MistError, match=re.escape(message + "(mistnet.fit(threads=N))")):
        upgrade(data, "p.toml", recorded=False)
    assert upgrade(data, "config.json") == {"train": {"steps": 4}}


def test_ctrl_c_while_the_arguments_are_parsed_is_an_interrupt(capsys, monkeypatch):
    """Before: a Ctrl-C as Python 3.11's intermixed parsing began (``mist detect``) ended in
    a traceback, its cleanup's AttributeError ('save_nargs') in place of the interrupt."""
    import argparse

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(argparse.ArgumentParser, "format_usage", interrupted)
    assert cli.main(["detect", "r", "a.png", "--out", "d"]) == 130
    assert capsys.readouterr().err == "mist: interrupted\n"


def test_a_mount_point_that_cannot_be_replaced_is_named_so(monkeypatch):
    """Before: ``--out`` an empty folder that is a mount point: "mp: Device or resource busy"."""
    import errno

    from mistnet.cli import os_error_message

    monkeypatch.setattr("os.path.ismount", lambda p: p == "mp")
    busy = OSError(errno.EBUSY, "Device or resource busy", ".mp.123.tmp", None, "mp")
    assert os_error_message(busy).endswith("busy (a mount point, which cannot be replaced: give "
                                           "a new directory in it)")  # fmt: skip
    other = OSError(errno.EBUSY, "Device or resource busy", "x")
    assert os_error_message(other) == "x: Device or resource busy"


def test_a_warning_made_an_error_by_the_filter_is_one_line_and_no_bug(capsys, tmp_path):
    """Before: under ``PYTHONWARNINGS=error`` a warning (mistnet's "skipped 1 file(s) that are
    no images", matplotlib's missing glyph) was "internal error, please report it"."""
    import warnings

    import numpy as np
    from cli_helpers import entries_under
    from PIL import Image

    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20), 60 * i, np.uint8)).save(src / f"{i}.png")
    (src / "notes.txt").write_text("mine")
    before = entries_under(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = mist(capsys, "data", "import-images", src, "--out", tmp_path / "ds")
    assert_user_error(result, "MistWarning:", "notes.txt", "made an error by the warnings filter")
    assert entries_under(tmp_path) == before


def test_torch_compile_failing_for_want_of_a_compiler_is_no_bug():
    """Before: ``--compile`` without a C++ compiler was "internal error, please report it"."""
    from mistnet.cli import _not_a_bug

    InductorError = type("InductorError", (RuntimeError,), {})
    said = _not_a_bug(InductorError("InvalidCxxCompiler: No working C++ compiler found\nmore"))
    assert said.startswith("--compile: torch.compile failed (InvalidCxxCompiler: No working C++")
    assert "run without --compile" in said and "\n" not in said
    assert _not_a_bug(RuntimeError("a bug")) is None
    assert _not_a_bug(InductorError("AssertionError: a bug of inductor's")) is None
    # older torch: BackendCompilerFailed's first line is "backend='inductor' raised:"
    Failed = type("BackendCompilerFailed", (RuntimeError,), {})
    wrapped = Failed("backend='inductor' raised:\nInvalidCxxCompiler: none")
    wrapped.inner_exception = type("InvalidCxxCompiler", (RuntimeError,), {})()
    assert _not_a_bug(wrapped).startswith("--compile: torch.compile failed (backend='inductor'")


def test_a_torchrun_variable_with_leading_zeros_is_its_number(monkeypatch):
    """The digit cap (int() refuses 4,300) counts digits past the leading zeros."""
    from mistnet.machine import torchrun_world

    monkeypatch.setenv("RANK", "0" * 30)
    monkeypatch.setenv("WORLD_SIZE", "0" * 30 + "1")
    assert torchrun_world() == (0, 1)
