"""``model.predict`` against ``mist detect``; the box and count limits of ``mist detect``."""

import copy
import dataclasses
import json
import threading

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, mist
from PIL import Image

import mistnet
import mistnet.prediction
from mistnet.detection import CLASSIFIER_MIN_SCORE, tiled_cap


def scenes(folder, n=2, size=(48, 56)):
    """``n`` gray PNGs of bright squares on black (the tiny model finds something in each)."""
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        a = np.zeros(size, np.uint8)
        for _ in range(3):
            y, x = rng.integers(0, size[0] - 8), rng.integers(0, size[1] - 8)
            a[y : y + 8, x : x + 8] = 255
        paths.append(folder / f"s{i}.png")
        Image.fromarray(a, "L").save(paths[-1])
    return paths


def test_predict_gives_mist_detects_boxes_for_paths_pil_and_tensors(capsys, tiny_run, tmp_path):
    paths = scenes(tmp_path)
    out = tmp_path / "det"
    rc, _, err = mist(capsys, "detect", tiny_run, *paths, "--out", out, "--min-score", "0.05")
    assert rc == 0, err
    model = mistnet.load(tiny_run)
    by_path = model.predict(paths, min_score=0.05)
    pil = model.predict([Image.open(p) for p in paths], min_score=0.05)
    tensors = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(p)) / 255.0)[None] for p in paths]
    )
    from_tensor = model.predict(tensors.float(), min_score=0.05)
    assert len(by_path) == len(pil) == len(from_tensor) == 2
    for path, got, same, also in zip(paths, by_path, pil, from_tensor, strict=True):
        record = json.loads((out / f"{path.stem}.json").read_text())
        assert record["k"] == len(got.scores) > 0
        assert np.allclose(got.keypoints.numpy(), record["boxes"], atol=1e-3)
        assert np.allclose(got.boxes.numpy(), record["xyxy"], atol=1e-3)
        assert np.allclose(got.scores.numpy(), record["scores"], atol=1e-6)
        assert got.classes.tolist() == record["labels"]
        for other in (same, also):
            assert torch.equal(other.boxes, got.boxes) and torch.equal(other.scores, got.scores)
    one = model.predict(paths[0], k=3, min_score=0)
    assert len(one) == 1 and one[0].boxes.shape == (3, 4)
    assert (one[0].scores[:-1] >= one[0].scores[1:]).all()  # highest score first


def test_predict_refuses_what_it_cannot_read(tiny_run, tmp_path):
    model = mistnet.load(tiny_run)
    with pytest.raises(TypeError, match="paths, PIL images or tensors"):
        model.predict(3)
    with pytest.raises(ValueError, match=r"C = 1"):
        model.predict(torch.zeros(3, 40, 40))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        model.predict(torch.full((1, 40, 40), 2.0))
    with pytest.raises(ValueError, match="k must be"):
        model.predict(torch.zeros(1, 40, 40), k=0)
    for score in (-1, 2, float("nan")):
        with pytest.raises(ValueError, match=r"min_score must be a score in \[0, 1\]"):
            model.predict(torch.zeros(1, 40, 40), min_score=score)
    with pytest.raises(ValueError, match="too small"):
        model.predict(torch.zeros(1, 2, 40))
    with pytest.raises(mistnet.errors.MistError, match="missing.png"):
        model.predict(tmp_path / "missing.png")


def test_predict_refuses_an_image_over_max_pixels_before_converting_it(tiny_run, monkeypatch):
    model = mistnet.load(tiny_run)

    def never(*args, **kwargs):
        raise AssertionError("converted before the size was checked")

    monkeypatch.setattr(mistnet.prediction, "image_tensor", never)
    huge = torch.zeros(1, 1, 1, 1).expand(2, 1, 300, 400)  # no memory behind it, as 20000^2
    for image in (huge, huge[0], Image.new("L", (400, 300))):
        with pytest.raises(ValueError, match=r"image 0: 400x300 = 120,000 pixels, more than"):
            model.predict(image, max_pixels=100_000)


