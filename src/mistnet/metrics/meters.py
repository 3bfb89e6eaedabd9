"""Meters: detection and classification rates, AP at IoU thresholds, RMSE (docs/design.md, Metrics).

Metric definitions (docs/design.md, Metrics), with the conventions of
:mod:`mistnet.metrics.matching`:

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

Every meter has ``update`` (one batch), ``compute`` (the metrics so far) and ``sums`` /
``load_sums``: meters of disjoint batches add up, which is how sharded validation reduces.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from mistnet.metrics.matching import (
    check_detections,
    check_num_classes,
    check_number,
    check_sums,
    greedy_match,
    multiset_overlap,
    pair_iou,
    require_float,
    valid_mask,
)
from mistnet.ops._checks import check_flag, check_tensor, require_dense, require_real

#: IoU thresholds of the paper's Table 4; ``0.0`` means "classification only, no localisation".
SVHN_THRESHOLDS: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)


def _checked_sums(sums: object, keys: Sequence[str], fractional: Sequence[str] = ()) -> list[float]:
    """``sums`` as :func:`~mistnet.metrics.matching.check_sums` gives them (``len(keys)``
    entries named ``keys``), once they are no bool tensor and every entry of ``keys`` but
    ``fractional`` is a whole number: 0.5 images gave metrics of 1.0 over no image.

    Raises:
        ValueError: naming ``sums`` and the count that is not whole.
    """
    values = check_sums(sums, len(keys))
    require_real(sums, "sums")  # True was read as a count of 1
    for key, value in zip(keys, values, strict=True):
        if key not in fractional and value != int(value):  # finite: check_sums
            raise ValueError(f"sums: the count {key} must be a whole number, got {value}")
    return values


def _per_image_fraction(matches: Tensor, k_image: Tensor, n_gt: Tensor) -> tuple[Tensor, Tensor]:
    """Return (fraction (B,), included (B,) bool). Images with no detection and no GT are skipped;
    images with GT but no detection score 0."""
    frac = matches.double() / k_image.clamp(min=1).double()
    included = (k_image > 0) | (n_gt > 0)
    return frac, included


class DetectionMeter:
    """Accumulates the detection and classification metrics over batches.

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
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.iou_threshold = check_number(iou_threshold, "iou_threshold", 0, 1, below_high=True)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._s: dict[str, float] = dict.fromkeys(self._SUMS, 0.0)

    def sums(self) -> Tensor:
        """What is accumulated, as float64 ``(10,)``: meters of disjoint batches add up."""
        return torch.tensor([self._s[k] for k in self._SUMS], dtype=torch.float64)

    def load_sums(self, sums: Tensor) -> None:
        """Replace what is accumulated by ``sums`` (e.g. the sum of several meters' :meth:`sums`).

        Raises:
            TypeError, ValueError: ``sums`` no tensor of ``sums()``'s length, finite and >= 0,
                of real numbers (no bool) whose counts (all but the AP sums) are whole numbers.
        """
        fractional = ("ap_aware_sum", "ap_agnostic_sum")
        self._s = dict(zip(self._SUMS, _checked_sums(sums, self._SUMS, fractional), strict=True))

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
        check_detections(det_boxes, det_labels, gt_boxes, gt_labels, gt_count, det_count)
        t = self.iou_threshold
        gt_valid = valid_mask(gt_labels, gt_count)  # (B, N)
        det_valid = valid_mask(det_labels, det_count)  # (B, K)
        iou = pair_iou(det_boxes, gt_boxes, det_valid, gt_valid)  # (B, N, K)
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


def _ap_key(t: float) -> str:
    return f"ap{round(t * 100):02d}"


