"""What a command may write: an output is created, never adopted. One case per way a command
could write into, move or delete what it did not make; each expects exit status 2, one stderr
line naming the problem, every file, directory and link under the test's directory as it was,
and nothing left behind (TESTING.md, "What a command may write")."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import (
    TINY,
    assert_user_error,
    check_refused,
    entries_under,
    files_under,
    mist,
    subprocess_env,
)
from PIL import Image

from mistnet import cli, pretrained
from mistnet.data import store
from mistnet.data.manifest import read_manifest
from mistnet.demo import CHILDREN
from mistnet.errors import MistError
from mistnet.locks import exclusive_lock
from mistnet.markers import MARKER, output_kind
from mistnet.outputs import claim_output, create_directory, writing_inside

CASES = {}


def case(make):
    """Register ``make(tmp_path, run) -> (argv, fragments of the one stderr line)``."""
    CASES[make.__name__] = make
    return make


def image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def dataset(out):
    """A small dataset written by mistnet (what ``mist data make`` leaves)."""
    n = 2
    arrays = {
        "images": np.zeros((n, 1, 8, 8), np.uint8),
        "boxes": np.tile(np.float32([4, 4, 2, 2]), (n, 1, 1)),  # a box: annotations absent
        "labels": np.zeros((n, 1), np.int64),
        "counts": np.ones(n, np.int64),
    }
    return store.write_dataset(out, "mine", {"train": arrays, "val": arrays, "test": arrays})


def earlier_demo(tmp_path, run):
    """A directory an earlier ``mist demo`` made: its dataset and its run."""
    out = tmp_path / "dm"
    create_directory(out, "demo")
    with writing_inside(out, CHILDREN):  # as mist demo writes them
        dataset(out / "data")
    shutil.copytree(run, out / "run")
    return out


def detections(capsys, run, tmp_path):
    """A directory written by mist detect."""
    out = tmp_path / "d"
    assert mist(capsys, "detect", run, image(tmp_path / "in" / "a.png"), "--out", out)[0] == 0
    return out


# -- data loss ---------------------------------------------------------------------------------


@case
def detect_into_the_folder_of_its_images(tmp_path, run):
    photo = image(tmp_path / "photos" / "x.png")
    argv = ["detect", run, photo, "--out", tmp_path / "photos"]
    return argv, ["photos: exists and was not made by mist detect"]


@case
def detect_an_image_named_config_into_a_run(tmp_path, run):
    argv = ["detect", run, image(tmp_path / "config.png"), "--out", run]
    return argv, ["run: is a mistnet run directory, not mist detect's output"]


@case
def demo_into_a_folder_holding_data_and_run(tmp_path, run):
    image(tmp_path / "mine" / "data" / "photo.png")
    (tmp_path / "mine" / "run").mkdir()
    (tmp_path / "mine" / "run" / "notes.txt").write_text("mine")
    return ["demo", "--out", tmp_path / "mine"], ["mine: exists and was not made by mist demo"]


@case
def train_into_a_folder_with_a_config_and_a_log(tmp_path, run):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text('{"mine": 1}\n')
    (tmp_path / "x" / "log.jsonl").write_text('{"step": 1}\n')
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "x"]
    return argv, ["x: exists and was not made by mist train"]


@case
def resume_a_folder_that_is_no_run(tmp_path, run):
    (tmp_path / "x").mkdir()
    shutil.copy(run / "config.json", tmp_path / "x" / "config.json")  # but no checkpoint
    argv = ["train", "--out", tmp_path / "x", "--resume"]
    return argv, ["x: exists and was not made by mist train"]


@case
def make_data_overwriting_a_folder_that_is_no_dataset(tmp_path, run):
    image(tmp_path / "photos" / "x.png")
    argv = ["data", "make", "mnist-hard", "--out", tmp_path / "photos", "--overwrite"]
    return argv, ["photos: exists and was not made by mist data"]


@case
def make_data_overwriting_a_dataset_that_holds_a_run_and_notes(tmp_path, run):
    ds = dataset(tmp_path / "ds")
    shutil.copytree(run, ds / "run")  # trained into the dataset's folder
    (ds / "notes.txt").write_text("mine")
    argv = ["data", "make", "mnist-easy", "--out", ds, "--overwrite", "--n-train", "2"]
    return [*argv, "--n-val", "1", "--n-test", "1"], ["ds/notes.txt: is not part of a dataset"]


@case
def demo_again_with_its_run_a_link_to_a_run(tmp_path, run):
    out = earlier_demo(tmp_path, run)  # was "--out must give <the run> itself", naming --out
    shutil.move(out / "run", tmp_path / "myrun")
    (out / "run").symlink_to(tmp_path / "myrun")
    return ["demo", "--out", out], ["dm/run: is a symbolic link, not a folder mist demo made"]


@case
def demo_again_over_data_that_holds_the_users_file(tmp_path, run):
    out = earlier_demo(tmp_path, run)
    (out / "data" / "photo.png").write_bytes(b"mine")
    return ["demo", "--out", out], ["data/photo.png: is not part of a dataset"]


@case
def demo_again_with_its_data_replaced_by_a_run(tmp_path, run):
    out = earlier_demo(tmp_path, run)
    shutil.rmtree(out / "data")
    shutil.copytree(run, out / "data")  # was "not mist data's output", a command not run
    return ["demo", "--out", out], ["dm/data: is a mistnet run directory, not mist demo's output"]


@case
def demo_again_over_a_run_that_holds_another_run(tmp_path, run):
    out = earlier_demo(tmp_path, run)
    shutil.copytree(run, out / "run" / "inner")
    return ["demo", "--out", out], ["run/inner: is not part of a run"]


@case
def demo_again_over_a_run_that_holds_a_json_of_the_users_named_like_a_record(tmp_path, run):
    # Before: removed with the run: an eval-*.json was the run's by its name alone.
    out = earlier_demo(tmp_path, run)
    (out / "run" / "eval-notes.json").write_text('{"my": "comparison notes"}\n')
    return ["demo", "--out", out], ["run/eval-notes.json: is not part of a run"]


@case
def demo_again_over_a_run_that_holds_a_tb_folder_of_the_users(tmp_path, run):
    # Before: removed with the run, though no TensorBoard wrote it.
    out = earlier_demo(tmp_path, run)
    (out / "run" / "tb").mkdir()
    (out / "run" / "tb" / "notes.txt").write_text("mine")
    return ["demo", "--out", out], ["run/tb: is not part of a run"]


@case
def demo_again_over_a_metrics_record_of_the_users(tmp_path, run):
    # Before: a regular file of the demo's names was taken for the demo's own and replaced.
    out = earlier_demo(tmp_path, run)
    (out / "metrics.json").write_text('{"my": "notes"}\n')
    return ["demo", "--out", out], ["metrics.json: is a file of another content"]


@case
def demo_again_over_a_figure_of_the_users(tmp_path, run):
    out = earlier_demo(tmp_path, run)
    image(out / "figure.png")  # a PNG, but not one mistnet drew
    return ["demo", "--out", out], ["figure.png: is a file of another content"]


def earlier_reproduction(tmp_path):
    out = tmp_path / "R"
    create_directory(out, "reproduce")
    return out


@case
def reproduce_again_over_a_table_of_the_users(tmp_path, run):
    out = earlier_reproduction(tmp_path)
    (out / "table1.md").write_text("# my notes on table 1\n")
    argv = ["reproduce", "table1", "--budget", "smoke", "--out", out]
    return argv, ["table1.md: is a file of another content, not a file mist reproduce wrote"]


@case
def reproduce_again_over_a_figure_of_the_users(tmp_path, run):
    out = earlier_reproduction(tmp_path)
    image(out / "figures" / "table1-curves.png")
    argv = ["reproduce", "table1", "--budget", "smoke", "--out", out]
    return argv, [
        "figures/table1-curves.png: is a file of another content, not a file mist reproduce"
    ]


@case
def reproduce_again_with_figures_a_link(tmp_path, run):
    out = earlier_reproduction(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (out / "figures").symlink_to(tmp_path / "elsewhere")
    argv = ["reproduce", "table1", "--budget", "smoke", "--out", out]
    return argv, ["figures: is not a folder mist reproduce made"]


def _reproduce_through_a_link(tmp_path, at: str, to=None) -> list:
    """``reproduce`` again into an earlier reproduction whose ``OUT/<at>`` is a symbolic link
    to ``to`` (a folder of the user's): before, each was trained, written or read through."""
    out = earlier_reproduction(tmp_path)
    (out / at).parent.mkdir(parents=True, exist_ok=True)
    if to is None:
        to = tmp_path / "mine"
        to.mkdir()
        (to / "notes.txt").write_text("mine")
    (out / at).symlink_to(to)
    return ["reproduce", "gabor", "--budget", "smoke", "--out", out]


_NOT_ITS_FOLDER = ": is a symbolic link, not a folder mist reproduce made"


@case
def reproduce_again_with_a_table_folder_a_link(tmp_path, run):
    return _reproduce_through_a_link(tmp_path, "gabor"), ["gabor" + _NOT_ITS_FOLDER]


@case
def reproduce_again_with_a_row_folder_a_link(tmp_path, run):
    argv = _reproduce_through_a_link(tmp_path, "gabor/gabor-mist")
    return argv, ["gabor-mist" + _NOT_ITS_FOLDER]


@case
def reproduce_again_with_a_run_folder_a_link(tmp_path, run):
    # was "seed0: ... --out must name a new directory"
    argv = _reproduce_through_a_link(tmp_path, "gabor/gabor-mist/seed0", to=run)
    return argv, ["seed0" + _NOT_ITS_FOLDER]


@case
def reproduce_again_with_its_data_folder_a_link(tmp_path, run):
    return _reproduce_through_a_link(tmp_path, "data"), ["data" + _NOT_ITS_FOLDER]


@case
def reproduce_again_with_a_budget_folder_of_its_data_a_link(tmp_path, run):
    return _reproduce_through_a_link(tmp_path, "data/smoke"), ["data/smoke" + _NOT_ITS_FOLDER]


@case
def reproduce_again_with_a_runs_record_a_link(tmp_path, run):
    (tmp_path / "mine.json").write_text("{}")  # its numbers were read into the table
    at = "gabor/gabor-mist/seed0/eval.json"
    argv = _reproduce_through_a_link(tmp_path, at, to=tmp_path / "mine.json")
    return argv, ["eval.json: is a symbolic link, not a file mist reproduce made"]


@pytest.mark.parametrize("what", ["link", "fifo", "folder"])
def test_a_reproduction_whose_results_json_is_no_file_of_its_own_is_refused_first(
    capsys, tmp_path, what
):
    """Before: a link at OUT/results.json was read through and replaced by a file (the user's
    link gone); a FIFO was replaced unread; a folder was "Is a directory" once every run was
    trained."""
    out = earlier_reproduction(tmp_path)
    if what == "link":
        (tmp_path / "mine.json").write_text("{}")
        (out / "results.json").symlink_to(tmp_path / "mine.json")
    elif what == "fifo":
        os.mkfifo(out / "results.json")
    else:
        (out / "results.json").mkdir()
        (out / "results.json" / "notes.txt").write_text("mine")
    before = entries_under(tmp_path)
    argv = ["reproduce", "gabor", "--budget", "smoke", "--out", out, "--device", "cpu"]
    shown = {"link": "a symbolic link", "fifo": "not a regular file", "folder": "a folder"}[what]
    assert_user_error(mist(capsys, *argv), f"results.json: is {shown}, not a file mist reproduce")
    assert entries_under(tmp_path) == before


@case
def eval_of_a_checkpoint_file(tmp_path, run):
    # Before: "--json RUN/best.safetensors/eval-test.json is inside the run RUN", no --json given
    return ["eval", run / "best.safetensors"], ["best.safetensors is a file; give the run dir"]


@case
def eval_of_a_typo_inside_a_run(tmp_path, run):
    # Before: "--json RUN/rnu/eval-test.json is inside the run RUN; choose a path outside it"
    return ["eval", run / "rnu"], [f"run directory {run / 'rnu'} does not exist"]


@case
def eval_json_of_the_right_name_in_a_subfolder_of_the_run(tmp_path, run):
    (run / "sub").mkdir()  # was "--json may only be eval-*.json", which it was
    argv = ["eval", run, "--json", run / "sub" / "eval-x.json"]
    return argv, ["--json may only be an eval-*.json directly in it"]


@case
def eval_json_over_the_run_config(tmp_path, run):
    argv = ["eval", run, "--json", run / "config.json"]
    return argv, ["config.json: inside the run directory", "only be an eval-*.json directly in it"]


@case
def eval_json_over_a_checkpoint(tmp_path, run):
    argv = ["eval", run, "--json", run / "best.safetensors"]
    return argv, ["best.safetensors: give a file name ending in .json"]


@case
def eval_json_over_a_dataset_manifest(tmp_path, run):
    ds = dataset(tmp_path / "ds")
    argv = ["eval", run, "--data", ds, "--json", ds / "manifest.json"]
    return argv, ["manifest.json: is inside the dataset directory"]


@case
def eval_json_over_a_file_of_the_users(tmp_path, run):
    (tmp_path / "results.json").write_text('{"mine": 1}\n')
    argv = ["eval", run, "--json", tmp_path / "results.json"]
    return argv, ["results.json: exists and is not a metrics file of mist eval"]


@case
def eval_over_a_file_of_the_users_named_like_its_record(tmp_path, run):
    (run / "eval-test.json").write_text('{"mine": 1}\n')
    return ["eval", run], ["eval-test.json: exists and is not a metrics file of mist eval"]


@case
def import_images_into_its_own_folder(tmp_path, run):
    image(tmp_path / "photos" / "x.png")
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "photos" / "ds"]
    return argv, ["photos/ds is inside the image folder", "choose a path outside it"]


