"""Evaluation metrics (SPEC §5): matching, detection / classification rates, AP, RMSE.

Conventions (SPEC §0):

- Boxes are centre/size: ``(cx, cy, w, h)`` in image pixels, last dim 4. A keypoint ``(x, y, side)``
  (last dim 3) is the square box ``(x, y, side, side)``. A box covers the continuous rectangle
  ``[cx - w/2, cx + w/2] x [cy - h/2, cy + h/2]``.
- Labels are int64 class ids ``0..num_classes-1``. Variable-count batches pad labels with ``-1``
  (boxes with anything) and may carry ``count`` ``(B,)``: the first ``count[b]`` entries of row
  ``b`` are valid. An entry is valid when its label is ``>= 0`` *and* its index is below the count
  (when a count is given).
- Matching (SPEC A26) is greedy over ground truth in index order: each ground-truth instance takes
  the eligible, still unmatched detection with the highest IoU; it is a match when that IoU is
  strictly greater than the threshold, and the detection is then removed.

Metric definitions (SPEC A24, A25, A27, A30):

- ``det_iou50``: class-agnostic one-to-one matches / #GT.
- ``det_any50``: [C]'s non-exclusive variant: GT instances whose best IoU over *all* detections
  is > 0.5, / #GT.
- ``classif``: bag-level multiset accuracy over all classes (class 0 included):
  ``1 - sum_images sum_c max(0, n_gt(c) - n_pred(c)) / #GT`` = ``sum min(n_gt, n_pred) / #GT``.
- ``both``: class-aware one-to-one matches / #GT.
- ``ap50``: mean over images of class-aware matches / K_image, K_image = valid detections in the
  image (Table 3 passes ``det_count = gt_count``). ``ap50_agnostic`` likewise, class-agnostic.
- SVHN ``AP_t``: the same per-image fraction with IoU > t; at ``t = 0`` the label multiset
  overlap / K_image, no boxes involved.
- RMSE: per-image RMSE averaged over images (unclipped), plus a clipped and a pooled variant;
  signed (Gabor) images report RMSE / 2.

:func:`official_eval_accuracy` reproduces the official code's ``eval_accuracy`` (SPEC §5.5),
including its quirks, for comparison only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mistnet.ops.boxes import box_iou, keypoints_to_boxes

__all__ = [
    "SVHN_THRESHOLDS",
    "APMeter",
    "DetectionMeter",
    "ReconstructionMeter",
    "SceneMeter",
    "ap_at_thresholds",
    "any_match",
    "greedy_assign",
    "greedy_match",
    "label_histogram",
    "match_detections",
    "match_points",
    "multiset_overlap",
    "official_eval_accuracy",
    "rmse",
    "svhn_ap",
    "unmeasured",
    "valid_mask",
]

#: IoU thresholds of the paper's Table 4; ``0.0`` means "classification only, no localisation".
SVHN_THRESHOLDS: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)


# --------------------------------------------------------------------------------------------
# Boxes


# --------------------------------------------------------------------------------------------
# Validity, histograms


def valid_mask(labels: Tensor, count: Tensor | None = None) -> Tensor:
    """Which entries of a padded label tensor are real.

    Args:
        labels: ``(B, N)`` int labels, ``-1`` for padding.
        count: optional ``(B,)`` number of valid leading entries per row.

    Returns:
        ``(B, N)`` bool: ``labels >= 0`` and (if ``count`` is given) ``index < count``.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels: expected shape (B, N), got {tuple(labels.shape)}")
    valid = labels >= 0
    if count is not None:
        count = torch.as_tensor(count, device=labels.device)
        if count.shape != labels.shape[:1]:
            raise ValueError(
                f"count: expected shape ({labels.shape[0]},), got {tuple(count.shape)}"
            )
        idx = torch.arange(labels.shape[1], device=labels.device)
        valid = valid & (idx.unsqueeze(0) < count.unsqueeze(1))
    return valid


def label_histogram(labels: Tensor, num_classes: int, valid: Tensor | None = None) -> Tensor:
    """Per-row class counts.

    Args:
        labels: ``(B, N)`` int labels; entries that are not ``valid`` (default: ``labels < 0``)
            are ignored.
        num_classes: C.
        valid: optional ``(B, N)`` bool mask.

    Returns:
        ``(B, C)`` int64 counts.

    Example:
        >>> label_histogram(torch.tensor([[0, 0, 3, -1]]), 4)
        tensor([[2, 0, 0, 1]])
    """
    if valid is None:
        valid = labels >= 0
    bad = valid & (labels >= num_classes)
    if bool(bad.any()):
        raise ValueError(f"labels: values must be < num_classes={num_classes}")
    onehot = torch.nn.functional.one_hot(labels.clamp(min=0).long(), num_classes)  # (B, N, C)
    return (onehot * valid.unsqueeze(-1)).sum(dim=1)


