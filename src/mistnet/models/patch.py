"""Patch task networks T_τ: auto-encoder and classifier (docs/design.md, The pipeline).

Both share :class:`PatchEncoder`: ``levels`` resolution levels, each a 1×1 projection to
``base_width · 2^ℓ`` channels, ``blocks`` pre-norm residual blocks and a 2×2 max-pool, then a
bottleneck of ``blocks`` more residual blocks. With the paper sizes (32×32 patches, 5 levels, base
width 8) the final map is 1×1×128 and the latent is a 128-vector. :class:`PatchDecoder` mirrors
the levels with 2×2 stride-2 transposed convolutions and has no skip connections, which would let
the auto-encoder copy its input (docs/design.md, Where the paper is silent).

Every network here accepts patches as ``(N, C, P, P)`` or, for convenience, as the sampler's
``(B, K, C, P, P)``; the leading dimensions are restored on the output. Classifier outputs are raw
logits (no softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mistnet.models.heatmap import HeatmapBody, check_images, check_like_weights, check_weights
from mistnet.ops._checks import check_int, check_memory, check_tensor, require_dense

__all__ = [
    "PatchAutoencoder",
    "PatchClassifier",
    "PatchDecoder",
    "PatchEncoder",
    "PreNormResBlock",
]

_OUTPUTS = ("sigmoid", "signed")


def _check_positive(**values: int) -> None:
    """Each value an integer >= 1 (``check_int``: 1.5 was taken, True was 1, "2" a raw
    comparison error); ``levels`` at most 12 (a channel count of ``base_width * 2**levels``)."""
    for name, value in values.items():
        check_int(value, name, 1, 12 if name == "levels" else None)


def _check_output(output: object) -> None:
    """``output`` one of :data:`_OUTPUTS` (the decoder's activation)."""
    if output not in _OUTPUTS:
        raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")


def _check_weights(in_channels: int, base_width: int, levels: int, blocks: int) -> None:
    """Refuse an encoder (or its mirror, the decoder) of more weights than this machine has the
    memory for (:func:`~mistnet.models.heatmap.check_weights`): ``base_width=10**6`` failed in
    torch's allocator. Counted per level: two 3×3 convolutions a block, the projection."""
    widths = [base_width * 2**level for level in range(levels)]
    count = sum(
        18 * blocks * w * w + 4 * c * w
        for c, w in zip([in_channels, *widths], widths, strict=False)
    )
    check_weights(
        count + 18 * blocks * widths[-1] ** 2,  # the bottleneck
        f"base_width={base_width}, levels={levels}, blocks={blocks}",
        "weights: lower base_width, levels or blocks",
    )


def _padded_size(patch_size: int, levels: int) -> int:
    """The side the networks run at: ``patch_size`` rounded up to a multiple of ``2**levels``.

    A patch whose side is not a multiple is zero-padded at its right and bottom edges before the
    encoder (what a box leaving the image reads anyway) and the decoder's output is cropped back.
    Odd sides matter: ``P = side + 1`` samples a box exactly on the pixel grid (S and S^-1 then
    resample nothing; benchmarks/recon_bound.py), which needs an odd P for an even box side.

    Example:
        >>> _padded_size(23, 2), _padded_size(32, 5)
        (24, 32)
    """
    step = 2**levels
    return -(-patch_size // step) * step


def _flatten_patches(patches: object, module: nn.Module, ranks: tuple[int, ...] = (4, 5)) -> Tensor:
    """``patches`` as ``(N, C, P, P)`` once ``module`` (its ``in_channels`` and ``patch_size``)
    can take them: ``(N, C, P, P)`` or ``(B, K, C, P, P)`` (of ``ranks``), then what
    :func:`~mistnet.models.heatmap.check_images` checks of images. Metadata only (no GPU sync).

    Raises:
        TypeError: no tensor (a list, a numpy array).
        ValueError: on the meta device or sparse, of another rank, channel count or side, not
            floating point, or on another device or of another dtype than ``module``'s weights.
    """
    C, P = module.in_channels, module.patch_size
    expected = f"(N, {C}, {P}, {P})" + (f" or (B, K, {C}, {P}, {P})" if 5 in ranks else "")
    if not isinstance(patches, Tensor):  # "'list' object has no attribute 'dim'"
        raise TypeError(
            f"patches must be a torch.Tensor of shape {expected}, got {type(patches).__name__}"
        )
    require_dense(patches, "patches")  # "Tensor on device cpu is not on the expected device meta!"
    if patches.dim() not in ranks:
        raise ValueError(f"patches must have shape {expected}, got {tuple(patches.shape)}")
    if patches.shape[-3] != C:
        raise ValueError(
            f"patches must have {C} channels, shape {expected}, got {tuple(patches.shape)}"
        )
    if patches.shape[-2:] != (P, P):
        raise ValueError(f"patches must be {P}×{P}, shape {expected}, got {tuple(patches.shape)}")
    x = patches.reshape(-1, *patches.shape[-3:])  # (N, C, P, P), N = B·K for 5-D input
    return check_images(x, module, C, "patches")  # "Input type (double) and bias type (float)"


class PreNormResBlock(nn.Module):
    """ResNet v1 block with layer norm before each conv (App. C of the paper).

    LN → conv3×3 → ReLU → LN → conv3×3 → add input → ReLU. LN is GroupNorm with one group
    (normalises over C×H×W, per-channel affine); the two norms are separate modules. Padding 1
    keeps H×W.

    Shape:
        - Input / output: ``(N, channels, H, W)``.

    Raises:
        ValueError: a ``channels`` that is no integer >= 1, or (an ``ArgumentError``) one of
            more weights than this machine has the memory for
            (:func:`~mistnet.models.heatmap.check_weights`).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        check_weights(  # two 3×3 convolutions: 100_000 channels failed in torch's allocator
            18 * self.channels**2,
            f"PreNormResBlock(channels={self.channels})",
            "weights: lower channels",
        )
        self.norm1 = nn.GroupNorm(1, channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(1, channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(N, channels, H, W)`` through the block, same shape.

        Raises:
            TypeError, ValueError: ``x`` no ``(N, channels, H, W)`` floating tensor on the
                block's device and of its dtype (:func:`~mistnet.models.heatmap.check_images`;
                metadata only). Before, torch's RuntimeError from group_norm ("Expected weight
                to be a vector of size equal to the number of channels") or "mixed dtype (CPU)".
        """
        check_images(x, self, self.channels, "x")
        y = F.relu(self.conv1(self.norm1(x)))
        y = self.conv2(self.norm2(y))
        return F.relu(y + x)


class PatchEncoder(nn.Module):
    r"""Convolutional patch encoder shared by the auto-encoder and the classifier.

    Level ℓ = 0 .. ``levels``−1 runs at resolution P/2^ℓ with c_ℓ = ``base_width``·2^ℓ channels:
    1×1 projection conv → ``blocks`` × :class:`PreNormResBlock` → 2×2 max-pool. A bottleneck of
    ``blocks`` residual blocks at the last width follows, and the final map is flattened.

    Args:
        in_channels: patch channels C.
        patch_size: patch side P; zero-padded to a multiple of ``2**levels`` inside.
        base_width: channels of the first level.
        levels: number of down-sampling levels.
        blocks: residual blocks per level and in the bottleneck.

    Attributes:
        latent_dim: c_last · ⌈P / 2^levels⌉², e.g. 128 for the paper sizes.
        out_channels, out_size: shape of the bottleneck map before flattening.

    Shape:
        - Input: ``(N, in_channels, P, P)``.
        - Output: ``(N, latent_dim)``.

    Raises:
        ValueError: a size that is no integer >= 1 (naming it), or weights this machine has not
            the memory for (``base_width=10**6``), naming the sizes.

    Example:
        >>> enc = PatchEncoder(in_channels=1)
        >>> enc(torch.rand(3, 1, 32, 32)).shape
        torch.Size([3, 128])
    """

    def __init__(
        self,
        in_channels: int,
        patch_size: int = 32,
        base_width: int = 8,
        levels: int = 5,
        blocks: int = 3,
    ) -> None:
        super().__init__()
        _check_positive(
            in_channels=in_channels,
            patch_size=patch_size,
            base_width=base_width,
            levels=levels,
            blocks=blocks,
        )
        _check_weights(in_channels, base_width, levels, blocks)
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.base_width = base_width
        self.pad = _padded_size(patch_size, levels) - patch_size
        stages: list[nn.Module] = []
        channels = in_channels
        for level in range(levels):
            width = base_width * 2**level
            stages.append(nn.Conv2d(channels, width, kernel_size=1))
            stages.extend(PreNormResBlock(width) for _ in range(blocks))
            stages.append(nn.MaxPool2d(2))
            channels = width
        stages.extend(PreNormResBlock(channels) for _ in range(blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = channels
        self.out_size = (patch_size + self.pad) // 2**levels
        self.latent_dim = channels * self.out_size**2

    def forward(self, patches: Tensor) -> Tensor:
        """The latents ``(N, latent_dim)`` of ``patches`` ``(N, C, P, P)``.

        Raises:
            TypeError, ValueError: patches the encoder cannot take, naming ``patches``: no
                tensor, on the meta device, of another shape, integer, or another dtype
                (float64, bfloat16) or device than its weights; or so many that its first
                feature maps would not fit in memory (:func:`~mistnet.ops._checks.check_memory`).
        """
        x = _flatten_patches(patches, self, ranks=(4,))
        N, _, P, _ = x.shape
        first = (N, self.base_width, P + self.pad, P + self.pad)  # the least it holds at once
        # a million patches of a 1000×1000 tiling failed in torch's allocator (65 GB)
        check_memory(
            first,
            x,
            f"patches: the encoder's first feature maps (N, base_width, P, P) = {first}",
            "patches: lower B or K, base_width or patch_size",
        )
        if self.pad:
            x = F.pad(x, (0, self.pad, 0, self.pad))
        return self.stages(x).flatten(1)  # (N, latent_dim)


class PatchDecoder(nn.Module):
    r"""Mirror of :class:`PatchEncoder`: latent vector → patch, without skip connections.

    The latent is reshaped to the encoder's bottleneck map ``(N, c_last, r, r)``,
    r = ⌈P / 2^levels⌉. Decoder level j = 0 .. ``levels``−1 (coarse to fine) is a 2×2 stride-2
    transposed conv to c = ``base_width``·2^(levels−1−j) channels followed by ``blocks``
    :class:`PreNormResBlock`; for the paper sizes that gives 128 channels at 2×2, then 64, 32, 16
    and 8 at 32×32. A final 1×1 conv maps to ``out_channels`` and the output activation is applied.

    Args:
        out_channels: patch channels C.
        patch_size: patch side P; the output is decoded at the encoder's padded side and cropped.
        base_width: channels of the finest level (the encoder's first level).
        levels: number of up-sampling levels.
        blocks: residual blocks per level.
        output: ``"sigmoid"`` for intensities in [0, 1], or ``"signed"`` for 2·sigmoid − 1 in
            [−1, 1] (signed Gabor patches; docs/design.md, Data).

    Shape:
        - Input: ``(N, latent_dim)`` with latent_dim = base_width·2^(levels−1)·r².
        - Output: ``(N, out_channels, P, P)``.

    Raises:
        ValueError: a size that is no integer >= 1 or an unknown ``output`` (naming it), or
            weights this machine has not the memory for (``base_width=10**6``).
    """

    def __init__(
        self,
        out_channels: int,
        patch_size: int = 32,
        base_width: int = 8,
        levels: int = 5,
        blocks: int = 3,
        output: str = "sigmoid",
    ) -> None:
        super().__init__()
        _check_positive(
            out_channels=out_channels,
            patch_size=patch_size,
            base_width=base_width,
            levels=levels,
            blocks=blocks,
        )
        _check_weights(out_channels, base_width, levels, blocks)
        _check_output(output)
        self.output = output
        self.in_channels = base_width * 2 ** (levels - 1)
        self.patch_size = patch_size
        self.in_size = _padded_size(patch_size, levels) // 2**levels
        self.latent_dim = self.in_channels * self.in_size**2
        stages: list[nn.Module] = []
        channels = self.in_channels
        for level in reversed(range(levels)):
            width = base_width * 2**level
            stages.append(nn.ConvTranspose2d(channels, width, kernel_size=2, stride=2))
            stages.extend(PreNormResBlock(width) for _ in range(blocks))
            channels = width
        stages.append(nn.Conv2d(channels, out_channels, kernel_size=1))
        self.stages = nn.Sequential(*stages)

    def forward(self, latent: Tensor) -> Tensor:
        """The patches ``(N, out_channels, P, P)`` decoded from ``latent`` ``(N, latent_dim)``.

        Raises:
            TypeError: ``latent`` no tensor (a list: "'list' object has no attribute 'dim'").
            ValueError: ``latent`` on the meta device or sparse, of another shape, not floating
                point, or on another device or of another dtype than the decoder's weights
                (:func:`~mistnet.models.heatmap.check_like_weights`). Metadata only.
        """
        expected = f"(N, {self.latent_dim})"
        if not isinstance(latent, Tensor):
            raise TypeError(
                f"latent must be a torch.Tensor of shape {expected}, got {type(latent).__name__}"
            )
        check_tensor(latent, "latent", 2, expected)  # meta was named "x", int64 a raw error
        if latent.shape[1] != self.latent_dim:
            raise ValueError(f"latent must have shape {expected}, got {tuple(latent.shape)}")
        check_like_weights(latent, self, "latent")
        N = latent.shape[0]
        x = latent.reshape(N, self.in_channels, self.in_size, self.in_size)  # (N, c_last, r, r)
        z = self.stages(x)[..., : self.patch_size, : self.patch_size]  # (N, C, P, P)
        if self.output == "signed":
            return 2.0 * torch.sigmoid(z) - 1.0
        return torch.sigmoid(z)


class PatchAutoencoder(nn.Module):
    r"""Patch auto-encoder AE_τ for the reconstruction task (docs/design.md, The pipeline).

    Args:
        in_channels: patch channels C (input and output).
        patch_size: patch side P (any; see :class:`PatchEncoder`).
        base_width: channels of the first encoder level; doubles per level.
        levels: down/up-sampling levels.
        blocks: residual blocks per level (and in the encoder bottleneck).
        output: ``"sigmoid"`` (default, [0, 1]) or ``"signed"`` (2·sigmoid − 1, [−1, 1]).

    Shape:
        - Input: ``(N, C, P, P)`` or ``(B, K, C, P, P)``.
        - Output: reconstructions of the same shape.

    Raises:
        ValueError: a size that is no integer >= 1 or an unknown ``output`` (naming it), or
            weights this machine has not the memory for (``base_width=10**6``), naming the
            sizes; all before any weight is drawn from torch's generator.

    Example:
        >>> ae = PatchAutoencoder(in_channels=1, levels=3, blocks=1)
        >>> ae(torch.rand(2, 9, 1, 32, 32)).shape
        torch.Size([2, 9, 1, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        patch_size: int = 32,
        base_width: int = 8,
        levels: int = 5,
        blocks: int = 3,
        output: str = "sigmoid",
    ) -> None:
        super().__init__()
        # the decoder's own check came after the encoder was built, drawing from torch's
        # generator; the encoder checks the sizes (the decoder's are the same) before it builds
        _check_output(output)
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.encoder = PatchEncoder(in_channels, patch_size, base_width, levels, blocks)
        self.decoder = PatchDecoder(in_channels, patch_size, base_width, levels, blocks, output)

    def forward(self, patches: Tensor) -> Tensor:
        """Reconstructions of ``patches`` ``(N, C, P, P)`` or ``(B, K, C, P, P)``, same shape.

        Raises:
            TypeError, ValueError: patches the auto-encoder cannot take, as
                :class:`PatchEncoder` names them.
        """
        x = _flatten_patches(patches, self)  # (N, C, P, P)
        recon = self.decoder(self.encoder(x))  # (N, C, P, P)
        return recon.reshape(patches.shape)  # (N, C, P, P) or (B, K, C, P, P)


class PatchClassifier(nn.Module):
    r"""Patch classifier T_τ: :class:`PatchEncoder` + Linear(latent_dim, num_classes).

    Returns raw logits; apply ``softmax(dim=-1)`` (or use :mod:`mistnet.losses`) for p_k.

    Args:
        in_channels: patch channels C.
        num_classes: number of classes (10 digits).
        patch_size, base_width, levels, blocks: encoder sizes, see :class:`PatchEncoder`.

    Shape:
        - Input: ``(N, C, P, P)`` or ``(B, K, C, P, P)``.
        - Output: ``(N, num_classes)`` or ``(B, K, num_classes)`` logits.

    Raises:
        ValueError: a size that is no integer >= 1 (naming it), or weights this machine has not
            the memory for (``base_width=10**6``, ``num_classes=10**12``), naming the sizes.

    Example:
        >>> clf = PatchClassifier(in_channels=3)
        >>> clf(torch.rand(2, 9, 3, 32, 32)).shape
        torch.Size([2, 9, 10])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int = 10,
        patch_size: int = 32,
        base_width: int = 8,
        levels: int = 5,
        blocks: int = 3,
    ) -> None:
        super().__init__()
        sizes = dict(patch_size=patch_size, base_width=base_width, levels=levels, blocks=blocks)
        _check_positive(in_channels=in_channels, num_classes=num_classes, **sizes)
        side = _padded_size(patch_size, levels) // 2**levels  # the encoder's last map
        check_weights(  # the head's, before the encoder's are built
            base_width * 2 ** (levels - 1) * side**2 * num_classes,
            f"the head of num_classes={num_classes}, patch_size={patch_size}, "
            f"base_width={base_width}",
            "weights: lower num_classes, patch_size or base_width",
        )
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.num_classes = num_classes
        self.encoder = PatchEncoder(in_channels, patch_size, base_width, levels, blocks)
        self.head = nn.Linear(self.encoder.latent_dim, num_classes)

    def forward(self, patches: Tensor) -> Tensor:
        """Logits ``(N, classes)`` or ``(B, K, classes)`` of ``patches`` ``(N, C, P, P)`` or
        ``(B, K, C, P, P)``.

        Raises:
            TypeError, ValueError: patches the classifier cannot take, as
                :class:`PatchEncoder` names them.
        """
        x = _flatten_patches(patches, self)  # (N, C, P, P)
        logits = self.head(self.encoder(x))  # (N, num_classes)
        return logits.reshape(*patches.shape[:-3], self.num_classes)  # (N | B, K, classes)


#: The task each of mistnet's task networks does (a network of the user's may do either).
_TASK_OF = {PatchClassifier: "classify", PatchAutoencoder: "reconstruct"}


def check_task_net(task_net: nn.Module, task: str, patch_size: int, heatmap_net: nn.Module) -> None:
    """Refuse a task network of mistnet's that does the other task, that was built for
    patches of another side than ``patch_size`` (the side it keeps as ``patch_size``), or for
    patches of other channels than the images a ``heatmap_net`` of mistnet's takes. Before, a
    classifier's logits were pasted back as patches (or decoded patches read as logits) at the
    first forward, and a side or channel count that differs was refused only there
    ("patches must be 32×32", "patches must have 1 channels": an argument never passed).

    Raises:
        ValueError: naming ``task`` (or ``patch_size``, or both networks' channels) and
            ``task_net``'s class.
    """
    name = type(task_net).__name__
    does = next((t for cls, t in _TASK_OF.items() if isinstance(task_net, cls)), task)
    if does != task:
        wanted = next(cls.__name__ for cls, t in _TASK_OF.items() if t == task)
        raise ValueError(
            f"task={task!r} needs a {wanted} as task_net, got a {name} "
            f"(which does {does!r}); pass task={does!r} or another task_net"
        )
    side = task_net.patch_size if isinstance(task_net, tuple(_TASK_OF)) else patch_size
    if side != patch_size:
        raise ValueError(
            f"patch_size={patch_size} but task_net (a {name}) takes {side}×{side} patches; "
            f"pass patch_size={side} or build the {name} with patch_size={patch_size}"
        )
    # HeatmapNet and ChannelWiseHeatmap keep their image channels in their HeatmapBody
    body = next((m for m in heatmap_net.modules() if isinstance(m, HeatmapBody)), None)
    if body is not None and isinstance(task_net, tuple(_TASK_OF)):
        if body.in_channels != task_net.in_channels:
            raise ValueError(
                f"heatmap_net takes images of {body.in_channels} channels but task_net (a "
                f"{name}) patches of {task_net.in_channels}; build both for the images' channels"
            )