@case
def reproduce_into_a_folder_of_the_users(tmp_path, run):
    image(tmp_path / "photos" / "x.png")
    argv = ["reproduce", "table1", "--budget", "smoke", "--out", tmp_path / "photos"]
    return argv, ["photos: exists and was not made by mist reproduce"]


# -- an output inside another output, or inside an input ------------------------------------


@case
def train_into_the_dataset_it_reads(tmp_path, run):
    ds = dataset(tmp_path / "ds")
    argv = ["train", "--preset", "tiny-cpu", "--data", ds, "--out", ds / "run", "--no-progress"]
    return argv, [f"--out {ds}/run is inside the dataset {ds}; choose a path outside it"]


@case
def train_into_an_unmarked_dataset_it_reads(tmp_path, run):
    ds = dataset(tmp_path / "ds")
    (ds / MARKER).unlink()  # written before outputs were marked: known as the input
    argv = ["train", "--preset", "tiny-cpu", "--data", ds, "--out", ds / "run", "--no-progress"]
    return argv, ["ds/run is inside the dataset", "choose a path outside it"]


@case
def detect_into_a_folder_inside_the_run(tmp_path, run):
    argv = ["detect", run, image(tmp_path / "in" / "a.png"), "--out", run / "found"]
    return argv, [f"--out {run}/found is inside the run {run}"]


@case
def make_data_inside_a_run(tmp_path, run):
    argv = ["data", "make", "mnist-easy", "--out", run / "dsub", "--n-train", "2"]
    return [*argv, "--n-val", "1", "--n-test", "1"], ["run/dsub is inside the run"]


@case
def make_data_through_a_missing_folder_and_dotdot(tmp_path, run):
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "nonexist" / ".." / "dsx"]
    argv += ["--n-train", "2", "--n-val", "1", "--n-test", "1"]  # nonexist/ was left behind
    return argv, ["nonexist is no folder, so '..' after it leads nowhere"]


@case
def export_official_to_a_missing_folder_and_dotdot(tmp_path, run):
    argv = ["data", "export-official", dataset(tmp_path / "ds"), tmp_path / "newdir" / ".."]
    return argv, ["newdir is no folder, so '..' after it"]  # "Device or resource busy"


