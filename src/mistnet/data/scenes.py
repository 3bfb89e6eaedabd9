"""Scene generators for MNIST-easy, MNIST-hard (and its Table 3 variants) and Gabor noise
(:class:`~mistnet.data.gabor.GaborNoise`, beside its kernel).

Every scene is a pure function of ``(index, split, seed)``: its random numbers come from
``np.random.default_rng(np.random.SeedSequence([seed, split_id, index]))``. A generator is
therefore both an on-the-fly :class:`torch.utils.data.Dataset`
(:class:`mistnet.data.dataset.SceneDataset`, safe with any number of DataLoader workers) and
something that can be written to disk (:func:`make_scenes`, ``mist data make``).

Conventions (docs/design.md, Conventions and Data): canvas 80×80, one channel; pixel centres at
integers, x before y; boxes are ``(cx, cy, w, h)`` with ``w = h = 20`` centred on the digit centre
(or the Gabor impulse). A 28×28 digit frame centred at integer ``(cx, cy)`` covers columns ``cx-14
.. cx+13`` and rows ``cy-14 .. cy+13``, so frame pixel (14, 14), where MNIST puts the centre of
mass, lands on the box centre. Digits are combined by a pixel-wise max and cropped at the canvas
edges. MNIST scenes are uint8 (mapped to [0, 1] by the Dataset); Gabor scenes are signed float32.

Poisson-disk layouts (MNIST-hard) come from ``scipy.stats.qmc.PoissonDisk`` (Bridson, radius
14 px in [10, 70]^2, 30 candidates). One scipy call costs ~4 ms, far too slow to feed training, so
by default each generator draws from a lazily filled *layout bank* of ``layout_bank`` Bridson
samples per (seed, split); bank entry ``j`` is itself a pure function of ``(seed, split, j)``.
A scene picks a bank entry, one of the 8 symmetries of the square (which preserve the region and
all distances) and a uniformly random subset of the drawn count, so 1024 entries give millions of
distinct layouts. ``layout_bank=0`` runs scipy for every scene instead.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from mistnet import validate
from mistnet.data.digits import DigitPools, canonical_split, load_digits
from mistnet.errors import DataError
from mistnet.machine import fits_in_memory

SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZES: dict[str, int] = {"train": 50_000, "val": 5_000, "test": 10_000}
_BANK_TAG = 7_777_777  # distinguishes bank seeds [seed, split, tag, j] from scene seeds
FRAME = 28
FRAME_HALF = 14
BOX_SIDE = 20.0
MAX_LAYOUT_BANK = 2**63 - 1  # layouts drawn lazily: any bank fits; numpy draws below 2**63
MAX_DIGITS = 99  # a scene's digits: the counts are enumerated (mnist-hard-1to9999999999)


@dataclass
class Scene:
    """One generated scene.

    Attributes:
        image: ``(C, H, W)`` uint8 (MNIST) or float32 (Gabor).
        boxes: float32 ``(N, 4)`` as ``(cx, cy, w, h)``.
        labels: int64 ``(N,)``.
        sources: int64 ``(N,)`` index of each digit in the split's pool (-1 for Gabor kernels).
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    @property
    def count(self) -> int:
        return int(self.labels.shape[0])


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of scene ``index`` of ``split`` under ``seed`` (pure function);
    a seed or index that is no integer in [0, 2**63) is refused (1.7 was cut to scene 1)."""
    seed, index = validate.seed(seed, "seed"), validate.seed(index, "scene index")
    return np.random.default_rng(
        np.random.SeedSequence([seed, SPLIT_IDS[canonical_split(split)], index])
    )


def square_boxes(centres: np.ndarray, side: float = BOX_SIDE) -> np.ndarray:
    """``(N, 2)`` centres ``(x, y)`` -> float32 ``(N, 4)`` boxes ``(cx, cy, side, side)``."""
    centres = np.asarray(centres, dtype=np.float32).reshape(-1, 2)
    return np.concatenate([centres, np.full_like(centres, side)], axis=1)


def paste_digits(canvas: np.ndarray, digits: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Paste 28×28 digit frames by pixel-wise max, cropping at the edges (in place); returns
    ``canvas``.

    Args:
        canvas: ``(H, W)`` array (uint8), modified in place.
        digits: ``(N, 28, 28)`` frames.
        centres: int ``(N, 2)`` frame centres ``(x, y)``; the frame covers
            ``x-14 .. x+13`` by ``y-14 .. y+13``.
    """
    H, W = canvas.shape
    for digit, (x, y) in zip(digits, np.asarray(centres, dtype=np.int64), strict=True):
        x0, y0 = x - FRAME_HALF, y - FRAME_HALF
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + FRAME, W), min(y0 + FRAME, H)
        if cx0 >= cx1 or cy0 >= cy1:
            continue
        region = canvas[cy0:cy1, cx0:cx1]
        np.maximum(region, digit[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0], out=region)
    return canvas


