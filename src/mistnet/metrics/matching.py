"""Matching detections to ground truth (docs/design.md), and the validity of padded entries.

Conventions (docs/design.md): boxes are centre/size ``(cx, cy, w, h)`` in image pixels, last dim 4;
a keypoint ``(x, y, side)`` (last dim 3) is the square box ``(x, y, side, side)``. Labels are int64
class ids ``0..num_classes-1``; variable-count batches pad labels with ``-1`` and may carry
``count`` ``(B,)``: an entry is valid when its label is ``>= 0`` *and* its index is below the count
(when a count is given). Matching is greedy over ground truth in index order: each ground-truth
instance takes the eligible, still unmatched detection with the highest IoU; it is a match when that
IoU is strictly greater than the threshold, and the detection is then removed.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

from mistnet.ops._checks import (
    check_flag,
    check_memory,
    check_tensor,
    require_dense,
    require_real,
    shown,
)
from mistnet.ops.boxes import box_iou


def require_tensor(x: object, name: str, expected: str) -> Tensor:
    """``x`` if it is a dense tensor; else TypeError (a list) or ValueError (meta, sparse) naming
    ``name`` and the ``expected`` shape. Metadata only."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor of shape {expected}, got {type(x).__name__}"
        )
    require_dense(x, name)
    return x


def require_mask(x: object, name: str, shape: tuple[int, ...]) -> Tensor:
    """``x`` if it is a dense bool tensor of ``shape``: an integer mask was read as counts (2 counted
    a label twice), a float one as true or failed in torch's ``bitwise_and``. Metadata only.

    Raises:
        TypeError: no tensor, or ``"<name>: expected a bool mask, got <dtype>"``.
        ValueError: meta or sparse, or another shape.
    """
    require_tensor(x, name, str(shape))
    if x.dtype != torch.bool:
        raise TypeError(f"{name}: expected a bool mask, got {x.dtype} (compare it: {name} > 0)")
    if x.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(x.shape)}")
    return x


def require_float(x: object, name: str, expected: str = "(B, C, H, W)") -> Tensor:
    """``x`` if it is a floating tensor (:func:`require_tensor`, then ``check_tensor``'s dtype
    check at ``x``'s own rank): integer images gave torch's "could not infer output dtype"."""
    require_tensor(x, name, expected)
    return check_tensor(x, name, x.ndim, expected)


def check_sums(sums: object, size: int, name: str = "sums") -> list[float]:
    """``sums`` as ``size`` floats, if it is a 1-D tensor of ``size`` finite values >= 0, as a
    meter's ``sums()`` gives (a meter's ``load_sums``); else TypeError (no tensor) or ValueError
    naming ``name`` (another length was truncated or read as other sums)."""
    require_tensor(sums, name, f"({size},)")
    if sums.shape != (size,):
        raise ValueError(
            f"{name}: expected shape ({size},) as sums() gives, got {tuple(sums.shape)}"
        )
    values = sums.detach().double().cpu().tolist()
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"{name}: expected finite sums and counts >= 0, got {values}")
    return values


def valid_mask(labels: Tensor, count: Tensor | None = None) -> Tensor:
    """Which entries of a padded label tensor are real.

    Args:
        labels: ``(B, N)`` int labels, ``-1`` for padding.
        count: optional ``(B,)`` number of valid leading entries per row.

    Returns:
        ``(B, N)`` bool: ``labels >= 0`` and (if ``count`` is given) ``index < count``.

    Raises:
        TypeError: ``labels`` is no tensor, or ``count`` holds no numbers (``"1"``, ``[None]``).
        ValueError: ``labels`` of no real numbers (bool: every entry was valid), a shape that is
            not ``(B, N)`` / ``(B,)``, or a count that is no whole number
            in ``[0, N]`` or holds no values (meta, sparse: ``"count: a tensor on the meta
            device holds no values to read; give a dense one"``).
    """
    require_real(require_tensor(labels, "labels", "(B, N)"), "labels")  # bool: all valid
    if labels.ndim != 2:
        raise ValueError(f"labels: expected shape (B, N), got {tuple(labels.shape)}")
    valid = labels >= 0
    if count is not None:
        check_counts(count, labels.shape[1], "count", labels.shape[0])  # 1.5 was taken as 2
        count = torch.as_tensor(count, device=labels.device)
        idx = torch.arange(labels.shape[1], device=labels.device)
        valid = valid & (idx.unsqueeze(0) < count.unsqueeze(1))
    return valid


