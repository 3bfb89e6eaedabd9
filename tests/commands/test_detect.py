"""``mist detect``: image files of any size and mode, its error paths, the grid baseline."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, mist
from PIL import Image

from mistnet.commands import detect
from mistnet.commands.detect import ANNOTATION_SIDE, read_image
from mistnet.config import apply_overrides, load_preset
from mistnet.detection import detect_image
from mistnet.models.baselines import grid_keypoints
from mistnet.models.build import build_model


def test_detect_unreadable_image(capsys, tiny_run, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG garbage " * 20)
    out = tmp_path / "det"
    assert_user_error(mist(capsys, "detect", tiny_run, bad, "--out", out), str(bad), "readable")
    assert_user_error(
        mist(capsys, "detect", tiny_run, tmp_path / "missing.png", "--out", out), "missing.png"
    )
    assert not out.exists()


def test_images_named_like_options_after_a_double_dash(capsys, tiny_run, tmp_path, monkeypatch):
    """Before: ``mist detect --out F -- RUN -x.png`` said "unrecognized arguments: -x.png" and
    ``--model NAME --out F -- -x.png`` "the following arguments are required: IMAGE" (the
    images must come after the options, as the other commands take them)."""
    monkeypatch.chdir(tmp_path)
    for name in ("-x.png", "--y.png"):
        Image.fromarray(np.zeros((40, 40), np.uint8), "L").save(tmp_path / name)
    assert mist(capsys, "detect", "--out", "a", "--", tiny_run, "-x.png", "--y.png")[0] == 0
    assert {"-x.json", "--y.json"} <= {p.name for p in (tmp_path / "a").iterdir()}
    model = ["--model", "mnist-hard-classifier"]
    assert mist(capsys, "detect", *model, "--out", "b", "--", "-x.png")[0] == 0
    assert (tmp_path / "b" / "-x.json").is_file()
    result = mist(capsys, "detect", *model, "--out", "c", "--", "-x.png", "--bogus")
    assert_user_error(result, "--bogus: no such file")  # after --, an image's name
    # an option's value is never taken from after -- (its type or choices named a stand-in)
    for option in (["--out"], ["--out", "d", "--max-detections"], ["--out", "d", "--format"]):
        with pytest.raises(SystemExit) as exited:  # argparse's usage error
            mist(capsys, "detect", *model, *option, "--", "3", "-x.png")
        said = capsys.readouterr().err.splitlines()[-1]
        assert exited.value.code == 2 and said.endswith(f"{option[-1]}: expected one argument")
    # a value that holds the text \x00 is no stand-in: its own error stays
    with pytest.raises(SystemExit):
        mist(capsys, "detect", *model, "--out", "d", "--format", "csv\\x00", "--", "-x.png")
    assert "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "3").exists() and not (tmp_path / "d").exists()


def test_detect_too_small_image(capsys, tiny_run, tmp_path):
    path = tmp_path / "thin.png"
    Image.fromarray(np.zeros((3, 40), np.uint8), "L").save(path)
    assert_user_error(
        mist(capsys, "detect", tiny_run, path, "--out", tmp_path / "d"), "thin.png", "too small"
    )


def odd_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Write PNG/JPEG files of odd sizes and modes; returns {file name: (W, H)}."""
    rng = np.random.default_rng(0)
    u8 = lambda *s: (rng.random(s) * 255).astype(np.uint8)  # noqa: E731
    Image.fromarray(u8(61, 97), "L").save(folder / "gray.png")
    Image.fromarray(u8(80, 120, 4), "RGBA").save(folder / "rgba.png")
    Image.fromarray(u8(200, 64, 3), "RGB").convert("P").save(folder / "palette.png")
    Image.fromarray((rng.random((50, 70)) * 65535).astype(np.uint16)).save(folder / "deep.png")
    Image.fromarray(u8(45, 33, 3), "RGB").save(folder / "photo.jpg")
    Image.fromarray(u8(40, 41) > 128).save(folder / "bits.png")  # mode "1"
    return {
        "gray.png": (97, 61),
        "rgba.png": (120, 80),
        "palette.png": (64, 200),
        "deep.png": (70, 50),
        "photo.jpg": (33, 45),
        "bits.png": (41, 40),
    }