@case
def make_data_inside_a_demo_directory(tmp_path, run):
    out = earlier_demo(tmp_path, run)  # its data/ is the demo's own, for mist demo alone
    argv = ["data", "make", "mnist-easy", "--out", out / "data", "--overwrite", "--n-train", "2"]
    return [*argv, "--n-val", "1", "--n-test", "1"], ["dm/data is inside the demo folder"]


@case
def make_data_through_a_link_into_a_dataset(tmp_path, run):
    ds = dataset(tmp_path / "ds")
    (tmp_path / "link").symlink_to(ds)
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "link" / "x", "--n-train", "2"]
    return [*argv, "--n-val", "1", "--n-test", "1"], ["link/x is inside the dataset", "ds;"]


@case
def reproduce_with_a_dataset_as_the_data_root(tmp_path, run):
    ds = dataset(tmp_path / "ds")
    argv = ["reproduce", "table1", "--budget", "smoke", "--out", tmp_path / "repro"]
    return [*argv, "--data-root", ds], [f"--data-root {ds} is the dataset {ds}"]


@case
def reproduce_with_a_dataset_made_for_another_seed_in_the_data_root(tmp_path, run):
    """Before: refused once --out was made, which was left behind (.mistnet, reproduce.json)."""
    arrays = {
        "images": np.zeros((2, 1, 8, 8), np.float32),
        "boxes": np.tile(np.float32([4, 4, 2, 2]), (2, 1, 1)),
        "labels": np.zeros((2, 1), np.int64),
        "counts": np.ones(2, np.int64),
    }
    made = tmp_path / "root" / "smoke" / "gabor-seed0"
    store.write_dataset(made, "gabor", {"train": arrays}, {"generator": "gabor", "seed": 5})
    argv = ["reproduce", "gabor", "--budget", "smoke", "--out", tmp_path / "repro"]
    return [*argv, "--data-root", tmp_path / "root"], [f"{made} was made with seed = 5, not 0"]


@case
def reproduce_with_the_data_root_inside_a_run(tmp_path, run):
    argv = ["reproduce", "table1", "--budget", "smoke", "--out", tmp_path / "repro"]
    return [*argv, "--data-root", run / "data"], ["run/data is inside the run"]


@case
def reproduce_with_the_data_root_equal_to_out(tmp_path, run):
    """Before: it waited for its own lock forever, leaving R/.lock, R/.mistnet and
    R/reproduce.json."""
    argv = ["reproduce", "table1", "--budget", "smoke", "--out", tmp_path / "R"]
    return [*argv, "--data-root", tmp_path / "R"], ["--data-root", "is --out itself"]


@case
def reproduce_with_the_data_root_inside_out(tmp_path, run):
    """Before: refused once R was made and filled, naming a dataset folder as --out."""
    argv = ["reproduce", "table1", "--budget", "smoke", "--out", tmp_path / "R"]
    return [*argv, "--data-root", tmp_path / "R" / "d"], ["R/d lies inside --out", "R/data may"]


@case
def reproduce_with_out_inside_the_data_root(tmp_path, run):
    """Before: DR/.lock and DR/smoke/{.lock,.mistnet,reproduce.json} left, and "is inside the
    reproduction DR/smoke" naming a dataset as --out."""
    argv = ["reproduce", "table1", "--budget", "smoke", "--out", tmp_path / "DR" / "smoke"]
    return [*argv, "--data-root", tmp_path / "DR"], ["DR/smoke lies inside --data-root"]


@case
def package_over_a_link_to_a_packaged_model(tmp_path, run):
    """Before: with --overwrite the user's link was replaced by a regular file."""
    models, record = tmp_path / "models", tmp_path / "eval.json"
    assert cli.main(["eval", str(run), "--split", "val", "--json", str(record)]) == 0
    assert pretrained.package(run, "v1", "mist train", models, metrics=record)
    (models / "m.safetensors").symlink_to("v1.safetensors")
    argv = ["models", "package", run, "--name", "m", "--command", "mist train", "--out", models]
    argv += ["--metrics", record, "--overwrite"]
    return argv, ["m.safetensors: is a symbolic link; --name must name a file"]


@case
def package_a_model_into_a_dataset(tmp_path, run):
    ds = dataset(tmp_path / "ds")
    argv = ["models", "package", run, "--name", "mine", "--command", "mist train", "--out", ds]
    return argv, [f"--out {ds} is the dataset {ds}; choose a path outside it"]


@case
def package_a_model_into_its_run(tmp_path, run):
    argv = ["models", "package", run, "--name", "mine", "--command", "mist train"]
    return [*argv, "--out", run / "models"], [f"--out {run}/models is inside the run {run}"]


@case
def resume_a_run_that_finished(tmp_path, run):
    argv = ["train", "--out", run, "--resume", "--no-progress"]
    return argv, ["run: the run finished at train.steps = 10", "--set train.steps=N, N > 10"]


# -- escape --------------------------------------------------------------------------------------


@case
def import_images_through_a_link_out_of_the_folder(tmp_path, run):
    image(tmp_path / "photos" / "x.png")
    image(tmp_path / "private" / "secret.png", seed=1)
    (tmp_path / "photos" / "y.png").symlink_to(tmp_path / "private" / "secret.png")
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "ds"]
    return argv, ["photos/y.png: a symbolic link to", "secret.png, outside"]


# -- partial output --------------------------------------------------------------------------


@case
def import_images_into_a_symbolic_link(tmp_path, run):
    image(tmp_path / "photos" / "x.png")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "ds").symlink_to(tmp_path / "elsewhere")
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "ds"]
    return argv, ["ds: is a symbolic link"]


# -- names -------------------------------------------------------------------------------------


@case
def detect_two_images_of_one_name(tmp_path, run):
    a, b = image(tmp_path / "a" / "x.png"), image(tmp_path / "b" / "x.png", seed=1)
    return ["detect", run, a, b, "--out", tmp_path / "d"], ["b/x.png: its output x.json", "a/x.png"]


@case
def detect_two_images_whose_names_differ_in_case_or_unicode_form(tmp_path, run):
    # Before: accepted; on a file system that ignores case (macOS, Windows) cat.json replaced
    # Cat.json, one image's files holding the other's results (and so for café in NFC / NFD)
    a, b = image(tmp_path / "a" / "Cat.png"), image(tmp_path / "a" / "cat.png", seed=1)
    c, d = image(tmp_path / "b" / "caf\u00e9.png"), image(tmp_path / "b" / "cafe\u0301.png")
    e, f = image(tmp_path / "c" / "\u00df.png"), image(tmp_path / "c" / "ss.png")  # two names
    argv = ["detect", run, e, f, a, c, b, d, "--out", tmp_path / "d"]
    return argv, ["cat.png: its output cat.json would overwrite", "(Cat.json) where case and"]


@case
def detect_two_images_named_with_a_final_and_a_plain_sigma(tmp_path, run):
    # Before: accepted (str.lower made the final capital sigma a final small one); one file
    # where case is ignored
    a = image(tmp_path / "e" / "\u0391\u03a31.png")
    b = image(tmp_path / "e" / "\u03b1\u03c31.png", seed=1)
    argv = ["detect", run, a, b, "--out", tmp_path / "d"]
    return argv, ["\u03b1\u03c31.png: its output", "where case and"]


@case
def detect_one_image_given_twice(tmp_path, run):
    # Before: "its output x.json would overwrite x.png's; rename the image" (one file, named
    # twice by overlapping globs: renaming cannot help)
    a = image(tmp_path / "a" / "x.png")
    argv = ["detect", run, a, tmp_path / "a" / "." / "x.png", "--out", tmp_path / "d"]
    return argv, [f"x.png: given twice (as {a}); name each image once"]


@case
def detect_an_image_named_like_the_coco_results(tmp_path, run):
    argv = ["detect", run, image(tmp_path / "coco_results.png"), "--out", tmp_path / "d"]
    return argv, ["coco_results.png: its output coco_results.json would overwrite"]


@case
def detect_an_image_and_its_reconstruction_name(tmp_path, run):
    a, b = image(tmp_path / "x.png"), image(tmp_path / "x-recon.png", seed=1)
    return ["detect", run, a, b, "--out", tmp_path / "d"], ["x-recon.png: its output x-recon.png"]


