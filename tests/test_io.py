"""Atomic writes: the target holds the old or the new content, and no temporary file is left;
strict JSON; stale temporaries of killed writers; output directories created, never adopted."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

from mistnet.errors import MistError, MistWarning
from mistnet.io import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    json_text,
    remove_stale_temporaries,
    temporary_sibling,
)
from mistnet.locks import LOCK, exclusive_lock
from mistnet.outputs import (
    check_outside,
    claim_output,
    create_directory,
    mark,
    new_directory,
    output_kind,
    rename_new,
    writing_inside,
)
from mistnet.setaside import recover_set_aside, replacing
from mistnet.signals import signals_as_exceptions


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


def test_json_text_is_strict_with_undefined_numbers_as_null():
    doc = {"det": float("nan"), "rows": [(1, float("inf")), {"x": -float("inf")}], "ok": 0.5}
    text = json_text(doc)
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == {
        "det": None,
        "rows": [[1, None], {"x": None}],
        "ok": 0.5,
    }
    assert "NaN" not in text and "Infinity" not in text
    assert json_text({"b": 1, "a": 2}, indent=None, sort_keys=True) == '{"a": 2, "b": 1}'


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead, alive = dead_pid(), os.getppid()
    stale = tmp_path / f".last.safetensors.{dead}.0123abcd.tmp.safetensors"
    stale_dir = tmp_path / f".data.{dead}.89abcdef.tmp"
    live = tmp_path / f".last.safetensors.{alive}.0123abcd.tmp.safetensors"
    other = tmp_path / f".log.jsonl.{dead}.0123abcd.tmp.jsonl"
    for path in (stale, live, other):
        path.write_bytes(b"half")
    stale_dir.mkdir()
    (stale_dir / "train.npz").write_bytes(b"half")
    kept = {"last.safetensors", ".lock", ".last.safetensors.tmp"}  # no writer pid: not ours
    for name in kept:
        (tmp_path / name).write_text("")
    assert remove_stale_temporaries(tmp_path, "last.safetensors") == [stale]
    assert other.exists() and live.exists()
    assert remove_stale_temporaries(tmp_path) == [other]  # a file writer's: files only
    assert remove_stale_temporaries(tmp_path, own=lambda p: p.is_dir()) == [stale_dir]
    assert {p.name for p in tmp_path.iterdir()} == kept | {live.name}
    # the next atomic write of a target clears that target's stale temporaries first
    stale.write_bytes(b"half")
    atomic_write_text(tmp_path / "last.safetensors", "new")
    assert not stale.exists() and live.exists()


def test_a_folder_or_file_named_like_a_temporary_is_not_removed_by_another_writer(
    capsys, tmp_path, monkeypatch
):
    """Before: any entry named like a killed writer's temporary was removed by the next write
    beside it, a folder of the user's with everything in it (``eval --json``, ``plot`` and
    ``data make`` exited 0 and said nothing)."""
    from cli_helpers import mist

    monkeypatch.chdir(tmp_path)
    dead = dead_pid()
    folder = tmp_path / f".m.json.{dead}.abcdef12.tmp.json"
    folder.mkdir()
    (folder / "thesis.txt").write_text("mine")
    mine = tmp_path / f".new.{dead}.00000000.tmp"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    atomic_write_text(tmp_path / "m.json", "{}")
    rc, _, err = mist(capsys, "data", "make", "mnist-easy", "--out", "new", "--n-train", 1)
    assert rc == 0, err
    assert (folder / "thesis.txt").read_text() == "mine"
    assert (mine / "notes.txt").read_text() == "mine"


def test_an_os_error_names_the_target_and_leaves_no_directory_behind(tmp_path):
    target = tmp_path / "new" / "deeper" / "eval.json"

    def disk_full(tmp):
        tmp.write_text("{")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic_write(target, disk_full)
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(target))
    assert os.listdir(tmp_path) == []  # the directories made for it are gone too


def test_a_new_directory_appears_only_on_success_and_replaces_only_its_own_files(tmp_path):
    out, own = tmp_path / "det", ("detections", (".mistnet", "*.json", "*.png"))
    with pytest.raises(Boom):
        with new_directory(out, "detections") as stage:
            (stage / "a.json").write_text("1")
            raise Boom
    assert os.listdir(tmp_path) == []  # not created
    with new_directory(out, "detections") as stage:
        (stage / "a.json").write_text("old")
    assert output_kind(out) == "detections"
    with pytest.raises(KeyboardInterrupt):
        with new_directory(out, "detections", replace=True, own=own) as stage:
            (stage / "b.json").write_text("new")
            raise KeyboardInterrupt
    assert (out / "a.json").read_text() == "old" and os.listdir(tmp_path) == ["det"]
    (out / "keep.txt").write_text("mine")  # the user's: nothing is replaced
    with pytest.raises(MistError, match="keep.txt: is not part of detections"):
        with new_directory(out, "detections", replace=True, own=own) as stage:
            (stage / "b.json").write_text("new")
    assert sorted(os.listdir(out)) == [".mistnet", "a.json", "keep.txt"]
    (out / "keep.txt").unlink()
    with new_directory(out, "detections", replace=True, own=own) as stage:
        (stage / "b.png").write_bytes(b"png")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        ".mistnet": b"detections\n",
        "b.png": b"png",
    }
    assert os.listdir(tmp_path) == ["det"]


def test_claim_output_accepts_only_new_empty_or_own_directories(tmp_path):
    assert claim_output(tmp_path / "new", "run", "mist train") is False
    (tmp_path / "empty").mkdir()
    assert claim_output(tmp_path / "empty", "run", "mist train") is False
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    with pytest.raises(MistError, match="mine: exists and was not made by mist train"):
        claim_output(mine, "run", "mist train")
    assert claim_output(mine, "run", "mist train", legacy=lambda p: True) is True
    mark(mine, "dataset")
    with pytest.raises(MistError, match="is a mistnet dataset directory, not mist train's"):
        claim_output(mine, "run", "mist train")
    (tmp_path / "file").write_text("x")
    with pytest.raises(MistError, match="is not a directory"):
        claim_output(tmp_path / "file", "run", "mist train")
    (tmp_path / "link").symlink_to(tmp_path / "new")
    with pytest.raises(MistError, match="symbolic link"):
        claim_output(tmp_path / "link", "run", "mist train")


def test_rename_new_never_replaces_what_another_process_made(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    (tmp_path / "b" / "theirs").write_text("x")
    with pytest.raises(MistError, match="created by another process"):
        rename_new(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b" / "theirs").read_text() == "x" and (tmp_path / "a").is_dir()
    rename_new(tmp_path / "a", tmp_path / "c")  # onto an empty directory
    rename_new(tmp_path / "c", tmp_path / "d")  # onto nothing
    assert sorted(os.listdir(tmp_path)) == ["b", "d"]
    assert create_directory(tmp_path / "e" / "f", "run") == [tmp_path / "e" / "f", tmp_path / "e"]
    assert output_kind(tmp_path / "e" / "f") == "run"


def test_sigterm_unwinds_as_an_exception_and_the_handler_is_restored(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(BaseException, match="SIGTERM"):
        with signals_as_exceptions(), new_directory(tmp_path / "out", "dataset"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_output_lies_inside_another_only_where_its_maker_writes_it(tmp_path):
    demo = tmp_path / "demo"
    create_directory(demo, "demo")
    with pytest.raises(MistError, match=r"--out .*demo/run is inside the demo folder .*demo; cho"):
        claim_output(demo / "run", "run", "mist train")
    with writing_inside(demo, ("data", "run")):
        assert claim_output(demo / "run" / "deeper", "run", "mist demo") is False
        with pytest.raises(MistError, match="notes is inside the demo folder"):
            claim_output(demo / "notes", "run", "mist demo")  # not one of the demo's children
    with pytest.raises(MistError, match="inside the demo folder"):  # only while the block runs
        claim_output(demo / "run", "run", "mist train")
    create_directory(tmp_path / "ds", "dataset")
    with pytest.raises(MistError, match=r"a/b is inside the dataset .*ds; choose a path outside"):
        check_outside(tmp_path / "ds" / "a" / "b")
    with pytest.raises(MistError, match=r"--data-root .*ds is the dataset"):
        check_outside(tmp_path / "ds", option="--data-root", itself=True)
    (tmp_path / "photos").mkdir()  # an input needs no marker
    photos = [("the image folder", tmp_path / "photos")]
    with pytest.raises(MistError, match="photos/x is inside the image folder"):
        check_outside(tmp_path / "photos" / "x", photos)
    check_outside(tmp_path / "photos", photos)  # the folder itself: claim_output refuses it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "ds", "photos"]


_KILLED_WHILE_REPLACING = """
import os, signal, sys
from pathlib import Path
from mistnet.setaside import replacing
out, write_new = Path(sys.argv[1]), sys.argv[2] == "new"
with replacing([(out / "run", ("a run", ["log.jsonl"])), (out / "metrics.json", None)]):
    if write_new:
        (out / "run").mkdir()
        (out / "run" / "log.jsonl").write_text("half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("write_new", [False, True])
def test_what_a_killed_command_set_aside_is_never_removed_as_a_temporary(tmp_path, write_new):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text("first")
    (tmp_path / "metrics.json").write_text("{}")
    arg = "new" if write_new else "old"
    proc = subprocess.run([sys.executable, "-c", _KILLED_WHILE_REPLACING, str(tmp_path), arg])
    assert proc.returncode == -signal.SIGKILL
    aside = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".aside"))
    assert [name.split(".")[1] for name in aside] == ["metrics", "run"]
    assert remove_stale_temporaries(tmp_path) == []  # what a later atomic write clears first
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with replacing([(tmp_path / "run", ("a run", ["log.jsonl"]))]):
            (tmp_path / "run").mkdir()
            (tmp_path / "run" / "log.jsonl").write_text("third")
    messages = [str(w.message) for w in caught]
    if write_new:  # its place was taken by the killed command's half-new run: kept, named
        kept = tmp_path / next(name for name in aside if name.startswith(".run."))
        assert (kept / "log.jsonl").read_text() == "first"
        assert any(f"{kept}: an earlier run that a killed command set aside" in m for m in messages)
    else:  # put back, then replaced by the third command as its own
        assert any(m.endswith("had set it aside as " + aside[1]) for m in messages)
        assert not (tmp_path / aside[1]).exists()
    assert (tmp_path / "run" / "log.jsonl").read_text() == "third"
    with pytest.warns(MistWarning, match="metrics.json: put back"):  # free: put back as it was
        recover_set_aside(tmp_path / "metrics.json")
    assert (tmp_path / "metrics.json").read_text() == "{}"


