"""mistnet.detection: rescaling for another object size, windows with cores, merging across them.

The semantic tests use a MIST whose heatmap network is the identity: E_K then finds the bright
pixels of the image, so where detections must land is known by construction.
"""

import random
import re

import numpy as np
import pytest
import torch
from torch import nn

from mistnet.config import load_preset
from mistnet.detection import (
    CLASSIFIER_MIN_SCORE,
    _cores,
    default_min_score,
    detect_image,
    merge_detections,
    min_image_side,
    read_image,
    window_starts,
)
from mistnet.models.heatmap import HeatmapNet
from mistnet.models.mist import MIST
from mistnet.models.patch import PatchAutoencoder, PatchClassifier


def peak_model(k: int = 4, side: float = 20.0, sure: bool = True) -> MIST:
    """A MIST on identity heatmaps; ``sure``: its classifier says class 0 with probability ~1,
    so that a detection's score is the heatmap's alone."""
    torch.manual_seed(0)
    task = PatchClassifier(1, 3, patch_size=8, base_width=4, levels=1, blocks=1)
    if sure:
        with torch.no_grad():
            task.head.weight.zero_()
            task.head.bias.copy_(torch.tensor([30.0, 0.0, 0.0]))
    return MIST(nn.Identity(), task, k=k, sides=(side,), patch_size=8, nms_window=5).eval()


def test_a_classifier_scores_a_box_by_its_peak_times_its_class_probability():
    image = dots(40, 40, [(10, 10), (30, 28)])[None]
    unsure = peak_model(k=2, sure=False)
    sure = peak_model(k=2)
    with torch.no_grad():
        unsure.task_net.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0]))
        unsure.task_net.head.weight.zero_()  # uniform: every class at 1/3
        a, b = sure(image), unsure(image)
    assert torch.equal(a.keypoints, b.keypoints)
    peak = unsure.detection_scores(a.heatmap_logits, a.keypoints)
    assert peak.min() > 0.9  # two clear peaks
    assert torch.allclose(a.scores, peak, atol=1e-6)
    assert torch.allclose(b.scores, peak / 3, atol=1e-6)


def dots(H: int, W: int, points: list[tuple[int, int]], radius: int = 0) -> torch.Tensor:
    """Peaks of 1 at ``points``, falling off linearly to 0 at ``radius + 1`` pixels."""
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    image = torch.zeros(1, H, W)
    for x, y in points:
        d = ((xx - x) ** 2 + (yy - y) ** 2).float().sqrt()
        image[0] = torch.maximum(image[0], (1 - d / (radius + 1)).clamp(min=0))
    return image


@pytest.mark.parametrize("length", [1, 79, 80, 81, 200, 333])
def test_window_cores_partition_the_image_and_keep_a_margin(length):
    window, overlap = 80, 20
    starts = window_starts(length, window, overlap)
    cores = _cores(starts, min(window, length))
    assert starts[0] == 0 and starts[-1] + min(window, length) == length
    for pos in range(length):
        owners = [i for i, (lo, hi) in enumerate(cores) if lo <= pos < hi]
        assert len(owners) == 1
        start = starts[owners[0]]
        assert start <= pos < start + window
        inner = pos - start >= overlap / 2 or start == 0
        outer = start + window - pos >= overlap / 2 or start + window >= length
        assert inner and outer


def test_merge_keeps_the_best_of_overlapping_boxes_only():
    random.seed(0)
    kp = torch.tensor([[10.0, 10, 20], [13, 11, 20], [31, 10, 20], [200, 200, 20], [205, 200, 4]])
    scores = torch.tensor([0.2, 0.9, 0.5, 0.3, 0.8])
    # 13 vs 10: IoU 17*19 / (800 - 323) > .5, dropped; 31 vs 13: IoU 2*19 / .. < .5, kept;
    # the small box inside the big one: IoU 16 / 400 < .5, both kept
    assert merge_detections(kp, scores).tolist() == [1, 4, 2, 3]
    assert merge_detections(kp[:0], scores[:0]).tolist() == []


