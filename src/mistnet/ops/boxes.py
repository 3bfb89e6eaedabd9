"""Box conventions and IoU.

Convention: pixel centres sit at integer coordinates, x before y. A keypoint ``(x, y, side)`` is the
square box ``[x - side/2, x + side/2] x [y - side/2, y + side/2]``. A centre/size box is
``(cx, cy, w, h)``; corner boxes are ``(x0, y0, x1, y1)``. Boxes are continuous: a 20-px box
centred on pixel 10 spans ``[0, 20]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mistnet.ops._checks import (
    check_finite,
    check_int,
    check_memory,
    check_number,
    check_tensor,
    require_dense,
    require_real,
)

#: The dtype box_iou works in: areas (products of two sides) fit it whenever the sides fit the
#: boxes' dtype (float64 boxes overflow only beyond sides of 1e154).
_WIDER = {torch.float16: torch.float32, torch.bfloat16: torch.float32, torch.float32: torch.float64}
_FLOAT = torch.float32  # integer boxes' corners are float32 (a half side)

_BOXES = "(..., 3) as (x, y, side) or (..., 4) as (cx, cy, w, h)"


def _check_boxes(
    boxes: object, name: str, expected: str = _BOXES, sizes: tuple[int, ...] = (3, 4)
) -> Tensor:
    """``boxes`` if it is a dense tensor of real numbers (floating or integer) whose last
    dimension is one of ``sizes``; else ValueError naming ``name``. Metadata only."""
    if not isinstance(boxes, Tensor) or boxes.ndim < 1 or boxes.shape[-1] not in sizes:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"{name} must have shape {expected}, got {shape}")
    require_dense(boxes, name)  # sparse or meta: a long NotImplementedError deep in torch
    return require_real(boxes, name)  # bool: True as 1 px, or torch's "Subtraction ... bool"


def boxes_to_keypoints(boxes: Tensor, labels: Tensor, side: float, k: int) -> tuple[Tensor, Tensor]:
    """The first ``k`` ground-truth boxes as keypoints of a fixed ``side``, with their labels.

    Args:
        boxes: ``(B, N, 4)`` centre/size boxes, padded.
        labels: ``(B, N)`` int64 class ids, -1 = padding (unsigned ones are taken as int64).
        side: the keypoints' box side, a finite number the boxes' dtype holds as a normal number
            (> 0).
        k: how many keypoints per image, an integer >= 1; with ``N < k`` the extra ones sit at
            ``(0, 0)``.

    Returns:
        ``(B, k, 3)`` keypoints ``(cx, cy, side)`` and ``(B, k)`` labels padded with -1 (a
        label < 0 marks a keypoint that is not an instance).

    Raises:
        ValueError: a bad shape or dtype of ``boxes`` or ``labels`` (sparse or meta labels too), a
            ``side`` that is no finite number > 0 the boxes' dtype holds (``"side must be a finite
            number > 0 and <= 65504 (the largest torch.float16), got 100000.0"``) and at least
            its smallest normal (``"side must be at least 1.17549e-38 (the smallest normal
            torch.float32), got 1e-50"``, as :func:`~mistnet.ops.extract_patches` bounds sides), a ``k`` that
            is no integer >= 1, or one whose keypoints would not fit in memory (``"k=...: the
            keypoints ... need ... GB of memory, more than ..."``).

    Example:
        >>> kp, lab = boxes_to_keypoints(torch.tensor([[[5.0, 6.0, 28, 28]]]), torch.tensor([[3]]), 20, 2)
        >>> kp.tolist(), lab.tolist()
        ([[[5.0, 6.0, 20.0], [0.0, 0.0, 20.0]]], [[3, -1]])
    """
    boxes = check_tensor(boxes, "boxes", 3, "(B, N, 4) as (cx, cy, w, h)")
    if boxes.shape[-1] != 4:
        raise ValueError(
            f"boxes must have shape (B, N, 4) as (cx, cy, w, h), got {tuple(boxes.shape)}"
        )
    B, N, _ = boxes.shape
    if not isinstance(labels, Tensor) or labels.shape != (B, N):
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"labels must be a tensor of shape (B, N)=({B}, {N}) like boxes, got {got}"
        )
    require_dense(labels, "labels")  # sparse: "Cannot access storage of SparseTensorImpl"
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of class ids, got {labels.dtype}")
    if not labels.dtype.is_signed:  # uint8 holds no -1 to pad with
        labels = labels.long()
    largest = torch.finfo(boxes.dtype).max  # a side beyond: "cannot be converted to c10::Half"
    side = check_number(
        side,
        "side",
        positive=True,
        high=largest,
        high_text=f"{largest:g} (the largest {boxes.dtype})",
    )
    tiny = torch.finfo(boxes.dtype).tiny  # below, the side became 0 (or a subnormal) there
    if side < tiny:
        raise ValueError(
            f"side must be at least {tiny:g} (the smallest normal {boxes.dtype}), got {side!r}"
        )
    k = check_int(k, "k")  # -1 was a slice from the end, True one keypoint
    # the keypoints, their parts and labels at once; k=10**9 asked the allocator for 8 GB
    check_memory(
        (B, k, 8), boxes, f"k={k}: the keypoints (B, k, 3) = {(B, k, 3)}", "keypoints: lower k"
    )
    pad = max(0, k - N)
    centres = F.pad(boxes[:, :k, :2], (0, 0, 0, pad))  # (B, k, 2)
    keypoints = torch.cat([centres, torch.full_like(centres[..., :1], side)], -1)
    return keypoints, F.pad(labels[:, :k], (0, pad), value=-1)


def keypoints_to_boxes(keypoints: Tensor) -> Tensor:
    """``(..., 3)`` keypoints ``(x, y, side)`` to ``(..., 4)`` centre/size boxes ``(x, y, side, side)``.

    Centre/size boxes (last dimension 4) pass through unchanged. Floating and integer tensors are
    taken.

    Raises:
        ValueError: another shape, a tensor with no values (meta, sparse) or of no real numbers
            (``"keypoints: expected real numbers (a floating or integer tensor), got torch.bool"``).

    Example:
        >>> keypoints_to_boxes(torch.tensor([[10.0, 12.0, 20.0]]))
        tensor([[10., 12., 20., 20.]])
    """
    return _centre_size(_check_boxes(keypoints, "keypoints"))


def _centre_size(kp: Tensor) -> Tensor:
    """:func:`keypoints_to_boxes` of checked boxes."""
    if kp.shape[-1] == 4:
        return kp
    return torch.cat([kp[..., :2], kp[..., 2:3], kp[..., 2:3]], dim=-1)


def boxes_to_xyxy(boxes: Tensor) -> Tensor:
    """Centre/size boxes ``(..., 4)`` (or keypoints ``(..., 3)``) to corners ``(..., 4)``.

    Raises:
        ValueError: as :func:`keypoints_to_boxes`, naming ``boxes``.
    """
    return _corners(_check_boxes(boxes, "boxes"))


def _corners(boxes: Tensor) -> Tensor:
    """:func:`boxes_to_xyxy` of checked boxes."""
    b = _centre_size(boxes)
    half = b[..., 2:] / 2
    return torch.cat([b[..., :2] - half, b[..., :2] + half], dim=-1)


def xyxy_to_boxes(corners: Tensor) -> Tensor:
    """Corner boxes ``(..., 4)`` ``(x0, y0, x1, y1)`` to centre/size boxes ``(cx, cy, w, h)``.

    Integer corners give float32 boxes (as :func:`boxes_to_xyxy` gives float32 corners of
    integer boxes): uint8 corners (200, 250) summed to 194 in their own dtype. A centre is
    the sum of halves, so float16 corners near its largest value do not overflow.

    Raises:
        ValueError: as :func:`keypoints_to_boxes`, naming ``corners``.

    Example:
        >>> xyxy_to_boxes(torch.tensor([[200, 200, 250, 250]], dtype=torch.uint8))
        tensor([[225., 225.,  50.,  50.]])
    """
    c = _check_boxes(corners, "corners", "(..., 4) as (x0, y0, x1, y1)", (4,))
    if not c.is_floating_point():
        c = c.to(_FLOAT)
    return torch.cat([c[..., :2] / 2 + c[..., 2:] / 2, c[..., 2:] - c[..., :2]], -1)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise intersection over union of two sets of boxes.

    Args:
        a: ``(..., N, 3)`` keypoints ``(x, y, side)`` or ``(..., N, 4)`` boxes ``(cx, cy, w, h)``.
        b: ``(..., M, 3)`` or ``(..., M, 4)``, same leading dimensions as ``a`` (broadcastable).

    Returns:
        ``(..., N, M)`` IoU in [0, 1]; 0 where both boxes are empty. Computed in a wider dtype
        (float32 for float16 and bfloat16 boxes, float64 for float32 ones), so areas do not
        overflow, and returned in the boxes' dtype.

    Raises:
        ValueError: boxes as :func:`keypoints_to_boxes` refuses them (naming ``a`` or ``b``),
            boxes holding NaN or infinity (``"a contains NaN or infinite values"``), leading
            dimensions that do not broadcast, or two devices.

    Example:
        >>> box_iou(torch.tensor([[0.0, 0.0, 20.0]]), torch.tensor([[10.0, 0.0, 20.0]]))
        tensor([[0.3333]])
    """
    a, b = _check_boxes(a, "a"), _check_boxes(b, "b")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError("a and b must have shape (..., N, 3|4) and (..., M, 3|4)")
    if a.device != b.device:
        raise ValueError(f"a and b must be on one device, got {a.device} and {b.device}")
    try:
        torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"a and b: leading dimensions {tuple(a.shape[:-2])} and {tuple(b.shape[:-2])} "
            "do not broadcast"
        ) from None
    for name, x in (("a", a), ("b", b)):
        check_finite(x, name)  # NaN boxes had IoU 0: plausible misses (evaluation only: a sync)
    out = torch.promote_types(*(x.dtype if x.is_floating_point() else _FLOAT for x in (a, b)))
    work = _WIDER.get(out, out)  # areas of float16 boxes of side 300 overflowed: IoU 0
    ca, cb = _corners(a.to(work)), _corners(b.to(work))
    lt = torch.maximum(ca[..., :, None, :2], cb[..., None, :, :2])  # (..., N, M, 2)
    rb = torch.minimum(ca[..., :, None, 2:], cb[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (ca[..., 2:] - ca[..., :2]).clamp(min=0).prod(-1)
    area_b = (cb[..., 2:] - cb[..., :2]).clamp(min=0).prod(-1)
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)
    return iou.to(out)
