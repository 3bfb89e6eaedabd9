"""``mist data import-images``: channels, sizes, seeded splits and crops, labels, boxes, errors."""

import hashlib
import json
import os
import re
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_user_error, mist
from PIL import Image

from mistnet.data.imagefiles import image_tensor, read_image
from mistnet.data.images import import_images
from mistnet.data.store import SceneFolder, annotations_of, classes_of
from mistnet.errors import DataError


def squares(folder: Path, n: int = 10, size=(48, 64), colour_at: int | None = None) -> dict:
    """``n`` grey PNGs (one a colour JPEG at ``colour_at``) with a white 8x8 square each.

    Returns {relative path: (cx, cy)} of the square's centre (pixel centres at integers).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)
    H, W = size
    centres = {}
    for i in range(n):
        a = np.zeros((H, W, 3), np.uint8)
        x0, y0 = 4 + 3 * i, 6 + 2 * i
        a[y0 : y0 + 8, x0 : x0 + 8] = 255
        rel = f"{i:02d}.png" if i < n // 2 else f"sub/{i:02d}.png"
        if i == colour_at:
            a[0, 0] = (255, 0, 0)
            rel = rel.replace(".png", ".jpg")
            Image.fromarray(a).save(folder / rel, quality=100)
        else:
            Image.fromarray(a[..., 0]).save(folder / rel)
        centres[rel] = (x0 + 3.5, y0 + 3.5)
    return centres


def test_import_without_labels_detects_grey_and_splits_by_seed(tmp_path):
    centres = squares(tmp_path / "src")
    meta = import_images(tmp_path / "src", tmp_path / "a", val=0.2, test=0.2, seed=3)
    again = import_images(tmp_path / "src", tmp_path / "b", val=0.2, test=0.2, seed=3)
    other = import_images(tmp_path / "src", tmp_path / "c", val=0.2, test=0.2, seed=4)
    assert meta["file_names"] == again["file_names"] != other["file_names"]
    assert {s: len(v) for s, v in meta["file_names"].items()} == {"train": 6, "val": 2, "test": 2}
    assert sorted(sum(meta["file_names"].values(), [])) == sorted(centres)
    train = SceneFolder(tmp_path / "a", "train")
    assert (train.channels, train.height, train.width) == (1, 48, 64)
    assert annotations_of(train) == frozenset() and classes_of(train) == ()
    assert train.max_count == 0 and len(train) == 6
    first = meta["file_names"]["train"][0]
    item = train[0]
    cx, cy = centres[first]
    assert float(item["image"][0, int(cy), int(cx)]) == 1.0
    assert float(item["image"].sum()) == 64.0  # the 8x8 square only


def test_a_colour_image_makes_three_channels_and_grey_forces_one(tmp_path):
    squares(tmp_path / "src", colour_at=7)
    assert import_images(tmp_path / "src", tmp_path / "rgb")["channels"] == 3
    assert import_images(tmp_path / "src", tmp_path / "g", channels=1)["channels"] == 1
    grey_only = tmp_path / "grey"
    squares(grey_only)
    assert import_images(grey_only, tmp_path / "forced", channels=3)["channels"] == 3


def test_labels_give_a_sorted_class_map_and_multisets(tmp_path):
    centres = squares(tmp_path / "src", n=6)
    rows = ["filename,labels"] + [
        f"{rel},{'dog cat dog' if i % 2 else 'cat'}" for i, rel in enumerate(centres)
    ]
    rows[1] = "00.png,"  # no object
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    meta = import_images(
        tmp_path / "src", tmp_path / "d", labels=tmp_path / "labels.csv", size=(24, 32)
    )
    assert meta["classes"] == ["cat", "dog"] and meta["annotations"] == ["labels"]
    by_file = {}
    for split, names in meta["file_names"].items():
        ds = SceneFolder(tmp_path / "d", split)
        assert (ds.height, ds.width) == (24, 32)
        assert annotations_of(ds) == {"labels"} and classes_of(ds) == ("cat", "dog")
        for j, name in enumerate(names):
            by_file[name] = sorted(ds[j]["labels"].tolist())
    assert by_file["00.png"] == []
    assert by_file["01.png"] == [0, 1, 1]
    assert by_file["02.png"] == [0]


def test_numeric_class_names_sort_as_numbers(tmp_path):
    centres = squares(tmp_path / "src", n=4)
    names = ["10", "9", "2", "9 10"]
    lines = [f"{rel},{n}" for rel, n in zip(centres, names, strict=True)]
    (tmp_path / "l.csv").write_text("\n".join(lines))  # no header
    meta = import_images(tmp_path / "src", tmp_path / "d", labels=tmp_path / "l.csv", val=0.25)
    assert meta["classes"] == ["2", "9", "10"]


def test_boxes_from_csv_follow_a_resize(tmp_path):
    centres = squares(tmp_path / "src", n=5)
    rows = ["image,cx,cy,w,h,class"] + [
        f"{Path(rel).name},{cx},{cy},8,8,{'star' if i else 'moon'}"
        for i, (rel, (cx, cy)) in enumerate(centres.items())
    ]
    (tmp_path / "b.csv").write_text("\n".join(rows))
    meta = import_images(
        tmp_path / "src", tmp_path / "d", boxes=tmp_path / "b.csv", size=(24, 32), val=0, test=0
    )
    assert meta["annotations"] == ["boxes", "labels"] and meta["classes"] == ["moon", "star"]
    ds = SceneFolder(tmp_path / "d", "train")
    for j, rel in enumerate(meta["file_names"]["train"]):
        cx, cy = centres[rel]
        item = ds[j]
        # half size: a pixel-centre coordinate x maps to (x + 0.5) / 2 - 0.5
        expected = [(cx + 0.5) / 2 - 0.5, (cy + 0.5) / 2 - 0.5, 4.0, 4.0]
        assert item["boxes"].tolist() == [pytest.approx(expected)]
        assert item["labels"].tolist() == [0 if rel == "00.png" else 1]


@pytest.mark.filterwarnings("ignore::mistnet.errors.MistWarning")  # boxes past a crop
def test_coco_boxes_shift_to_pixel_centres_and_crops_keep_their_boxes(tmp_path):
    centres = squares(tmp_path / "src", n=4, size=(64, 64))
    rels = list(centres)
    coco = {
        "images": [{"id": 10 + i, "file_name": rel} for i, rel in enumerate(rels)],
        "categories": [{"id": 1, "name": "square"}],
        "annotations": [
            # the square covers pixels x0..x0+7, i.e. COCO [x0, x0 + 8)
            {"image_id": 10 + i, "bbox": [cx - 3.5, cy - 3.5, 8, 8], "category_id": 1}
            for i, (cx, cy) in enumerate(centres.values())
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    meta = import_images(
        tmp_path / "src",
        tmp_path / "d",
        boxes=tmp_path / "c.json",
        crop=(32, 32),
        per_image=5,
        val=0,
        test=0,
        seed=1,
    )
    ds = SceneFolder(tmp_path / "d", "train")
    assert len(ds) == 20 and classes_of(ds) == ("square",)
    kept = 0
    for j, (rel, (x0, y0)) in enumerate(
        zip(meta["file_names"]["train"], meta["crop_origins"]["train"], strict=True)
    ):
        cx, cy = centres[rel]
        inside = x0 - 0.5 <= cx < x0 + 31.5 and y0 - 0.5 <= cy < y0 + 31.5
        item = ds[j]
        assert int(item["count"]) == int(inside)
        if inside:
            kept += 1
            # clipped to the crop, which spans -0.5 .. 31.5 (pixel centres at integers)
            lo = np.maximum(np.float32([cx - x0, cy - y0]) - 4, -0.5)
            hi = np.minimum(np.float32([cx - x0, cy - y0]) + 4, 31.5)
            assert item["boxes"][0].tolist() == [*((lo + hi) / 2), *(hi - lo)]
            assert float(item["image"][0, int(cy - y0), int(cx - x0)]) == 1.0
    assert 0 < kept < 20


def test_boxes_without_classes_carry_boxes_only(tmp_path):
    centres = squares(tmp_path / "src", n=3)
    rows = ["filename,x,y,side,score"] + [f"{r},{x},{y},8,0.9" for r, (x, y) in centres.items()]
    (tmp_path / "det.csv").write_text("\n".join(rows))
    meta = import_images(
        tmp_path / "src", tmp_path / "d", boxes=tmp_path / "det.csv", val=0, test=0
    )
    assert meta["annotations"] == ["boxes"] and meta["classes"] == []
    assert SceneFolder(tmp_path / "d", "train")[0]["labels"].tolist() == [0]


def test_a_coco_file_name_no_file_can_have_is_named_not_a_traceback(capsys, tmp_path):
    """Before: a file_name holding a lone surrogate (JSON "\\ud800") raised UnicodeEncodeError
    from inside the name lookup."""
    src = tmp_path / "src"
    squares(src, n=3)
    coco = {
        "images": [{"id": 1, "file_name": "\ud800.png"}],
        "categories": [{"id": 1, "name": "square"}],
        "annotations": [{"image_id": 1, "bbox": [1, 1, 8, 8], "category_id": 1}],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))  # ASCII: the surrogate escaped
    out = tmp_path / "out"
    result = mist(
        capsys, "data", "import-images", src, "--out", out, "--boxes", tmp_path / "c.json"
    )
    assert_user_error(result, "c.json", "no image '\\ud800.png'")
    assert not out.exists()


def bad_inputs(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    centres = squares(src, n=4)
    (tmp_path / "ok.csv").write_text("".join(f"{r},a\n" for r in centres))
    (tmp_path / "ghost.csv").write_text("".join(f"{r},a\n" for r in centres) + "gone.png,a\n")
    (tmp_path / "short.csv").write_text("".join(f"{r},a\n" for r in list(centres)[1:]))
    (tmp_path / "l.txt").write_text("00.png,a\n")
    return src


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--labels", "ghost.csv"], ["ghost.csv", "no image 'gone.png'"]),
        (["--labels", "short.csv"], ["short.csv", "no row for 00.png"]),
        (["--labels", "l.txt"], ["l.txt", "unknown labels format"]),
        (["--boxes", "l.txt"], ["l.txt", "unknown boxes format"]),
        (["--labels", "ok.csv", "--boxes", "ok.csv"], ["not both"]),
        (["--labels", "ok.csv", "--crop", "8", "8"], ["--crop needs boxes"]),
        (["--crop", "100", "100"], ["smaller than the 100x100 crop"]),
        (["--val", "0.5", "--test", "0.5"], ["leave none for training"]),
    ],
)
def test_import_errors_are_one_line(capsys, tmp_path, monkeypatch, extra, fragments):
    src = bad_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert_user_error(mist(capsys, "data", "import-images", src, "--out", out, *extra), *fragments)
    assert not out.exists()


def test_unreadable_unknown_empty_and_mixed_sizes(capsys, tmp_path):
    src = bad_inputs(tmp_path)
    out = tmp_path / "out"
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    assert_user_error(mist(capsys, "data", "import-images", src, "--out", out), "broken.png")
    (src / "sub" / "broken.png").unlink()
    # Before: "notes.txt: unknown image format '.txt'"; now a GIF (an image that would be lost)
    # stops the import, and files of no image format are skipped (test_own_images.py)
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(src / "sub" / "extra.GIF")
    assert_user_error(
        mist(capsys, "data", "import-images", src, "--out", out),
        f"{src / 'sub' / 'extra.GIF'}: a GIF image; import-images reads .png, .jpg, .jpeg, .tif, "
        ".tiff (convert it, or move it out)",
    )
    (src / "sub" / "extra.GIF").unlink()
    # Before: "b.jfif: a JPEG image; import-images reads ... .jpg ... (convert it": it is one
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(src / "sub" / "b.jfif", format="JPEG")
    assert_user_error(
        mist(capsys, "data", "import-images", src, "--out", out),
        "b.jfif: a JPEG image",
        "(rename it",
    )
    (src / "sub" / "b.jfif").unlink()
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(src / "small.png")
    assert_user_error(
        mist(capsys, "data", "import-images", src, "--out", out), "differ in size", "--size"
    )
    (tmp_path / "empty" / "deep").mkdir(parents=True)
    assert_user_error(
        mist(capsys, "data", "import-images", tmp_path / "empty", "--out", out), "no PNG"
    )
    assert not out.exists()
    # Before: "no PNG, JPEG or TIFF images in this folder" of a folder of hidden images alone
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "empty" / ".a.png")
    (tmp_path / "empty" / ".cache").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "empty" / ".cache" / "b.png")
    assert_user_error(
        mist(capsys, "data", "import-images", tmp_path / "empty", "--out", out),
        "no PNG, JPEG or TIFF images in this folder, only 2 hidden one(s)",
        "passed over",
    )
    rc, stdout, _ = mist(
        capsys, "data", "import-images", src, "--out", out, "--size", "16", "16", "--val", "0.2"
    )
    assert rc == 0 and "1-channel 16x16 images, train 3, val 1, test 1" in stdout


def test_alpha_is_composited_over_black_and_16_bit_is_scaled(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:4, :, 3] = 255  # top half opaque, bottom transparent
    Image.fromarray(rgba, "RGBA").save(src / "a.png")
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(src / "b.png")
    import_images(src, tmp_path / "d", val=0, test=0)
    ds = SceneFolder(tmp_path / "d", "train")
    a, b = (ds[i]["image"] for i in range(2))
    assert ds.channels == 1
    assert a[0, :4].mul(255).round().unique().tolist() == [200.0]
    assert a[0, 4:].unique().tolist() == [0.0]
    assert b.unique().tolist() == [1.0]


def test_the_official_layout_refuses_a_dataset_without_boxes(capsys, tmp_path):
    squares(tmp_path / "src", n=4)
    import_images(tmp_path / "src", tmp_path / "d", val=0, test=0)
    assert_user_error(
        mist(capsys, "data", "export-official", tmp_path / "d", tmp_path / "o"),
        "needs boxes and labels",
        "no boxes and no labels",
    )
    assert not (tmp_path / "o").exists()


def test_one_image_with_crop_is_cut_into_disjoint_train_val_test_bands(capsys, tmp_path):
    """One photograph and --crop: crops of each split come from their own band of the image
    (bands across its longer side, in proportion to --val and --test), boxes go with the band
    holding their centre, clipped to it."""
    H, W = 100, 24  # taller than wide: bands of rows, train 0-79, val 80-89, test 90-99
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (H, W), dtype=np.uint8)
    (tmp_path / "src").mkdir()
    Image.fromarray(a).save(tmp_path / "src" / "photo.png")
    # (cx, cy, w, h): one in each band, and one whose centre (y 77) is in train but which
    # reaches into val (rows 72-82): it stays in train, clipped at the band's edge (79.5).
    boxes = [(6, 20, 4, 4), (12, 85, 4, 4), (18, 95, 4, 4), (12, 77, 4, 10)]
    rows = ["filename,cx,cy,w,h"] + [f"photo.png,{cx},{cy},{w},{h}" for cx, cy, w, h in boxes]
    (tmp_path / "b.csv").write_text("\n".join(rows))
    argv = ["data", "import-images", tmp_path / "src", "--out", tmp_path / "d", "--crop", "8"]
    argv += ["8", "--per-image", "400", "--boxes", tmp_path / "b.csv"]
    rc, stdout, err = mist(capsys, *argv)
    assert rc == 0, err
    assert "train 320, val 40, test 40" in stdout
    meta = json.loads((tmp_path / "d" / "manifest.json").read_text())
    bands = {"train": (0, 80), "val": (80, 90), "test": (90, 100)}
    in_band = {  # the boxes clipped to their band: (12, 77, 4, 10) to rows 72-79.5
        "train": {(6, 20, 4, 4), (12, 75.75, 4, 7.5)},
        "val": {(12, 85, 4, 4)},
        "test": {(18, 95, 4, 4)},
    }
    found = {split: set() for split in bands}
    for split, (top, bottom) in bands.items():
        ds = SceneFolder(tmp_path / "d", split)
        for j, (x0, y0) in enumerate(meta["crop_origins"][split]):
            assert top <= y0 and y0 + 8 <= bottom, (split, y0)  # inside its band
            assert np.array_equal(ds.arrays["images"][j, 0], a[y0 : y0 + 8, x0 : x0 + 8])
            item = ds[j]
            for cx, cy, w, h in item["boxes"][: int(item["count"])].tolist():
                assert -0.5 <= cx < 7.5 and -0.5 <= cy < 7.5  # its centre in the crop
                assert top - 0.5 <= cy + y0 - h / 2 and cy + y0 + h / 2 <= bottom - 0.5
                # clipped to the crop too (-0.5 .. 7.5), so it is the box clipped to both
                assert -0.5 <= min(cx - w / 2, cy - h / 2) and max(cx + w / 2, cy + h / 2) <= 7.5
                band_box = next(b for b in in_band[split] if abs(b[0] - cx - x0) < 4)
                lo = np.maximum(
                    np.subtract(band_box[:2], np.divide(band_box[2:], 2)), [x0 - 0.5, y0 - 0.5]
                )
                hi = np.minimum(
                    np.add(band_box[:2], np.divide(band_box[2:], 2)), [x0 + 7.5, y0 + 7.5]
                )
                assert [cx + x0, cy + y0, w, h] == [*((lo + hi) / 2), *(hi - lo)]
                found[split].add(band_box)
    assert found == in_band


def test_one_image_too_small_for_its_bands_says_what_to_pass(capsys, tmp_path):
    (tmp_path / "src").mkdir()
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(tmp_path / "src" / "p.png")
    out = tmp_path / "d"
    base = ["data", "import-images", tmp_path / "src", "--out", out]
    assert_user_error(
        mist(capsys, *base, "--crop", "16", "16", "--per-image", "10"),
        "train 80, val 10, test 10 pixels); the val and test bands are narrower than the 16",
        "pass a smaller --crop",
    )
    # a larger --per-image helps only where it is the crops that are too few (before: the
    # same advice for either cause)
    assert_user_error(
        mist(capsys, *base, "--crop", "8", "8", "--per-image", "2"),
        "--per-image 2 leaves no crop for the train band; pass a larger --per-image",
    )
    assert_user_error(mist(capsys, *base), "1 images leave none", "pass --crop H W")
    # --val and --test too small for a pixel of the 100-pixel side: their bands are refused,
    # not dropped with two of the three crops
    tiny = ["--crop", "40", "5", "--per-image", "3", "--val", "0.001", "--test", "0.001"]
    assert_user_error(mist(capsys, *base, *tiny), "val 0, test 0 pixels", "narrower than the 40")
    assert not out.exists()


def test_32_bit_pixels_have_one_scale_and_clipping_is_said():
    """A 32-bit grey image (Pillow's ``I``) with values below 0 or above 65535 was clipped
    without a word, and scaled by 255 or 65535 as its own maximum chose; a float one outside
    [0, 1] was already said. In range: no warning."""
    from mistnet.data.imagefiles import float_pixels
    from mistnet.errors import MistWarning

    wide = Image.fromarray(np.array([[-5, 0], [1000, 70000]], np.int32), mode="I")
    with pytest.warns(
        MistWarning, match=r"x.png: 32-bit pixels in \[-5, 70000\] clipped to \[0, 65535\]"
    ):
        a = float_pixels(wide, "x.png")
    np.testing.assert_allclose(a, [[0, 0], [1000 / 65535, 1]])
    floats = Image.fromarray(np.array([[-0.5, 2.0]], np.float32), mode="F")
    with pytest.warns(MistWarning, match=r"float pixels in \[-0.5, 2\] clipped to \[0, 1\]"):
        assert float_pixels(floats, "f.tif").tolist() == [[0.0, 1.0]]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deep = Image.fromarray(np.array([[0, 200, 60000]], np.int32), mode="I")
        assert float_pixels(deep, "d.tif").tolist() == [[0.0, 200 / 65535, 60000 / 65535]]
    # one scale for every image: 200 reads the same whether another pixel is above 255 or not
    narrow = Image.fromarray(np.array([[0, 200]], np.int32), mode="I")
    with pytest.warns(MistWarning, match="n.png: 32-bit pixels all at most 200, read as 16-bit"):
        assert float_pixels(narrow, "n.png").tolist() == [[0.0, 200 / 65535]]
    # Before: no word for 16-bit (Image.fromarray of uint16, the usual numpy route)
    sixteen = Image.fromarray(np.array([[0, 200]], np.uint16))
    assert sixteen.mode.startswith("I;16")
    with pytest.warns(MistWarning, match="s.png: 16-bit pixels all at most 200, read as 16-bit"):
        assert float_pixels(sixteen, "s.png").tolist() == [[0.0, 200 / 65535]]


def _png(path: Path, width: int, depth: int, colour: int, rows: bytes, trns: bytes) -> None:
    """A PNG file written by hand (Pillow writes no 16-bit colour): one IDAT, no filter."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    head = struct.pack(">IIBBBBB", width, 1, depth, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"tRNS", trns)
        + chunk(b"IDAT", zlib.compress(b"\0" + rows)) + chunk(b"IEND", b"")
    )  # fmt: skip


