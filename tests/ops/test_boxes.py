import pytest
import torch

from mistnet.ops import box_iou, boxes_to_xyxy, keypoints_to_boxes, xyxy_to_boxes


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


@pytest.mark.parametrize("bad", [torch.zeros(2, 5), torch.zeros(5)])
def test_bad_box_shape(bad):
    with pytest.raises(ValueError, match="must have shape"):
        box_iou(bad, torch.zeros(1, 4))