def test_side_rescales_so_that_other_object_sizes_map_back():
    model = peak_model(k=2)
    image = dots(80, 100, [(37, 21), (70, 60)], radius=3)  # two cones
    plain = detect_image(model, image, 2)
    assert sorted(plain.keypoints[:, :2].tolist()) == [[37.0, 21.0], [70.0, 60.0]]
    half = detect_image(model, image, 2, scale=0.5)  # objects of 40 px seen as the model's 20
    assert half.keypoints[:, 2].tolist() == [40.0, 40.0]
    # 37 -> (37 + 0.5) / 2 - 0.5 = 18.25 in the half image, found at 18 -> back at 36.5; 70 at 70.5
    assert sorted(half.keypoints[:, :2].tolist()) == [[36.5, 20.5], [70.5, 60.5]]


def test_tiles_find_every_object_once_in_bounded_batches(monkeypatch):
    model = peak_model(k=3)
    points = [(5, 5), (77, 40), (78, 41 + 30), (150, 150), (299, 10), (130, 199), (60, 119)]
    image = dots(200, 300, points)
    batches = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x, k=None: batches.append(len(x)) or forward(x, k))
    found = detect_image(model, image, 3, tile=(80, 80), batch=4)
    rows, cols = window_starts(200, 80, 20), window_starts(300, 80, 20)
    assert found.windows == len(rows) * len(cols) == sum(batches)
    assert max(batches) <= 4
    bright = found.keypoints[found.scores > 0.5]
    assert sorted(map(tuple, bright[:, :2].tolist())) == sorted(
        (float(x), float(y)) for x, y in points
    )
    whole = detect_image(model, image, len(points))
    assert sorted(map(tuple, whole.keypoints[:, :2].tolist())) == sorted(
        map(tuple, bright[:, :2].tolist())
    )
    assert found.logits.shape == (len(found.keypoints), 3)


def test_tiles_keep_a_windows_own_overlapping_detections():
    """Before: the merge across windows also compared the boxes of one window, so two objects
    4 px apart (IoU 0.67 of their 20 px boxes) became one with --tile, even in a single window
    (9 boxes of a trained run became 7); the model's own NMS had kept both."""
    model = peak_model(k=2)
    image = dots(40, 40, [(20, 20), (24, 20)])
    whole = detect_image(model, image, 2)
    tiled = detect_image(model, image, 2, tile=(80, 80))
    assert sorted(tiled.keypoints[:, 0].tolist()) == sorted(whole.keypoints[:, 0].tolist())
    assert sorted(whole.keypoints[:, 0].tolist()) == [20.0, 24.0]


