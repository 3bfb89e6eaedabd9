"""Argument validation shared by the ops: one clear ``ValueError`` per kind of bad input."""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np
import torch
from torch import Tensor

from mistnet.errors import ArgumentError
from mistnet.machine import fits_in_memory

#: Results of fewer bytes are not weighed against the memory (:func:`check_memory`): a training
#: step's tensors are far smaller, and their check costs a few multiplications.
MEMORY_CHECKED_FROM = 2**30


def require_dense(x: Tensor, what: str, error: type[Exception] = ValueError) -> None:
    """Refuse a tensor with no values to read: on the meta device, or sparse (any layout but
    strided), which every check after this one would fail on deep inside torch. Metadata only:
    no value is read (no GPU synchronisation).

    Raises:
        error: ``"<what>: a tensor on the meta device holds no values to read; give a dense one"``.
    """
    if x.is_meta or x.layout != torch.strided:
        where = "on the meta device" if x.is_meta else f"of {x.layout} layout"
        raise error(f"{what}: a tensor {where} holds no values to read; give a dense one")


def require_real(x: Tensor, what: str) -> Tensor:
    """Refuse a bool, complex or float8 tensor where numbers are read (coordinates, scores,
    counts): True was read as 1, and complex and float8 ones failed deep inside torch
    (:func:`wide_float`). Metadata only (no GPU sync).

    Raises:
        ValueError: ``"<what>: expected real numbers (a floating or integer tensor), got <dtype>"``
            (``"floating (16 bits or more)"`` of a float8 one).
    """
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(
            f"{what}: expected real numbers (a floating or integer tensor), got {x.dtype}"
        )
    if x.is_floating_point() and not wide_float(x):
        raise ValueError(
            f"{what}: expected real numbers (a floating (16 bits or more) or integer tensor), "
            f"got {x.dtype}"
        )
    return x


def check_memory(shape: tuple[int, ...], like: Tensor, what: str, fewer: str) -> None:
    """Refuse, before it is allocated, work that holds ``prod(shape)`` values of ``like``'s dtype
    at once when ``like``'s device has not that much memory: the host's available memory
    (:func:`mistnet.machine.fits_in_memory`), a GPU's whole memory. An 8 TB tensor otherwise
    failed deep inside the allocator, and one a little beyond the host's memory made it swap.
    Below :data:`MEMORY_CHECKED_FROM` bytes nothing is read (no file, no GPU sync).

    Raises:
        ArgumentError: a ``ValueError`` naming ``what`` needs it and what to make ``fewer``.
    """
    nbytes = math.prod(shape) * like.element_size()
    if nbytes < MEMORY_CHECKED_FROM:
        return
    if like.device.type != "cuda":
        fits_in_memory(nbytes, what, fewer)
        return
    total = torch.cuda.get_device_properties(like.device).total_memory
    if nbytes > total:
        raise ArgumentError(
            f"{what} need {nbytes / 1e9:,.1f} GB of memory, more than the {total / 1e9:,.1f} GB "
            f"of {like.device}; make fewer ({fewer})"
        )


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
    require_dense(x, name)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    if not wide_float(x):
        raise ValueError(
            f"{name} must be a floating-point tensor (16 bits or more) of shape {expected}, "
            f"got {x.dtype}"
        )
    return x


def wide_float(x: Tensor) -> bool:
    """Whether ``x`` is of a float dtype of 16 bits or more: torch has no ``isfinite``,
    ``max_pool2d`` nor ``min`` of float8, which failed deep in torch."""
    return x.is_floating_point() and x.element_size() >= 2


