"""Non-maximum suppression and the top-K keypoint extractor E_K (docs/design.md, The pipeline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mistnet.ops._checks import check_flag, check_int, check_nonempty, check_sides, check_tensor
from mistnet.ops.softmax import log_scale_pool, scale_pool


def nms(h: Tensor, window: int = 5) -> Tensor:
    """Keep the local maxima of each channel; everything else becomes ``-inf``.

    A pixel survives if it equals the maximum of the ``window x window`` box centred on it, so
    plateaus (ties) survive. Pixels outside the image never win.

    Args:
        h: ``(B, C, H, W)`` heatmap.
        window: odd window side in pixels (5 in the official code); one wider than the map
            acts as the whole map.

    Returns:
        ``(B, C, H, W)`` with suppressed values set to ``-inf``.

    Raises:
        ValueError: ``h`` no ``(B, C, H, W)`` floating tensor with C, H, W >= 1, or a ``window``
            that is no odd integer >= 1.

    Example:
        >>> h = torch.tensor([[[[0.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.9]]]])
        >>> nms(h, 3)  # the flat zero at index 4 is a (tied) local maximum
        tensor([[[[  -inf, 1.0000,   -inf,   -inf, 0.0000,   -inf, 0.9000]]]])
    """
    h = check_tensor(h, "h", 4, "(B, C, H, W)")
    check_nonempty(h, "h", "(B, C, H, W)", "C, H, W")  # max_pool2d takes only B = 0
    window = check_int(window, "window", odd=True)
    # a window of 2 max(H, W) - 1 already covers the map from every pixel, so any wider one gives
    # the same maxima; 2**63 - 1 failed in max_pool2d ("cannot be converted to type int")
    window = min(window, 2 * max(h.shape[2:]) - 1)
    local_max = F.max_pool2d(h, window, stride=1, padding=window // 2)
    return torch.where(h >= local_max, h, torch.full_like(h, float("-inf")))


@torch.no_grad()
def topk_keypoints(
    h: Tensor,
    k: int,
    sides: Tensor | list[float] | tuple[float, ...],
    nms_window: int = 5,
    log: bool = False,
) -> tuple[Tensor, Tensor]:
    """E_K: the K strongest local maxima of the scale-pooled heatmap, with their box sides.

    Scales are pooled with :func:`scale_pool`, maxima found with :func:`nms`, and the K highest
    taken. Positions are integer pixels ``x = i mod W``, ``y = i div W``. The side is the
    normalised first moment over scales at the chosen pixel,
    ``s = sum_s h_s sigma_s / sum_s h_s`` (exactly ``sigma_1`` when S = 1; the mean side where all
    scales are zero), so that ``topk_keypoints(render_heatmap(x))`` recovers ``x`` (its sides up to
    rounding with several scales; keypoints not within one NMS window; docs/design.md,
    Departures from the paper). If fewer than K local maxima exist, the remaining slots take the highest
    non-maximal pixels, after all maxima.

    Args:
        h: ``(B, S, H, W)`` responses after :func:`local_spatial_softmax`.
        k: number of keypoints, ``1 <= k <= H * W``.
        sides: the S box sides ``sigma_s`` in pixels, strictly increasing.
        nms_window: odd NMS window in pixels.
        log: ``h`` holds log-responses (:func:`local_spatial_log_softmax`); maxima are ranked
            by their log values, so windows whose responses underflow in float keep their
            order, and the scores are returned as responses (``exp``).

    Raises:
        ValueError: ``h`` no ``(B, S, H, W)`` floating tensor with S, H, W >= 1, ``sides`` not
            S increasing positive numbers, or a ``k``, ``nms_window`` or ``log`` out of range.
            Values are not read: a ``-inf`` (a log map's zero) ranks below every finite value.

    Returns:
        ``keypoints`` ``(B, K, 3)`` as ``(x, y, side)``, float32 at least (exact pixel indices
        for a bfloat16 or float16 heatmap), and ``scores`` ``(B, K)`` (pooled heatmap values),
        maxima in decreasing score order first. Both detached.

    Example:
        >>> h = torch.zeros(1, 1, 20, 20); h[0, 0, 3, 7] = 1.0; h[0, 0, 12, 2] = 0.5
        >>> kp, score = topk_keypoints(h, 2, [20.0])
        >>> kp[0].tolist()
        [[7.0, 3.0, 20.0], [2.0, 12.0, 20.0]]
    """
    h = check_tensor(h, "h", 4, "(B, S, H, W)")
    check_nonempty(h, "h", "(B, S, H, W)", "S, H, W")  # an empty map blamed k (H*W = 0)
    B, S, H, W = h.shape
    sigma = check_sides(sides, h.device, h.dtype)
    if sigma.numel() != S:
        raise ValueError(f"sides has {sigma.numel()} entries but h has S={S} scale channels")
    k = check_int(k, "k", 1, H * W, high_text=f"H*W={H * W}")  # numpy's and 0-d tensors' too
    nms_window = check_int(nms_window, "nms_window", odd=True)
    log = check_flag(log, "log")  # "no" would be taken as true
    pooled = log_scale_pool(h) if log else scale_pool(h)  # (B, 1, H, W)
    keep = torch.isfinite(nms(pooled, nms_window).flatten(1))
    pooled = pooled.flatten(1)  # (B, H*W)
    _, idx = _rank_key(pooled, keep).topk(k, dim=1)  # (B, K)
    scores = pooled.gather(1, idx)
    if log:
        scores = scores.exp()
    # pixel indices exactly: bfloat16 holds integers only to 256 (float16 to 2048), so in the
    # heatmap's dtype keypoints on a large image would snap to multiples of 2, 4, 8 px
    dtype = torch.promote_types(h.dtype, torch.float32)
    x = (idx % W).to(dtype)
    y = torch.div(idx, W, rounding_mode="floor").to(dtype)
    sigma = sigma.to(dtype)
    if S == 1:
        side = sigma.expand(B, k)
    else:
        resp = h.flatten(2).gather(2, idx[:, None, :].expand(B, S, k))  # (B, S, K)
        if log:  # the moment's weights, normalised over scales without underflow
            resp = torch.softmax(resp, dim=1)
        mass = resp.sum(1)
        moment = (resp * sigma[None, :, None]).sum(1)
        side = torch.where(
            mass > 0, moment / mass.clamp(min=torch.finfo(h.dtype).tiny), sigma.mean()
        )
    return torch.stack([x, y, side], dim=-1), scores


def _rank_key(pooled: Tensor, keep: Tensor) -> Tensor:
    """``(B, N)`` keys that rank every maximum (``keep``) above every non-maximum, each group by
    its value: the non-maxima shifted below the lowest maximum by the span of the finite values.
    With -inf (a log map's zeros) in the span the shift was inf, and every non-maximum tied at
    -inf (all -inf: NaN). Torch ops only: no value is read on the host."""
    finite = torch.isfinite(pooled)
    lo = torch.where(finite, pooled, float("inf")).amin(1, keepdim=True)
    hi = torch.where(finite, pooled, float("-inf")).amax(1, keepdim=True)
    return torch.where(keep, pooled, pooled - (hi - lo + 1).clamp(min=1))