def multiset_overlap(
    det_labels: Tensor,
    gt_labels: Tensor,
    num_classes: int,
    det_valid: Tensor | None = None,
    gt_valid: Tensor | None = None,
) -> Tensor:
    """Size of the intersection of the predicted and ground-truth label multisets, per image.

    ``sum_c min(n_pred(c), n_gt(c))``; equals ``#GT - sum_c max(0, n_gt(c) - n_pred(c))``.

    Args:
        det_labels: ``(B, K)`` predicted labels (``-1`` = padding).
        gt_labels: ``(B, N)`` ground-truth labels (``-1`` = padding).
        num_classes: C (all classes count, class 0 included).
        det_valid: optional ``(B, K)`` bool mask.
        gt_valid: optional ``(B, N)`` bool mask.

    Returns:
        ``(B,)`` int64.
    """
    h_det = label_histogram(det_labels, num_classes, det_valid)
    h_gt = label_histogram(gt_labels, num_classes, gt_valid)
    return torch.minimum(h_det, h_gt).sum(dim=1)


# --------------------------------------------------------------------------------------------
# Matching


def greedy_assign(iou: Tensor, eligible: Tensor | None = None, threshold: float = 0.5) -> Tensor:
    """Greedy one-to-one assignment of detections to ground truth (SPEC A26).

    Ground-truth rows are visited in index order. Each takes the eligible, still unmatched
    detection with the highest IoU (ties: lowest detection index); it is a match when that IoU is
    strictly greater than ``threshold``, and the detection is then no longer available. NaN IoUs
    are never eligible. Leading dimensions are independent problems (batched).

    Args:
        iou: ``(..., N, M)`` IoU between N ground-truth and M detected boxes.
        eligible: optional ``(..., N, M)`` bool; False pairs can never match (other class,
            padding).
        threshold: a pair matches only if its IoU is ``> threshold``.

    Returns:
        ``(..., N)`` int64: the matched detection index per ground-truth row, ``-1`` if none.

    Example:
        >>> greedy_assign(torch.tensor([[0.9, 0.8], [0.95, 0.1]]))
        tensor([ 0, -1])
    """
    if iou.ndim < 2:
        raise ValueError(f"iou: expected shape (..., N, M), got {tuple(iou.shape)}")
    *lead, N, M = iou.shape
    ok = ~torch.isnan(iou)
    if eligible is not None:
        if eligible.shape != iou.shape:
            raise ValueError(
                f"eligible: expected shape {tuple(iou.shape)}, got {tuple(eligible.shape)}"
            )
        ok = ok & eligible.bool()
    Bf = math.prod(lead)
    neg_inf = torch.tensor(float("-inf"), dtype=iou.dtype, device=iou.device)
    score = torch.where(ok, iou, neg_inf).reshape(Bf, N, M)
    assign = torch.full((Bf, N), -1, dtype=torch.long, device=iou.device)
    if M == 0 or N == 0:
        return assign.reshape(*lead, N)
    used = torch.zeros(Bf, M, dtype=torch.bool, device=iou.device)
    cols = torch.arange(M, device=iou.device)
    # Sequential over ground truth by definition of the greedy rule; vectorised over the batch.
    for n in range(N):
        s = score[:, n].masked_fill(used, float("-inf"))  # (B', M)
        best, idx = s.max(dim=-1)
        hit = best > threshold
        assign[:, n] = torch.where(hit, idx, torch.full_like(idx, -1))
        used = used | ((cols.unsqueeze(0) == idx.unsqueeze(1)) & hit.unsqueeze(1))
    return assign.reshape(*lead, N)


def greedy_match(iou: Tensor, eligible: Tensor | None = None, threshold: float = 0.5) -> Tensor:
    """Which ground-truth instances are matched by :func:`greedy_assign`.

    Args:
        iou: ``(..., N_gt, N_det)`` IoU.
        eligible: optional ``(..., N_gt, N_det)`` bool mask of pairs allowed to match.
        threshold: strict IoU threshold.

    Returns:
        ``(..., N_gt)`` bool.
    """
    return greedy_assign(iou, eligible, threshold) >= 0


def _check_batch(det_boxes, det_labels, gt_boxes, gt_labels):
    if det_boxes.ndim != 3 or det_boxes.shape[-1] not in (3, 4):
        raise ValueError(f"det_boxes: expected shape (B, K, 3|4), got {tuple(det_boxes.shape)}")
    if gt_boxes.ndim != 3 or gt_boxes.shape[-1] not in (3, 4):
        raise ValueError(f"gt_boxes: expected shape (B, N, 3|4), got {tuple(gt_boxes.shape)}")
    if det_labels.shape != det_boxes.shape[:2]:
        raise ValueError(
            f"det_labels: expected shape {tuple(det_boxes.shape[:2])}, "
            f"got {tuple(det_labels.shape)}"
        )
    if gt_labels.shape != gt_boxes.shape[:2]:
        raise ValueError(
            f"gt_labels: expected shape {tuple(gt_boxes.shape[:2])}, got {tuple(gt_labels.shape)}"
        )
    if det_boxes.shape[0] != gt_boxes.shape[0]:
        raise ValueError(
            "det_boxes and gt_boxes: batch sizes differ "
            f"({det_boxes.shape[0]} vs {gt_boxes.shape[0]})"
        )


