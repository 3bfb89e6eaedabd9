"""Hand-computed cases for mistnet.metrics (docs/design.md, Metrics)."""

import math

import numpy as np
import pytest
import torch

from mistnet.metrics import (
    APMeter,
    DetectionMeter,
    ReconstructionMeter,
    SceneMeter,
    any_match,
    ap_at_thresholds,
    greedy_assign,
    greedy_match,
    label_histogram,
    match_detections,
    multiset_overlap,
    official_eval_accuracy,
    rmse,
    svhn_ap,
    unmeasured,
    valid_mask,
)
from mistnet.ops import box_iou


def t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


def lab(x):
    return torch.tensor(x, dtype=torch.long)


# ------------------------------------------------------------------------------------------ IoU


def test_box_iou_values_used_below(dtype):
    # the hand-computed metric cases rely on these IoUs
    a = t([[10.0, 10, 20, 20]], dtype)
    b = t(
        [
            [10.0, 10, 20, 20],  # identical -> 1
            [10.0, 5, 20, 10],  # inside, half the area -> 0.5 exactly
            [12.0, 10, 20, 20],  # shifted 2 px: 360 / 440
            [40.0, 10, 20, 20],  # disjoint -> 0
            [30.0, 10, 20, 20],  # touching edge -> 0
        ],
        dtype,
    )
    iou = box_iou(a, b)
    assert iou.shape == (1, 5)
    expected = t([[1.0, 0.5, 360 / 440, 0.0, 0.0]], dtype)
    torch.testing.assert_close(iou, expected)
    # keypoints (x, y, side) are squares
    torch.testing.assert_close(box_iou(a[:, :3], b), iou)


# ------------------------------------------------------------------------------------ matching


def test_greedy_two_detections_on_one_gt_count_once():
    iou = t([[0.9, 0.8]])  # 1 GT, 2 detections both above 0.5
    assert greedy_match(iou).tolist() == [True]
    assert greedy_assign(iou).tolist() == [0]
    # a second GT whose only good detection was taken is left unmatched
    iou = t([[0.9, 0.1], [0.8, 0.2]])
    assert greedy_assign(iou).tolist() == [0, -1]


def test_greedy_is_in_gt_order_not_optimal():
    # GT 0 takes detection 0 (0.6) although GT 1 needs it more; Hungarian would match both.
    iou = t([[0.6, 0.55], [0.9, 0.0]])
    assert greedy_assign(iou).tolist() == [0, -1]
    iou = t([[0.6, 0.7], [0.9, 0.0]])
    assert greedy_assign(iou).tolist() == [1, 0]


def test_greedy_threshold_is_strict():
    iou = t([[0.5, 0.3]], torch.float64)
    assert greedy_match(iou, threshold=0.5).tolist() == [False]
    assert greedy_match(iou, threshold=0.4999).tolist() == [True]


def test_greedy_inclusive_matches_at_the_threshold_and_stays_one_to_one():
    # The official code's rule (>=): an IoU of exactly the threshold matches; the detection it
    # takes is then gone for the next ground truth, as with the strict rule.
    iou = t([[0.5, 0.3], [0.5, 0.5]], torch.float64)
    assert greedy_assign(iou, threshold=0.5).tolist() == [-1, -1]
    assert greedy_assign(iou, threshold=0.5, inclusive=True).tolist() == [0, 1]
    assert greedy_match(iou, threshold=0.5, inclusive=True).tolist() == [True, True]


def test_greedy_eligibility_and_nan():
    iou = t([[0.9, 0.7], [float("nan"), 0.8]])
    eligible = torch.tensor([[False, True], [True, True]])
    # GT0 may only use det1; GT1's det0 is NaN -> ineligible, det1 taken -> unmatched
    assert greedy_assign(iou, eligible).tolist() == [1, -1]


def test_greedy_empty_and_batched():
    assert greedy_assign(torch.zeros(2, 3, 0)).tolist() == [[-1] * 3] * 2
    assert greedy_assign(torch.zeros(2, 0, 3)).shape == (2, 0)
    iou = torch.rand(4, 5, 6, generator=torch.Generator().manual_seed(0))
    batched = greedy_assign(iou)
    for b in range(4):
        assert torch.equal(batched[b], greedy_assign(iou[b]))


def test_greedy_matches_bruteforce_reference():
    g = torch.Generator().manual_seed(1)
    iou = torch.rand(20, 6, 5, generator=g)
    out = greedy_assign(iou, threshold=0.3)
    for b in range(20):
        used, ref = set(), []
        for n in range(6):
            cand = [(iou[b, n, m].item(), -m) for m in range(5) if m not in used]
            best, negm = max(cand, default=(0.0, 1))
            if best > 0.3:
                used.add(-negm)
                ref.append(-negm)
            else:
                ref.append(-1)
        assert out[b].tolist() == ref


def test_greedy_bad_args():
    with pytest.raises(ValueError, match="iou"):
        greedy_assign(torch.zeros(3))
    with pytest.raises(ValueError, match="eligible"):
        greedy_assign(torch.zeros(2, 3), torch.ones(3, 2, dtype=torch.bool))


