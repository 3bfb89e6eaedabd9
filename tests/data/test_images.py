"""``mist data import-images``: channels, sizes, seeded splits and crops, labels, boxes, errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_user_error, mist
from PIL import Image

from mistnet.data.images import import_images
from mistnet.data.store import SceneFolder, annotations_of, classes_of


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
            assert item["boxes"][0].tolist() == [cx - x0, cy - y0, 8.0, 8.0]
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
    (src / "notes.txt").write_text("hello")
    assert_user_error(
        mist(capsys, "data", "import-images", src, "--out", out), "notes.txt", "unknown image"
    )
    (src / "notes.txt").unlink()
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(src / "small.png")
    assert_user_error(
        mist(capsys, "data", "import-images", src, "--out", out), "differ in size", "--size"
    )
    (tmp_path / "empty" / "deep").mkdir(parents=True)
    assert_user_error(
        mist(capsys, "data", "import-images", tmp_path / "empty", "--out", out), "no PNG"
    )
    assert not out.exists()
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
                found[split].add((cx + x0, cy + y0, w, h))
    assert found == {
        "train": {(6, 20, 4, 4), (12, 75.75, 4, 7.5)},  # clipped to rows 72-79.5
        "val": {(12, 85, 4, 4)},
        "test": {(18, 95, 4, 4)},
    }


def test_one_image_too_small_for_its_bands_says_what_to_pass(capsys, tmp_path):
    (tmp_path / "src").mkdir()
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(tmp_path / "src" / "p.png")
    out = tmp_path / "d"
    base = ["data", "import-images", tmp_path / "src", "--out", out]
    assert_user_error(
        mist(capsys, *base, "--crop", "16", "16", "--per-image", "10"),
        "train 80, val 10, test 10 pixels",
        "pass a smaller --crop",
    )
    assert_user_error(mist(capsys, *base), "1 images leave none", "pass --crop H W")
    assert not out.exists()


def test_32_bit_pixels_have_one_scale_and_clipping_is_said():
    """A 32-bit grey image (Pillow's ``I``) with values below 0 or above 65535 was clipped
    without a word, and scaled by 255 or 65535 as its own maximum chose; a float one outside
    [0, 1] was already said. In range: no warning."""
    from mistnet.data.images import float_pixels
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