def test_predict_errors_are_value_or_type_errors_naming_the_input(tiny_run):
    model = mistnet.load(tiny_run)
    for empty in (torch.zeros(1, 0, 0), torch.zeros(0, 1, 40, 40)):
        with pytest.raises(ValueError, match=r"image 0: an empty tensor"):
            model.predict(empty)
    with pytest.raises(TypeError, match="got bytes"):
        model.predict(b"..")
    dense = torch.zeros(1, 40, 40)
    for odd, where in (
        (dense.to("meta"), "on the meta device"),
        (dense.to_sparse(), "of torch.sparse_coo"),
    ):
        with pytest.raises(ValueError, match=rf"image 0: a tensor {where}.* holds no values"):
            model.predict([odd])
    with pytest.raises(ValueError, match="image 0: a tensor must be float"):
        model.predict(dense.to(torch.int64))
    with pytest.raises(ValueError, match="the model is on the meta device"):  # was torch's
        copy.deepcopy(model).to("meta").predict(dense)
    with pytest.raises(ValueError, match="image 0: '' is an empty path"):
        model.predict("")
    for bad, error in (("100", TypeError), (1e3, TypeError), (None, TypeError), (0, ValueError)):
        with pytest.raises(error, match=r"max_pixels must be"):
            model.predict(dense, max_pixels=bad)
    bare = copy.deepcopy(model)
    del bare.config  # a MIST built by hand, as the README's library section does
    for not_loaded in (bare, torch.nn.Linear(1, 1)):
        with pytest.raises(TypeError, match="predict takes a model returned by mistnet.load"):
            mistnet.predict(not_loaded, dense)  # before: AttributeError 'config'


def test_predict_takes_numpy_and_torch_scalars_for_k_min_score_and_max_pixels(tiny_run):
    # Before: "k must be a positive integer, got np.int64(3)"; min_score=np.float32(0.5) or
    # torch.tensor(0.5): "must be a number".
    model = mistnet.load(tiny_run)
    image = torch.rand(1, 40, 40)
    (plain,) = model.predict(image, k=3, min_score=0.5, max_pixels=10_000)
    for k, score, pixels in (
        (np.int64(3), np.float32(0.5), np.int32(10_000)),
        (torch.tensor(3), torch.tensor(0.5), torch.tensor(10_000)),
        (np.array(3), np.array(0.5), np.array(10_000)),  # 0-d arrays, as 0-d tensors
    ):
        (got,) = model.predict(image, k=k, min_score=score, max_pixels=pixels)
        assert torch.equal(got.boxes, plain.boxes) and torch.equal(got.scores, plain.scores)
    for k in (2.5, "3", np.float64(3.0), torch.tensor([3, 4])):
        with pytest.raises(TypeError, match="k must be a positive integer"):
            model.predict(image, k=k)
    for score in ("0.5", [0.5], torch.tensor([0.5, 0.6])):
        with pytest.raises(TypeError, match="min_score must be a number"):
            model.predict(image, min_score=score)
    # an int beyond floats: an OverflowError before; one beyond 4,300 digits: Python's own
    # "Exceeds the limit" ValueError, naming no argument
    for score in (10**400, 10**5000):
        with pytest.raises(ValueError, match=r"^min_score must be a score in \[0, 1\], got an"):
            model.predict(image, min_score=score)
    with pytest.raises(ValueError, match=r"^k must be a positive integer, got an integer of"):
        model.predict(image, k=-(10**5000))
    for k in (np.uint64(2**64 - 1), torch.tensor(10**6)):  # the k, not the image, is at fault
        with pytest.raises(ValueError, match=r"^k = \d+ asks for more detections than image 0"):
            model.predict(image, k=k)


def test_predict_leaves_a_training_model_as_it_was_and_takes_its_dtype(tiny_run):
    # Before: a model in training mode scored with batch statistics and had its BatchNorm
    # running statistics overwritten; a .double() model raised torch's "mixed dtype".
    model = mistnet.load(tiny_run)
    image = torch.rand(1, 80, 80)
    expected = model.predict(image)[0].scores
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.testing.assert_close(model.predict(image)[0].scores, expected)
    assert model.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)
    model.eval().double()
    torch.testing.assert_close(model.predict(image)[0].scores.float(), expected)


def test_predict_from_two_threads_scores_in_eval_mode_and_gives_the_mode_back(tiny_run):
    """Before: each call saved and restored the mode itself, so thread A, done first, put the
    model back in training mode under thread B's forward pass (batch statistics used, the
    running ones overwritten), and B then left it in eval mode."""
    model = mistnet.load(tiny_run).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    b_inside, a_done, modes = threading.Event(), threading.Event(), []

    def hook(module, inputs):
        if threading.current_thread().name == "B":
            b_inside.set()
            assert a_done.wait(30)  # A finishes while B is inside predict
        else:
            assert b_inside.wait(30)
        modes.append(module.training)

    model.heatmap_net.register_forward_pre_hook(hook)

    def call():
        model.predict(torch.rand(1, 80, 80))
        if threading.current_thread().name == "A":
            a_done.set()

    threads = [threading.Thread(target=call, name=name) for name in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert modes == [False, False] and model.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)


