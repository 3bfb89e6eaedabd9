"""Local spatial softmax and softmax pooling over scale (docs/design.md, The pipeline)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mistnet.ops._checks import (
    check_int,
    check_nonempty,
    check_number,
    check_tensor,
)


def _window_logsumexp(a: Tensor, window: int) -> Tensor:
    """Log of the sum of ``exp(a)`` over a ``window x window`` box around each pixel.

    ``a`` is ``(B, S, H, W)``. The box is shifted inside the map near borders (docs/design.md, The
    pipeline): the sum is taken in valid mode and replicate-padded, which is the same as moving a
    border pixel's window inward until it fits. A map smaller than the window uses the whole extent
    along that axis. The box is separable, so this is two exact 1-D log-sum-exps (rows, then
    columns), each stabilised by its own window's maximum: no value underflows however far apart the
    logits are.
    """
    for dim in (3, 2):
        n = a.shape[dim]
        w = min(window, n)
        a = torch.logsumexp(a.unfold(dim, w, 1), dim=-1)  # (.., n - w + 1, ..) along dim
        lo = (w - 1) // 2
        pad = (lo, w - 1 - lo, 0, 0) if dim == 3 else (0, 0, lo, w - 1 - lo)
        if any(pad):
            a = F.pad(a, pad, mode="replicate")
    return a


def local_spatial_log_softmax(
    logits: Tensor, window: int = 15, strength: float = 10.0, eps: float = 1e-6
) -> Tensor:
    """The logarithm of :func:`local_spatial_softmax`, computed without underflow.

    ``log p(u) = a(u) - log(sum_{v in window(u)} exp a(v) + eps)`` with
    ``a = strength * (h - max h)``, the max taken over each image's channel (detached). The value
    is the official code's heatmap, exactly; only the arithmetic differs: in float32 the direct
    form gives exactly 0 wherever a whole window lies more than ~9 logits (90 / strength) below
    the image's highest one, and E_K then ranks such ties by pixel index (the top border), while
    this form keeps every window's order and its gradient.

    Args:
        logits: ``(B, S, H, W)`` raw heatmap scores, one channel per scale.
        window: odd side of the square window in pixels (15 in the paper).
        strength: inverse temperature ``beta`` (10 in the official code), a finite number > 0
            that the dtype of ``logits`` holds (at most 65504 for float16).
        eps: added to the denominator (relative to the image's highest logit, as in the code),
            a finite number >= 0; with 0 a window whose responses all underflow gives ``-inf``
            (log 0), as with ``eps > 0``, not NaN.

    Returns:
        ``(B, S, H, W)`` log-responses, all ``<= 0`` (``0`` only with ``eps = 0`` where a
        window holds one pixel, or where rounding in half precision reaches it), same dtype and
        device as ``logits``.

    Raises:
        ValueError: an argument refused (naming it), e.g. ``"strength must be a finite number >
            0 and <= 3.40282e+38 (the largest torch.float32), got 1e+300"``.

    Example:
        >>> h = torch.zeros(1, 1, 20, 20); h[0, 0, 5, 5] = 1.0; h[0, 0, 15, 15] = -30.0
        >>> lp = local_spatial_log_softmax(h)
        >>> round(float(lp[0, 0, 5, 5].exp()), 3), float(lp[0, 0, 15, 15]) > -400
        (0.99, True)
    """
    h, window, strength, eps = _check_softmax_arguments(logits, window, strength, eps)
    peak = h.detach().amax(dim=(2, 3), keepdim=True)
    a = strength * (h - peak)
    return a - _log_denominator(a, window, eps)


def local_window_log_mass(
    logits: Tensor, inner: int, window: int = 15, strength: float = 10.0, eps: float = 1e-6
) -> Tensor:
    """Log of the share of each pixel's softmax window that lies in the ``inner`` box around it.

    ``log m(u) = log(sum_{v in inner(u)} e(v)) - log(sum_{v in window(u)} e(v) + eps)`` with
    ``e`` as in :func:`local_spatial_log_softmax` and both boxes shifted inside the map the same
    way, so ``inner(u)`` lies in ``window(u)`` and ``m`` is in ``[0, 1]``. It generalises the
    heatmap from a pixel to a box: ``inner = 1`` gives :func:`local_spatial_log_softmax` exactly.
    With ``inner`` the NMS window of E_K it is the probability mass a detection claims (no other
    detection lies in that box), which does not shrink when a blurred peak spreads over a few
    pixels, while a flat window gives ``inner² / window²`` and a window far below the image's
    highest logit (eps dominates) gives about 0.

    Args:
        logits: ``(B, S, H, W)`` raw heatmap scores.
        inner: odd side of the inner box, ``<= window``.
        window, strength, eps: as :func:`local_spatial_log_softmax`.

    Returns:
        ``(B, S, H, W)`` log-masses, ``<= 0``.

    Example:
        >>> h = torch.zeros(1, 1, 20, 20); h[0, 0, 5, 5:7] = 1.0  # a peak spread over 2 pixels
        >>> round(float(local_spatial_log_softmax(h)[0, 0, 5, 5].exp()), 3)
        0.497
        >>> round(float(local_window_log_mass(h, 5)[0, 0, 5, 5].exp()), 3)
        0.995
    """
    h, window, strength, eps = _check_softmax_arguments(logits, window, strength, eps)
    inner = check_int(inner, "inner", 1, window, odd=True, high_text=f"window={window}")
    peak = h.detach().amax(dim=(2, 3), keepdim=True)
    a = strength * (h - peak)
    return _window_logsumexp(a, inner) - _log_denominator(a, window, eps)


def _check_softmax_arguments(
    logits: object, window: object, strength: object, eps: object
) -> tuple[Tensor, int, float, float]:
    """The local softmax's arguments, checked (scalars and tensor metadata only).

    Raises:
        ValueError: ``logits`` no ``(B, S, H, W)`` floating tensor with S, H, W >= 1, a
            ``window`` that is no odd integer >= 1, an ``eps`` that is no finite number >= 0, or
            a ``strength`` that is no finite number > 0 the logits' dtype holds (beyond, it is
            infinite there and ``inf * 0`` made every map NaN).
    """
    h = check_tensor(logits, "logits", 4, "(B, S, H, W)")
    check_nonempty(h, "logits", "(B, S, H, W)", "S, H, W")  # the windows read no empty map
    window = check_int(window, "window", odd=True)  # the window is centred on its pixel
    largest = torch.finfo(h.dtype).max
    strength = check_number(  # NaN: NaN maps; < 0: inverted
        strength,
        "strength",
        positive=True,
        high=largest,
        high_text=f"{largest:g} (the largest {h.dtype})",
    )
    eps = check_number(eps, "eps", positive=False)
    return h, window, strength, eps


def _log_denominator(a: Tensor, window: int, eps: float) -> Tensor:
    """``log(sum_{window(u)} exp a + eps)``: the local spatial softmax's normaliser."""
    denom = _window_logsumexp(a, window)
    if eps > 0:
        denom = torch.logaddexp(denom, torch.full_like(denom, math.log(eps)))
    else:  # a window of zeros (-inf): log 0 - log 0 was NaN; 0 / (0 + eps) is 0 for eps > 0
        denom = denom.masked_fill(denom == -math.inf, 0.0)
    return denom


