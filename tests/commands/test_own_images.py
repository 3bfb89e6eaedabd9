"""One's own images end to end: a folder of PNGs imported with and without labels, trained, evaluated
(only what the data measures), shown and detected (CSV and COCO outputs)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_user_error, mist
from PIL import Image

SIZE = 48
CLASSES = ("bar", "dot")


def draw_folder(folder: Path, n: int = 14) -> dict[str, list[tuple[str, float, float]]]:
    """``n`` grey PNGs with two or three shapes each: 'dot' (6x6 square), 'bar' (10x3).

    Returns {file name: [(class, cx, cy), ...]}.
    """
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    truth = {}
    for i in range(n):
        a = np.zeros((SIZE, SIZE), np.uint8)
        objs = []
        for j, (x0, y0) in enumerate([(4, 4), (28, 8), (14, 30)][: 2 + i % 2]):
            x0, y0 = x0 + int(rng.integers(0, 6)), y0 + int(rng.integers(0, 6))
            if (i + j) % 2:
                a[y0 : y0 + 6, x0 : x0 + 6] = 255
                objs.append(("dot", x0 + 2.5, y0 + 2.5))
            else:
                a[y0 : y0 + 3, x0 : x0 + 10] = 255
                objs.append(("bar", x0 + 4.5, y0 + 1.0))
        name = f"img{i:02d}.png"
        Image.fromarray(a).save(folder / name)
        truth[name] = objs
    return truth


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    truth = draw_folder(root / "images")
    rows = [f"{name},{' '.join(c for c, _, _ in objs)}" for name, objs in truth.items()]
    (root / "labels.csv").write_text("filename,labels\n" + "\n".join(rows) + "\n")
    return root, truth


TRAIN = [
    "--preset",
    "tiny-cpu",
    "--set",
    "train.steps=24",
    "--set",
    "train.val_every=12",
    "--set",
    "model.k=3",
    "--no-progress",
    "--device",
    "cpu",
]


def import_folder(capsys, root: Path, out: Path, *options) -> str:
    """``mist data import-images`` of the folder with 20 % validation and test; its stdout."""
    rc, stdout, err = mist(
        capsys, "data", "import-images", root / "images", "--out", out, *options,
        "--val", "0.2", "--test", "0.2",
    )  # fmt: skip
    assert rc == 0, err
    return stdout


def test_label_only_images_train_and_evaluate_by_class_name(capsys, folder):
    root, truth = folder
    data, run = root / "labelled", root / "run-labelled"
    out = import_folder(capsys, root, data, "--labels", root / "labels.csv")
    assert "labels; classes: bar, dot" in out
    # the preset's 10 classes do not fit a dataset that names 2
    assert_user_error(
        mist(capsys, "train", *TRAIN, "--data", data, "--out", root / "x"),
        "names 2 classes",
        "model.num_classes=2",
    )
    assert not (root / "x").exists()
    rc, out, err = mist(
        capsys, "train", *TRAIN, "--data", data, "--out", run, "--set", "model.num_classes=2"
    )
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["select_metric"] == "classif"
    assert set(summary["not_measured"]) == {
        "det_iou50",
        "det_any50",
        "both",
        "ap50",
        "ap50_agnostic",
    }
    config = json.loads((run / "config.json").read_text())
    assert config["record"]["class_names"] == list(CLASSES)
    vals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    vals = [v for v in vals if v["split"] == "val"]
    assert len(vals) == 2 and all("classif" in v and "both" not in v for v in vals)

    rc, out, err = mist(capsys, "eval", run, "--json", root / "eval.json")
    assert rc == 0, err
    record = json.loads((root / "eval.json").read_text())
    assert "det_iou50" not in record["metrics"] and 0 <= record["metrics"]["classif"] <= 1
    per_class = {k for k in record["metrics"] if k.startswith("classif/")}
    assert per_class == {"classif/bar", "classif/dot"}
    assert record["not_measured"]["both"] == "the data has no boxes"
    line = "not measured: det_iou50, det_any50, ap50_agnostic, both, ap50 (the data has no boxes)"
    assert line in out and "both " not in out.split("not measured")[0]

    rc, _, err = mist(capsys, "show", run, "--n", "2", "--out", root / "show.png")
    assert rc == 0, err

    shots = [root / "images" / name for name in list(truth)[:2]]
    det = root / "det"
    rc, _, err = mist(
        capsys, "detect", run, *shots, "--out", det, "--device", "cpu", "--min-score", "0"
    )
    assert rc == 0, err
    record = json.loads((det / "img00.json").read_text())
    assert record["classes"] == [CLASSES[i] for i in record["labels"]] and record["k"] == 3
    with (det / "detections.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {row["class"] for row in rows} <= set(CLASSES)
    assert [row["class"] for row in rows[:3]] == record["classes"]
    images = json.loads((det / "coco_images.json").read_text())
    assert images["categories"] == [{"id": 1, "name": "bar"}, {"id": 2, "name": "dot"}]
    results = json.loads((det / "coco_results.json").read_text())
    assert [r["category_id"] for r in results[:3]] == [i + 1 for i in record["labels"]]
    coco = pytest.importorskip("pycocotools.coco")
    dt = coco.COCO(str(det / "coco_images.json")).loadRes(str(det / "coco_results.json"))
    assert {a["category_id"] for a in dt.loadAnns(dt.getAnnIds())} <= {1, 2}


def test_unlabelled_images_train_an_auto_encoder_selected_by_rmse(capsys, folder):
    root, _ = folder
    data, run = root / "plain", root / "run-plain"
    rc, out, err = mist(capsys, "data", "import-images", root / "images", "--out", data)
    assert rc == 0, err
    assert "no annotations (images only)" in out
    assert_user_error(
        mist(capsys, "train", *TRAIN, "--data", data, "--out", run), "no labels", "reconstruct"
    )
    rc, out, err = mist(
        capsys, "train", *TRAIN, "--data", data, "--out", run, "--set", "model.task=reconstruct"
    )
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["select_metric"] == "rmse" and np.isfinite(summary["best"])
    rc, out, err = mist(capsys, "eval", run, "--json", root / "plain.json")
    assert rc == 0, err
    record = json.loads((root / "plain.json").read_text())
    assert set(record["metrics"]) == {
        "rmse",
        "rmse_clipped",
        "rmse_pooled",
        "rmse_zero",
        "rmse_image_mean",
        "n_images",
    }
    assert set(record["not_measured"]) == {"det_iou50", "det_any50"}
    # before: the same metrics as with the run's K, recorded as "k": "per-image"
    result = mist(capsys, "eval", run, "--per-image-k", "--json", root / "pik.json")
    assert_user_error(result, "per-image K needs each image's instance count", "images only")
    assert not (root / "pik.json").exists()


def test_boxes_for_evaluation_make_detection_metrics_measurable(capsys, folder):
    root, truth = folder
    rows = ["filename,cx,cy,w,h,class"] + [
        f"{name},{cx},{cy},8,8,{c}" for name, objs in truth.items() for c, cx, cy in objs
    ]
    (root / "boxes.csv").write_text("\n".join(rows) + "\n")
    data, run = root / "boxed", root / "run-boxed"
    out = import_folder(capsys, root, data, "--boxes", root / "boxes.csv")
    assert "boxes and labels; classes: bar, dot" in out
    rc, out, err = mist(
        capsys, "train", *TRAIN, "--data", data, "--out", run, "--set", "model.num_classes=2"
    )
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["select_metric"] == "both" and summary["not_measured"] == {}
    rc, out, err = mist(capsys, "eval", run, "--json", root / "boxed.json")
    assert rc == 0, err
    record = json.loads((root / "boxed.json").read_text())
    assert {"det_iou50", "both", "classif", "ap50"} <= set(record["metrics"])
    assert record["not_measured"] == {} and "not measured" not in out


def test_detects_csv_reads_back_for_names_with_a_backslash_or_a_leading_space(
    capsys, tmp_path, monkeypatch, tiny_run
):
    """Before: ``mist detect src/*.png --out found`` wrote ``src/a\\b.png``, and ``import-images
    src --boxes found/detections.csv`` answered ``no image 'src/a/b.png' under src`` (the name
    was cleaned before any match); `` c.png`` read back only in the working-directory form."""
    monkeypatch.chdir(tmp_path)
    src = Path("src")
    src.mkdir()
    names = ["a\\b.png", " c.png", "0.png", "1.png", "2.png"]
    for i, name in enumerate(names):
        Image.fromarray(np.full((SIZE, SIZE), 40 * i, np.uint8)).save(src / name)
    images = [str(src / n) for n in names]
    rc, _, err = mist(capsys, "detect", tiny_run, *images, "--out", "found", "--min-score", "0")
    assert rc == 0, err
    with open("found/detections.csv", newline="") as f:
        written = {row["image"] for row in csv.DictReader(f)}
    assert written == set(images)  # src/a\b.png, as given
    rc, _, err = mist(
        capsys, "data", "import-images", src, "--boxes", "found/detections.csv", "--out", "ds",
        "--val", "0", "--test", "0",
    )  # fmt: skip
    assert rc == 0, err
    manifest = json.loads(Path("ds/manifest.json").read_text())
    assert sorted(manifest["file_names"]["train"]) == sorted(names)
    # bare names (relative to SRC) as written, in a boxes CSV of one's own
    rows = [f'"{n}",20,20,8,8' for n in names]
    Path("own.csv").write_text("filename,cx,cy,w,h\n" + "\n".join(rows) + "\n")
    rc, _, err = mist(
        capsys, "data", "import-images", src, "--boxes", "own.csv", "--out", "ds2",
        "--val", "0", "--test", "0",
    )  # fmt: skip
    assert rc == 0, err
    with np.load("ds2/train.npz") as z:
        assert z["counts"].tolist() == [1] * len(names)


def test_the_readmes_labels_csv_inside_photos_does_not_stop_a_later_import(
    capsys, tmp_path, monkeypatch, tiny_run
):
    """Before: README step 1 keeps ``photos/labels.csv`` in the folder; importing ``photos/``
    again without ``--labels`` (images only), or with ``--boxes found/detections.csv`` (the
    README's read-back of ``mist detect``), failed: "photos/labels.csv: unknown image format
    '.csv' (... move other files out)"; a ``notes.txt`` or ``Thumbs.db`` did the same. Now files
    of no image format are skipped with one warning naming the first two."""
    monkeypatch.chdir(tmp_path)
    photos = Path("photos")
    photos.mkdir()
    names = [f"{i}.png" for i in range(4)]
    for i, name in enumerate(names):
        Image.fromarray(np.full((SIZE, SIZE), 50 * i, np.uint8)).save(photos / name)
    (photos / "labels.csv").write_text("filename,labels\n" + "".join(f"{n},x\n" for n in names))
    split = ["--val", "0", "--test", "0"]
    rc, _, err = mist(
        capsys, "data", "import-images", "photos/", "--out", "labelled", "--labels",
        "photos/labels.csv", *split,
    )  # fmt: skip
    assert (rc, err) == (0, "")  # the labels file given is passed over without a word
    rc, out, err = mist(capsys, "data", "import-images", "photos/", "--out", "ae", *split)
    assert rc == 0, err
    assert err.strip() == (
        "mist data import-images: warning: photos: skipped 1 file(s) that are no images "
        "(labels.csv)"
    )
    assert "train 4; no annotations" in out
    images = sorted(map(str, photos.glob("*.png")))
    rc, _, err = mist(capsys, "detect", tiny_run, *images, "--out", "found", "--min-score", "0")
    assert rc == 0, err
    (photos / "notes.txt").write_text("shot on a phone")
    (photos / "Thumbs.db").write_bytes(b"\0" * 8)
    rc, out, err = mist(
        capsys, "data", "import-images", "photos", "--boxes", "found/detections.csv",
        "--out", "boxed", *split,
    )  # fmt: skip
    assert rc == 0, err
    assert err.splitlines()[0] == (  # then the clipping of the detected boxes
        "mist data import-images: warning: photos: skipped 3 file(s) that are no images "
        "(Thumbs.db, labels.csv, ...)"
    )
    manifest = json.loads(Path("boxed/manifest.json").read_text())
    assert sorted(manifest["file_names"]["train"]) == names
