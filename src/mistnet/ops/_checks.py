"""Argument validation shared by the ops: one clear ``ValueError`` per kind of bad input."""

from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(x: object, name: str, ndim: int, expected: str) -> Tensor:
    """Raise ``ValueError`` unless ``x`` is a floating tensor of rank ``ndim``.

    Args:
        x: the argument.
        name: its name, as the caller spells it.
        ndim: the rank it must have.
        expected: the expected shape in words, e.g. ``"(B, K, 3)"``.
    """
    if not isinstance(x, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of shape {expected}, got {type(x).__name__}"
        )
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor of shape {expected}, got {x.dtype}"
        )
    return x


def check_finite(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity (which would silently corrupt results)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_keypoints(keypoints: object, name: str = "keypoints", batch: int | None = None) -> Tensor:
    """Validate a ``(B, K, 3)`` keypoint tensor ``(x, y, side)`` with finite values and side > 0."""
    kp = check_tensor(keypoints, name, 3, "(B, K, 3) holding (x, y, side)")
    if kp.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape (B, K, 3) holding (x, y, side), got {tuple(kp.shape)}"
        )
    if batch is not None and kp.shape[0] != batch:
        raise ValueError(f"{name} has batch size {kp.shape[0]} but the images have {batch}")
    check_finite(kp, name)
    if kp.numel() and not bool((kp[..., 2] > 0).all()):
        raise ValueError(f"{name}[..., 2] (box side) must be positive")
    return kp


def check_sides(sides: object, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Return the S box sides as a 1-D tensor, checking they are positive and strictly increasing."""
    s = torch.as_tensor(sides, device=device, dtype=dtype).reshape(-1)
    if s.numel() == 0:
        raise ValueError("sides must hold at least one box side")
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ValueError(f"sides must be positive and finite, got {s.tolist()}")
    if s.numel() > 1 and not bool((s[1:] > s[:-1]).all()):
        raise ValueError(f"sides must be strictly increasing, got {s.tolist()}")
    return s


def check_window(window: int, name: str) -> int:
    if not isinstance(window, int) or isinstance(window, bool) or window < 1 or window % 2 == 0:
        raise ValueError(f"{name} must be a positive odd integer, got {window!r}")
    return window
