"""Inputs parsed once at the boundary: one case per bad COCO file, CSV, config, log or number,
through the ``mist`` command line: exit status 2, one stderr line naming the file (or option),
the field and the value, and no file written, changed or removed (TESTING.md lists them)."""

import contextlib
import io
import json
import os
import struct
import tempfile

import numpy as np
import pytest
from cli_helpers import assert_user_error, check_refused, files_under, mist
from PIL import Image

from mistnet.commands import plot
from mistnet.data.images import import_images

CASES = {}


def case(make):
    """Register ``make(tmp_path, run) -> (argv, fragments of the one stderr line)``."""
    CASES[make.__name__] = make
    return make


def photos(tmp_path, n=1, size=48):
    """A folder of ``n`` grey ``size`` x ``size`` PNGs ``0.png``, ``1.png``, ..."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(n):
        a = np.random.default_rng(i).integers(0, 256, (size, size), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"{i}.png")
    return folder


def coco(tmp_path, images=None, annotations=None, categories=None, text=None):
    """An import-images argv with a COCO file of these lists (or of ``text``)."""
    src = photos(tmp_path)
    doc = {
        "images": images if images is not None else [{"id": 1, "file_name": "0.png"}],
        "annotations": annotations
        if annotations is not None
        else [{"image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 10]}],
        "categories": categories if categories is not None else [{"id": 1, "name": "cat"}],
    }
    path = tmp_path / "boxes.json"
    path.write_bytes(text if text is not None else json.dumps(doc).encode())
    return ["data", "import-images", src, "--out", tmp_path / "ds", "--boxes", path]


# -- COCO annotations and box CSVs (mist data import-images) --------------------------------


@case
def coco_box_outside_the_image(tmp_path, run):
    argv = coco(tmp_path, annotations=[{"image_id": 1, "category_id": 1, "bbox": [-500, 0, 9, 9]}])
    return argv, ["boxes.json (0.png)", "cx, cy, w, h = -496", "outside the 48x48 image"]


@case
def coco_bbox_a_string(tmp_path, run):
    argv = coco(tmp_path, annotations=[{"image_id": 1, "category_id": 1, "bbox": "1234"}])
    return argv, ["boxes.json: annotations[0].bbox", "'1234'"]


@case
def coco_duplicate_image_ids(tmp_path, run):
    ims = [{"id": 1, "file_name": "0.png"}, {"id": 1, "file_name": "0.png"}]
    return coco(tmp_path, images=ims), ["boxes.json: image id 1 appears twice"]


@case
def coco_two_records_of_one_file(tmp_path, run):
    ims = [{"id": 1, "file_name": "0.png"}, {"id": 2, "file_name": "./0.png"}]
    return coco(tmp_path, images=ims), ["boxes.json: image ids 1 and 2 both name", "'./0.png'"]


@case
def coco_size_of_another_image(tmp_path, run):
    ims = [{"id": 1, "file_name": "0.png", "width": 640, "height": 480}]
    return coco(tmp_path, images=ims), [
        "boxes.json (0.png): the annotations say 640x480, the image file is 48x48"
    ]


@case
def coco_width_without_a_height(tmp_path, run):
    ims = [{"id": 1, "file_name": "0.png", "width": 48}]
    return coco(tmp_path, images=ims), ["boxes.json: images[0]: no 'height' key"]


@case
def coco_keys_left_out(tmp_path, run):
    # Before: "images[0].id: expected an integer, got None" of a key that is not there
    return coco(tmp_path, images=[{"file_name": "0.png"}]), ["images[0]: no 'id' key"]


@case
def coco_annotation_without_bbox(tmp_path, run):
    argv = coco(tmp_path, annotations=[{"image_id": 1, "category_id": 1}])
    return argv, ["boxes.json: annotations[0]: no 'bbox' key"]


@case
def coco_duplicate_category_names(tmp_path, run):
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}]
    return coco(tmp_path, categories=cats), ["boxes.json: category name 'cat' appears twice"]


@case
def coco_empty_category_name(tmp_path, run):
    cats = [{"id": 1, "name": " "}]
    return coco(tmp_path, categories=cats), ["categories[0].name", "non-empty string, got ' '"]


@case
def coco_duplicate_annotation_ids(tmp_path, run):
    box = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 10]}
    return coco(tmp_path, annotations=[box, box]), ["boxes.json: annotation id 1 appears twice"]


@case
def coco_image_id_a_boolean(tmp_path, run):
    ims = [{"id": True, "file_name": "0.png"}]
    return coco(tmp_path, images=ims), ["boxes.json: images[0].id: expected an integer, got True"]


@case
def coco_image_id_a_fraction(tmp_path, run):
    """Before and now refused: 1.5 is no id (``1.0`` is accepted now, as pycocotools reads it)."""
    ims = [{"id": 1.5, "file_name": "0.png"}]
    return coco(tmp_path, images=ims), ["boxes.json: images[0].id: expected an integer, got 1.5"]


@case
def coco_category_id_a_float_beyond_int64(tmp_path, run):
    box = {"image_id": 1.0, "category_id": 1e19, "bbox": [4, 4, 10, 10]}
    return coco(tmp_path, annotations=[box]), [
        "boxes.json: annotations[0].category_id: expected an integer, got 1e+19"
    ]


@case
def coco_size_as_stored_before_the_exif_rotation(tmp_path, run):
    """Before: "the annotations say 100x60, the image file is 60x100; they describe another
    image or another version of it", while the file's header, and Pillow's
    ``Image.open(f).size``, say 100x60: its EXIF orientation 6 turns it upright."""
    argv = coco(tmp_path, images=[{"id": 1, "file_name": "r.jpg", "width": 100, "height": 60}])
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (100, 60), (90, 90, 90)).save(tmp_path / "photos" / "r.jpg", exif=exif)
    return argv, [
        "boxes.json (r.jpg): the annotations say 100x60, the image's stored size, but its EXIF "
        "orientation 6 makes it 60x100 upright; mistnet reads images upright, so boxes must be "
        "in the upright frame"
    ]


@case
def coco_category_name_a_number(tmp_path, run):
    cats = [{"id": 1, "name": 7}]
    return coco(tmp_path, categories=cats), ["boxes.json: categories[0].name: expected a"]


@case
def coco_infinite_image_id(tmp_path, run):
    text = b'{"images": [{"id": Infinity, "file_name": "0.png"}]}'
    return coco(tmp_path, text=text), ["boxes.json: not valid JSON", "Infinity"]


@case
def coco_bbox_given_twice(tmp_path, run):
    text = b'{"images": [], "annotations": [{"bbox": [1, 1, 5, 5], "bbox": [30, 30, 5, 5]}]}'
    return coco(tmp_path, text=text), ["boxes.json: not valid JSON", "'bbox' appears twice"]


@case
def coco_nested_too_deeply(tmp_path, run):
    return coco(tmp_path, text=b"[" * 100_000), ["boxes.json: not valid JSON (nested too deeply)"]


@case
def coco_in_utf16(tmp_path, run):
    text = json.dumps({"images": []}).encode("utf-16")
    return coco(tmp_path, text=text), ["boxes.json: UTF-16 text", "save it as UTF-8"]


@case
def coco_without_an_images_key(tmp_path, run):
    # Before: "'images' must be a list of objects", as if one were written
    text = json.dumps({"annotations": [], "categories": []}).encode()
    return coco(tmp_path, text=text), ["boxes.json: no 'images' key (COCO annotations have"]


@case
def boxes_csv_with_one_class_left_empty(tmp_path, run):
    # Before: "boxes.csv: a row has an empty class", naming no line
    src = photos(tmp_path, n=2)
    (tmp_path / "boxes.csv").write_text(
        "filename,cx,cy,w,h,class\n0.png,10,10,8,8,cat\n1.png,20,20,8,8,\n"
    )
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    return [*argv, "--boxes", tmp_path / "boxes.csv"], ["boxes.csv line 3: an empty class"]


@case
def import_of_a_photo_turned_by_its_exif_among_others(tmp_path, run):
    # Before: "photos: images differ in size (48x64, 64x48, ...)", naming no file, and only
    # once every image was decoded
    src = photos(tmp_path, n=3, size=48)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 64x48, read upright as 48x64
    Image.new("L", (64, 48), 90).save(src / "1.jpg", exif=exif)
    Image.new("L", (64, 48), 90).save(src / "0.png")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    return argv, [
        "photos: images differ in size: 0.png is 64x48, 1.jpg 48x64 (1.jpg read upright by its",
        "pass --size H W or --crop H W",
    ]


@case
def import_of_two_sizes_neither_turned(tmp_path, run):
    # Before: "(read upright by its EXIF orientation)" said of any two transposed sizes
    src = photos(tmp_path, n=1, size=48)
    Image.new("L", (64, 48), 90).save(src / "0.png")
    Image.new("L", (48, 64), 90).save(src / "1.png")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    return argv, ["images differ in size: 0.png is 64x48, 1.png 48x64; pass --size H W"]


@case
def boxes_csv_naming_a_missing_image(tmp_path, run):
    src = photos(tmp_path)
    (tmp_path / "boxes.csv").write_text("filename,cx,cy,w,h\nnope.png,1,2,3,4\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    return [*argv, "--boxes", tmp_path / "boxes.csv"], ["boxes.csv line 2: no image 'nope.png'"]


@case
def boxes_csv_with_a_word_for_a_number(tmp_path, run):
    src = photos(tmp_path)
    (tmp_path / "boxes.csv").write_text("filename,cx,cy,w,h\n0.png,1,two,3,4\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    return [*argv, "--boxes", tmp_path / "boxes.csv"], ["line 2: expected numbers", "1, two, 3, 4"]


@case
def boxes_csv_beyond_float32(tmp_path, run):
    src = photos(tmp_path)
    (tmp_path / "boxes.csv").write_text("filename,cx,cy,w,h\n0.png,10,10,1e39,5\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]  # was clipped, accepted
    fragments = ["boxes.csv line 2: the box 10, 10, 1e+39, 5 holds 1 value beyond float32's"]
    return [*argv, "--boxes", tmp_path / "boxes.csv"], fragments


@case
def coco_bbox_beyond_float32(tmp_path, run):
    argv = coco(tmp_path, annotations=[{"image_id": 1, "category_id": 1, "bbox": [1e39, 0, 9, 9]}])
    return argv, ["boxes.json: annotations[0].bbox: the box 1e+39", "value beyond float32's range"]


@case
def coco_crowd_annotation(tmp_path, run):
    crowd = {"image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 30], "iscrowd": 1}
    argv = coco(tmp_path, annotations=[crowd])
    return argv, ["boxes.json: annotations[0]: iscrowd is 1", "how many unknown"]


@case
def coco_crowd_annotation_given_as_true(tmp_path, run):
    """Before (once 1.0 ids were read): "iscrowd: expected 0 or 1, got True"."""
    crowd = {"image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 30], "iscrowd": True}
    argv = coco(tmp_path, annotations=[crowd])
    return argv, ["boxes.json: annotations[0]: iscrowd is 1", "how many unknown"]


def test_a_coco_iscrowd_of_false_is_no_crowd():
    """Before (once 1.0 ids were read): "iscrowd: expected 0 or 1, got False" refused a file
    that had imported."""
    from mistnet.data.annotations import _coco_not_crowd

    for value in (False, 0, 0.0):
        _coco_not_crowd({"iscrowd": value}, "annotations[0]")


@case
def coco_iscrowd_not_0_or_1(tmp_path, run):
    odd = {"image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 30], "iscrowd": "no"}
    return coco(tmp_path, annotations=[odd]), ["annotations[0].iscrowd: expected 0 or 1, got 'no'"]


@case
def coco_bbox_of_an_integer_beyond_floats(tmp_path, run):
    # Before: internal error (OverflowError: int too large to convert to float).
    huge = {"image_id": 1, "category_id": 1, "bbox": [10**400, 4, 30, 30]}
    argv = coco(tmp_path, annotations=[huge])
    return argv, ["annotations[0].bbox: a number beyond the range of floats"]


@case
def coco_the_same_annotation_twice_without_ids(tmp_path, run):
    # Before: imported as two instances (only repeated ids were refused).
    same = {"image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 30]}
    argv = coco(tmp_path, annotations=[same, dict(same)])
    return argv, ["annotations[0] and [1] give the same box of image 1"]


@case
def boxes_csv_with_zero_and_minus_zero(tmp_path, run):
    src = photos(tmp_path)  # before: -0.0 and 0.0 were two boxes
    (tmp_path / "b.csv").write_text("filename,cx,cy,w,h\n0.png,-0.0,9,5,5\n0.png,0.0,9,5,5\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--boxes", tmp_path / "b.csv"]
    return argv, ["b.csv lines 2 and 3: the same box of 0.png given twice"]


def csv_case(option, file):
    """A registrar of cases: ``import-images OPTION FILE`` of a CSV ``text``, refused with
    ``fragments`` (and the file's name) in its line."""

    def register(name, text, *fragments):
        def make(tmp_path, run):
            src = photos(tmp_path)
            (tmp_path / file).write_text(text)
            argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
            return [*argv, option, tmp_path / file], [file, *fragments]

        make.__name__ = name
        case(make)

    return register


boxes_csv_case = csv_case("--boxes", "b.csv")
labels_csv_case = csv_case("--labels", "labels.csv")


# Before: "the header names 10, 5 more than once"; 1_0 read as 10.
boxes_csv_case("boxes_csv_without_a_header", "0.png,10,10,5,5\n", "the first line is no header")
boxes_csv_case("boxes_csv_naming_class_and_label", "filename,cx,cy,w,h,class,label\n0.png,9,9,5,5,a,b\n",
               "the header names both class and label; keep one")  # fmt: skip
# Before: a dataset written with a box of side 0 (every command then blamed its manifest);
# an unclosed quote swallowed the rows after it ("no row for 1.png"); a class "a,b" listed as
# two.
boxes_csv_case("boxes_csv_with_a_side_below_float32", "filename,cx,cy,w,h\n0.png,9,9,1e-50,3\n",
               "line 2: the box 9, 9, 1e-50, 3 has a side too small for float32")  # fmt: skip
labels_csv_case("labels_csv_with_an_unclosed_quote", 'filename,labels\n0.png,"a\n',
                "line 2: not a readable CSV file (unexpected end of data")  # fmt: skip
labels_csv_case("labels_csv_class_with_a_comma", 'filename,labels\n0.png,"a,b"\n',
                "class name 'a,b' holds a comma")  # fmt: skip
boxes_csv_case("boxes_csv_with_a_category_column", "filename,cx,cy,w,h,category\n0.png,9,9,5,5,a\n",
               "the header names 'category', which import-images does not read")  # fmt: skip
boxes_csv_case("boxes_csv_with_an_underscore_number", "filename,cx,cy,w,h\n0.png,1_0,9,5,5\n",
               "line 2: expected numbers in cx, cy, w, h, got 1_0")  # fmt: skip
# Before: Arabic-Indic and full-width digits read as 12 and 4 (Python's float takes them).
boxes_csv_case("boxes_csv_with_non_ascii_digits", "filename,cx,cy,w,h\n0.png,\u0661\u0662,9,\uff14,5\n",
               "line 2: expected numbers in cx, cy, w, h, got \u0661\u0662, 9, \uff14, 5")  # fmt: skip


# Before: an internal error (ValueError: embedded null byte), from labels, boxes and COCO; a
# second class "\u200ba" that printed as "a".
labels_csv_case("file_name_with_a_nul", "filename,labels\n0.png\x00,a\n",
                "line 2: '0.png\\x00' holds a NUL character; no file is named so")  # fmt: skip
# Before: "line 4" for the bad row on line 7 (blank lines were not counted); \x1c taken as a
# space between two classes (str.split), where a boxes CSV refused it; a long field blamed on
# "an unclosed quote?" in a file without quotes.
boxes_csv_case("boxes_csv_with_blank_lines_before_a_bad_row", "filename,cx,cy,w,h\n\n\n0.png,9,9,5,5\n\n\n0.png,x,9,5,5\n",
               "line 7: expected numbers in cx, cy, w, h, got x, 9, 5, 5")  # fmt: skip
labels_csv_case("labels_csv_class_with_a_separator_control", "filename,labels\n0.png,cat\x1cdog\n",
                "line 2: class name 'cat\\x1cdog' holds the control character")  # fmt: skip
labels_csv_case("labels_csv_with_a_field_past_the_limit", "filename,labels\n0.png," + "a" * 140_000,
                "line 2: not a readable CSV file (field larger than field limit (131072))")  # fmt: skip


@case
def labels_csv_in_utf16_without_a_byte_order_mark(tmp_path, run):
    src = photos(tmp_path)  # was "'f\x00i\x00l\x00...' holds a NUL character"
    (tmp_path / "labels.csv").write_bytes("filename,labels\n0.png,a\n".encode("utf-16-le"))
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    fragments = ["labels.csv: UTF-16-LE text (NUL bytes between its characters, no byte-order"]
    return [*argv, "--labels", tmp_path / "labels.csv"], fragments


labels_csv_case("labels_csv_class_with_a_zero_width_space", "filename,labels\n0.png,a \u200ba\n",
                "class name '\\u200ba' starts or ends with the invisible '\\u200b'")  # fmt: skip


@case
def import_images_per_image_without_crop(tmp_path, run):
    src = photos(tmp_path)  # was "--per-image N >= 1 goes with --crop, got 3"
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--per-image", "3"]
    return argv, ["--per-image 3 takes crops: add --crop H W"]


@case
def plot_a_key_twice(tmp_path, run):
    argv = ["plot", run, "--key", "task", "--key", "task", "--out", tmp_path / "p.png"]
    return argv, ["--key task is given twice; name each curve once"]  # was drawn twice


@case
def boxes_csv_naming_a_column_twice(tmp_path, run):
    src = photos(tmp_path)
    (tmp_path / "boxes.csv").write_text("filename,cx,cy,w,h,cx\n0.png,10,10,5,5,3\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    return [*argv, "--boxes", tmp_path / "boxes.csv"], ["boxes.csv: the header names cx more"]


@case
def boxes_csv_with_both_box_forms(tmp_path, run):
    src = photos(tmp_path)
    (tmp_path / "boxes.csv").write_text("filename,cx,cy,w,h,x,y,side\n0.png,1,1,5,5,9,9,5\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    return [*argv, "--boxes", tmp_path / "boxes.csv"], ["both cx,cy,w,h and x,y,side"]


@case
def boxes_csv_with_a_row_twice(tmp_path, run):
    src = photos(tmp_path)
    rows = "filename,cx,cy,w,h,class\n" + "0.png,10,10,5,5,a\n" * 2  # was two instances
    (tmp_path / "boxes.csv").write_text(rows)
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    fragments = ["boxes.csv lines 2 and 3: the same box of 0.png given twice"]
    return [*argv, "--boxes", tmp_path / "boxes.csv"], fragments


@case
def boxes_csv_with_a_row_longer_than_the_header(tmp_path, run):
    src = photos(tmp_path)
    (tmp_path / "boxes.csv").write_text("filename,cx,cy,w,h\n0.png,10,10,5,5,cat\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]  # was: "cat" dropped
    fragments = ["boxes.csv line 2: 6 fields, the header names 5"]
    return [*argv, "--boxes", tmp_path / "boxes.csv"], fragments


@case
def coco_category_name_with_a_newline(tmp_path, run):
    cats = [{"id": 1, "name": "cat\ndog"}]
    fragments = ["boxes.json: categories[0].name: class name 'cat\\ndog' holds the control"]
    return coco(tmp_path, categories=cats), fragments


@case
def boxes_csv_class_with_a_nul(tmp_path, run):
    src = photos(tmp_path)
    (tmp_path / "boxes.csv").write_text("filename,cx,cy,w,h,class\n0.png,9,9,5,5,a\tb\x00\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    fragments = ["boxes.csv line 2: class name 'a\\tb\\x00' holds the control character '\\t'"]
    return [*argv, "--boxes", tmp_path / "boxes.csv"], fragments


@case
def labels_csv_class_with_an_escape_sequence(tmp_path, run):
    src = photos(tmp_path, n=3)
    rows = "".join(f"{i}.png,cat\x1b[31mred\n" for i in range(3))
    (tmp_path / "labels.csv").write_text(rows)
    argv = ["data", "import-images", src, "--out", tmp_path / "ds"]
    fragments = ["labels.csv line 1: class name 'cat\\x1b[31mred' holds the control character"]
    return [*argv, "--labels", tmp_path / "labels.csv"], fragments


# -- numbers on the command line ------------------------------------------------------------


@case
def import_images_negative_seed(tmp_path, run):
    argv = ["data", "import-images", photos(tmp_path), "--out", tmp_path / "ds", "--seed", "-1"]
    return argv, ["--seed must be an integer in [0, 2**63), got -1"]


@case
def import_images_a_hundred_million_crops_per_image(tmp_path, run):
    argv = ["data", "import-images", photos(tmp_path), "--out", tmp_path / "ds"]
    argv += ["--crop", "8", "8", "--per-image", "100000000"]
    return argv, ["--per-image must be at most 10,000, got 100,000,000"]


@case
def data_make_negative_seed(tmp_path, run):
    argv = ["data", "make", "mnist-easy", "--out", tmp_path / "ds", "--n-train", "2"]
    return [*argv, "--n-val", "1", "--n-test", "1", "--seed", "-1"], ["--seed must be", "-1"]


@case
def demo_negative_seed(tmp_path, run):
    return ["demo", "--out", tmp_path / "demo", "--seed", "-1"], ["--seed must be", "got -1"]


@case
def demo_minutes_nan(tmp_path, run):
    return ["demo", "--out", tmp_path / "demo", "--minutes", "nan"], ["--minutes", "got nan"]


@pytest.mark.parametrize("value", ["-1", "nan", "0"])
def test_max_minutes_must_be_a_positive_time(capsys, tmp_path, value):
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "r", "--max-minutes", value]
    assert_user_error(mist(capsys, *argv), "--max-minutes must be", value)
    assert list(tmp_path.iterdir()) == []


@case
def train_a_huge_config_seed(tmp_path, run):
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "r", "--set", "data.seed=-1"]
    return argv, ["data.seed must be >= 0, got -1"]


@case
def train_a_key_the_method_never_reads(tmp_path, run):
    # Before: the grid baseline trained as without it, and config.json recorded it as used.
    sets = ["--set", "train.method=grid", "--set", "train.lr_heatmap=1e-3"]
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "r", *sets]
    return argv, ["train.lr_heatmap = 0.001: not read under train.method = 'grid'"]


@case
def train_a_toml_with_a_key_its_task_never_reads(tmp_path, run):
    (tmp_path / "mine.toml").write_text(
        '[model]\ntask = "reconstruct"\n[train]\nclass_loss = "set"\n'
    )
    argv = ["train", "--preset", tmp_path / "mine.toml", "--out", tmp_path / "r"]
    return argv, ["mine.toml: train.class_loss = 'set': not read under model.task = 'reconstruct'"]


# -- config files, run files and logs -------------------------------------------------------


@case
def train_on_a_non_utf8_toml(tmp_path, run):
    (tmp_path / "mine.toml").write_bytes(b"[model]\nk = 4  # caf\xe9\n")
    argv = ["train", "--preset", tmp_path / "mine.toml", "--out", tmp_path / "r"]
    return argv, ["mine.toml: not UTF-8 text (byte 20 is 0xe9)"]


@case
def train_on_a_toml_with_a_wrong_section(tmp_path, run):
    (tmp_path / "mine.toml").write_text("model = 3\n")
    argv = ["train", "--preset", tmp_path / "mine.toml", "--out", tmp_path / "r"]
    return argv, ["mine.toml: config section 'model' must be a table"]


@case
def eval_a_run_whose_config_is_not_utf8(tmp_path, run):
    (run / "config.json").write_bytes((run / "config.json").read_bytes() + b"\xff")
    return ["eval", run], ["config.json: not UTF-8 text"]


@case
def detect_with_a_config_of_nan(tmp_path, run):
    (run / "config.json").write_text('{"train": {"lr_task": NaN}}')
    image = photos(tmp_path) / "0.png"
    argv = ["detect", run, image, "--out", tmp_path / "d"]
    return argv, ["config.json: not valid JSON (NaN is not a JSON number)"]


@case
def detect_given_a_checkpoint_file(tmp_path, run):
    image = photos(tmp_path) / "0.png"
    argv = ["detect", run / "best.safetensors", image, "--out", tmp_path / "d"]
    return argv, ["best.safetensors is a file; give the run directory"]


@case
def detect_side_far_too_small(tmp_path, run):
    image = photos(tmp_path) / "0.png"
    argv = ["detect", run, image, "--side", "0.001", "--out", tmp_path / "d"]
    return argv, ["0.png with --side 0.001: 48x48 becomes 960000x960000 = ", "(--max-pixels)"]


@case
def detect_side_of_1e_minus_308(tmp_path, run):
    """Before: ``round()`` of an infinite size, an internal error (1e-300 was refused with a
    message of 1,560 characters, spelling the pixel count in full)."""
    image = photos(tmp_path) / "0.png"
    argv = ["detect", run, image, "--side", "1e-308", "--tile", "--out", tmp_path / "d"]
    return argv, ["0.png with --side 1e-308: 48x48 becomes beyond 1e308 x 1e308 pixels, more than"]


@case
def detect_side_of_1e_minus_290(tmp_path, run):
    image = photos(tmp_path) / "0.png"
    argv = ["detect", run, image, "--side", "1e-290", "--out", tmp_path / "d"]
    return argv, ["0.png with --side 1e-290: 48x48 becomes 9.6e+292x9.6e+292 pixels, more than"]


def log_case(name, content, *fragments):
    def make(tmp_path, run):
        (run / "log.jsonl").write_bytes(content)
        return ["plot", run, "--out", tmp_path / "c.png"], ["log.jsonl", *fragments]

    make.__name__ = name
    case(make)


TRAIN = b'{"step": 5, "split": "train", "wall": 1.0, "task": 2.0}\n'
log_case("plot_a_log_cut_in_the_middle", b'{"step": 1, "spl\n' + TRAIN, "line 1: not valid JSON")
log_case("plot_a_log_line_that_is_a_list", b"[1, 2]\n" + TRAIN, "line 1: not a log record", "list")
log_case("plot_a_wall_that_is_a_string", TRAIN + b'{"step": 6, "split": "train", "wall": "x"}\n')
log_case("plot_a_line_without_a_step", b'{"split": "train", "task": 1.0}\n', "no 'step' key")
log_case("plot_a_loss_that_is_text", b'{"step": 1, "split": "train", "task": "1"}\n', "'task'")
log_case("plot_an_empty_log", b"", "empty; the run has not logged a step yet")
log_case("plot_a_non_utf8_log", TRAIN + b"\xfe\n", "not UTF-8 text")
# Before: an internal error; read as infinity and drawn; "'wall' must be a number, got -5".
log_case("plot_a_step_of_24_digits", b'{"step": 100000000000000000000000, "split": "train"}\n',
         "'step' must be an integer in [0, 2**63)")  # fmt: skip
log_case("plot_a_loss_of_1e400", TRAIN + b'{"step": 6, "split": "train", "task": 1e400}\n',
         "line 2: not valid JSON (1e400 is beyond the range of floats)")  # fmt: skip
log_case("plot_values_too_large_to_draw",
         b'{"step": 2, "split": "train", "task": 1e308}\n{"step": 4, "split": "train", "task": -1e308}\n',
         "the curves hold values too large to draw")  # fmt: skip
log_case("plot_a_negative_wall", b'{"step": 1, "split": "train", "wall": -5}\n',
         "'wall' must be a number >= 0 (seconds), got -5")  # fmt: skip


# -- what a run fits ------------------------------------------------------------------------


def labelled_dataset(tmp_path, labels):
    """An imported dataset of 8 48x48 grey images labelled ``labels[i]`` (a CSV field)."""
    src = photos(tmp_path, n=len(labels))
    rows = "".join(f"{i}.png,{names}\n" for i, names in enumerate(labels))
    (tmp_path / "labels.csv").write_text("filename,labels\n" + rows)
    import_images(src, tmp_path / "ds", labels=tmp_path / "labels.csv", val=0.25, test=0.25)
    return tmp_path / "ds"


@case
def train_on_a_dataset_imported_without_a_val_split(tmp_path, run):
    """Before: "ds/val.npz: split 'val' not in this dataset (have: train)", as if the dataset
    were damaged, for data imported with --val 0 on purpose."""
    src = photos(tmp_path, n=4)
    (tmp_path / "labels.csv").write_text(
        "filename,labels\n" + "".join(f"{i}.png,a\n" for i in range(4))
    )
    import_images(src, tmp_path / "ds", labels=tmp_path / "labels.csv", val=0, test=0)
    argv = ["train", "--preset", "tiny-cpu", "--data", tmp_path / "ds", "--out", tmp_path / "r"]
    overrides = ["--set", "model.num_classes=1", "--set", "train.batch_size=2"]
    return [*argv, *overrides], [
        "ds has no val split, which mist train validates on: import the data again with --val F "
        "(a fraction in (0, 1), e.g. 0.1)"
    ]


@case
def train_on_a_made_dataset_without_a_val_split(tmp_path, run):
    """Before: told to import it again with --val N, an option of import-images (a fraction
    there); a dataset of a generator is made again with --n-val."""
    from mistnet.data.scenes import build_generator, make_scenes
    from mistnet.data.store import write_dataset

    g = build_generator("mnist-hard", layout_bank=16)
    splits = {s: make_scenes(g, s, range(4), 0) for s in ("train", "test")}
    write_dataset(tmp_path / "ds", g.name, splits, {"generator": g.name})
    argv = ["train", "--preset", "tiny-cpu", "--data", tmp_path / "ds", "--out", tmp_path / "r"]
    return argv, ["ds has no val split, which mist train validates on: make the data again with "
                  "--n-val N (N > 0)"]  # fmt: skip


@case
def train_an_auto_encoder_on_float_images_of_a_dataset(tmp_path, run):
    """Before: "holds signed (Gabor) images" of float32 images that were neither."""
    from mistnet.data.scenes import build_generator, make_scenes
    from mistnet.data.store import write_dataset

    g = build_generator("mnist-hard", layout_bank=16)
    splits = {s: make_scenes(g, s, range(4), 0) for s in ("train", "val", "test")}
    for arrays in splits.values():
        arrays["images"] = arrays["images"].astype("float32") / 255
    write_dataset(tmp_path / "ds", g.name, splits)
    argv = ["train", "--preset", "tiny-cpu", "--data", tmp_path / "ds", "--out", tmp_path / "r"]
    return [*argv, "--set", "model.task=reconstruct"], [
        "holds float32 (read as signed textures, as Gabor noise) images but the run's "
        "auto-encoder has sigmoid output"
    ]


@case
def data_make_with_a_layout_bank_past_numpys_integers(tmp_path, run):
    """Before: 2**64 - 1 was an internal error as scenes were drawn (numpy's "high is out of
    bounds for int64")."""
    argv = ["data", "make", "mnist-hard", "--out", tmp_path / "d", "--layout-bank", 2**64 - 1]
    return argv, [
        "--layout-bank must be in [0, 9,223,372,036,854,775,807], got 18446744073709551615"
    ]


@case
def eval_with_a_k_of_67_bits(tmp_path, run):
    """Before: "... too few pixels for an integer of 67 bits detections"."""
    argv = ["eval", run, "--k", 10**20, "--json", tmp_path / "e.json"]
    return argv, ["too few pixels for that many detections (at most"]


@case
def detect_with_a_min_score_just_above_one(tmp_path, run):
    """Before: "--min-score must be a score in [0, 1], got 1" (:g)."""
    image = tmp_path / "a.png"
    Image.new("L", (48, 48)).save(image)
    argv = ["detect", run, image, "--out", tmp_path / "d", "--min-score", "1.0000001"]
    return argv, ["--min-score must be a score in [0, 1], got 1.0000001"]


@case
def train_a_classifier_on_images_without_labels(tmp_path, run):
    ds = labelled_dataset(tmp_path, ["a b", "", "a", "", "b", "a", "b", "a"])
    argv = ["train", "--preset", "tiny-cpu", "--data", ds, "--out", tmp_path / "r"]
    overrides = ["--set", "model.num_classes=2", "--set", "train.batch_size=2"]
    return [*argv, *overrides], [
        "of the 4 training images have no label (a count of 0: an empty labels"
    ]


@case
def eval_with_k_zero(tmp_path, run):
    return ["eval", run, "--k", "0"], ["--k must be at least 1", "leave it out"]


@case
def eval_more_detections_than_pixels(tmp_path, run):
    argv = ["eval", run, "--k", "100000"]
    return argv, ["--k 100000", "80x80 images, too few pixels for 100000 detections (at most 6400)"]


@case
def detect_with_k_zero(tmp_path, run):
    argv = ["detect", run, photos(tmp_path) / "0.png", "--k", "0", "--out", tmp_path / "d"]
    return argv, ["--k must be at least 1 (leave it out for the model's), got 0"]


@case
def eval_with_a_batch_size_of_zero(tmp_path, run):
    return ["eval", run, "--batch-size", "0"], ["--batch-size must be at least 1"]


@case
def show_with_k_zero(tmp_path, run):
    return ["show", run, "--k", "0", "--out", tmp_path / "f.png"], ["--k must be at least 1"]


@case
def eval_an_unnamed_run_on_named_classes(tmp_path, run):
    ds = labelled_dataset(tmp_path, ["cat", "dog"] * 4)
    return ["eval", run, "--data", ds], ["names the classes cat, dog", "classes without names"]


@case
def train_diverging_at_a_learning_rate_of_1e6(tmp_path, run):
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "r", "--no-progress"]
    sets = ["train.lr_task=1e6", "train.lr_heatmap=1e6", "train.steps=5", "data.n_train=16"]
    return [*argv, *(a for s in sets for a in ("--set", s))], [
        "training diverged at step 1",
        "lower the learning rate",
    ]


@case
def train_diverging_with_no_keypoint_step(tmp_path, run):
    """Before: the heatmap loss's weight, NaN from the diverged task loss, was refused as a bad
    argument: an internal error (exit 1) instead of the divergence message."""
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "r", "--no-progress"]
    sets = ["train.lr_task=1e6", "train.keypoint_iters=0", "train.steps=5", "data.n_train=16"]
    return [*argv, *(a for s in sets for a in ("--set", s))], [
        "training diverged at step 1",
        "lower the learning rate",
    ]