def _pair_iou(det_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """``(B, N_gt, K)`` IoU, computed in float64 so thresholds are not blurred by rounding."""
    return box_iou(gt_boxes.double(), det_boxes.double())


def match_detections(
    det_boxes: Tensor,
    det_labels: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    gt_count: Tensor | None = None,
    det_count: Tensor | None = None,
    threshold: float = 0.5,
    class_aware: bool = True,
) -> Tensor:
    """Padding-aware batched greedy one-to-one matching.

    Args:
        det_boxes: ``(B, K, 3)`` keypoints ``(x, y, side)`` or ``(B, K, 4)`` boxes.
        det_labels: ``(B, K)`` predicted labels, ``-1`` = padding (ignored if not class-aware,
            except as padding).
        gt_boxes: ``(B, N, 4)`` (or 3) ground-truth boxes.
        gt_labels: ``(B, N)`` ground-truth labels, ``-1`` = padding.
        gt_count: optional ``(B,)`` valid ground-truth count.
        det_count: optional ``(B,)`` valid detection count (the first ``det_count[b]``).
        threshold: strict IoU threshold.
        class_aware: only same-label pairs are eligible.

    Returns:
        ``(B, N)`` bool: ground-truth instance matched (always False for padding).
    """
    _check_batch(det_boxes, det_labels, gt_boxes, gt_labels)
    gt_valid = valid_mask(gt_labels, gt_count)
    det_valid = valid_mask(det_labels, det_count)
    eligible = gt_valid.unsqueeze(2) & det_valid.unsqueeze(1)  # (B, N, K)
    if class_aware:
        eligible = eligible & (gt_labels.unsqueeze(2) == det_labels.unsqueeze(1))
    return greedy_match(_pair_iou(det_boxes, gt_boxes), eligible, threshold)


def any_match(
    det_boxes: Tensor,
    det_labels: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    gt_count: Tensor | None = None,
    det_count: Tensor | None = None,
    threshold: float = 0.5,
) -> Tensor:
    """[C]'s non-exclusive, class-agnostic detection test: any valid detection with IoU > t.

    Args: as :func:`match_detections`.

    Returns:
        ``(B, N)`` bool (False for padding).
    """
    _check_batch(det_boxes, det_labels, gt_boxes, gt_labels)
    gt_valid = valid_mask(gt_labels, gt_count)
    det_valid = valid_mask(det_labels, det_count)
    iou = _pair_iou(det_boxes, gt_boxes).masked_fill(~det_valid.unsqueeze(1), 0.0)
    return ((iou > threshold).any(dim=2)) & gt_valid


def match_points(
    det_points: Tensor,
    gt_points: Tensor,
    radius: float,
    *,
    gt_count: Tensor | None = None,
    det_count: Tensor | None = None,
) -> Tensor:
    """One-to-one matching of detected to ground-truth positions within a radius (Gabor, Fig. 4).

    The greedy rule of :func:`greedy_assign` on negated distances: ground-truth points in index
    order each take the nearest still unmatched detection, a match when the distance is at most
    ``radius`` (inclusive). Only ``(x, y)`` are used; a side or box size in the last dimension is
    ignored.

    Args:
        det_points: ``(B, K, D)`` detections with ``D >= 2`` (keypoints ``(x, y, side)``).
        gt_points: ``(B, N, D)`` ground truth with ``D >= 2`` (boxes ``(cx, cy, w, h)``).
        radius: largest matching distance in pixels.
        gt_count: optional ``(B,)`` valid ground-truth count (the first ``gt_count[b]``).
        det_count: optional ``(B,)`` valid detection count.

    Returns:
        ``(B, N)`` bool: ground-truth point matched (False for padding).

    Example:
        >>> det = torch.tensor([[[10.0, 10.0, 20.0], [13.0, 10.0, 20.0]]])
        >>> gt = torch.tensor([[[11.0, 10.0, 20.0, 20.0], [16.0, 10.0, 20.0, 20.0]]])
        >>> match_points(det, gt, 3.0)
        tensor([[True, True]])
    """
    if det_points.ndim != 3 or det_points.shape[-1] < 2:
        raise ValueError(f"det_points: expected shape (B, K, >=2), got {tuple(det_points.shape)}")
    if gt_points.ndim != 3 or gt_points.shape[-1] < 2:
        raise ValueError(f"gt_points: expected shape (B, N, >=2), got {tuple(gt_points.shape)}")
    if det_points.shape[0] != gt_points.shape[0]:
        raise ValueError(
            f"det_points and gt_points: batch sizes differ "
            f"({det_points.shape[0]} vs {gt_points.shape[0]})"
        )
    B, N, _ = gt_points.shape
    K = det_points.shape[1]
    ones = gt_points.new_zeros(B, N, dtype=torch.long)
    gt_valid = valid_mask(ones, gt_count)
    det_valid = valid_mask(det_points.new_zeros(B, K, dtype=torch.long), det_count)
    dist = torch.cdist(gt_points[..., :2].double(), det_points[..., :2].double())  # (B, N, K)
    eligible = gt_valid.unsqueeze(2) & det_valid.unsqueeze(1)
    # -d > -(r + tol)  <=>  d <= r, up to float rounding of integer-pixel distances
    return greedy_match(-dist, eligible, -(float(radius) + 1e-9)) & gt_valid


def _per_image_fraction(matches: Tensor, k_image: Tensor, n_gt: Tensor) -> tuple[Tensor, Tensor]:
    """Return (fraction (B,), included (B,) bool). Images with no detection and no GT are skipped;
    images with GT but no detection score 0."""
    frac = matches.double() / k_image.clamp(min=1).double()
    included = (k_image > 0) | (n_gt > 0)
    return frac, included


# --------------------------------------------------------------------------------------------
# Detection meter (Tables 2 and 3)


class DetectionMeter:
    """Accumulates SPEC §5.2 / §5.3 detection and classification metrics over batches.

    Args:
        num_classes: number of classes C (class 0 is a real class).
        iou_threshold: strict IoU threshold (0.5).

    Example:
        >>> m = DetectionMeter()
        >>> gt = torch.tensor([[[10.0, 10, 20, 20]]])
        >>> m.update(gt[..., :3], torch.tensor([[3]]), gt, torch.tensor([[3]]))
        >>> m.compute()["both"]
        1.0
    """

    _SUMS = (
        "n_images",
        "n_instances",
        "n_detections",
        "matched_agnostic",
        "matched_aware",
        "any_hits",
        "class_overlap",
        "ap_aware_sum",
        "ap_agnostic_sum",
        "ap_images",
    )

    def __init__(self, num_classes: int = 10, iou_threshold: float = 0.5) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._s: dict[str, float] = dict.fromkeys(self._SUMS, 0.0)

    def sums(self) -> Tensor:
        """What is accumulated, as float64 ``(10,)``: meters of disjoint batches add up."""
        return torch.tensor([self._s[k] for k in self._SUMS], dtype=torch.float64)

    def load_sums(self, sums: Tensor) -> None:
        """Replace what is accumulated by ``sums`` (e.g. the sum of several meters' :meth:`sums`)."""
        self._s = dict(zip(self._SUMS, sums.tolist(), strict=True))

    @torch.no_grad()
    def update(
        self,
        det_boxes: Tensor,
        det_labels: Tensor,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_count: Tensor | None = None,
        det_count: Tensor | None = None,
    ) -> None:
        """Add one batch.

        Args:
            det_boxes: ``(B, K, 3)`` keypoints or ``(B, K, 4)`` boxes.
            det_labels: ``(B, K)`` int64 predicted labels (``-1`` = padding).
            gt_boxes: ``(B, N, 4)`` ground-truth boxes.
            gt_labels: ``(B, N)`` int64 ground-truth labels (``-1`` = padding).
            gt_count: optional ``(B,)`` valid ground-truth count.
            det_count: optional ``(B,)`` valid detection count per image (Table 3: = gt count).
        """
        _check_batch(det_boxes, det_labels, gt_boxes, gt_labels)
        t = self.iou_threshold
        gt_valid = valid_mask(gt_labels, gt_count)  # (B, N)
        det_valid = valid_mask(det_labels, det_count)  # (B, K)
        iou = _pair_iou(det_boxes, gt_boxes)  # (B, N, K)
        pair_valid = gt_valid.unsqueeze(2) & det_valid.unsqueeze(1)
        same = gt_labels.unsqueeze(2) == det_labels.unsqueeze(1)
        m_agn = greedy_match(iou, pair_valid, t).sum(1)  # (B,)
        m_aw = greedy_match(iou, pair_valid & same, t).sum(1)
        hits = ((iou > t) & pair_valid).any(dim=2).sum(1)
        overlap = multiset_overlap(det_labels, gt_labels, self.num_classes, det_valid, gt_valid)
        n_gt = gt_valid.sum(1)
        k_img = det_valid.sum(1)
        f_aw, inc = _per_image_fraction(m_aw, k_img, n_gt)
        f_agn, _ = _per_image_fraction(m_agn, k_img, n_gt)
        s = self._s
        s["n_images"] += det_boxes.shape[0]
        s["n_instances"] += int(n_gt.sum())
        s["n_detections"] += int(k_img.sum())
        s["matched_agnostic"] += int(m_agn.sum())
        s["matched_aware"] += int(m_aw.sum())
        s["any_hits"] += int(hits.sum())
        s["class_overlap"] += int(overlap.sum())
        s["ap_aware_sum"] += float((f_aw * inc).sum())
        s["ap_agnostic_sum"] += float((f_agn * inc).sum())
        s["ap_images"] += int(inc.sum())

    def compute(self) -> dict[str, float]:
        """Return the metrics so far (NaN where a denominator is 0).

        Returns:
            dict with ``det_iou50``, ``det_any50``, ``classif``, ``both``, ``ap50``,
            ``ap50_agnostic`` (fractions in [0, 1]) and ``n_images``, ``n_instances``,
            ``n_detections`` (counts).
        """
        s = self._s
        n = s["n_instances"]
        na = s["ap_images"]

        def div(a: float, b: float) -> float:
            return a / b if b > 0 else math.nan

        return {
            "det_iou50": div(s["matched_agnostic"], n),
            "det_any50": div(s["any_hits"], n),
            "classif": div(s["class_overlap"], n),
            "both": div(s["matched_aware"], n),
            "ap50": div(s["ap_aware_sum"], na),
            "ap50_agnostic": div(s["ap_agnostic_sum"], na),
            "n_images": int(s["n_images"]),
            "n_instances": int(n),
            "n_detections": int(s["n_detections"]),
        }


# --------------------------------------------------------------------------------------------
# AP at IoU thresholds (Table 4)


def _ap_key(t: float) -> str:
    return f"ap{round(t * 100):02d}"


def ap_at_thresholds(
    det_boxes: Tensor,
    det_labels: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    thresholds: Sequence[float] = SVHN_THRESHOLDS,
    *,
    num_classes: int = 10,
    gt_count: Tensor | None = None,
    det_count: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-image matched fraction at several IoU thresholds (SPEC §5.4, A30).

    For ``t > 0``: class-aware greedy one-to-one matches with IoU > t, divided by the image's
    number of valid detections K_image. For ``t <= 0``: the label multiset overlap / K_image,
    ignoring boxes entirely ("pure classification, no localisation").

    Args:
        det_boxes: ``(B, K, 3)`` keypoints (squares) or ``(B, K, 4)`` boxes.
        det_labels: ``(B, K)`` predicted labels (``-1`` = padding).
        gt_boxes: ``(B, N, 4)`` ground-truth rectangles ``(cx, cy, w, h)``.
        gt_labels: ``(B, N)`` ground-truth labels (``-1`` = padding).
        thresholds: T thresholds.
        num_classes: C.
        gt_count: optional ``(B,)``.
        det_count: optional ``(B,)``.

    Returns:
        ``(B, T)`` float64 fractions and ``(B,)`` bool ``included`` (False for images with
        neither detections nor ground truth, which are left out of means).
    """
    _check_batch(det_boxes, det_labels, gt_boxes, gt_labels)
    gt_valid = valid_mask(gt_labels, gt_count)
    det_valid = valid_mask(det_labels, det_count)
    iou = _pair_iou(det_boxes, gt_boxes)
    eligible = (
        gt_valid.unsqueeze(2)
        & det_valid.unsqueeze(1)
        & (gt_labels.unsqueeze(2) == det_labels.unsqueeze(1))
    )
    k_img = det_valid.sum(1)
    n_gt = gt_valid.sum(1)
    cols = []
    for t in thresholds:
        if t <= 0:
            m = multiset_overlap(det_labels, gt_labels, num_classes, det_valid, gt_valid)
        else:
            m = greedy_match(iou, eligible, float(t)).sum(1)
        cols.append(m)
    matches = torch.stack(cols, dim=1)  # (B, T)
    frac = matches.double() / k_img.clamp(min=1).double().unsqueeze(1)
    return frac, (k_img > 0) | (n_gt > 0)


class APMeter:
    """Accumulates :func:`ap_at_thresholds` over batches (Table 4).

    Args:
        thresholds: IoU thresholds (default: the paper's 0, .5, ..., .9).
        num_classes: C.

    ``compute()`` returns ``{"ap00": ..., "ap50": ..., ..., "n_images": ...}`` (keys are
    ``ap`` + the threshold in percent, two digits).
    """

    def __init__(self, thresholds: Sequence[float] = SVHN_THRESHOLDS, num_classes: int = 10):
        self.thresholds = tuple(float(t) for t in thresholds)
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._sum = torch.zeros(len(self.thresholds), dtype=torch.float64)
        self._n = 0

    @torch.no_grad()
    def update(
        self,
        det_boxes: Tensor,
        det_labels: Tensor,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_count: Tensor | None = None,
        det_count: Tensor | None = None,
    ) -> None:
        """Add one batch (arguments as :func:`ap_at_thresholds`)."""
        frac, inc = ap_at_thresholds(
            det_boxes,
            det_labels,
            gt_boxes,
            gt_labels,
            self.thresholds,
            num_classes=self.num_classes,
            gt_count=gt_count,
            det_count=det_count,
        )
        self._sum += (frac * inc.unsqueeze(1)).sum(0).cpu()
        self._n += int(inc.sum())

    def compute(self) -> dict[str, float]:
        """Mean per-image fractions (NaN before any image)."""
        out: dict[str, float] = {}
        for t, v in zip(self.thresholds, self._sum.tolist(), strict=True):
            out[_ap_key(t)] = v / self._n if self._n else math.nan
        out["n_images"] = self._n
        return out


def svhn_ap(
    det_boxes: Tensor,
    det_labels: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    thresholds: Sequence[float] = SVHN_THRESHOLDS,
    *,
    num_classes: int = 10,
    gt_count: Tensor | None = None,
    det_count: Tensor | None = None,
) -> dict[str, float]:
    """One-shot Table 4 metrics: ``{"ap00": ..., "ap50": ..., ..., "n_images": ...}``.

    Args: as :func:`ap_at_thresholds`.
    """
    meter = APMeter(thresholds, num_classes)
    meter.update(det_boxes, det_labels, gt_boxes, gt_labels, gt_count, det_count)
    return meter.compute()


# --------------------------------------------------------------------------------------------
# RMSE (Table 1)


def _sse_per_image(pred: Tensor, target: Tensor, signed: bool, clip: bool) -> tuple[Tensor, int]:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred: expected the shape of target {tuple(target.shape)}, got {tuple(pred.shape)}"
        )
    if pred.ndim < 2:
        raise ValueError(f"pred: expected shape (B, ...), got {tuple(pred.shape)}")
    p = pred.double()
    if clip:
        p = p.clamp(-1.0, 1.0) if signed else p.clamp(0.0, 1.0)
    d = p - target.double()
    if signed:
        d = d / 2  # RMSE after the affine map [-1, 1] -> [0, 1]
    n = pred[0].numel()
    return (d * d).reshape(pred.shape[0], -1).sum(1), n


def rmse(
    pred: Tensor,
    target: Tensor,
    *,
    signed: bool = False,
    clip: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """Root mean square reconstruction error (SPEC §5.1, A27).

    Args:
        pred: ``(B, C, H, W)`` reconstruction (any ``(B, ...)`` shape works).
        target: same shape, the input images.
        signed: images live in [-1, 1] (Gabor): report RMSE / 2, i.e. the RMSE after mapping
            [-1, 1] to [0, 1]; clipping then clips to [-1, 1].
        clip: clip ``pred`` to the valid intensity range first.
        reduction: ``"none"`` (per-image, ``(B,)``), ``"mean"`` (mean of per-image RMSEs) or
            ``"pooled"`` (RMSE over all pixels of all images).

    Returns:
        ``(B,)`` or scalar float64 tensor.

    Example:
        >>> rmse(torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 1], [1, 1]]]]))
        tensor(1., dtype=torch.float64)
    """
    sse, n = _sse_per_image(pred, target, signed, clip)
    if reduction == "none":
        return (sse / n).sqrt()
    if reduction == "mean":
        return (sse / n).sqrt().mean()
    if reduction == "pooled":
        return (sse.sum() / (n * sse.shape[0])).sqrt()
    raise ValueError(f"reduction: expected 'none', 'mean' or 'pooled', got {reduction!r}")


class ReconstructionMeter:
    """Accumulates RMSE over batches.

    Args:
        signed: Gabor-style signed images (see :func:`rmse`).

    ``compute()`` returns ``rmse`` (mean per-image, unclipped; the Table 1 number),
    ``rmse_clipped``, ``rmse_pooled`` and ``n_images``.
    """

    def __init__(self, signed: bool = False) -> None:
        self.signed = signed
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._rmse_sum = 0.0
        self._rmse_clip_sum = 0.0
        self._sse = 0.0
        self._n_pix = 0
        self._n_img = 0

    def sums(self) -> Tensor:
        """What is accumulated, as float64 ``(5,)``: meters of disjoint batches add up."""
        values = [self._rmse_sum, self._rmse_clip_sum, self._sse, self._n_pix, self._n_img]
        return torch.tensor(values, dtype=torch.float64)

    def load_sums(self, sums: Tensor) -> None:
        """Replace what is accumulated by ``sums`` (see :meth:`sums`)."""
        self._rmse_sum, self._rmse_clip_sum, self._sse, n_pix, n_img = sums.tolist()
        self._n_pix, self._n_img = round(n_pix), round(n_img)

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch: ``pred`` and ``target`` ``(B, C, H, W)``."""
        sse, n = _sse_per_image(pred, target, self.signed, clip=False)
        sse_c, _ = _sse_per_image(pred, target, self.signed, clip=True)
        self._rmse_sum += float((sse / n).sqrt().sum())
        self._rmse_clip_sum += float((sse_c / n).sqrt().sum())
        self._sse += float(sse.sum())
        self._n_pix += n * sse.shape[0]
        self._n_img += sse.shape[0]

    def compute(self) -> dict[str, float]:
        """Metrics so far (NaN before any image)."""
        if self._n_img == 0:
            nan = math.nan
            return {"rmse": nan, "rmse_clipped": nan, "rmse_pooled": nan, "n_images": 0}
        return {
            "rmse": self._rmse_sum / self._n_img,
            "rmse_clipped": self._rmse_clip_sum / self._n_img,
            "rmse_pooled": math.sqrt(self._sse / self._n_pix),
            "n_images": self._n_img,
        }