@case
def plot_into_a_text_file(tmp_path, run):
    (tmp_path / "notes.txt").write_text("mine\n")
    argv = ["plot", run, "--out", tmp_path / "notes.txt"]
    return argv, ["notes.txt", "ending in .png"]


@case
def plot_over_a_png_of_the_users(tmp_path, run):
    argv = ["plot", run, "--out", image(tmp_path / "mypic.png")]
    return argv, ["mypic.png: exists and was not written by mist plot"]


@case
def show_over_an_input_image(tmp_path, run):
    argv = ["show", run, "--n", "1", "--out", image(tmp_path / "imgs" / "b.png")]
    return argv, ["imgs/b.png: exists and was not written by mist show"]


@case
def show_over_a_figure_of_plot(tmp_path, run):
    figure = tmp_path / "curves.png"
    assert cli.main(["plot", str(run), "--out", str(figure)]) == 0
    argv = ["show", run, "--n", "1", "--out", figure]
    return argv, ["curves.png: exists and was not written by mist show"]


@case
def plot_into_its_run(tmp_path, run):
    return ["plot", run, "--out", run / "curves.png"], [f"--out {run}/curves.png is inside the run"]


@case
def plot_into_a_dataset(tmp_path, run):
    ds = dataset(tmp_path / "ds")
    argv = ["plot", run, "--out", ds / "curves.png"]
    return argv, [f"--out {ds}/curves.png is inside the dataset {ds}"]


@case
def data_show_into_its_dataset(tmp_path, run):
    ds = dataset(tmp_path / "ds")
    argv = ["data", "show", ds, "--out", ds / "grid.png"]
    return argv, [f"--out {ds}/grid.png is inside the dataset {ds}"]


@case
def data_show_over_an_image_of_an_export(tmp_path, run):
    off = create_directory(tmp_path / "off", "official")[0]
    argv = ["data", "show", "mnist-easy", "--out", image(off / "images" / "test" / "000000.png")]
    return argv, ["000000.png is inside the official", "off;"]


@case
def data_show_over_a_png_of_the_users(tmp_path, run):
    argv = ["data", "show", "mnist-easy", "--n", "1", "--out", image(tmp_path / "mine.png")]
    return argv, ["mine.png: exists and was not written by mist data show"]


@pytest.mark.parametrize("name", ["x.txt", "imgs", "x.jpg", "x.png/", "x.png/.", "x.png/.."])
def test_data_show_writes_only_a_png(capsys, tmp_path, name):
    # Before: x.png/ and x.png/. (a directory, by the slash) were written as the file x.png.
    (tmp_path / "imgs").mkdir()
    (tmp_path / "x.txt").write_text("mine")
    before = entries_under(tmp_path)
    result = mist(capsys, "data", "show", "mnist-easy", "--n", "1", "--out", f"{tmp_path}/{name}")
    assert_user_error(result, name, "give a file name ending in .png")
    assert entries_under(tmp_path) == before


def test_a_png_name_of_the_suffix_alone_asks_for_a_name_before_it(capsys, tmp_path):
    # Before: ".png" was told to "give a file name ending in .png", which it does.
    result = mist(capsys, "plot", "x", "--out", tmp_path / ".png")
    assert_user_error(result, ".png", "give a file name before .png (as x.png)")
    assert list(tmp_path.iterdir()) == []


def test_a_figure_is_rewritten_only_by_the_command_that_wrote_it(capsys, tmp_path, tiny_run):
    for argv in (
        ["plot", tiny_run],
        ["show", tiny_run, "--n", "1"],
        ["data", "show", "mnist-easy", "--n", "1"],
    ):
        out = tmp_path / f"{argv[0]}.png"
        for _ in range(2):  # the second time over its own figure
            rc, _, err = mist(capsys, *argv, "--out", out)
            assert rc == 0, err
        with Image.open(out) as im:
            im.load()
            assert im.text["mistnet"] == "mist " + " ".join(argv[: 2 if argv[0] == "data" else 1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.png", "plot.png", "show.png"]


@case
def eval_json_over_the_record_of_another_run(tmp_path, run):
    other = tmp_path / "run2"
    shutil.copytree(run, other)
    return ["eval", run, "--json", other / "eval-test.json"], [
        "run2/eval-test.json is inside the run"
    ]


@case
def eval_json_through_a_link_to_its_own_record(tmp_path, run):
    (tmp_path / "ok.json").write_text("{}")  # a link is refused whatever it leads to
    (tmp_path / "lok.json").symlink_to("ok.json")  # was "is not a metrics file of mist eval"
    argv = ["eval", run, "--json", tmp_path / "lok.json"]
    return argv, ["lok.json: is a symbolic link; --json must name a file of its own"]


@case
def eval_whose_own_record_is_a_link(tmp_path, run):
    (tmp_path / "mine.json").write_text("{}")  # was "--json must name ...", no --json given
    (run / "eval-test.json").symlink_to(tmp_path / "mine.json")
    return ["eval", run], ["eval-test.json: is a symbolic link; move it away, or give --json"]


@case
def resume_a_run_through_a_link(tmp_path, run):
    (tmp_path / "link").symlink_to(run)  # was "--out must name a new directory"
    argv = ["train", "--out", tmp_path / "link", "--resume", "--set", "train.steps=20"]
    return argv, ["link: is a symbolic link; --out must give", f"{run.resolve()} itself"]


@case
def data_make_overwrite_through_a_link_to_its_dataset(tmp_path, run):
    made = dataset(tmp_path / "D")  # was "--out must name a new directory", though D may be
    (tmp_path / "Dl").symlink_to(made)
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "Dl", "--overwrite"]
    return argv + ["--n-train", 1], ["Dl: is a symbolic link; --out must give", f"{made} itself"]


@case
def data_make_without_overwrite_through_a_link_to_its_dataset(tmp_path, run):
    made = dataset(tmp_path / "D")  # without --overwrite D cannot be given either
    (tmp_path / "Dl").symlink_to(made)
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "Dl", "--n-train", 1]
    return argv, ["Dl: is a symbolic link; --out must name a new directory"]


@case
def import_images_through_a_link_to_a_dataset(tmp_path, run):
    made = dataset(tmp_path / "D")  # import-images never replaces a dataset
    (tmp_path / "Dl").symlink_to(made)
    image(tmp_path / "photos" / "a.png")
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "Dl"]
    return argv, ["Dl: is a symbolic link; --out must name a new directory"]


@case
def train_through_a_link_to_a_file(tmp_path, run):
    (tmp_path / "file").write_text("mine")  # was "--out must give .../file itself"
    (tmp_path / "link").symlink_to(tmp_path / "file")
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "link", "--no-progress"]
    return argv, ["link: is a symbolic link; --out must name a new directory"]


@case
def eval_json_into_an_export_folder(tmp_path, run):
    off = create_directory(tmp_path / "off", "official")[0]
    return ["eval", run, "--json", off / "x.json"], [f"--json {off}/x.json is inside the official"]


def test_a_moved_run_is_evaluated_again_over_its_own_record(capsys, tmp_path, tiny_run):
    # Before: "rm2/eval-test.json: exists and is not a metrics file of mist eval of rm2".
    first = tmp_path / "rm1"
    shutil.copytree(tiny_run, first)
    assert mist(capsys, "eval", first, "--threads", "1")[0] == 0
    moved = first.rename(tmp_path / "rm2")
    assert mist(capsys, "eval", moved, "--threads", "1")[0] == 0
    assert json.loads((moved / "eval-test.json").read_text())["run"] == str(moved)


