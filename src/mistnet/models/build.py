"""``build_model``: the only place that turns a :class:`~mistnet.config.ModelConfig` into modules."""

from __future__ import annotations

import torch
from torch import nn

from mistnet.config import ModelConfig
from mistnet.models.baselines import ChannelWiseHeatmap
from mistnet.models.heatmap import HeatmapNet
from mistnet.models.mist import MIST, ChannelWiseMIST, GridMIST, PatchModel
from mistnet.models.patch import PatchAutoencoder, PatchClassifier
from mistnet.torchstate import float32_default, require_real_default_device


def build_task_net(cfg: ModelConfig) -> nn.Module:
    """The patch network T_tau shared across patches: classifier or auto-encoder."""
    sizes = dict(
        patch_size=cfg.patch_size,
        base_width=cfg.patch_base_width,
        levels=cfg.patch_levels,
        blocks=cfg.patch_blocks,
    )
    if cfg.task == "classify":
        return PatchClassifier(cfg.in_channels, cfg.num_classes, **sizes)
    return PatchAutoencoder(cfg.in_channels, output=cfg.output, **sizes)


def build_model(cfg: ModelConfig, method: str = "mist") -> PatchModel:
    """Build the model a training ``method`` needs.

    ``mist`` and ``supervised`` share the MIST architecture; ``channelwise`` swaps the heatmap
    network for a K-channel soft-argmax detector; ``grid`` tiles each image with 3 x 3 cells.

    Raises:
        TypeError: ``cfg`` is no :class:`~mistnet.config.ModelConfig` (a whole ``Config``: pass
            its ``.model``, and its ``.train.method`` as ``method``).
        ValueError: an unknown ``method``, before any network is built (drawing its weights
            from torch's generator), or what the networks refuse of ``cfg`` (which
            :func:`mistnet.config.validate` refuses first, as the commands do).
    """
    if not isinstance(cfg, ModelConfig):  # a Config: an AttributeError naming patch_size
        raise TypeError(f"cfg must be a ModelConfig (a Config's model), got {type(cfg).__name__}")
    if method not in ("mist", "supervised", "channelwise", "grid"):
        raise ValueError(
            f"unknown method {method!r}; expected mist, supervised, channelwise or grid"
        )
    task_net = build_task_net(cfg)
    common = dict(
        patch_size=cfg.patch_size,
        softmax_window=cfg.softmax_window,
        softmax_strength=cfg.softmax_strength,
        softmax_eps=cfg.softmax_eps,
        nms_window=cfg.nms_window,
        background=cfg.background,
    )
    body = dict(width=cfg.heatmap_width, depth=cfg.heatmap_depth, dilations=cfg.heatmap_dilations)
    if method in ("mist", "supervised"):
        heat = HeatmapNet(cfg.in_channels, cfg.factors, **body)
        sides = heat.sides(cfg.base_side)
        return MIST(heat, task_net, task=cfg.task, k=cfg.k, sides=sides, **common)
    if method == "channelwise":
        heat = ChannelWiseHeatmap(cfg.in_channels, cfg.k, side=cfg.base_side, **body)
        return ChannelWiseMIST(
            heat, task_net, task=cfg.task, k=cfg.k, sides=(cfg.base_side,), **common
        )
    return GridMIST(
        task_net,
        rows=3,
        cols=3,
        task=cfg.task,
        patch_size=cfg.patch_size,
        background=cfg.background,
    )


def build_seeded(cfg: ModelConfig, method: str, seed: int) -> PatchModel:
    """:func:`build_model` initialised from ``seed`` on the CPU, in float32, whatever the
    caller's default device or dtype: the CPU generator alone is seeded (``torch.manual_seed``
    seeded the caller's CUDA ones too), and under a default device ``cuda``
    (``torch.set_default_device``) the weights were drawn from the CUDA generator, unseeded.
    Move the model to its device after."""
    require_real_default_device()
    with torch.device("cpu"), float32_default():
        torch.default_generator.manual_seed(seed)
        return build_model(cfg, method)


def build_to_load(cfg: ModelConfig, method: str = "mist") -> PatchModel:
    """:func:`build_seeded` with seed 0 (the same model every time) for a checkpoint to be
    loaded into, the caller's random generator left as it was."""
    with torch.random.fork_rng(devices=[]):
        return build_seeded(cfg, method, 0)