# --------------------------------------------------------------------------------------------
# A task's metrics on data whose ground truth may be partial

#: The ground truth each detection metric needs: ``boxes`` (where the instances are) and/or
#: ``labels`` (what they are).
NEEDS: dict[str, frozenset[str]] = {
    "det_iou50": frozenset({"boxes"}),
    "det_any50": frozenset({"boxes"}),
    "ap50_agnostic": frozenset({"boxes"}),
    "classif": frozenset({"labels"}),
    "both": frozenset({"boxes", "labels"}),
    "ap50": frozenset({"boxes", "labels"}),
}
_COUNTS = ("n_images", "n_instances", "n_detections")


def unmeasured(task: str, annotations: frozenset[str] | set[str]) -> dict[str, str]:
    """The metrics of ``task`` that data carrying only ``annotations`` cannot give, with why.

    Args:
        task: ``"classify"`` or ``"reconstruct"`` (which measures ``rmse`` always and the
            class-agnostic ``det_iou50`` / ``det_any50`` of its keypoints when there are boxes).
        annotations: a subset of ``{"boxes", "labels"}``.

    Returns:
        ``{metric: reason}``, e.g. ``{"both": "the data has no boxes", ...}``.

    Example:
        >>> sorted(unmeasured("classify", {"labels"}))
        ['ap50', 'ap50_agnostic', 'both', 'det_any50', 'det_iou50']
    """
    names = NEEDS if task == "classify" else ("det_iou50", "det_any50")
    out = {}
    for name in names:
        missing = sorted(NEEDS[name] - set(annotations))
        if missing:
            out[name] = "the data has no " + " and no ".join(missing)
    return out


