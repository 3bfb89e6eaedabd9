"""Multi-scale heatmap network H_η (docs/design.md, The pipeline).

``HeatmapBody`` is the fully convolutional body of the official code's MNIST detector (reflection
padding, input BatchNorm, 1×1 stem, residual blocks of *valid* 3×3 convolutions, linear 1×1 head)
with one deliberate change (docs/design.md, Where the paper is silent): the two convolutions of a
block have separate GroupNorm modules instead of one shared by accident. ``HeatmapNet`` runs that
body, with the same weights, on an image pyramid and returns one logit map per scale at full
resolution.

Both return raw logits. The local spatial softmax, the scale pooling and the top-K extraction live
in :mod:`mistnet.ops`; keeping them out of the network keeps it a plain regressor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mistnet.ops._checks import check_flag, check_int, check_memory, check_number, require_dense

__all__ = ["HeatmapBody", "HeatmapNet", "check_images", "check_like_weights", "check_weights"]


def check_weights(count: int, what: str, fewer: str) -> None:
    """Refuse, before it is built, a network of about ``count`` weights (of torch's default
    dtype, on its default device) that this machine has not the memory for
    (:func:`~mistnet.ops._checks.check_memory`): torch's allocator failed ("DefaultCPUAllocator:
    can't allocate memory") or the host swapped. Below 1 GB nothing is read.

    Raises:
        ArgumentError: a ``ValueError`` naming ``what`` (the arguments) and what to lower.
    """
    check_memory((count,), torch.empty(0), f"{what}: its {count:,} weights", fewer)


def check_images(
    images: object, module: nn.Module, channels: int | None = None, name: str = "images"
) -> Tensor:
    """``images`` once ``module`` can take them: the one check of images that
    :class:`HeatmapBody`, :class:`HeatmapNet` and :class:`~mistnet.models.MIST` (its
    ``forward``, ``log_heatmaps`` and ``run_task``) share, before torch fails deep inside
    ("batch_norm" not implemented for 'Long', "'list' object has no attribute 'dim'").
    Metadata only: no value is read (no GPU synchronisation).

    Args:
        images: the argument, ``(B, C, H, W)``.
        module: the network that runs on them; its first weight gives the device and dtype
            (any floating dtype under autocast, which casts them itself).
        channels: C, where the network fixes it.
        name: the argument's name in messages.

    Raises:
        TypeError: no tensor (a list, a numpy array).
        ValueError: on the meta device or sparse, not 4-D (or not ``channels`` channels), not
            floating point (an integer or bool tensor), or on another device or of another
            dtype (bfloat16 for float32 weights) than ``module``'s weights.
    """
    shape = f"(B, {'C' if channels is None else channels}, H, W)"
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a {shape} torch.Tensor, got {type(images).__name__}")
    require_dense(images, name)
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(images.shape)}")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channels, shape {shape}, got {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"{name} must be floating point in [0, 1], got {images.dtype} (scale 0..255 "
            f"pixels: {name}.float() / 255)"
        )
    return check_like_weights(images, module, name)


def check_like_weights(x: Tensor, module: nn.Module, name: str) -> Tensor:
    """``x`` once it is on ``module``'s device and of its dtype (the first weight's; any
    floating dtype under autocast, which casts itself): the tail of :func:`check_images`, for
    inputs that are no images (:class:`~mistnet.models.PatchDecoder`'s latent). Metadata only.

    Raises:
        ValueError: on another device, or of another dtype, naming ``name`` and the fix.
    """
    weight = next(module.parameters(), None)
    if weight is None:
        return x
    if x.device != weight.device:
        raise ValueError(
            f"{name} are on {x.device} but the model on {weight.device}: "
            f"{name}.to('{weight.device}') or model.to('{x.device}')"
        )
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"{name} are {x.dtype} but the model's weights {weight.dtype}: "
            f"{name}.to({weight.dtype}) or model.to({x.dtype})"
        )
    return x


class _ValidResBlock(nn.Module):
    """Residual block of two unpadded 3×3 convolutions; shrinks H and W by 4.

    conv → GN → ReLU → conv → GN → add the skip centre-cropped by 2 px per side → ReLU.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, kernel_size=3)
        self.norm1 = nn.GroupNorm(1, width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3)
        self.norm2 = nn.GroupNorm(1, width)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + x[:, :, 2:-2, 2:-2])