def test_eval_json_replaces_only_a_record_of_the_same_run(capsys, tmp_path, tiny_run):
    other = tmp_path / "run2"
    shutil.copytree(tiny_run, other)
    out = tmp_path / "m.json"
    assert mist(capsys, "eval", other, "--json", out, "--threads", "1")[0] == 0
    before = entries_under(tmp_path)
    result = mist(capsys, "eval", tiny_run, "--json", out, "--threads", "1")
    assert_user_error(result, "m.json: exists and is not a metrics file of mist eval of")
    assert entries_under(tmp_path) == before
    assert mist(capsys, "eval", other, "--json", out, "--threads", "1")[0] == 0
    # Before: once run2 was moved (or deleted), its record was taken for any run's and replaced
    # (run2 is a copy of tiny_run: its checksum stands for other weights here)
    archived = other.rename(tmp_path / "run2-archived")
    record = json.loads(out.read_text())
    out.write_text(json.dumps({**record, "checkpoint_digest": "sha256:" + "0" * 64}))
    before = entries_under(tmp_path)
    result = mist(capsys, "eval", tiny_run, "--json", out, "--threads", "1")
    assert_user_error(result, "m.json: exists and is not a metrics file of mist eval of")
    assert entries_under(tmp_path) == before
    assert mist(capsys, "eval", archived.rename(tmp_path / "run2"), "--json", out)[0] == 0
    # Before: a deleted run's record was replaced by any run of its folder name (exp1/run2);
    # now only by the same weights (a moved run), told by the checkpoint's checksum
    (tmp_path / "exp1").mkdir()
    namesake = shutil.copytree(tiny_run, tmp_path / "exp1" / "run2")
    shutil.rmtree(tmp_path / "run2")
    record = json.loads(out.read_text())
    out.write_text(json.dumps({**record, "checkpoint_digest": "sha256:" + "0" * 64}))
    before = entries_under(tmp_path)
    result = mist(capsys, "eval", namesake, "--json", out, "--threads", "1")
    assert_user_error(result, "m.json: exists and is not a metrics file of mist eval of")
    assert f"(it is the record of {tmp_path / 'run2'}, no longer there, of other" in result[2]
    assert entries_under(tmp_path) == before
    out.write_text(json.dumps(record))  # its own checksum: the same weights, moved
    assert mist(capsys, "eval", namesake, "--json", out, "--threads", "1")[0] == 0


def test_eval_json_names_whose_record_it_refuses(capsys, tmp_path, tiny_run):
    """Before: a record whose ``run_dir`` was no text (5, a list) ended in "internal error
    (TypeError: expected str, bytes or os.PathLike object, not int)", and a pretrained model's
    record was "of mnist-hard-classifier, no longer there, of other or unknown weights"."""
    out = tmp_path / "m.json"
    assert mist(capsys, "eval", tiny_run, "--json", out, "--threads", "1")[0] == 0
    record = json.loads(out.read_text())
    for run_dir, whose in [
        (5, ""),
        ([str(tiny_run)], ""),
        (None, " (it is the record of the pretrained model mnist-hard-classifier)"),
    ]:
        out.write_text(json.dumps({**record, "run": "mnist-hard-classifier", "run_dir": run_dir}))
        before = entries_under(tmp_path)
        result = mist(capsys, "eval", tiny_run, "--json", out, "--threads", "1")
        assert_user_error(
            result,
            f"m.json: exists and is not a metrics file of mist eval of the run {tiny_run}{whose}; ",
        )
        assert entries_under(tmp_path) == before


@case
def train_more_detections_than_pixels(tmp_path, run):
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "x", "--no-progress"]
    argv += [a for o in [*TINY, "model.k=100000"] for a in ("--set", o)]
    return argv, ["80x80 images, too few pixels for model.k = 100000", "at most 6400"]


def a_file(tmp_path):
    (tmp_path / "emptyfile").touch()
    return tmp_path / "emptyfile"


@case
def train_inside_a_file(tmp_path, run):
    argv = ["train", "--preset", "tiny-cpu", "--out", a_file(tmp_path) / "x"]
    return argv, [f"{tmp_path / 'emptyfile'} is not a directory; nothing can be written"]


@case
def make_data_inside_a_file(tmp_path, run):
    argv = ["data", "make", "mnist-hard", "--out", a_file(tmp_path) / "x", "--n-train", "2"]
    return argv, ["emptyfile is not a directory"]  # was "emptyfile: File exists"


@case
def eval_json_inside_a_file(tmp_path, run):
    return ["eval", run, "--json", a_file(tmp_path) / "m.json"], ["emptyfile is not a directory"]


@case
def plot_inside_a_file(tmp_path, run):
    return ["plot", run, "--out", a_file(tmp_path) / "p.png"], ["emptyfile is not a directory"]


@case
def detect_inside_a_dangling_link(tmp_path, run):
    (tmp_path / "dl").symlink_to("nowhere")
    argv = ["detect", run, image(tmp_path / "a.png"), "--out", tmp_path / "dl" / "x"]
    return argv, [f"{tmp_path / 'dl'} is a symbolic link to nowhere"]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--preset", "tiny-cpu", "--out", "."],
        ["data", "make", "mnist-hard", "--out", "."],
        ["data", "import-images", "imgs", "--out", "."],
        ["data", "export-official", "ds", "."],
        ["detect", "run", "imgs/a.png", "--out", "."],
        ["demo", "--out", "."],
        ["data", "make", "mnist-hard", "--out", "sub/.."],
    ],
)
def test_an_out_naming_the_working_directory_is_refused(
    capsys, tmp_path, tiny_run, monkeypatch, argv
):
    # Before: an internal error, "PosixPath('.') has an empty name" (train: once the empty
    # folder was kept, a run written into the working directory).
    shutil.copytree(tiny_run, tmp_path / "run")
    image(tmp_path / "imgs" / "a.png")
    dataset(tmp_path / "ds")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    before = entries_under(tmp_path)
    option = "--out" if "--out" in argv else "OUT"  # export-official's OUT is positional
    assert_user_error(mist(capsys, *argv), f"{option} {argv[-1]} names the working directory")
    assert entries_under(tmp_path) == before


def test_the_empty_working_directory_however_spelled_is_refused(capsys, tmp_path, monkeypatch):
    # Before: --out ../here (or its absolute path) replaced the empty working directory, the
    # shell left in a deleted one.
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    inode = here.stat().st_ino
    for out in ("../here", str(here)):
        result = mist(capsys, "data", "make", "mnist-easy", "--out", out, "--n-train", 1)
        assert_user_error(result, f"--out {out} names the working directory")
    assert here.stat().st_ino == inode and not any(here.iterdir())


def test_an_empty_out_folder_keeps_its_permissions(capsys, tmp_path):
    # Before: the new output took the umask's mode, 700 became 755 (train, demo and reproduce
    # write into the folder in place and always kept it).
    for n in range(3):
        image(tmp_path / "imgs" / f"{n}.png", seed=n)
    sizes = ("--n-train", 1, "--n-val", 1, "--n-test", 1)
    for name in ("made", "imported"):
        (tmp_path / name).mkdir(mode=0o700)
    assert mist(capsys, "data", "make", "mnist-easy", "--out", tmp_path / "made", *sizes)[0] == 0
    argv = ["data", "import-images", tmp_path / "imgs", "--out", tmp_path / "imported"]
    assert mist(capsys, *argv)[0] == 0
    for name in ("made", "imported"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o700
        assert (tmp_path / name / "manifest.json").is_file()
    # Before: with --overwrite the empty folder got the .lock of a dataset being replaced, and
    # was then refused as the user's once every scene was made (a kill left the lock for ever)
    (tmp_path / "over").mkdir(mode=0o700)
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "over", "--overwrite", *sizes]
    assert mist(capsys, *argv)[0] == 0
    assert stat.S_IMODE((tmp_path / "over").stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "over").iterdir()) == sorted(
        p.name for p in (tmp_path / "made").iterdir()
    )


def test_an_empty_out_folder_this_user_cannot_write_is_refused(capsys, tmp_path, monkeypatch):
    """Before (as a user who cannot write into it, in a folder it can write): ``data make
    --out E`` replaced the empty folder E by one of its own, owner and group lost, where
    ``train`` said "Permission denied". (Root writes anywhere: the permission is stood in for;
    checked by hand as user 65534.)"""
    out = tmp_path / "E"
    out.mkdir()
    access = os.access
    # unwritable, still enterable and readable (a folder of mode 555)
    monkeypatch.setattr(
        os, "access", lambda p, mode: not (Path(p) == out and mode & os.W_OK) and access(p, mode)
    )
    before = entries_under(tmp_path)
    sizes = ("--n-train", 1, "--n-val", 1, "--n-test", 1)
    result = mist(capsys, "data", "make", "mnist-easy", "--out", out, *sizes)
    assert_user_error(result, f"{out}: this user cannot write into it; choose another --out")
    assert entries_under(tmp_path) == before


