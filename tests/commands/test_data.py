"""``mist data`` commands: happy paths and error paths (exit 2, one line, no partial output)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, mist
from PIL import Image

from mistnet.data.digits import write_idx
from mistnet.data.store import SceneFolder


def _assert_user_error(capsys, tmp_path, *argv, match):
    """A one-line user error of ``mist data *argv`` that leaves nothing (half-)written."""
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_user_error(mist(capsys, "data", *argv), match)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_make_show_export_import(capsys, tmp_path):
    out = tmp_path / "hard"
    code, stdout, _ = mist(
        capsys,
        "data",
        "make",
        "mnist-hard-6to9",
        "--out",
        out,
        "--n-train",
        7,
        "--n-val",
        2,
        "--n-test",
        5,
        "--seed",
        3,
        "--layout-bank",
        16,
    )
    assert code == 0 and "scenes/s" in stdout
    ds = SceneFolder(out, "train")
    assert len(ds) == 7 and ds.manifest["seed"] == 3 and ds.manifest["digits"] == "embedded"
    assert ds.manifest["params"]["counts"] == [6, 7, 8, 9]
    code, _, _ = mist(
        capsys, "data", "show", out, "--split", "test", "--n", 4, "--out", tmp_path / "g.png"
    )
    assert code == 0 and (tmp_path / "g.png").stat().st_size > 1000
    code, _, _ = mist(
        capsys,
        "data",
        "make",
        "mnist-hard",
        "--out",
        tmp_path / "fixed",
        "--n-train",
        3,
        "--n-val",
        1,
        "--n-test",
        2,
        "--layout-bank",
        16,
    )
    assert code == 0
    assert mist(capsys, "data", "export-official", tmp_path / "fixed", tmp_path / "off")[0] == 0
    code, out, _ = mist(capsys, "data", "import-official", tmp_path / "off", tmp_path / "back")
    assert code == 0
    a, b = SceneFolder(tmp_path / "fixed", "test"), SceneFolder(tmp_path / "back", "test")
    np.testing.assert_array_equal(a.arrays["images"], b.arrays["images"])
    # Before: "wrote back" alone; a 3-channel grey dataset came back 1-channel without a word
    assert out.strip().endswith(
        "back: 1-channel 80x80 images (the layout's images are grey: one channel, or three equal ones)"
    )


def test_what_a_command_reports_quotes_a_strange_name_on_one_escaped_line(capsys, tmp_path):
    """A newline or an escape sequence in a folder of the user's that holds an --out neither
    splits the ``wrote`` line nor reaches the terminal raw: it is written as in error lines.
    A new output is not named so (a script's line read with its newline made "run\\n",
    which every line naming it then broke): refused, as ``mist plot`` refused it."""
    sizes = ("--n-train", 1, "--n-val", 1, "--n-test", 1)
    name = "new\nline\x1b[31m"
    refused = mist(capsys, "data", "make", "mnist-easy", "--out", tmp_path / name, *sizes)
    assert_user_error(refused, "holds the control character '\\n'; give a name of printable")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / name).mkdir()
    ds = tmp_path / name / "ds"
    code, stdout, _ = mist(capsys, "data", "make", "mnist-easy", "--out", ds, *sizes)
    assert code == 0 and ds.is_dir()
    assert stdout.count("\n") == 1 and "\x1b" not in stdout
    assert "new\\nline\\x1b[31m" in stdout
    code, stdout, _ = mist(capsys, "data", "show", ds, "--out", tmp_path / name / "a.png")
    assert code == 0 and stdout.count("\n") == 1 and "new\\nline\\x1b[31m/a.png" in stdout


def test_an_import_into_its_earlier_output_says_what_to_do(capsys, tmp_path):
    """The importers have no --overwrite: the refusal does not offer one."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((48, 48), np.uint8)).save(src / f"{i}.png")
    assert mist(capsys, "data", "import-images", src, "--out", tmp_path / "ds")[0] == 0
    sizes = ("--n-train", 1, "--n-val", 1, "--n-test", 1)
    assert mist(capsys, "data", "make", "mnist-easy", "--out", tmp_path / "e", *sizes)[0] == 0
    assert mist(capsys, "data", "export-official", tmp_path / "e", tmp_path / "off")[0] == 0
    assert mist(capsys, "data", "import-official", tmp_path / "off", tmp_path / "back")[0] == 0
    for argv in (
        ("import-images", src, "--out", tmp_path / "ds"),
        ("import-official", tmp_path / "off", tmp_path / "back"),
    ):
        _assert_user_error(
            capsys,
            tmp_path,
            *argv,
            match="already holds a dataset; choose another output directory or remove this one",
        )
        assert "overwrite" not in mist(capsys, "data", *argv)[2]
    # Before: "choose a new --out", an option these commands do not have (OUT is positional)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("mine")
    for argv in (
        ("export-official", tmp_path / "e", tmp_path / "busy"),
        ("import-official", tmp_path / "off", tmp_path / "busy"),
        ("import-official", tmp_path / "off", tmp_path / "off" / "x"),
    ):
        err = mist(capsys, "data", *argv)[2]
        assert "OUT" in err and "--out" not in err, err


