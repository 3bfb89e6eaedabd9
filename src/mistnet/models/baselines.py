"""Baselines that share MIST's networks: the fixed grid and the channel-wise detector.

* Grid (Table 1): :func:`grid_keypoints` tiles the image with ``rows × cols`` square cells; the
  same patch auto-encoder as MIST is applied to each cell and only τ is trained.
* Channel-wise (Tables 1 and 2): :class:`ChannelWiseHeatmap` is the MIST heatmap body with a
  K-channel head; each channel's soft-argmax (:func:`spatial_soft_argmax`) gives one keypoint, so
  the whole pipeline is trained end to end by back-propagation (docs/design.md, Training).

Keypoint convention (docs/design.md): ``(x, y, side)``, x before y, pixel centres at integer
coordinates, ``side`` = full side of the square box in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mistnet.device import resolve_device
from mistnet.models.heatmap import HeatmapBody, check_weights
from mistnet.ops._checks import (
    check_int,
    check_memory,
    check_nonempty,
    check_number,
    check_tensor,
)

#: The largest float32: a box side beyond it, or a temperature whose reciprocal is, overflows.
FLOAT32_MAX = torch.finfo(torch.float32).max

__all__ = ["ChannelWiseHeatmap", "grid_keypoints", "spatial_soft_argmax"]


def spatial_soft_argmax(logits: Tensor, temperature: float = 1.0) -> Tensor:
    r"""Differentiable expected pixel position of each channel of a logit map.

    Per channel, p(u) = softmax over all H·W pixels of ``logits / temperature`` and the result is
    Σ_u p(u)·u with u = (x, y) = (column, row), i.e. pixel centres at integer coordinates and x
    before y. There is no local window and no NMS; a flat map gives the image centre
    ((W − 1)/2, (H − 1)/2).

    Args:
        logits: ``(B, K, H, W)`` raw scores.
        temperature: softmax temperature (> 0); 1 in the channel-wise baseline.

    Returns:
        ``(B, K, 2)`` positions (x, y) in pixels, same dtype and device as ``logits``.

    Example:
        >>> logits = torch.full((1, 1, 3, 4), -1e4)
        >>> logits[0, 0, 2, 1] = 0.0
        >>> spatial_soft_argmax(logits)
        tensor([[[1., 2.]]])
    """
    check_nonempty(
        check_tensor(logits, "logits", 4, "(B, K, H, W)"), "logits", "(B, K, H, W)", "H, W"
    )
    temperature = check_number(temperature, "temperature", positive=True)  # True was 1.0
    B, K, H, W = logits.shape
    flat = logits.reshape(B, K, H * W)
    # shifted before the division: a tiny temperature makes the others -inf, never inf - inf
    # (1e-45 gave NaN positions); the softmax is the same
    probs = torch.softmax((flat - flat.amax(dim=-1, keepdim=True)) / temperature, dim=-1)
    probs = probs.reshape(B, K, H, W)
    xs = torch.arange(W, device=logits.device, dtype=logits.dtype)
    ys = torch.arange(H, device=logits.device, dtype=logits.dtype)
    x = (probs.sum(dim=2) * xs).sum(dim=-1)  # (B, K): marginal over rows, then E[x]
    y = (probs.sum(dim=3) * ys).sum(dim=-1)  # (B, K)
    return torch.stack((x, y), dim=-1)  # (B, K, 2)


def grid_keypoints(
    height: int,
    width: int,
    rows: int = 3,
    cols: int = 3,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Keypoints of a regular grid of square cells that tile the image exactly.

    The image covers [−0.5, W − 0.5] × [−0.5, H − 0.5]; cell (i, j) (row i, column j) has centre
    (−0.5 + (j + 0.5)·W/cols, −0.5 + (i + 0.5)·H/rows) and side W/cols. Cells are listed in
    row-major order. Keypoint boxes are square, so the cells must be square: H/rows = W/cols.

    Args:
        height, width: image size H, W in pixels.
        rows, cols: grid size (3×3 in the paper).
        device, dtype: of the returned tensor (default: torch defaults).

    Returns:
        ``(1, rows·cols, 3)`` keypoints (x, y, side); expand over the batch as needed.

    Raises:
        TypeError: a ``device`` that is no device or name of one.
        ValueError: a size that is no integer >= 1, cells that are not square, a ``dtype``
            that is not floating, a CUDA ``device`` where there is none, or more ``rows`` and
            ``cols`` than the memory holds keypoints for (each naming the argument).

    Example:
        >>> grid_keypoints(80, 80)[0, :2]
        tensor([[12.8333, 12.8333, 26.6667],
                [39.5000, 12.8333, 26.6667]])
    """
    height, width, rows, cols = (
        check_int(value, name)  # 1.5 was told its cells are not square
        for name, value in (("height", height), ("width", width), ("rows", rows), ("cols", cols))
    )
    device = _check_device(device)
    check_memory(  # (1, rows·cols, 3) in float64 first: 10**12 cells failed in the allocator
        (rows * cols, 3),
        torch.empty(0, dtype=torch.float64, device=device),
        f"rows={rows}, cols={cols}: the grid's keypoints",
        "cells: lower rows or cols",
    )
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if height * cols != width * rows:
        raise ValueError(
            f"grid cells must be square (height/rows == width/cols), got height={height}, "
            f"width={width}, rows={rows}, cols={cols}"
        )
    side = width / cols
    xs = -0.5 + (torch.arange(cols, device=device, dtype=torch.float64) + 0.5) * side
    ys = -0.5 + (torch.arange(rows, device=device, dtype=torch.float64) + 0.5) * side
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (rows, cols) each
    sides = torch.full_like(gx, side)
    keypoints = torch.stack((gx, gy, sides), dim=-1).reshape(1, rows * cols, 3)
    return keypoints.to(dtype=dtype or torch.get_default_dtype())