def check_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
    """``thresholds`` as a tuple of floats, if they are a non-empty sequence of finite numbers in
    [0, 1] whose keys ``ap`` + round(100 t) differ; else ValueError naming ``thresholds``."""
    if isinstance(thresholds, Tensor):
        require_dense(thresholds, "thresholds")  # meta: "Cannot copy out of meta tensor"
        thresholds = thresholds.tolist()
    if isinstance(thresholds, str | bytes) or not isinstance(thresholds, Iterable):
        raise ValueError(f"thresholds: expected a sequence of numbers, got {thresholds!r}")
    out = tuple(check_number(t, "thresholds", 0, 1) for t in thresholds)
    if not out:
        raise ValueError("thresholds: expected at least one threshold, got none")
    keys: dict[str, float] = {}
    for t in out:
        if _ap_key(t) in keys:  # the second one's AP would overwrite the first's
            raise ValueError(
                f"thresholds: {keys[_ap_key(t)]:g} and {t:g} are both reported as "
                f"{_ap_key(t)}; give thresholds that differ in percent"
            )
        keys[_ap_key(t)] = t
    return out


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
    """Per-image matched fraction at several IoU thresholds (docs/design.md, Metrics).

    For ``t > 0``: class-aware greedy one-to-one matches with IoU > t, divided by the image's
    number of valid detections K_image. For ``t <= 0``: the label multiset overlap / K_image,
    ignoring boxes entirely ("pure classification, no localisation").

    Args:
        det_boxes: ``(B, K, 3)`` keypoints (squares) or ``(B, K, 4)`` boxes.
        det_labels: ``(B, K)`` predicted labels (``-1`` = padding).
        gt_boxes: ``(B, N, 4)`` ground-truth rectangles ``(cx, cy, w, h)``.
        gt_labels: ``(B, N)`` ground-truth labels (``-1`` = padding).
        thresholds: T thresholds, finite numbers in [0, 1] that differ in percent.
        num_classes: C, an integer >= 1.
        gt_count: optional ``(B,)``.
        det_count: optional ``(B,)``.

    Returns:
        ``(B, T)`` float64 fractions and ``(B,)`` bool ``included`` (False for images with
        neither detections nor ground truth, which are left out of means).
    """
    check_detections(det_boxes, det_labels, gt_boxes, gt_labels, gt_count, det_count)
    thresholds = check_thresholds(thresholds)
    check_num_classes(num_classes)
    gt_valid = valid_mask(gt_labels, gt_count)
    det_valid = valid_mask(det_labels, det_count)
    iou = pair_iou(det_boxes, gt_boxes, det_valid, gt_valid)
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
            m = greedy_match(iou, eligible, t).sum(1)
        cols.append(m)
    matches = torch.stack(cols, dim=1)  # (B, T)
    frac = matches.double() / k_img.clamp(min=1).double().unsqueeze(1)
    return frac, (k_img > 0) | (n_gt > 0)


class APMeter:
    """Accumulates :func:`ap_at_thresholds` over batches (Table 4).

    Args:
        thresholds: IoU thresholds (default: the paper's 0, .5, ..., .9): finite numbers in
            [0, 1] that differ in percent (each is reported as ``ap`` + round(100 t)).
        num_classes: C, an integer >= 1.

    ``compute()`` returns ``{"ap00": ..., "ap50": ..., ..., "n_images": ...}`` (keys are
    ``ap`` + the threshold in percent, two digits).
    """

    def __init__(self, thresholds: Sequence[float] = SVHN_THRESHOLDS, num_classes: int = 10):
        self.thresholds = check_thresholds(thresholds)
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._sum = torch.zeros(len(self.thresholds), dtype=torch.float64)
        self._n = 0

    def sums(self) -> Tensor:
        """What is accumulated, as float64 ``(T + 1,)``: meters of disjoint batches add up."""
        return torch.cat([self._sum, torch.tensor([self._n], dtype=torch.float64)])

    def load_sums(self, sums: Tensor) -> None:
        """Replace what is accumulated by ``sums`` (see :meth:`sums`; checked as
        :meth:`DetectionMeter.load_sums`)."""
        keys = [*(f"{_ap_key(t)}_sum" for t in self.thresholds), "n_images"]
        values = _checked_sums(sums, keys, keys[:-1])  # 2.5 images was read as 2
        self._sum = torch.tensor(values[:-1], dtype=torch.float64)
        self._n = int(values[-1])

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


