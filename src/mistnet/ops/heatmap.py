"""The heatmap generator G: the ideal heatmap that E_K maps back to keypoints (docs/design.md)."""

from __future__ import annotations

import torch
from torch import Tensor

from mistnet.ops._checks import (
    check_int,
    check_keypoints,
    check_memory,
    check_sides,
    require_dense,
)


@torch.no_grad()
def render_heatmap(
    keypoints: Tensor,
    sides: Tensor | list[float] | tuple[float, ...],
    height: int,
    width: int,
    mask: Tensor | None = None,
) -> Tensor:
    """G: a zero heatmap with unit mass at each keypoint, its scale split over two levels.

    The position is rounded half up, ``(floor(x + 0.5), floor(y + 0.5))``, and clamped into the
    image. With one scale the pixel gets 1. With S > 1 the side is clamped to
    ``[sigma_1, sigma_S]`` and split linearly between the two nearest levels
    (``1 - alpha`` and ``alpha``) so that the first moment over scales equals the side. Keypoints
    that fall on the same pixel are combined by maximum. The result is detached.

    Args:
        keypoints: ``(B, K, 3)`` as ``(x, y, side)``, finite.
        sides: the S box sides ``sigma_s``, strictly increasing.
        height: H of the heatmap, an integer >= 1.
        width: W of the heatmap, an integer >= 1.
        mask: optional ``(B, K)`` bool; keypoints where it is False are not drawn.

    Returns:
        ``(B, S, H, W)`` target, dtype and device of ``keypoints``.

    Raises:
        ValueError: keypoints, sides or a mask that are refused (a mask that is no dense bool
            tensor on the keypoints' device: ``"mask: a tensor on the meta device holds no values
            to read; give a dense one"``), a ``height`` or ``width`` that is
            no integer >= 1, or sizes whose heatmap would not fit in memory
            (``"height=..., width=...: the heatmap (B, S, height, width) = ... need ..."``).
        TypeError: ``sides`` that are no numbers.

    Example:
        >>> render_heatmap(torch.tensor([[[1.4, 0.5, 20.0]]]), [20.0], 2, 3)
        tensor([[[[0., 0., 0.],
                  [0., 1., 0.]]]])
    """
    kp = check_keypoints(keypoints)
    B, K, _ = kp.shape
    sigma = check_sides(sides, kp.device, kp.dtype)
    S = sigma.numel()
    height, width = check_int(height, "height"), check_int(width, "width")
    what = f"height={height}, width={width}: the heatmap (B, S, height, width) = "
    check_memory(
        (B, S, height, width),
        kp,
        what + f"{(B, S, height, width)}",
        "pixels: lower height or width",
    )
    if mask is not None and (not isinstance(mask, Tensor) or mask.dtype != torch.bool):
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a bool tensor of shape (B, K)=({B}, {K}), got {got}")
    if mask is not None:
        require_dense(mask, "mask")  # meta or sparse: raw errors from scatter_reduce_
        if mask.device != kp.device:
            raise ValueError(f"mask is on {mask.device} but keypoints on {kp.device}")
    u = torch.floor(kp[..., 0] + 0.5).clamp(0, width - 1).long()
    v = torch.floor(kp[..., 1] + 0.5).clamp(0, height - 1).long()
    pix = v * width + u  # (B, K)
    ones = torch.ones_like(kp[..., 0])
    if mask is not None:
        if mask.shape != (B, K):
            raise ValueError(f"mask must have shape (B, K)=({B}, {K}), got {tuple(mask.shape)}")
        ones = ones * mask.to(kp.dtype)
    if S == 1:
        index, value = pix, ones
    else:
        s = torch.minimum(torch.maximum(kp[..., 2], sigma[0]), sigma[-1])
        i = (torch.searchsorted(sigma, s.contiguous(), right=True) - 1).clamp(0, S - 2)
        alpha = (s - sigma[i]) / (sigma[i + 1] - sigma[i])
        index = torch.cat([i * height * width + pix, (i + 1) * height * width + pix], 1)
        value = torch.cat([(1 - alpha) * ones, alpha * ones], 1)  # (B, 2K)
    out = torch.zeros(B, S * height * width, device=kp.device, dtype=kp.dtype)
    out.scatter_reduce_(1, index, value, reduce="amax", include_self=True)
    return out.view(B, S, height, width)