@case
def train_diverging_in_the_optimiser_state_alone(tmp_path, run):
    """Before: with a softmax strength of 1e30 the loss stayed finite while Adam's second
    moment overflowed; saving the best checkpoint refused it: an internal error (exit 1)."""
    argv = ["train", "--preset", "tiny-cpu", "--out", tmp_path / "r", "--no-progress"]
    sets = ["model.softmax_strength=1e30", "train.steps=2", "data.n_train=16"]
    return [*argv, *(a for s in sets for a in ("--set", s))], [
        "training diverged at step",
        "exp_avg_sq holds NaN or infinite values",
        "model.softmax_strength",
    ]


@case
def labels_csv_naming_a_hidden_image(tmp_path, run):
    """Before: ``no image '.a.png' under photos``, while photos/.a.png is a readable PNG."""
    src = photos(tmp_path, n=2)
    Image.new("L", (48, 48), 100).save(src / ".a.png")
    (tmp_path / "labels.csv").write_text("filename,labels\n.a.png,cat\n0.png,cat\n1.png,cat\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--labels"]
    return [*argv, tmp_path / "labels.csv"], [
        "labels.csv line 2: '.a.png' is a hidden file (.a.png: a name starting with '.'); "
        "import-images skips hidden files and folders"
    ]


@case
def labels_csv_naming_a_missing_image_quotes_it_as_written(tmp_path, run):
    """Before: the name shown was the cleaned one (``'c/d.png'`` for `` c\\d.png``)."""
    src = photos(tmp_path)
    (tmp_path / "labels.csv").write_text('filename,labels\n" c\\d.png",cat\n0.png,cat\n')
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--labels"]
    return [*argv, tmp_path / "labels.csv"], ["labels.csv line 2: no image ' c\\\\d.png' under"]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_naming_it_and_changes_no_file(capsys, tmp_path, tiny_run, name):
    check_refused(capsys, tmp_path, tiny_run, CASES[name])