def test_a_png_colour_key_is_put_over_black_in_every_mode(tmp_path):
    """Before: only palette and alpha images were composited; a grey, RGB or 16-bit grey PNG
    whose tRNS chunk marks one colour transparent (as optipng writes an RGBA file of alpha 0 or
    255) kept the hidden colour there: 200 for an L key of 200, (10, 200, 30) for an RGB key,
    156 for a 16-bit key of 40000, while the same picture saved as RGBA read black."""
    x = np.zeros((6, 6, 4), np.uint8)
    x[..., :3], x[2:4, 2:4] = (10, 200, 30), (200, 10, 10, 255)
    Image.fromarray(x, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(x[..., :3]).save(tmp_path / "rgb.png", transparency=(10, 200, 30))
    grey = np.where(x[..., 3] > 0, 90, 200).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png", transparency=200)
    deep = np.where(x[..., 3] > 0, 65535, 40000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png", transparency=40000)
    Image.fromarray(np.uint8([[0, 85, 170, 255]])).save(tmp_path / "l2.png", bits=2, transparency=2)
    rgb16 = np.array([[1000, 2000, 3000], [65535, 0, 0]], ">u2").tobytes()
    _png(tmp_path / "rgb16.png", 2, 16, 2, rgb16, np.array([1000, 2000, 3000], ">u2").tobytes())
    assert [Image.open(tmp_path / f"{n}.png").mode for n in ("rgb", "l", "deep", "l2")] == [
        "RGB", "L", "I;16", "L"
    ]  # fmt: skip
    hidden = x[..., 3] == 0
    want_rgb = np.where(hidden[..., None], 0, x[..., :3])
    assert (read_image(tmp_path / "rgba.png") == want_rgb).all()  # the alpha file: as it was
    assert (read_image(tmp_path / "rgb.png") == want_rgb).all()
    assert (read_image(tmp_path / "l.png")[..., 0] == np.where(hidden, 0, 90)).all()
    assert (read_image(tmp_path / "deep.png")[..., 0] == np.where(hidden, 0, 255)).all()
    # 2-bit grey: the key (2) is in the file's units, the pixels scaled to 8 bits (2 -> 170)
    assert read_image(tmp_path / "l2.png")[0, :, 0].tolist() == [0, 85, 0, 255]
    # 16-bit colour is read as its high bytes, the key too
    assert read_image(tmp_path / "rgb16.png")[0].tolist() == [[0, 0, 0], [255, 0, 0]]
    # a Pillow image (predict, fit) the same way
    for name, channels in (("rgb", 3), ("l", 1), ("deep", 1)):
        t = image_tensor(Image.open(tmp_path / f"{name}.png"), channels)
        assert (t[:, hidden] == 0).all() and (t[:, ~hidden] > 0).all(), name
    # and an import: the RGB + tRNS file reads as the RGBA one
    for name in ("rgba", "rgb"):
        src = tmp_path / f"src-{name}"
        src.mkdir()
        (tmp_path / f"{name}.png").rename(src / "a.png")
        import_images(src, tmp_path / f"ds-{name}", val=0, test=0)
    a, b = (np.load(tmp_path / f"ds-{n}" / "train.npz")["images"] for n in ("rgba", "rgb"))
    assert (a == b).all() and a[0, :, 0, 0].tolist() == [0, 0, 0]


def _noisy_folder(folder: Path, grey_only: bool = False) -> Path:
    """Seeded noise images of five sizes and modes (grey, colour, colour with equal channels)
    and a boxes CSV with classes; returns the CSV's path."""
    rng = np.random.default_rng(12)
    (folder / "sub").mkdir(parents=True)
    shapes = [(40, 50), (37, 61), (52, 45), (40, 50), (44, 44)]
    kinds = ["L", "same", "same", "L", "L"] if grey_only else ["L", "RGB", "same", "L", "RGB"]
    rows = ["filename,cx,cy,w,h,class"]
    for i, ((h, w), kind) in enumerate(zip(shapes, kinds, strict=True)):
        rel = f"{i}.png" if i < 3 else f"sub/{i}.png"
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if kind != "RGB":
            a[..., 1] = a[..., 2] = a[..., 0]
        Image.fromarray(a[..., 0] if kind == "L" else a).save(folder / rel)
        for j in range(3):
            cx, cy = rng.uniform(4, w - 4), rng.uniform(4, h - 4)
            rows.append(f"{rel},{cx:.3f},{cy:.3f},{rng.uniform(3, 9):.3f},6,{'ab'[j % 2]}")
    boxes = folder.parent / f"{folder.name}.csv"
    boxes.write_text("\n".join(rows) + "\n")
    return boxes


def _digest(meta: dict, out: Path) -> str:
    """A digest of a dataset's arrays, file names, crop origins and shape."""
    h = hashlib.sha256()
    for split in sorted(meta["file_names"]):
        with np.load(out / f"{split}.npz") as z:
            for key in sorted(z.files):
                a = z[key]
                h.update(f"{split}/{key}/{a.dtype}/{a.shape}".encode())
                h.update(np.ascontiguousarray(a).tobytes())
    shown = {k: meta.get(k) for k in ("file_names", "crop_origins", "channels", "height", "width")}
    h.update(json.dumps(shown, sort_keys=True).encode())
    return h.hexdigest()[:16]


#: Digests of datasets written by import_images before images were resized or cropped as they
#: are read (all images were decoded first, then resized or cropped): the same seed must give
#: the same datasets. The crop digests were recorded again when boxes came to be clipped to
#: their crop: the same datasets but for the boxes reaching past a crop (checked then).
_BEFORE = {
    "size-mixed": "8a5e1152c3619df8",
    "size-grey-mixed": "436c7c304250f207",
    "size-colour-mixed": "8a5e1152c3619df8",
    "crop-mixed": "5fcdcf28c0575c30",
    "crop-grey-mixed": "43d7938253834cc3",
    "size-grey": "790aa46ddb44d303",
    "size-grey-grey": "790aa46ddb44d303",
    "size-colour-grey": "43456e9a3e29829f",
    "crop-grey": "8b39518b01453633",
    "crop-grey-grey": "8b39518b01453633",
    "bands": "d322eb0f6c6ad5b8",
}


@pytest.mark.filterwarnings("ignore::mistnet.errors.MistWarning")  # boxes past an edge
def test_resizing_or_cropping_each_image_as_it_is_read_gives_the_datasets_of_before(tmp_path):
    """Before: every image was decoded at full size before ``--size`` or ``--crop`` (12
    6000x6000 PNGs of 1.5 MB on disk took 1.9 GB). Now each is resized or cropped as it is
    read; the datasets are byte for byte those of before (digests recorded then)."""
    cases = {
        "size": dict(size=(24, 20)),
        "size-grey": dict(size=(24, 20), channels=1),
        "size-colour": dict(size=(24, 20), channels=3),
        "crop": dict(crop=(16, 16), per_image=3),
        "crop-grey": dict(crop=(16, 16), per_image=3, channels=1),
    }
    found = {}
    for folder in ("mixed", "grey"):
        boxes = _noisy_folder(tmp_path / folder, grey_only=folder == "grey")
        for name, kw in cases.items():
            out = tmp_path / f"{name}-{folder}"
            meta = import_images(
                tmp_path / folder, out, boxes=boxes, val=0.2, test=0.2, seed=5, **kw
            )
            found[out.name] = _digest(meta, out)
    one = tmp_path / "one"
    one.mkdir()
    pixels = np.random.default_rng(3).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(one / "a.png")
    (tmp_path / "one.csv").write_text("filename,cx,cy,w,h\na.png,20,20,8,8\na.png,70,30,10,6\n")
    meta = import_images(
        one, tmp_path / "bands", boxes=tmp_path / "one.csv", crop=(12, 12), per_image=10,
        val=0.2, test=0.2, seed=9,
    )  # fmt: skip
    found["bands"] = _digest(meta, tmp_path / "bands")
    assert found == _BEFORE


@pytest.mark.parametrize("how", [dict(size=(8, 8)), dict(crop=(8, 8), per_image=2)])
def test_import_holds_one_full_size_image_at_a_time(tmp_path, how):
    """Before: ``pixels = [read_image(p) for p in files]`` held every image decoded at full
    size before resizing (peak memory grew with the number of images, not the output)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):  # 3 MB each decoded (1000 x 1000 x 3), 8 in all
        Image.new("RGB", (1000, 1000), (10 * i, 50, 90)).save(src / f"{i}.png")
    tracemalloc.start()
    try:
        import_images(src, tmp_path / "out", **how)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 3_000_000  # numpy's arrays: about two images' worth, not eight


def test_files_of_no_image_format_are_skipped_with_one_warning_images_of_others_refused(
    tmp_path,
):
    """Before: any file not named .png/.jpg/.jpeg/.tif/.tiff stopped the import ("unknown image
    format '.csv' ... move other files out"), a labels.csv or README kept beside the images too.
    Now files that are no images are skipped, said in one warning; an image of a format
    import-images does not read (``.bmp``, ``.webp``, ``.gif``) still stops it, so no picture is
    dropped unsaid."""
    src = tmp_path / "src"
    squares(src, n=4)
    for name in ("labels.csv", "coco.json", "README", "notes.md", "doc.pdf", "model.h5"):
        (src / "sub" / name).write_bytes(b"not an image")
    with pytest.warns(Warning) as said:
        meta = import_images(src, tmp_path / "out", val=0, test=0)
    assert [type(w.message).__name__ for w in said] == ["MistWarning"]
    assert str(said[0].message) == (
        f"{src}: skipped 6 file(s) that are no images (sub/README, sub/coco.json, ...)"
    )
    assert len(meta["file_names"]["train"]) == 4
    for suffix, fmt in ((".bmp", "BMP"), (".WEBP", "WEBP"), (".gif", "GIF")):
        picture = src / f"photo{suffix}"
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(picture, format=fmt)
        with pytest.raises(
            ValueError, match=re.escape(f"{picture}: a {fmt} image; import-images reads")
        ):
            import_images(src, tmp_path / f"out{suffix}", val=0, test=0)
        picture.unlink()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"size": "32"}, TypeError, r"^size must be \(H, W\), two integers, got '32'"),
        ({"size": (16, 16, 3)}, TypeError, r"^size must be \(H, W\), two integers, got \(16,"),
        ({"size": (32.5, 32)}, TypeError, r"^size must be \(H, W\), two integers"),
        ({"crop": 16}, TypeError, r"^crop must be \(H, W\), two integers, got 16"),
        ({"val": "0.1"}, TypeError, r"^val must be a number, got '0.1'"),
        ({"test": float("nan")}, ValueError, r"^--test must be a fraction in \[0, 1\), got nan"),
        ({"val": 1.0}, ValueError, r"^--val must be a fraction in \[0, 1\), got 1.0"),
        ({"per_image": 2.0}, TypeError, r"^per_image must be an integer, got 2.0"),
        ({"channels": "3"}, TypeError, r"^channels must be an integer, got '3'"),
        ({"max_pixels": -1}, ValueError, r"^max_pixels must be >= 1, got -1"),
        ({"max_pixels": "9"}, TypeError, r"^max_pixels must be an integer, got '9'"),
    ],
)
def test_import_options_of_the_wrong_type_or_range_are_named_before_any_image(
    tmp_path, kwargs, error, message
):
    # Before: numpy's "invalid literal", "'<=' not supported between str and float" once every
    # image was read, or a limit of -1 pixels refusing each image.
    src = tmp_path / "src"
    squares(src, 3)
    with pytest.raises(error, match=message):
        import_images(src, tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()
    with pytest.raises(TypeError, match=r"^max_pixels must be an integer, got '9'"):
        read_image(src / "00.png", max_pixels="9")


def test_import_options_take_numpy_and_tensor_sizes(tmp_path):
    import torch

    squares(tmp_path / "src", 5)
    meta = import_images(
        tmp_path / "src", tmp_path / "a", size=np.array([16, 12]), val=torch.tensor(0.25)
    )
    assert (meta["height"], meta["width"], meta["params"]["val"]) == (16, 12, 0.25)


@pytest.mark.parametrize(
    ("args", "kw", "error", "message"),
    [
        (("", "OUT"), {}, ValueError, "src '' is an empty path; give the image folder"),
        (("SRC", ""), {}, ValueError, "out '' is an empty path; give the new dataset directory"),
        (("SRC", "OUT\0"), {}, ValueError, "out 'OUT\\x00' holds a NUL character"),
        (("SRC", None), {}, TypeError, "out must be a path as text, got NoneType"),
        (("SRC", 5), {}, TypeError, "out must be a path as text, got int"),
        ((None, "OUT"), {}, TypeError, "src must be a path as text, got NoneType"),
        (("SRC", "OUT"), {"labels": ""}, ValueError, "labels '' is an empty path"),
        (("SRC", "OUT"), {"labels": "l\0"}, ValueError, "labels 'l\\x00' holds a NUL"),
        (("SRC", "OUT"), {"labels": 123}, TypeError, "labels must be a path as text, got int"),
        (("SRC", "OUT"), {"boxes": 123}, TypeError, "boxes must be a path as text, got int"),
    ],
)
def test_import_images_refuses_a_path_argument_that_names_no_file_first(
    tmp_path, monkeypatch, args, kw, error, message
):
    """Before: ``src=""`` imported the working directory, ``labels=""`` was "unknown labels
    format", a NUL "embedded null byte" and ``5`` pathlib's TypeError, none naming the argument."""
    squares(tmp_path / "src", n=3)
    monkeypatch.chdir(tmp_path / "src")  # "" would be the image folder itself
    named = {"SRC": str(tmp_path / "src"), "OUT": str(tmp_path / "d")}
    with pytest.raises(error, match="^" + re.escape(message)):
        import_images(*(named.get(a, a) for a in args), **kw)
    assert not (tmp_path / "d").exists() and sorted(os.listdir(tmp_path)) == ["src"]


def test_a_box_reaching_past_its_crop_is_clipped_to_it_with_a_warning(capsys, tmp_path):
    """Before: a box whose centre is in a crop was kept whole (x 6..14 in a 12-pixel crop),
    while boxes past the image, or past a band, were clipped: the dataset held boxes past its
    images."""
    (tmp_path / "src").mkdir()
    for i in range(2):
        Image.fromarray(np.full((24, 24), 128, np.uint8)).save(tmp_path / "src" / f"a{i}.png")
    (tmp_path / "bx.csv").write_text("filename,cx,cy,w,h,class\na0.png,2,2,10,10,cat\n"
                                     "a1.png,16,16,8,8,dog\n")  # fmt: skip
    argv = ["data", "import-images", tmp_path / "src", "--out", tmp_path / "d", "--boxes"]
    rc, _, err = mist(
        capsys,
        *argv,
        tmp_path / "bx.csv",
        "--crop",
        12,
        12,
        "--per-image",
        20,
        "--val",
        0,
        "--test",
        0,
    )
    assert rc == 0, err
    assert "box(es) reach past their 12x12 crop; clipped to it" in err
    ds = SceneFolder(tmp_path / "d", "train")
    n = ds.arrays["counts"]
    boxes = ds.arrays["boxes"][np.arange(ds.max_count)[None] < n[:, None]]
    assert len(boxes) > 0
    assert (boxes[:, :2] - boxes[:, 2:] / 2 >= -0.5).all()
    assert (boxes[:, :2] + boxes[:, 2:] / 2 <= 11.5).all()


def test_an_import_that_finds_its_out_taken_at_the_end_offers_no_overwrite(tmp_path, monkeypatch):
    """Two imports to one --out at once: the loser's claim at the end said "or pass
    overwrite=True to replace it", an option import_images (and import-images) does not have."""
    import mistnet.data.images as images

    squares(tmp_path / "src", n=3)
    read_truth = images.read_truth

    def other_import_wins(*args):  # the other import writes --out while this one reads
        monkeypatch.setattr(images, "read_truth", read_truth)
        import_images(tmp_path / "src", tmp_path / "d", val=0, test=0)
        return read_truth(*args)

    monkeypatch.setattr(images, "read_truth", other_import_wins)
    with pytest.raises(DataError, match="already holds a dataset") as caught:
        import_images(tmp_path / "src", tmp_path / "d", val=0, test=0)
    assert "overwrite" not in str(caught.value) and "\n" not in str(caught.value)


def test_more_crops_than_fit_in_memory_are_refused_before_any_image_is_read(
    capsys, tmp_path, monkeypatch
):
    """Before: --per-image is capped per image (10,000), not in all: 3 images of 10,000 crops of
    1000 x 1000 grew to 30 GB, then "out of memory; try smaller images, batches or network
    sizes" (or the system killed it)."""
    squares(tmp_path / "src", n=3)
    monkeypatch.setattr("mistnet.machine.available_memory", lambda: 10**7)  # 10 MB free

    def unread(*args):  # the first image's crops alone could fill the memory
        raise AssertionError("an image was read")

    monkeypatch.setattr("mistnet.data.images.read_image", unread)
    argv = ["data", "import-images", tmp_path / "src", "--out", tmp_path / "o", "--crop", "40"]
    assert_user_error(
        mist(capsys, *argv, "40", "--per-image", "10000"),
        "30,000 images of 40 x 40 need 96.0 MB of memory, more than the 10.0 MB available; "
        "make fewer (--per-image, a smaller --crop or --size, or fewer images)",
    )
    # a crop larger than the images is said first (fewer --per-image would not have helped)
    argv[-2:] = ["--crop", "4000"]
    result = mist(capsys, *argv, "4000", "--per-image", "10000")
    assert_user_error(result, "is smaller than the 4000x4000 crop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