def check_finite(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity (which would silently corrupt results)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_keypoints(
    keypoints: object,
    name: str = "keypoints",
    batch: int | None = None,
    dtype: torch.dtype | None = None,
    batch_of: str = "the images",
) -> Tensor:
    """Validate a ``(B, K, 3)`` keypoint tensor ``(x, y, side)``: finite values, and sides that are
    normal positive numbers (at least the dtype's smallest normal, so ``1 / side`` is finite).
    ``batch``: the batch size of ``batch_of`` (what the message names), which they must have.

    With ``dtype`` the keypoints are converted to it first and returned so: a value checked before
    the conversion could become infinite (70000 in float16) or a side 0 (1e-300 in float32).

    Raises:
        ValueError: a bad shape or batch, ``"<name> contains NaN or infinite values[ once
            converted to <dtype>]"``, or ``"<name>[..., 2] (box side) must be positive, at least
            <tiny> (the smallest normal <dtype>)[ once converted ...]"``.
    """
    kp = check_tensor(keypoints, name, 3, "(B, K, 3) holding (x, y, side)")
    if kp.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape (B, K, 3) holding (x, y, side), got {tuple(kp.shape)}"
        )
    if batch is not None and kp.shape[0] != batch:
        raise ValueError(f"{name} has batch size {kp.shape[0]} but {batch_of} have {batch}")
    where = ""
    if dtype is not None and kp.dtype != dtype:
        kp = kp.to(dtype)
        where = f" once converted to {dtype} (the dtype they are used in)"
    if not bool(torch.isfinite(kp).all()):
        raise ValueError(f"{name} contains NaN or infinite values{where}")
    tiny = torch.finfo(kp.dtype).tiny  # a subnormal side: 1 / side overflows to inf
    if kp.numel() and not bool((kp[..., 2] >= tiny).all()):
        raise ValueError(
            f"{name}[..., 2] (box side) must be positive, at least {tiny:g} "
            f"(the smallest normal {kp.dtype}){where}"
        )
    return kp