# -- accepted -------------------------------------------------------------------------------


def test_a_boxes_row_naming_a_file_without_an_image_name_says_so(capsys, tmp_path):
    """Before: "no image 'photos/noext' under photos" of a file that is there (detect read it
    and wrote its row), skipped by import-images for its name (warned just before)."""
    src = photos(tmp_path, n=2)
    (src / "1.png").rename(src / "noext")
    (tmp_path / "b.csv").write_text("filename,cx,cy,w,h\n0.png,5,5,4,4\nnoext,5,5,4,4\n")
    argv = ["data", "import-images", src, "--boxes", tmp_path / "b.csv", "--out", tmp_path / "d"]
    rc, _, err = mist(capsys, *argv)
    assert rc == 2 and err.splitlines()[0].endswith("skipped 1 file(s) that are no images (noext)")
    assert "b.csv line 3: 'noext' is no image file by its name (one ends in .png" in err
    assert not (tmp_path / "d").exists()


def test_a_byte_order_mark_and_unusual_class_names_are_accepted(capsys, tmp_path):
    src = photos(tmp_path, n=3)
    (tmp_path / "labels.csv").write_bytes(
        "\ufefffilename,labels\n0.png,²\n1.png,x ²\n2.png,\n".encode()
    )
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--val", "0", "--test", "0"]
    rc, out, err = mist(capsys, *argv, "--labels", tmp_path / "labels.csv")
    assert rc == 0, err
    assert "classes: x, ²" in out or "classes: ², x" in out
    # Before: the header "image,label" was read as a row naming an image 'image'; a name
    # holding a no-break space was split in two classes (as boxes CSVs keep it: one)
    (tmp_path / "labels2.csv").write_text("Image,Label\n0.png,New\u00a0York\n1.png,\n2.png,\n")
    argv[4] = tmp_path / "ds2"
    rc, out, err = mist(capsys, *argv, "--labels", tmp_path / "labels2.csv")
    assert rc == 0, err
    assert "classes: New\u00a0York" in out


