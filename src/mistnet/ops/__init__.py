"""Geometric operators of MIST.

Conventions (docs/design.md): pixel centres at integer coordinates, x before y; a keypoint is
``(x, y, side)`` with ``side`` the full side of the square box; images are ``(B, C, H, W)`` and
keypoints ``(B, K, 3)``. No op loops over the batch or over K in Python.
"""

from mistnet.ops.boxes import (
    box_iou,
    boxes_to_keypoints,
    boxes_to_xyxy,
    keypoints_to_boxes,
    xyxy_to_boxes,
)
from mistnet.ops.heatmap import render_heatmap
from mistnet.ops.nms import nms, topk_keypoints
from mistnet.ops.sampler import extract_patches, paste_patches
from mistnet.ops.softmax import (
    local_spatial_log_softmax,
    local_spatial_softmax,
    local_window_log_mass,
    log_scale_pool,
    scale_pool,
)

__all__ = [
    "box_iou",
    "boxes_to_keypoints",
    "boxes_to_xyxy",
    "extract_patches",
    "keypoints_to_boxes",
    "local_spatial_log_softmax",
    "local_spatial_softmax",
    "local_window_log_mass",
    "log_scale_pool",
    "nms",
    "paste_patches",
    "render_heatmap",
    "scale_pool",
    "topk_keypoints",
    "xyxy_to_boxes",
]
