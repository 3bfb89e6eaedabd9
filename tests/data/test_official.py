"""Importing the official layout reads only regular files inside its root, checks its numbers and
images, and scales 16-bit grey PNGs instead of clipping them."""

import os
import re

import numpy as np
import pytest
from cli_helpers import assert_user_error, mist
from helpers import png16, png_size_bomb
from PIL import Image

from mistnet.data.official import export_official, import_official, read_official
from mistnet.data.scenes import build_generator, make_scenes
from mistnet.data.store import write_dataset
from mistnet.errors import DataError


@pytest.fixture
def layout(tmp_path):
    """An official layout of two 80 x 80 train scenes; ``tmp_path / "secret.png"`` lies outside."""
    g = build_generator("mnist-hard", layout_bank=16)
    d = write_dataset(tmp_path / "ds", g.name, {"train": make_scenes(g, "train", range(2), 0)})
    Image.fromarray(np.full((80, 80, 3), 7, np.uint8)).save(tmp_path / "secret.png")
    return export_official(d, tmp_path / "off")


def first_image(off):
    return off / (off / "train.txt").read_text().splitlines()[0]


def list_first(off, name: str) -> None:
    lines = (off / "train.txt").read_text().splitlines()
    (off / "train.txt").write_text("\n".join([name, *lines[1:]]) + "\n")


def absolute(off):
    list_first(off, str(off.parent / "secret.png"))


def dotdot(off):
    list_first(off, "../secret.png")


def symlink_out(off):
    first_image(off).unlink()
    first_image(off).symlink_to(off.parent / "secret.png")


def through_a_link_loop(off):  # before: Python's RuntimeError ("Symlink loop") from read_official
    (off / "images" / "loop").symlink_to("loop")
    list_first(off, "images/loop/x.png")


def label_of_5001_digits(off):  # before: int()'s digit limit, an internal error
    (off / "train_labels.txt").write_text("9" + "0" * 5000 + ",2,3,4,5,6,7,8,9\n" * 2)


def keypoints_of_a_huge_declared_shape(off):  # before: "out of memory", no file named
    h = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 100000000000, 3), }"
    h = h + " " * (118 - len(h)) + "\n"
    header = b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h.encode()
    (off / "train_keypoints.npy").write_bytes(header + bytes(100))


def list_is_a_symlink_out(off):
    (off.parent / "list.txt").write_text((off / "train.txt").read_text())
    (off / "train.txt").unlink()
    (off / "train.txt").symlink_to(off.parent / "list.txt")


def fifo_image(off):
    first_image(off).unlink()
    os.mkfifo(first_image(off))


def fifo_keypoints(off):
    (off / "train_keypoints.npy").unlink()
    os.mkfifo(off / "train_keypoints.npy")


def latin1_labels(off):
    (off / "train_labels.txt").write_bytes("1,2\xe9\n".encode("latin-1") * 2)


def latin1_list(off):
    (off / "train.txt").write_bytes(b"images/train/\xe9.png\n" + (off / "train.txt").read_bytes())


def string_keypoints(off):
    np.save(off / "train_keypoints.npy", np.full((2, 9, 3), "a"))


def nan_keypoint(off):
    kp = np.load(off / "train_keypoints.npy")
    kp[1, 3, 0] = np.nan
    np.save(off / "train_keypoints.npy", kp)


def zero_radius(off):
    kp = np.load(off / "train_keypoints.npy")
    kp[0, 0, 2] = 0
    np.save(off / "train_keypoints.npy", kp)


def negative_label(off):
    (off / "train_labels.txt").write_text("-1,2,3,4,5,6,7,8,9\n" * 2)


def tiny_radius(off):  # 0 as float32: a box of side 0 (before: imported, then scored 0.0)
    kp = np.load(off / "train_keypoints.npy")
    kp[0, 0, 2] = 1e-50
    np.save(off / "train_keypoints.npy", kp)


def full_width_label(off):  # before: int() read it as 1
    (off / "train_labels.txt").write_text("\uff11,2,3,4,5,6,7,8,9\n" * 2)


def underscored_label(off):  # before: int() read it as 10
    (off / "train_labels.txt").write_text("1_0,2,3,4,5,6,7,8,9\n" * 2)