def test_tiles_overlap_by_at_most_half_a_window():
    """Before: a box side as large as the window (a run of base_side 60 on 64x48 images) made
    the windows' stride 1: 21,505 windows for a 400x300 image, hours for a photograph."""
    model = peak_model(k=2, side=60.0)
    found = detect_image(model, torch.zeros(1, 300, 400), 2, tile=(48, 64))
    rows, cols = window_starts(300, 48, 24), window_starts(400, 64, 32)
    assert found.windows == len(rows) * len(cols) == 12 * 12  # was 253 * 85


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be an integer >= 1, got 0"),  # was the model's K
        ({"max_detections": -1}, "max_detections must be an integer >= 1"),  # was k - 1
        ({"max_detections": 0}, "max_detections must be"),  # none, or the tiled default
        ({"scale": float("nan")}, "scale must be a finite number > 0"),
        ({"scale": 0}, "scale must be a finite number > 0"),
        # Before: OverflowError "int too large to convert to float", naming no argument
        ({"scale": 10**400}, "^scale must be a finite number > 0, got an integer of 1329 bits$"),
        ({"tile": (80,)}, "tile must be \\(h, w\\)"),
        ({"batch": 0}, "batch must be an integer >= 1"),
        # Before: a uint8 image and a NaN one went into the network (a dtype error deep
        # inside; no detection at all, no error); a scale of 1e-3 or 1e4 failed in the
        # network or tried to allocate terabytes
        ({"image": torch.zeros(1, 40, 40, dtype=torch.uint8)}, "image must be a float tensor"),
        ({"image": torch.full((1, 40, 40), float("nan"))}, "image holds NaN or infinite"),
        ({"scale": 1e-3}, r"scale 0.001 makes the 40x40 image 1x1, too small for the model"),
        ({"scale": 1e4}, "the image scaled by 10000: 40x40 becomes 400000x400000 = "),
        # Before: OverflowError from round() of an infinite size; 1e300 spelt 600 digits
        ({"scale": 1e307}, "the image scaled by 1e\\+307: 40x40 becomes beyond 1e308 x 1e308"),
        ({"scale": 1e300}, "the image scaled by 1e\\+300: 40x40 becomes 4e\\+301x4e\\+301 pixels"),
        # Before: a 0..255 image scored as bright as the network saturates; a meta image and
        # max_pixels=None failed inside torch / in a comparison; -1 blamed the image
        ({"image": torch.full((1, 40, 40), 255.0)}, r"image values reach 255; a model takes"),
        (
            {"image": torch.zeros(1, 40, 40, device="meta")},
            "image: a tensor on the meta device holds no values",
        ),
        ({"max_pixels": None}, "max_pixels must be an integer >= 1, got None"),
        ({"max_pixels": -1}, "max_pixels must be an integer >= 1, got -1"),
    ],
)
def test_detect_image_names_a_bad_argument(kwargs, message):
    """Before: each was taken silently (k=0 the model's K, max_detections=-1 a slice from the
    end, 0 none without tiles but the default cap with them) or failed deep inside."""
    from mistnet.models.build import build_model

    model = build_model(load_preset("tiny-cpu").model).eval()
    arguments = {"k": 3, "image": torch.rand(1, 40, 40), **kwargs}
    with pytest.raises(ValueError, match=message):
        detect_image(model, **arguments)


def test_detect_image_takes_any_float_dtype_and_refuses_a_model_that_is_none():
    """Before: a float64 or float16 image failed inside the network ("mixed dtype"), as
    ``predict`` (which casts) did not; ``model=None`` an AttributeError."""
    from mistnet.models.build import build_model

    model = build_model(load_preset("tiny-cpu").model).eval()
    image = torch.rand(1, 40, 40)
    with torch.no_grad():
        want = detect_image(model, image, 3).keypoints
        for dtype in (torch.float64, torch.float16):
            got = detect_image(model, image.to(dtype), 3).keypoints
            assert got.dtype == torch.float32 and got.shape == want.shape
        assert torch.equal(detect_image(model, image.double(), 3).keypoints, want)
    with pytest.raises(TypeError, match="model must be a MIST model"):
        detect_image(None, image, 3)
    # Before: "images: a tensor on the meta device holds no values to read", of the image
    with pytest.raises(ValueError, match="^model is on the meta device: it holds no weights"):
        detect_image(build_model(load_preset("tiny-cpu").model).to("meta"), image, 3)
    # the module's other public functions too (an AttributeError on .task / .modules before)
    for public in (default_min_score, min_image_side):
        with pytest.raises(TypeError, match="model must be a MIST model, got str"):
            public("model.safetensors")
    assert default_min_score(model) == CLASSIFIER_MIN_SCORE  # tiny-cpu classifies
    # a signed (Gabor) model's own textures reach past 1 (was refused for leaving [-1, 1])
    with torch.no_grad():
        assert len(detect_image(model, 2.6 * image - 1.3, 3).keypoints) == 3