def test_names_with_a_backslash_or_end_spaces_are_matched_as_written_first(capsys, tmp_path):
    """Before: a name was stripped and its backslashes made slashes before any match, so the
    files ``a\\b.png`` and `` c.png`` (valid on Linux) could not be named in a labels CSV or
    COCO file (``no image 'a/b.png'``, ``no image 'c.png'``). The cleaned form still matches
    when the name as written does not (``" 0.png "`` names ``0.png``)."""
    src = photos(tmp_path, n=2)
    for name, value in (("a\\b.png", 10), (" c.png", 20)):
        Image.new("L", (48, 48), value).save(src / name)
    (tmp_path / "labels.csv").write_text(
        'filename,labels\na\\b.png,ab\n" c.png",c\n" 0.png ",zero\n1.png,one\n'
    )
    argv = ["data", "import-images", src, "--val", "0", "--test", "0"]
    rc, out, err = mist(
        capsys, *argv, "--out", tmp_path / "ds", "--labels", tmp_path / "labels.csv"
    )
    assert rc == 0, err
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    names = manifest["file_names"]["train"]
    with np.load(tmp_path / "ds" / "train.npz") as z:
        classes = {n: manifest["classes"][z["labels"][j, 0]] for j, n in enumerate(names)}
    assert classes == {"a\\b.png": "ab", " c.png": "c", "0.png": "zero", "1.png": "one"}
    images = [{"id": i, "file_name": n} for i, n in enumerate(["a\\b.png", " c.png"])]
    doc = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    (tmp_path / "boxes.json").write_text(json.dumps(doc))
    rc, _, err = mist(capsys, *argv, "--out", tmp_path / "coco", "--boxes", tmp_path / "boxes.json")
    assert rc == 0, err


