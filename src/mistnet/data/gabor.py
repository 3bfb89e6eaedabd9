"""Gabor noise kernels (Lagae et al. 2009) for the Gabor texture dataset (docs/design.md, Data).

The kernel is ``g(x, y) = A exp(-pi a^2 (x^2 + y^2)) cos(2 pi F0 (x cos w0 + y sin w0))``, truncated
to zero outside the disc of radius ``1/a``. A texture is ``n(p) = sum_i g(p - p_i)`` over impulse
positions ``p_i`` (unit weights). Impulses sit at integer pixels, so every kernel instance is the
same integer-offset stencil.
"""

from __future__ import annotations

import numpy as np

GABOR_A = 0.1  # a, px^-1: support radius 1/a = 10 px, i.e. the 20 px box
GABOR_F0 = 0.1  # cycles / px
GABOR_AMPLITUDE = 0.5
GABOR_OMEGA = np.pi / 4


def gabor_kernel(
    dx: np.ndarray,
    dy: np.ndarray,
    a: float = GABOR_A,
    f0: float = GABOR_F0,
    amplitude: float = GABOR_AMPLITUDE,
    omega: float = GABOR_OMEGA,
) -> np.ndarray:
    """Evaluate the truncated Gabor kernel at offsets ``(dx, dy)`` from its impulse.

    Args:
        dx, dy: offsets in pixels (x before y), any broadcastable shapes.
        a: Gaussian bandwidth (px^-1); the kernel is 0 where ``dx^2 + dy^2 > 1/a^2``.
        f0: frequency of the cosine (cycles/px).
        amplitude: peak value ``A``.
        omega: orientation of the cosine (radians).

    Returns:
        float64 array of the broadcast shape.

    Example:
        >>> float(gabor_kernel(np.array(0.0), np.array(0.0)))
        0.5
    """
    dx = np.asarray(dx, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    r2 = dx * dx + dy * dy
    g = (
        amplitude
        * np.exp(-np.pi * a * a * r2)
        * np.cos(2 * np.pi * f0 * (dx * np.cos(omega) + dy * np.sin(omega)))
    )
    return np.where(r2 <= 1.0 / (a * a) + 1e-9, g, 0.0)


def gabor_stencil(a: float = GABOR_A, **kwargs: float) -> np.ndarray:
    """The kernel sampled at integer offsets: float64 ``(2R+1, 2R+1)`` with ``R = floor(1/a)``.

    Row index is ``dy + R``, column index ``dx + R``.
    """
    radius = int(np.floor(1.0 / a + 1e-9))
    off = np.arange(-radius, radius + 1, dtype=np.float64)
    return gabor_kernel(off[None, :], off[:, None], a=a, **kwargs)


def render_gabor(
    centres: np.ndarray, height: int, width: int, stencil: np.ndarray | None = None
) -> np.ndarray:
    """Sum of kernel stencils at integer impulse positions, cropped at the canvas edges.

    Args:
        centres: int ``(K, 2)`` impulse positions ``(x, y)`` in pixels.
        height, width: canvas size.
        stencil: ``(2R+1, 2R+1)`` kernel from :func:`gabor_stencil` (default parameters if None).

    Returns:
        float32 ``(height, width)`` signed texture.
    """
    if stencil is None:
        stencil = gabor_stencil()
    radius = stencil.shape[0] // 2
    size = 2 * radius + 1
    # Pad the canvas by a full stencil so every stencil that touches the canvas fits; crop once.
    canvas = np.zeros((height + 2 * size, width + 2 * size), dtype=np.float64)
    for x, y in np.asarray(centres, dtype=np.int64).reshape(-1, 2):
        if -radius <= x < width + radius and -radius <= y < height + radius:
            top, left = y + size - radius, x + size - radius
            canvas[top : top + size, left : left + size] += stencil
    return canvas[size : size + height, size : size + width].astype(np.float32)