def test_detect_image_takes_numpy_and_tensor_integers():
    """Before: k=np.int64(3) (from a computed sweep) and a 0-d tensor were refused."""
    import numpy as np

    from mistnet.models.build import build_model

    model = build_model(load_preset("tiny-cpu").model).eval()
    image = torch.rand(1, 40, 40)
    with torch.no_grad():
        a = detect_image(model, image, np.int64(3), scale=np.float32(1.0))
        b = detect_image(model, image, torch.tensor(3), max_detections=np.int32(2))
    assert len(a.keypoints) == 3 and torch.equal(a.keypoints[:2], b.keypoints)


def test_detect_image_runs_a_model_in_training_mode_as_in_eval_and_gives_its_mode_back():
    """Before: a model left in training mode scored each image by its own batch statistics
    (other scores, without a word) and overwrote its BatchNorm running statistics."""
    from mistnet.models.build import build_model

    torch.manual_seed(0)
    model = build_model(load_preset("tiny-cpu").model).eval()
    image = torch.rand(1, 40, 40)
    want = detect_image(model, image, 3)
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    got = detect_image(model, image, 3)
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(got.scores, want.scores) and torch.equal(got.keypoints, want.keypoints)
    assert all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "dilations, factors", [((), (1.0,)), ((1, 2, 4, 8), (1.0,)), ((1, 2, 4, 8), (1.0, 0.5))]
)
def test_the_smallest_image_side_is_the_one_the_heatmap_network_takes(dilations, factors):
    """Before: 1 for a heatmap network with dilated blocks (the shipped models), so a 6x6 image
    reached the network and failed there with a bare reflection-padding error."""
    from dataclasses import replace

    from mistnet.detection import min_image_side
    from mistnet.models.build import build_model

    cfg = load_preset("tiny-cpu").model
    cfg = replace(cfg, heatmap_depth=4, heatmap_dilations=dilations, factors=factors)
    model = build_model(cfg).eval()
    side = min_image_side(model)
    assert side > 1
    with torch.no_grad():
        model.heatmap_net(torch.rand(1, cfg.in_channels, side, side + 3))
        with pytest.raises(ValueError, match="reflection padding"):
            model.heatmap_net(torch.rand(1, cfg.in_channels, side - 1, side + 3))


@pytest.mark.parametrize(
    ("channels", "error"),
    [(2, ValueError), (0, ValueError), ("1", TypeError), (True, TypeError), (1.0, TypeError)],
)
def test_read_image_refuses_channels_other_than_1_or_3_by_name(tmp_path, channels, error):
    """Before: 2, 0 and "1" read a 3-channel image, True a 1-channel one."""
    from PIL import Image

    path = tmp_path / "gray.png"
    Image.new("L", (6, 4), 128).save(path)
    with pytest.raises(
        error, match=f"channels must be .*1 \\(gray\\) or 3 \\(RGB\\), got {channels!r}"
    ):
        read_image(path, channels)
    with pytest.raises(error, match="channels must be"):  # before the file is read
        read_image(tmp_path / "missing.png", channels)
    assert read_image(path, np.int64(3)).shape == (3, 4, 6)
    assert read_image(path, 1).shape == (1, 4, 6)


def test_slots_filled_past_the_maxima_score_0_and_rank_after_every_maximum():
    """Before: with more slots than maxima, E_K's fillers (a strong peak's suppressed
    neighbours) kept their window mass, about the peak's, and sorted by score four of them
    ranked above the weaker second peak."""
    image = torch.maximum(dots(40, 40, [(10, 10)], 60), 0.8 * dots(40, 40, [(30, 28)], 60))
    found = detect_image(peak_model(k=6), image, 6)
    assert found.keypoints[:2, :2].tolist() == [[10.0, 10.0], [30.0, 28.0]]
    assert found.scores[1] > 0.1 and found.scores[2:].tolist() == [0.0] * 4
    neighbours = {(10.0, 11.0), (11.0, 10.0), (9.0, 10.0), (10.0, 9.0)}
    assert {tuple(p) for p in found.keypoints[2:, :2].tolist()} == neighbours