def test_valid_mask_and_histogram():
    labels = lab([[0, 0, 3, -1], [9, 2, 2, 2]])
    assert valid_mask(labels).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert valid_mask(labels, lab([2, 3])).tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]
    h = label_histogram(labels, 10)
    assert h[0].tolist() == [2, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert h[1].tolist() == [0, 0, 3, 0, 0, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="num_classes"):
        label_histogram(labels, 5)
    with pytest.raises(ValueError, match="count"):
        valid_mask(labels, lab([1, 2, 3]))


def test_multiset_overlap_repeated_classes():
    gt = lab([[1, 1, 1, 4], [0, 0, 3, -1]])
    det = lab([[1, 4, 4, 4], [3, 3, 3, -1]])
    assert multiset_overlap(det, gt, 10).tolist() == [2, 1]


# ----------------------------------------------------------------------------- detection meter

# Image 1: three GT in a row, three detections.
#   GT  A(10,10) cls 1, B(40,10) cls 1, C(70,10) cls 0
#   det d0(10,10) cls 1 [IoU 1 with A], d1(12,10) cls 1 [IoU 360/440 with A, 0 with B],
#       d2(70,10) cls 5 [IoU 1 with C, wrong class]
#   agnostic 1-1: A-d0, C-d2 -> 2; any: A, C -> 2; class-aware: A-d0 -> 1;
#   multiset {1,1,0} vs {1,1,5} -> 2; ap50 = 1/3, ap50_agnostic = 2/3.
# Image 2: two close GT of class 3 sharing one detection (L=2 != K=1).
#   GT P(20,20), Q(24,20); det e(22,20) cls 3 with IoU 360/440 to both.
#   agnostic 1-1: 1 (P); any: 2; class-aware: 1; multiset: 1; ap50 = 1/1, agnostic 1/1.
IMG1 = dict(
    gt=[[10.0, 10, 20, 20], [40, 10, 20, 20], [70, 10, 20, 20]],
    gl=[1, 1, 0],
    det=[[10.0, 10, 20], [12, 10, 20], [70, 10, 20]],
    dl=[1, 1, 5],
)
IMG2 = dict(gt=[[20.0, 20, 20, 20], [24, 20, 20, 20]], gl=[3, 3], det=[[22.0, 20, 20]], dl=[3])
EXPECTED = {
    "det_iou50": 3 / 5,
    "det_any50": 4 / 5,
    "classif": 3 / 5,
    "both": 2 / 5,
    "ap50": (1 / 3 + 1) / 2,
    "ap50_agnostic": (2 / 3 + 1) / 2,
    "n_images": 2,
    "n_instances": 5,
    "n_detections": 4,
}


def _single(img):
    return (
        t([img["det"]]),
        lab([img["dl"]]),
        t([img["gt"]]),
        lab([img["gl"]]),
    )


def _padded_batch():
    det = t([IMG1["det"], IMG2["det"] + [[0.0, 0, 0], [0.0, 0, 0]]])
    dl = lab([IMG1["dl"], IMG2["dl"] + [-1, -1]])
    gt = t([IMG1["gt"], IMG2["gt"] + [[0.0, 0, 0, 0]]])
    gl = lab([IMG1["gl"], IMG2["gl"] + [-1]])
    return det, dl, gt, gl


def _assert_metrics(out, expected):
    assert out.keys() >= expected.keys()
    for k, v in expected.items():
        assert out[k] == pytest.approx(v, abs=1e-12), k


def test_detection_meter_padded_batch():
    det, dl, gt, gl = _padded_batch()
    m = DetectionMeter(num_classes=10)
    m.update(det, dl, gt, gl, gt_count=lab([3, 2]))
    _assert_metrics(m.compute(), EXPECTED)


def test_detection_meter_batched_equals_per_image():
    m = DetectionMeter()
    for img in (IMG1, IMG2):
        m.update(*_single(img))
    _assert_metrics(m.compute(), EXPECTED)


def test_detection_meter_counts_override_labels():
    # Padding expressed only through counts: the extra detection sits exactly on Q with the right
    # class and the extra GT is a real-looking box, both must be ignored.
    det, dl, gt, gl = _padded_batch()
    det[1, 1] = t([24.0, 20, 20])
    dl[1, 1:] = 3
    gt[1, 2] = t([90.0, 90, 20, 20])
    gl[1, 2] = 7
    m = DetectionMeter()
    m.update(det, dl, gt, gl, gt_count=lab([3, 2]), det_count=lab([3, 1]))
    _assert_metrics(m.compute(), EXPECTED)
    # without counts the extra detection matches Q and the extra GT is a miss
    m2 = DetectionMeter()
    m2.update(det, dl, gt, gl)
    out = m2.compute()
    assert out["n_instances"] == 6
    assert out["both"] == pytest.approx(3 / 6)


def test_detection_meter_class_zero_counts_in_classif():
    gt = t([[[10.0, 10, 20, 20], [40, 10, 20, 20], [70, 10, 20, 20]]])
    det = gt[..., :3].clone()
    m = DetectionMeter()
    m.update(det, lab([[3, 3, 3]]), gt, lab([[0, 0, 3]]))
    out = m.compute()
    assert out["classif"] == pytest.approx(1 / 3)
    assert out["both"] == pytest.approx(1 / 3)
    assert out["det_iou50"] == 1.0
    # perfect labels, class 0 included
    m.reset()
    m.update(det, lab([[0, 3, 0]]), gt, lab([[0, 3, 0]]))
    assert m.compute()["classif"] == 1.0


def test_detection_meter_k_larger_than_l():
    # Table 3: AP divides by K_image, "both" by #GT.
    gt = t([[[10.0, 10, 20, 20]]])
    det = t([[[10.0, 10, 20], [50, 50, 20]]])
    m = DetectionMeter()
    m.update(det, lab([[2, 2]]), gt, lab([[2]]))
    out = m.compute()
    assert out["both"] == 1.0
    assert out["ap50"] == 0.5
    assert out["classif"] == 1.0


def test_detection_meter_iou_exactly_half_not_matched():
    # det square 20 at (10,10); GT rectangle 20 x 10 inside it -> IoU = 200/400 = 0.5 exactly.
    gt = t([[[10.0, 5, 20, 10]]])
    det = t([[[10.0, 10, 20]]])
    m = DetectionMeter()
    m.update(det, lab([[4]]), gt, lab([[4]]))
    out = m.compute()
    assert out["det_iou50"] == 0.0
    assert out["det_any50"] == 0.0
    assert out["both"] == 0.0
    assert out["classif"] == 1.0


def test_detection_meter_float_offset_box_near_half():
    # Two 20 x 20 squares offset by 20/3: IoU = 0.5 up to rounding; whichever side of 0.5 the
    # float64 value lands on, the metric must agree with the strict rule applied to it.
    gt = t([[[10.0, 10, 20, 20]]], torch.float64)
    det = t([[[10.0 + 20 / 3, 10, 20]]], torch.float64)
    iou = box_iou(gt[0], det[0]).item()
    assert iou == pytest.approx(0.5, abs=1e-12)
    out = DetectionMeter()
    out.update(det, lab([[1]]), gt, lab([[1]]))
    assert out.compute()["both"] == float(iou > 0.5)


def test_detection_meter_empty_and_nan():
    m = DetectionMeter()
    out = m.compute()
    assert math.isnan(out["both"]) and out["n_images"] == 0
    # image with neither detections nor GT is left out of ap50
    m.update(torch.zeros(1, 2, 3), lab([[-1, -1]]), torch.zeros(1, 2, 4), lab([[-1, -1]]))
    m.update(*_single(IMG2))
    out = m.compute()
    assert out["ap50"] == 1.0 and out["n_images"] == 2


def test_detection_meter_bad_shapes():
    m = DetectionMeter()
    with pytest.raises(ValueError, match="det_boxes"):
        m.update(torch.zeros(1, 2, 5), lab([[1, 1]]), torch.zeros(1, 2, 4), lab([[1, 1]]))
    with pytest.raises(ValueError, match="gt_labels"):
        m.update(torch.zeros(1, 2, 3), lab([[1, 1]]), torch.zeros(1, 2, 4), lab([[1]]))


def test_match_detections_and_any_match():
    det, dl, gt, gl = _padded_batch()
    both = match_detections(det, dl, gt, gl)
    assert both.tolist() == [[True, False, False], [True, False, False]]
    agn = match_detections(det, dl, gt, gl, class_aware=False)
    assert agn.tolist() == [[True, False, True], [True, False, False]]
    anym = any_match(det, dl, gt, gl)
    assert anym.tolist() == [[True, False, True], [True, True, False]]


def test_detection_meter_device_and_dtype(device, dtype):
    det, dl, gt, gl = _padded_batch()
    m = DetectionMeter()
    m.update(det.to(device, dtype), dl.to(device), gt.to(device, dtype), gl.to(device))
    _assert_metrics(m.compute(), EXPECTED)


# ---------------------------------------------------------------------------------- SVHN AP

# Image 1: GT rectangles; det0 square 28 vs 24x30 rect: 672/832 = 0.8077 (matches up to .8);
#          det1 square 36 vs 20x40 rect: 720/1376 = 0.5233 (matches at .5 only).
# Image 2: right labels, boxes far away: AP_0 = 1, all others 0.
SVHN_GT = [[[50.0, 30, 24, 30], [100, 30, 20, 40]], [[50.0, 30, 24, 30], [100, 30, 20, 40]]]
SVHN_GL = [[1, 7], [1, 7]]
SVHN_DET = [[[50.0, 30, 28], [100, 30, 36]], [[200.0, 30, 40], [150, 30, 40]]]
SVHN_DL = [[1, 7], [7, 1]]


def test_svhn_ap_hand_computed():
    out = svhn_ap(t(SVHN_DET), lab(SVHN_DL), t(SVHN_GT), lab(SVHN_GL))
    expected = {"ap00": 1.0, "ap50": 0.5, "ap60": 0.25, "ap70": 0.25, "ap80": 0.25, "ap90": 0.0}
    _assert_metrics(out, expected)
    assert out["n_images"] == 2


def test_svhn_ap_zero_ignores_boxes_and_uses_multisets():
    frac, inc = ap_at_thresholds(
        t(SVHN_DET), lab([[1, 1], [7, 3]]), t(SVHN_GT), lab(SVHN_GL), thresholds=[0.0, 0.5]
    )
    assert inc.tolist() == [True, True]
    # image 1: labels {1,1} vs {1,7} -> 1/2; det0 (cls 1) matches at .5, det1 (cls 1) cannot.
    # image 2: {7,3} vs {1,7} -> 1/2 regardless of location; nothing matches at .5.
    assert frac.tolist() == [[0.5, 0.5], [0.5, 0.0]]


def test_svhn_ap_iou_half_strict():
    # square 40 vs 20 x 40 rectangle, same centre: IoU = 800/1600 = 0.5 exactly -> not matched.
    frac, _ = ap_at_thresholds(
        t([[[100.0, 30, 40]]]), lab([[7]]), t([[[100.0, 30, 20, 40]]]), lab([[7]]), [0.0, 0.5]
    )
    assert frac.tolist() == [[1.0, 0.0]]


def test_ap_meter_accumulates_like_one_batch():
    m = APMeter()
    for b in range(2):
        m.update(
            t(SVHN_DET[b : b + 1]),
            lab(SVHN_DL[b : b + 1]),
            t(SVHN_GT[b : b + 1]),
            lab(SVHN_GL[b : b + 1]),
        )
    assert m.compute() == svhn_ap(t(SVHN_DET), lab(SVHN_DL), t(SVHN_GT), lab(SVHN_GL))


def test_ap_meters_of_disjoint_batches_add_up():
    """Sharded evaluation adds the meters' sums; the sum is the meter of both batches."""
    parts = []
    for b in range(2):
        m = APMeter()
        m.update(
            *(
                f(x[b : b + 1])
                for f, x in ((t, SVHN_DET), (lab, SVHN_DL), (t, SVHN_GT), (lab, SVHN_GL))
            )
        )
        parts.append(m.sums())
    total = APMeter()
    total.load_sums(parts[0] + parts[1])
    assert total.compute() == svhn_ap(t(SVHN_DET), lab(SVHN_DL), t(SVHN_GT), lab(SVHN_GL))


# ------------------------------------------------------------------------------------- RMSE


def test_rmse_values():
    pred = torch.zeros(2, 1, 2, 2)
    target = torch.zeros(2, 1, 2, 2)
    target[0] = 1.0  # per-pixel error 1 -> RMSE 1
    target[1, 0, 0, 0] = 1.0  # one of four pixels -> sqrt(1/4) = 0.5
    assert rmse(pred, target, reduction="none").tolist() == [1.0, 0.5]
    assert rmse(pred, target).item() == pytest.approx(0.75)
    assert rmse(pred, target, reduction="pooled").item() == pytest.approx(math.sqrt(5 / 8))


def test_rmse_clip_and_signed():
    target = torch.ones(1, 1, 1, 2)
    pred = t([[[[2.0, 1.0]]]])  # unclipped error 1 on one of two pixels; clipped 0
    assert rmse(pred, target).item() == pytest.approx(math.sqrt(0.5))
    assert rmse(pred, target, clip=True).item() == 0.0
    # signed: -1 vs 1 is a full-range error -> RMSE 1 after dividing by 2
    s_pred = t([[[[-1.0, 1.0]]]])
    assert rmse(s_pred, target, signed=True).item() == pytest.approx(math.sqrt(0.5))
    # signed clip keeps [-1, 1]: 3 -> 1, error 0; unclipped (3 - 1)/2 = 1
    s_pred = t([[[[3.0, 1.0]]]])
    assert rmse(s_pred, target, signed=True).item() == pytest.approx(math.sqrt(0.5))
    assert rmse(s_pred, target, signed=True, clip=True).item() == 0.0


def test_rmse_bad_args():
    with pytest.raises(ValueError, match="pred"):
        rmse(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match="reduction"):
        rmse(torch.zeros(1, 2), torch.zeros(1, 2), reduction="sum")
    # integer pixels: uint8 200 against 190 gave 10 (the [0, 1] error is 0.04), 189 with clip
    a = torch.full((1, 1, 2, 2), 200, dtype=torch.uint8)
    for pred, target, name in ((a, a - 10, "pred"), (a / 255, a, "target")):
        for clip in (False, True):
            with pytest.raises(ValueError, match=f"^{name} must be a floating-point tensor"):
                rmse(pred, target, clip=clip)


def test_reconstruction_meter_accumulates():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(5, 1, 4, 4, generator=g) * 1.4 - 0.2
    target = torch.rand(5, 1, 4, 4, generator=g)
    m = ReconstructionMeter()
    m.update(pred[:2], target[:2])
    m.update(pred[2:], target[2:])
    out = m.compute()
    assert out["n_images"] == 5
    assert out["rmse"] == pytest.approx(rmse(pred, target).item())
    assert out["rmse_clipped"] == pytest.approx(rmse(pred, target, clip=True).item())
    assert out["rmse_pooled"] == pytest.approx(rmse(pred, target, reduction="pooled").item())
    assert out["rmse_clipped"] < out["rmse"]
    assert math.isnan(ReconstructionMeter().compute()["rmse"])


def test_reconstruction_meter_measures_the_trivial_baselines_beside_the_model():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(4, 2, 6, 5, generator=g) * 0.5 + 0.3  # a grey, textured scene
    m = ReconstructionMeter()
    m.update(torch.zeros_like(target), target)
    out = m.compute()
    assert out["rmse_zero"] == pytest.approx(out["rmse"])  # a black prediction is the baseline
    flat = target.mean(dim=(-2, -1), keepdim=True).expand_as(target)
    assert out["rmse_image_mean"] == pytest.approx(rmse(flat, target).item())
    assert out["rmse_image_mean"] < out["rmse_zero"]
    # signed images: zero is mid-grey, and both figures are halved like the model's
    s = ReconstructionMeter(signed=True)
    s.update(target, 2 * target - 1)
    want = rmse(torch.zeros_like(target), 2 * target - 1, signed=True).item()
    assert s.compute()["rmse_zero"] == pytest.approx(want)
    # meters of disjoint batches add up
    a, b = ReconstructionMeter(), ReconstructionMeter()
    a.update(target[:1], target[:1] * 0.5)
    b.update(target[1:], target[1:] * 0.5)
    a.load_sums(a.sums() + b.sums())
    whole = ReconstructionMeter()
    whole.update(target, target * 0.5)
    for key, value in whole.compute().items():
        assert a.compute()[key] == pytest.approx(value)


# ----------------------------------------------------------------------- official metric


def test_official_acc_class_drops_class_zero():
    gt = t([[[10.0, 10, 20, 20], [40, 10, 20, 20], [70, 10, 20, 20]]])
    det = gt.clone()
    off = official_eval_accuracy(det, gt, lab([[3, 3, 3]]), lab([[0, 0, 3]]))
    assert off["acc_class"] == 1.0  # [C]'s bug: the two missing zeros are not counted
    ours = DetectionMeter()
    ours.update(det, lab([[3, 3, 3]]), gt, lab([[0, 0, 3]]))
    assert ours.compute()["classif"] == pytest.approx(1 / 3)


def test_official_two_detections_on_one_gt_and_counts():
    # 1 GT, 2 detections on it: [C] divides by B*K_det = 2 (assumes #GT = #det).
    gt = t([[[10.0, 10, 20, 20], [60, 60, 20, 20]]])
    det = t([[[10.0, 10, 20, 20], [12, 10, 20, 20]]])
    off = official_eval_accuracy(det, gt, lab([[1, 1]]), lab([[1, 2]]))
    assert off["num_objects"] == 2 and off["num_detections"] == 2
    assert off["acc_det"] == 0.5  # GT0 hit, GT1 not
    assert off["tp_iou"] == 1  # one-to-one
    assert off["tp_center"] == 1
    assert off["precision_iou"] == 0.5 and off["recall_iou"] == 0.5 and off["f1_iou"] == 0.5
    # non-exclusive acc_det counts a GT once even with two detections on it
    ours = DetectionMeter()
    ours.update(det, lab([[1, 1]]), gt, lab([[1, 2]]))
    out = ours.compute()
    assert out["det_any50"] == 0.5 and out["both"] == 0.5


def test_official_greedy_uses_ge_but_acc_det_uses_gt():
    # IoU exactly 0.5: [C]'s tp_iou counts it (>=), its acc_det does not (>), ours does not.
    gt = t([[[10.0, 5, 20, 10]]])
    det = t([[[10.0, 10, 20, 20]]])
    off = official_eval_accuracy(det, gt, lab([[4]]), lab([[4]]))
    assert off["tp_iou"] == 1
    assert off["acc_det"] == 0.0
    assert match_detections(det, lab([[4]]), gt, lab([[4]])).tolist() == [[False]]


def test_official_centre_distance_and_background():
    # det centre 9 px right of a 20 px GT: inside (dist 0.9); 11 px: outside (1.1).
    gt = t([[[10.0, 10, 20, 20], [60, 10, 20, 20]]])
    det = t([[[19.0, 10, 20, 20], [71, 10, 20, 20]]])
    off = official_eval_accuracy(det, gt, lab([[2, 2]]), lab([[2, 2]]))
    assert off["tp_center"] == 1
    assert off["tp_iou"] == 0  # IoU 220/580 and 180/620
    # background_class: label-0 entries are not counted as objects or detections
    off = official_eval_accuracy(det, gt, lab([[0, 2]]), lab([[0, 2]]), background_class=True)
    assert off["num_objects"] == 1 and off["num_detections"] == 1
    assert off["tp_center"] == 0


# ------------------------------------------------------------------- repeated classes, L != K


def test_detection_meter_repeated_class_matched_one_to_one():
    # Three GT "6"s in a row (Fig. 5: repeated classes), four detections all labelled 6:
    # two on the first GT, one on the third, one far away. Class-aware one-to-one matching gives
    # GT0 <- d0, GT1 nothing (d1 overlaps GT0 only), GT2 <- d2: both = 2/3. The multiset
    # {6,6,6} vs {6,6,6,6} is fully covered: classif = 1. AP divides by K = 4 detections.
    gt = t([[[10.0, 10, 20, 20], [40, 10, 20, 20], [70, 10, 20, 20]]])
    det = t([[[10.0, 10, 20], [11, 10, 20], [70, 10, 20], [40, 70, 20]]])
    m = DetectionMeter()
    m.update(det, lab([[6, 6, 6, 6]]), gt, lab([[6, 6, 6]]))
    out = m.compute()
    assert out["both"] == pytest.approx(2 / 3) and out["det_iou50"] == pytest.approx(2 / 3)
    assert out["det_any50"] == pytest.approx(2 / 3)
    assert out["classif"] == 1.0
    assert out["ap50"] == pytest.approx(2 / 4)


def test_detection_meter_per_image_k_fewer_detections_than_gt():
    # Table 3 with L > K: 3 GT, 2 valid detections (a third is padding via det_count).
    gt = t([[[10.0, 10, 20, 20], [40, 10, 20, 20], [70, 10, 20, 20]]])
    det = t([[[10.0, 10, 20], [40, 10, 20], [70, 10, 20]]])
    m = DetectionMeter()
    m.update(det, lab([[1, 2, 3]]), gt, lab([[1, 2, 3]]), det_count=lab([2]))
    out = m.compute()
    assert out["both"] == pytest.approx(2 / 3)  # per GT
    assert out["ap50"] == 1.0  # per detection: both valid detections are right
    assert out["classif"] == pytest.approx(2 / 3)
    assert out["n_detections"] == 2


# ------------------------------------------------------------------------ point matching (Gabor)


def test_match_points_one_to_one_inclusive_radius():
    from mistnet.metrics import match_points

    # GT impulses at x = 10, 12, 30 (y = 5); detections at 11 (near both 10 and 12) and 33.
    gt = t([[[10.0, 5, 20, 20], [12, 5, 20, 20], [30, 5, 20, 20]]])
    det = t([[[11.0, 5, 20], [33, 5, 20]]])
    # one detection cannot serve two impulses; 33 - 30 = 3 px exactly counts (inclusive)
    assert match_points(det, gt, 3.0).tolist() == [[True, False, True]]
    assert match_points(det, gt, 2.99).tolist() == [[True, False, False]]
    # diagonal distance sqrt(2^2 + 2^2) = 2.83 <= 3
    assert match_points(t([[[12.0, 7, 20]]]), t([[[10.0, 5, 20, 20]]]), 3.0).tolist() == [[True]]
    # padding through counts, batched equals per image
    det2 = t([[[11.0, 5, 20], [33, 5, 20]], [[30.0, 5, 20], [0, 0, 0]]])
    gt2 = t([[[10.0, 5, 20, 20], [30, 5, 20, 20]], [[30.0, 5, 20, 20], [31, 5, 20, 20]]])
    out = match_points(det2, gt2, 3.0, gt_count=lab([2, 1]), det_count=lab([2, 1]))
    assert out.tolist() == [[True, True], [True, False]]
    with pytest.raises(ValueError, match="det_points"):
        match_points(t([[1.0, 2.0]]), gt, 3.0)
    # NaN or infinite positions: refused as match_detections refuses them (were misses)
    nan = t([[[float("nan"), 5.0, 20.0]]])
    for found, truth, name in ((nan, gt, "det_points"), (det, nan, "gt_points")):
        with pytest.raises(ValueError, match=f"^{name}: holds NaN or infinite values"):
            match_points(found, truth, 3.0)
    assert match_points(det, t([[[11.0, 5.0, float("inf"), 20.0]]]), 3.0).tolist() == [[True]]
    with pytest.raises(TypeError, match="det_points"):  # an AttributeError on .ndim before
        match_points([[[1.0, 2.0]]], gt, 3.0)


# ------------------------------------------------------------------------ partial ground truth


def test_unmeasured_names_what_each_kind_of_data_lacks():
    from mistnet.metrics import unmeasured

    assert unmeasured("classify", {"boxes", "labels"}) == {}
    assert set(unmeasured("classify", {"labels"})) == {
        "det_iou50",
        "det_any50",
        "ap50_agnostic",
        "both",
        "ap50",
    }
    assert unmeasured("classify", set())["classif"] == "the data has no labels"
    assert unmeasured("classify", set())["both"] == "the data has no boxes and no labels"
    assert unmeasured("reconstruct", {"labels"}) == {
        "det_iou50": "the data has no boxes",
        "det_any50": "the data has no boxes",
    }
    assert unmeasured("reconstruct", {"boxes"}) == {}


def test_scene_meter_leaves_out_box_metrics_and_counts_classes_by_name():
    """Labels only: image 0 has {0, 1} and predicts {0, 0}; image 1 has {1} and predicts {1, 2}."""
    from mistnet.metrics import SceneMeter

    kp = torch.zeros(2, 2, 3)  # nowhere near the (zero) boxes' meaning: must not be read
    pred = lab([[0, 0], [1, 2]])
    gt = lab([[0, 1], [1, -1]])
    count = lab([2, 1])
    meter = SceneMeter("classify", 3, annotations={"labels"})
    meter.update(kp, pred, torch.zeros(2, 2, 4), gt, count)
    out = meter.compute(("cat", "dog", "fish"))
    assert out["classif"] == pytest.approx(2 / 3)
    assert out["classif/cat"] == 1.0 and out["classif/dog"] == 0.5
    assert "classif/fish" not in out  # no ground-truth fish
    assert not {"det_iou50", "both", "ap50", "det_any50", "ap50_agnostic"} & set(out)
    assert out["n_instances"] == 3
    full = SceneMeter("classify", 3)
    boxes = t([[[10.0, 10, 20, 20], [40, 40, 20, 20]], [[10, 10, 20, 20], [0, 0, 1, 1]]])
    full.update(boxes[..., :3], pred, boxes, gt, count)
    both = full.compute()
    assert both["det_iou50"] == 1.0 and both["both"] == pytest.approx(2 / 3)


def test_scene_meter_reconstruction_reports_detection_only_with_boxes():
    from mistnet.metrics import SceneMeter

    images = torch.rand(1, 1, 40, 40)
    box = t([[[10.0, 10, 20, 20]]])
    for annotations, located in (({"boxes"}, True), ({"labels"}, False), (set(), False)):
        meter = SceneMeter("reconstruct", annotations=annotations)
        meter.update(box[..., :3], None, box, lab([[3]]), lab([1]), None, images * 0, images)
        out = meter.compute()
        assert out["rmse"] == pytest.approx(float(images.pow(2).mean().sqrt()))
        assert ("det_iou50" in out) is located
        if located:
            assert out["det_iou50"] == 1.0


@pytest.mark.parametrize("task", ["classify", "reconstruct"])
def test_scene_meters_of_disjoint_batches_add_up_to_the_whole(task):
    """Sharded validation adds the ranks' sums: two meters' sums, loaded into a third, give the
    metrics of one meter that saw both batches (classes and RMSE included)."""
    from mistnet.metrics import SceneMeter

    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        centres = torch.randint(10, 70, (3, 4, 2), generator=g).float()
        gt = torch.cat([centres, torch.full((3, 4, 2), 20.0)], -1)
        det = torch.cat([centres + torch.randn(3, 4, 2, generator=g) * 4, gt[..., 2:3]], -1)
        images = torch.rand(3, 1, 80, 80, generator=g)
        preds = torch.randint(0, 3, (3, 4), generator=g) if task == "classify" else None
        truth = torch.randint(0, 3, (3, 4), generator=g)
        batches.append((det, preds, gt, truth, lab([4, 3, 2]), None, images * 0.5, images))
    whole, parts = SceneMeter(task, 3), [SceneMeter(task, 3), SceneMeter(task, 3)]
    for batch, part in zip(batches, parts, strict=True):
        whole.update(*batch)
        part.update(*batch)
    merged = SceneMeter(task, 3)
    merged.load_sums(parts[0].sums() + parts[1].sums())
    names = ("a", "b", "c")
    assert merged.compute(names) == pytest.approx(whole.compute(names))
    assert merged.compute(names) != pytest.approx(parts[0].compute(names))  # halves differ


def test_the_detection_meter_refuses_nan_boxes_bad_counts_labels_and_thresholds():
    """Before: NaN boxes were scored as misses (0.0), a NaN threshold made a perfect detector
    score 0, 5 instances claimed of 2 given scored 1.0, label -5 was taken as padding, and
    num_classes=True was accepted."""
    gt = torch.tensor([[[10.0, 10, 20, 20], [50, 50, 20, 20]]])
    labels = torch.tensor([[3, 4]])
    for bad_args, message in [
        ((gt * float("nan"), labels, gt, labels), "det_boxes: holds NaN"),
        ((gt, labels, gt * float("nan"), labels), "gt_boxes: holds NaN"),
        ((gt, torch.tensor([[-5, 4]]), gt, labels), "det_labels: class indices >= 0"),
        # Before: 3.5 was scored as class 3 by classif and as no class by both
        ((gt, torch.tensor([[3.5, 4.0]]), gt, labels), "det_labels: class indices are whole"),
        ((gt, labels, gt * torch.tensor([1, 1, -1, 1]), labels), "gt_boxes: sides must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            DetectionMeter(10).update(*bad_args)
    for count, message in [([5], "gt_count"), ([-1], "gt_count")]:
        with pytest.raises(ValueError, match=message):
            DetectionMeter(10).update(gt, labels, gt, labels, gt_count=torch.tensor(count))
    with pytest.raises(ValueError, match="det_count: whole numbers"):
        DetectionMeter(10).update(gt, labels, gt, labels, det_count=torch.tensor([1.5]))
    for args, message in [((True,), "num_classes"), ((10, float("nan")), "iou_threshold")]:
        with pytest.raises(ValueError, match=message):
            DetectionMeter(*args)
    meter = DetectionMeter(10)
    meter.update(gt, labels, gt, labels)
    assert meter.compute()["both"] == 1.0
    padded = torch.cat([gt, torch.tensor([[[0.0, 0, -1, -1]]])], 1)  # padding: not checked
    meter.update(gt, labels.double(), padded, torch.tensor([[3, 4, -1]]))
    assert meter.compute()["both"] == 1.0


# ------------------------------------------------------------------- refused arguments (review)

_GT = torch.tensor([[[10.0, 10, 20, 20], [50, 50, 20, 20]]])
_LABELS = torch.tensor([[3, 4]])
_NAN = float("nan")


@pytest.mark.parametrize(
    "thresholds, message",
    [
        # Before: 0.001 overwrote 0.0 under ap00, and 0.505 overwrote 0.5 under ap50
        ((0.0, 0.001), "thresholds: 0 and 0.001 are both reported as ap00"),
        ((0.5, 0.505), "thresholds: 0.5 and 0.505 are both reported as ap50"),
        # Before: the string was iterated per character
        ("0.5", "thresholds: expected a sequence of numbers, got '0.5'"),
        # Before: "cannot convert float NaN to integer", after the work
        ((_NAN,), r"thresholds: expected a finite number in \[0, 1\], got nan"),
        # Before: a raw RuntimeError from torch.stack
        ((), "thresholds: expected at least one threshold"),
        # Before: reported as ap150 and ap-300
        ((1.5,), r"thresholds: expected a finite number in \[0, 1\], got 1.5"),
        ((-3,), r"thresholds: expected a finite number in \[0, 1\], got -3"),
        ((0.5, True), "thresholds: expected a finite number"),
    ],
)
def test_ap_thresholds_are_refused_before_any_work(thresholds, message):
    with pytest.raises(ValueError, match=message):
        APMeter(thresholds)
    with pytest.raises(ValueError, match=message):
        svhn_ap(_GT, _LABELS, _GT, _LABELS, thresholds)
    with pytest.raises(ValueError, match=message):
        ap_at_thresholds(_GT, _LABELS, _GT, _LABELS, thresholds)


def test_ap_thresholds_that_differ_in_percent_are_kept():
    out = svhn_ap(_GT, _LABELS, _GT, _LABELS, (0.0, 0.5, 1.0))
    assert out == {"ap00": 1.0, "ap50": 1.0, "ap100": 0.0, "n_images": 1}


def _counted(name, **counts):
    """Call the function ``name`` with the ``gt_count`` / ``det_count`` given."""
    from mistnet.metrics import match_points

    calls = {
        "svhn_ap": lambda: svhn_ap(_GT, _LABELS, _GT, _LABELS, **counts),
        "ap_at_thresholds": lambda: ap_at_thresholds(_GT, _LABELS, _GT, _LABELS, **counts),
        "APMeter.update": lambda: APMeter().update(_GT, _LABELS, _GT, _LABELS, **counts),
        "match_detections": lambda: match_detections(_GT, _LABELS, _GT, _LABELS, **counts),
        "any_match": lambda: any_match(_GT, _LABELS, _GT, _LABELS, **counts),
        "match_points": lambda: match_points(_GT, _GT, 3.0, **counts),
    }
    return calls[name]()


@pytest.mark.parametrize(
    "name",
    ["svhn_ap", "ap_at_thresholds", "APMeter.update", "match_detections", "any_match",
     "match_points"],
)  # fmt: skip
@pytest.mark.parametrize("count", [[-2], [_NAN], [1.5], [99]])
@pytest.mark.parametrize("which", ["gt_count", "det_count"])
def test_counts_are_refused_wherever_a_count_is_taken(name, count, which):
    # Before: accepted: 99 scored perfect detections 0, 1.5 counted two, -2 and NaN none
    with pytest.raises(ValueError, match=rf"{which}: whole numbers in \[0, 2\] expected"):
        _counted(name, **{which: torch.tensor(count)})
    _counted(name, **{which: torch.tensor([2])})  # a count in range is taken


@pytest.mark.parametrize("threshold", [_NAN, "0.5", 1.0, -0.1, True])
def test_match_thresholds_are_refused_as_the_detection_meters(threshold):
    # Before: NaN (and 1.0) matched nothing, silently; "0.5" failed inside the comparison
    message = r"threshold: expected a finite number in \[0, 1\)"
    with pytest.raises(ValueError, match=message):
        match_detections(_GT, _LABELS, _GT, _LABELS, threshold=threshold)
    with pytest.raises(ValueError, match=message):
        any_match(_GT, _LABELS, _GT, _LABELS, threshold=threshold)
    with pytest.raises(ValueError, match="iou_threshold: expected a finite number"):
        DetectionMeter(10, threshold)


@pytest.mark.parametrize("threshold", [_NAN, math.inf, "0.5", None])
def test_greedy_assign_refuses_a_threshold_that_is_no_finite_number(threshold):
    # Before: NaN matched nothing, silently (scores of any sign are fine: official passes -1)
    with pytest.raises(ValueError, match="threshold: expected a finite number, got"):
        greedy_assign(torch.ones(2, 2), threshold=threshold)
    assert greedy_assign(torch.ones(2, 2), threshold=-1.0).tolist() == [0, 1]


@pytest.mark.parametrize("radius", [_NAN, -1, "3", math.inf, True])
def test_match_points_refuses_a_radius_that_is_no_distance(radius):
    from mistnet.metrics import match_points

    # Before: NaN and -1 matched nothing, silently; '3' was taken as 3
    with pytest.raises(ValueError, match=r"radius: expected a finite number in \[0, inf\)"):
        match_points(_GT, _GT, radius)
    assert match_points(_GT, _GT, 0).tolist() == [[True, True]]


@pytest.mark.parametrize(
    "call, message",
    [
        # Before: 2.7 was counted as class 2
        (lambda: label_histogram(t([[2.7, 0.2]]), 4), "labels: class indices are whole"),
        # Before: -5 was dropped as padding (only -1 pads, as in DetectionMeter)
        (lambda: label_histogram(lab([[-5, 1]]), 4), r"labels: class indices >= 0 \(or -1"),
        # Before: a raw torch RuntimeError from one_hot
        (lambda: label_histogram(lab([[1]]), 0), "num_classes: expected an integer >= 1, got 0"),
        (lambda: multiset_overlap(t([[2.7]]), lab([[2]]), 4), "det_labels: class indices are"),
        (lambda: multiset_overlap(lab([[2]]), lab([[-5]]), 4), "gt_labels: class indices >= 0"),
        (lambda: multiset_overlap(lab([[1]]), lab([[2]]), 0), "num_classes: expected an integer"),
        # Before: accepted, then failed at the first update
        (lambda: APMeter(num_classes=True), "num_classes: expected an integer >= 1, got True"),
        # Before: a raw TypeError from one_hot
        (
            lambda: svhn_ap(_GT, _LABELS, _GT, _LABELS, num_classes=6.5),
            "num_classes: expected an integer >= 1, got 6.5",
        ),
    ],
)
def test_label_histograms_refuse_fractional_labels_and_class_counts(call, message):
    with pytest.raises(ValueError, match=message):
        call()
    assert label_histogram(t([[2.0, -1.0]]), 4).tolist() == [[0, 0, 1, 0]]  # whole floats: fine


@pytest.mark.parametrize(
    "call, message",
    [
        # Before: IndexError (empty batch) and NaN (images without pixels)
        (lambda: rmse(torch.zeros(0, 1, 2, 2), torch.zeros(0, 1, 2, 2)), r"pred: .*\(0, 1, 2, 2\)"),
        (lambda: rmse(torch.zeros(1, 1, 0, 2), torch.zeros(1, 1, 0, 2)), r"pred: .*\(1, 1, 0, 2\)"),
        # Before: accepted; compute() then raised ZeroDivisionError
        (
            lambda: ReconstructionMeter().update(torch.zeros(1, 1, 0, 2), torch.zeros(1, 1, 0, 2)),
            "pred: expected at least one image with pixels",
        ),
    ],
)
def test_rmse_refuses_empty_images(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "call, message",
    [
        # Before: the string 'no' was taken as true (RMSE halved), then a ValueError; a
        # TypeError now, with the message of every other flag (mistnet.validate.flag)
        (lambda: rmse(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), signed="no"), "signed"),
        (lambda: rmse(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), clip=1), "clip"),
        (lambda: ReconstructionMeter(signed="no"), "signed"),
        (lambda: SceneMeter("reconstruct", signed="no"), "signed"),
        # Before: inclusive='no' was taken as true: an IoU of exactly 0.5 matched
        (lambda: greedy_match(torch.tensor([[0.5]]), inclusive="no"), "inclusive"),
        (lambda: greedy_assign(torch.tensor([[0.5]]), inclusive="no"), "inclusive"),
        # Before: class_aware='no' was taken as true
        (lambda: match_detections(*_one_box(), class_aware="no"), "class_aware"),
        # Before: background_class='no' was taken as true: ZeroDivisionError on label 0
        (
            lambda: official_eval_accuracy(*_one_box()[::2], *_one_box()[1::2], background_class=1),
            "background_class",
        ),
    ],
)
def test_flags_that_are_no_bool_are_refused_by_name(call, message):
    with pytest.raises(TypeError, match=f"^{message} must be True or False, got "):
        call()
    assert greedy_match(torch.tensor([[0.5]]), inclusive=np.bool_(True)).tolist() == [True]


def _one_box():
    """One image with one box of label 0, detected exactly: (boxes, labels, boxes, labels)."""
    b, lab = torch.tensor([[[10.0, 10.0, 4.0, 4.0]]]), torch.tensor([[0]])
    return b, lab, b, lab


def test_numpy_class_counts_and_flags_are_taken_and_evaluate_keeps_the_mode():
    """Before (the first of these since the metrics checked their arguments): a numpy
    ``num_classes`` or ``signed`` was refused; and a refused ``evaluate`` left a model that was
    training in eval mode."""
    from mistnet.config import load_preset
    from mistnet.data.dataset import SceneDataset, collate_scenes
    from mistnet.engine import evaluate
    from mistnet.metrics import APMeter, ReconstructionMeter, label_histogram
    from mistnet.models.build import build_model

    labels = torch.tensor([[1, 2]])
    assert label_histogram(labels, np.int64(4)).tolist() == [[0, 1, 1, 0]]
    APMeter(num_classes=np.int64(10))
    ReconstructionMeter(signed=np.bool_(True))
    model = build_model(load_preset("tiny-cpu").model)
    batch = collate_scenes([SceneDataset("mnist-hard", "test", size=2)[i] for i in range(2)])
    assert model.training
    with pytest.raises(TypeError, match="signed"):
        evaluate(model, [batch], signed="no")
    assert model.training


def test_official_returns_nan_where_c_divides_by_zero():
    """Before: a raw ZeroDivisionError (acc_det / num_objects) for all-background labels with
    background_class=True and for an empty batch; the docstring promises NaN."""
    b, l0 = torch.tensor([[[10.0, 10.0, 4.0, 4.0]]]), torch.tensor([[0]])
    empty, e0 = torch.zeros(0, 1, 4), torch.zeros(0, 1, dtype=torch.long)
    for out in (
        official_eval_accuracy(b, b, l0, l0, background_class=True),
        official_eval_accuracy(empty, empty, e0, e0),
    ):
        assert out["num_objects"] == 0
        for key in ("acc_det", "acc_class", "recall_iou", "recall_center", "f1_center"):
            assert math.isnan(out[key]), key
        assert out["precision_iou"] == 0.0  # [C]'s own guard: 0 without detections
    # one object: the ratios are numbers again
    one = official_eval_accuracy(b, b, l0, l0)
    assert (one["acc_det"], one["acc_class"], one["recall_iou"]) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "count, shown",
    [([1.5], r"\[1.5\]"), ([-1], r"\[-1\]"), ([5], r"\[5\]"), ([math.nan], r"\[nan\]")],
)
def test_valid_mask_refuses_counts_that_are_no_whole_numbers_in_range(count, shown):
    """Before: count 1.5 was counted as 2, -1 as 0 and 5 (N = 2) as 2, without a word."""
    labels = torch.tensor([[1, 2]])
    with pytest.raises(
        ValueError, match=rf"count: whole numbers in \[0, 2\] expected, got {shown}"
    ):
        valid_mask(labels, torch.tensor(count))
    assert valid_mask(labels, torch.tensor([1.0])).tolist() == [[True, False]]