@pytest.mark.parametrize("command", ["data make", "import-images"])
def test_an_empty_out_folder_of_another_user_in_a_sticky_folder_is_refused_first(
    capsys, tmp_path, monkeypatch, command
):
    """Before (as user 65534, ``--out /tmp/E`` an empty folder of mode 777 another user made in
    the sticky /tmp): the whole dataset was made, then the rename onto E failed, "Operation
    not permitted". (Root replaces anything: the user is stood in for by ``os.geteuid``;
    checked by hand as user 65534.)"""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    out = shared / "E"
    out.mkdir(mode=0o777)
    for n in range(3):
        image(tmp_path / "imgs" / f"{n}.png", seed=n)
    before = entries_under(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    if command == "data make":
        argv = ["data", "make", "mnist-easy", "--out", out, "--n-train", 1, "--n-val", 1]
        argv += ["--n-test", 1]
    else:
        argv = ["data", "import-images", tmp_path / "imgs", "--out", out]
    result = mist(capsys, *argv)
    assert_user_error(result, f"{out}: an empty folder of another user in {shared}", "sticky")
    assert entries_under(tmp_path) == before
    monkeypatch.undo()  # the folder's own user (root here) may
    assert mist(capsys, *argv)[0] == 0 and (out / "manifest.json").is_file()
    if command == "data make":  # Before: made again, then "Operation not permitted" at the end
        before = entries_under(tmp_path)
        monkeypatch.setattr(os, "geteuid", lambda: 65534)
        result = mist(capsys, *argv, "--overwrite", "--seed", 1)
        assert_user_error(result, f"{out}: an earlier output of another user in {shared}")
        assert entries_under(tmp_path) == before


def test_an_earlier_output_this_user_cannot_write_is_refused_first(capsys, tmp_path, monkeypatch):
    """Before (as a user who cannot write into an earlier dataset of another user's, in a
    folder everyone may write): ``data make --overwrite`` said "D/.lock: Permission denied".
    (Root writes anywhere: the permission is stood in for; checked by hand as user 65534.)"""
    sizes = ["--n-train", 1, "--n-val", 1, "--n-test", 1]
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "D", *sizes]
    assert mist(capsys, *argv)[0] == 0
    before = entries_under(tmp_path)
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m: not (Path(p) == tmp_path / "D" and m & os.W_OK) and access(p, m)
    )
    result = mist(capsys, *argv, "--overwrite", "--seed", 1)
    assert_user_error(result, f"{tmp_path / 'D'}: an earlier output this user cannot write into")
    assert entries_under(tmp_path) == before


def test_an_output_written_again_keeps_its_permissions(capsys, tmp_path, tiny_run):
    """Before: a dataset made again with --overwrite and an eval record written again took the
    umask's mode (a private 700 / 600 output became readable by all)."""
    sizes = ("--n-train", 1, "--n-val", 1, "--n-test", 1)
    made = tmp_path / "made"
    assert mist(capsys, "data", "make", "mnist-easy", "--out", made, *sizes)[0] == 0
    made.chmod(0o700)
    argv = ["data", "make", "mnist-easy", "--out", made, *sizes, "--seed", 1, "--overwrite"]
    assert mist(capsys, *argv)[0] == 0
    record = tmp_path / "m.json"
    assert mist(capsys, "eval", tiny_run, "--json", record)[0] == 0
    record.chmod(0o600)
    assert mist(capsys, "eval", tiny_run, "--json", record, "--split", "val")[0] == 0
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert json.loads((made / "manifest.json").read_text())["seed"] == 1
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert json.loads(record.read_text())["split"] == "val"