def test_a_box_over_the_edge_is_clipped_with_a_warning(capsys, tmp_path):
    argv = coco(tmp_path, annotations=[{"image_id": 1, "category_id": 1, "bbox": [40, 0, 20, 8]}])
    path = tmp_path / "boxes.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # a BOM, as some editors save
    rc, _, err = mist(capsys, *argv, "--val", "0", "--test", "0")
    assert rc == 0, err
    assert err.strip() == (
        f"mist data import-images: warning: {path} (0.png): 1 box(es) reach past the 48x48 "
        "image; clipped to it"
    )
    with np.load(tmp_path / "ds" / "train.npz") as z:
        assert z["boxes"][0, 0].tolist() == [43.5, 3.5, 8.0, 8.0]  # x from 39.5 to 47.5


def test_a_name_in_another_unicode_form_multiple_frames_and_floats_beyond_1(capsys, tmp_path):
    """A CSV naming café.png (NFC) finds the file macOS stored as cafe\u0301.png (NFD); a TIFF
    of two frames and float pixels beyond [0, 1] are read with a warning that says so (before:
    "no image 'café.png'"; the second frame and the clipping went unsaid)."""
    src = tmp_path / "photos"
    src.mkdir()
    a = np.zeros((32, 32), np.float32)
    a[4:12, 4:12] = 200.0
    Image.fromarray(a, mode="F").save(src / "cafe\u0301.tif")
    frames = [Image.fromarray(np.full((32, 32), v, np.uint8)) for v in (10, 20)]
    frames[0].save(src / "stack.tif", save_all=True, append_images=frames[1:])
    (tmp_path / "labels.csv").write_text("filename,labels\ncafé.tif,a\nstack.tif,b\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--val", "0", "--test", "0"]
    rc, _, err = mist(capsys, *argv, "--labels", tmp_path / "labels.csv")
    assert rc == 0, err
    assert "stack.tif: 2 frames; only the first is read" in err
    assert "float pixels in [0, 200] clipped to [0, 1]" in err
    with np.load(tmp_path / "ds" / "train.npz") as z:
        assert len(z["images"]) == 2


