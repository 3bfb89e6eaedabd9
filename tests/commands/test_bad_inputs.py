"""One case per kind of bad input, through the ``mist`` command line: exit status 2, one stderr
line that names the problem, and no file written, changed or removed (TESTING.md lists them)."""

import errno
import json
import os
import resource
import shutil
import struct

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, check_refused, entries_under, files_under, mist
from helpers import png_size_bomb
from PIL import Image

import mistnet
from mistnet import machine
from mistnet.commands import detect
from mistnet.data import open_dataset
from mistnet.data.official import export_official
from mistnet.data.scenes import build_generator, make_scenes
from mistnet.data.store import write_dataset
from mistnet.errors import DataError

CASES = {}


def case(make):
    """Register ``make(tmp_path, run) -> (argv, fragments of the one stderr line)``."""
    CASES[make.__name__] = make
    return make


def image(tmp_path, name="ok.png"):
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / name)
    return tmp_path / name


def dataset(tmp_path, n_test=3, compress=False):
    g = build_generator("mnist-hard", layout_bank=16)
    scenes = {"test": make_scenes(g, "test", range(n_test), 0)}
    return write_dataset(tmp_path / "ds", g.name, scenes, compress=compress)


def rewrite_test_split(d, key, change):
    """``d`` with the array ``key`` of its test split changed, as a dataset written without
    the splits' digests (else refused as a swapped split before the change is read)."""
    with np.load(d / "test.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays[key] = change(arrays[key])
    np.savez(d / "test.npz", **arrays)
    manifest = json.loads((d / "manifest.json").read_text())
    del manifest["split_digests"]
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@case
def eval_on_a_test_split_copied_from_another_dataset(tmp_path, run):
    # Before: scored as this dataset's test split (only its manifest was compared)
    d, g = dataset(tmp_path), build_generator("mnist-hard", layout_bank=16)
    other = write_dataset(
        tmp_path / "other", g.name, {"test": make_scenes(g, "test", range(3, 6), 0)}
    )
    (d / "test.npz").write_bytes((other / "test.npz").read_bytes())  # the same manifest else
    return ["eval", run, "--data", d], [
        "test.npz: its scenes are not those manifest.json recorded for the test split",
        # a reader racing `data make --overwrite` sees this too: run again is the remedy then
        "or the dataset made again while this read it?); run this again, else make or import",
    ]


def set_label(value):
    def change(labels):
        labels[0, 0] = value
        return labels

    return change


# -- images (mist detect) -----------------------------------------------------------------------


@case
def show_of_a_pretrained_models_name(tmp_path, run):
    # Before: "run directory mnist-hard-classifier does not exist", no word of the model
    argv = ["show", "mnist-hard-classifier", "--out", tmp_path / "x.png"]
    return argv, ["mnist-hard-classifier is a pretrained model, and mist show draws runs only"]


@case
def detect_size_bomb(tmp_path, run):
    png_size_bomb(tmp_path / "bomb.png", 60000, 60000)
    return ["detect", run, tmp_path / "bomb.png", "--out", tmp_path / "d"], ["bomb.png", "Pillow"]


@case
def train_a_classifier_of_more_classes_than_memory_holds(tmp_path, run):
    # before: internal error (RuntimeError: Storage size calculation overflowed); then "out of
    # memory; try smaller ..."; now the classifier's head refuses it, naming num_classes
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "r", "--no-progress"]
    return [*argv, "--set", f"model.num_classes={2**62}"], [
        f"the head of num_classes={2**62}",
        "make fewer (weights: lower num_classes",
    ]


@case
def detect_tiles_of_a_run_whose_image_size_was_edited_below_its_reach(tmp_path, run):
    # before: internal error (ValueError: images must be larger than the reflection padding)
    edited = tmp_path / "edited"
    shutil.copytree(run, edited)
    config = json.loads((edited / "config.json").read_text())
    config["record"]["image_size"] = [1, 1]
    (edited / "config.json").write_text(json.dumps(config))
    argv = ["detect", edited, image(tmp_path), "--tile", "--out", tmp_path / "d"]
    # now refused first as an edit: the checkpoint records the size the run was trained on
    return argv, ["record.image_size is (1, 1) but best.safetensors was trained with (80, 80)"]