def test_predict_names_the_list_item_and_the_image_of_a_batch_at_fault(tiny_run):
    # Before: "image 2" for the first image of item 1 (images were counted across batches).
    model = mistnet.load(tiny_run)
    with pytest.raises(ValueError, match=r"image 1\[0\]: 4x4 is too small"):
        model.predict([torch.rand(2, 1, 80, 80), torch.rand(1, 1, 4, 4)])


def test_predict_with_the_grid_baseline_takes_its_trained_size_only():
    # Before: a 40x60 image failed inside the model; 40x40 was scored though eval refuses it.
    from mistnet.config import apply_overrides, load_preset
    from mistnet.models.build import build_model
    from mistnet.prediction import predict

    cfg = apply_overrides(load_preset("tiny-cpu"), ["model.task=reconstruct", "train.method=grid"])
    cfg.record.image_size = (80, 80)
    model = build_model(cfg.model, "grid").eval()
    model.config = cfg
    for shape in ((1, 40, 60), (1, 40, 40)):
        with pytest.raises(
            ValueError, match=r"image 0: \d+x40; this grid baseline takes the 80x80"
        ):
            predict(model, torch.rand(*shape))
    assert len(predict(model, torch.rand(1, 80, 80))) == 1


def test_predict_names_classes_when_the_run_names_them(tiny_run):
    model = mistnet.load(tiny_run)
    model.config.record.class_names = [f"digit {i}" for i in range(10)]
    (pred,) = model.predict(torch.rand(1, 40, 40), min_score=0)
    assert pred.names == tuple(f"digit {c}" for c in pred.classes.tolist())