def test_multiset_overlap_refuses_batches_of_different_sizes():
    """Before: det batch 2 against gt batch 1 broadcast the ground truth: tensor([1, 0])."""
    with pytest.raises(
        ValueError, match=r"det_labels and gt_labels: batch sizes differ \(2 vs 1\)"
    ):
        multiset_overlap(torch.tensor([[1], [2]]), torch.tensor([[1]]), 10)
    with pytest.raises(ValueError, match=r"gt_valid: expected shape \(2, 1\), got \(1, 1\)"):
        multiset_overlap(
            torch.tensor([[1], [2]]),
            torch.tensor([[1], [2]]),
            10,
            None,
            torch.ones(1, 1, dtype=torch.bool),
        )
    with pytest.raises(ValueError, match=r"labels: expected shape \(B, N\), got \(2,\)"):
        label_histogram(torch.tensor([1, 2]), 10)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: greedy_match([[0.9]]), "iou: expected a torch.Tensor of shape .*, got list"),
        (lambda: greedy_assign(torch.ones(1, 1), [[True]]), "eligible: expected a torch.Tensor"),
        (
            lambda: valid_mask([[1, 2]]),
            r"labels: expected a torch.Tensor of shape \(B, N\), got list",
        ),
        (lambda: label_histogram([[1]], 3), "labels: expected a torch.Tensor"),
    ],
)
def test_matching_names_a_list_given_for_a_tensor(call, message):
    """Before: AttributeError: 'list' object has no attribute 'ndim'."""
    with pytest.raises(TypeError, match=message):
        call()