def test_image_sizes_read_width_x_height_in_every_line(capsys, tmp_path):
    """Before: import-images warned of boxes past "the 100x60 image" and then reported
    "60x100 images" for the same 100-wide, 60-tall files (height first)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((60, 100), np.uint8)).save(src / f"{i}.png")
    (tmp_path / "boxes.csv").write_text("filename,cx,cy,w,h\n0.png,95,30,20,20\n")
    rc, out, err = mist(
        capsys, "data", "import-images", src, "--out", tmp_path / "ds", "--boxes",
        tmp_path / "boxes.csv", "--val", 0, "--test", 0,
    )  # fmt: skip
    assert rc == 0 and "the 100x60 image" in err and "1-channel 100x60 images" in out


def test_make_with_idx_digits(capsys, tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        write_idx(
            d / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        )
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    sizes = ("--n-train", 2, "--n-val", 2, "--n-test", 2)
    code, _, err = mist(
        capsys, "data", "make", "mnist-easy", "--out", tmp_path / "e", "--digits", d, *sizes
    )
    assert code == 0, err
    assert SceneFolder(tmp_path / "e", "val").manifest["digits"] == str(d.resolve())


@pytest.mark.parametrize(
    "argv, match",
    [
        (("make", "mnist-medium", "--out", "{tmp}/x"), "unknown scene generator 'mnist-medium'"),
        (("make", "mnist-hard-30", "--out", "{tmp}/x", "--n-train", 1), "impossible layout"),
        (("make", "mnist-hard", "--out", "{tmp}/x", "--n-val", -1), "--n-val must be at least 1"),
        (("make", "mnist-easy", "--out", "{tmp}/x", "--n-train", 0), "--n-train must be at least"),
        (("make", "gabor", "--out", "{tmp}/x", "--digits", "mnist"), "--digits only applies to"),
        (("make", "mnist-easy", "--out", "{tmp}/x", "--n-val", 0), "--n-val must be at least 1"),
        (("make", "mnist-easy", "--out", "{tmp}/x", "--n-test", 0), "--n-test must be at least"),
        (("make", "mnist-hardd", "--out", "{tmp}/x"), "'mnist-hardd'; did you mean mnist-hard"),
        (("make", "mnist-hard-0to99", "--out", "{tmp}/x"), "number 0..99; give 1 <= a <= b"),
        (("make", "mnist-hard-09", "--out", "{tmp}/x"), "'mnist-hard-09': write it mnist-hard"),
        (("make", "mnist-hard-9", "--out", "{tmp}/x"), "'mnist-hard-9': write it mnist-hard"),
        (("make", "mnist-hard-9to9", "--out", "{tmp}/x"), "9to9': write it mnist-hard"),
        (("make", "mnist-hard-2to2", "--out", "{tmp}/x"), "2to2': write it mnist-hard-2"),
        (("make", "mnist-hard-2to05", "--out", "{tmp}/x"), "write it mnist-hard-2to5"),
        (
            ("make", "mnist-hard", "--out", "{tmp}/x", "--digits", "{tmp}/nodigits"),
            "nodigits: not a directory",
        ),
        (("make", "svhn", "--out", "{tmp}/x"), "svhn needs --svhn"),
        (("make", "svhn", "--out", "{tmp}/x", "--svhn", "{tmp}/nosvhn"), "nosvhn does not exist"),
        (("show", "{tmp}/nodata", "--out", "{tmp}/g.png"), "no such dataset directory"),
        (
            ("show", "mnist-hard", "--split", "dev", "--out", "{tmp}/g.png"),
            "--split must be one of train, val, test; got 'dev'",
        ),
        (("export-official", "{tmp}/nodata", "{tmp}/x"), "no such dataset directory"),
        (("import-official", "{tmp}", "{tmp}/x"), "not an official layout"),
    ],
)
def test_error_paths(capsys, tmp_path, argv, match):
    argv = [a.format(tmp=tmp_path) if isinstance(a, str) else a for a in argv]
    _assert_user_error(capsys, tmp_path, *argv, match=match)


def test_a_file_where_a_folder_is_read_is_named_a_file(capsys, tmp_path):
    """Before: "FILE: no such directory" (import-images, import-official), "FILE/train:
    missing SVHN folder", and a folder given as --labels "unknown labels format"."""
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "imgs").mkdir()
    Image.new("L", (20, 20)).save(tmp_path / "imgs" / "a.png")
    file = tmp_path / "notes.txt"
    for argv, match in [
        (("import-images", file, "--out", tmp_path / "x"), "notes.txt: a file, not a folder of images"),
        (("import-official", file, tmp_path / "x"), "notes.txt: a file, not a folder in the official layout"),
        (("make", "svhn", "--out", tmp_path / "x", "--svhn", file), "notes.txt: a file, not a folder of SVHN"),
        (("import-images", tmp_path / "imgs", "--out", tmp_path / "x", "--labels", tmp_path / "imgs"),
         "imgs: a directory, not a labels file"),
    ]:  # fmt: skip
        _assert_user_error(capsys, tmp_path, *argv, match=match)