@case
def detect_over_max_pixels(tmp_path, run):
    argv = ["detect", run, image(tmp_path), "--out", tmp_path / "d", "--max-pixels", "2000"]
    return argv, ["ok.png: 48x48 = 2,304 pixels", "--max-pixels"]


@case
def detect_nan_pixels(tmp_path, run):
    Image.fromarray(np.full((48, 48), np.nan, np.float32), "F").save(tmp_path / "nan.tiff")
    return ["detect", run, tmp_path / "nan.tiff", "--out", tmp_path / "d"], ["nan.tiff", "NaN"]


@case
def detect_fifo(tmp_path, run):
    os.mkfifo(tmp_path / "pipe.png")
    argv = ["detect", run, image(tmp_path), tmp_path / "pipe.png", "--out", tmp_path / "d"]
    return argv, ["pipe.png: a FIFO, not a regular file"]


@case
def detect_max_pixels_zero(tmp_path, run):
    argv = ["detect", run, image(tmp_path), "--out", tmp_path / "d", "--max-pixels", "0"]
    return argv, ["--max-pixels must be >= 1"]


# -- checkpoints ------------------------------------------------------------------------------


def corrupt_best(run):
    raw = bytearray((run / "best.safetensors").read_bytes())
    start = 8 + struct.unpack("<Q", raw[:8])[0]
    raw[start + 100 : start + 400] = b"\xff" * 300  # the header stays intact
    (run / "best.safetensors").write_bytes(bytes(raw))


@case
def eval_corrupt_weights(tmp_path, run):
    corrupt_best(run)
    return ["eval", run, "--data", "mnist-hard"], ["best.safetensors is corrupt"]


@case
def detect_corrupt_weights(tmp_path, run):
    corrupt_best(run)
    argv = ["detect", run, image(tmp_path), "--out", tmp_path / "d"]
    return argv, ["best.safetensors is corrupt"]


@case
def eval_checkpoint_of_another_width(tmp_path, run):
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["heatmap_width"] *= 2
    (run / "config.json").write_text(json.dumps(cfg))
    # the config the checkpoint records, compared first (was: "does not fit this model")
    return ["eval", run, "--data", "mnist-hard"], [
        "model.heatmap_width is ",
        "but best.safetensors was trained with ",
        "or config.json was edited since",
    ]


# -- datasets (mist eval --data) ------------------------------------------------------------------


@case
def eval_byte_corrupted_npz(tmp_path, run):
    d = dataset(tmp_path, compress=True)
    raw = bytearray((d / "test.npz").read_bytes())
    raw[200:264] = bytes(64)  # inside the deflate stream of images.npy: a zlib.error
    (d / "test.npz").write_bytes(bytes(raw))
    return ["eval", run, "--data", d], ["test.npz: corrupt or truncated", "error"]


@case
def eval_splits_as_a_list(tmp_path, run):
    d = dataset(tmp_path)
    meta = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**meta, "splits": ["test"]}))
    return ["eval", run, "--data", d], ["manifest.json: 'splits' must map", "got a list"]


@case
def eval_label_out_of_range(tmp_path, run):
    d = rewrite_test_split(dataset(tmp_path), "labels", set_label(99))
    return ["eval", run, "--data", d], ["class ids up to 99", "has 10 classes"]


@case
def eval_negative_label(tmp_path, run):
    d = rewrite_test_split(dataset(tmp_path), "labels", set_label(-4))
    return ["eval", run, "--data", d], ["test.npz: labels of counted instances"]


@case
def eval_string_labels(tmp_path, run):
    d = rewrite_test_split(dataset(tmp_path), "labels", lambda a: a.astype(str))
    return ["eval", run, "--data", d], ["test.npz: labels must be", "int64"]


@case
def eval_nan_boxes(tmp_path, run):
    d = rewrite_test_split(dataset(tmp_path), "boxes", lambda a: a * np.float32("nan"))
    return ["eval", run, "--data", d], ["test.npz: boxes holds", "NaN"]


@case
def eval_a_classifier_on_float_images_with_labels(tmp_path, run):
    d = rewrite_test_split(dataset(tmp_path), "images", lambda a: a.astype(np.float32) / 255)
    edit_manifest(d, dtype="float32")  # as a dataset of float images says
    return ["eval", run, "--data", d], ["ds holds float32 images", "with class labels"]