def test_an_out_above_the_working_directory_is_refused(capsys, tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for out in ("..", "/"):
        assert_user_error(
            mist(capsys, "data", "make", "mnist-hard", "--out", out),
            f"--out {out} names a folder above the working directory; give a new directory",
        )
    assert entries_under(tmp_path) == {"sub": "<dir>"}


@pytest.mark.parametrize("name", CASES)
def test_a_command_never_writes_what_it_did_not_create(capsys, tmp_path, tiny_run, name):
    check_refused(capsys, tmp_path, tiny_run, CASES[name], snapshot=entries_under)


def test_detect_refuses_an_own_directory_that_holds_its_input_or_a_folder_in_a_names_place(
    capsys, tmp_path, tiny_run
):
    out = detections(capsys, tiny_run, tmp_path)
    before = entries_under(tmp_path)
    assert_user_error(
        mist(capsys, "detect", tiny_run, out / "a.png", "--out", out),
        "holds the input image",
    )
    assert entries_under(tmp_path) == before
    (out / "detections.csv").unlink()
    (out / "detections.csv").mkdir()  # the user's folder, where the table goes
    (out / "detections.csv" / "mine.txt").write_text("mine")
    before = entries_under(tmp_path)
    result = mist(capsys, "detect", tiny_run, image(tmp_path / "in" / "b.png"), "--out", out)
    assert_user_error(result, "detections.csv: is not part of a detections folder")
    before["in/b.png"] = (tmp_path / "in" / "b.png").read_bytes()
    assert entries_under(tmp_path) == before  # not one file moved


def test_detect_again_into_its_output_leaves_only_this_calls_files(capsys, tmp_path, tiny_run):
    out = detections(capsys, tiny_run, tmp_path)  # a.json, a.png, the tables
    assert (out / "a.json").is_file()
    b = image(tmp_path / "in" / "b.png", seed=1)
    assert mist(capsys, "detect", tiny_run, b, "--out", out, "--format", "csv")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b.png", "detections.csv"]
    (out / "notes.txt").write_text("mine")
    before = entries_under(tmp_path)
    result = mist(capsys, "detect", tiny_run, b, "--out", out)
    assert_user_error(result, "notes.txt: is not part of a detections folder", "move it away")
    assert entries_under(tmp_path) == before


@pytest.mark.parametrize("name", ["notes.png", "mine.json"])
def test_detect_again_keeps_a_png_or_json_of_the_users_in_its_output(
    capsys, tmp_path, tiny_run, name
):
    out = detections(capsys, tiny_run, tmp_path)
    if name == "notes.png":
        image(out / name)
    else:
        (out / name).write_text('{"a": 1}')
    before = files_under(tmp_path)
    result = mist(capsys, "detect", tiny_run, tmp_path / "in" / "a.png", "--out", out)
    assert_user_error(result, f"{name}: is not part of a detections folder", "choose another")
    assert files_under(tmp_path) == before  # the user's file and detect's, byte for byte


def test_detect_again_into_an_earlier_versions_output_replaces_only_its_own_files(
    capsys, tmp_path, tiny_run
):
    out = detections(capsys, tiny_run, tmp_path)
    (out / MARKER).write_text("detections\n")  # an earlier mistnet listed no files
    b = image(tmp_path / "in" / "b.png", seed=1)
    assert mist(capsys, "detect", tiny_run, b, "--out", out)[0] == 0
    assert not (out / "a.json").exists() and (out / "b.json").is_file()
    (out / MARKER).write_text("detections\n")
    image(out / "x.png")  # a figure of the user's, no detect JSON names it
    before = files_under(tmp_path)
    result = mist(capsys, "detect", tiny_run, b, "--out", out)
    assert_user_error(result, "x.png: is not part of a detections folder")
    assert files_under(tmp_path) == before


def test_a_marker_edited_to_list_a_file_of_the_users_cannot_get_it_removed(
    capsys, tmp_path, tiny_run
):
    """Before: detect removed whatever the marker listed; a file is detect's only when it is
    also of detect's shapes (a record, its tables, an image a record names)."""
    out = detections(capsys, tiny_run, tmp_path)
    (out / "thesis.txt").write_text("mine")
    (out / "notes.json").write_text('{"a": 1}')
    listed = json.loads((out / MARKER).read_text().split("\n")[1])
    (out / MARKER).write_text("detections\n" + json.dumps([*listed, "thesis.txt", "notes.json"]))
    before = files_under(tmp_path)
    result = mist(capsys, "detect", tiny_run, tmp_path / "in" / "a.png", "--out", out)
    assert_user_error(result, "is not part of a detections folder")
    assert files_under(tmp_path) == before


def test_a_second_detect_into_one_out_waits_for_none(capsys, tmp_path, tiny_run):
    out = detections(capsys, tiny_run, tmp_path)
    with exclusive_lock(out, "mist detect"):  # as a detect still writing it
        before = entries_under(tmp_path)
        result = mist(capsys, "detect", tiny_run, tmp_path / "in" / "a.png", "--out", out)
        assert_user_error(result, f"another mist detect is writing to {out}")
        assert entries_under(tmp_path) == before


def test_a_second_data_make_overwrite_refuses_while_the_first_replaces_the_dataset(
    capsys, tmp_path
):
    # Before: both said "wrote", and the one that finished last was kept without a word.
    sizes = ("--n-train", 1, "--n-val", 1, "--n-test", 1)
    out = tmp_path / "ds"
    assert mist(capsys, "data", "make", "mnist-easy", "--out", out, *sizes)[0] == 0
    with exclusive_lock(out, "mist data make"):  # as a make --overwrite still making it
        before = files_under(tmp_path)
        result = mist(capsys, "data", "make", "mnist-easy", "--out", out, "--overwrite", *sizes)
        assert_user_error(result, f"another mist data make is writing to {out}")
        assert files_under(tmp_path) == before
    (out / ".lock").unlink()  # what the lock above left; a make --overwrite leaves none
    result = mist(capsys, "data", "make", "mnist-easy", "--out", out, "--overwrite", *sizes)
    assert result[0] == 0 and sorted(p.name for p in out.iterdir()) == [
        ".mistnet", "manifest.json", "test.npz", "train.npz", "val.npz"
    ]  # fmt: skip


def test_two_imports_into_one_out_one_wins_and_the_other_leaves_it_intact(
    capsys, tmp_path, monkeypatch
):
    for n in range(3):
        image(tmp_path / "photos" / f"{n}.png", seed=n)
    out = tmp_path / "ds"
    argv = ["data", "import-images", tmp_path / "photos", "--out", out, "--val", "0"]
    real_save, winner = store._save_npz, {}

    def the_other_finishes_first(path, arrays, compress):
        if not winner:  # the first import is writing: a second one runs to its end meanwhile
            winner["rc"] = None
            winner["rc"] = mist(capsys, *argv, "--seed", "1")[0]
            winner["files"] = files_under(out)
        real_save(path, arrays, compress)

    monkeypatch.setattr(store, "_save_npz", the_other_finishes_first)
    result = mist(capsys, *argv)
    assert winner["rc"] == 0 and json.loads(winner["files"]["manifest.json"])["seed"] == 1
    assert_user_error(result, "ds: was created by another process meanwhile")
    assert files_under(out) == winner["files"]  # the winner's dataset, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "photos"]  # no temporary left


def test_a_file_put_into_a_dataset_while_it_is_replaced_is_kept_with_it(
    capsys, tmp_path, monkeypatch
):
    ds = dataset(tmp_path / "ds")
    before = files_under(tmp_path)
    real_save = store._save_npz

    def the_user_adds_a_file(path, arrays, compress):  # after the check, before the swap
        (ds / "notes.txt").write_text("mine")
        real_save(path, arrays, compress)

    monkeypatch.setattr(store, "_save_npz", the_user_adds_a_file)
    argv = ["data", "make", "mnist-easy", "--out", ds, "--overwrite", "--n-train", "2"]
    result = mist(capsys, *argv, "--n-val", "1", "--n-test", "1")
    assert_user_error(result, "ds/notes.txt: is not part of a dataset", "not replaced")
    assert files_under(tmp_path) == {**before, "ds/notes.txt": b"mine"}  # no temporary left


def test_sigterm_before_the_first_checkpoint_leaves_nothing(tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "mistnet", "train", "--preset", "tiny-cpu", "--out", str(run)]
    argv += ["--device", "cpu", "--no-progress", "--threads", "1"]
    never = ["train.steps=100000", "train.ckpt_every=100000", "train.val_every=100000"]
    argv += [a for o in [*TINY, *never, "train.log_every=1"] for a in ("--set", o)]
    proc = subprocess.Popen(argv, env=subprocess_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "log.jsonl").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines() == ["mist train: stopped by SIGTERM"]
    assert list(tmp_path.iterdir()) == []  # no .lock, config.json, log.jsonl nor directory


def test_a_run_of_an_earlier_version_resumes_and_gets_its_marker(capsys, tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / MARKER).unlink()  # written before runs were marked
    argv = ["train", "--out", run, "--resume", "--no-progress", "--set", "train.steps=11"]
    rc, _, err = mist(capsys, *argv)  # a finished run trains further only with more steps
    assert rc == 0, err
    assert output_kind(run) == "run"
    assert json.loads((run / "summary.json").read_text())["steps"] == 11
    assert "ignoring" not in err


def test_the_run_of_an_earlier_demo_resumes_and_the_rest_of_the_demo_is_left_alone(
    capsys, tmp_path, tiny_run
):
    out = earlier_demo(tmp_path, tiny_run)
    before = entries_under(tmp_path)
    argv = ["train", "--out", out / "run", "--resume", "--no-progress", "--set", "train.steps=11"]
    rc, _, err = mist(capsys, *argv)  # the run lies inside the demo, which made it: accepted
    assert rc == 0, err
    assert json.loads((out / "run" / "summary.json").read_text())["steps"] == 11

    def outside_the_run(entries):
        return {k: v for k, v in entries.items() if k != "dm/run" and not k.startswith("dm/run/")}

    assert outside_the_run(entries_under(tmp_path)) == outside_the_run(before)


def test_the_csv_of_detect_reads_back_as_the_boxes_of_import_images(
    capsys, tmp_path, tiny_run, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # detect's CSV names the images as given: src/a.png
    for n in range(2):
        image(tmp_path / "src" / f"{n}.png", seed=n)
    assert mist(capsys, "detect", tiny_run, "src/0.png", "src/1.png", "--out", "d")[0] == 0
    rows = (tmp_path / "d" / "detections.csv").read_text().splitlines()[1:]
    argv = ["data", "import-images", "src", "--out", "ds", "--boxes", "d/detections.csv"]
    rc, _, err = mist(capsys, *argv, "--val", "0", "--test", "0")
    assert rc == 0, err
    arrays, meta = store.load_split(tmp_path / "ds", "train")
    got = []
    for name, boxes, count in zip(
        meta["file_names"]["train"], arrays["boxes"], arrays["counts"], strict=True
    ):
        got += [(f"src/{name}", *(round(float(v), 3) for v in b)) for b in boxes[:count]]

    def clipped(centre, side):  # a box over the 48-pixel image's edge is clipped on import
        lo, hi = max(centre - side / 2, -0.5), min(centre + side / 2, 47.5)
        return round((lo + hi) / 2, 3), round(hi - lo, 3)

    want = []
    for row in rows:
        name, x, y, side = row.split(",")[0], *(float(v) for v in row.split(",")[1:4])
        (cx, w), (cy, h) = clipped(x, side), clipped(y, side)
        want.append((name, cx, cy, w, h))
    assert sorted(got) == sorted(want)


def test_a_demo_directory_is_reused_only_with_a_dataset_and_a_run_in_it(tmp_path, tiny_run):
    from mistnet.demo import claim_demo
    from mistnet.errors import MistError
    from mistnet.outputs import create_directory

    out = tmp_path / "demo"
    assert claim_demo(out) == [out] and output_kind(out) == "demo"
    shutil.copytree(tiny_run, out / "run")
    assert claim_demo(out) == [] and (out / "run").is_dir()  # replaced once a new one is made
    shutil.rmtree(out / "run")
    (out / "run").mkdir()
    (out / "run" / "notes.txt").write_text("mine")
    with pytest.raises(MistError, match="run: exists and was not made by mist demo"):
        claim_demo(out)
    create_directory(tmp_path / "other", "detections")
    with pytest.raises(MistError, match="is a mistnet detections directory"):
        claim_demo(tmp_path / "other")
    assert (out / "run" / "notes.txt").read_text() == "mine"


def test_eval_rewrites_its_own_records(capsys, tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for _ in range(2):  # the second time over the records of the first
        for argv in (["eval", run], ["eval", run, "--json", tmp_path / "m.json"]):
            rc, _, err = mist(capsys, *argv, "--threads", "1")
            assert rc == 0, err
    assert json.loads((run / "eval-test.json").read_text())["split"] == "test"
    assert (tmp_path / "m.json").read_bytes() == (run / "eval-test.json").read_bytes()


def test_overwrite_replaces_a_dataset_of_an_earlier_version(capsys, tmp_path):
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "ds", "--n-train", "2"]
    argv += ["--n-val", "1", "--n-test", "1"]
    assert mist(capsys, *argv)[0] == 0
    (tmp_path / "ds" / MARKER).unlink()  # written before datasets were marked
    assert mist(capsys, *argv, "--seed", "3", "--overwrite")[0] == 0
    assert read_manifest(tmp_path / "ds")["seed"] == 3 and output_kind(tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_eval_json_refuses_the_record_of_another_run_of_the_same_relative_name(
    capsys, tmp_path, tiny_run, monkeypatch
):
    """Before: ``(cd A && mist eval run --json ../m.json)``, then the same from B replaced A's
    run's record with B's: the record's ``run`` is "run" both times, compared as text."""
    for side in ("A", "B"):
        shutil.copytree(tiny_run, tmp_path / side / "run")
    monkeypatch.chdir(tmp_path / "A")
    assert mist(capsys, "eval", "run", "--json", "../m.json", "--threads", "1")[0] == 0
    assert json.loads((tmp_path / "m.json").read_text())["run_dir"] == str(tmp_path / "A" / "run")
    before = entries_under(tmp_path)
    monkeypatch.chdir(tmp_path / "B")
    result = mist(capsys, "eval", "run", "--json", "../m.json", "--threads", "1")
    assert_user_error(
        result, "m.json: exists and is not a metrics file of mist eval of the run run"
    )
    assert entries_under(tmp_path) == before


def test_a_new_output_named_with_a_control_character_is_refused(capsys, tiny_run, tmp_path):
    """Before: ``show``, ``data show``, ``eval --json``, ``detect --out``, ``models package
    --out`` and ``train --out`` wrote a file or folder with a newline or an escape in its name
    (``mist plot`` alone refused one), which every line naming it then broke."""
    image = tmp_path / "scene.png"
    Image.new("L", (48, 48)).save(image)
    before = entries_under(tmp_path)
    for argv in [
        ("show", tiny_run, "--out", tmp_path / "a\nb.png"),
        ("eval", tiny_run, "--json", tmp_path / "e\nj.json"),
        ("detect", "--model", "mnist-hard-classifier", image, "--out", tmp_path / "f\x1bg"),
        (
            "models",
            "package",
            tiny_run,
            "--name",
            "m",
            "--command",
            "c",
            "--out",
            tmp_path / "M\nN",
        ),
        ("train", "--preset", "tiny-cpu", "--out", tmp_path / "r\n"),
    ]:
        result = mist(capsys, *argv)
        assert_user_error(result, "holds the control character", "give a name of printable")
    assert entries_under(tmp_path) == before
    # an output made so by an earlier version is the command's own to replace (it was refused)
    detect = ["detect", "--model", "mnist-hard-classifier", image, "--k", "2", "--out"]
    assert mist(capsys, *detect, tmp_path / "found")[0] == 0
    (tmp_path / "found").rename(tmp_path / "f\tg")
    assert mist(capsys, *detect, tmp_path / "f\tg")[0] == 0
    (tmp_path / "u\t").mkdir()  # and a folder of the user's of such a name is still refused
    (tmp_path / "u\t" / "notes.txt").write_text("mine")
    assert_user_error(mist(capsys, *detect, tmp_path / "u\t"), "exists and was not made by")


def test_an_earlier_output_this_user_cannot_read_is_said_so(
    tmp_path, capsys, monkeypatch, tiny_run
):
    """Before: a command's own earlier figure, metrics record or demo file that this user could
    not read was called the user's ("exists and was not written by mist data show", "is not
    a metrics file of mist eval", "a file of another content"), and a dataset folder it could
    not enter "was not made by mistnet". (Root reads anything: the permission is stood in for.)"""
    from mistnet.ownership import require_own_file, require_readable

    data = dataset(tmp_path / "D")
    figure, record = tmp_path / "ds.png", tmp_path / "e.json"
    assert mist(capsys, "data", "show", data, "--out", figure)[0] == 0
    assert mist(capsys, "eval", tiny_run, "--json", record, "--threads", "1")[0] == 0
    detections = create_directory(tmp_path / "dt", "detections")[0]
    before = entries_under(tmp_path)
    unread = {figure, record, data, detections / MARKER}
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) not in unread and access(p, mode))
    said = "this user cannot read it, so whether {} wrote it cannot be told"
    result = mist(capsys, "data", "show", data, "--out", figure)
    assert_user_error(result, f"{figure}: " + said.format("mist data show"), "choose a new --out")
    result = mist(capsys, "eval", tiny_run, "--json", record, "--threads", "1")
    assert_user_error(result, f"{record}: " + said.format("mist eval"), "choose another --json")
    with pytest.raises(MistError, match="cannot read it, so whether mist demo wrote it"):
        require_own_file(figure, lambda path: True, "mist demo")  # a demo's, a reproduction's
    with pytest.raises(MistError, match=f"{data}: this user cannot enter it, so whether mistnet"):
        require_readable(data, "mistnet", "choose another --data-root")
    # its marker unreadable: "exists and was not made by mist detect" (a resume marked it again)
    with pytest.raises(MistError, match=r"dt/\.mistnet: this user cannot read it, so whether"):
        claim_output(detections, "detections", "mist detect")
    # a folder it cannot enter: "D/.mistnet: Permission denied", naming the marker
    with pytest.raises(MistError, match=f"{data}: this user cannot enter it, so whether mist"):
        claim_output(data, "dataset", "mist data")
    # read as a run or a dataset: "not a mistnet run", "missing dataset manifest"
    assert_user_error(mist(capsys, "eval", data), f"{data}: this user cannot enter it, so it is")
    result = mist(capsys, "data", "show", data, "--out", tmp_path / "s.png")
    assert_user_error(result, f"{data}: this user cannot enter it, so it is read as no dataset")
    assert entries_under(tmp_path) == before


def test_an_earlier_output_or_lock_this_user_cannot_write_is_said_so(
    tmp_path, capsys, monkeypatch, tiny_run
):
    """Before: ``mist demo`` (or ``reproduce``) into its own earlier output owned by another
    user, and any command finding another user's ``.lock`` in its output, said only
    "OUT/.lock: Permission denied". (Root writes anywhere: the permission is stood in for.)"""
    import mistnet.locks

    out = earlier_demo(tmp_path, tiny_run)
    before = entries_under(tmp_path)
    access = os.access
    # unwritable, still enterable and readable (a folder of mode 555)
    monkeypatch.setattr(
        os, "access", lambda p, mode: not (Path(p) == out and mode & os.W_OK) and access(p, mode)
    )
    result = mist(capsys, "demo", "--out", out, "--minutes", "0.1", "--threads", "1")
    assert_user_error(result, f"{out}: an earlier output this user cannot write into")
    monkeypatch.undo()
    (out / ".lock").write_text("")  # another user's, say
    opened = os.open

    def denied(path, *args, **kwargs):
        if Path(path) == out / ".lock":
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, *args, **kwargs)

    monkeypatch.setattr(mistnet.locks.os, "open", denied)
    with pytest.raises(MistError, match=r"\.lock: this user cannot open the lock \(this user's"):
        with mistnet.locks.exclusive_lock(out, "mist demo"):
            pass  # its own, chmod 000: not another user's (a review found it called so)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # another user, the lock root's
    with pytest.raises(MistError, match=r"\.lock: this user cannot open the lock \(another"):
        with mistnet.locks.exclusive_lock(out, "mist demo"):
            pass
    (out / ".lock").unlink()
    assert entries_under(tmp_path) == before