def test_an_unknown_name_is_one_short_line_with_the_closest_names(capsys, tmp_path):
    rc, _, err = mist(capsys, "data", "make", "mnist-hard-easy", "--out", tmp_path / "x")
    assert rc == 2 and err == (
        "mist data make: error: unknown scene generator 'mnist-hard-easy'; did you mean "
        "mnist-hard-left or mnist-hard or mnist-easy? (see mist data make --help for the names)\n"
    )
    rc, _, err = mist(capsys, "data", "make", "zzz", "--out", tmp_path / "x")
    assert err.endswith("unknown scene generator 'zzz' (see mist data make --help for the names)\n")
    assert list(tmp_path.iterdir()) == []


def test_errors_name_the_action_of_the_group(capsys, tmp_path):
    argv = ["data", "import-images", tmp_path / "none", "--out", tmp_path / "x"]
    assert mist(capsys, *argv)[2].startswith("mist data import-images: error: ")
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "x", "--n-train", "0"]
    assert mist(capsys, *argv)[2].startswith("mist data make: error: ")


def test_corrupt_inputs_and_existing_output(capsys, tmp_path):
    sizes = ("--n-train", 1, "--n-val", 1, "--n-test", 1)
    assert mist(capsys, "data", "make", "mnist-easy", "--out", tmp_path / "e", *sizes)[0] == 0
    _assert_user_error(
        capsys,
        tmp_path,
        "make",
        "gabor",
        "--out",
        tmp_path / "e",
        match="or remove this one, or pass --overwrite to replace it",
    )
    (tmp_path / "e" / "test.npz").write_bytes(b"PK\x03\x04garbage")
    _assert_user_error(
        capsys,
        tmp_path,
        "show",
        tmp_path / "e",
        "--out",
        tmp_path / "g.png",
        match="test.npz: corrupt or truncated",
    )
    _assert_user_error(
        capsys,
        tmp_path,
        "export-official",
        tmp_path / "e",
        tmp_path / "off",
        match="test.npz: corrupt or truncated",
    )
    d = tmp_path / "badmnist"
    d.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (d / name).write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 8)
    _assert_user_error(
        capsys,
        tmp_path,
        "make",
        "mnist-hard",
        "--out",
        tmp_path / "x",
        "--digits",
        d,
        match="train-images-idx3-ubyte: wrong IDX magic",
    )