def test_detect_image_refuses_a_loaded_grid_baseline_on_another_size_as_predict_does():
    """Before: ``predict`` refused a 48x48 image for a grid baseline trained on 32x32, but
    ``detect_image`` tiled it into other cells without a word (also at ``scale=1.5`` of 32x32)."""
    from mistnet.config import apply_overrides
    from mistnet.models.build import build_model

    cfg = apply_overrides(load_preset("tiny-cpu"), ["model.task=reconstruct", "train.method=grid"])
    cfg.record.image_size = (32, 32)
    model = build_model(cfg.model, "grid").eval()
    model.config = cfg  # as mistnet.load gives it
    for image, kwargs, seen in [
        (torch.rand(1, 48, 48), {}, "image: 48x48"),
        (torch.rand(1, 32, 32), {"scale": 1.5}, "scale 1.5 makes the 32x32 image 48x48"),
        (
            torch.rand(1, 70, 70),
            {"tile": (30, 30)},
            "tile (30, 30): 30x30 windows of the 70x70 image",
        ),
    ]:
        with pytest.raises(
            ValueError, match=re.escape(f"{seen}; this grid baseline takes the 32x32")
        ):
            detect_image(model, image, model.k, **kwargs)
    assert len(detect_image(model, torch.rand(1, 32, 32), model.k).scores) == model.k
    assert detect_image(model, torch.rand(1, 70, 70), model.k, tile=(32, 32)).windows > 1


def test_detect_image_names_a_tile_too_small_for_the_model_and_an_empty_image():
    """Before: ``tile=(2, 2)`` failed in the network ("images must be larger than the
    reflection padding ..."), naming no tile; a 0x0 image was "scale 1 makes the 0x0 image
    1x1, too small"."""
    from mistnet.models.build import build_model

    model = build_model(load_preset("tiny-cpu").model).eval()
    side = min_image_side(model)
    message = f"tile (2, 2) is smaller than the {side}x{side} windows the model needs"
    with pytest.raises(ValueError, match=re.escape(message)):
        detect_image(model, torch.rand(1, 70, 70), 3, tile=(2, 2))
    for shape in ((1, 0, 0), (1, 0, 40)):
        with pytest.raises(ValueError, match=re.escape(f"image is empty: {shape} holds no")):
            detect_image(model, torch.rand(*shape), 3)


@pytest.mark.parametrize("fill", [0.0, 0.5])
def test_the_shipped_auto_encoder_finds_nothing_in_a_flat_image(fill):
    """Before: its 11x11 NMS window in a 15x15 softmax window scores a flat patch
    121 / 225 = 0.54, above the default cut of 0.5: nine boxes in a blank image."""
    import mistnet

    model = mistnet.load("mnist-hard-autoencoder")
    flat = (model.nms_window / model.softmax_window) ** 2
    assert default_min_score(model) == max(0.5, round(flat + (1 - flat) / 10, 2)) == 0.58
    (found,) = model.predict(torch.full((1, 80, 80), fill))
    assert len(found.boxes) == 0
    (all_k,) = model.predict(torch.full((1, 80, 80), fill), min_score=0)
    assert len(all_k.boxes) == 9 and torch.allclose(all_k.scores, torch.tensor(flat), atol=1e-5)


def test_the_default_cut_stays_below_the_scores_an_nms_window_as_wide_as_the_softmax_gives():
    """Before: nms_window = softmax_window made the cut 1.0, above every score (0.999999 in
    float32): mist detect kept no box, "9 below --min-score 1"."""
    model = MIST(
        HeatmapNet(1, width=4, depth=1),
        PatchAutoencoder(1, patch_size=8, base_width=2, levels=2, blocks=1),
        task="reconstruct", k=3, sides=(10.0,), patch_size=8, nms_window=15, softmax_window=15,
    )  # fmt: skip
    assert default_min_score(model) == 0.9
    with torch.no_grad():
        scores = model(torch.rand(1, 1, 40, 40), 3).scores
    assert bool((scores >= default_min_score(model)).all())