def check_sides(sides: object, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Return the S box sides as a 1-D tensor, checking they are positive and strictly increasing.

    Raises:
        TypeError: ``sides`` is no tensor or sequence of numbers (a string, None, ``["4"]``).
        ValueError: no side, a side that is not finite and > 0, or sides not increasing.
    """
    if isinstance(sides, Tensor):
        require_dense(sides, "sides")
    if isinstance(sides, str | bytes) or (
        isinstance(sides, Tensor) and (sides.dtype == torch.bool or sides.is_complex())
    ):
        s = None
    else:
        try:
            if not isinstance(sides, Tensor) and np.asarray(sides).dtype.kind not in "iuf":
                raise TypeError  # [True] was side 1; None, ["4"]
            s = torch.as_tensor(sides, device=device, dtype=dtype).reshape(-1)
        except (TypeError, ValueError, RuntimeError):  # ragged lists
            s = None
    if s is None:
        raise TypeError(f"sides must be a sequence of box sides in pixels, got {sides!r}")
    if s.numel() == 0:
        raise ValueError("sides must hold at least one box side")
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        # as given: 1e39 was shown as the inf it became
        given = np.asarray(sides.cpu() if isinstance(sides, Tensor) else sides, np.float64)
        given = given.reshape(-1)
        largest = torch.finfo(dtype).max
        if np.isfinite(given).all() and (given > largest).any():
            raise ValueError(
                f"sides must be at most {largest:g} (the largest {dtype}), got {given.tolist()}"
            )
        raise ValueError(f"sides must be positive and finite, got {given.tolist()}")
    if s.numel() > 1 and not bool((s[1:] > s[:-1]).all()):
        raise ValueError(f"sides must be strictly increasing, got {s.tolist()}")
    return s


def check_flag(value: object, name: str) -> bool:
    """``value`` if it is True or False (numpy's too): ``"no"`` or 1 would be taken as true.

    The one check of a flag (:func:`mistnet.validate.flag` is this one).

    Raises:
        TypeError: ``"<name> must be True or False, got <value!r>"``.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_nonempty(x: Tensor, name: str, expected: str, dims: str) -> Tensor:
    """Raise ``ValueError`` if a dimension of ``x`` named in ``dims`` is empty (a shape check).

    ``dims`` spells the dimensions of ``expected`` that need a size >= 1, e.g. ``"S"`` or
    ``"C, H, W"``; ``expected`` lists them in order (``"(B, C, H, W)"``).
    """
    names = [d.strip() for d in expected.strip("()").split(",")]
    if any(x.shape[names.index(d.strip())] < 1 for d in dims.split(",")):
        raise ValueError(
            f"{name} must have shape {expected} with {dims} >= 1, got {tuple(x.shape)}"
        )
    return x


def check_spatial(x: Tensor, name: str, expected: str) -> Tensor:
    """Raise ``ValueError`` if ``x``'s last two dimensions (H, W) are empty (a shape check)."""
    return check_nonempty(x, name, expected, "H, W")


def shown(value: object) -> str:
    """``repr(value)`` as a message quotes it, an integer beyond 64 bits by its size: Python
    refuses to write one of more than 4,300 digits ("Exceeds the limit ... for integer string
    conversion", naming no argument), and hundreds of digits would bury the message.

    Example:
        >>> shown(3), shown(2**64), shown(10**5000)
        ('3', 'an integer of 65 bits', 'an integer of 16610 bits')
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        if int(value).bit_length() > 64:
            return f"an integer of {int(value).bit_length()} bits"
    return repr(value)


def as_integer(value: object) -> int | None:
    """``value`` as an ``int`` if it is an integer: Python's, numpy's, or a 0-d integer tensor
    or array (a ``k`` computed with torch); None for anything else: a bool (numpy's, a bool
    tensor), a float, a string, a tensor of one or more dimensions, a meta tensor. The one
    test of an integer argument: :func:`check_int` and :mod:`mistnet.validate`'s ``seed``,
    ``threads``, ``typed_value`` (and :func:`mistnet.evaluation.evaluate_run`).

    Example:
        >>> as_integer(torch.tensor(2)), as_integer(np.int64(3)), as_integer(np.True_)
        (2, 3, None)
        >>> as_integer(2.0), as_integer(torch.tensor([2])), as_integer("2")
        (None, None, None)
    """
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, Tensor) and (
        value.ndim != 0 or value.dtype == torch.bool or value.is_meta
    ):
        return None
    try:
        return operator.index(value)  # a 0-d numpy array: its integer; of floats, TypeError
    except TypeError:
        return None


def as_real(value: object) -> float | None:
    """``value`` as a ``float`` if it is a real number: Python's or numpy's, or a 0-d integer or
    floating tensor or array (a rate computed with torch); None for anything else: a bool, a
    string, a complex number, a tensor of one or more dimensions, a meta tensor. An integer
    beyond floats is infinite. Reads a tensor's value: for settings, not per-step arguments.

    Example:
        >>> as_real(torch.tensor(0.5)), as_real(np.float32(2)), as_real(np.array(3))
        (0.5, 2.0, 3.0)
        >>> as_real(True), as_real(torch.tensor([0.5])), as_real("1"), as_real(10**400)
        (None, None, None, inf)
    """
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, Tensor):
        if value.ndim != 0 or value.is_meta or value.dtype == torch.bool or value.is_complex():
            return None
        value = value.item()
    elif isinstance(value, np.ndarray):
        if value.ndim != 0 or value.dtype.kind not in "iuf":
            return None
        value = value.item()
    if not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond floats
        return math.inf if value > 0 else -math.inf


def check_int(
    value: object,
    name: str,
    low: int = 1,
    high: int | None = None,
    *,
    odd: bool = False,
    high_text: str | None = None,
) -> int:
    """``value`` as an ``int`` if it is an integer in ``[low, high]`` (odd if ``odd``).

    Python, numpy and 0-d integer tensor integers are taken (:func:`as_integer`); a bool, a
    float or a bool tensor is refused. ``high_text`` spells the upper bound, e.g. ``"H*W=16"``.
    """
    n = as_integer(value)
    if n is None or n < low or (high is not None and n > high) or (odd and n % 2 == 0):
        bound = f">= {low}" if high is None else f"in [{low}, {high_text or high}]"
        raise ValueError(
            f"{name} must be {'an odd' if odd else 'an'} integer {bound}, got {shown(value)}"
        )
    return n


def check_number(
    value: object, name: str, *, positive: bool, high: float = math.inf, high_text: str = ""
) -> float:
    """``value`` as a ``float`` if it is a finite real number ``> 0`` (``>= 0`` unless ``positive``)
    and ``<= high``; ``high_text`` spells a finite ``high``, e.g. ``"65504 (the largest float16)"``.

    Python and numpy scalars are taken; a bool or a tensor is refused (reading a tensor's value
    would wait for the GPU).
    """
    x = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            x = float(value)
        except OverflowError:  # an int beyond float
            x = math.inf
    if not math.isfinite(x) or not (x > 0 if positive else x >= 0) or x > high:
        bound = "> 0" if positive else ">= 0"
        if x > high and math.isfinite(x):
            bound += f" and <= {high_text or f'{high:g}'}"
        raise ValueError(f"{name} must be a finite number {bound}, got {shown(value)}")
    return x
