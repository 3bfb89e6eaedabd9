"""The models refuse, when built, parts that do not fit together (a heatmap network of the other
kind, a K or a patch side that differs), and at the forward what would fail deep in torch."""

import pytest
import torch

from mistnet.models import (
    MIST,
    ChannelWiseHeatmap,
    ChannelWiseMIST,
    GridMIST,
    HeatmapNet,
    PatchAutoencoder,
    PatchClassifier,
    PatchModel,
    PreNormResBlock,
)


def _task(patch_size: int = 8) -> PatchClassifier:
    return PatchClassifier(1, patch_size=patch_size, base_width=4, levels=1, blocks=1)


def _channelwise(k: int = 2) -> ChannelWiseHeatmap:
    return ChannelWiseHeatmap(1, k=k, width=4, depth=1)


def test_a_channel_wise_model_refuses_a_k_other_than_its_heatmaps():
    """Before: accepted; ``model.k`` said 3 and every forward returned 2 keypoints."""
    with pytest.raises(ValueError, match=r"^k=3 but heatmap_net has K=2 channels .*pass k=2"):
        ChannelWiseMIST(_channelwise(2), _task(), k=3, patch_size=8)
    images = torch.rand(1, 1, 24, 24)
    for k in (2, None):  # its own K, given or taken from the heatmap network
        model = ChannelWiseMIST(_channelwise(2), _task(), k=k, patch_size=8)
        assert model.k == 2
        assert model(images).keypoints.shape == (1, 2, 3)


def test_a_channel_wise_model_refuses_a_heatmap_network_of_logits():
    """Before: accepted; the forward raised AttributeError "'HeatmapNet' object has no attribute
    'logits'"."""
    message = r"^ChannelWiseMIST needs a ChannelWiseHeatmap as heatmap_net .*got a HeatmapNet;"
    with pytest.raises(TypeError, match=message):
        ChannelWiseMIST(HeatmapNet(1, width=4, depth=1), _task(), patch_size=8)


def test_mist_refuses_a_channel_wise_heatmap_saying_where_it_goes():
    """Before: accepted; the forward failed in the local softmax: "logits must have shape
    (B, S, H, W), got (1, 2, 3)", an argument the caller never passed."""
    message = r"^MIST needs a heatmap_net of \(B, S, H, W\) logits.*build a ChannelWiseMIST"
    with pytest.raises(TypeError, match=message):
        MIST(_channelwise(), _task(), patch_size=8)


@pytest.mark.parametrize(
    ("task", "task_net"),
    [
        ("classify", PatchClassifier(1, levels=1, blocks=1)),
        ("reconstruct", PatchAutoencoder(1, levels=1, blocks=1)),
    ],
)
def test_a_patch_size_other_than_the_task_networks_is_refused_naming_both(task, task_net):
    """Before: accepted; the first forward refused the patches ("patches must be 32×32")."""
    name = type(task_net).__name__
    message = f"^patch_size=16 but task_net \\(a {name}\\) takes 32×32 patches; pass patch_size=32"
    heat = HeatmapNet(1, width=4, depth=1)
    with pytest.raises(ValueError, match=message):
        MIST(heat, task_net, task=task, patch_size=16)
    with pytest.raises(ValueError, match=message):
        GridMIST(task_net, task=task, patch_size=16)


def test_a_grid_of_more_cells_than_pixels_is_refused_before_allocating():
    """Before: 1000×1000 cells of a 40×40 image failed in torch's allocator (65 GB); fewer
    ran, on cells smaller than a pixel."""
    model = GridMIST(_task(), rows=50, cols=50, patch_size=8)
    message = r"^rows=50, cols=50: 2,500 cells, more than the H\*W=1600 pixels of the images"
    with pytest.raises(ValueError, match=message):
        model(torch.rand(1, 1, 40, 40))
    assert model(torch.rand(1, 1, 50, 50)).keypoints.shape == (1, 2500, 3)  # one per pixel


def test_patches_whose_maps_would_not_fit_in_memory_are_refused_before_allocating(monkeypatch):
    """Before: the patches fitted, and the task network's first maps (8 channels each) failed
    in torch's allocator: "you tried to allocate 65536000000 bytes"."""
    monkeypatch.setattr("mistnet.ops._checks.MEMORY_CHECKED_FROM", 2**20)
    monkeypatch.setattr("mistnet.machine.available_memory", lambda: 40 * 10**6)  # 40 MB free
    model = GridMIST(PatchClassifier(1, levels=1, blocks=1), rows=50, cols=50)
    message = (
        r"^patches: the encoder's first feature maps \(N, base_width, P, P\) = "
        r"\(2500, 8, 32, 32\) need 81.9 MB of memory, more than the 40.0 MB available"
    )
    with pytest.raises(ValueError, match=message):
        model(torch.rand(1, 1, 50, 50))  # the patches, 30.7 MB with their grid, fit