def test_detect_on_odd_sizes_and_modes(capsys, tiny_run, tmp_path):
    sizes = odd_images(tmp_path)
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert Image.open(tmp_path / "palette.png").mode == "P"
    out = tmp_path / "det"
    images = [tmp_path / f for f in sizes]
    rc, stdout, err = mist(capsys, "detect", tiny_run, *images, "--out", out, "--min-score", "0")
    assert rc == 0, err
    for name, (W, H) in sizes.items():
        stem = Path(name).stem
        record = json.loads((out / f"{stem}.json").read_text())
        assert (record["width"], record["height"], record["k"]) == (W, H, 9)
        boxes = np.array(record["boxes"])
        assert boxes.shape == (9, 3)
        assert (boxes[:, 2] == 20.0).all()
        assert (
            (boxes[:, 0] >= 0) & (boxes[:, 0] < W) & (boxes[:, 1] >= 0) & (boxes[:, 1] < H)
        ).all()
        assert len(record["scores"]) == 9
        assert record["scores"] == sorted(record["scores"], reverse=True)
        assert len(record["labels"]) == 9 and all(0 <= v < 10 for v in record["labels"])
        scale = max(1, ANNOTATION_SIDE // max(W, H))
        with Image.open(out / f"{stem}.png") as im:
            assert im.size == (W * scale, H * scale)
            assert im.mode == "RGB"
    assert stdout.count("9 boxes") == len(sizes)


def test_detect_k_option(capsys, tiny_run, tmp_path):
    odd_images(tmp_path)
    rc, _, err = mist(
        capsys,
        "detect",
        tiny_run,
        tmp_path / "gray.png",
        "--k",
        "4",
        "--out",
        tmp_path / "d",
        "--min-score",
        "0",  # the 10-step run is unsure of every class
    )
    assert rc == 0, err
    assert len(json.loads((tmp_path / "d" / "gray.json").read_text())["boxes"]) == 4


def test_options_may_come_between_the_run_and_its_images(capsys, tiny_run, tmp_path):
    # Before: "unrecognized arguments: gray.png" (argparse took the run for the first image).
    odd_images(tmp_path)
    images = [tmp_path / "gray.png", tmp_path / "rgba.png"]
    rc, _, err = mist(capsys, "detect", tiny_run, "--out", tmp_path / "d", *images)
    assert rc == 0, err
    assert (tmp_path / "d" / "gray.json").is_file() and (tmp_path / "d" / "rgba.json").is_file()
    rc, _, err = mist(capsys, "detect", tiny_run, images[0], "--out", tmp_path / "e", images[1])
    assert rc == 0, err
    assert (tmp_path / "e" / "rgba.json").is_file()


def test_read_image_conversions(tmp_path):
    deep = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    x = read_image(tmp_path / "deep.png", 1)
    assert x.shape == (1, 2, 2) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.from_numpy(deep / 65535.0).float())
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere ...
    rgba[0, :, 3] = 255  # ... opaque in the first row, transparent in the second
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    x = read_image(tmp_path / "rgba.png", 3)
    assert x.shape == (3, 2, 3)
    assert torch.equal(x[:, 0], torch.tensor([1.0, 0, 0])[:, None].expand(3, 3))
    assert torch.equal(x[:, 1], torch.zeros(3, 3))  # transparent over black
    gray = read_image(tmp_path / "rgba.png", 1)
    assert gray.shape == (1, 2, 3)
    assert float(gray[0, 0, 0]) == pytest.approx(round(0.299 * 255) / 255, abs=1 / 255)
    x3 = read_image(tmp_path / "deep.png", 3)
    assert x3.shape == (3, 2, 2) and torch.equal(x3[0], x3[2])


def test_detect_image_tiles_each_image_by_its_own_size_with_the_grid_baseline():
    cfg = apply_overrides(load_preset("tiny-cpu"), ["model.task=reconstruct", "train.method=grid"])
    torch.manual_seed(0)
    model = build_model(cfg.model, "grid").eval()
    pred = detect_image(model, torch.rand(1, 60, 60), model.k)
    assert torch.equal(pred.keypoints, grid_keypoints(60, 60)[0])  # 20 px cells for 60 px
    assert pred.reconstruction.shape == (1, 60, 60)
    image = torch.rand(1, 80, 80)  # the model keeps no size: the next image gets its own cells
    got = detect_image(model, image, model.k)
    assert torch.equal(got.keypoints, grid_keypoints(80, 80)[0])
    with torch.inference_mode():
        want = model(image[None])
    assert torch.equal(got.scores, want.scores[0])
    assert torch.equal(got.reconstruction, want.reconstruction[0])