def val_of_another_size(off):  # before: refused once read, naming the output folder
    for end in (".txt", "_labels.txt", "_keypoints.npy"):
        (off / f"valid{end}").write_bytes((off / f"train{end}").read_bytes())
    (off / "valid.txt").write_text("images/valid/0.png\nimages/valid/1.png\n")
    (off / "images" / "valid").mkdir()
    for n in range(2):
        Image.new("L", (90, 90)).save(off / "images" / "valid" / f"{n}.png")


def huge_label(off):  # more than int64 holds
    (off / "train_labels.txt").write_text("99999999999999999999,2,3,4,5,6,7,8,9\n" * 2)


def size_bomb(off):
    png_size_bomb(first_image(off), 60000, 60000)


def far_keypoint(off):
    kp = np.load(off / "train_keypoints.npy")
    kp[1, 2, :2] = [5000, 40]
    np.save(off / "train_keypoints.npy", kp)


def huge_radius(off):
    kp = np.load(off / "train_keypoints.npy")
    kp[0, 1, 2] = 1e39
    np.save(off / "train_keypoints.npy", kp)


def text_keypoints(off):
    (off / "train_keypoints.npy").write_text("hello world\n")


def archive_keypoints(off):
    np.savez(off / "k.npz", kp=np.load(off / "train_keypoints.npy"))
    (off / "k.npz").replace(off / "train_keypoints.npy")


def listed_twice(off):
    lines = (off / "train.txt").read_text().splitlines()
    (off / "train.txt").write_text(f"{lines[0]}\n{lines[0]}\n")


def valid_without_its_list(off):
    for end in ("_labels.txt", "_keypoints.npy"):
        (off / f"valid{end}").write_bytes((off / f"train{end}").read_bytes())


@pytest.mark.parametrize(
    "damage, message",
    [
        (absolute, r"train.txt: '/.*secret.png' is an absolute path"),
        (dotdot, r"train.txt: '\.\./secret.png' holds '\.\.'; give paths inside the dataset root"),
        (symlink_out, r"train.txt: 'images/train/000000.png' is a link to .*secret.png, outside"),
        (list_is_a_symlink_out, r"'train.txt' is a link to .*list.txt, outside the dataset root"),
        (fifo_image, r"000000.png: a FIFO, not a regular file"),
        (fifo_keypoints, r"train_keypoints.npy: a FIFO, not a regular file"),
        (latin1_labels, r"train_labels.txt: not UTF-8 text \(byte 3 is 0xe9\); save it as UTF-8$"),
        (latin1_list, r"train.txt: not UTF-8 text"),
        (string_keypoints, r"train_keypoints.npy: keypoints must be numbers, got <U1"),
        # Before: "corrupt keypoints file (This file contains pickled (object) data ...
        # pickle.load())"; "keypoints must be numbers, got NpzFile"
        (text_keypoints, r"keypoints.npy: not a keypoints file \(no .npy header; a .npy array"),
        (archive_keypoints, r"keypoints.npy: not a keypoints file \(an .npz archive; a .npy arr"),
        (nan_keypoint, r"train_keypoints.npy: keypoints holds 1 NaN or infinite values"),
        (zero_radius, r"train_keypoints.npy: every radius .* must be > 0"),
        (negative_label, r"train_labels.txt line 1: label '-\d+' is not a class id"),
        (huge_label, r"train_labels.txt line 1: label '99999999999999999999' is not a class id"),
        (tiny_radius, r"train_keypoints.npy: a radius too small for a float32 number"),
        (through_a_link_loop, r"train.txt: 'images/loop/x.png' leads through a symbolic link"),
        (label_of_5001_digits, r"line 1: label '90+'\.\.\. \(5,001 characters\) is not"),
        (
            keypoints_of_a_huge_declared_shape,
            r"keypoints.npy: an array header asks for more memory",
        ),
        (full_width_label, r"train_labels.txt line 1: .* digits 0-9, got '\uff11'"),
        (underscored_label, r"train_labels.txt line 1: .* digits 0-9, got '1_0'"),
        (
            val_of_another_size,
            r"valid/0.png: size \(90, 90\) differs from \(80, 80\) of .*000000.png",
        ),
        (size_bomb, r"000000.png: more than [\d,]+ pixels \(Pillow's limit\)"),
        (
            far_keypoint,
            r"train_keypoints.npy: keypoint 2 of image 1 \(images/train/000001.png\) "
            r"is centred at \(5000, 40\), outside its 80x80 image",
        ),
        (
            listed_twice,
            r"train.txt: entry 2 'images/train/000000.png' is the image of train.txt "
            r"entry 1",
        ),
        (
            huge_radius,
            r"train_keypoints.npy: keypoints \(the box side is 2r\) holds 1 value beyond",
        ),
        (valid_without_its_list, r"valid.txt: missing, but the layout holds valid_labels.txt"),
    ],
)
def test_a_bad_layout_is_refused_naming_the_file(layout, damage, message):
    damage(layout)
    with pytest.raises(DataError, match=message):
        read_official(layout, progress=False)