def test_every_box_lies_inside_the_image_in_every_format(capsys, tiny_run, tmp_path):
    import csv

    path = tmp_path / "edge.png"  # bright corners: the 20-px boxes reach past the image
    a = np.zeros((30, 44), np.uint8)
    a[:6, :6] = a[-6:, -6:] = 255
    Image.fromarray(a, "L").save(path)
    out = tmp_path / "det"
    rc, _, err = mist(capsys, "detect", tiny_run, path, "--out", out, "--min-score", "0")
    assert rc == 0, err
    record = json.loads((out / "edge.json").read_text())
    squares = np.array(record["boxes"])
    assert (squares[:, 0] - squares[:, 2] / 2 + 0.5 < 0).any()  # some square does reach out
    corners = np.array(record["xyxy"])
    assert (corners[:, :2] >= 0).all() and (corners[:, 2] <= 44).all()
    assert (corners[:, 3] <= 30).all()
    results = json.loads((out / "coco_results.json").read_text())
    bbox = np.array([r["bbox"] for r in results])
    assert len(bbox) == 9 and (bbox[:, :2] >= 0).all() and (bbox[:, 2:] > 0).all()
    assert (bbox[:, 0] + bbox[:, 2] <= 44 + 1e-3).all()
    assert (bbox[:, 1] + bbox[:, 3] <= 30 + 1e-3).all()
    assert np.allclose(bbox[:, 2:], corners[:, 2:] - corners[:, :2], atol=2e-3)
    with (out / "detections.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [[float(r[c]) for c in ("x", "y", "side")] for r in rows] == record["boxes"]


def test_tiled_detect_keeps_at_most_max_detections(capsys, tiny_run, tmp_path):
    big = tmp_path / "sky.png"  # 240 x 320: 12 times the 80 x 80 training size, 9 per window
    noise = np.random.default_rng(0).integers(0, 12, (240, 320)).astype(np.uint8)
    Image.fromarray(noise, "L").save(big)
    args = ["detect", tiny_run, big, "--tile", "--min-score", "0"]
    records = {}
    for name, cap in (
        ("default", []),
        ("all", ["--max-detections", "100000"]),
        ("seven", ["--max-detections", "7"]),
    ):
        rc, _, err = mist(capsys, *args, "--out", tmp_path / name, *cap)
        assert rc == 0, err
        records[name] = json.loads((tmp_path / name / "sky.json").read_text())
    default, every, seven = records["default"], records["all"], records["seven"]
    assert default["windows"] == 20 and every["k"] > 9
    assert default["k"] == min(every["k"], tiled_cap(9, 240 * 320, (80, 80)))
    assert tiled_cap(9, 240 * 320, (80, 80)) == 108
    assert default["boxes"] == every["boxes"][: default["k"]]
    assert seven["k"] == 7 and seven["boxes"] == every["boxes"][:7]
    assert every["scores"] == sorted(every["scores"], reverse=True)
    assert_user_error(
        mist(capsys, *args, "--out", tmp_path / "c", "--max-detections", "0"), "--max-detections"
    )


def test_detect_cuts_at_the_default_min_score(capsys, tiny_run, tmp_path):
    paths = scenes(tmp_path, n=1)
    rc, printed, err = mist(capsys, "detect", tiny_run, *paths, "--out", tmp_path / "d")
    assert rc == 0, err
    record = json.loads((tmp_path / "d" / "s0.json").read_text())
    assert record["min_score"] == CLASSIFIER_MIN_SCORE  # tiny_run is a classifier
    assert all(s >= CLASSIFIER_MIN_SCORE for s in record["scores"])
    model = mistnet.load(tiny_run)
    (every,) = model.predict(paths, min_score=0)
    (default,) = model.predict(paths)
    assert record["k"] == int((every.scores >= CLASSIFIER_MIN_SCORE).sum()) == len(default.scores)
    note = f" ({9 - record['k']} below --min-score 0.75)" if record["k"] < 9 else ""
    assert f"{record['k']} boxes{note} -> " in printed


def test_dir_lists_the_public_api():
    names = dir(mistnet)
    assert {"fit", "load", "predict", "Prediction", "__version__"} <= set(names)
    assert set(mistnet.__all__) <= set(names)
    assert mistnet.Prediction.__name__ == "Prediction"


def test_score_quality_benchmark_prints_consistent_numbers(tiny_run, capsys, monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "score_quality.py"
    monkeypatch.syspath_prepend(str(path.parent))  # as run: its folder's common.py
    spec = importlib.util.spec_from_file_location("score_quality", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ap = bench.average_precision
    assert ap(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([True, False, True]), 2) == pytest.approx(
        5 / 6
    )
    assert ap(torch.tensor([0.1, 0.9]), torch.tensor([True, False]), 4) == pytest.approx(0.5 / 4)
    kp = torch.tensor([[10.0, 10, 20], [11, 10, 20], [50, 50, 20]])
    truth = torch.tensor([[10.0, 10, 20, 20]])
    assert bench.match(kp, truth).tolist() == [True, False, False]  # matched once
    argv = ["score_quality", str(tiny_run), "--scenes", "3", "--min-score", "0", "--min-score", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    line = json.loads(capsys.readouterr().out)
    assert line["scenes"] == 3 and line["detections"] == 27 and set(line["at"]) == {"0.0", "1.0"}
    assert 0 <= line["ap50_classes"] <= line["ap50"] <= 1
    assert line["at"]["0.0"]["kept_true"] in (1.0, None)  # 0 keeps every detection
    assert line["at"]["0.0"]["recall"] >= line["at"]["1.0"]["recall"]
    for cut in line["at"].values():
        for key in ("kept_true", "dropped_false", "precision"):
            assert cut[key] is None or 0 <= cut[key] <= 1
    assert all(0 <= v <= 1 for v in (line["true_scores"] or []) + line["false_scores"])


def test_a_path_and_a_pillow_image_of_a_rotated_photo_give_boxes_in_one_frame(tiny_run, tmp_path):
    """Before: a path was read upright (EXIF orientation applied), a Pillow image of the same
    file as stored, so boxes drawn on ``Image.open(path)`` were rotated for phone photos."""
    canvas = np.zeros((80, 160), np.uint8)
    canvas[20:40, 10:30] = 255
    im = Image.fromarray(canvas)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write
    im.save(tmp_path / "photo.jpg", exif=exif, quality=100)
    model = mistnet.load(tiny_run)
    (by_path,) = model.predict(tmp_path / "photo.jpg", min_score=0)
    (by_pillow,) = model.predict(Image.open(tmp_path / "photo.jpg"), min_score=0)
    assert torch.equal(by_path.keypoints, by_pillow.keypoints)
    assert by_path.boxes[:, 2].max() <= 80 and by_path.boxes[:, 3].max() <= 160  # upright: 80 x 160


def test_predictions_compare_by_identity_not_by_raising(tiny_run):
    """Before: ``a == b`` raised "Boolean value of Tensor ... is ambiguous" (the dataclass's
    generated comparison of tensors) and equal-looking predictions hashed apart."""
    model = mistnet.load(tiny_run)
    image = torch.rand(1, 80, 80)
    a, b = model.predict(image, min_score=0)[0], model.predict(image, min_score=0)[0]
    assert a == a and a != b and len({a, b, a}) == 2
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("boxes", "scores", "keypoints"))


def test_predict_of_a_list_decodes_each_image_as_it_is_detected(tiny_run, tmp_path, monkeypatch):
    """Before: every image of the list was decoded before the first was detected (a list of
    100 photos held 14 GB)."""
    from mistnet import prediction as api

    for i in range(3):
        Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / f"{i}.png")
    decoded, seen = [], []
    read, detect = api.read_image, api.detect_image
    monkeypatch.setattr(api, "read_image", lambda *a: decoded.append(1) or read(*a))
    monkeypatch.setattr(
        api, "detect_image", lambda *a, **k: seen.append(len(decoded)) or detect(*a, **k)
    )
    model = mistnet.load(tiny_run)
    assert len(model.predict([tmp_path / f"{i}.png" for i in range(3)])) == 3
    assert seen == [1, 2, 3]
    with pytest.raises(TypeError, match="image 2: predict takes paths"):
        model.predict([tmp_path / "0.png", tmp_path / "1.png", 5])
    assert len(decoded) == 3  # every item's kind checked before any is decoded


def test_evaluate_run_leaves_the_callers_random_generator(tiny_run):
    """Before: each ``evaluate_run`` advanced torch's global generator by two draws (the data
    loader's iterator draws its base seed from it), so a seeded script's numbers changed."""
    from mistnet.evaluation import evaluate_run

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    evaluate_run(tiny_run, "mnist-hard", "test", batch_size=4)
    torch.testing.assert_close(torch.rand(3), expected)


def test_an_integer_of_400_digits_is_named_by_its_size_not_spelt(tmp_path, tiny_run):
    """Before: ``predict(k=10**400)``, ``evaluate_run(k=10**400)``, ``import_images(size=
    (10**400, 2))`` and ``reproduce(seeds=10**400)`` spelt the integer in full, messages of
    450 to 1,400 characters."""
    from mistnet.data.images import import_images
    from mistnet.evaluation import evaluate_run
    from mistnet.reproduce import reproduce

    model, huge = mistnet.load(tiny_run), 10**400
    (tmp_path / "imgs").mkdir()
    Image.new("L", (40, 40), 9).save(tmp_path / "imgs" / "a.png")
    for call in [
        lambda: model.predict(torch.rand(1, 80, 80), k=huge),
        lambda: evaluate_run(tiny_run, "mnist-easy", k=huge),
        lambda: import_images(tmp_path / "imgs", tmp_path / "o", size=(huge, 2)),
        lambda: reproduce("table1", "smoke", tmp_path / "r", seeds=huge),
    ]:
        with pytest.raises(ValueError, match="an integer of 1329 bits") as caught:
            call()
        assert len(str(caught.value)) < 200, str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_meta_tensors_are_named_where_values_are_needed(tmp_path, tiny_run):
    """Before: NotImplementedError "Cannot copy out of meta tensor" from fit of a model moved
    to the meta device, output_figure of meta images and import_images of a meta size."""
    from mistnet.data.images import import_images
    from mistnet.viz import output_figure

    model = mistnet.load(tiny_run)
    half_meta = mistnet.load(tiny_run)  # one buffer on the meta device, the weights not
    norm = next(m for m in half_meta.modules() if isinstance(m, torch.nn.BatchNorm2d))
    norm.running_mean = norm.running_mean.to("meta")
    with pytest.raises(ValueError, match="model_or_preset is on the meta device"):
        mistnet.fit(half_meta, [(torch.rand(1, 80, 80), [0])] * 4, out=tmp_path / "r", steps=1)
    with pytest.raises(ValueError, match="the model is on the meta device"):
        half_meta.predict(torch.rand(1, 80, 80))
    x = torch.rand(1, 1, 80, 80)
    with torch.inference_mode():
        out = model(x)
    (tmp_path / "imgs").mkdir()
    Image.new("L", (40, 40), 9).save(tmp_path / "imgs" / "a.png")
    items = [(torch.rand(1, 80, 80), [i % 2]) for i in range(4)]
    for call, error, message in [
        (lambda: mistnet.fit(model.to("meta"), items, out=tmp_path / "r", steps=1),
         ValueError, "model_or_preset is on the meta device"),
        (lambda: output_figure(x.to("meta"), out, tmp_path / "o.png"),
         ValueError, "images: expected .* values, got on the meta device"),
        (lambda: output_figure(x, dataclasses.replace(out, keypoints=out.keypoints.to("meta")),
                               tmp_path / "o.png"),
         ValueError, "output: its tensors are on the meta device"),
        (lambda: import_images(tmp_path / "imgs", tmp_path / "o",
                               size=torch.tensor([16, 16], device="meta")),
         TypeError, "size must be \\(H, W\\), two integers"),
    ]:  # fmt: skip
        with pytest.raises(error, match=message):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]