def _grey_png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32), 40, np.uint8)).save(path)


def test_a_boxes_row_that_names_two_images_two_ways_is_refused(capsys, tmp_path, monkeypatch):
    """Before: detect run from the folder above ``photos`` wrote the row ``photos/x.png``;
    imported with ``photos`` as SRC, whose subfolder ``photos/photos`` holds an ``x.png`` too,
    that row was read as the path inside SRC: its boxes went to the other image, exit 0."""
    monkeypatch.chdir(tmp_path)
    for name in ("photos/x.png", "photos/photos/x.png", "photos/y.png"):
        _grey_png(tmp_path / name)
    (tmp_path / "boxes.csv").write_text("filename,x,y,side\nphotos/x.png,10,10,8\n")
    argv = ["data", "import-images", "photos", "--out", "ds", "--boxes", "boxes.csv"]
    result = mist(capsys, *argv, "--val", "0", "--test", "0")
    assert_user_error(
        result, "'photos/x.png' is photos/x.png inside photos but x.png from the working directory"
    )
    assert not (tmp_path / "ds").exists()
    for spelled in ("photos//x.png", "photos/./x.png", "photos/photos/../x.png"):
        (tmp_path / "boxes.csv").write_text(f"filename,x,y,side\n{spelled},10,10,8\n")
        result = mist(capsys, *argv, "--val", "0", "--test", "0")
        assert_user_error(result, f"'{spelled}' is photos/x.png inside photos but x.png from")
    (tmp_path / "boxes.csv").write_text(f"filename,x,y,side\n{tmp_path}/photos/x.png,10,10,8\n")
    assert mist(capsys, *argv, "--val", "0", "--test", "0")[0] == 0  # absolute: one reading


