"""Evaluation metrics (docs/design.md, Metrics), by job.

- :mod:`~mistnet.metrics.matching`: which entries of a padded batch are real, label multisets,
  greedy one-to-one matching of detections (or points) to ground truth.
- :mod:`~mistnet.metrics.meters`: the meters of the paper's tables: detection / classification
  rates and AP50 (:class:`DetectionMeter`), AP at IoU thresholds (:class:`APMeter`), RMSE
  (:class:`ReconstructionMeter`).
- :mod:`~mistnet.metrics.partial`: a task's metrics on data whose ground truth may be partial
  (:class:`SceneMeter`, :func:`unmeasured`), what :func:`mistnet.engine.evaluate` feeds.
- :mod:`~mistnet.metrics.official`: the official code's ``eval_accuracy``, quirks included, for
  comparison only.
"""

from mistnet.metrics.matching import (
    any_match,
    greedy_assign,
    greedy_match,
    label_histogram,
    match_detections,
    match_points,
    multiset_overlap,
    valid_mask,
)
from mistnet.metrics.meters import (
    SVHN_THRESHOLDS,
    APMeter,
    DetectionMeter,
    ReconstructionMeter,
    ap_at_thresholds,
    rmse,
    svhn_ap,
)
from mistnet.metrics.official import official_eval_accuracy
from mistnet.metrics.partial import SceneMeter, unmeasured

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