class SceneMeter:
    """The SPEC §5 metrics of a MIST task over scenes, leaving out what the data cannot measure.

    Classification gives ``det_iou50``, ``det_any50``, ``classif``, ``both``, ``ap50``,
    ``ap50_agnostic`` (:class:`DetectionMeter`); reconstruction gives ``rmse`` and its variants
    (:class:`ReconstructionMeter`) and, when the data has boxes and instances, the class-agnostic
    ``det_iou50`` / ``det_any50`` of its keypoints. A metric whose ground truth the data lacks
    (:func:`unmeasured`) is absent from :meth:`compute`, never reported as 0.

    Args:
        task: ``"classify"`` or ``"reconstruct"``.
        num_classes: C of the classifier.
        annotations: the ground truth the data carries, a subset of ``{"boxes", "labels"}``.
        signed: signed (Gabor) images for the RMSE.

    Example:
        >>> m = SceneMeter("classify", annotations={"labels"})
        >>> m.update(torch.zeros(1, 2, 3), torch.tensor([[3, 5]]), torch.zeros(1, 1, 4),
        ...          torch.tensor([[3]]), torch.tensor([1]))
        >>> {k: v for k, v in m.compute().items() if not k.startswith("n_")}
        {'classif': 1.0}
    """

    def __init__(
        self,
        task: str,
        num_classes: int = 10,
        annotations: frozenset[str] | set[str] = frozenset({"boxes", "labels"}),
        signed: bool = False,
    ) -> None:
        self.task = task
        self.annotations = frozenset(annotations)
        self.detection = DetectionMeter(num_classes)
        self.reconstruction = ReconstructionMeter(signed)
        self.num_classes = num_classes
        self._hits = torch.zeros(num_classes, dtype=torch.int64)  # per-class multiset overlap
        self._instances = torch.zeros(num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(
        self,
        keypoints: Tensor,
        det_labels: Tensor | None,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_count: Tensor,
        det_count: Tensor | None = None,
        reconstruction: Tensor | None = None,
        images: Tensor | None = None,
    ) -> None:
        """Add one batch.

        Args:
            keypoints: ``(B, K, 3)`` detections.
            det_labels: ``(B, K)`` predicted classes (classification), or ``None``.
            gt_boxes, gt_labels, gt_count: the padded ground truth (``(B, N, 4)``, ``(B, N)``,
                ``(B,)``); boxes are not read when the data has none.
            det_count: optional ``(B,)`` detections that count per image (Table 3).
            reconstruction, images: ``(B, C, H, W)`` for a reconstruction task.
        """
        if self.task != "classify":  # detection alone: every instance and keypoint is one class
            self.reconstruction.update(reconstruction, images)
            det_labels, gt_labels = keypoints[..., 0].long() * 0, gt_labels.clamp(max=0)
        self.detection.update(keypoints, det_labels, gt_boxes, gt_labels, gt_count, det_count)
        if self.task == "classify" and "labels" in self.annotations:
            C = self.num_classes
            h_det = label_histogram(det_labels, C, valid_mask(det_labels, det_count))  # (B, C)
            h_gt = label_histogram(gt_labels, C, valid_mask(gt_labels, gt_count))
            self._hits += torch.minimum(h_det, h_gt).sum(0).cpu()
            self._instances += h_gt.sum(0).cpu()

    def sums(self) -> Tensor:
        """Everything accumulated, as one float64 vector: the meters of disjoint batches add up
        to the meter of all of them (how sharded validation reduces over processes)."""
        parts = [self.detection.sums(), self.reconstruction.sums(), self._hits, self._instances]
        return torch.cat([p.double() for p in parts])

    def load_sums(self, sums: Tensor) -> None:
        """Replace what is accumulated by ``sums`` (see :meth:`sums`)."""
        sizes = [len(self.detection.sums()), len(self.reconstruction.sums())]
        d, r, hits, instances = sums.cpu().split([*sizes, self.num_classes, self.num_classes])
        self.detection.load_sums(d)
        self.reconstruction.load_sums(r)
        self._hits, self._instances = hits.round().long(), instances.round().long()

    def compute(self, class_names: Sequence[str] = ()) -> dict[str, float]:
        """The measurable metrics so far, and the counts.

        Args:
            class_names: when given (index ``i`` names class ``i``), also ``classif/<name>``:
                the multiset recall of each class that has ground-truth instances.
        """
        found = self.detection.compute()
        skipped = unmeasured(self.task, self.annotations)
        if self.task != "classify":
            located = found["n_instances"] and "boxes" in self.annotations
            extra = {k: found[k] for k in ("det_iou50", "det_any50")} if located else {}
            return {**self.reconstruction.compute(), **extra}
        out = {k: v for k, v in found.items() if k not in skipped and k not in _COUNTS}
        for i, name in enumerate(class_names):
            if "labels" in self.annotations and int(self._instances[i]):
                out[f"classif/{name}"] = int(self._hits[i]) / int(self._instances[i])
        return {**out, **{k: found[k] for k in _COUNTS}}


# --------------------------------------------------------------------------------------------
# The official code's metric, for comparison only


def official_eval_accuracy(
    det_boxes: Tensor,
    gt_boxes: Tensor,
    det_labels: Tensor,
    gt_labels: Tensor,
    num_classes: int = 10,
    background_class: bool = False,
) -> dict[str, float]:
    """Re-implementation of [C]'s ``eval_accuracy`` (SPEC §5.5), quirks included.

    Do not report these numbers as ours: ``acc_class`` drops class 0, counts assume
    #GT = #det = B·K_det when ``background_class`` is False, greedy IoU matching uses ``>=``
    while ``acc_det`` uses ``>``. One difference: where [C] would divide by zero in ``f1_center``
    (its guard tests ``precision_iou``), this returns NaN.

    Args:
        det_boxes: ``(B, K, 4)`` detections (or ``(B, K, 3)`` keypoints).
        gt_boxes: ``(B, L, 4)`` ground truth (no padding: [C] has none).
        det_labels: ``(B, K)`` predicted labels in ``0..num_classes-1``.
        gt_labels: ``(B, L)`` ground-truth labels.
        num_classes: C.
        background_class: treat label 0 as background (Pascal setting of [C]).

    Returns:
        dict with ``acc_det``, ``acc_class``, ``tp_iou``, ``tp_center``, ``num_objects``,
        ``num_detections``, ``precision_iou``, ``recall_iou``, ``f1_iou``,
        ``precision_center``, ``recall_center``, ``f1_center``.
    """
    _check_batch(det_boxes, det_labels, gt_boxes, gt_labels)
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
    acc_det = float((iou.amax(dim=2) > min_iou).sum()) / num_objects if K else 0.0

    same = gt_labels.unsqueeze(2) == det_labels.unsqueeze(1)  # (B, L, K)
    iou_aware = iou * same
    # Chebyshev centre distance normalised by the ground-truth half size; <= 1: centre inside.
    delta = (det[:, None, :, :2] - gt[:, :, None, :2]).abs()  # (B, L, K, 2)
    dist = (delta / (gt[:, :, None, 2:] / 2)).amax(dim=-1)
    dist = torch.where(torch.isfinite(dist), dist, torch.full_like(dist, 2.0))
    bad = ~same
    if background_class:
        bad = bad | (gt_labels == 0).unsqueeze(2)
    dist = dist.masked_fill(bad, 2.0)

    # [C] matches IoU with ">= 0.5" (not the ">" of acc_det) and centres with dist <= 1.
    tp_iou = int(_greedy_inclusive(iou_aware, min_iou).sum())
    tp_center = int(_greedy_inclusive(-dist, -1.0).sum())

    precision_iou = tp_iou / num_detections if num_detections else 0.0
    precision_center = tp_center / num_detections if num_detections else 0.0
    recall_iou = tp_iou / num_objects if num_objects else math.nan
    recall_center = tp_center / num_objects if num_objects else math.nan

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if (p + r) > 0 else math.nan

    f1_iou = 0.0 if (recall_iou == 0 and precision_iou == 0) else f1(precision_iou, recall_iou)
    # [C]'s guard tests precision_iou here (its bug); reproduced.
    f1_center = (
        0.0 if (recall_center == 0 and precision_iou == 0) else f1(precision_center, recall_center)
    )

    dt_h = label_histogram(det_labels, num_classes)[:, 1:]
    gt_h = label_histogram(gt_labels, num_classes)[:, 1:]
    acc_class = 1.0 - float((gt_h - dt_h).clamp(min=0).sum()) / num_objects

    return {
        "acc_det": acc_det,
        "acc_class": acc_class,
        "tp_iou": tp_iou,
        "tp_center": tp_center,
        "num_objects": num_objects,
        "num_detections": num_detections,
        "precision_iou": precision_iou,
        "recall_iou": recall_iou,
        "f1_iou": f1_iou,
        "precision_center": precision_center,
        "recall_center": recall_center,
        "f1_center": f1_center,
    }


def _greedy_inclusive(score: Tensor, threshold: float) -> Tensor:
    """[C]'s greedy loop: per ground-truth row in order, the best still-unused detection matches
    if its score is ``>= threshold``. ``score``: ``(B, L, K)``. Returns ``(B, L)`` bool."""
    B, L, K = score.shape
    hit_all = torch.zeros(B, L, dtype=torch.bool, device=score.device)
    if K == 0:
        return hit_all
    used = torch.zeros(B, K, dtype=torch.bool, device=score.device)
    cols = torch.arange(K, device=score.device)
    for n in range(L):
        s = score[:, n].masked_fill(used, float("-inf"))
        best, idx = s.max(dim=-1)
        hit = best >= threshold
        hit_all[:, n] = hit
        used = used | ((cols.unsqueeze(0) == idx.unsqueeze(1)) & hit.unsqueeze(1))
    return hit_all
