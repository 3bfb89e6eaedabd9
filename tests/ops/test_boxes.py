import numpy as np
import pytest
import torch

from mistnet.ops import (
    box_iou,
    boxes_to_keypoints,
    boxes_to_xyxy,
    keypoints_to_boxes,
    xyxy_to_boxes,
)


def test_iou_hand_values():
    a = torch.tensor([[10.0, 10.0, 20.0]])
    b = torch.tensor(
        [[10.0, 10.0, 20.0], [20.0, 10.0, 20.0], [50.0, 50.0, 20.0], [15.0, 15.0, 20.0]]
    )
    iou = box_iou(a, b)
    assert iou.shape == (1, 4)
    # shifted by half a side: 200 / 600; shifted diagonally by 5: 225 / 575
    torch.testing.assert_close(iou[0], torch.tensor([1.0, 1 / 3, 0.0, 225 / 575]))


def test_iou_rectangles_against_squares_and_batching():
    gt = torch.tensor([[[10.0, 10.0, 10.0, 20.0]]])  # 10 wide, 20 tall
    det = torch.tensor([[[10.0, 10.0, 20.0]]])
    assert box_iou(det, gt).item() == pytest.approx(0.5)
    a, b = torch.rand(3, 5, 3) * 30 + 5, torch.rand(3, 4, 4) * 30 + 5
    batched = box_iou(a, b)
    for i in range(3):
        torch.testing.assert_close(batched[i], box_iou(a[i], b[i]))


def test_iou_empty_boxes_are_zero_not_nan():
    z = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    assert box_iou(z, z).item() == 0.0


def test_conversions_round_trip():
    kp = torch.tensor([[4.0, 6.0, 10.0]])
    assert keypoints_to_boxes(kp).tolist() == [[4.0, 6.0, 10.0, 10.0]]
    assert boxes_to_xyxy(kp).tolist() == [[-1.0, 1.0, 9.0, 11.0]]
    torch.testing.assert_close(xyxy_to_boxes(boxes_to_xyxy(kp)), keypoints_to_boxes(kp))


@pytest.mark.parametrize(
    ("corners", "dtype", "want"),
    [
        ([200, 200, 250, 250], torch.uint8, [225.0, 225.0, 50.0, 50.0]),  # was 97, 97
        ([100, 100, 120, 120], torch.int8, [110.0, 110.0, 20.0, 20.0]),  # was -18, -18
        ([60000, 60000, 65000, 65000], torch.float16, [62496.0, 62496.0, 4992.0, 4992.0]),
    ],
)
def test_corners_convert_without_overflowing_their_dtype(corners, dtype, want):
    """Before: the corners were summed in their own dtype, so uint8 and int8 centres wrapped
    round and float16 ones were infinite, without a word."""
    got = xyxy_to_boxes(torch.tensor([corners], dtype=dtype))
    assert got.dtype == (dtype if dtype.is_floating_point else torch.float32)
    assert got.tolist() == [want]


@pytest.mark.parametrize("bad", [torch.zeros(2, 5), torch.zeros(5)])
def test_bad_box_shape(bad):
    with pytest.raises(ValueError, match="must have shape"):
        box_iou(bad, torch.zeros(1, 4))