def test_the_pixel_cap_applies_to_imported_images(layout):
    assert read_official(layout, progress=False, max_pixels=6400)["train"]["images"].shape[0] == 2
    with pytest.raises(DataError, match="80x80 = 6,400 pixels, more than the limit of 6,399"):
        read_official(layout, progress=False, max_pixels=6399)


def test_images_are_read_as_import_images_reads_them(layout):
    """Before: float TIFFs in 0..1 came out all black, 32-bit (``I``) ones were clipped at 255
    without a word, and transparent pixels kept their colour (import-images puts them over
    black): the same files made other datasets through the two importers."""
    names = (layout / "train.txt").read_text().splitlines()
    # TIFF data under the layout's .png names: Pillow reads a file by its content
    Image.fromarray(np.full((80, 80), 0.5, np.float32)).save(layout / names[0], "TIFF")
    Image.fromarray(np.full((80, 80), 40000, np.int32)).save(layout / names[1], "TIFF")
    images = read_official(layout, progress=False)["train"]["images"]
    assert images.shape == (2, 1, 80, 80)
    assert (images[0] == 128).all() and (images[1] == round(40000 / 65535 * 255)).all()
    Image.new("RGBA", (80, 80), (200, 100, 50, 0)).save(layout / names[0])
    Image.new("RGB", (80, 80), (200, 100, 50)).save(layout / names[1])
    images = read_official(layout, progress=False)["train"]["images"]
    assert (images[0] == 0).all() and images[1, :, 0, 0].tolist() == [200, 100, 50]


def test_16_bit_grey_images_are_scaled_not_clipped(layout):
    grey = np.zeros((80, 80), np.uint16)
    grey[0, :4] = [65535, 32768, 1000, 257]
    for line in (layout / "train.txt").read_text().splitlines():
        png16(layout / line, grey)
    assert Image.open(first_image(layout)).mode == "I;16"
    images = read_official(layout, progress=False)["train"]["images"]
    assert images.shape == (2, 1, 80, 80)  # grey: one channel
    assert images[0, 0, 0, :5].tolist() == [255, 128, 4, 1, 0]  # v / 257, rounded


def test_a_list_entry_in_another_unicode_form_than_its_file_is_read(layout):
    """Before: a list naming café.png (NFC) for a file stored as cafe\u0301.png (NFD, as macOS
    writes names) was "no such file", showing a name identical to the file's; import-images
    matched them."""
    first = first_image(layout)
    first.rename(first.with_name("cafe\u0301.png"))
    list_first(layout, "images/train/caf\u00e9.png")
    assert read_official(layout, progress=False)["train"]["images"].shape[0] == 2