@pytest.mark.parametrize(
    "call, error, message",
    [
        # Before: the string was read as the set of its letters: boxes said to be missing
        (lambda: unmeasured("classify", "boxes"), TypeError, "annotations must be a set of"),
        (lambda: SceneMeter("classify", annotations="labels"), TypeError, "annotations must be"),
        (lambda: unmeasured("classify", {"boxes", "masks"}), ValueError, "got 'masks'"),
        # Before: an unknown task was accepted: {} (measured as reconstruction)
        (lambda: unmeasured("detect", {"boxes"}), ValueError, "task must be 'classify' or"),
        (lambda: SceneMeter("detect"), ValueError, "got 'detect'"),
    ],
)
def test_unmeasured_and_scene_meter_check_task_and_annotations(call, error, message):
    with pytest.raises(error, match=message):
        call()
    assert set(unmeasured("classify", ["boxes"])) == {"classif", "both", "ap50"}


def _scene_batch():
    kp = torch.tensor([[[10.0, 10, 20], [50, 50, 20]]])
    gt = torch.tensor([[[10.0, 10, 20, 20]]])
    return kp, torch.tensor([[1, 2]]), gt, torch.tensor([[1]]), torch.tensor([1])


def test_scene_meter_class_names_must_be_at_most_c_strings():
    """Before: ``class_names="ab"`` was read as the names 'a' and 'b', and 5 names for 3
    classes raised IndexError "index 3 is out of bounds"."""
    from mistnet.metrics import SceneMeter

    meter = SceneMeter("classify", num_classes=3)
    meter.update(*_scene_batch())
    with pytest.raises(TypeError, match="class_names must be a sequence of strings, got 'ab'"):
        meter.compute(class_names="ab")
    with pytest.raises(TypeError, match="class_names must be a sequence of strings"):
        meter.compute(class_names=[0, 1])
    with pytest.raises(ValueError, match="class_names: at most num_classes=3 names, got 5"):
        meter.compute(class_names=list("abcde"))
    # a name twice: one classif/a key holding whichever class came last, without a word
    with pytest.raises(ValueError, match="class_names: 'a' names two classes; each needs its"):
        meter.compute(class_names=list("aba"))
    assert meter.compute(class_names=list("abc"))["classif/b"] == 1.0