def _gt():
    boxes = torch.tensor([[[5.0, 6.0, 28, 28], [1.0, 1.0, 2, 2], [3.0, 3.0, 4, 4]]])
    return boxes, torch.tensor([[3, 4, 5]])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Before: k=-1 gave N-1 keypoints (a slice from the end), k=True one, k=2.5 a raw
        # TypeError from slicing
        ({"k": -1}, "k must be an integer >= 1, got -1"),
        ({"k": 0}, "k must be an integer >= 1, got 0"),
        ({"k": True}, "k must be an integer >= 1, got True"),
        ({"k": 2.5}, "k must be an integer >= 1, got 2.5"),
        # Before: a side of NaN or -5 went into every keypoint
        ({"side": float("nan")}, "side must be a finite number > 0, got nan"),
        ({"side": -5.0}, "side must be a finite number > 0, got -5.0"),
        ({"side": torch.tensor(20.0)}, "side must be a finite number > 0, got tensor"),
        # Before: labels of batch 2 gave (1, k, 3) keypoints with (2, k) labels; a list of boxes
        # an AttributeError, 2-D boxes an IndexError
        ({"labels": torch.tensor([[3, 4, 5]] * 2)}, r"labels must be a tensor of shape \(B, N\)"),
        ({"labels": [[3, 4, 5]]}, r"labels must be a tensor of shape \(B, N\)=\(1, 3\)"),
        ({"labels": torch.zeros(1, 3)}, "labels must be an integer tensor"),
        ({"boxes": [[[5.0, 6.0, 28, 28]]]}, "boxes must be a torch.Tensor of shape"),
        ({"boxes": torch.zeros(3, 4)}, r"boxes must have shape \(B, N, 4\)"),
        ({"boxes": torch.zeros(1, 3, 3)}, r"boxes must have shape \(B, N, 4\)"),
        (
            {"boxes": torch.zeros(1, 3, 4, device="meta")},
            "boxes: a tensor on the meta device holds no values",
        ),
    ],
)
def test_boxes_to_keypoints_names_a_bad_argument(change, message):
    boxes, labels = _gt()
    kwargs = {"boxes": boxes, "labels": labels, "side": 20.0, "k": 2, **change}
    with pytest.raises(ValueError, match=message):
        boxes_to_keypoints(**kwargs)


@pytest.mark.parametrize("k", [2, np.int64(2), np.int32(2), torch.tensor(2)])
def test_boxes_to_keypoints_takes_any_integer_k(k):
    boxes, labels = _gt()
    kp, lab = boxes_to_keypoints(boxes, labels, np.float32(20.0), k)
    assert kp.tolist() == [[[5.0, 6.0, 20.0], [1.0, 1.0, 20.0]]] and lab.tolist() == [[3, 4]]


def test_box_iou_names_mismatched_and_valueless_inputs():
    """Before: batch 2 against 3 gave a raw RuntimeError ("The size of tensor a (2) must match
    ..."), a sparse tensor a 90-word NotImplementedError, a meta one "Tensor on device cpu is not
    on the expected device meta!"."""
    b = torch.tensor([[10.0, 10.0, 4.0, 4.0]])
    with pytest.raises(ValueError, match=r"a and b: leading dimensions \(2,\) and \(3,\) do not"):
        box_iou(torch.rand(2, 3, 4), torch.rand(3, 5, 4))
    with pytest.raises(ValueError, match="a: a tensor of torch.sparse_coo layout holds no values"):
        box_iou(b.to_sparse(), b)
    with pytest.raises(ValueError, match="b: a tensor on the meta device holds no values"):
        box_iou(b, b.to("meta"))
    assert box_iou(torch.rand(2, 3, 4), torch.rand(1, 5, 4)).shape == (2, 3, 5)  # broadcasts


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64])
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: box_iou(x, x.real.float() if x.is_complex() else x.float()), "a"),
        (lambda x: box_iou(torch.ones(1, 3), x), "b"),
        (boxes_to_xyxy, "boxes"),
        (keypoints_to_boxes, "keypoints"),
        (lambda x: xyxy_to_boxes(torch.cat([x, x[..., :1]], -1)), "corners"),
    ],
)
def test_the_box_ops_refuse_boxes_that_hold_no_real_numbers(call, name, dtype):
    """Before: bool boxes failed inside torch's subtraction (box_iou, boxes_to_xyxy,
    xyxy_to_boxes) or came back as bool boxes (keypoints_to_boxes: True as a side of 1); complex
    ones failed in torch.maximum or passed through."""
    boxes = torch.ones(1, 3, dtype=dtype)
    with pytest.raises(ValueError, match=rf"^{name}: expected real numbers .*, got {dtype}"):
        call(boxes)


def test_the_box_ops_take_integer_boxes_as_numbers():
    # integer coordinates are exact pixel positions: the metrics hand them on (then cast)
    a, b = torch.tensor([[0, 0, 20]]), torch.tensor([[10, 0, 20]])
    assert box_iou(a, b).tolist() == box_iou(a.float(), b.float()).tolist()
    assert keypoints_to_boxes(a).tolist() == [[0, 0, 20, 20]]
    assert boxes_to_xyxy(a).tolist() == [[-10.0, -10.0, 10.0, 10.0]]


