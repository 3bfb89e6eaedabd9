"""A task's metrics on data whose ground truth may be partial.

A dataset says which ground truth it carries (``boxes``, ``labels``). A metric that needs what
the data lacks is left out (:func:`unmeasured` names it with the reason), never reported as 0:
:class:`SceneMeter` is what :func:`mistnet.engine.evaluate` feeds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import Tensor

from mistnet.metrics.matching import (
    check_num_classes,
    check_sums,
    label_histogram,
    require_float,
    require_tensor,
    valid_mask,
)
from mistnet.metrics.meters import DetectionMeter, ReconstructionMeter
from mistnet.ops._checks import require_real

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
_TASKS = ("classify", "reconstruct")


def check_task(task: object, annotations: object) -> frozenset[str]:
    """``annotations`` as a frozenset, once ``task`` is ``"classify"`` or ``"reconstruct"`` and
    ``annotations`` a collection (not a string) of ``"boxes"`` / ``"labels"``.

    Raises:
        TypeError: ``annotations`` is a string or no collection (``"boxes"`` was read as the
            set of its letters).
        ValueError: another task, or another annotation.
    """
    if task not in _TASKS:  # any other task was measured as reconstruction
        raise ValueError(f"task must be 'classify' or 'reconstruct', got {task!r}")
    if isinstance(annotations, str | bytes) or not isinstance(annotations, Collection):
        raise TypeError(
            "annotations must be a set of 'boxes' and/or 'labels' (e.g. {'boxes'}), "
            f"got {annotations!r}"
        )
    unknown = sorted(map(repr, set(annotations) - NEEDS["both"]))
    if unknown:
        raise ValueError(
            f"annotations must be a subset of {{'boxes', 'labels'}}, got {', '.join(unknown)}"
        )
    return frozenset(annotations)


def unmeasured(task: str, annotations: frozenset[str] | set[str]) -> dict[str, str]:
    """The metrics of ``task`` that data carrying only ``annotations`` cannot give, with why.

    Args:
        task: ``"classify"`` or ``"reconstruct"`` (which measures ``rmse`` always and the
            class-agnostic ``det_iou50`` / ``det_any50`` of its keypoints when there are boxes).
        annotations: a subset of ``{"boxes", "labels"}``.

    Returns:
        ``{metric: reason}``, e.g. ``{"both": "the data has no boxes", ...}``.

    Raises:
        TypeError, ValueError: another task, or ``annotations`` that are no such subset
            (:func:`check_task`).

    Example:
        >>> sorted(unmeasured("classify", {"labels"}))
        ['ap50', 'ap50_agnostic', 'both', 'det_any50', 'det_iou50']
    """
    annotations = check_task(task, annotations)
    names = NEEDS if task == "classify" else ("det_iou50", "det_any50")
    out = {}
    for name in names:
        missing = sorted(NEEDS[name] - annotations)
        if missing:
            out[name] = "the data has no " + " and no ".join(missing)
    return out


class SceneMeter:
    """The metrics of a MIST task over scenes, leaving out what the data cannot measure.

    Classification gives ``det_iou50``, ``det_any50``, ``classif``, ``both``, ``ap50``,
    ``ap50_agnostic`` (:class:`DetectionMeter`); reconstruction gives ``rmse`` and its variants
    (:class:`ReconstructionMeter`) and, when the data has boxes and instances, the class-agnostic
    ``det_iou50`` / ``det_any50`` of its keypoints. A metric whose ground truth the data lacks
    (:func:`unmeasured`) is absent from :meth:`compute`, never reported as 0.

    Args:
        task: ``"classify"`` or ``"reconstruct"``.
        num_classes: C of the classifier, an integer >= 1 (refused where its per-class counts
            do not fit in memory).
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
        self.annotations = check_task(task, annotations)  # "detect" was taken as reconstruct
        self.task = task
        check_num_classes(num_classes, rows=2)  # the two per-class count vectors below
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
            reconstruction, images: ``(B, C, H, W)`` floating tensors for a reconstruction task.

        Raises:
            TypeError: ``keypoints`` no tensor, or for a reconstruction task ``gt_labels`` no
                tensor.
            ValueError: ``keypoints`` not ``(B, K, 3)`` real numbers, ``det_labels`` None for a classifier, ``reconstruction`` or ``images``
                None, of an integer dtype or of another batch size than ``keypoints`` for a
                reconstruction task (and what :meth:`DetectionMeter.update` or
                :meth:`ReconstructionMeter.update` refuses). A refused batch leaves the meter
                unchanged.
        """
        self._check_needs(det_labels, reconstruction, images)
        _check_keypoints(keypoints)  # DetectionMeter names its own argument, det_boxes
        if self.task != "classify":  # detection alone: every instance and keypoint is one class
            _check_reconstruction_batch(keypoints, gt_labels, reconstruction, images)
            # measured now, added once the detections passed too: a refused batch (NaN boxes)
            # was already counted in the reconstruction meter
            rmse_sums = self.reconstruction.batch_sums(reconstruction, images)
            det_labels, gt_labels = keypoints[..., 0].long() * 0, gt_labels.clamp(max=0)
        self.detection.update(keypoints, det_labels, gt_boxes, gt_labels, gt_count, det_count)
        if self.task != "classify":
            self.reconstruction.load_sums(self.reconstruction.sums() + rmse_sums)
        if self.task == "classify" and "labels" in self.annotations:
            C = self.num_classes
            h_det = label_histogram(det_labels, C, valid_mask(det_labels, det_count))  # (B, C)
            h_gt = label_histogram(gt_labels, C, valid_mask(gt_labels, gt_count))
            self._hits += torch.minimum(h_det, h_gt).sum(0).cpu()
            self._instances += h_gt.sum(0).cpu()

    def _check_needs(self, det_labels: object, reconstruction: object, images: object) -> None:
        """Refuse a batch without what the task measures (it gave "'NoneType' object has no
        attribute 'shape'"). Metadata only."""
        if self.task == "classify":
            needs = {"det_labels": det_labels}
        else:
            needs = {"reconstruction": reconstruction, "images": images}
        for name, value in needs.items():
            if value is None:
                raise ValueError(f"{name}: a {self.task} meter needs it, got None")
            if name == "det_labels":
                require_tensor(value, name, "(B, K)")
            else:
                require_float(value, name)

    def sums(self) -> Tensor:
        """Everything accumulated, as one float64 vector: the meters of disjoint batches add up
        to the meter of all of them (how sharded validation reduces over processes)."""
        parts = [self.detection.sums(), self.reconstruction.sums(), self._hits, self._instances]
        return torch.cat([p.double() for p in parts])

    def load_sums(self, sums: Tensor) -> None:
        """Replace what is accumulated by ``sums`` (see :meth:`sums`).

        Raises:
            TypeError, ValueError: ``sums`` no tensor of ``sums()``'s length, finite and >= 0.
        """
        sizes = [len(self.detection.sums()), len(self.reconstruction.sums())]
        sizes += [self.num_classes, self.num_classes]
        values = torch.tensor(check_sums(sums, sum(sizes)), dtype=torch.float64)
        d, r, hits, instances = values.split(sizes)
        self.detection.load_sums(d)
        self.reconstruction.load_sums(r)
        self._hits, self._instances = hits.round().long(), instances.round().long()

    def compute(self, class_names: Sequence[str] = ()) -> dict[str, float]:
        """The measurable metrics so far, and the counts.

        Args:
            class_names: when given (index ``i`` names class ``i``), also ``classif/<name>``:
                the multiset recall of each class that has ground-truth instances; a sequence
                of at most ``num_classes`` strings.

        Raises:
            TypeError: ``class_names`` a string (read as its letters) or no sequence of strings.
            ValueError: more names than classes, or a name twice.
        """
        self.check_class_names(class_names)
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

    def check_class_names(self, class_names: object) -> None:
        """Refuse what :meth:`compute` cannot name classes by: no sequence of strings, more
        names than classes, or a name twice (two classes were one ``classif/<name>`` key)."""
        if (
            isinstance(class_names, str | bytes)
            or not isinstance(class_names, Sequence)
            or not all(isinstance(n, str) for n in class_names)
        ):
            raise TypeError(f"class_names must be a sequence of strings, got {class_names!r}")
        if len(class_names) > self.num_classes:
            raise ValueError(
                f"class_names: at most num_classes={self.num_classes} names, got {len(class_names)}"
            )
        if len(set(class_names)) < len(class_names):
            twice = next(n for i, n in enumerate(class_names) if n in class_names[:i])
            raise ValueError(f"class_names: {twice!r} names two classes; each needs its own")


def _check_keypoints(keypoints: object) -> None:
    """Refuse ``keypoints`` that are no ``(B, K, 3)`` tensor of finite real numbers (else
    :class:`DetectionMeter` named them by its own argument, ``det_boxes``)."""
    require_real(require_tensor(keypoints, "keypoints", "(B, K, 3)"), "keypoints")
    if keypoints.ndim != 3 or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints: expected shape (B, K, 3), got {tuple(keypoints.shape)}")
    if not torch.isfinite(keypoints).all():
        raise ValueError("keypoints: holds NaN or infinite values")


def _check_reconstruction_batch(
    keypoints: object, gt_labels: object, reconstruction: Tensor, images: Tensor
) -> None:
    """Refuse what a reconstruction meter reads before :class:`DetectionMeter` checks it (a
    numpy ``keypoints``: "no attribute 'long'"; a list ``gt_labels``: "no attribute 'clamp'"),
    and images of another batch than the keypoints (the RMSE counted 2 images, the detection 1).
    Metadata only."""
    require_real(require_tensor(gt_labels, "gt_labels", "(B, N)"), "gt_labels")  # bool: all 0
    B = keypoints.shape[0]
    for name, x in (("reconstruction", reconstruction), ("images", images)):
        if x.shape[:1] != (B,):
            raise ValueError(
                f"{name}: expected a batch of {B} images as keypoints, got shape {tuple(x.shape)}"
            )
