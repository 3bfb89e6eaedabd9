"""Gabor noise kernels (Lagae et al. 2009) for the Gabor texture dataset (docs/design.md, Data).

The kernel is ``g(x, y) = A exp(-pi a^2 (x^2 + y^2)) cos(2 pi F0 (x cos w0 + y sin w0))``, truncated
to zero outside the disc of radius ``1/a``. A texture is ``n(p) = sum_i g(p - p_i)`` over impulse
positions ``p_i`` (unit weights). Impulses sit at integer pixels, so every kernel instance is the
same integer-offset stencil. :class:`GaborNoise` is the generator of the Gabor scenes.
"""

from __future__ import annotations

import math

import numpy as np

from mistnet import validate
from mistnet.data.digits import canonical_split
from mistnet.data.scenes import (
    Scene,
    SceneGenerator,
    _finite,
    _region,
    _round_half_up,
    scene_rng,
    square_boxes,
)
from mistnet.errors import DataError

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


class GaborNoise(SceneGenerator):
    """Gabor noise textures (docs/design.md): ``count`` unit-weight kernels at Poisson impulses.

    Impulses are i.i.d. uniform in ``[low, high]^2`` (a Poisson process conditioned on its
    count), rounded half up. Images are signed float32 ``(1, 80, 80)``; boxes are 20×20 at the
    impulses; labels are 0. ``a``, ``f0``, ``amplitude``, ``omega``: see :func:`gabor_kernel`.

    Raises:
        TypeError: a ``count`` that is no integer.
        DataError: ``count`` outside 1..H*W (an impulse a pixel), a ``region`` that is no
            ``(low, high)`` in the canvas with low < high, a kernel parameter that is not a
            finite number (``a`` below 1 / width, ``f0`` negative).
    """

    name = "gabor"
    dtype = np.float32

    def __init__(
        self,
        count: int = 20,
        region: tuple[float, float] = (10.0, 70.0),
        a: float = GABOR_A,
        f0: float = GABOR_F0,
        amplitude: float = GABOR_AMPLITUDE,
        omega: float = GABOR_OMEGA,
    ) -> None:
        if (n := validate.as_integer(count)) is None:  # 2.5 and True were 2 and 1 impulses
            raise TypeError(f"count must be an integer, got {count!r}")
        if not 1 <= n <= self.height * self.width:  # 10**12 failed making a scene
            raise DataError(
                f"count must be an integer in 1..{self.height * self.width} (an impulse a "
                f"pixel), got {validate.shown(count)}"
            )
        self.max_count = n
        self.region = _region(region, self.width, rectangle=False)
        a = _finite(a, "a", positive=True)
        if a < 1 / self.width:  # its stencil is 2/a px wide: 1e-5 asked for 298 GiB
            raise DataError(
                f"a must be >= {1 / self.width:g} (a kernel of support radius 1/a within the "
                f"{self.width} px canvas), got {a!r}"
            )
        self.kernel = {
            "a": a,
            "f0": _finite(f0, "f0", low=0.0),
            "amplitude": _finite(amplitude, "amplitude"),
            "omega": _finite(omega, "omega"),
        }
        with np.errstate(all="ignore"):  # checked below, named: not numpy's warnings
            self.stencil = gabor_stencil(**self.kernel)
        # a=1e300 made NaN kernels (inf x 0), amplitude=1e300 images of inf
        finite = bool(np.isfinite(self.stencil).all())
        peak = float(np.abs(self.stencil).max()) * n if finite else math.inf
        if not peak <= float(np.finfo(np.float32).max):
            raise DataError(
                f"a={a:g} and amplitude={self.kernel['amplitude']:g} give a texture beyond float32 "
                f"(its {n} kernels sum to {peak:g}); lower them"
            )

    def generate(self, split: str, index: int, seed: int = 0) -> Scene:
        split = canonical_split(split)
        rng = scene_rng(seed, split, index)
        pts = rng.uniform(self.region[0], self.region[1], size=(self.max_count, 2))
        centres = _round_half_up(pts)
        image = render_gabor(centres, self.height, self.width, self.stencil)
        return Scene(
            image=image[None],
            boxes=square_boxes(centres),
            labels=np.zeros(self.max_count, dtype=np.int64),
            sources=np.full(self.max_count, -1, dtype=np.int64),
        )

    def params(self) -> dict:
        return {
            "count": self.max_count,
            "region": list(self.region),
            "kernel": {k: float(v) for k, v in self.kernel.items()},
            "canvas": [self.height, self.width],
        }