def label_histogram(labels: Tensor, num_classes: int, valid: Tensor | None = None) -> Tensor:
    """Per-row class counts.

    Args:
        labels: ``(B, N)`` labels, whole class indices ``>= 0`` or ``-1`` (padding); entries that
            are not ``valid`` (default: ``labels < 0``) are ignored.
        num_classes: C, an integer >= 1.
        valid: optional ``(B, N)`` bool mask.

    Returns:
        ``(B, C)`` int64 counts.

    Raises:
        TypeError: a ``valid`` that is no bool tensor (``"valid: expected a bool mask, got
            torch.int64 ..."``).
        ValueError: a fractional or infinite label, one below -1, one ``>= num_classes``, a
            ``valid`` of another shape, a ``num_classes`` that is no integer >= 1, or one whose
            ``(B, N, C)`` one-hot counts this machine has not the memory for.

    Example:
        >>> label_histogram(torch.tensor([[0, 0, 3, -1]]), 4)
        tensor([[2, 0, 0, 1]])
    """
    return _histogram(labels, num_classes, valid, "labels", "valid")


def _histogram(
    labels: Tensor, num_classes: int, valid: Tensor | None, name: str, valid_name: str
) -> Tensor:
    """:func:`label_histogram`, naming the labels ``name`` and the mask ``valid_name``."""
    C = check_num_classes(num_classes)
    require_tensor(labels, name, "(B, N)")
    if labels.ndim != 2:
        raise ValueError(f"{name}: expected shape (B, N), got {tuple(labels.shape)}")
    B, N = labels.shape
    what = f"num_classes={C}: the one-hot counts of {name} {(B, N)}"  # one_hot and its product
    check_memory((2, B, N, C), labels.new_empty(0, dtype=torch.long), what, "lower num_classes")
    check_labels(labels, name)
    if valid is None:
        valid = labels >= 0
    else:
        require_mask(valid, valid_name, tuple(labels.shape))
    bad = valid & (labels >= num_classes)
    if bool(bad.any()):
        raise ValueError(f"{name}: values must be < num_classes={num_classes}")
    onehot = torch.nn.functional.one_hot(labels.clamp(min=0).long(), C)  # (B, N, C)
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
        num_classes: C (all classes count, class 0 included), an integer >= 1.
        det_valid: optional ``(B, K)`` bool mask.
        gt_valid: optional ``(B, N)`` bool mask.

    Returns:
        ``(B,)`` int64.

    Raises:
        ValueError: the label tensors' batch sizes differ (the ground truth was broadcast).
    """
    h_det = _histogram(det_labels, num_classes, det_valid, "det_labels", "det_valid")
    h_gt = _histogram(gt_labels, num_classes, gt_valid, "gt_labels", "gt_valid")
    if det_labels.shape[0] != gt_labels.shape[0]:
        raise ValueError(
            "det_labels and gt_labels: batch sizes differ "
            f"({det_labels.shape[0]} vs {gt_labels.shape[0]})"
        )
    return torch.minimum(h_det, h_gt).sum(dim=1)


# --------------------------------------------------------------------------------------------
# Matching


def greedy_assign(
    iou: Tensor,
    eligible: Tensor | None = None,
    threshold: float = 0.5,
    *,
    inclusive: bool = False,
) -> Tensor:
    """Greedy one-to-one assignment of detections to ground truth (docs/design.md, Metrics).

    Ground-truth rows are visited in index order. Each takes the eligible, still unmatched
    detection with the highest IoU (ties: lowest detection index); it is a match when that IoU is
    strictly greater than ``threshold`` (at least ``threshold`` when ``inclusive``), and the
    detection is then no longer available. NaN IoUs are never eligible. Leading dimensions are
    independent problems (batched). Any score where higher is better works in place of the IoU
    (:func:`match_points` passes negated distances); integer scores are taken as float64.

    Args:
        iou: ``(..., N, M)`` IoU between N ground-truth and M detected boxes.
        eligible: optional ``(..., N, M)`` bool; False pairs can never match (other class,
            padding).
        threshold: a pair matches only if its IoU is ``> threshold`` (a finite number).
        inclusive: match at ``>= threshold`` instead (the official code's rule, kept for
            :func:`~mistnet.metrics.official_eval_accuracy`).

    Returns:
        ``(..., N)`` int64: the matched detection index per ground-truth row, ``-1`` if none.

    Raises:
        TypeError: ``iou`` or ``eligible`` is no tensor, or ``eligible`` is no bool tensor
            (``"eligible: expected a bool mask, got torch.float32 ..."``).
        ValueError: ``iou`` of rank < 2, on the meta device or of no real numbers (bool,
            complex: ``"iou: expected real numbers (a floating or integer tensor), got ..."``),
            an ``eligible`` of another shape, a ``threshold`` that is no finite number, or an
            ``inclusive`` that is no bool.

    Example:
        >>> greedy_assign(torch.tensor([[0.9, 0.8], [0.95, 0.1]]))
        tensor([ 0, -1])
    """
    if require_tensor(iou, "iou", "(..., N, M)").ndim < 2:
        raise ValueError(f"iou: expected shape (..., N, M), got {tuple(iou.shape)}")
    if not require_real(iou, "iou").is_floating_point():  # True was an IoU of 1
        iou = iou.double()  # the -inf of a masked pair: "cannot be converted to type int64"
    threshold = check_number(threshold, "threshold")  # NaN matched nothing
    inclusive = check_flag(inclusive, "inclusive")  # "no" was taken as true
    *lead, N, M = iou.shape
    ok = ~torch.isnan(iou)
    if eligible is not None:
        ok = ok & require_mask(eligible, "eligible", tuple(iou.shape))
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
        hit = best >= threshold if inclusive else best > threshold
        assign[:, n] = torch.where(hit, idx, torch.full_like(idx, -1))
        used = used | ((cols.unsqueeze(0) == idx.unsqueeze(1)) & hit.unsqueeze(1))
    return assign.reshape(*lead, N)


def greedy_match(
    iou: Tensor,
    eligible: Tensor | None = None,
    threshold: float = 0.5,
    *,
    inclusive: bool = False,
) -> Tensor:
    """Which ground-truth instances are matched by :func:`greedy_assign`.

    Args:
        iou: ``(..., N_gt, N_det)`` IoU.
        eligible: optional ``(..., N_gt, N_det)`` bool mask of pairs allowed to match.
        threshold: IoU threshold, strict unless ``inclusive``.
        inclusive: match at ``>= threshold``.

    Returns:
        ``(..., N_gt)`` bool.

    Raises:
        TypeError, ValueError: as :func:`greedy_assign`.
    """
    return greedy_assign(iou, eligible, threshold, inclusive=inclusive) >= 0


def check_batch(
    det_boxes: Tensor,
    det_labels: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    det_valid: Tensor | None = None,
    gt_valid: Tensor | None = None,
) -> None:
    """Raise ValueError unless the four tensors form one padded detection batch: finite boxes of
    real numbers (floating or integer; bool ones were scored as boxes of 0 and 1 px) whose
    instances have sides >= 0, labels that are whole class indices >= 0 or -1 (padding).

    With the ``(B, K)`` / ``(B, N)`` masks of the valid rows (:func:`valid_mask`), only those
    rows' values are checked: padding may hold anything. Without, every box must be finite and
    every box of a label other than -1 have sides >= 0."""
    _check_batch_shapes(det_boxes, det_labels, gt_boxes, gt_labels)
    check_labels(det_labels, "det_labels")
    check_labels(gt_labels, "gt_labels")
    for name, boxes, labels, valid in (
        ("det_boxes", det_boxes, det_labels, det_valid),
        ("gt_boxes", gt_boxes, gt_labels, gt_valid),
    ):
        _require_finite(**{name: boxes if valid is None else boxes[valid]})
        sides = boxes[..., 2:][labels != -1 if valid is None else valid]
        if sides.numel() and float(sides.min()) < 0:
            raise ValueError(f"{name}: sides must be >= 0, got {float(sides.min()):g}")


def _check_batch_shapes(
    det_boxes: Tensor, det_labels: Tensor, gt_boxes: Tensor, gt_labels: Tensor
) -> None:
    """:func:`check_batch`'s metadata part: tensors of real boxes, shapes that agree."""
    require_real(require_tensor(det_boxes, "det_boxes", "(B, K, 3|4)"), "det_boxes")
    require_real(require_tensor(gt_boxes, "gt_boxes", "(B, N, 3|4)"), "gt_boxes")
    require_tensor(det_labels, "det_labels", "(B, K)")
    require_tensor(gt_labels, "gt_labels", "(B, N)")
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


