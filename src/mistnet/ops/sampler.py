"""The patch sampler S and its inverse S^-1 (docs/design.md, The pipeline).

Both use one ``grid_sample`` call for the whole batch (bilinear, ``align_corners=True``, zero
padding). A box ``(x, y, side)`` is sampled on a ``P x P`` grid whose samples span the closed
interval ``[x - side/2, x + side/2]`` with spacing ``side / (P - 1)``: sample ``(row a, col b)``
sits at ``(x + (b / (P - 1) - 1/2) side, y + (a / (P - 1) - 1/2) side)``. Out-of-image samples
read zero. Both ops are differentiable with respect to their tensor inputs and the keypoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mistnet.ops._checks import (
    check_int,
    check_keypoints,
    check_memory,
    check_nonempty,
    check_spatial,
    check_tensor,
)

#: Grid coordinates beyond +-_FAR lie a whole pixel outside any map of >= 2 pixels (extract_patches
#: pads a map of one pixel to two), so clamping to it changes no sample; it keeps grid_sample from
#: unnormalising an infinite coordinate (finite keypoints far out, a tiny side) into NaN.
_FAR = 3.0


def _unit_grid(size: int, like: Tensor) -> Tensor:
    """``(size,)`` offsets in box sides, from -1/2 to 1/2."""
    return torch.linspace(-0.5, 0.5, size, device=like.device, dtype=like.dtype)


def extract_patches(images: Tensor, keypoints: Tensor, size: int = 32) -> Tensor:
    """S: cut a ``size x size`` patch at every keypoint by bilinear interpolation.

    Args:
        images: ``(B, C, H, W)``.
        keypoints: ``(B, K, 3)`` as ``(x, y, side)`` in pixels, side > 0.
        size: patch resolution P, an integer >= 2.

    Returns:
        ``(B, K, C, P, P)`` patches; zero where the box leaves the image (an image one pixel
        high or wide too: its pixel is not spread over the whole axis).

    Raises:
        ValueError: a bad shape or dtype, keypoints that are not finite with side > 0 once
            converted to the images' dtype (``"keypoints contains NaN or infinite values once
            converted to torch.float16 ..."``), a ``size``
            that is no integer >= 2, or one whose patches would not fit in memory
            (``"size=...: the patches (B, K, C, size, size) = ... need ... GB of memory, ..."``).

    Example:
        >>> ramp = torch.arange(8.0).expand(1, 1, 8, 8)  # value = x
        >>> p = extract_patches(ramp, torch.tensor([[[3.0, 3.0, 4.0]]]), size=5)
        >>> p[0, 0, 0, 0].round(decimals=4).tolist()
        [1.0, 2.0, 3.0, 4.0, 5.0]
    """
    images = check_tensor(images, "images", 4, "(B, C, H, W)")
    check_spatial(images, "images", "(B, C, H, W)")  # grid_sample reads no empty image
    kp = check_keypoints(keypoints, batch=images.shape[0], dtype=images.dtype)  # checked once cast
    # align_corners=True maps every coordinate of an axis of one pixel onto that pixel (a box
    # far out read it); a zero pixel after it is the zero padding the samples between read
    if 1 in images.shape[2:]:  # a shape test: no copy of a larger image
        images = F.pad(images, (0, int(images.shape[3] == 1), 0, int(images.shape[2] == 1)))
    B, C, H, W = images.shape
    size = check_int(size, "size", 2)
    K = kp.shape[1]
    what = f"size={size}: the patches (B, K, C, size, size) = {(B, K, C, size, size)}"
    # with their (B, K, size, size, 2) grid; size=10**6 asked the allocator for 8 TB
    check_memory((B, K, C + 2, size, size), images, what, "samples: lower size, K or B")
    t = _unit_grid(size, images)
    xs = kp[..., 0:1] + t * kp[..., 2:3]  # (B, K, P) sample x per column
    ys = kp[..., 1:2] + t * kp[..., 2:3]  # (B, K, P) sample y per row
    gx = (2 * xs / (W - 1) - 1)[:, :, None, :].expand(B, K, size, size)
    gy = (2 * ys / (H - 1) - 1)[:, :, :, None].expand(B, K, size, size)
    grid = torch.stack([gx, gy], dim=-1).reshape(B, K * size, size, 2).clamp(-_FAR, _FAR)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.view(B, C, K, size, size).permute(0, 2, 1, 3, 4)  # (B, K, C, P, P)


def paste_patches(patches: Tensor, keypoints: Tensor, height: int, width: int) -> Tensor:
    """S^-1 summed over K: place every patch back at its box and add them up.

    Pixel ``(u, v)`` reads patch coordinates ``((u - x) / side + 1/2) (P - 1)`` (and the same for
    v), the exact inverse of :func:`extract_patches`'s grid. Pixels outside the closed box get
    exactly zero (bilinear zero padding alone would let the patch bleed one patch-pixel out).
    Overlapping patches add; nothing is clipped or normalised (eq. 8).

    Args:
        patches: ``(B, K, C, P, P)``.
        keypoints: ``(B, K, 3)`` as ``(x, y, side)``, side > 0.
        height: H of the output image, an integer >= 1.
        width: W of the output image, an integer >= 1.

    Returns:
        ``(B, C, H, W)``.

    Raises:
        ValueError: a bad shape or dtype, empty patches (P = 0), keypoints that are not finite
            with side > 0 once converted to the patches' dtype or whose K differs, a ``height``
            or ``width`` that is no integer >= 1, or sizes whose result would not fit in memory (``"height=..., width=...: the pasted patches ... need ..."``).

    Example:
        >>> img = torch.rand(1, 1, 16, 16)
        >>> kp = torch.tensor([[[7.0, 7.0, 6.0]]])
        >>> back = paste_patches(extract_patches(img, kp, 7), kp, 16, 16)
        >>> torch.allclose(back[0, 0, 4:11, 4:11], img[0, 0, 4:11, 4:11], atol=1e-6)
        True
    """
    patches = check_tensor(patches, "patches", 5, "(B, K, C, P, P)")
    B, K, C, P, P2 = patches.shape
    if P != P2:
        raise ValueError(f"patches must be square (B, K, C, P, P), got {tuple(patches.shape)}")
    check_nonempty(patches, "patches", "(B, K, C, P, P)", "P")  # grid_sample reads no empty patch
    kp = check_keypoints(keypoints, batch=B, dtype=patches.dtype, batch_of="the patches")
    if kp.shape[1] != K:
        raise ValueError(f"keypoints has K={kp.shape[1]} but patches has K={K}")
    height, width = check_int(height, "height"), check_int(width, "width")
    what = f"height={height}, width={width}: the pasted patches (B, K, C, height, width) = "
    # each patch's grid (2), samples (C) and mask (1), and the sum (C): 8 TB at 10**6 x 10**6
    check_memory(
        (B, K * (C + 3) + C, height, width),
        patches,
        what + f"{(B, K, C, height, width)}",
        "pixels: lower height or width, K or B",
    )
    u = torch.arange(width, device=patches.device, dtype=patches.dtype)
    v = torch.arange(height, device=patches.device, dtype=patches.dtype)
    side = kp[..., 2:3]
    gx = (2 * (u - kp[..., 0:1]) / side)[:, :, None, :].expand(B, K, height, width)
    gy = (2 * (v - kp[..., 1:2]) / side)[:, :, :, None].expand(B, K, height, width)
    grid = torch.stack([gx, gy], dim=-1).reshape(B * K, height, width, 2).clamp(-_FAR, _FAR)
    placed = F.grid_sample(
        patches.reshape(B * K, C, P, P),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )  # (B*K, C, H, W)
    inside = (grid.abs() <= 1).all(-1)[:, None].to(placed.dtype)  # (B*K, 1, H, W)
    return (placed * inside).view(B, K, C, height, width).sum(1)