@pytest.mark.parametrize(
    ("x", "message"),
    [
        # Before: torch's RuntimeError "Expected weight to be a vector of size equal to the
        # number of channels in input"
        (torch.rand(1, 3, 8, 8), r"^x must have 4 channels, shape \(B, 4, H, W\), got"),
        # Before: torch's RuntimeError "mixed dtype (CPU): all inputs must share same datatype"
        (torch.rand(1, 4, 8, 8, dtype=torch.float64), "^x are torch.float64 but the model's"),
    ],
)
def test_a_residual_block_refuses_input_it_cannot_take_naming_it(x, message):
    block = PreNormResBlock(4)
    with pytest.raises(ValueError, match=message):
        block(x)
    assert block(torch.rand(1, 4, 8, 8)).shape == (1, 4, 8, 8)


def test_the_abstract_patch_model_cannot_be_built():
    """Before: built; its forward raised NotImplementedError ("missing the required
    "forward" function")."""
    message = r"^PatchModel is abstract .*build a MIST, ChannelWiseMIST or GridMIST$"
    with pytest.raises(TypeError, match=message):
        PatchModel(HeatmapNet(1, width=4, depth=1), _task(), patch_size=8)


def _mist() -> MIST:
    return MIST(HeatmapNet(1, width=4, depth=1), _task(), k=3, sides=(10.0,), patch_size=8)


@pytest.mark.parametrize(
    ("logits", "keypoints", "message"),
    [
        # Before: RuntimeError "index -9223372036854775808 is out of bounds for dimension 1"
        (None, torch.full((1, 3, 3), float("nan")), "^keypoints contains NaN or infinite values$"),
        # Before: RuntimeError "Index tensor must have the same number of dimensions as input"
        (None, torch.zeros(3, 3), r"^keypoints must have shape \(B, K, 3\) holding"),
        (None, [[[8.0, 8.0, 10.0]]], "^keypoints must be a torch.Tensor of shape"),
        (None, torch.zeros(1, 3, 3, device="meta"), "^keypoints: a tensor on the meta device"),
        # Before: a RuntimeError from gather (or, keypoints of one image for logits of two,
        # the scores of the first image alone)
        (None, torch.full((2, 3, 3), 8.0), "^keypoints has batch size 2 but the logits have 1$"),
        ([[0.0]], None, r"^logits must be a torch.Tensor of shape \(B, S, H, W\)"),
        (torch.zeros(24, 24), None, r"^logits must have shape \(B, S, H, W\), got \(24, 24\)$"),
    ],
)
def test_detection_scores_refuses_logits_and_keypoints_by_name(logits, keypoints, message):
    model = _mist()
    images = torch.rand(1, 1, 24, 24)
    good_logits, log_h = model.log_heatmaps(images)
    good_keypoints, _ = model.detect(log_h)
    with pytest.raises(ValueError, match=message):
        model.detection_scores(
            good_logits if logits is None else logits,
            good_keypoints if keypoints is None else keypoints,
        )
    scores = model.detection_scores(good_logits, good_keypoints)
    assert scores.shape == (1, 3) and bool(((scores >= 0) & (scores <= 1)).all())


@pytest.mark.parametrize(
    ("log_heatmaps", "message"),
    [
        # Before: AttributeError "'list' object has no attribute 'detach'"
        ([[[[0.0] * 24] * 24]], r"^log_heatmaps must be a torch.Tensor of shape \(B, S, H, W\)"),
        # Before: "h must have shape ..." and "sides has 1 entries but h has S=2" (h: the op's
        # name, no argument of the caller's)
        (torch.zeros(1, 24, 24), r"^log_heatmaps must have shape \(B, S, H, W\), got"),
        (torch.zeros(1, 2, 24, 24), r"^log_heatmaps must have S=1 channels \(one per side\)"),
        (torch.zeros(1, 1, 0, 24), r"^log_heatmaps must have shape \(B, S, H, W\) with S, H, W"),
        (torch.zeros(1, 1, 24, 24, device="meta"), "^log_heatmaps: a tensor on the meta device"),
    ],
)
def test_detect_refuses_log_heatmaps_by_name(log_heatmaps, message):
    model = _mist()
    with pytest.raises(ValueError, match=message):
        model.detect(log_heatmaps)
    keypoints, scores = model.detect(model.log_heatmaps(torch.rand(1, 1, 24, 24))[1])
    assert keypoints.shape == (1, 3, 3) and scores.shape == (1, 3)