def check_labels(labels: Tensor, name: str) -> None:
    """Raise ValueError unless ``labels`` are whole class indices >= 0, or -1 (padding): not
    NaN, not infinite (``int(inf)`` raised a raw OverflowError)."""
    if labels.dtype == torch.bool:  # True and False were read as classes 1 and 0
        raise ValueError(f"{name}: class indices are numbers, got a bool tensor")
    if labels.is_complex():  # torch's raw NotImplementedError ("min_all" for ComplexFloat)
        raise ValueError(f"{name}: class indices are real numbers, got {labels.dtype}")
    # x - round(x) is 0 for whole numbers only: NaN for NaN and for both infinities
    if labels.is_floating_point() and not bool((labels - labels.round() == 0).all()):
        raise ValueError(f"{name}: class indices are whole numbers, got {labels.tolist()}")
    if labels.numel() and int(labels.min()) < -1:  # -1 pads; below, no class
        raise ValueError(f"{name}: class indices >= 0 (or -1, padding), got {int(labels.min())}")


def check_counts(count: Tensor | None, most: int, name: str, batch: int | None = None) -> None:
    """Raise ValueError unless ``count`` (None, or ``(B,)``, of ``(batch,)`` when given) holds
    whole numbers in [0, most]: not a bool or complex tensor (torch failed on rounding one), not
    one with no values; TypeError for what holds no numbers (``"1"``, ``["1"]``, ``[None]``)."""
    if count is None:
        return
    if isinstance(count, Tensor):
        require_dense(count, name)
    try:  # "1": "new(): invalid data type 'str'"; [None]: "Could not infer dtype of NoneType"
        if not isinstance(count, Tensor) and np.asarray(count).dtype.kind in "US":
            raise TypeError  # ["1"]: torch's ValueError "too many dimensions 'str'"
        count = torch.as_tensor(count)
    except (TypeError, RuntimeError, ValueError) as e:  # ValueError: ragged, beyond int64
        error = ValueError if isinstance(e, ValueError) else TypeError
        raise error(f"{name}: whole numbers in [0, {most}] expected, got {shown(count)}") from None
    if batch is not None and count.shape != (batch,):  # valid_mask blamed "count"
        raise ValueError(f"{name}: expected shape ({batch},), got {tuple(count.shape)}")
    if count.dtype == torch.bool or count.is_complex():
        raise ValueError(
            f"{name}: whole numbers in [0, {most}] expected, got a {count.dtype} tensor"
        )
    if count.numel() and (
        not torch.isfinite(count).all()
        or bool((count != count.round()).any())
        or int(count.min()) < 0
        or int(count.max()) > most
    ):
        raise ValueError(f"{name}: whole numbers in [0, {most}] expected, got {count.tolist()}")