def test_scene_meter_update_names_what_the_task_needs():
    """Before: AttributeError "'NoneType' object has no attribute 'shape'" for a classifier
    without det_labels or a reconstruction without reconstruction; int images gave torch's
    "mean(): could not infer output dtype"."""
    from mistnet.metrics import ReconstructionMeter, SceneMeter

    kp, _, gt, gl, gc = _scene_batch()
    with pytest.raises(ValueError, match="det_labels: a classify meter needs it, got None"):
        SceneMeter("classify", 3).update(kp, None, gt, gl, gc)
    with pytest.raises(ValueError, match="reconstruction: a reconstruct meter needs it, got None"):
        SceneMeter("reconstruct", 3).update(kp, None, gt, gl, gc)
    ints = torch.ones(1, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="images must be a floating-point tensor .* torch.uint8"):
        SceneMeter("reconstruct", 3).update(
            kp, None, gt, gl, gc, None, torch.ones(1, 1, 2, 2), ints
        )
    with pytest.raises(ValueError, match="pred must be a floating-point tensor .* torch.int64"):
        ReconstructionMeter().update(ints.long(), ints.long())


def test_load_sums_refuses_another_length_no_tensor_and_nan():
    """Before: a short vector gave torch's split_with_sizes RuntimeError (SceneMeter) or zip()'s
    ValueError (DetectionMeter), a list AttributeError, NaN "cannot convert float NaN to integer",
    a 0-d tensor IndexError (APMeter), and ReconstructionMeter silently read the first 7 of 14."""
    from mistnet.metrics import APMeter, DetectionMeter, ReconstructionMeter, SceneMeter

    scene = SceneMeter("classify", num_classes=3)
    scene.update(*_scene_batch())
    sums = scene.sums()
    with pytest.raises(
        ValueError, match=r"sums: expected shape \(23,\) as sums\(\) gives, got \(4,\)"
    ):
        SceneMeter("classify", 3).load_sums(sums[:4])
    with pytest.raises(TypeError, match="sums: expected a torch.Tensor of shape"):
        DetectionMeter().load_sums(sums[:10].tolist())
    with pytest.raises(ValueError, match="sums: expected finite sums and counts >= 0"):
        DetectionMeter().load_sums(sums[:10] * math.nan)
    with pytest.raises(ValueError, match=r"sums: expected finite sums and counts >= 0"):
        DetectionMeter().load_sums(-sums[:10])
    with pytest.raises(ValueError, match=r"expected shape \(7,\) as sums\(\) gives, got \(\)"):
        APMeter().load_sums(torch.tensor(1.0))
    rec = ReconstructionMeter()
    rec.update(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"got \(14,\)"):
        ReconstructionMeter().load_sums(torch.cat([rec.sums(), rec.sums()]))
    again = SceneMeter("classify", 3)
    again.load_sums(sums)
    assert again.compute(list("abc")) == scene.compute(list("abc"))