class SceneGenerator:
    """Base class: a named, parameterised, deterministic scene generator.

    Subclasses set ``name``, ``channels``, ``height``, ``width``, ``max_count``, ``dtype``,
    ``num_classes`` (labels lie in ``0 .. num_classes - 1``) and implement :meth:`generate`.
    """

    name: str
    num_classes: int = 1
    channels: int = 1
    height: int = 80
    width: int = 80
    max_count: int
    dtype: type = np.uint8
    digits: str | None = None

    @property
    def signed(self) -> bool:
        """Whether the images are signed floats (Gabor) rather than uint8 mapped to [0, 1]."""
        return np.dtype(self.dtype).kind == "f"

    def generate(self, split: str, index: int, seed: int = 0) -> Scene:  # pragma: no cover
        raise NotImplementedError

    def params(self) -> dict:
        """JSON-serialisable parameters (written to the dataset manifest)."""
        return {}


def _round_half_up(p: np.ndarray) -> np.ndarray:
    return np.floor(p + 0.5).astype(np.int64)


class _DigitSceneGenerator(SceneGenerator):
    num_classes = 10  # the digits

    def __init__(self, digits: str | DigitPools = "embedded") -> None:
        self.pools = digits if isinstance(digits, DigitPools) else load_digits(digits)
        self.digits = self.pools.source
        self._by_class: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for split in SPLIT_IDS:
            images, labels = self.pools.split(split)
            order = np.argsort(labels, kind="stable")
            counts = np.bincount(labels, minlength=10)[:10]
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            self._by_class[split] = (order, starts, counts)

    def _pick(self, split: str, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random pool index of the given class for each label: int64 ``(N,)``."""
        order, starts, counts = self._by_class[split]
        c = counts[labels]
        if np.any(c == 0):
            missing = sorted(set(labels[c == 0].tolist()))
            raise DataError(
                f"{self.digits}: the {split} digit pool has no digit of class {missing}"
            )
        return order[starts[labels] + (rng.random(labels.shape[0]) * c).astype(np.int64)]

    def _compose(self, split: str, centres: np.ndarray, labels: np.ndarray, rng) -> Scene:
        sources = self._pick(split, labels, rng)
        images, _ = self.pools.split(split)
        canvas = np.zeros((self.height, self.width), dtype=np.uint8)
        paste_digits(canvas, images[sources], centres)
        return Scene(
            image=canvas[None],
            boxes=square_boxes(centres),
            labels=labels.astype(np.int64),
            sources=sources.astype(np.int64),
        )


def _finite(value: object, name: str, low: float = -math.inf, positive: bool = False) -> float:
    """``value`` as a float once it is a finite number of at least ``low`` (above 0 with
    ``positive``); a NaN width failed deep in scipy, NaN Gabor parameters in numpy."""
    if (v := validate.as_real(value)) is None:  # 10**400: inf, not float()'s OverflowError
        raise DataError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(v) or v < low or (positive and v <= 0):
        limit = " > 0" if positive else f" >= {low:g}" if low > -math.inf else ""  # not ">= -inf"
        raise DataError(f"{name} must be a finite number{limit}, got {validate.shown(value)}")
    return v


def _is_sequence(x: object) -> bool:
    if isinstance(x, np.ndarray):
        return x.ndim != 0
    return isinstance(x, Sequence) and not isinstance(x, str | bytes)


def _is_pair(x: object) -> bool:
    return _is_sequence(x) and len(x) == 2


def _region(region: object, size: int, rectangle: bool = True) -> tuple:
    """``region`` as floats: ``(low, high)`` of a square or, where ``rectangle``, ``((x_low,
    x_high), (y_low, y_high))``. Refused unless so shaped, of finite numbers with low < high in
    the ``size`` px canvas: (10.0,) was an IndexError, (10, 70, 5) cut to (10, 70), True taken
    as 1, a region off the canvas made black scenes labelled with digits outside the image."""
    square = _is_pair(region) and not any(map(_is_sequence, region))
    if not (square or (rectangle and _is_pair(region) and all(map(_is_pair, region)))):
        form = " or ((x_low, x_high), (y_low, y_high))" if rectangle else ""
        raise DataError(f"region must be (low, high){form}, got {region!r}")
    axes = [[validate.as_real(v) for v in axis] for axis in ([region] if square else region)]
    if any(v is None for axis in axes for v in axis):
        raise DataError(f"region must hold numbers, got {region!r}")
    bounds = np.array(axes)  # (axes, 2): low, high
    if not np.isfinite(bounds).all():
        raise DataError(f"region {region} must hold finite numbers")
    if (bounds < 0).any() or (bounds > size).any():
        raise DataError(f"region {region} must lie in the {size} x {size} px canvas (0..{size})")
    if (bounds[:, 1] <= bounds[:, 0]).any():
        raise DataError(f"region {region} must have low < high")
    return tuple(axes[0]) if square else tuple(map(tuple, axes))


def _counts(counts: object) -> list[int]:
    """The distinct digit ``counts`` of a scene, sorted: integers in 1..:data:`MAX_DIGITS`
    (2.5 and True were cut to 2 and 1 digits, "9" taken as nine, range(10**10) enumerated)."""
    if isinstance(counts, str | bytes) or not isinstance(counts, Collection):
        raise TypeError(f"counts must be a sequence of integers, got {counts!r}")
    if not 0 < len(counts) <= MAX_DIGITS:
        raise DataError(f"digit counts must be integers in 1..{MAX_DIGITS}, got {counts!r}")
    values = [validate.as_integer(c) for c in counts]
    if None in values:
        raise TypeError(f"counts must be a sequence of integers, got {counts!r}")
    if not all(1 <= c <= MAX_DIGITS for c in values):
        raise DataError(f"digit counts must be integers in 1..{MAX_DIGITS}, got {counts!r}")
    return sorted(set(values))


MAX_JITTER = 0.25  # cells: a corner digit's box leaves the image 3.5 deviations away


class MnistEasy(_DigitSceneGenerator):
    """MNIST-easy (docs/design.md, Data): digits 1..9 in row-major order on a perturbed 3×3 grid.

    Cell ``(r, c)`` has nominal centre ``(-0.5 + (c + 0.5) 80/3, -0.5 + (r + 0.5) 80/3)``; each
    centre is moved by independent ``N(0, (80/3/8)^2)`` offsets per axis (not clipped) and
    rounded half up to an integer pixel.
    """

    name = "mnist-easy"
    max_count = 9

    def __init__(self, digits: str | DigitPools = "embedded", jitter: float = 1 / 8) -> None:
        super().__init__(digits)
        self.jitter = _finite(jitter, "jitter", low=0.0)
        if self.jitter > MAX_JITTER:  # 100 put boxes hundreds of pixels outside the image
            raise DataError(
                f"jitter must be at most {MAX_JITTER} (of a cell; the paper's is 1/8), got "
                f"{jitter!r}: centres would leave the image"
            )
        cell = self.width / 3
        grid = -0.5 + (np.arange(3) + 0.5) * cell
        gx, gy = np.meshgrid(grid, grid)  # row-major: row r = y index
        self._nominal = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (9, 2)
        self._std = cell * self.jitter
        self._labels = np.arange(1, 10, dtype=np.int64)

    def generate(self, split: str, index: int, seed: int = 0) -> Scene:
        split = canonical_split(split)
        rng = scene_rng(seed, split, index)
        centres = _round_half_up(self._nominal + rng.normal(0.0, self._std, size=(9, 2)))
        return self._compose(split, centres, self._labels, rng)

    def params(self) -> dict:
        return {"jitter": self.jitter, "grid": 3, "canvas": [self.height, self.width]}


class MnistHard(_DigitSceneGenerator):
    """MNIST-hard (docs/design.md, Data): digits at Poisson-disk positions with random identities.

    The count of a scene is uniform over ``counts``; positions are a uniformly random subset of a
    Bridson sample (``radius`` px minimum distance in ``[low, high]^2``), rounded half up, which
    moves each coordinate by at most half a pixel: two centres end more than ``radius - sqrt(2)``
    apart (12.8 px seen for the default 14); labels are i.i.d. uniform over 0..9 (repeats
    allowed).

    Args:
        digits: ``"embedded"``, an IDX directory, or loaded :class:`DigitPools`.
        counts: allowed digit counts per image, e.g. ``(9,)`` or ``range(3, 10)``.
        radius: minimum distance between digit centres (px) before they are rounded to
            whole pixels.
        region: ``(low, high)`` of the square that holds the centres, or
            ``((x_low, x_high), (y_low, y_high))`` for a rectangle (uneven layouts, App. E).
        layout_bank: number of cached Bridson samples per (seed, split); 0 = fresh per scene.
        name: the name recorded (default ``mnist-hard``).

    Raises:
        TypeError: ``counts`` no sequence of integers, ``layout_bank`` no integer, ``name``
            no string.
        DataError: counts outside 1..99, a ``region`` of another shape, not in the canvas or
            of low >= high, a ``radius`` below 1 px or not finite, an impossible layout.

    Bank layouts are varied by the symmetries of the region about its centre: the 8 of the
    square, or the 4 flips of a rectangle (a transpose would move the centres out of it).
    """

    name = "mnist-hard"

    def __init__(
        self,
        digits: str | DigitPools = "embedded",
        counts: Sequence[int] = (9,),
        radius: float = 14.0,
        region: tuple[float, float] | tuple[tuple[float, float], tuple[float, float]] = (
            10.0,
            70.0,
        ),
        layout_bank: int = 1024,
        name: str | None = None,
    ) -> None:
        counts = _counts(counts)
        self.region = _region(region, self.width)
        axes = self.region if isinstance(self.region[0], tuple) else (self.region,) * 2
        self._low, self._high = np.array(axes, float).T  # (x, y) each
        # closer centres round onto one pixel, and Bridson's points grow as 1 / radius**2
        radius = _finite(radius, "radius", low=1.0)
        if name is not None and not isinstance(name, str):  # recorded in the manifest
            raise TypeError(f"name must be a string, got {name!r}")
        if isinstance(layout_bank, bool) or not isinstance(layout_bank, numbers.Integral):
            raise TypeError(f"layout_bank must be an integer, got {layout_bank!r}")
        if not 0 <= layout_bank <= MAX_LAYOUT_BANK:  # 2**64 failed in numpy as scenes were drawn
            raise ValueError(
                f"layout_bank must be in [0, {MAX_LAYOUT_BANK:,}], got {validate.shown(layout_bank)}"
            )
        self.counts = np.asarray(counts, dtype=np.int64)
        self.max_count = int(counts[-1])
        self.radius = float(radius)
        side = self._high - self._low
        self._square = bool(side[0] == side[1])
        self.layout_bank = int(layout_bank)
        if name is not None:
            self.name = name
        self._bank: dict[tuple[int, int, int], np.ndarray] = {}
        self._check_feasible()
        super().__init__(digits)

    def _bridson(self, rng: np.random.Generator) -> np.ndarray:
        # scipy.stats takes about 2 s to import; only MNIST-hard layouts need it, not `mist --help`.
        from scipy.stats import qmc

        engine = qmc.PoissonDisk(
            2,
            radius=self.radius,
            ncandidates=30,
            rng=rng,
            l_bounds=self._low.tolist(),
            u_bounds=self._high.tolist(),
        )
        return engine.fill_space()

    def _check_feasible(self) -> None:
        # Bridson on the default setting gives 10-16 points; only larger counts need a check.
        side = self._high - self._low
        if self.max_count <= 9 and self.radius <= 14 and side.min() >= 60:
            return
        rng = np.random.default_rng(0)
        best = max(len(self._bridson(rng)) for _ in range(32))
        if best < self.max_count:
            (x0, y0), (x1, y1) = self._low, self._high
            where = (
                f"[{x0:g}, {x1:g}]^2"
                if self._square and x0 == y0
                else f"[{x0:g}, {x1:g}] x [{y0:g}, {y1:g}]"
            )
            raise DataError(
                f"impossible layout: {self.max_count} digits do not fit at minimum distance "
                f"{self.radius:g} px in {where} "
                f"(Poisson-disk samples hold at most ~{best})"
            )

    def _bank_entry(self, seed: int, split_id: int, j: int) -> np.ndarray:
        key = (seed, split_id, j)
        pts = self._bank.get(key)
        if pts is None:
            rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, _BANK_TAG, j]))
            pts = self._bridson(rng)
            self._bank[key] = pts
        return pts

    def layout(self, count: int, rng: np.random.Generator, seed: int, split: str) -> np.ndarray:
        """Draw ``count`` integer centres ``(count, 2)`` with pairwise distance > radius - sqrt(2)
        (the Bridson sample's >= radius, less the rounding of both coordinates of both)."""
        centre = 0.5 * (self._low + self._high)
        for _ in range(200):
            if self.layout_bank:
                j = int(rng.integers(self.layout_bank))
                pts = self._bank_entry(int(seed), SPLIT_IDS[split], j)
            else:
                pts = self._bridson(rng)
            if len(pts) < count:
                continue  # redraw (docs/design.md, Data)
            pts = pts[rng.choice(len(pts), size=count, replace=False)]
            if self.layout_bank:
                sym = int(rng.integers(8))
                d = pts - centre
                if sym & 1 and self._square:
                    d = d[:, ::-1]
                d = d * np.array([1 - 2 * ((sym >> 1) & 1), 1 - 2 * ((sym >> 2) & 1)])
                pts = d + centre
            return _round_half_up(pts)
        raise DataError(
            f"could not place {count} digits at minimum distance {self.radius:g} px in 200 draws"
        )

    def generate(self, split: str, index: int, seed: int = 0) -> Scene:
        split = canonical_split(split)
        rng = scene_rng(seed, split, index)
        count = int(self.counts[rng.integers(self.counts.size)])
        centres = self.layout(count, rng, seed, split)
        labels = rng.integers(0, 10, size=count).astype(np.int64)
        return self._compose(split, centres, labels, rng)

    def params(self) -> dict:
        return {
            "counts": self.counts.tolist(),
            "radius": self.radius,
            "region": [list(r) for r in self.region]
            if isinstance(self.region[0], tuple)
            else list(self.region),
            "layout_bank": self.layout_bank,
            "canvas": [self.height, self.width],
        }


# Uneven layouts (App. E, Fig. 8): the 9 digits of MNIST-hard packed into a vertical band of the
# canvas, the left one (centres at x in [10, 45]) or its mirror image (x in [35, 70]). Nine
# digits fit such a band only at a smaller minimum distance (12 px instead of 14). Trained on one
# band and tested on the other (or on the even layout), they show that the fully convolutional
# detector cannot learn absolute positions.
UNEVEN_RADIUS = 12.0
UNEVEN_REGIONS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "mnist-hard-left": ((10.0, 45.0), (10.0, 70.0)),
    "mnist-hard-right": ((35.0, 70.0), (10.0, 70.0)),
}


def _hard(counts: Sequence[int], name: str = "mnist-hard", **fixed) -> Callable[..., MnistHard]:
    """The builder of the MNIST-hard variant ``name``: ``counts`` and ``fixed`` are its own."""

    def build(digits: str | DigitPools = "embedded", **kwargs) -> MnistHard:
        if "counts" in kwargs:  # else a bare TypeError: "got multiple values for keyword"
            raise DataError(
                f"scene generator {name!r}: its digit counts are in its name; name them so "
                "(mnist-hard-3to9) instead of counts="
            )
        if set(fixed) & set(kwargs):
            raise DataError(
                f"scene generator {name!r}: its {' and '.join(fixed)} are those of its name; "
                "give them to mnist-hard instead"
            )
        return MnistHard(digits, counts=counts, name=name, **fixed, **kwargs)

    return build


def _gabor(digits: object = None, **kwargs) -> SceneGenerator:
    """Gabor textures: no digits to read. build_generator takes them for any name (mist
    reproduce --digits mnist gives every generator one choice), and ignores them."""
    from mistnet.data.gabor import GaborNoise  # which builds on this module's SceneGenerator

    return GaborNoise(**kwargs)


def _uneven(name: str) -> Callable[..., MnistHard]:
    return _hard((9,), name, radius=UNEVEN_RADIUS, region=UNEVEN_REGIONS[name])


GENERATORS: dict[str, Callable[..., SceneGenerator]] = {
    "mnist-easy": lambda digits="embedded", **kw: MnistEasy(digits, **kw),
    "mnist-hard": _hard((9,)),
    "mnist-hard-6to9": _hard(range(6, 10), "mnist-hard-6to9"),
    "mnist-hard-3to9": _hard(range(3, 10), "mnist-hard-3to9"),
    "mnist-hard-left": _uneven("mnist-hard-left"),
    "mnist-hard-right": _uneven("mnist-hard-right"),
    "gabor": _gabor,
}
_HARD_PATTERN = re.compile(r"^mnist-hard-(\d+)(?:to(\d+))?$")


def build_generator(name: str, digits: str | DigitPools = "embedded", **kwargs) -> SceneGenerator:
    """Build a generator by name.

    Names: those in :data:`GENERATORS`, plus ``mnist-hard-<k>`` (exactly k digits) and
    ``mnist-hard-<a>to<b>`` (uniform count in a..b, a < b), each written one way only (nine
    digits is ``mnist-hard``; ``mnist-hard-2to2`` is ``mnist-hard-2``), as the name is recorded.

    ``digits`` is read by the MNIST generators only (gabor ignores it). ``kwargs``: the
    parameters of :class:`MnistEasy`, :class:`MnistHard` (its counts, and for the uneven
    layouts radius and region, are those of the name) or
    :class:`~mistnet.data.gabor.GaborNoise`.

    Raises:
        TypeError: a name that is no string, a parameter of another type or of no such name.
        DataError: unknown name, a parameter the name sets, or impossible parameters.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a generator name, got {type(name).__name__}")
    if name in GENERATORS:
        return GENERATORS[name](digits=digits, **kwargs)
    m = _HARD_PATTERN.match(name)
    if m:
        if any(len(g) > 2 for g in m.groups() if g):  # counts are enumerated: 10**10 of them
            raise DataError(
                f"scene generator {name!r}: at most 99 digits a scene (the name's count)"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo or lo < 1:
            raise DataError(
                f"scene generator {name!r}: the digits of a scene number {lo}..{hi}; "
                "give 1 <= a <= b (mnist-hard-3to9)"
            )
        # the name is recorded: one generator, one name (nine digits is mnist-hard itself)
        canonical = f"mnist-hard-{lo}" + (f"to{hi}" if hi != lo else "")
        canonical = "mnist-hard" if canonical == "mnist-hard-9" else canonical
        if name != canonical:
            raise DataError(f"scene generator {name!r}: write it {canonical}")
        return _hard(range(lo, hi + 1), name)(digits, **kwargs)
    close = difflib.get_close_matches(name, list(GENERATORS), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise DataError(
        f"unknown scene generator {name!r}{hint} (see mist data make --help for the names)"
    )


def make_scenes(
    generator: SceneGenerator, split: str, indices: Sequence[int] | np.ndarray, seed: int = 0
) -> dict[str, np.ndarray]:
    """Generate many scenes at once as stacked, padded arrays.

    Args:
        generator: a :class:`SceneGenerator`.
        split: ``train``, ``val`` or ``test``.
        indices: scene indices ``(N,)``.
        seed: dataset seed.

    Returns:
        ``images`` ``(N, C, H, W)`` (generator dtype), ``boxes`` float32 ``(N, M, 4)`` (padding
        0), ``labels`` int64 ``(N, M)`` (padding -1), ``counts`` int64 ``(N,)``; M: max_count.

    Raises:
        TypeError: no generator, indices that are no 1-D sequence of integers.
        ArgumentError: more scenes than this machine has the memory for, naming ``indices``.
    """
    if not isinstance(generator, SceneGenerator):  # a name: build_generator(name) makes one
        raise TypeError(f"generator must be a SceneGenerator, got {type(generator).__name__}")
    if not isinstance(indices, range) and np.ndim(indices) != 1:  # 5 was one scene, number 5
        raise TypeError(f"indices must be a sequence of scene indices (N,), got {indices!r}")
    count = len(indices) if isinstance(indices, Sequence) else np.asarray(indices).size
    require_memory(generator, {"": count}, "indices")  # range(10**9) grew to 24 GB, was killed
    raw = np.asarray(indices).reshape(-1)
    if raw.size and raw.dtype.kind not in "iu":  # 1.7 and True were cut to scene 1
        raise TypeError(f"indices must be integers, got {raw.dtype} values")
    out = empty_arrays(generator, raw.size)
    for n, i in enumerate(raw):
        s = generator.generate(split, int(i), seed)
        out["images"][n] = s.image
        out["boxes"][n, : s.count] = s.boxes
        out["labels"][n, : s.count] = s.labels
        out["counts"][n] = s.count
    return out


def require_memory(generator: SceneGenerator, sizes: dict[str, int], fewer: str = "") -> None:
    """Refuse ``sizes`` (scenes per split, all held in memory at once: :func:`empty_arrays`)
    before any is made when this machine has not the memory for them.

    Raises:
        ArgumentError: naming the bytes needed and ``fewer`` (else the flags) to lower.
    """
    per_scene = sum(a.nbytes for a in empty_arrays(generator, 1).values())
    total = sum(sizes.values())
    fewer = fewer or ", ".join(f"--n-{split}" for split in sizes)
    fits_in_memory(total * per_scene, f"{total:,} scenes of {generator.name}", fewer)


def empty_arrays(generator: SceneGenerator, n: int) -> dict[str, np.ndarray]:
    """Zero/padding-filled arrays for ``n`` scenes of ``generator`` (see :func:`make_scenes`)."""
    M = generator.max_count
    return {
        "images": np.zeros(
            (n, generator.channels, generator.height, generator.width), dtype=generator.dtype
        ),
        "boxes": np.zeros((n, M, 4), dtype=np.float32),
        "labels": np.full((n, M), -1, dtype=np.int64),
        "counts": np.zeros(n, dtype=np.int64),
    }