def test_a_bare_name_in_another_unicode_form_is_matched(capsys, tmp_path):
    """Before: a row ``café.png`` (NFC) for ``sub/cafe\u0301.png`` (NFD, as macOS stores it)
    said "no image 'café.png'"; the path ``sub/café.png`` was matched."""
    src = tmp_path / "photos"
    _grey_png(src / "sub" / "cafe\u0301.png")
    _grey_png(src / "other.png")
    (tmp_path / "labels.csv").write_text("filename,labels\ncafé.png,a\nother.png,b\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--val", "0", "--test", "0"]
    rc, _, err = mist(capsys, *argv, "--labels", tmp_path / "labels.csv")
    assert rc == 0, err
    with np.load(tmp_path / "ds" / "train.npz") as z:
        assert sorted(z["counts"].tolist()) == [1, 1]


def test_a_folder_inside_src_that_cannot_be_read_is_said(capsys, tmp_path, monkeypatch):
    """Before (as a user who cannot read ``S/locked``): its images were left out without a
    word, the dataset made of the rest. Now a warning names it (not refused: the root of a
    drive holds a ``lost+found`` only root reads). An unreadable SRC was "no images in this
    folder". (Root reads anything: the permission is stood in for; checked as user 65534.)"""
    src = tmp_path / "S"
    _grey_png(src / "a.png")
    _grey_png(src / "locked" / "b.png")
    access = os.access
    locked = {str(src / "locked")}
    monkeypatch.setattr(
        os, "access", lambda p, mode: os.fspath(p) not in locked and access(p, mode)
    )
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--val", "0", "--test", "0"]
    rc, _, err = mist(capsys, *argv)
    assert rc == 0 and f"{src / 'locked'}: a folder this user cannot read; its images" in err
    locked.add(str(src))
    before = files_under(tmp_path)
    argv[4] = tmp_path / "ds2"
    assert_user_error(mist(capsys, *argv), f"{src}: a folder this user cannot read")
    assert files_under(tmp_path) == before


def test_a_class_named_in_two_unicode_forms_is_one_class(capsys, tmp_path):
    """Before: "café" (NFC) and "cafe\u0301" (NFD), which print alike, were two classes; a list
    of class names holding both was accepted."""
    from mistnet.validate import class_names

    src = tmp_path / "photos"
    src.mkdir()
    for name in ("0.png", "1.png"):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(src / name)
    (tmp_path / "labels.csv").write_text("filename,labels\n0.png,café\n1.png,cafe\u0301 b\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--val", "0", "--test", "0"]
    rc, _, err = mist(capsys, *argv, "--labels", tmp_path / "labels.csv")
    assert rc == 0, err
    meta = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert meta["classes"] == ["b", "café"]
    with pytest.raises(ValueError, match="named twice"):
        class_names(["café", "cafe\u0301"], "classes")


def test_coco_sizes_of_the_files_and_one_record_per_file_are_accepted(capsys, tmp_path):
    ims = [{"id": 7, "file_name": "0.png", "width": 48, "height": 48}]
    box = {"image_id": 7, "category_id": 1, "bbox": [4, 4, 10, 10], "iscrowd": 0}
    argv = coco(tmp_path, images=ims, annotations=[box])
    rc, _, err = mist(capsys, *argv, "--val", "0", "--test", "0")
    assert rc == 0, err
    with np.load(tmp_path / "ds" / "train.npz") as z:
        assert len(z["boxes"][0]) == 1  # a box marked iscrowd 0 is one instance


def test_a_run_config_json_is_a_preset(capsys, tmp_path, tiny_run):
    argv = ["train", "--preset", tiny_run / "config.json", "--out", tmp_path / "again"]
    rc, _, err = mist(capsys, *argv, "--set", "train.steps=1", "--no-progress")
    assert rc == 0, err
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert saved["model"] == json.loads((tiny_run / "config.json").read_text())["model"]


def test_a_bug_is_one_line_naming_the_file_that_holds_its_traceback(capsys, tmp_path, monkeypatch):
    def broken(path):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(plot, "Run", broken)
    rc, _, err = mist(capsys, "plot", "x")
    assert rc == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("mist plot: internal error, please report it (ZeroDivisionError")
    (written,) = tmp_path.glob("mist-traceback-*.txt")
    assert line.endswith(f"the traceback is in {written}")
    assert "Traceback" in written.read_text() and "broken" in written.read_text()


def test_class_names_of_one_number_written_two_ways_sort_the_same_every_time(capsys, tmp_path):
    # Before: "1" and "01" had one sort key, so their class ids followed the order of a set
    # (PYTHONHASHSEED): one import made "1" class 0, the next class 1. A name of 5,000 digits
    # or "--1" was an internal error (int()).
    src = photos(tmp_path, n=4)
    huge = "7" * 5000
    orders = (["1", "01", huge, "--1"], ["--1", huge, "01", "1"])
    for i, names in enumerate(orders):
        rows = "".join(f"{n}.png,{name}\n" for n, name in enumerate(names))
        (tmp_path / f"labels{i}.csv").write_text(rows)
        out = tmp_path / f"ds{i}"
        argv = ["data", "import-images", src, "--out", out, "--labels", tmp_path / f"labels{i}.csv"]
        rc, _, err = mist(capsys, *argv)
        assert rc == 0, err
        classes = json.loads((out / "manifest.json").read_text())["classes"]
        assert classes == ["01", "1", "--1", huge]


def test_a_damaged_second_frame_or_a_pillow_warning_is_one_line_naming_the_file(capsys, tmp_path):
    """Before: reading a TIFF's frame count parsed a damaged second frame outside any check
    (internal error: "TypeError: Missing dimensions"); Pillow's own warnings ("Corrupt EXIF
    data") were printed raw, with its source line, naming no file."""
    src = tmp_path / "photos"
    src.mkdir()
    frames = [Image.fromarray(np.full((32, 32), v, np.uint8)) for v in (10, 20)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    data = bytearray(buffer.getvalue())
    first = struct.unpack("<I", data[4:8])[0]
    entries = struct.unpack("<H", data[first : first + 2])[0]
    second = struct.unpack("<I", data[first + 2 + 12 * entries : first + 6 + 12 * entries])[0]
    data[second : second + 2] = struct.pack("<H", 1)  # the second frame: one tag, no size
    (src / "stack.tif").write_bytes(bytes(data))
    Image.fromarray(np.full((32, 32), 5, np.uint8)).save(src / "fine.png")
    before = files_under(tmp_path)
    result = mist(capsys, "data", "import-images", src, "--out", tmp_path / "ds")
    assert_user_error(result, "stack.tif: not a readable image (TypeError: Missing dimensions)")
    assert files_under(tmp_path) == before

    (src / "stack.tif").unlink()
    ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x010F, 2, 100, 0xFFFF)  # past the end
    exif = b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0)
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(src / "photo.jpg", exif=exif)
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--val", "0", "--test", "0"]
    rc, _, err = mist(capsys, *argv)
    assert rc == 0, err
    (said,) = [line for line in err.splitlines() if "photo.jpg" in line]
    assert (
        said.startswith("mist data import-images: warning: ")
        and "photo.jpg: " in said
        and "Image" not in err
    )