def test_export_refuses_images_without_instances_which_the_layout_cannot_hold(capsys, tmp_path):
    """Before: a dataset whose counts are all 0 (an import with a COCO file of no annotations)
    was exported as blank label rows and (N, 0, 3) keypoints, which import-official then refused
    ("0 label rows for 8 images"): the official loader (``np.genfromtxt``) skips a blank row and
    takes K >= 1 patches, so such an image has no place in the layout."""
    (tmp_path / "imgs").mkdir()
    for i in range(10):
        Image.fromarray(np.full((16, 16), 20 * i, np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    coco = '{"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}'
    (tmp_path / "coco_empty.json").write_text(coco)
    argv = ["data", "import-images", tmp_path / "imgs", "--out", tmp_path / "ds", "--boxes"]
    assert mist(capsys, *argv, tmp_path / "coco_empty.json")[0] == 0
    assert_user_error(
        mist(capsys, "data", "export-official", tmp_path / "ds", tmp_path / "off"),
        "train.npz: the official layout needs at least one instance in every image",
    )
    assert not (tmp_path / "off").exists()


@pytest.mark.parametrize(
    ("root", "out", "error", "message"),
    [
        (None, "OUT", TypeError, "root must be a path as text, got NoneType"),
        ("", "OUT", ValueError, "root '' is an empty path; give the official layout's folder"),
        ("ROOT", "", ValueError, "out '' is an empty path"),
        ("ROOT", "o\0", ValueError, "out 'o\\x00' holds a NUL character"),
        ("ROOT", 5, TypeError, "out must be a path as text, got int"),
    ],
)
def test_import_official_refuses_a_path_argument_that_names_no_file_first(
    layout, tmp_path, root, out, error, message
):
    named = {"ROOT": layout, "OUT": tmp_path / "d"}
    with pytest.raises(error, match="^" + re.escape(message)):
        import_official(named.get(root, root), named.get(out, out))
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda d, o: export_official(d, 5), TypeError, "out must be a path as text, got int"),
        (lambda d, o: export_official(None, o), TypeError, "directory must be a path as text"),
        (lambda d, o: export_official("", o), ValueError, "directory '' is an empty path; give"),
        (lambda d, o: export_official(d, ""), ValueError, "out '' is an empty path"),
        (lambda d, o: export_official(d, o, progress="x"), TypeError, "progress must be"),
        (lambda d, o: read_official(5), TypeError, "root must be a path as text, got int"),
        (lambda d, o: read_official(d, progress="x"), TypeError, "progress must be"),
    ],
)
def test_export_and_read_official_refuse_a_bad_argument_first(
    layout, tmp_path, call, error, message
):
    """Before: pathlib's "expected str, bytes or os.PathLike object, not int" naming no argument;
    export_official("", out) exported the working directory's dataset, (d, "") said "OUT ."."""
    with pytest.raises(error, match="^" + re.escape(message)):
        call(tmp_path / "ds", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_an_empty_split_takes_the_image_size_of_the_others(layout, tmp_path, capsys):
    """Before: an empty valid split of a layout of 64 x 48 images was (0, 3, 80, 80), so the
    import was refused naming the output: "splits disagree on image shape ... 80, 80"; and an
    export into a layout said "inside the official OFF" (the word layout missing)."""
    off = tmp_path / "L"
    (off / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(off / "images" / "0.png")
    (off / "train.txt").write_text("images/0.png\n")
    (off / "test.txt").write_text("images/0.png\n")
    (off / "valid.txt").write_text("")
    for mode in ("train", "valid", "test"):
        (off / f"{mode}_labels.txt").write_text("" if mode == "valid" else "3\n")
        kp = np.zeros((0, 3, 3)) if mode == "valid" else np.array([[[20.0, 30.0, 5.0]]])
        np.save(off / f"{mode}_keypoints.npy", kp)
    with pytest.raises(DataError, match="is the image of train.txt entry 1"):  # listed twice
        read_official(off)
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(off / "images" / "1.png")
    (off / "test.txt").write_text("images/1.png\n")
    split = read_official(off)
    assert split["val"]["images"].shape == (0, 1, 64, 48)
    assert split["val"]["boxes"].shape == (0, 1, 4)  # and K (its K of 3 was the dataset's)
    assert import_official(off, tmp_path / "d") == tmp_path / "d"
    assert_user_error(
        mist(capsys, "data", "export-official", tmp_path / "d", layout / "sub"),
        f"OUT {layout / 'sub'} is inside the official layout {layout}",
    )


def test_an_import_official_that_finds_its_out_taken_at_the_end_offers_no_overwrite(
    layout, tmp_path, monkeypatch
):
    """The loser of two imports at once was told "or pass overwrite=True", an option
    import_official and import-official do not have."""
    import mistnet.data.official as official

    read = official.read_official

    def other_import_wins(*args):
        monkeypatch.setattr(official, "read_official", read)
        import_official(layout, tmp_path / "d")
        return read(*args)

    monkeypatch.setattr(official, "read_official", other_import_wins)
    with pytest.raises(DataError, match="already holds a dataset") as caught:
        import_official(layout, tmp_path / "d")
    assert "overwrite" not in str(caught.value)


def test_export_says_the_class_names_it_cannot_keep(tmp_path):
    """Before: dropped without a word; a run trained on the import was then refused on the
    original dataset ("names the classes ...; the run was trained on classes without names")."""
    from mistnet.errors import MistWarning

    g = build_generator("mnist-hard", layout_bank=16)
    names = [f"c{i}" for i in range(10)]
    splits = {"train": make_scenes(g, "train", range(2), 0)}
    d = write_dataset(tmp_path / "ds", g.name, splits, manifest={"classes": names})
    with pytest.warns(MistWarning, match="holds class ids only; the names c0, c1, .* are not kept"):
        export_official(d, tmp_path / "off")