def _check_device(device: object) -> torch.device | None:
    """``device`` as a ``torch.device`` (None stays None); "gpu" failed deep in torch, "cuda"
    where there is none with an AssertionError "Torch not compiled with CUDA enabled".

    Raises:
        TypeError: no device or name of one.
        ValueError: an unknown name, or CUDA where there is none (:func:`resolve_device`).
    """
    if device is None:
        return None
    if not isinstance(device, torch.device):
        if not isinstance(device, str | int) or isinstance(device, bool):
            raise TypeError(f"device must be a torch.device or its name, got {device!r}")
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}"
            ) from None
    if device.type == "cuda":
        resolve_device(str(device), "device")
    return device


class ChannelWiseHeatmap(nn.Module):
    r"""Channel-wise keypoint detector: K-channel heatmap body + per-channel soft-argmax.

    The body is :class:`~mistnet.models.heatmap.HeatmapBody` with ``out_channels = k``; channel k's
    soft-argmax (temperature 1, softmax over all pixels) gives keypoint k's position, and every
    keypoint gets the fixed box ``side``. Positions are differentiable w.r.t. the weights, so the
    baseline trains end to end through the patch sampler (docs/design.md, Training).

    Args:
        in_channels: image channels C.
        k: number of keypoints K (one output channel each).
        width, depth, dilations: body sizes, as for MIST's heatmap network.
        side: fixed box side in pixels, at most the largest float32.
        temperature: soft-argmax temperature, whose reciprocal is a float32.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, K, 3)`` keypoints (x, y, side).

    Raises:
        TypeError, ValueError: a size the body refuses (:class:`HeatmapBody`), more ``k``
            than the memory holds weights for, a ``side`` beyond float32 (a raw error at the
            forward) or a ``temperature`` whose reciprocal is (NaN positions), naming it.

    Example:
        >>> net = ChannelWiseHeatmap(in_channels=1, k=9)
        >>> net(torch.rand(2, 1, 80, 80)).shape
        torch.Size([2, 9, 3])
    """

    def __init__(
        self,
        in_channels: int,
        k: int = 9,
        width: int = 32,
        depth: int = 4,
        side: float = 20.0,
        temperature: float = 1.0,
        dilations: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.k = check_int(k, "k")  # else refused as the body's out_channels
        check_weights(self.k * check_int(width, "width"), f"k={k}", "weights: lower k or width")
        self.side = check_number(
            side, "side", positive=True, high=FLOAT32_MAX, high_text="3.4e38 (the largest float32)"
        )
        self.temperature = check_number(temperature, "temperature", positive=True)
        if self.temperature < 1 / FLOAT32_MAX:  # 1e-320: every position NaN
            raise ValueError(
                f"temperature must be >= {1 / FLOAT32_MAX:.3g} (its reciprocal a float32), "
                f"got {temperature!r}"
            )
        self.body = HeatmapBody(
            in_channels, width=width, depth=depth, out_channels=self.k, dilations=dilations
        )

    def logits(self, images: Tensor) -> Tensor:
        """Raw per-keypoint score maps ``(B, K, H, W)``."""
        return self.body(images)

    def keypoints(self, logits: Tensor) -> Tensor:
        """``(B, K, 3)`` keypoints from the score maps ``(B, K, H, W)`` of :meth:`logits`."""
        xy = spatial_soft_argmax(logits, self.temperature)  # (B, K, 2)
        side = xy.new_full((*xy.shape[:2], 1), self.side)  # (B, K, 1)
        return torch.cat((xy, side), dim=-1)  # (B, K, 3)

    def forward(self, images: Tensor) -> Tensor:
        return self.keypoints(self.logits(images))