def check_num_classes(num_classes: object, rows: int = 1) -> int:
    """``num_classes`` as an int if it is an integer >= 1 (numpy's too; not a bool) whose
    ``(rows, C)`` int64 class counts fit in memory (:func:`~mistnet.ops._checks.check_memory`:
    10**12 classes reached torch's allocator); else ValueError naming it."""
    integral = isinstance(num_classes, numbers.Integral) and not isinstance(num_classes, bool)
    if not integral or num_classes < 1:
        raise ValueError(f"num_classes: expected an integer >= 1, got {shown(num_classes)}")
    C = int(num_classes)
    if C.bit_length() > 63:  # no tensor size: 10**400 gave "int too big to convert"
        raise ValueError(f"num_classes: expected an integer >= 1 and < 2**63, got {shown(C)}")
    what = f"num_classes={C}: the class counts {(rows, C)}"
    check_memory((rows, C), torch.empty(0, dtype=torch.long), what, "lower num_classes")
    return C


def check_number(
    value: object,
    name: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    below_high: bool = False,
) -> float:
    """``value`` as a float, if it is a finite real number (not a bool) in ``[low, high]``
    (``[low, high)`` when ``below_high``); else ValueError naming ``name`` and the value (an
    integer beyond floats by its size, as :func:`mistnet.ops._checks.check_number` does)."""
    x = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            x = float(value)
        except OverflowError:  # 10**400: math.isfinite raised "int too large to convert"
            x = math.inf
    if not (math.isfinite(x) and low <= x <= high and not (below_high and x == high)):
        span = ""
        if (low, high) != (-math.inf, math.inf):
            closing = ")" if below_high or high == math.inf else "]"
            span = f" in [{low:g}, {high:g}{closing}"
        raise ValueError(f"{name}: expected a finite number{span}, got {shown(value)}")
    return x