def local_spatial_softmax(
    logits: Tensor, window: int = 15, strength: float = 10.0, eps: float = 1e-6
) -> Tensor:
    """Sharpen each heatmap channel with a softmax over a local window.

    ``p(u) = e(u) / (sum_{v in window(u)} e(v) + eps)`` with ``e = exp(strength * (h - max h))``,
    the max taken over each image's channel. The ``window x window`` box is centred on ``u`` and
    shifted to lie inside the image near borders, so it always holds ``u`` and outputs lie in
    ``[0, 1]`` (``1`` only as the log-responses reach ``0``: see
    :func:`local_spatial_log_softmax`). This is the official code's function; it is computed as the exponential of
    :func:`local_spatial_log_softmax`, so windows far below the image's highest logit come out
    as small positive numbers (or float underflow) rather than the official code's 0 / eps.

    Args:
        logits: ``(B, S, H, W)`` raw heatmap scores, one channel per scale.
        window: odd side of the square window in pixels (15 in the paper).
        strength: inverse temperature ``beta`` (10 in the official code); as
            :func:`local_spatial_log_softmax`.
        eps: added to the denominator.

    Returns:
        ``(B, S, H, W)`` responses in ``[0, 1]``, same dtype and device as ``logits``.

    Raises:
        ValueError: as :func:`local_spatial_log_softmax`.

    Example:
        >>> h = torch.zeros(1, 1, 20, 20); h[0, 0, 5, 5] = 1.0
        >>> round(float(local_spatial_softmax(h)[0, 0, 5, 5]), 3)  # 1 / (1 + 224 e^-10)
        0.99
    """
    return local_spatial_log_softmax(logits, window, strength, eps).exp()