def test_boxes_to_keypoints_refuses_a_k_beyond_memory_before_allocating(monkeypatch):
    """Before: k=10**9 tried to allocate 8 GB (a raw RuntimeError from the allocator, or the
    machine swapped); 10**15 can be held by no machine."""
    boxes, labels = _gt()
    with pytest.raises(ValueError, match=r"^k=1000000000000000: the keypoints .* of memory"):
        boxes_to_keypoints(boxes, labels, 20.0, 10**15)
    monkeypatch.setattr("mistnet.machine.available_memory", lambda: 2 * 10**9)  # 2 GB left
    with pytest.raises(ValueError, match=r"^k=1000000000: .* more than the 2.0 GB available"):
        boxes_to_keypoints(boxes, labels, 20.0, 10**9)
    assert boxes_to_keypoints(boxes, labels, 20.0, 10**6)[0].shape == (1, 10**6, 3)


@pytest.mark.parametrize(
    "box, dtype", [([0.0, 0.0, 300.0], torch.float16), ([0.0, 0.0, 1e20], torch.float32)]
)
def test_box_iou_of_identical_boxes_whose_area_overflows_is_one(box, dtype):
    b = torch.tensor([box], dtype=dtype)
    iou = box_iou(b, b)  # 300 * 300 > 65504: was inf / inf -> 0
    assert iou.dtype == dtype and iou.tolist() == [[1.0]]


def test_box_iou_refuses_nan_boxes():
    with pytest.raises(ValueError, match="^a contains NaN or infinite"):
        box_iou(torch.tensor([[0.0, 0.0, float("nan")]]), torch.tensor([[0.0, 0.0, 1.0]]))


def test_boxes_to_keypoints_refuses_a_side_beyond_the_dtype_and_sparse_labels():
    from mistnet.ops import boxes_to_keypoints

    labels = torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match="side must .* largest torch.float16"):
        boxes_to_keypoints(torch.rand(1, 2, 4).half(), labels, 1e5, 2)
    with pytest.raises(ValueError, match="side must .* largest torch.float32"):
        boxes_to_keypoints(torch.rand(1, 2, 4), labels, 1e300, 2)
    with pytest.raises(ValueError, match="^labels: .*sparse"):
        boxes_to_keypoints(torch.rand(1, 2, 4), labels.to_sparse(), 1.0, 4)
    _, lab = boxes_to_keypoints(torch.rand(1, 2, 4), labels.to(torch.uint8), 1.0, 4)
    assert lab.tolist() == [[1, 2, -1, -1]]  # uint8 held no -1 to pad with


@pytest.mark.parametrize(
    "dtype, side",
    [(torch.float32, 1e-50), (torch.float16, 1e-10), (torch.bfloat16, 1e-45)],
)
def test_boxes_to_keypoints_refuses_a_side_below_the_smallest_normal(dtype, side):
    # the side became 0 in the boxes' dtype: keypoints of side 0.0, which every op refuses
    boxes = torch.tensor([[[5.0, 6.0, 28.0, 28.0]]], dtype=dtype)
    tiny = torch.finfo(dtype).tiny
    with pytest.raises(ValueError, match=f"^side must be at least {tiny:g} .*smallest normal"):
        boxes_to_keypoints(boxes, torch.tensor([[3]]), side, 1)
    kp, _ = boxes_to_keypoints(boxes, torch.tensor([[3]]), tiny, 1)  # the smallest is taken
    assert kp[0, 0, 2].item() == tiny


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_boxes_are_refused_naming_the_argument(dtype):
    """Before: box_iou, boxes_to_xyxy and xyxy_to_boxes took them, then torch's
    NotImplementedError ("isfinite" / "div_cpu_reduced_float" not implemented for Float8) or
    "Promotion for Float8 Types is not supported"."""
    b = torch.tensor([[4.0, 4.0, 2.0, 2.0]]).to(dtype)
    for call, name in (
        (lambda: box_iou(b, b), "a"),
        (lambda: box_iou(b.float(), b), "b"),
        (lambda: boxes_to_xyxy(b), "boxes"),
        (lambda: xyxy_to_boxes(b), "corners"),
    ):
        with pytest.raises(ValueError, match=rf"^{name}: expected real numbers \(a floating \(16"):
            call()