def test_detect_writes_one_csv_and_coco_results_for_the_call(capsys, tiny_run, tmp_path):
    import csv

    sizes = odd_images(tmp_path)
    names = ["gray.png", "photo.jpg"]
    out = tmp_path / "det"
    images = [tmp_path / n for n in names]
    rc, _, err = mist(capsys, "detect", tiny_run, *images, "--out", out, "--min-score", "0")
    assert rc == 0, err
    records = [json.loads((out / f"{Path(n).stem}.json").read_text()) for n in names]
    with (out / "detections.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image", "x", "y", "side", "score", "class"]
    assert len(rows) == 18
    for r in records:
        mine = [row for row in rows if row["image"] == r["image"]]
        assert [[float(row[c]) for c in ("x", "y", "side")] for row in mine] == r["boxes"]
        assert [float(row["score"]) for row in mine] == r["scores"]
        assert [row["class"] for row in mine] == [str(v) for v in r["labels"]]
    images = json.loads((out / "coco_images.json").read_text())
    results = json.loads((out / "coco_results.json").read_text())
    assert [im["file_name"] for im in images["images"]] == [str(tmp_path / n) for n in names]
    assert [(im["width"], im["height"]) for im in images["images"]] == [sizes[n] for n in names]
    assert [c["id"] for c in images["categories"]] == list(range(1, 11))
    first = results[0]
    x, y, side = records[0]["boxes"][0]
    assert first["image_id"] == 1 and first["category_id"] == records[0]["labels"][0] + 1
    x0, y0, x1, y1 = records[0]["xyxy"][0]
    W, H = sizes["gray.png"]
    assert [x0, y0, x1, y1] == pytest.approx(
        [
            max(0, x - side / 2 + 0.5),
            max(0, y - side / 2 + 0.5),
            min(W, x + side / 2 + 0.5),
            min(H, y + side / 2 + 0.5),
        ]
    )
    assert first["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=2e-3)
    coco = pytest.importorskip("pycocotools.coco")
    gt = coco.COCO(str(out / "coco_images.json"))
    dt = gt.loadRes(str(out / "coco_results.json"))
    assert len(dt.getAnnIds(imgIds=[2])) == 9
    area = (x1 - x0) * (y1 - y0)
    assert dt.loadAnns(dt.getAnnIds(imgIds=[1]))[0]["area"] == pytest.approx(area, rel=1e-3)


def test_detect_min_score_and_format(capsys, tiny_run, tmp_path):
    odd_images(tmp_path)
    image = tmp_path / "gray.png"
    rc, _, err = mist(
        capsys, "detect", tiny_run, image, "--out", tmp_path / "all", "--min-score", 0
    )
    assert rc == 0, err
    scores = json.loads((tmp_path / "all" / "gray.json").read_text())["scores"]
    cut = (scores[2] + scores[3]) / 2
    out = tmp_path / "cut"
    rc, said, err = mist(
        capsys, "detect", tiny_run, image, "--out", out, "--min-score", cut, "--format", "csv"
    )
    assert rc == 0, err
    (line,) = [line for line in said.splitlines() if "gray.png: " in line]
    assert line.endswith(f"-> {out / 'gray.png'}"), line  # before: "-> .../gray.json, ..."
    lines = (out / "detections.csv").read_text().splitlines()
    assert len(lines) == 1 + 3 and all(float(line.split(",")[4]) >= cut for line in lines[1:])
    assert not (out / "gray.json").exists() and not (out / "coco_results.json").exists()
    assert (out / "gray.png").is_file()


def test_detect_side_and_tile_options(capsys, tiny_run, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray((np.random.default_rng(0).random((150, 230)) * 255).astype(np.uint8)).save(big)
    out = tmp_path / "d"
    argv = ["detect", tiny_run, big, "--out", out, "--tile", "--side", "10", "--min-score", "0"]
    rc, _, err = mist(capsys, *argv)
    assert rc == 0, err
    record = json.loads((out / "big.json").read_text())
    assert record["scale"] == 2.0 and record["tile"] == [80, 80]
    # the image doubles to 300 x 460: windows of 80 overlapping by 20 -> 5 x 8
    assert record["windows"] == 40
    boxes = np.array(record["boxes"])
    assert (boxes[:, 2] == 10.0).all() and len(boxes) > 9
    assert (boxes[:, 0] < 230).all() and (boxes[:, 1] < 150).all()
    assert_user_error(mist(capsys, "detect", tiny_run, big, "--out", out, "--side", "-3"), "--side")
    assert_user_error(
        mist(capsys, "detect", tiny_run, big, "--out", out, "--side", "4000"),
        "big.png",
        "too small",
    )
    # an image too small as it is, which --side enlarges: checked at the size it becomes
    # (was refused: "4x4 is too small; the heatmap network needs at least ...")
    small = tmp_path / "four.png"
    Image.fromarray((np.random.default_rng(1).random((4, 4)) * 255).astype(np.uint8)).save(small)
    rc, _, err = mist(capsys, "detect", tiny_run, small, "--out", tmp_path / "d4", "--side", "1")
    assert rc == 0, err
    assert json.loads((tmp_path / "d4" / "four.json").read_text())["scale"] == 20.0
    assert_user_error(
        mist(capsys, "detect", tiny_run, small, "--out", tmp_path / "d5"), "4x4 is too small"
    )


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--side", "0", "--side must be a positive number of pixels, got 0"),
        ("--side", "-1", "--side must be a positive number of pixels, got -1"),
        ("--side", "inf", "--side must be a positive number of pixels, got inf"),
        ("--min-score", "-1", "--min-score must be a score in [0, 1], got -1"),
        ("--min-score", "2", "--min-score must be a score in [0, 1], got 2"),
        ("--min-score", "nan", "--min-score must be a score in [0, 1], got nan"),
    ],
)
def test_detect_refuses_a_side_or_score_out_of_range(
    capsys, tiny_run, tmp_path, option, value, message
):
    """--side 0 meant "no resizing" without saying so (leaving --side out does); a score is a
    fraction of heatmap mass, so a cut outside [0, 1] keeps all or nothing."""
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(image)
    argv = ["detect", tiny_run, image, "--out", tmp_path / "d", option, value]
    assert_user_error(mist(capsys, *argv), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.png"]


def test_every_file_detect_writes_is_named_in_the_readme(capsys, tiny_run, tmp_path):
    """The README's paragraph on detect's outputs names each file (with the image's stem as
    ``<stem>``), the auto-encoder's reconstruction included."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    paragraph = text[text.index("`mist detect` writes per image") :].split("\n\n", 1)[0]
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "scene.png")
    rc, _, err = mist(capsys, "detect", tiny_run, tmp_path / "scene.png", "--out", tmp_path / "d")
    assert rc == 0, err
    written = {p.name.replace("scene", "<stem>") for p in (tmp_path / "d").iterdir()}
    assert {".mistnet", "<stem>.json", "<stem>.png", "detections.csv"} <= written
    for name in written | set(detect._image_files("<stem>", set(detect.FORMATS))):
        assert f"{name}`" in paragraph, name


def test_detect_help_states_the_min_score_defaults_the_code_uses():
    """The description and the option both name each task's default cut."""
    from mistnet.detection import CLASSIFIER_MIN_SCORE, DEFAULT_MIN_SCORE

    text = " ".join((detect.__doc__ or "").split())
    assert f"default {CLASSIFIER_MIN_SCORE} for a classifier, {DEFAULT_MIN_SCORE} for an" in text
    assert "default 0.5;" not in text


def test_detect_an_image_whose_name_is_not_utf8(capsys, tiny_run, tmp_path):
    # Before: with a detection to list, writing detections.csv failed once the work was done
    # (an internal error, UnicodeEncodeError); the CSV now names the file by its own bytes.
    import os

    image = tmp_path / os.fsdecode(b"a\xff.png")
    Image.fromarray((np.random.default_rng(0).random((50, 50)) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "det"
    rc, _, err = mist(capsys, "detect", tiny_run, image, "--out", out, "--min-score", "0")
    assert rc == 0, err
    rows = (out / "detections.csv").read_bytes().splitlines()
    assert len(rows) > 1 and all(b"a\xff.png" in row for row in rows[1:])
    assert json.loads((out / "coco_images.json").read_text())["images"][0]["file_name"].endswith(
        os.fsdecode(b"a\xff.png")
    )


def test_a_control_character_of_an_images_name_is_no_part_of_its_files_names(
    capsys, tiny_run, tmp_path
):
    """Before: an image named ``a<newline>b.png`` gave ``a<newline>b.json`` and ``.png`` in the
    output folder, whose own name may hold no control character."""
    image = tmp_path / "a\nb\x1b.png"
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(image)
    out = tmp_path / "det"
    rc, _, err = mist(capsys, "detect", tiny_run, image, "--out", out)
    assert rc == 0, err
    assert {"a_b_.json", "a_b_.png"} <= {p.name for p in out.iterdir()}
    assert all(p.name.isprintable() for p in out.iterdir())
    assert json.loads((out / "a_b_.json").read_text())["image"] == str(image)  # its own name


def test_coco_categories_are_the_models_classes_whichever_were_found(capsys, tmp_path, tiny_run):
    """Before: coco_images.json listed only the classes this call detected (none kept: one
    category), so two calls of one model disagreed on the category list."""
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(image)
    out = tmp_path / "found"
    rc, _, err = mist(capsys, "detect", tiny_run, image, "--out", out, "--min-score", "1")
    assert rc == 0, err
    assert json.loads((out / "coco_results.json").read_text()) == []
    categories = json.loads((out / "coco_images.json").read_text())["categories"]
    assert [c["id"] for c in categories] == list(range(1, 11))


def test_detect_decodes_one_image_at_a_time_after_checking_every_header(
    capsys, tiny_run, tmp_path, monkeypatch
):
    """Before: every image was decoded before the first was detected, so memory grew with the
    number of images (100 photos of 12 MP: 14 GB), ``--tile`` or not. Now every header is
    checked first (a too small image last in the list stops the call before any decoding),
    then each image is decoded as it is detected; one damaged past its header stops the call
    with nothing written."""
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        a = np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8)
        Image.fromarray(a).save(paths[-1])
    events = []
    real_read, real_detect = detect.read_image, detect.detect_image
    monkeypatch.setattr(detect, "read_image", lambda *a: events.append("read") or real_read(*a))
    monkeypatch.setattr(
        detect, "detect_image", lambda *a, **k: events.append("detect") or real_detect(*a, **k)
    )
    thin = tmp_path / "thin.png"
    Image.fromarray(np.zeros((3, 40), np.uint8)).save(thin)
    out = tmp_path / "d"
    assert_user_error(mist(capsys, "detect", tiny_run, *paths, thin, "--out", out), "thin.png")
    assert events == [] and not out.exists()
    rc, _, err = mist(capsys, "detect", tiny_run, *paths, "--out", out, "--min-score", "0")
    assert rc == 0, err
    assert events == ["read", "detect"] * 3
    assert {"0.json", "1.json", "2.json"} <= {p.name for p in out.iterdir()}
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(paths[0].read_bytes()[:200])  # the header whole, the pixels cut short
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())
    result = mist(capsys, "detect", tiny_run, *paths, damaged, "--out", out)
    assert_user_error(result, "damaged.png: not a readable image")
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_detect_turns_an_image_as_its_pixels_are_read_and_checks_a_png_undecoded(
    capsys, tiny_run, tmp_path, monkeypatch
):
    """Before: an EXIF orientation written as text ("6") swapped the header's width and height
    though the decoder does not turn such an image: "its header said 60x100; the file
    changed while detect ran". And Pillow's ``getexif`` decoded every PNG in the header pass
    (an oversized one before it was refused)."""
    import struct

    from PIL import PngImagePlugin

    from mistnet.imagefile import upright_size

    ifd = struct.pack(">H", 1) + struct.pack(">HHI", 0x0112, 2, 2) + b"6\x00\x00\x00"
    exif = b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0)
    text = tmp_path / "text6.jpg"
    Image.fromarray(np.full((60, 100), 90, np.uint8)).save(text, exif=exif)
    turned = tmp_path / "turned.jpg"
    exif6 = Image.Exif()
    exif6[0x0112] = 6
    Image.fromarray(np.full((60, 100), 90, np.uint8)).save(turned, exif=exif6)
    out = tmp_path / "d"
    rc, _, err = mist(capsys, "detect", tiny_run, text, turned, "--out", out)
    assert rc == 0, err
    sizes = [json.loads((out / f"{n}.json").read_text()) for n in ("text6", "turned")]
    assert [(r["width"], r["height"]) for r in sizes] == [(100, 60), (60, 100)]
    png = tmp_path / "p.png"
    Image.fromarray(np.zeros((50, 70), np.uint8)).save(png)

    def decoded(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", decoded)
    assert upright_size(png) == (70, 50)


def test_an_image_whose_exif_is_no_tiff_data_is_named_by_every_reader(capsys, tiny_run, tmp_path):
    """Before: detect said the file "changed while it was read", import-images ended in an
    internal error and predict raised a raw SyntaxError ("not a TIFF file")."""
    src = tmp_path / "s"
    src.mkdir()
    bad = src / "bad.png"
    Image.fromarray(np.zeros((60, 100), np.uint8)).save(bad, exif=b"garbagegarbage")
    result = mist(capsys, "detect", tiny_run, bad, "--out", tmp_path / "d")
    assert_user_error(result, "bad.png: not a readable image (", "not a TIFF file")
    result = mist(capsys, "data", "import-images", src, "--out", tmp_path / "i")
    assert_user_error(result, "bad.png: not a readable image (", "not a TIFF file")
    import mistnet

    with pytest.raises(ValueError, match="bad.png: not a readable image"):
        mistnet.load(tiny_run).predict(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