def scale_pool(h: Tensor, eps: float = 1e-6) -> Tensor:
    """Softmax pooling over scale without exponentiation (docs/design.md, The pipeline).

    ``h'(u) = sum_s h_s(u)^2 / sum_s (h_s(u) + eps)``: each scale votes with its own response, so
    the pooled map is a response-weighted average. With one scale it is ``h^2 / (h + eps) ~= h``.

    Args:
        h: ``(B, S, H, W)`` spatial-softmax responses (non-negative).
        eps: added per scale to the denominator.

    Returns:
        ``(B, 1, H, W)``; 0 where all scales are 0, even with ``eps = 0``.

    Raises:
        ValueError: ``h`` no ``(B, S, H, W)`` floating tensor with S >= 1, or an ``eps`` that is
            no finite number >= 0.
    """
    h = check_tensor(h, "h", 4, "(B, S, H, W)")
    check_nonempty(h, "h", "(B, S, H, W)", "S")  # pooling no scale gave NaN
    eps = check_number(eps, "eps", positive=False)
    S = h.shape[1]
    den = h.sum(1, keepdim=True) + S * eps
    if eps == 0:  # all scales 0: 0 / 0 was NaN; 0 as for eps > 0
        den = den.masked_fill(den == 0, 1.0)
    return (h * h).sum(1, keepdim=True) / den


def log_scale_pool(log_h: Tensor, eps: float = 1e-6) -> Tensor:
    """:func:`scale_pool` of ``exp(log_h)``, in the log domain (for :func:`local_spatial_log_softmax`).

    ``log(sum_s h_s^2) - log(sum_s h_s + S eps)`` with ``h = exp(log_h)``, computed without
    underflow. With one scale it equals ``log_h - log(1 + eps / h)``, a monotone map of ``log_h``.

    Args:
        log_h: ``(B, S, H, W)`` log-responses.
        eps: added per scale to the denominator.

    Returns:
        ``(B, 1, H, W)``; ``-inf`` where all scales are ``-inf``, even with ``eps = 0``.

    Raises:
        ValueError: as :func:`scale_pool`, naming ``log_h``.
    """
    log_h = check_tensor(log_h, "log_h", 4, "(B, S, H, W)")
    check_nonempty(log_h, "log_h", "(B, S, H, W)", "S")  # log(0 * eps): a math domain error
    eps = check_number(eps, "eps", positive=False)
    S = log_h.shape[1]
    num = torch.logsumexp(2 * log_h, dim=1, keepdim=True)
    den = torch.logsumexp(log_h, dim=1, keepdim=True)
    if eps > 0:
        den = torch.logaddexp(den, torch.full_like(den, math.log(S * eps)))
    else:  # all scales 0 (-inf): -inf - -inf was NaN; -inf (log 0) as for eps > 0
        den = den.masked_fill(den == -math.inf, 0.0)
    return num - den