def test_a_set_aside_output_is_not_put_back_where_a_new_one_is_being_made(tmp_path):
    """A third command replacing the killed command's half-new run asks again, while making its
    own, whether the place is free: it is not (it set that run aside itself), so the first run
    stays set aside, and is not removed with what the third command made when it fails."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text("first")
    proc = subprocess.run([sys.executable, "-c", _KILLED_WHILE_REPLACING, str(tmp_path), "new"])
    assert proc.returncode == -signal.SIGKILL
    (first,) = (p for p in tmp_path.iterdir() if p.name.startswith(".run."))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(RuntimeError, match="x"):
        warnings.simplefilter("always")
        with replacing([(tmp_path / "run", ("a run", ["log.jsonl"]))]):
            recover_set_aside(tmp_path / "run")  # as new_directory and claim_output do
            (tmp_path / "run").mkdir()
            raise RuntimeError("x")
    assert (first / "log.jsonl").read_text() == "first"
    assert (tmp_path / "run" / "log.jsonl").read_text() == "half"  # the killed one's, put back
    assert [str(w.message).split(":")[0] for w in caught] == [str(first)]  # named once


def test_a_lock_file_that_is_a_link_or_a_fifo_is_refused_and_nothing_written(tmp_path):
    # Before: train --resume wrote its pid into the file a linked .lock led to.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name, make in (("link", lambda p: p.symlink_to(victim)), ("fifo", os.mkfifo)):
        run = tmp_path / name
        run.mkdir()
        make(run / ".lock")
        with pytest.raises(MistError, match=r"\.lock: is .*, not mistnet's lock; remove it"):
            with exclusive_lock(run, "mist train"):
                pass
    assert victim.read_text() == "precious"


def _another_group() -> int | None:
    """A group this process may give its files other than its own (root: any)."""
    if os.geteuid() == 0:
        return 2 if os.getegid() != 2 else 3
    return next((g for g in os.getgroups() if g != os.getegid()), None)


def test_the_files_of_an_output_made_beside_a_shared_folder_get_its_group(tmp_path):
    """Before: a dataset (or detect's folder) built beside a group-shared --out and renamed
    into it kept the user's own group on every file, and --overwrite took the group away
    from files given it since: the folder's group could not read them."""
    from mistnet.data.scenes import build_generator, make_scenes
    from mistnet.data.store import write_dataset

    gid = _another_group()
    if gid is None:
        pytest.skip("no other group to share a folder with")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, -1, gid)
    os.chmod(shared, 0o2770)
    arrays = {"train": make_scenes(build_generator("mnist-easy"), "train", range(2), 0)}
    for overwrite in (False, True):
        write_dataset(shared, "mnist-easy", arrays, overwrite=overwrite)
        assert shared.stat().st_gid == gid and shared.stat().st_mode & 0o7777 == 0o2770
        assert {p.name: p.stat().st_gid for p in shared.iterdir()} == {
            name: gid for name in (".mistnet", "manifest.json", "train.npz")
        }