def _sse_per_image(pred: Tensor, target: Tensor, signed: bool, clip: bool) -> tuple[Tensor, int]:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred: expected the shape of target {tuple(target.shape)}, got {tuple(pred.shape)}"
        )
    if pred.ndim < 2:
        raise ValueError(f"pred: expected shape (B, ...), got {tuple(pred.shape)}")
    if pred.numel() == 0:  # no image: IndexError; no pixel: NaN, or 0 / 0 in the meter
        raise ValueError(
            f"pred: expected at least one image with pixels, got shape {tuple(pred.shape)}"
        )
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
    """Root mean square reconstruction error (docs/design.md, Metrics).

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

    Raises:
        TypeError: ``pred`` or ``target`` is no tensor (a list).
        ValueError: shapes that differ, no image or no pixel, a tensor with no values (meta,
            sparse) or of no floats (integer pixels: scale them to [0, 1]), ``signed`` or
            ``clip`` not a bool. Values are not read: a NaN pixel gives a NaN error.

    Example:
        >>> rmse(torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 1], [1, 1]]]]))
        tensor(1., dtype=torch.float64)
    """
    # a list: 'list' object has no attribute 'shape'; meta: "not on the expected device meta!";
    # integer pixels: uint8 200 against 190 gave 10 (not 0.04), and 189 with clip
    require_float(pred, "pred", "(B, ...)")
    require_float(target, "target", "(B, ...)")
    sse, n = _sse_per_image(pred, target, check_flag(signed, "signed"), check_flag(clip, "clip"))
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
    ``rmse_clipped``, ``rmse_pooled``, ``n_images`` and two trivial baselines measured the same
    way, so that a reader sees at once whether the model beats them: ``rmse_zero`` (an all-zero
    reconstruction: black, or mid-grey for signed images) and ``rmse_image_mean`` (each image's
    own mean intensity per channel, a flat plane).
    """

    def __init__(self, signed: bool = False) -> None:
        self.signed = check_flag(signed, "signed")
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._rmse_sum = 0.0
        self._rmse_clip_sum = 0.0
        self._zero_sum = 0.0
        self._mean_sum = 0.0
        self._sse = 0.0
        self._n_pix = 0
        self._n_img = 0

    def sums(self) -> Tensor:
        """What is accumulated, as float64 ``(7,)``: meters of disjoint batches add up."""
        values = [
            self._rmse_sum,
            self._rmse_clip_sum,
            self._zero_sum,
            self._mean_sum,
            self._sse,
            self._n_pix,
            self._n_img,
        ]
        return torch.tensor(values, dtype=torch.float64)

    def load_sums(self, sums: Tensor) -> None:
        """Replace what is accumulated by ``sums`` (see :meth:`sums`; checked as
        :meth:`DetectionMeter.load_sums`)."""
        keys = ("rmse_sum", "rmse_clipped_sum", "rmse_zero_sum", "rmse_image_mean_sum", "sse")
        values = _checked_sums(sums, (*keys, "n_pixels", "n_images"), keys)
        self._rmse_sum, self._rmse_clip_sum, self._zero_sum, self._mean_sum, self._sse = values[:5]
        self._n_pix, self._n_img = int(values[5]), int(values[6])

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch: ``pred`` and ``target`` ``(B, C, H, W)``, floating tensors.

        Raises:
            TypeError, ValueError: as :meth:`batch_sums`; the meter is then unchanged.
        """
        self.load_sums(self.sums() + self.batch_sums(pred, target))

    @torch.no_grad()
    def batch_sums(self, pred: Tensor, target: Tensor) -> Tensor:
        """What :meth:`update` would add to :meth:`sums` for one batch, the meter unchanged: a
        caller that checks more (:class:`~mistnet.metrics.SceneMeter`) adds it once all passed.

        Raises:
            TypeError: ``pred`` or ``target`` is no tensor.
            ValueError: no ``(B, C, H, W)`` floating tensors of one shape (a ``(B, N)`` one made
                ``rmse_image_mean`` depend on the batching: each row was one image's "plane"),
                or errors that are not finite, naming ``target`` or ``pred`` where it holds NaN
                or infinity (read only once a sum is not finite: no extra GPU wait).
        """
        for name, x in (("pred", pred), ("target", target)):
            check_tensor(require_float(x, name), name, 4, "(B, C, H, W)")
        sse, n = _sse_per_image(pred, target, self.signed, clip=False)
        sse_c, _ = _sse_per_image(pred, target, self.signed, clip=True)
        sse_0, _ = _sse_per_image(torch.zeros_like(target), target, self.signed, clip=False)
        flat = target.mean(dim=(-2, -1), keepdim=True).expand_as(target)
        sse_m, _ = _sse_per_image(flat, target, self.signed, clip=False)
        per_image = [(x / n).sqrt().sum() for x in (sse, sse_c, sse_0, sse_m)]
        B = sse.shape[0]
        values = [float(v) for v in (*per_image, sse.sum())]
        if not all(map(math.isfinite, values)):  # load_sums blamed "sums", never passed
            for name, x in (("target", target), ("pred", pred)):
                if not bool(x.isfinite().all()):
                    raise ValueError(f"{name} holds NaN or infinite values; no RMSE of them")
            raise ValueError("pred and target: their squared errors overflow (values too large)")
        return torch.tensor([*values, n * B, B], dtype=torch.float64)

    def compute(self) -> dict[str, float]:
        """Metrics so far (NaN before any image, or a pooled RMSE of no pixel)."""
        if self._n_img == 0:
            nan = math.nan
            names = ("rmse", "rmse_clipped", "rmse_pooled", "rmse_zero", "rmse_image_mean")
            return {**dict.fromkeys(names, nan), "n_images": 0}
        return {
            "rmse": self._rmse_sum / self._n_img,
            "rmse_clipped": self._rmse_clip_sum / self._n_img,
            "rmse_pooled": math.sqrt(self._sse / self._n_pix) if self._n_pix else math.nan,
            "rmse_zero": self._zero_sum / self._n_img,
            "rmse_image_mean": self._mean_sum / self._n_img,
            "n_images": self._n_img,
        }