def test_reconstruction_meter_of_no_pixel_is_nan_not_zero_division():
    """Before: loaded sums with n_pix 0 and 2 images raised ZeroDivisionError in compute()."""
    from mistnet.metrics import ReconstructionMeter

    meter = ReconstructionMeter()
    meter.load_sums(torch.tensor([1.0, 1, 1, 1, 1, 0, 2], dtype=torch.float64))
    out = meter.compute()
    assert math.isnan(out["rmse_pooled"]) and out["rmse"] == 0.5 and out["n_images"] == 2


_BX = torch.tensor([[[10.0, 10, 8, 8], [30, 30, 8, 8]]])


@pytest.mark.parametrize(
    "score",
    [
        lambda b, lb, g, gl: match_detections(b, lb, g, gl),
        lambda b, lb, g, gl: any_match(b, lb, g, gl),
        lambda b, lb, g, gl: svhn_ap(b, lb, g, gl, num_classes=2),
        lambda b, lb, g, gl: official_eval_accuracy(b, g, lb, gl, num_classes=2),
        lambda b, lb, g, gl: DetectionMeter(num_classes=2).update(b, lb, g, gl),
    ],
)
def test_the_detection_metrics_refuse_bool_labels_lists_and_meta_tensors(score):
    """Before: bool labels were scored as classes 0 and 1 (classif 1.0); a list failed with
    "'list' object has no attribute 'ndim'", a meta tensor inside torch's .item()."""
    labels = torch.tensor([[0, 1]])
    with pytest.raises(ValueError, match="det_labels: class indices are numbers, got a bool"):
        score(_BX, labels > 0, _BX, labels)
    with pytest.raises(TypeError, match=r"det_boxes: expected a torch.Tensor .* got list"):
        score(_BX.tolist(), labels, _BX, labels)
    with pytest.raises(ValueError, match="det_boxes: a tensor on the meta device"):
        score(_BX.to("meta"), labels, _BX, labels)
    score(_BX, labels, _BX, labels)  # the same batch as numbers