@pytest.mark.parametrize(
    "doc, error, message",
    [
        ({1: "a", "1": "b"}, TypeError, "key 1 is no string (JSON keys are strings)"),
        ({True: 1, "true": 2}, TypeError, "key True is no string"),
        ({"a": [{None: 1}]}, TypeError, "key None is no string"),
        ({"x": 10**5000}, ValueError, "an integer of 16610 bits is too long to write"),
    ],
)
def test_json_text_refuses_keys_that_are_no_strings_and_huge_ints(tmp_path, doc, error, message):
    """Before: ``{1: "a", "1": "b"}`` was written as ``{"1": "a", "1": "b"}``, which mistnet's
    own reader refuses ("key '1' appears twice"), and ``{True: 1, "true": 2}`` likewise; a huge
    int gave Python's "Exceeds the limit (4300 digits)" naming nothing."""
    import re

    with pytest.raises(error, match=re.escape(message)):
        json_text(doc)
    with pytest.raises(error, match=re.escape(message)):
        atomic_write_json(tmp_path / "doc.json", doc)
    assert list(tmp_path.iterdir()) == []


def test_json_text_takes_numpy_floats_and_refuses_deep_nesting():
    """Before: ``np.float32("nan")`` gave "Object of type float32 is not JSON serializable"
    (np.float64's NaN was null), and a list nested 5,000 deep a RecursionError."""
    import numpy as np

    doc = {"a": np.float32("nan"), "b": np.float32(1.5), "c": np.float16(np.inf)}
    assert json_text(doc, indent=None) == '{"a": null, "b": 1.5, "c": null}'
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper than 200 levels"):
        json_text(deep)
    ok: list = []
    for _ in range(150):
        ok = [ok]
    assert json.loads(json_text(ok, indent=None)) == ok