class _DilatedResBlock(nn.Module):
    """Residual block that keeps H and W: a 3×3 convolution dilated by ``dilation``, then a plain
    3×3 one, each reflection-padded (no zeros, so no border signal) and followed by GroupNorm.

    conv(dilation d) → GN → ReLU → conv → GN → add the input → ReLU; receptive field 2d + 3.
    The undilated second convolution fills the holes the dilated one leaves (no gridding).
    """

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            width, width, 3, padding=dilation, dilation=dilation, padding_mode="reflect"
        )
        self.norm1 = nn.GroupNorm(1, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, padding_mode="reflect")
        self.norm2 = nn.GroupNorm(1, width)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + x)


def _check_dilations(dilations: object, depth: int) -> tuple[int, ...]:
    """``dilations`` as a tuple: empty, or ``depth`` integers >= 1 (1.5 was truncated to 1)."""
    try:
        if isinstance(dilations, str | bytes):
            raise TypeError
        items = tuple(dilations)
    except TypeError:
        raise TypeError(
            f"dilations must be a sequence of integers >= 1, got {dilations!r}"
        ) from None
    dilations = tuple(check_int(d, "dilations") for d in items)
    if dilations and len(dilations) != depth:
        raise ValueError(
            f"dilations must be {depth} integers >= 1 (one per block), got {dilations}"
        )
    return dilations


def _check_factors(factors: object) -> tuple[float, ...]:
    """``factors`` as floats in (0, 1], strictly decreasing (a string was read as its characters,
    ``True`` as 1.0)."""
    try:
        if isinstance(factors, str | bytes) or (
            isinstance(factors, Tensor)
            and (factors.dtype == torch.bool or factors.is_complex() or factors.ndim != 1)
        ):
            raise TypeError
        # a tensor's items were 0-d tensors, refused as "got tensor(1.)": its numbers (at
        # construction, reading values is fine)
        items = tuple(factors.tolist() if isinstance(factors, Tensor) else factors)
    except TypeError:
        raise TypeError(
            f"factors must be a sequence of numbers in (0, 1], got {factors!r}"
        ) from None
    if not items:
        raise ValueError("factors must contain at least one scale factor, got ()")
    out = tuple(check_number(f, "factors", positive=True) for f in items)
    if any(f > 1.0 for f in out):
        raise ValueError(f"factors must lie in (0, 1], got {out}")
    if any(a <= b for a, b in zip(out, out[1:], strict=False)):
        raise ValueError(f"factors must be strictly decreasing, got {out}")
    return out


def receptive_field(depth: int, dilations: Sequence[int] = ()) -> int:
    """Receptive field in pixels of a :class:`HeatmapBody` (``4·depth + 1`` without dilations).

    Example:
        >>> receptive_field(4), receptive_field(4, (1, 2, 4, 8))
        (17, 39)
    """
    if not dilations:
        return 4 * depth + 1
    return 1 + sum(2 * d + 2 for d in dilations)


def smallest_side(depth: int, dilations: Sequence[int] = ()) -> int:
    """The fewest pixels on a side an image a :class:`HeatmapBody` scores can have: one more
    than its widest reflection padding (``2·depth`` at the input, else the largest dilation,
    padded inside each block), which must mirror pixels of the image.

    Example:
        >>> smallest_side(4), smallest_side(4, (1, 2, 4, 8))
        (9, 9)
    """
    return 1 + (max(dilations) if dilations else 2 * depth)


class HeatmapBody(nn.Module):
    r"""Fully convolutional keypoint-score network without absolute-position information.

    Layers: reflection pad by ``2 * depth`` → BatchNorm2d(``in_channels``) → 1×1 conv to ``width``
    → ``depth`` residual blocks of valid 3×3 convolutions with GroupNorm(1, ``width``) after each
    convolution → 1×1 conv to ``out_channels`` (linear logits). Each block shrinks the map by 4 px,
    which the padding exactly compensates, so the output has the input's H×W. The receptive field
    is ``4 * depth + 1`` pixels (17 for the default depth).

    With ``dilations`` (one per block, not in the paper) the blocks are dilated instead
    (:class:`_DilatedResBlock`, reflection padding inside each convolution): the same cost per
    block, a receptive field of ``1 + sum(2 d + 2)`` pixels (39 for ``(1, 2, 4, 8)``, 17 for
    the plain body), see :func:`receptive_field`.

    Because the only padding is by reflection and no convolution pads with zeros, the network
    cannot see absolute position: translating the input translates the output, except within
    half the receptive field of the border where the reflected content differs.

    Args:
        in_channels: image channels C.
        width: channels of the residual blocks.
        depth: number of residual blocks.
        out_channels: channels of the output logit map (1 for MIST, K for the channel-wise
            baseline).
        channels_last: keep the weights and activations in the ``channels_last`` memory format.
            The result is the same up to float rounding; at the CPU presets' width 8 the
            convolutions and their backward ran 1.3-1.5x faster on 2 CPU cores, at the paper's
            width 32 no measurably faster (``benchmarks/step_speed.py``). The output is returned
            in the usual contiguous format either way.

    Shape:
        - Input: ``(B, in_channels, H, W)`` with H, W > ``2 * depth`` (reflection padding limit).
        - Output: ``(B, out_channels, H, W)`` raw logits.

    Raises:
        TypeError, ValueError: a size that is no integer >= 1 (naming it), or weights this
            machine has not the memory for (:func:`check_weights`, naming the sizes).

    Example:
        >>> body = HeatmapBody(in_channels=1)
        >>> body(torch.rand(2, 1, 80, 80)).shape
        torch.Size([2, 1, 80, 80])
    """

    def __init__(
        self,
        in_channels: int,
        width: int = 32,
        depth: int = 4,
        out_channels: int = 1,
        channels_last: bool = True,
        dilations: Sequence[int] = (),
    ) -> None:
        super().__init__()
        in_channels, width, depth, out_channels = (
            check_int(value, name)  # "1" and 1.5 failed deep in torch
            for name, value in (
                ("in_channels", in_channels),
                ("width", width),
                ("depth", depth),
                ("out_channels", out_channels),
            )
        )
        channels_last = check_flag(channels_last, "channels_last")
        dilations = _check_dilations(dilations, depth)
        check_weights(  # two 3×3 convolutions a block, the 1×1 stem and head
            (18 * depth * width + in_channels + out_channels) * width,
            f"HeatmapBody(width={width}, depth={depth}, out_channels={out_channels})",
            "weights: lower width, depth or out_channels",
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.pad = 0 if dilations else 2 * depth
        self.padding = nn.ReflectionPad2d(self.pad)
        self.input_norm = nn.BatchNorm2d(in_channels)
        self.stem = nn.Conv2d(in_channels, width, kernel_size=1)
        if dilations:
            blocks = [_DilatedResBlock(width, d) for d in dilations]
        else:
            blocks = [_ValidResBlock(width) for _ in range(depth)]
        self.blocks = nn.Sequential(*blocks)
        self.receptive_field = receptive_field(depth, dilations)
        self.smallest_side = smallest_side(depth, dilations)
        self.head = nn.Conv2d(width, out_channels, kernel_size=1)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, out_channels, H, W)`` of ``images`` ``(B, in_channels, H, W)``.

        Raises:
            TypeError, ValueError: images the body cannot take (:func:`check_images`), or
                smaller than its reflection padding.
        """
        check_images(images, self, self.in_channels)
        _, _, H, W = images.shape
        if min(H, W) < self.smallest_side:
            raise ValueError(
                f"images must be larger than the reflection padding {self.smallest_side - 1} px, "
                f"got H×W = {H}×{W}"
            )
        x = self.padding(images).contiguous(memory_format=self.memory_format)
        x = self.input_norm(x)  # (B, C, H + 2·pad, W + 2·pad)
        x = self.blocks(self.stem(x))  # (B, width, H, W)
        return self.head(x).contiguous()


class HeatmapNet(nn.Module):
    r"""Multi-scale heatmap network: one shared :class:`HeatmapBody` run on an image pyramid.

    For each factor f_s the image is downsampled with area interpolation to
    ``(round(f_s·H), round(f_s·W))``, the shared body produces a 1-channel logit map, and that
    map is upsampled bilinearly back to H×W. Convention: ``align_corners=False`` for both
    resampling steps, so a low-resolution pixel covers the same image area in both directions and
    pixel centres stay at integer full-resolution coordinates. Sharing the weights across scales
    keeps the network from favouring a scale (docs/design.md, The pipeline).

    Scale level s has box side σ_s = base_side / f_s (see :meth:`sides`). Factors must be strictly
    decreasing so that sides are strictly increasing (σ_1 < … < σ_S), as the top-K scale moment
    and the heatmap generator expect.

    Args:
        in_channels: image channels C.
        factors: pyramid factors f_s in (0, 1], strictly decreasing (a sequence or a 1-D
            tensor). ``(1.0,)`` for MNIST and Gabor, ``(0.5,)`` for SVHN, ``(1.0, 2**-0.5, 0.5)``
            for the multi-scale tests.
        width: channels of the body's residual blocks.
        depth: number of residual blocks in the body.
        channels_last: run the body in the ``channels_last`` memory format (see
            :class:`HeatmapBody`).
        dilations: the body's per-block dilations (empty: the paper's valid blocks).

    Shape:
        - Input: ``(B, in_channels, H, W)``; each downsampled side must exceed ``2 * depth``.
        - Output: ``(B, S, H, W)`` raw logits, S = ``len(factors)``.

    Raises:
        TypeError, ValueError: ``factors`` not decreasing in (0, 1], or a body size
            :class:`HeatmapBody` refuses (``width=10**6``: more weights than memory).

    Example:
        >>> net = HeatmapNet(in_channels=1, factors=(1.0, 0.5))
        >>> net(torch.rand(2, 1, 80, 80)).shape
        torch.Size([2, 2, 80, 80])
        >>> net.sides()
        (20.0, 40.0)
    """

    def __init__(
        self,
        in_channels: int,
        factors: Sequence[float] = (1.0,),
        width: int = 32,
        depth: int = 4,
        channels_last: bool = True,
        dilations: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.factors = factors = _check_factors(factors)
        self.body = HeatmapBody(
            in_channels,
            width=width,
            depth=depth,
            out_channels=1,
            channels_last=channels_last,
            dilations=dilations,
        )
        self.in_channels = self.body.in_channels  # checked there

    @property
    def num_scales(self) -> int:
        return len(self.factors)

    def sides(self, base_side: float = 20.0) -> tuple[float, ...]:
        """Box side σ_s = base_side / f_s in full-resolution pixels for each level (increasing)."""
        return tuple(base_side / f for f in self.factors)

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, S, H, W)`` of ``images`` ``(B, in_channels, H, W)``.

        Raises:
            TypeError, ValueError: images the network cannot take (:func:`check_images`: no
                tensor, integer, bfloat16 for float32 weights, on the meta device), or a
                pyramid level smaller than the body's reflection padding.
        """
        check_images(images, self, self.in_channels)
        _, _, H, W = images.shape
        maps = []
        for f in self.factors:  # S is a handful of pyramid levels, each of a different size
            if f == 1.0:
                x = images
            else:
                size = (max(1, round(f * H)), max(1, round(f * W)))
                x = F.interpolate(images, size=size, mode="area")  # (B, C, h_s, w_s)
            logits = self.body(x)  # (B, 1, h_s, w_s)
            if logits.shape[-2:] != (H, W):
                logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)
            maps.append(logits)
        return torch.cat(maps, dim=1)  # (B, S, H, W)