@pytest.mark.parametrize(
    "call, error, message",
    [
        # Before: AttributeError: 'list' object has no attribute 'shape'
        (lambda: rmse([[1.0, 2.0]], t([[0.0, 0.0]])), TypeError, r"pred: expected a torch\.Tensor"),
        (lambda: rmse(t([[0.0, 0.0]]), [[1.0, 2.0]]), TypeError, "target: expected a torch.Tensor"),
        # Before: RuntimeError: Tensor on device cpu is not on the expected device meta!
        (
            lambda: rmse(torch.zeros(1, 2, device="meta"), t([[0.0, 0.0]])),
            ValueError,
            "pred: a tensor on the meta device holds no values",
        ),
        (
            lambda: rmse(t([[0.0, 0.0]]), torch.zeros(1, 2, device="meta")),
            ValueError,
            "target: a tensor on the meta device holds no values",
        ),
    ],
)
def test_rmse_names_a_list_or_a_meta_tensor(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    "name",
    ["svhn_ap", "ap_at_thresholds", "APMeter.update", "match_detections", "any_match",
     "match_points", "DetectionMeter.update"],
)  # fmt: skip
@pytest.mark.parametrize("count", [torch.tensor([True]), [True], torch.tensor([1j])])
@pytest.mark.parametrize("which", ["gt_count", "det_count"])
def test_counts_that_are_no_numbers_are_refused(name, count, which):
    """Before: NotImplementedError: "round_vml_cpu" not implemented for 'Bool' (a count of True
    would have been 1)."""
    message = rf"^{which}: whole numbers in \[0, 2\] expected, got a torch\.(bool|complex64) "
    with pytest.raises(ValueError, match=message):
        if name == "DetectionMeter.update":
            DetectionMeter().update(_GT, _LABELS, _GT, _LABELS, **{which: count})
        else:
            _counted(name, **{which: count})


def test_greedy_matching_takes_integer_scores_and_refuses_bool_ones():
    """Before: integer IoUs failed with "value cannot be converted to type int64 without
    overflow" (the -inf of a masked pair); bool ones were matched as IoUs of 0 and 1."""
    scores = torch.tensor([[3, 1], [4, 2]])  # e.g. counts of shared pixels
    assert greedy_assign(scores, threshold=0).tolist() == [0, 1]
    assert (
        greedy_assign(scores, threshold=0).tolist()
        == greedy_assign(scores.double(), None, 0).tolist()
    )
    assert greedy_match(scores, scores > 1, 2).tolist() == [True, False]
    with pytest.raises(ValueError, match=r"^iou: expected real numbers .*, got torch\.bool"):
        greedy_match(torch.tensor([[True, False]]))


@pytest.mark.parametrize(
    "score",
    [
        lambda b, lb, g, gl: match_detections(b, lb, g, gl),
        lambda b, lb, g, gl: svhn_ap(b, lb, g, gl, num_classes=2),
        lambda b, lb, g, gl: official_eval_accuracy(b, g, lb, gl, num_classes=2),
        lambda b, lb, g, gl: DetectionMeter(num_classes=2).update(b, lb, g, gl),
    ],
)
def test_the_detection_metrics_refuse_bool_boxes(score):
    """Before: bool boxes were cast to boxes of 0 and 1 px and scored."""
    labels = torch.tensor([[0, 1]])
    with pytest.raises(ValueError, match=r"^det_boxes: expected real numbers .*, got torch\.bool"):
        score(_BX > 0, labels, _BX, labels)
    with pytest.raises(ValueError, match=r"^gt_boxes: expected real numbers .*, got torch\.bool"):
        score(_BX, labels, _BX > 0, labels)
    score(_BX.long(), labels, _BX, labels)  # integer pixel boxes are numbers


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: label_histogram(torch.tensor([[0, 1]]), 3, torch.tensor([[2, 0]])), "valid"),
        (lambda: label_histogram(torch.tensor([[0, 1]]), 3, torch.tensor([[1.0, 0.0]])), "valid"),
        (lambda: greedy_assign(torch.tensor([[0.9]]), torch.tensor([[0.5]])), "eligible"),
    ],
)
def test_masks_must_be_bool(call, name):
    # an integer mask was read as counts ([[2, 0]] counted class 0 twice), 0.5 as True
    with pytest.raises(TypeError, match=f"^{name}: expected a bool mask"):
        call()


def test_valid_mask_refuses_a_meta_count():
    with pytest.raises(ValueError, match="^count: a tensor on the meta device"):
        valid_mask(torch.tensor([[0, 1]]), torch.tensor([1], device="meta"))


def test_scene_meter_refused_batch_leaves_the_meter_unchanged():
    # the reconstruction meter counted the batch before the NaN boxes were refused
    m = SceneMeter("reconstruct")
    img = torch.rand(1, 1, 8, 8)
    before = m.sums()
    for _ in range(2):
        with pytest.raises(ValueError, match="gt_boxes: holds NaN"):
            m.update(
                torch.tensor([[[3.0, 3.0, 4.0]]]), None, torch.full((1, 1, 4), math.nan),
                torch.tensor([[0]]), torch.tensor([1]), reconstruction=img, images=img,
            )  # fmt: skip
    assert torch.equal(m.sums(), before) and m.compute()["n_images"] == 0
    m.update(
        torch.tensor([[[3.0, 3.0, 4.0]]]), None, torch.tensor([[[3.0, 3.0, 4.0, 4.0]]]),
        torch.tensor([[0]]), torch.tensor([1]), reconstruction=img, images=img,
    )  # fmt: skip
    assert m.compute()["n_images"] == 1 and m.compute()["rmse"] == 0.0


def test_reconstruction_meter_refuses_what_is_no_image_batch():
    # (B, N) rows were read as images of one row: rmse_image_mean depended on the batching
    a = torch.tensor([[0.0, 1.0], [10.0, 11.0]])
    m = ReconstructionMeter()
    with pytest.raises(ValueError, match=r"^pred must have shape \(B, C, H, W\), got \(2, 2\)"):
        m.update(a, a)
    with pytest.raises(ValueError, match=r"^target must have shape \(B, C, H, W\)"):
        m.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 2, 2))
    assert m.compute()["n_images"] == 0


def test_padding_rows_may_hold_anything():
    # NaN and negative sides in padding (label -1, or index >= count) were refused
    det = torch.tensor([[[10.0, 10.0, 20.0], [math.nan, 0.0, -5.0]]])
    det_labels = torch.tensor([[3, 4]])
    gt = torch.tensor(
        [[[10.0, 10.0, 20.0, 20.0], [math.nan, 1.0, -3.0, 2.0], [1.0, 1.0, -1.0, 1.0]]]
    )
    gt_labels = torch.tensor([[3, -1, 5]])
    count, det_count = torch.tensor([1]), torch.tensor([1])
    kw = dict(gt_count=count, det_count=det_count)
    assert match_detections(det, det_labels, gt, gt_labels, **kw).tolist() == [[True, False, False]]
    assert any_match(det, det_labels, gt, gt_labels, **kw).tolist() == [[True, False, False]]
    meter = DetectionMeter()
    meter.update(det, det_labels, gt, gt_labels, count, det_count)
    assert meter.compute()["both"] == 1.0 and meter.compute()["n_instances"] == 1
    frac, _ = ap_at_thresholds(det, det_labels, gt, gt_labels, (0.5,), **kw)
    assert frac.tolist() == [[1.0]]
    # a valid row is still checked
    with pytest.raises(ValueError, match="gt_boxes: holds NaN"):
        match_detections(
            det,
            det_labels,
            gt,
            torch.tensor([[3, 4, 5]]),
            gt_count=torch.tensor([2]),
            det_count=det_count,
        )
    with pytest.raises(ValueError, match="det_boxes: holds NaN"):
        match_detections(det, det_labels, gt, gt_labels, gt_count=count)
    with pytest.raises(ValueError, match="gt_boxes: sides must be >= 0"):
        match_detections(
            det, det_labels, gt, gt_labels, gt_count=torch.tensor([3]), det_count=det_count
        )


def test_labels_and_counts_are_named():
    det = torch.tensor([[[10.0, 10.0, 20.0]]])
    gt = torch.tensor([[[10.0, 10.0, 20.0, 20.0]]])
    with pytest.raises(
        ValueError, match=r"^det_labels: class indices are real numbers, got torch.complex64"
    ):
        match_detections(det, torch.tensor([[3 + 0j]]), gt, torch.tensor([[3]]))
    with pytest.raises(ValueError, match=r"^gt_count: expected shape \(1,\), got \(\)"):
        match_detections(det, torch.tensor([[3]]), gt, torch.tensor([[3]]), gt_count=1)
    with pytest.raises(ValueError, match=r"^labels: expected real numbers .* got torch.bool"):
        valid_mask(torch.tensor([[True, False]]))  # every entry was valid


def test_scene_meter_reconstruction_refuses_a_batch_whose_parts_disagree():
    """Before: 2 reconstructions against 1 keypoint row were taken (the RMSE counted 2 images,
    the detection 1), and a numpy ``keypoints`` or a list ``gt_labels`` gave a raw
    AttributeError ("no attribute 'long'", "no attribute 'clamp'")."""
    kp, gb = torch.tensor([[[10.0, 10.0, 20.0]]]), torch.tensor([[[11.0, 10.0, 20.0, 20.0]]])
    gl, gc, one, two = lab([[0]]), torch.tensor([1]), torch.rand(1, 1, 8, 8), torch.rand(2, 1, 8, 8)
    m = SceneMeter("reconstruct")
    before = m.sums()
    for error, message, args in [
        (ValueError, r"^reconstruction: expected a batch of 1 .*, got shape \(2, 1, 8, 8\)",
         (kp, None, gb, gl, gc, None, two, two)),
        (ValueError, r"^images: expected a batch of 1 .*, got shape \(2, 1, 8, 8\)",
         (kp, None, gb, gl, gc, None, one, two)),
        (TypeError, r"^keypoints: expected a torch\.Tensor .*, got ndarray",
         (kp.numpy(), None, gb, gl, gc, None, one, one)),
        (ValueError, r"^keypoints: expected shape \(B, K, 3\), got \(\)",
         (torch.tensor(1.0), None, gb, gl, gc, None, one, one)),
        (TypeError, r"^gt_labels: expected a torch\.Tensor .*, got list",
         (kp, None, gb, [[0]], gc, None, one, one)),
        (ValueError, r"^gt_labels: expected real numbers .*, got torch\.bool",
         (kp, None, gb, gl >= 0, gc, None, one, one)),
    ]:  # fmt: skip
        with pytest.raises(error, match=message):
            m.update(*args)
    assert torch.equal(m.sums(), before) and m.compute()["n_images"] == 0
    m.update(kp, None, gb, gl, gc, None, one, one)
    assert m.compute()["n_images"] == m.detection.compute()["n_images"] == 1


