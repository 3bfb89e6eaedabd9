"""The benchmark scripts write only folders they made and files they wrote, and refuse a bad
value in one line (they are run by hand, but a user's files are as much at stake)."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import subprocess_env
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(tmp_path, *argv, **env):
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / argv[0]), *map(str, argv[1:])],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**subprocess_env(), **env},
    )  # fmt: skip


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(
    "argv",
    [
        # Before: OUT/run (notes.txt with it) and OUT/averages.jsonl removed, then the preset
        # refused with a traceback
        ["average_probe.py", "--out", "U", "--preset", "nope"],
        # Before: the runs' config.json, log.jsonl, summary.json copied over the user's files
        [
            "recon_seeds.py",
            "--config",
            "c",
            "--steps",
            "4",
            "--seeds",
            "0",
            "--work",
            "W",
            "--out",
            "U",
        ],
        ["time_to_accuracy.py", "--report-only", "--recipe", "demo", "--work", "W", "--out", "U"],
        # Before: OUT/coins_boxes.csv written over (and --steps ignored)
        ["coins_probe.py", "images", "U"],
    ],
    ids=["average_probe", "recon_seeds", "time_to_accuracy", "coins_probe"],
)
def test_a_script_refuses_a_folder_it_did_not_make(tmp_path, argv):
    (tmp_path / "U" / "run").mkdir(parents=True)
    for name in ("run/notes.txt", "averages.jsonl", "coins_boxes.csv"):
        (tmp_path / "U" / name).write_text("mine")
    (tmp_path / "U" / "seed0").mkdir()
    (tmp_path / "U" / "seed0" / "config.json").write_text('{"mine": 1}')
    before = _tree(tmp_path)
    done = _script(tmp_path, *argv)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"{argv[0]}: error: U exists and was not made by {argv[0]} (no .written-by naming it); "
        "give a new folder"
    ]
    assert _tree(tmp_path) == before  # nothing made either (W is checked, then made)


def test_a_folder_that_cannot_be_made_is_refused_with_nothing_made(tmp_path):
    """Before: NotADirectoryError (a traceback), --work made and marked, when --out lay under
    a file."""
    (tmp_path / "afile").write_text("mine")
    for argv in (
        ["average_probe.py", "--out", "afile/sub"],
        ["time_to_accuracy.py", "--work", "tw2", "--out", "afile/sub"],
    ):
        done = _script(tmp_path, *argv)
        assert done.returncode == 2 and done.stderr.splitlines() == [
            f"{argv[0]}: error: {tmp_path / 'afile'} is not a folder; nothing can be made inside it"
        ]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    # Before: the parents a failing mkdir had made stayed (a name too long at the bottom)
    done = _script(tmp_path, "average_probe.py", "--out", "a/b/" + "z" * 300)
    assert done.returncode == 2 and "File name too long; give another --out" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_the_classifier_probe_appends_only_to_its_own_lines(tmp_path):
    """Before: ``--out notes.txt`` had JSON lines appended to whatever file it named."""
    (tmp_path / "notes.txt").write_text("mine\n")
    before = _tree(tmp_path)
    done = _script(tmp_path, "classifier_probe.py", "--data", "d", "--out", "notes.txt")
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "classifier_probe.py: error: notes.txt exists and holds no JSON lines of "
        "classifier_probe.py; give a new --out"
    ]
    assert _tree(tmp_path) == before
    for out in ("afile/p.jsonl", "nosuch/p.jsonl"):  # Before: found after the whole training
        (tmp_path / "afile").write_text("mine")
        done = _script(tmp_path, "classifier_probe.py", "--data", "d", "--out", out)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines()[-1].endswith(
            "is no folder; give an --out in an existing folder"
        )
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from common import own_lines
    finally:
        sys.path.remove(str(BENCHMARKS))
    (tmp_path / "probe.jsonl").write_text('{"label": "a", "step": 5, "val_acc": 0.5}\n')
    own_lines(tmp_path / "probe.jsonl", "classifier_probe.py", {"label", "step", "val_acc"})


def test_a_script_s_own_folder_is_its_to_write_again(tmp_path):
    """The folder a script made (its .written-by) is taken again, the committed results too."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from common import MARKER, own_folders
    finally:
        sys.path.remove(str(BENCHMARKS))
    own_folders("recon_seeds.py", tmp_path / "a" / "b", tmp_path / "empty")
    (tmp_path / "a" / "b" / "seed0").mkdir()
    own_folders("recon_seeds.py", tmp_path / "a" / "b")  # again, not empty: its own
    assert (tmp_path / "a" / "b" / MARKER).read_text() == "recon_seeds.py\n"
    for script, folder in (
        ("recon_seeds.py", "recon_seeds"),
        ("time_to_accuracy.py", "time_to_accuracy"),
    ):
        assert (BENCHMARKS / folder / MARKER).read_text().strip() == script


def test_miss_analysis_never_draws_over_a_file_of_the_user_s(tmp_path):
    """Before: ``--figure mine.png`` was saved over whatever file was there."""
    Image.new("L", (8, 8)).save(tmp_path / "mine.png")
    before = _tree(tmp_path)
    done = _script(tmp_path, "miss_analysis.py", "run", "--figure", "mine.png")
    assert done.returncode == 2 and "mine.png: exists and was not written by" in done.stderr
    assert _tree(tmp_path) == before


def test_gpu_check_writes_the_results_file_named_from_where_it_is_called(tmp_path):
    """Before: a relative RESULTS_FILE was written in the repository's root (the script moves
    there), over any file of that name, and the one named here was left as it was."""
    (tmp_path / "mine.txt").write_text("mine")
    bash = shutil.which("bash")
    done = subprocess.run(
        [bash, str(BENCHMARKS / "gpu_check.sh"), "mine.txt"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={**os.environ, "PYTHON": "/bin/false"},
    )  # fmt: skip
    assert done.returncode == 2 and (tmp_path / "mine.txt").read_text() == "mine"
    assert "mine.txt exists and is no results file of this script" in done.stderr
    done = subprocess.run(
        [bash, str(BENCHMARKS / "gpu_check.sh"), "new.txt"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHON": "/bin/false"},
    )  # fmt: skip
    assert (tmp_path / "new.txt").read_text().startswith("mistnet GPU check, ")
    assert not (BENCHMARKS.parent / "new.txt").exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["classifier_probe.py", "--data", "d", "--eval-every", "0"],
            "--eval-every: expected at least 1, got 0",
        ),
        (
            ["step_speed.py", "--device", "bogus"],
            "--device: device must be cpu, cuda, cuda:N or auto",
        ),
        (["recon_bound.py", "--sides", "-4"], "--sides: expected a finite number above 0, got -4"),
        # Before: Python's own spellings taken ('１', '1_0'), which mist's options refuse
        (["recon_bound.py", "--sides", "1_0"], "--sides: invalid float value: '1_0'"),
        (["classifier_probe.py", "--data", "d", "--eval-every", "１"], "invalid int value: '１'"),
        (["recon_seeds.py", "--config", "c", "--steps", "1", "--run", "R"], "--run takes S=DIR"),
        (["curves.py", "nonexist"], "run directory nonexist does not exist"),
    ],
)
def test_a_script_refuses_a_bad_value_in_one_line(tmp_path, argv, said):
    """Before: ZeroDivisionError, torch's device error, a ValueError of unpacking, a MistError
    of the run: each a traceback (exit 1)."""
    done = _script(tmp_path, *argv)
    assert done.returncode == 2 and said in done.stderr.splitlines()[-1], done.stderr
    assert "Traceback" not in done.stderr and list(tmp_path.iterdir()) == []