def test_data_show_draws_thin_images_and_says_a_librarys_warning_in_one_line(capsys, tmp_path):
    """Before: a dataset of 1 x 5000 images (import-images takes a 5000 x 1 PNG) gave an
    internal error ("cannot write empty image") after matplotlib's warning in Python's two raw
    lines (file, line and source)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.new("L", (5000, 1), 100 + i).save(src / f"{i}.png")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--val", "0", "--test", "0"]
    assert mist(capsys, *argv)[0] == 0
    rc, _, err = mist(
        capsys, "data", "show", tmp_path / "ds", "--split", "train", "--out", tmp_path / "a.png"
    )
    assert rc == 0, err
    assert Image.open(tmp_path / "a.png").size[1] > 0
    assert all(line.startswith("mist data show: warning: ") for line in err.splitlines()), err


def test_data_show_draws_a_box_far_larger_than_its_image(capsys, tmp_path):
    """Before: a box of side 1e9 (finite in float32) in a dataset, or in ``draw_scenes_grid``,
    overflowed FreeType's rasteriser: an internal error ("FT_Render_Glyph ... raster
    overflow"); 3e38 was matplotlib's TypeError."""
    import numpy as np

    from mistnet.viz import draw_scenes_grid

    out = tmp_path / "ds"
    argv = ["data", "make", "mnist-easy", "--n-train", 2, "--n-val", 1, "--n-test", 2]
    assert mist(capsys, *argv, "--out", out)[0] == 0
    with np.load(out / "test.npz") as z:
        arrays = dict(z)
    arrays["boxes"][0, 0] = [40, 40, 1e9, 1e9]
    arrays["boxes"][1, 0] = [40, 40, 3e38, 3]
    np.savez_compressed(out / "test.npz", **arrays)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["split_digests"]  # as a dataset written without them, else a swapped split
    (out / "manifest.json").write_text(json.dumps(manifest))
    rc, _, err = mist(capsys, "data", "show", out, "--split", "test", "--out", tmp_path / "a.png")
    assert rc == 0 and err == "", err
    images = torch.as_tensor(arrays["images"]).float() / 255  # (N, 1, H, W) as stored
    boxes, labels = torch.as_tensor(arrays["boxes"]), torch.as_tensor(arrays["labels"])
    draw_scenes_grid(images, boxes, labels, tmp_path / "b.png", boxes, labels)
    assert Image.open(tmp_path / "b.png").size[0] > 0


@pytest.mark.parametrize(
    "name, option, value, where",
    [
        ("svhn", "--n-train", 1, "the generators (svhn takes the splits of --svhn)"),
        ("svhn", "--n-val", 1, "the generators (svhn takes the splits of --svhn)"),
        ("svhn", "--n-test", 0, "the generators (svhn takes the splits of --svhn)"),
        ("svhn", "--digits", "mnist", "the MNIST scenes"),
        ("svhn", "--layout-bank", 7, "the mnist-hard scenes"),
        ("mnist-easy", "--layout-bank", -5, "the mnist-hard scenes"),
        ("gabor", "--layout-bank", 99, "the mnist-hard scenes"),
        ("gabor", "--digits", "mnist", "the MNIST scenes"),
        ("mnist-hard", "--svhn", "{tmp}", "'mist data make svhn'"),
    ],
)
def test_make_refuses_an_option_the_generator_does_not_read(
    capsys, tmp_path, name, option, value, where
):
    """Before: `data make svhn --n-train 1 --n-val 1 --n-test 1 --digits mnist --layout-bank 7`
    wrote the svhn splits whole (rc 0), and mnist-easy / gabor took --layout-bank -5 / 99."""
    value = value.format(tmp=tmp_path) if isinstance(value, str) else value
    source = ("--svhn", tmp_path / "nosvhn") if name == "svhn" else ()
    _assert_user_error(
        capsys, tmp_path, "make", name, "--out", tmp_path / "x", *source, option, value,
        match=f"mist data make: error: {option} only applies to {where}; {name} does not read it",
    )  # fmt: skip


def test_make_takes_the_options_its_generator_reads_and_their_defaults(capsys, tmp_path):
    """The refusal above is of options given other than their default, and of no option a
    generator reads; an unknown generator is still named as unknown."""
    sizes = ("--n-train", 1, "--n-val", 1, "--n-test", 1)
    argv = ("--digits", "embedded", "--layout-bank", 1024)
    assert mist(capsys, "data", "make", "gabor", "--out", tmp_path / "g", *sizes, *argv)[0] == 0
    argv = ("--layout-bank", 0, "--digits", "embedded")
    assert (
        mist(capsys, "data", "make", "mnist-hard-2", "--out", tmp_path / "h", *sizes, *argv)[0] == 0
    )
    rc, _, err = mist(capsys, "data", "make", "zzz", "--out", tmp_path / "z", "--layout-bank", 3)
    assert rc == 2 and "unknown scene generator 'zzz'" in err, err