def test_scene_meter_classifier_names_its_own_keypoints_argument():
    """Before: a classifier's meter handed ``keypoints`` to DetectionMeter unchecked, whose
    message named its own argument ("det_boxes: expected shape (B, K, 3|4)"), and took
    4-column boxes that ``update`` documents as ``(B, K, 3)`` keypoints."""
    kp, gb = torch.tensor([[[10.0, 10.0, 20.0]]]), torch.tensor([[[11.0, 10.0, 20.0, 20.0]]])
    gl, gc = lab([[0]]), torch.tensor([1])
    m = SceneMeter("classify", 3)
    before = m.sums()
    for error, message, keypoints in [
        (ValueError, r"^keypoints: expected shape \(B, K, 3\), got \(1, 3\)", kp[0]),
        (ValueError, r"^keypoints: expected shape \(B, K, 3\), got \(1, 1, 4\)", gb),
        (TypeError, r"^keypoints: expected a torch\.Tensor .*, got ndarray", kp.numpy()),
        (ValueError, r"^keypoints: expected real numbers .*, got torch\.bool", kp > 0),
        # Before: "det_boxes: holds NaN or infinite values"
        (ValueError, r"^keypoints: holds NaN or infinite values", kp * float("nan")),
    ]:  # fmt: skip
        with pytest.raises(error, match=message):
            m.update(keypoints, gl, gb, gl, gc)
    assert torch.equal(m.sums(), before)
    m.update(kp, gl, gb, gl, gc)
    assert m.compute()["both"] == 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        # Before: OverflowError "cannot convert float infinity to integer" (check_labels)
        (lambda: label_histogram(t([[math.inf]]), 4), "labels: class indices are whole numbers"),
        (lambda: label_histogram(t([[-math.inf]]), 4), "labels: class indices are whole"),
        (lambda: match_detections(_GT, t([[3, -math.inf]]), _GT, _LABELS), "det_labels: class"),
        (lambda: DetectionMeter().update(_GT, _LABELS, _GT, t([[-math.inf, 4]])), "gt_labels: "),
        (lambda: svhn_ap(_GT, _LABELS, _GT, t([[-math.inf, 4]])), "gt_labels: class indices"),
        (
            lambda: official_eval_accuracy(_GT, _GT, t([[math.inf, 4]]), _LABELS),
            "det_labels: class indices are whole numbers",
        ),
        # Before: OverflowError "int too large to convert to float" (check_number)
        (
            lambda: greedy_assign(torch.rand(2, 2), threshold=10**400),
            "threshold: expected a finite number, got an integer of 1329 bits",
        ),
        (
            lambda: match_detections(_GT, _LABELS, _GT, _LABELS, threshold=-(10**400)),
            r"threshold: expected a finite number in \[0, 1\), got an integer of 1329 bits",
        ),
        (lambda: _match_points(_GT, _GT, 10**400), r"radius: expected a finite number in \[0, "),
        (lambda: APMeter([10**400]), r"thresholds: expected a finite number in \[0, 1\], got an"),
        # Before: NotImplementedError "Cannot copy out of meta tensor"
        (
            lambda: APMeter(torch.tensor([0.5], device="meta")),
            "thresholds: a tensor on the meta device holds no values",
        ),
    ],
)
def test_infinite_labels_and_numbers_beyond_floats_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        call()
    assert APMeter(torch.tensor([0.5])).thresholds == (0.5,)


def _match_points(*args, **kwargs):
    from mistnet.metrics import match_points

    return match_points(*args, **kwargs)


@pytest.mark.parametrize(
    "call, message",
    [
        # Before: RuntimeError "DefaultCPUAllocator: can't allocate memory: you tried to allocate
        # 8000000000000 bytes", after the labels were checked
        (lambda: label_histogram(lab([[0]]), 10**12), r"num_classes=1000000000000: .* GB of mem"),
        (lambda: SceneMeter("classify", 10**12), r"num_classes=1000000000000: .* GB of memory"),
        (lambda: DetectionMeter(np.int64(10**12)), r"num_classes=1000000000000: .* GB of memo"),
        # the counts of a whole batch: (B, N, C) one-hot rows
        (
            lambda: label_histogram(torch.zeros(10**4, 10**3, dtype=torch.long), 10**6),
            r"num_classes=1000000: the one-hot counts of labels \(10000, 1000\) need .* GB",
        ),
        # Before: OverflowError "int too big to convert"
        (
            lambda: label_histogram(lab([[0]]), 10**400),
            r"num_classes: expected an integer >= 1 and < 2\*\*63, got an integer of 1329 bits",
        ),
        (lambda: APMeter(num_classes=2**63), r"num_classes: expected an integer >= 1 and < 2\*\*"),
    ],
)
def test_num_classes_beyond_memory_is_refused_before_allocating(call, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        call()
    assert label_histogram(lab([[0, 2]]), np.int64(3)).tolist() == [[1, 0, 1]]


@pytest.mark.parametrize(
    "call, error, message",
    [
        # Before: RuntimeError "Could not infer dtype of NoneType"
        (lambda: valid_mask(lab([[0]]), [None]), TypeError, r"count: .*, got \[None\]"),
        # Before: TypeError "new(): invalid data type 'str'"
        (lambda: valid_mask(lab([[0]]), "1"), TypeError, r"count: .*, got '1'"),
        # Before: ValueError "too many dimensions 'str'" (a string inside a list)
        (lambda: valid_mask(lab([[0]]), ["1"]), TypeError, r"count: .*, got \['1'\]"),
        (lambda: _counted("match_points", gt_count=[b"1"]), TypeError, "gt_count: .*, got "),
        (lambda: _counted("match_detections", gt_count="1"), TypeError, "gt_count: .*, got '1'"),
        (lambda: _counted("any_match", det_count=[None]), TypeError, "det_count: .*, got"),
        (lambda: _counted("svhn_ap", det_count={}), TypeError, r"det_count: .*, got \{\}"),
        (lambda: _counted("match_points", gt_count="2"), TypeError, "gt_count: .*, got '2'"),
        (
            lambda: DetectionMeter().update(_GT, _LABELS, _GT, _LABELS, "1"),
            TypeError,
            "gt_count: .*, got '1'",
        ),
        # Before: ValueError "Overflow when unpacking long long", naming no count
        (lambda: valid_mask(lab([[0]]), [2**70]), ValueError, "count: .*, got "),
        (lambda: _counted("ap_at_thresholds", gt_count=[[1], [1, 2]]), ValueError, "gt_count: "),
    ],
)
def test_counts_that_hold_no_numbers_are_named(call, error, message):
    with pytest.raises(error, match=rf"^{message}"):
        call()
    assert valid_mask(lab([[0, 1]]), [1]).tolist() == [[True, False]]


def test_reconstruction_meter_names_the_tensor_that_holds_nan():
    """Before: "sums: expected finite sums and counts >= 0", naming an argument never passed."""
    from mistnet.metrics import ReconstructionMeter

    meter = ReconstructionMeter()
    meter.update(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
    before = meter.sums()
    nan = torch.full((1, 1, 4, 4), math.nan)
    for pred, target, name in [
        (nan, torch.rand(1, 1, 4, 4), "pred"),
        (torch.rand(1, 1, 4, 4), nan, "target"),
        (torch.rand(1, 1, 4, 4), nan.clone().fill_(math.inf), "target"),
    ]:
        with pytest.raises(ValueError, match=f"^{name} holds NaN or infinite values"):
            meter.update(pred, target)
    assert torch.equal(meter.sums(), before)


def test_load_sums_refuses_counts_that_are_not_whole_and_bool_tensors():
    """Before: 0.5 of everything gave ap50 = 1.0 over n_images 0, a bool tensor was read as
    ones, and APMeter rounded 2.5 images to 2."""
    from mistnet.metrics import APMeter, DetectionMeter, ReconstructionMeter

    half = torch.tensor([0.5] * 10, dtype=torch.float64)
    for meter, sums, message in [
        (DetectionMeter(), half, "sums: the count n_images must be a whole number, got 0.5"),
        (DetectionMeter(), torch.ones(10, dtype=torch.bool), "sums: expected real numbers"),
        (APMeter(), torch.tensor([1.0] * 6 + [2.5]), "sums: the count n_images .* got 2.5"),
        (ReconstructionMeter(), torch.tensor([1.0] * 5 + [16.5, 1]), "sums: the count n_pixels"),
    ]:
        before = meter.sums()
        with pytest.raises(ValueError, match=f"^{message}"):
            meter.load_sums(sums)
        assert torch.equal(meter.sums(), before)
    ap = torch.tensor([0.5, 0.25, 0, 0, 0, 0, 2.0])  # AP sums are fractions of images
    meter = APMeter()
    meter.load_sums(ap)
    assert meter.compute()["ap00"] == 0.25 and meter.compute()["n_images"] == 2
    detection = DetectionMeter()
    detection.load_sums(torch.tensor([2.0, 4, 4, 3, 2, 3, 3, 0.75, 1.25, 2]))
    assert detection.compute()["ap50"] == 0.375
