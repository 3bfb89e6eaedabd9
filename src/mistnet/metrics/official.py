"""The official code's ``eval_accuracy``, quirks included, for comparison only.

The tests compare it with :mod:`mistnet.metrics.meters` to show where [C]'s numbers differ from
the paper's definitions; never report these numbers as ours.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mistnet.metrics.matching import check_batch, greedy_match, label_histogram
from mistnet.ops._checks import check_flag
from mistnet.ops.boxes import box_iou, keypoints_to_boxes


def official_eval_accuracy(
    det_boxes: Tensor,
    gt_boxes: Tensor,
    det_labels: Tensor,
    gt_labels: Tensor,
    num_classes: int = 10,
    background_class: bool = False,
) -> dict[str, float]:
    """Re-implementation of [C]'s ``eval_accuracy`` (docs/design.md, Metrics), quirks included.

    Do not report these numbers as ours: ``acc_class`` drops class 0, counts assume
    #GT = #det = B·K_det when ``background_class`` is False, greedy IoU matching uses ``>=``
    while ``acc_det`` uses ``>``. One difference: where [C] would divide by zero, this returns
    NaN: ``acc_det``, ``acc_class`` and the recalls when there are no objects (an empty batch,
    or every ground-truth label 0 with ``background_class``), and ``f1_center`` where its
    guard tests ``precision_iou``. The precisions keep [C]'s guard (0 without detections).

    Args:
        det_boxes: ``(B, K, 4)`` detections (or ``(B, K, 3)`` keypoints).
        gt_boxes: ``(B, L, 4)`` ground truth (no padding: [C] has none).
        det_labels: ``(B, K)`` predicted labels in ``0..num_classes-1``.
        gt_labels: ``(B, L)`` ground-truth labels.
        num_classes: C.
        background_class: treat label 0 as background (Pascal setting of [C]); True or False.

    Returns:
        dict with ``acc_det``, ``acc_class``, ``tp_iou``, ``tp_center``, ``num_objects``,
        ``num_detections``, ``precision_iou``, ``recall_iou``, ``f1_iou``,
        ``precision_center``, ``recall_center``, ``f1_center``.
    """
    check_batch(det_boxes, det_labels, gt_boxes, gt_labels)
    background_class = check_flag(background_class, "background_class")  # "no" was true
    det = keypoints_to_boxes(det_boxes).double()
    gt = keypoints_to_boxes(gt_boxes).double()
    B, K, _ = det.shape
    min_iou = 0.5
    iou = box_iou(gt, det)  # (B, L, K); [C] stores the transpose
    if background_class:
        keep = (gt_labels != 0).unsqueeze(2) & (det_labels != 0).unsqueeze(1)
        iou = iou * keep
        num_objects = int((gt_labels != 0).sum())
        num_detections = int((det_labels != 0).sum())
    else:
        num_objects = num_detections = B * K
    acc_det = _ratio(float((iou.amax(dim=2) > min_iou).sum()) if K else 0.0, num_objects)

    same = gt_labels.unsqueeze(2) == det_labels.unsqueeze(1)  # (B, L, K)
    dist = _centre_distance(det, gt, same, gt_labels if background_class else None)
    # [C] matches IoU with ">= 0.5" (not the ">" of acc_det) and centres with dist <= 1.
    tp_iou = int(greedy_match(iou * same, None, min_iou, inclusive=True).sum())
    tp_center = int(greedy_match(-dist, None, -1.0, inclusive=True).sum())

    dt_h = label_histogram(det_labels, num_classes)[:, 1:]
    gt_h = label_histogram(gt_labels, num_classes)[:, 1:]
    acc_class = 1.0 - _ratio(float((gt_h - dt_h).clamp(min=0).sum()), num_objects)
    return {
        "acc_det": acc_det,
        "acc_class": acc_class,
        "tp_iou": tp_iou,
        "tp_center": tp_center,
        "num_objects": num_objects,
        "num_detections": num_detections,
        **_rates(tp_iou, tp_center, num_objects, num_detections),
    }


def _ratio(count: float, num_objects: int) -> float:
    """``count / num_objects``, NaN without objects (where [C] divides by zero)."""
    return count / num_objects if num_objects else math.nan


def _centre_distance(det: Tensor, gt: Tensor, same: Tensor, gt_labels: Tensor | None) -> Tensor:
    """``(B, L, K)`` Chebyshev distance of each detection's centre from each ground truth's,
    in units of the ground truth's half size (<= 1: the centre is inside the box); 2 for pairs
    of other classes, for non-finite distances and, when ``gt_labels`` is given (background
    class), for background ground truth."""
    delta = (det[:, None, :, :2] - gt[:, :, None, :2]).abs()  # (B, L, K, 2)
    dist = (delta / (gt[:, :, None, 2:] / 2)).amax(dim=-1)
    dist = torch.where(torch.isfinite(dist), dist, torch.full_like(dist, 2.0))
    bad = ~same
    if gt_labels is not None:
        bad = bad | (gt_labels == 0).unsqueeze(2)
    return dist.masked_fill(bad, 2.0)


def _rates(tp_iou: int, tp_center: int, num_objects: int, num_detections: int) -> dict:
    """[C]'s precision, recall and F1 of the IoU and centre matches, with its guards."""
    precision_iou = tp_iou / num_detections if num_detections else 0.0
    precision_center = tp_center / num_detections if num_detections else 0.0
    recall_iou = _ratio(tp_iou, num_objects)
    recall_center = _ratio(tp_center, num_objects)

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if (p + r) > 0 else math.nan

    f1_iou = 0.0 if (recall_iou == 0 and precision_iou == 0) else f1(precision_iou, recall_iou)
    # [C]'s guard tests precision_iou here (its bug); reproduced.
    f1_center = (
        0.0 if (recall_center == 0 and precision_iou == 0) else f1(precision_center, recall_center)
    )
    return {
        "precision_iou": precision_iou,
        "recall_iou": recall_iou,
        "f1_iou": f1_iou,
        "precision_center": precision_center,
        "recall_center": recall_center,
        "f1_center": f1_center,
    }