def damaged_tiff(path, side: int) -> None:
    """An LZW TIFF whose first code is out of table: libtiff prints while failing to decode."""
    pixels = (np.arange(side * side).reshape(side, side) % 251).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="TIFF", compression="tiff_lzw")
    data = bytearray(buffer.getvalue())
    data[8] = 0xFF  # the first LZW code of the strip
    path.write_bytes(bytes(data))


@contextlib.contextmanager
def terminal():
    """What reaches the real stderr (file descriptor 2, not sys.stderr) in the block: the bytes
    are in the list yielded, once the block ends."""
    said: list[bytes] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            said.append(caught.read())


def test_what_libtiff_prints_of_a_damaged_tiff_is_folded_into_the_one_line(capsys, tmp_path):
    """Before: libtiff wrote "tempfile.tif: Using code not yet in table." straight to the
    terminal (file descriptor 2, past Python's warnings), naming a file of Pillow's, above
    mistnet's own line."""
    src = tmp_path / "photos"
    src.mkdir()
    damaged_tiff(src / "scan.tif", 32)
    with terminal() as said:
        result = mist(capsys, "data", "import-images", src, "--out", tmp_path / "ds")
    assert said == [b""]
    assert_user_error(result, "scan.tif: not a readable image (")
    assert "tempfile.tif" not in result[2]


def test_a_damaged_pillow_image_given_to_predict_is_said_as_a_damaged_file_is(tmp_path, tiny_run):
    """Before: predict(Image.open(damaged.tif)) let libtiff write to the terminal and raised
    Pillow's error as it was."""
    import mistnet

    damaged_tiff(tmp_path / "scan.tif", 80)
    model = mistnet.load(tiny_run)
    with terminal() as said:
        with pytest.raises(ValueError, match=r"image 0: not a readable image \(") as raised:
            model.predict(Image.open(tmp_path / "scan.tif"))
    assert said == [b""]
    assert "tempfile.tif" not in str(raised.value)


def test_the_frames_of_a_long_stack_are_counted_up_to_a_cap(tmp_path):
    """Before: every frame's header was read only to count them (a 30,000-frame TIFF of 11 MB:
    6 s) for the warning that one frame is read."""
    from mistnet.data.imagefiles import read_image

    many = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in range(150)]
    many[0].save(tmp_path / "many.tif", save_all=True, append_images=many[1:])
    with pytest.warns(UserWarning, match="many.tif: more than 100 frames; only the first is read"):
        assert (read_image(tmp_path / "many.tif") == 0).all()


def test_a_boxes_file_without_any_box_imports_with_a_warning(capsys, tmp_path):
    """Before: a boxes CSV of its header alone (mist detect's, of no box kept) imported as a
    dataset "with boxes" without a word; eval then found no instances to classify."""
    src = photos(tmp_path, n=3)
    (tmp_path / "b.csv").write_text("filename,cx,cy,w,h,class\n")
    argv = ["data", "import-images", src, "--out", tmp_path / "ds", "--val", "0", "--test", "0"]
    rc, _, err = mist(capsys, *argv, "--boxes", tmp_path / "b.csv")
    assert rc == 0, err
    assert err.strip() == (
        f"mist data import-images: warning: {tmp_path / 'b.csv'}: no image holds an instance; "
        "the dataset has none to train or measure on"
    )


def test_a_folder_named_with_a_tab_or_220_characters_imports_under_a_cleaned_name(capsys, tmp_path):
    """Before: refused, the dataset's name (the folder's) blamed on OUT/manifest.json, a file
    the user never wrote: a folder's name may hold 255 bytes and a tab."""
    for name, want in (("tab\tphotos", "tab?photos"), ("x" * 220, "x" * 200)):
        src = tmp_path / name
        src.mkdir()
        for i in range(3):
            Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(src / f"{i}.png")
        out = tmp_path / f"ds{len(name)}"
        rc, _, err = mist(capsys, "data", "import-images", src, "--out", out, "--val", "0",
                          "--test", "0")  # fmt: skip
        assert rc == 0, err
        assert json.loads((out / "manifest.json").read_text())["name"] == want


def test_coco_category_names_are_stripped_and_a_name_twice_after_that_is_refused(capsys, tmp_path):
    """TESTING.md said a COCO category ``"cat "`` is refused: it is stripped (``cat``), as a
    boxes CSV's class column is; ``"cat"`` beside ``"cat "`` is then one name given twice."""
    boxes = [{"image_id": 1, "category_id": c, "bbox": [4, 4, 10, 10 + c]} for c in (1, 2)]
    spaced = [{"id": 1, "name": "cat "}, {"id": 2, "name": " dog"}]
    rc, out, err = mist(capsys, *coco(tmp_path, annotations=boxes, categories=spaced), "--val",
                        "0", "--test", "0")  # fmt: skip
    assert rc == 0, err
    assert "classes: cat, dog" in out
    twice = [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat "}]
    (tmp_path / "again").mkdir()
    assert_user_error(
        mist(capsys, *coco(tmp_path / "again", annotations=boxes, categories=twice)),
        "boxes.json: category name 'cat' appears twice",
    )


def test_coco_ids_written_as_floats_read_as_their_integers(capsys, tmp_path):
    """Before: ``"id": 1.0`` (COCO written through pandas or numpy) was refused: "images[0].id:
    expected an integer, got 1.0"; pycocotools reads it. Ids, ``image_id``, ``category_id``,
    ``width``/``height`` and ``iscrowd`` of whole-valued floats now import as the integers do;
    1.5, NaN, infinity, bools and floats beyond int64 stay refused. The JPEG has EXIF
    orientation 6: its upright size, 60x100, is what the annotations must say."""
    from mistnet.data.annotations import _whole

    src = photos(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (100, 60), (90, 90, 90)).save(src / "r.jpg", exif=exif)
    (src / "0.png").unlink()
    outs = []
    for number in (int, float):
        doc = {
            "images": [{"id": number(3), "file_name": "r.jpg", "width": number(60), "height": 100}],
            "annotations": [
                {"id": number(1), "image_id": number(3), "category_id": number(2),
                 "bbox": [10, 20, 8, 8], "iscrowd": number(0)}
            ],
            "categories": [{"id": number(2), "name": "cat"}],
        }  # fmt: skip
        path = tmp_path / f"{number.__name__}.json"
        path.write_text(json.dumps(doc))
        out = tmp_path / f"ds-{number.__name__}"
        argv = ["data", "import-images", src, "--out", out, "--val", "0", "--test", "0"]
        rc, _, err = mist(capsys, *argv, "--boxes", path)
        assert rc == 0, err
        with np.load(out / "train.npz") as z:
            outs.append((z["boxes"][0, 0].tolist(), z["labels"][0, 0].tolist()))
    assert outs[0] == outs[1] == ([13.5, 23.5, 8.0, 8.0], 0)
    assert [_whole(v) for v in (1.0, -2.0, 2.0**62, 1.5, float("nan"), float("inf"))] == [
        1,
        -2,
        2**62,
        None,
        None,
        None,
    ]
    assert [_whole(v) for v in (True, 2.0**63, "1", None)] == [None] * 4
