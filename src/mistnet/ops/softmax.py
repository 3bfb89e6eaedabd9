"""Local spatial softmax and softmax pooling over scale (SPEC §1.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mistnet.ops._checks import check_tensor


def _window_sum(x: Tensor, window: int) -> Tensor:
    """Sum of ``x`` over a ``window x window`` box around each pixel, the box shifted inside the map.

    ``x`` is ``(B, S, H, W)``. The sum is computed in valid mode and replicate-padded, which is the
    same as moving a border pixel's window inward until it fits (SPEC §1.1). A map smaller than the
    window uses the whole extent along that axis.
    """
    _, _, H, W = x.shape
    wh, ww = min(window, H), min(window, W)
    sums = F.avg_pool2d(x, (wh, ww), stride=1) * (wh * ww)  # (B, S, H - wh + 1, W - ww + 1)
    pad = ((ww - 1) // 2, ww - 1 - (ww - 1) // 2, (wh - 1) // 2, wh - 1 - (wh - 1) // 2)
    return F.pad(sums, pad, mode="replicate") if any(pad) else sums


def local_spatial_softmax(
    logits: Tensor, window: int = 15, strength: float = 10.0, eps: float = 1e-6
) -> Tensor:
    """Sharpen each heatmap channel with a softmax over a local window.

    ``p(u) = e(u) / (sum_{v in window(u)} e(v) + eps)`` with ``e = exp(strength * (h - max h))``,
    the max taken over each image's channel for numerical stability only. The ``window x window``
    box is centred on ``u`` and shifted to lie inside the image near borders, so it always holds
    ``u`` and outputs lie in ``[0, 1)``. This is the official code's exact behaviour.

    Args:
        logits: ``(B, S, H, W)`` raw heatmap scores, one channel per scale.
        window: odd side of the square window in pixels (15 in the paper).
        strength: inverse temperature ``beta`` (10 in the official code).
        eps: added to the denominator.

    Returns:
        ``(B, S, H, W)`` responses in ``[0, 1)``, same dtype and device as ``logits``.

    Example:
        >>> h = torch.zeros(1, 1, 20, 20); h[0, 0, 5, 5] = 1.0
        >>> round(float(local_spatial_softmax(h)[0, 0, 5, 5]), 3)  # 1 / (1 + 224 e^-10)
        0.99
    """
    h = check_tensor(logits, "logits", 4, "(B, S, H, W)")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    peak = h.detach().amax(dim=(2, 3), keepdim=True)
    e = torch.exp(strength * (h - peak))
    return e / (_window_sum(e, window) + eps)


def scale_pool(h: Tensor, eps: float = 1e-6) -> Tensor:
    """Softmax pooling over scale without exponentiation (SPEC §1.1).

    ``h'(u) = sum_s h_s(u)^2 / sum_s (h_s(u) + eps)``: each scale votes with its own response, so
    the pooled map is a response-weighted average. With one scale it is ``h^2 / (h + eps) ~= h``.

    Args:
        h: ``(B, S, H, W)`` spatial-softmax responses (non-negative).
        eps: added per scale to the denominator.

    Returns:
        ``(B, 1, H, W)``.
    """
    h = check_tensor(h, "h", 4, "(B, S, H, W)")
    S = h.shape[1]
    return (h * h).sum(1, keepdim=True) / (h.sum(1, keepdim=True) + S * eps)