def test_show_refuses_a_seed_with_a_dataset_directory(capsys, tmp_path):
    """Before: `mist data show DIR --seed 5` drew the same PNG as --seed 0 (the folder holds its
    scenes), without a word; open_dataset(DIR, seed=5) refuses it in Python."""
    sizes = ("--n-train", 1, "--n-val", 1, "--n-test", 2)
    assert mist(capsys, "data", "make", "mnist-easy", "--out", tmp_path / "d", *sizes)[0] == 0
    _assert_user_error(
        capsys, tmp_path, "show", tmp_path / "d", "--seed", 5, "--out", tmp_path / "a.png",
        match=f"--seed 5: {tmp_path / 'd'} is a dataset directory, which holds its scenes; "
        "--seed draws a generator's (mist data show mnist-hard --seed S)",
    )  # fmt: skip
    assert (
        mist(capsys, "data", "show", tmp_path / "d", "--seed", 0, "--out", tmp_path / "b.png")[0]
        == 0
    )
    assert (
        mist(capsys, "data", "show", "mnist-easy", "--seed", 5, "--out", tmp_path / "c.png")[0] == 0
    )


def test_show_refuses_more_scenes_than_one_figure_holds(capsys, tmp_path):
    """Before: ``mist data show mnist-hard --n 10000000`` set out to make ten million scenes
    (a generator makes them all before drawing); ``mist show --n`` is capped at 100 too."""
    result = mist(capsys, "data", "show", "mnist-hard", "--n", 257, "--out", tmp_path / "g.png")
    assert_user_error(result, "--n must be in [1, 256] (one panel each), got 257")
    assert list(tmp_path.iterdir()) == []


def test_data_make_losing_the_race_for_out_names_its_own_option(capsys, tmp_path, monkeypatch):
    """Before: a dataset that another process wrote into --out meanwhile was refused with
    write_dataset's Python hint, "or pass overwrite=True to replace it"."""
    from mistnet.commands import data as data_command
    from mistnet.data import store

    def another_process_first(out, *args, **kwargs):
        store.write_dataset(out, *args[:2])  # the other one lands first
        return store.write_dataset(out, *args, **kwargs)

    monkeypatch.setattr(data_command, "write_dataset", another_process_first)
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "x"]
    rc, _, err = mist(capsys, *argv, "--n-train", 1, "--n-val", 1, "--n-test", 1)
    assert rc == 2 and "pass --overwrite to replace it" in err and "overwrite=True" not in err


@pytest.mark.parametrize("empty", [False, True])
def test_make_overwrite_never_replaces_a_dataset_another_process_wrote_meanwhile(
    tmp_path, capsys, monkeypatch, empty
):
    """Before: two ``data make --overwrite`` into one new (or empty) folder both said "wrote",
    and the first one's dataset was replaced by the second's: the --overwrite given for a
    folder with no dataset replaced the one that appeared while the scenes were made."""
    import mistnet.commands.data as data_command
    from mistnet.data.manifest import read_manifest

    out = tmp_path / "E"
    if empty:
        out.mkdir()
    make_scenes, other = data_command.make_scenes, []

    def and_the_other_process_finishes(*args, **kwargs):
        if not other:  # the other command, run in here while this one makes its scenes
            other.append(["data", "make", "mnist-hard", "--out", out, "--n-train", "2"])
            assert mist(capsys, *other[0], "--n-val", "1", "--n-test", "1", "--seed", "7")[0] == 0
        return make_scenes(*args, **kwargs)

    monkeypatch.setattr(data_command, "make_scenes", and_the_other_process_finishes)
    argv = ["data", "make", "mnist-hard", "--out", out, "--n-train", "3", "--overwrite"]
    result = mist(capsys, *argv, "--n-val", "1", "--n-test", "1")
    assert_user_error(result, "E: another command wrote a dataset there while this one made")
    assert read_manifest(out)["seed"] == 7  # the other process's, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["E"]  # no temporary left