def check_detections(
    det_boxes: Tensor,
    det_labels: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_count: Tensor | None,
    det_count: Tensor | None,
) -> None:
    """:func:`check_batch` of the valid rows (padding, by label or count, may hold anything),
    and :func:`check_counts` of the two optional ``(B,)`` counts, naming them."""
    _check_batch_shapes(det_boxes, det_labels, gt_boxes, gt_labels)
    check_labels(det_labels, "det_labels")
    check_labels(gt_labels, "gt_labels")
    B = det_boxes.shape[0]
    check_counts(gt_count, gt_boxes.shape[1], "gt_count", B)
    check_counts(det_count, det_boxes.shape[1], "det_count", B)
    det_valid, gt_valid = valid_mask(det_labels, det_count), valid_mask(gt_labels, gt_count)
    check_batch(det_boxes, det_labels, gt_boxes, gt_labels, det_valid, gt_valid)


def pair_iou(
    det_boxes: Tensor,
    gt_boxes: Tensor,
    det_valid: Tensor | None = None,
    gt_valid: Tensor | None = None,
) -> Tensor:
    """``(B, N_gt, K)`` IoU, computed in float64 so thresholds are not blurred by rounding.

    Rows not ``det_valid`` / ``gt_valid`` (padding, which may hold NaN) are read as empty boxes
    at 0: IoU 0."""
    det, gt = det_boxes.double(), gt_boxes.double()
    if det_valid is not None:
        det = torch.where(det_valid[..., None], det, 0.0)
    if gt_valid is not None:
        gt = torch.where(gt_valid[..., None], gt, 0.0)
    return box_iou(gt, det)


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
        threshold: strict IoU threshold in [0, 1).
        class_aware: only same-label pairs are eligible.

    Returns:
        ``(B, N)`` bool: ground-truth instance matched (always False for padding).
    """
    check_detections(det_boxes, det_labels, gt_boxes, gt_labels, gt_count, det_count)
    threshold = check_number(threshold, "threshold", 0, 1, below_high=True)
    class_aware = check_flag(class_aware, "class_aware")
    gt_valid = valid_mask(gt_labels, gt_count)
    det_valid = valid_mask(det_labels, det_count)
    eligible = gt_valid.unsqueeze(2) & det_valid.unsqueeze(1)  # (B, N, K)
    if class_aware:
        eligible = eligible & (gt_labels.unsqueeze(2) == det_labels.unsqueeze(1))
    return greedy_match(pair_iou(det_boxes, gt_boxes, det_valid, gt_valid), eligible, threshold)


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
    check_detections(det_boxes, det_labels, gt_boxes, gt_labels, gt_count, det_count)
    threshold = check_number(threshold, "threshold", 0, 1, below_high=True)
    gt_valid = valid_mask(gt_labels, gt_count)
    det_valid = valid_mask(det_labels, det_count)
    iou = pair_iou(det_boxes, gt_boxes, det_valid, gt_valid)
    return ((iou > threshold).any(dim=2)) & gt_valid


def _require_finite(**named: Tensor) -> None:
    """Refuse boxes or points holding NaN or infinity, naming them: else they were scored as
    misses, plausible zeros."""
    for name, boxes in named.items():
        if not torch.isfinite(boxes).all():
            raise ValueError(f"{name}: holds NaN or infinite values")


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
        radius: largest matching distance in pixels, a finite number >= 0.
        gt_count: optional ``(B,)`` valid ground-truth count (the first ``gt_count[b]``).
        det_count: optional ``(B,)`` valid detection count.

    Returns:
        ``(B, N)`` bool: ground-truth point matched (False for padding).

    Raises:
        TypeError: a point set that is no tensor.
        ValueError: shapes other than these, no real numbers, positions holding NaN or
            infinity (as :func:`match_detections`), a bad ``radius`` or count.

    Example:
        >>> det = torch.tensor([[[10.0, 10.0, 20.0], [13.0, 10.0, 20.0]]])
        >>> gt = torch.tensor([[[11.0, 10.0, 20.0, 20.0], [16.0, 10.0, 20.0, 20.0]]])
        >>> match_points(det, gt, 3.0)
        tensor([[True, True]])
    """
    require_real(require_tensor(det_points, "det_points", "(B, K, >=2)"), "det_points")
    require_real(require_tensor(gt_points, "gt_points", "(B, N, >=2)"), "gt_points")
    if det_points.ndim != 3 or det_points.shape[-1] < 2:
        raise ValueError(f"det_points: expected shape (B, K, >=2), got {tuple(det_points.shape)}")
    if gt_points.ndim != 3 or gt_points.shape[-1] < 2:
        raise ValueError(f"gt_points: expected shape (B, N, >=2), got {tuple(gt_points.shape)}")
    if det_points.shape[0] != gt_points.shape[0]:
        raise ValueError(
            f"det_points and gt_points: batch sizes differ "
            f"({det_points.shape[0]} vs {gt_points.shape[0]})"
        )
    _require_finite(det_points=det_points[..., :2], gt_points=gt_points[..., :2])
    B, N, _ = gt_points.shape
    K = det_points.shape[1]
    radius = check_number(radius, "radius", 0)  # NaN or -1 matched nothing
    check_counts(gt_count, N, "gt_count")
    check_counts(det_count, K, "det_count")
    ones = gt_points.new_zeros(B, N, dtype=torch.long)
    gt_valid = valid_mask(ones, gt_count)
    det_valid = valid_mask(det_points.new_zeros(B, K, dtype=torch.long), det_count)
    dist = torch.cdist(gt_points[..., :2].double(), det_points[..., :2].double())  # (B, N, K)
    eligible = gt_valid.unsqueeze(2) & det_valid.unsqueeze(1)
    # -d > -(r + tol)  <=>  d <= r, up to float rounding of integer-pixel distances
    return greedy_match(-dist, eligible, -(radius + 1e-9)) & gt_valid