def test_a_waiter_on_a_transient_lock_holds_the_file_that_keeps_others_out(tmp_path):
    # Before: the waiter held the lock of the file its holder had removed on leaving, so a
    # third writer made a new .lock and took it too: two reproductions in one data root.
    import threading

    said, inside, release = [], threading.Event(), threading.Event()

    def waiter():
        with exclusive_lock(tmp_path, "mist reproduce", transient=True, wait=said.append):
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=waiter)
    with exclusive_lock(tmp_path, "mist reproduce", transient=True):
        thread.start()
        for _ in range(300):
            if said:
                break
            time.sleep(0.01)
        assert said and said[0].startswith("waiting for another mist reproduce")
    try:
        assert inside.wait(30)
        with pytest.raises(MistError, match="another mist reproduce is writing to"):
            with exclusive_lock(tmp_path, "mist reproduce"):
                pass
    finally:
        release.set()
        thread.join(30)
    assert not (tmp_path / LOCK).exists()  # each removed the file it made


_KILLED_WHILE_REMOVING_THE_OLD = """
import os, signal, sys
from pathlib import Path
import mistnet.outputs as outputs
import mistnet.setaside as setaside
real, removed = setaside.remove_path, []

def dying(path):
    real(path)
    removed.append(path)
    if len(removed) == 1:  # the old output's first file gone, the rest not yet
        os.kill(os.getpid(), signal.SIGKILL)

setaside.remove_path = dying
own = ("a dataset", [".mistnet", "a.txt", "b.txt"])
with outputs.new_directory(Path(sys.argv[1]) / "ds", "dataset", replace=True, own=own) as tmp:
    (tmp / "a.txt").write_text("new")
"""


