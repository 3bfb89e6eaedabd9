"""Networks: heatmap network H_η, patch task networks T_τ and the baselines."""

from mistnet.models.baselines import ChannelWiseHeatmap, grid_keypoints, spatial_soft_argmax
from mistnet.models.heatmap import HeatmapBody, HeatmapNet
from mistnet.models.mist import MIST, ChannelWiseMIST, GridMIST, MISTOutput, PatchModel
from mistnet.models.patch import (
    PatchAutoencoder,
    PatchClassifier,
    PatchDecoder,
    PatchEncoder,
    PreNormResBlock,
)

__all__ = [
    "ChannelWiseHeatmap",
    "HeatmapBody",
    "HeatmapNet",
    "MIST",
    "ChannelWiseMIST",
    "GridMIST",
    "MISTOutput",
    "PatchModel",
    "PatchAutoencoder",
    "PatchClassifier",
    "PatchDecoder",
    "PatchEncoder",
    "PreNormResBlock",
    "grid_keypoints",
    "spatial_soft_argmax",
]