@case
def eval_empty_split(tmp_path, run):
    return ["eval", run, "--data", dataset(tmp_path, n_test=0)], ["the test split is empty"]


# -- the official layout (mist data import-official) --------------------------------------------


def official(tmp_path):
    return export_official(dataset(tmp_path), tmp_path / "off")


@case
def data_show_of_an_official_layout(tmp_path, run):
    # Before: "missing dataset manifest (not a mistnet dataset directory)", no way on
    layout = official(tmp_path)
    (layout / ".mistnet").unlink()  # as the official code makes one: told by its lists
    argv = ["data", "show", layout, "--out", tmp_path / "s.png"]
    return argv, ["missing dataset manifest", "an official layout: mist data import-official"]


@case
def eval_of_an_official_layout_without_its_marker(tmp_path, run):
    layout = official(tmp_path)
    (layout / ".mistnet").unlink()  # as the official code makes one (was "not a mistnet run")
    return ["eval", layout], ["no config.json); it is an official layout (mist data import-off"]


@case
def data_show_of_a_folder_holding_a_train_txt_of_the_users(tmp_path, run):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text("a.png\n")  # a list of images, no layout
    argv = ["data", "show", tmp_path / "lists", "--out", tmp_path / "s.png"]
    return argv, ["missing dataset manifest (not a mistnet dataset directory)"]


@case
def plot_of_a_demo_folder(tmp_path, run):
    # Before: "dm is not a mistnet run (no config.json)", its run not named
    from mistnet.outputs import create_directory

    demo = create_directory(tmp_path / "dm", "demo")[0]
    argv = ["plot", demo, "--out", tmp_path / "p.png"]
    return argv, [f"not a mistnet run (no config.json); it is a demo's folder, whose run is {demo}"]


@case
def import_path_outside_the_root(tmp_path, run):
    off = official(tmp_path)
    (off / "test.txt").write_text("../ds/manifest.json\n" * 3)
    argv = ["data", "import-official", off, tmp_path / "imported"]
    return argv, ["test.txt: '../ds/manifest.json' holds '..'; give paths inside the dataset root"]


@case
def import_non_utf8_list(tmp_path, run):
    off = official(tmp_path)
    (off / "test.txt").write_bytes(b"images/test/\xff.png\n")
    return ["data", "import-official", off, tmp_path / "imported"], ["test.txt: not UTF-8"]


@case
def import_over_max_pixels(tmp_path, run):
    argv = ["data", "import-official", official(tmp_path), tmp_path / "i", "--max-pixels", "100"]
    return argv, ["80x80 = 6,400 pixels, more than the limit of 100"]


@case
def import_images_over_max_pixels(tmp_path, run):
    (tmp_path / "photos").mkdir()
    image(tmp_path / "photos", "a.png")
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "i"]
    return [*argv, "--max-pixels", "1000"], ["a.png: 48x48 = 2,304 pixels, more than"]


@case
def import_images_a_size_over_max_pixels(tmp_path, run):
    (tmp_path / "photos").mkdir()
    image(tmp_path / "photos", "a.png")  # 48x48: the images pass, the size asked does not
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "i"]
    argv += ["--size", "100", "300", "--max-pixels", "10000"]  # as --size 100000 100000
    return argv, ["--size 100 300: 300x100 = 30,000 pixels, more than the limit of 10,000"]


@case
def import_images_with_a_link_to_another_of_its_images(tmp_path, run):
    (tmp_path / "photos").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        image(tmp_path / "photos", name)
    (tmp_path / "photos" / "z.png").symlink_to("a.png")  # would put a.png in two splits
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "i"]
    return argv, ["z.png: a symbolic link to", "a.png, which the folder holds too"]


@case
def import_images_with_a_hard_link_to_another_of_its_images(tmp_path, run):
    (tmp_path / "photos").mkdir()  # before: a.png imported twice, in train and in test
    for name in ("a.png", "b.png", "c.png"):
        image(tmp_path / "photos", name)
    os.link(tmp_path / "photos" / "a.png", tmp_path / "photos" / "z.png")
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "i"]
    return argv, ["z.png: a hard link to", "a.png (one file under two names)"]


@case
def import_images_nan_pixels(tmp_path, run):
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.full((8, 8), np.inf, np.float32), "F").save(tmp_path / "photos" / "a.tif")
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "i"]
    return argv, ["a.tif: pixels holds 64 NaN or infinite values"]


@case
def eval_a_run_whose_config_holds_a_value_of_100_000_characters(tmp_path, run):
    # Before: the value was quoted whole, one line of 100 KB (the case's check: one line)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["output"] = "x" * 100_000
    (run / "config.json").write_text(json.dumps(cfg))
    return ["eval", run], ["model.output must be one of", "characters left out) ... xxx"]


@case
def eval_a_run_whose_config_is_a_fifo(tmp_path, run):
    (run / "config.json").unlink()  # was "not a mistnet run (no config.json)"
    os.mkfifo(run / "config.json")
    return ["eval", run], ["config.json: a FIFO, not a regular file"]


@case
def plot_a_run_whose_log_is_a_fifo(tmp_path, run):
    (run / "log.jsonl").unlink()  # was "has no log.jsonl yet"
    os.mkfifo(run / "log.jsonl")
    return ["plot", run, "--out", tmp_path / "p.png"], ["log.jsonl: a FIFO, not a regular file"]


@case
def eval_a_fifo_as_the_run(tmp_path, run):
    os.mkfifo(tmp_path / "ff")  # was "run directory ff does not exist"
    return ["eval", tmp_path / "ff"], ["ff: a FIFO, not a run directory"]


def train_on(tmp_path, data, *options):
    """``mist train`` of the tiny preset on ``data`` into ``tmp_path / "r"``."""
    return ["train", "--preset", "tiny-cpu", "--data", data, "--out", tmp_path / "r", *options]


@case
def train_on_a_file_as_the_dataset(tmp_path, run):
    (tmp_path / "notes").write_text("mine")  # was "no such dataset directory"
    return train_on(tmp_path, tmp_path / "notes"), ["notes: a file, not a dataset directory"]


@case
def data_show_a_fifo_as_the_dataset(tmp_path, run):
    os.mkfifo(tmp_path / "ff")  # was "unknown scene generator 'ff'"
    argv = ["data", "show", tmp_path / "ff", "--out", tmp_path / "s.png"]
    return argv, ["ff: a FIFO, not a dataset directory"]


@case
def data_make_into_a_symbolic_link_loop(tmp_path, run):
    (tmp_path / "loop").symlink_to("loop")  # was an internal error (RuntimeError)
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "loop" / "x", "--n-train", 1]
    return argv, ["loop/x: a symbolic link loop (it leads back to itself)"]


@case
def eval_json_into_a_symbolic_link_loop(tmp_path, run):
    (tmp_path / "loop").symlink_to("loop")
    return ["eval", run, "--json", tmp_path / "loop" / "m.json"], ["a symbolic link loop"]


@case
def data_make_a_name_too_long_for_its_temporary(tmp_path, run):
    out = tmp_path / ("a" * 240)  # was "File name too long", naming a temporary
    argv = ["data", "make", "mnist-easy", "--out", out, "--n-train", 1]
    return argv, ["a name of 240 bytes; at most 200"]


@case
def data_show_a_name_too_long_for_its_temporary(tmp_path, run):
    out = tmp_path / ("a" * 240 + ".png")
    return ["data", "show", "mnist-easy", "--out", out], ["a name of 244 bytes; at most 200"]


@case
def train_on_a_data_link_loop(tmp_path, run):
    (tmp_path / "loop").symlink_to("loop")  # was "no such dataset directory"
    return train_on(tmp_path, tmp_path / "loop"), ["loop: a symbolic link loop (it leads back"]


@case
def train_on_fewer_scenes_than_a_batch(tmp_path, run):
    g = build_generator("mnist-hard", layout_bank=16)  # was "fewer than one batch (32)"
    scenes = {s: make_scenes(g, s, range(3), 0) for s in ("train", "val")}
    ds = write_dataset(tmp_path / "ds", g.name, scenes)
    argv = train_on(tmp_path, ds, "--set", "train.batch_size=500")
    return argv, ["lower train.batch_size or give more"]


def edit_manifest(d, **changes):
    manifest = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**manifest, **changes}))
    return d


@case
def eval_on_a_manifest_of_another_image_size(tmp_path, run):
    ds = edit_manifest(dataset(tmp_path), height=64)  # was read as if it said nothing
    return ["eval", run, "--data", ds], ["manifest.json: height is 64 but test.npz holds 80"]


@case
def eval_on_boxes_of_side_0_that_the_manifest_claims(tmp_path, run):
    ds = edit_manifest(dataset(tmp_path), annotations=["boxes", "labels"])
    rewrite_test_split(ds, "boxes", np.zeros_like)  # was scored: det 0.0 against no boxes
    return ["eval", run, "--data", ds], ["annotations names boxes, but test.npz holds boxes of"]


@case
def data_show_a_dataset_named_with_an_escape_sequence(tmp_path, run):
    ds = edit_manifest(dataset(tmp_path), name="x\x1b[31m")  # was sent to the terminal raw
    argv = ["data", "show", ds, "--split", "test", "--out", tmp_path / "s.png"]
    return argv, ["manifest.json: name 'x\\x1b[31m' holds the control character"]


@case
def detect_an_image_whose_name_is_too_long_for_its_outputs(tmp_path, run):
    img = image(tmp_path, "b" * 235 + ".png")  # was "OUT: File name too long", naming --out
    return ["detect", run, img, "--out", tmp_path / "d"], [f"{img}: its output", "at most 200"]


@case
def package_a_model_whose_name_is_too_long(tmp_path, run):
    argv = ["models", "package", run, "--name", "c" * 245, "--command", "c"]
    return [*argv, "--out", tmp_path / "pk"], ["--name: the file", "at most 200"]  # left pk/


@case
def package_a_model_with_metrics_from_a_fifo(tmp_path, run):
    os.mkfifo(tmp_path / "fifo.json")  # was "does not exist"
    argv = ["models", "package", run, "--name", "z", "--command", "c", "--out", tmp_path / "pk"]
    return [*argv, "--metrics", tmp_path / "fifo.json"], ["fifo.json: a FIFO, not a regular file"]


@case
def plot_the_same_run_twice(tmp_path, run):
    argv = ["plot", run, f"{run}/.", "--out", tmp_path / "p.png"]  # was drawn as two runs
    return argv, ["the run", "is given twice (as", "name each run once"]


@case
def import_images_labels_from_a_fifo(tmp_path, run):
    (tmp_path / "photos").mkdir()
    image(tmp_path / "photos", "a.png")
    os.mkfifo(tmp_path / "labels.csv")
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "i"]
    return [*argv, "--labels", tmp_path / "labels.csv"], ["labels.csv: a FIFO"]


@case
def import_images_of_a_fifo_named_like_an_image(tmp_path, run):
    (tmp_path / "photos").mkdir()
    image(tmp_path / "photos", "a.png")
    os.mkfifo(tmp_path / "photos" / "f.PNG")  # was skipped without a word (never opened now)
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "i"]
    return argv, ["f.PNG: a FIFO, not a regular file"]


@case
def import_images_of_a_folder_holding_detections(tmp_path, run):
    # Before: `mist detect RUN photos/*.png --out photos/found`, then an import of photos took
    # the annotated 320x320 RGB PNGs as half of the dataset (after --size, which it asked for)
    from mistnet.markers import mark

    (tmp_path / "photos" / "found").mkdir(parents=True)
    image(tmp_path / "photos", "a.png")
    image(tmp_path / "photos" / "found", "a.png")
    mark(tmp_path / "photos" / "found", "detections")
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "i"]
    return argv, ["found: a mistnet output (detections) inside", "move it out of the folder"]


def import_of_an_output(tmp_path, name, kind):
    """An import-images argv of the folder ``name``, an output of ``kind`` holding a PNG."""
    from mistnet.markers import mark

    (tmp_path / name).mkdir()
    image(tmp_path / name, "a.png")
    mark(tmp_path / name, kind)
    return ["data", "import-images", tmp_path / name, "--out", tmp_path / "i"]


@case
def import_images_of_detections(tmp_path, run):
    # Before: `mist data import-images found` of detect's own --out imported its overlays
    argv = import_of_an_output(tmp_path, "found", "detections")
    return argv, ["found: a mistnet output (detections); import-images reads only your images"]


@case
def import_images_of_an_official_layout(tmp_path, run):
    argv = import_of_an_output(tmp_path, "lay", "official")
    return argv, ["lay: a mistnet output (official: mist data import-official reads it)"]


@case
def import_images_of_a_link_to_nowhere(tmp_path, run):
    (tmp_path / "photos").mkdir()
    image(tmp_path / "photos", "a.png")
    (tmp_path / "photos" / "broken.png").symlink_to("nowhere.png")  # was skipped silently
    argv = ["data", "import-images", tmp_path / "photos", "--out", tmp_path / "i"]
    return argv, ["broken.png: a symbolic link to nowhere"]


@case
def train_on_a_dataset_with_generator_sizes(tmp_path, run):
    ds = dataset(tmp_path)  # was ignored, and recorded in config.json as if used
    argv = ["train", "--preset", "tiny-cpu", "--data", ds, "--out", tmp_path / "r"]
    return [*argv, "--set", "data.n_train=5"], ["--set data.n_train=5: training reads the dataset"]


@case
def train_on_a_missing_data_directory(tmp_path, run):
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "new", "--data", "nodata"]
    return argv, ["--data nodata: no such dataset directory"]


@case
def train_with_data_and_another_data_path(tmp_path, run):
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "new", "--data", dataset(tmp_path)]
    argv += ["--set", 'data.path="/nonexist"']  # --data won silently
    return argv, ['and --set data.path="/nonexist" name two datasets; give one']


@case
def train_on_a_dataset_naming_another_generator(tmp_path, run):
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "new"]
    argv += [
        "--set",
        f"data.path={json.dumps(str(dataset(tmp_path)))}",
        "--set",
        'data.name="gabor"',
    ]
    return argv, [
        '--set data.name="gabor" names another generator than the dataset',
        "'mnist-hard'",
    ]


@case
def train_with_a_hundred_thousand_threads(tmp_path, run):
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "new", "--data", dataset(tmp_path)]
    return [*argv, "--threads", "100000"], ["--threads must be at most", "got 100000"]


@case
def eval_with_a_hundred_thousand_threads(tmp_path, run):
    argv = ["eval", run, "--data", dataset(tmp_path), "--threads", "100000"]
    return argv, ["--threads must be at most", "got 100000"]


# -- run directories ----------------------------------------------------------------------------


@case
def eval_a_path_with_a_newline_and_an_escape_sequence(tmp_path, run):
    # Before: printed raw, two lines, the second one red
    return ["eval", tmp_path / "no\nsuch\x1b[31m"], ["no\\nsuch\\x1b[31m does not exist"]


@case
def eval_a_run_without_checkpoints(tmp_path, run):
    (run / "best.safetensors").unlink()
    (run / "last.safetensors").unlink()
    return ["eval", run], ["holds no checkpoint yet"]


@case
def resume_from_a_negative_step(tmp_path, run):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(run / "last.safetensors"), "pt") as f:
        meta = {**f.metadata(), "step": "-5"}
    meta.pop("digest")  # as an older checkpoint without one
    save_file(load_file(run / "last.safetensors"), str(run / "last.safetensors"), metadata=meta)
    return ["train", "--out", run, "--resume"], ["damaged metadata (step '-5' is no whole"]


@case
def package_a_checkpoint_of_step_2_to_the_63(tmp_path, run):
    # Before: eval recorded the step, models package ended in an internal error ("step must be
    # an integer in [0, 2**63)", the writer's check)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(run / "best.safetensors"), "pt") as f:
        meta = {**f.metadata(), "step": str(2**63)}
    meta.pop("digest")  # as an older checkpoint without one
    save_file(load_file(run / "best.safetensors"), str(run / "best.safetensors"), metadata=meta)
    argv = ["models", "package", run, "--name", "m", "--out", tmp_path / "m", "--command", "x"]
    return argv, [f"best.safetensors has damaged metadata (step {2**63})"]


@case
def resume_a_finished_run_whose_last_checkpoint_was_deleted(tmp_path, run):
    (run / "last.safetensors").unlink()  # a fresh start would empty the log, overwrite best
    argv = ["train", "--out", run, "--resume", "--set", "train.steps=20"]
    return argv, ["last.safetensors is missing, but summary.json says the run finished"]


@case
def resume_a_run_whose_last_checkpoint_was_deleted(tmp_path, run):
    (run / "last.safetensors").unlink()
    (run / "summary.json").unlink()  # stopped after a checkpoint at step 5
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["ckpt_every"] = 5
    (run / "config.json").write_text(json.dumps(cfg))
    argv = ["train", "--out", run, "--resume"]
    return argv, ["last.safetensors is missing, but log.jsonl reaches step 10", "every 5)"]


@case
def resume_a_run_whose_log_was_deleted(tmp_path, run):
    (run / "log.jsonl").unlink()  # before: resumed, its new log starting mid-run
    argv = ["train", "--out", run, "--resume", "--set", "train.steps=30"]
    return argv, ["log.jsonl is missing or empty but", "at step 10", "train.init_from=RUN"]


@case
def resume_a_run_whose_last_checkpoint_and_log_were_deleted(tmp_path, run):
    for name in ("last.safetensors", "log.jsonl", "summary.json"):
        (run / name).unlink()  # before: trained afresh, best.safetensors overwritten
    argv = ["train", "--out", run, "--resume", "--set", "train.steps=30"]
    return argv, ["last.safetensors is missing but best.safetensors exists"]


@case
def train_over_a_run_holding_only_its_best_checkpoint(tmp_path, run):
    for name in ("last.safetensors", "log.jsonl", "summary.json"):
        (run / name).unlink()  # before: trained over it, best.safetensors overwritten
    argv = ["train", "--preset", "tiny-cpu", "--out", run, "--set", "train.steps=3"]
    return argv, ["already holds a run; use --resume or another --out"]


@case
def resume_with_fewer_steps_than_the_run(tmp_path, run):
    argv = ["train", "--out", run, "--resume", "--set", "train.steps=5"]
    return argv, ["--set train.steps=5 is below the 10 steps of the run", "trains it to 10"]


@case
def resume_on_another_dataset(tmp_path, run):
    argv = ["train", "--out", run, "--resume", "--set", "train.steps=20"]
    return [*argv, "--data", dataset(tmp_path)], [
        "was trained on the dataset mnist-hard, not",
        "a resumed run trains on the data it started with",
    ]


# -- the operating system refuses -----------------------------------------------------------------


@case
def eval_into_an_unwritable_directory(tmp_path, run):
    if os.geteuid() == 0:  # root writes anywhere but into /sys
        return ["eval", run, "--data", "mnist-hard", "--json", "/sys/mist-x/e.json"], ["mist-x"]
    (tmp_path / "ro").mkdir(mode=0o555)
    argv = ["eval", run, "--data", "mnist-hard", "--json", tmp_path / "ro" / "e.json"]
    return argv, ["e.json", "Permission denied"]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_gives_one_line_and_leaves_every_file_as_it_was(capsys, tmp_path, tiny_run, name):
    check_refused(capsys, tmp_path, tiny_run, CASES[name])


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["eval", ""], "RUN"),
        (["detect", "", "a.png", "--out", "d"], "RUN"),
        (["detect", "run", "", "--out", "d"], "IMAGE"),
        (["detect", "run", "a.png", "--out", ""], "--out"),
        (["plot", "", "--out", "p.png"], "RUN"),
        (["plot", "run", "", "--out", "p.png"], "RUN"),
        (["show", "", "--out", "s.png"], "RUN"),
        (["models", "package", "", "--name", "m", "--command", "c", "--out", "o"], "RUN"),
        (["train", "--resume", "--out", ""], "--out"),
        (["train", "--preset", "tiny-cpu", "--out", ""], "--out"),
        (["train", "--preset", "", "--out", "new"], "--preset"),
        (["train", "--preset", "tiny-cpu", "--out", "new", "--data", ""], "--data"),
        (["train", "--preset", "tiny-cpu", "--out", "new", "--set", ""], "--set"),
        (["eval", "run", "--data", ""], "--data"),
        (["data", "import-images", "", "--out", "i"], "SRC"),
    ],
)
def test_an_empty_argument_is_refused_not_taken_for_the_working_directory(
    capsys, tmp_path, tiny_run, monkeypatch, argv, named
):
    monkeypatch.chdir(tmp_path)  # "" would be this folder: Path("") is "."
    shutil.copytree(tiny_run, tmp_path / "run")
    image(tmp_path, "a.png")
    before = files_under(tmp_path)
    assert_user_error(mist(capsys, *argv), f"{named} '' is an empty argument")
    assert files_under(tmp_path) == before


def test_a_detect_that_fails_part_way_leaves_its_output_directory_as_it_was(
    capsys, tiny_run, tmp_path, monkeypatch
):
    out = tmp_path / "d"
    assert mist(capsys, "detect", tiny_run, image(tmp_path, "a.png"), "--out", out)[0] == 0
    before = files_under(tmp_path)
    real, calls = detect.detect_image, []

    def nan_on_the_second(*args, **kwargs):
        calls.append(1)
        pred = real(*args, **kwargs)
        if len(calls) == 2:
            with torch.inference_mode():
                pred.scores.fill_(float("nan"))
        return pred

    monkeypatch.setattr(detect, "detect_image", nan_on_the_second)
    b = image(tmp_path, "b.png")
    before["b.png"] = b.read_bytes()
    result = mist(capsys, "detect", tiny_run, tmp_path / "a.png", b, "--out", out)
    assert_user_error(result, "b.png: the model's boxes and scores holds 9 NaN")
    assert files_under(tmp_path) == before  # a.json was not rewritten, b.json not written


def test_a_file_size_limit_gives_one_line_and_no_dataset(capsys, tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, hard))  # EFBIG past 10 kB
    sizes = ("--n-train", 16, "--n-val", 1, "--n-test", 1)
    try:
        result = mist(capsys, "data", "make", "mnist-hard", "--out", tmp_path / "x", *sizes)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert_user_error(result, f"{tmp_path / 'x'}: File too large")
    assert files_under(tmp_path) == {}


def test_a_full_disk_gives_one_line_naming_the_file_and_writes_nothing(
    capsys, tmp_path, tiny_run, monkeypatch
):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_bytes", full)
    out = tmp_path / "new" / "e.json"
    result = mist(capsys, "eval", tiny_run, "--data", "mnist-hard", "--json", out)
    assert_user_error(result, f"{out}: No space left on device")
    assert files_under(tmp_path) == {} and not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", [["demo"], ["data", "make", "mnist-hard"]])
def test_more_scenes_than_memory_holds_are_refused_before_any_is_made(
    capsys, tmp_path, monkeypatch, command
):
    monkeypatch.setattr(machine, "available_memory", lambda: 1_000_000)  # 1 MB left
    sizes = ("--n-train", 1000, "--n-val", 1, "--n-test", 1)
    result = mist(capsys, *command, "--out", tmp_path / "x", *sizes)
    assert_user_error(
        result,
        "1,002 scenes of mnist-hard need 6.6 MB of memory, more than the 1.0 MB available; "
        "make fewer (--n-train, --n-val, --n-test)",
    )
    assert files_under(tmp_path) == {}


RESUME = ["train", "--resume", "--set", "train.steps=30", "--out"]


@pytest.mark.parametrize(
    ("name", "commands"),
    [
        ("best.safetensors", [["eval"]]),  # resume writes a new best in place of the link
        ("last.safetensors", [RESUME]),
        ("config.json", [["eval"], RESUME]),
        ("log.jsonl", [RESUME]),  # appended to
    ],
)
def test_a_run_file_that_links_out_of_the_run_is_refused(
    capsys, tmp_path, tiny_run, name, commands
):
    """Before: a run's ``best.safetensors`` linked to another run's was loaded, evaluated and
    its metrics recorded as this run's; a linked ``log.jsonl`` was appended to on resume."""
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / name).unlink()
    (run / name).symlink_to(other / name)
    before = entries_under(tmp_path)
    for command in commands:
        result = mist(capsys, *command, run, "--threads", "1")
        assert_user_error(result, f"{run / name}: is a symbolic link to", "outside its run")
    assert entries_under(tmp_path) == before
    if name != "log.jsonl":
        with pytest.raises(ValueError, match="outside its run directory"):
            mistnet.load(run, which="last" if name == "last.safetensors" else "best")


def test_a_dataset_split_that_links_out_of_the_dataset_is_refused(tmp_path):
    """Before: a dataset's ``test.npz`` linked to another dataset's split was scored as its
    test split."""
    source = dataset(tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(source, copy)
    (copy / "test.npz").unlink()
    (copy / "test.npz").symlink_to(source / "test.npz")
    with pytest.raises(DataError, match="test.npz: is a symbolic link to .* outside its dataset"):
        open_dataset(copy, "test")
    (copy / "test.npz").unlink()
    (copy / "test.npz").symlink_to("manifest.json")  # inside: its own (not an npz: refused so)
    with pytest.raises(DataError, match=r"not a split file \(no zip archive"):
        open_dataset(copy, "test")