def test_an_old_output_half_removed_by_a_kill_is_removed_later_not_offered_back(tmp_path):
    """Before: a kill while the replaced output was being removed left it set aside, marked and
    half removed, kept for ever and offered back ("rename it back to ds to restore it"), which
    then failed for the files it lacked."""
    create_directory(tmp_path / "ds", "dataset")
    for name in ("a.txt", "b.txt"):
        (tmp_path / "ds" / name).write_text("old")
    script = _KILLED_WHILE_REMOVING_THE_OLD
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)])
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "ds" / "a.txt").read_text() == "new"  # the new one was in place
    left = [p.name for p in tmp_path.iterdir() if p.name != "ds"]
    assert len(left) == 1 and left[0].startswith(".ds.") and ".tmp" in left[0]  # no .aside
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing said to be kept or put back
        with new_directory(tmp_path / "ds", "dataset", replace=True, own=("a dataset", ["*"])):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_an_output_killed_while_its_marker_was_written_is_removed_later(tmp_path):
    """Before: a folder holding only the marker's temporary (killed before the marker's rename)
    was no output of the command's to the cleanup, and stayed for ever."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    left = tmp_path / f".ds.{proc.pid}.0123abcd.tmp"
    left.mkdir()
    (left / f"..mistnet.{proc.pid}.4567cdef.tmp").write_text("dataset\n")
    with new_directory(tmp_path / "ds", "dataset"):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_an_atomic_write_of_a_name_too_long_names_the_target_and_leaves_no_folder(tmp_path):
    """Before: the removal of the temporary raised "File name too long" itself, naming the
    temporary, and the folders made for it were left behind; text that is no str raised an
    AttributeError on ``encode``."""
    target = tmp_path / "new" / "sub" / ("m" * 240 + ".json")
    with pytest.raises(OSError, match="File name too long") as caught:
        atomic_write_json(target, {"a": 1})
    assert caught.value.filename == str(target) and list(tmp_path.iterdir()) == []
    for text in (None, b"x"):
        with pytest.raises(TypeError, match="^text must be a str, got "):
            atomic_write_text(tmp_path / "t.txt", text)
    assert list(tmp_path.iterdir()) == []


def test_an_exclusive_write_onto_a_file_says_whether_it_was_there_or_came_meanwhile(tmp_path):
    # Before: a file there before the call was said to be "created by another process".
    (tmp_path / "mine.bin").write_bytes(b"mine")
    with pytest.raises(MistError, match=r"mine.bin: exists; it is left as it is$"):
        atomic_write(tmp_path / "mine.bin", lambda tmp: tmp.write_bytes(b"new"), exclusive=True)

    def another_process_meanwhile(tmp):
        tmp.write_bytes(b"new")
        (tmp_path / "theirs.bin").write_bytes(b"theirs")

    with pytest.raises(MistError, match="theirs.bin: was created by another process meanwhile"):
        atomic_write(tmp_path / "theirs.bin", another_process_meanwhile, exclusive=True)
    assert (tmp_path / "mine.bin").read_bytes() == b"mine"
    assert (tmp_path / "theirs.bin").read_bytes() == b"theirs"
    assert sorted(os.listdir(tmp_path)) == ["mine.bin", "theirs.bin"]


def test_a_lock_left_by_a_killed_holder_goes_with_the_next_call(tmp_path):
    # Before: a .lock a SIGKILL left (its holder's pid in it, no holder) stayed in the run or
    # demo folder for good: a transient lock was removed only by the call that made the file.
    (tmp_path / LOCK).write_text("12345\n")
    with exclusive_lock(tmp_path, "mist train", transient=True):
        assert (tmp_path / LOCK).read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / LOCK).exists()
    (tmp_path / LOCK).write_text("12345\n")
    with exclusive_lock(tmp_path, "mist reproduce"):  # a lasting lock stays, as it was
        pass
    assert (tmp_path / LOCK).exists()


def _draw_figure_into(path, monkeypatch):
    """Draw a figure as ``mist plot`` does (into new_file's temporary); the temporaries made."""
    pytest.importorskip("matplotlib")
    from mistnet import io as mio
    from mistnet.outfiles import new_file
    from mistnet.viz.canvas import new_figure, save_figure

    made, sibling = [], mio.temporary_sibling
    monkeypatch.setattr(mio, "temporary_sibling", lambda p: made.append(sibling(p)) or made[-1])
    fig = new_figure(1, 1, 20)
    with new_file(path, "mist plot") as tmp:
        save_figure(fig, tmp, 20)
    return made


def test_a_figure_is_drawn_once_into_one_temporary_of_its_target(tmp_path, monkeypatch):
    """Before: the figure went to a temporary of new_file's temporary; a kill at its first
    rename left ``..p.png.PID.HEX.tmp.png.PID.HEX.tmp.png``, which no later run removed."""
    made = _draw_figure_into(tmp_path / "p.png", monkeypatch)
    assert [p.name.startswith(".p.png.") for p in made] == [True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


def test_a_temporary_of_a_temporary_left_by_a_killed_plot_is_removed_by_the_next(
    tmp_path, monkeypatch
):
    dead = dead_pid()
    nested = tmp_path / f"..p.png.{dead}.0123abcd.tmp.png.{dead}.89abcdef.tmp.png"
    nested.write_bytes(b"half a figure")
    other = tmp_path / f"..q.png.{dead}.0123abcd.tmp.png.{dead}.89abcdef.tmp.png"
    other.write_bytes(b"another target's")
    _draw_figure_into(tmp_path / "p.png", monkeypatch)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["p.png", other.name])


_OLD_NOT_REMOVED = """
import errno, os, sys, warnings
from pathlib import Path
import mistnet.outputs as outputs
faults = sys.argv[2].split(",")
real_rename, real_unlink, real_rmdir = os.rename, os.unlink, os.rmdir

def eio(path):
    raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))

def rename(src, dst):  # the old output, set aside, to a temporary for removal
    if "rename" in faults and str(src).endswith(".aside") and ".tmp" in str(dst):
        eio(src)
    real_rename(src, dst)

def unlink(path, **kw):
    if "unlink" in faults and Path(path).name == "a.txt" and Path(path).parent.name != "ds":
        eio(path)
    real_unlink(path, **kw)

def rmdir(path, **kw):
    if "rmdir" in faults and Path(path).name.startswith(".ds."):
        eio(path)
    real_rmdir(path, **kw)

os.rename, os.unlink, os.rmdir = rename, unlink, rmdir
warnings.simplefilter("always")
own = ("a dataset", [".mistnet", "a.txt", "b.txt"])
with outputs.new_directory(Path(sys.argv[1]) / "ds", "dataset", replace=True, own=own) as tmp:
    (tmp / "a.txt").write_text("new")
"""


@pytest.mark.parametrize("faults", ["rename", "unlink", "rmdir", "rename,unlink"])
def test_an_old_output_that_cannot_be_removed_is_a_warning_and_removed_later(tmp_path, faults):
    """EIO while removing the replaced output, once the new one is in place: before, exit 2
    naming the old one's file (or, for its folder, nothing said and an empty folder left), and
    where its rename failed it stayed set aside, offered back for ever as a killed command's
    ("rename it back to ds to restore it"). Now one warning naming what is left, which the
    next command writing ds removes."""
    create_directory(tmp_path / "ds", "dataset")
    for name in ("a.txt", "b.txt"):
        (tmp_path / "ds" / name).write_text("old")
    script = _OLD_NOT_REMOVED
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), faults], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ds" / "a.txt").read_text() == "new"
    left = [p for p in tmp_path.iterdir() if p.name != "ds"]
    said = [line for line in proc.stderr.splitlines() if "MistWarning" in line]
    if faults == "rename":  # removed where it lay
        assert left == [] and said == []
    else:
        assert len(left) == 1 and len(said) == 1, proc.stderr
        assert f"{left[0]}: the earlier ds, replaced, could not be removed" in said[0]
        assert "the next command writing ds removes it" in said[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing said to be kept or put back
        with new_directory(tmp_path / "ds", "dataset", replace=True, own=("a dataset", ["*"])):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


@pytest.mark.parametrize("at", ["aside", "in place", "trash"])
def test_a_sigterm_while_an_output_is_swapped_acts_once_the_new_one_is_whole(
    tmp_path, monkeypatch, at
):
    """Before: a SIGTERM as the old output was renamed aside left it there with nothing at
    its place; one as the new output was renamed in failed to put the old one back onto it
    ("Directory not empty", exit 2, kept for ever); one as the old one went to its trash name
    left a half-removed temporary."""
    import signal

    import mistnet.setaside as setaside

    create_directory(tmp_path / "ds", "dataset")
    (tmp_path / "ds" / "a.txt").write_text("old")
    real = {"rename": os.rename, "rename_new": setaside.rename_new}

    def rename(src, dst):  # the old output: aside (first), then to its trash name
        real["rename"](src, dst)
        if (at == "aside" and str(dst).endswith(".aside")) or (
            at == "trash" and str(src).endswith(".aside")
        ):
            os.kill(os.getpid(), signal.SIGTERM)

    def rename_new(src, dst):
        real["rename_new"](src, dst)
        if at == "in place":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(setaside.os, "rename", rename)
    monkeypatch.setattr(setaside, "rename_new", rename_new)
    own = ("a dataset", [".mistnet", "a.txt"])
    with pytest.raises(BaseException, match="SIGTERM"):
        with signals_as_exceptions():
            with new_directory(tmp_path / "ds", "dataset", replace=True, own=own) as tmp:
                (tmp / "a.txt").write_text("new")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ds"]  # no .aside, no .tmp
    assert (tmp_path / "ds" / "a.txt").read_text() == "new"


@pytest.mark.parametrize("how", ["new_directory", "replacing"])
def test_an_output_that_became_a_link_while_it_was_made_is_left_as_it_is(tmp_path, how):
    """Before: ``mist detect --out found`` where ``found`` was moved away and a link to it put
    in its place while detect ran: the link was set aside, the new output renamed in and the
    link removed (the user's link lost, detect's ``.lock`` left in the folder it led to)."""
    create_directory(tmp_path / "ds", "dataset")
    (tmp_path / "ds" / "a.txt").write_text("old")
    own = ("a dataset", [".mistnet", LOCK, "a.txt"])

    def move_and_link():  # what the user did meanwhile
        os.rename(tmp_path / "ds", tmp_path / "real")
        (tmp_path / "ds").symlink_to("real")

    with pytest.raises(MistError, match="ds: became a symbolic link while this command ran"):
        with exclusive_lock(tmp_path / "ds", "mist test", transient=True):
            if how == "new_directory":
                with new_directory(tmp_path / "ds", "dataset", replace=True, own=own) as tmp:
                    (tmp / "a.txt").write_text("new")
                    move_and_link()
            else:
                move_and_link()
                with replacing([(tmp_path / "ds", own)]):
                    pass
    assert sorted(os.listdir(tmp_path)) == ["ds", "real"]  # no .aside, no .tmp
    assert os.readlink(tmp_path / "ds") == "real"
    assert sorted(os.listdir(tmp_path / "real")) == [".mistnet", "a.txt"]  # no .lock
    assert (tmp_path / "real" / "a.txt").read_text() == "old"


_UNDER_A_UMASK = """
import os, sys
os.umask(int(sys.argv[1], 8))
from mistnet.cli import main
sys.exit(main(["data", "make", "mnist-hard", "--out", sys.argv[2], "--n-train", "4",
               "--n-val", "2", "--n-test", "2"]))
"""


def test_a_umask_without_the_owners_bits_leaves_no_unreadable_temporary():
    """Before: under ``umask 777`` the temporary output (and a parent made for it) was made
    mode 000; rmtree could not
    open it, so it stayed, and every later command writing there ended naming it
    (".d.PID.HEX.tmp/.mistnet: Permission denied"). Root reads anything: run as nobody."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    import mistnet

    work = Path(tempfile.mkdtemp(prefix="mist-umask-", dir="/tmp"))
    try:
        work.chmod(0o777)
        user = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
        env = {**os.environ, "PYTHONPATH": str(Path(mistnet.__file__).parents[1])}

        def make(umask: str, out: str = "d") -> subprocess.CompletedProcess:
            argv = [sys.executable, "-c", _UNDER_A_UMASK, umask, out]
            return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, **user)

        try:
            first = make("777")
        except PermissionError as exc:  # the interpreter under a folder only root may enter
            pytest.skip(f"another user cannot run this interpreter: {exc}")
        if "ModuleNotFoundError" in first.stderr or "Permission denied: '/" in first.stderr:
            pytest.skip(f"another user cannot read this checkout: {first.stderr[-200:]}")
        assert first.returncode == 2 and "Permission denied" in first.stderr, first.stderr
        assert os.listdir(work) == []  # no .d.PID.HEX.tmp left
        # Before: the parent made for pl/a/d, mode 000, stayed and refused every later call
        assert make("777", "pl/a/d").returncode == 2 and os.listdir(work) == []
        second = make("022")
        assert second.returncode == 0, second.stderr
        assert os.listdir(work) == ["d"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_huge_file_named_like_a_marker_is_not_read_whole(tmp_path, monkeypatch):
    """Before: a 3 GB ``.mistnet`` (sparse) in a folder given as ``--out`` was read whole to
    find its first line, 47 s and 6.6 GB, before "exists and was not made by"."""
    from pathlib import Path

    from mistnet.markers import marked_files, output_kind

    with (tmp_path / ".mistnet").open("wb") as f:
        f.truncate(3 * 2**30)

    def whole(self, *args, **kwargs):
        raise AssertionError("read whole")

    monkeypatch.setattr(Path, "read_text", whole)
    assert output_kind(tmp_path) is None and marked_files(tmp_path) is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_child_forked_while_a_lock_is_held_does_not_keep_it(tmp_path):
    """Before: a DataLoader worker (forked while `mist train` held its run's lock) kept the
    lock's descriptor: its parent SIGKILLed, the orphan held the lock for seconds and a resume
    at once was refused as "another mist train is writing"."""
    r, w = os.pipe()
    started_r, started_w = os.pipe()
    with exclusive_lock(tmp_path, "mist train"):
        pid = os.fork()
        if pid == 0:  # the worker: says it runs (past the fork), lives until let go
            os.close(w)
            os.write(started_w, b"!")
            os.read(r, 1)
            os._exit(0)
    os.close(r)
    assert os.read(started_r, 1) == b"!"
    try:
        with exclusive_lock(tmp_path, "mist train"):  # the child lives on
            assert (tmp_path / LOCK).read_text() == f"{os.getpid()}\n"
    finally:
        os.close(w)
        os.waitpid(pid, 0)
        os.close(started_r)
        os.close(started_w)


def test_a_second_interrupt_while_a_failed_output_is_taken_back_leaves_nothing(
    tmp_path, monkeypatch
):
    """Before: a second Ctrl-C (or SIGTERM) while a stopped command removed its temporary
    output left it half removed (its marker, removed in directory order, perhaps gone first:
    no later command removed it) and the parents made for it; and one while the parents were
    made left them."""
    import shutil
    from pathlib import Path

    from mistnet.outputs import new_directory

    real = shutil.rmtree

    def interrupted(path, *args, **kwargs):  # the second signal, as the removal starts
        monkeypatch.setattr(shutil, "rmtree", real)
        os.kill(os.getpid(), signal.SIGINT)
        return real(path, *args, **kwargs)

    # Python's own Ctrl-C handler, whatever the runner set (pytest-xdist's workers ignore it)
    runner = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with new_directory(tmp_path / "a" / "b" / "out", "detections") as tmp:
                (tmp / "sub").mkdir()
                for i in range(5):
                    (tmp / "sub" / f"{i}.json").write_text("x")
                monkeypatch.setattr(shutil, "rmtree", interrupted)
                raise KeyboardInterrupt  # the first
    finally:
        signal.signal(signal.SIGINT, runner)
    assert list(tmp_path.iterdir()) == []
    real_mkdir = Path.mkdir

    def mkdir(path, *args, **kwargs):  # a signal once the first parent is made
        real_mkdir(path, *args, **kwargs)
        if path.name == "a":
            raise KeyboardInterrupt

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / "a" / "b" / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []

    def mkdir_not_made(path, *args, **kwargs):  # a signal before the deepest one is made
        if path.name == "b":
            raise KeyboardInterrupt
        real_mkdir(path, *args, **kwargs)

    # Before: its rmdir failed ("No such file") and every folder above it stayed
    monkeypatch.setattr(Path, "mkdir", mkdir_not_made)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / "a" / "b" / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []
