import pytest
import torch

from mistnet.models import ChannelWiseHeatmap, grid_keypoints, spatial_soft_argmax


def test_soft_argmax_of_sharp_peaks_is_their_position_x_first():
    logits = torch.full((2, 3, 5, 7), -1e4)
    peaks = [[(6, 0), (0, 4), (3, 2)], [(1, 1), (5, 3), (2, 4)]]  # (x, y)
    for b, row in enumerate(peaks):
        for k, (x, y) in enumerate(row):
            logits[b, k, y, x] = 0.0
    torch.testing.assert_close(spatial_soft_argmax(logits), torch.tensor(peaks).float())


def test_soft_argmax_hand_values():
    # Flat map → image centre ((W−1)/2, (H−1)/2).
    flat = spatial_soft_argmax(torch.zeros(1, 1, 4, 6))
    torch.testing.assert_close(flat, torch.tensor([[[2.5, 1.5]]]))
    # Two pixels with logits 0 and log 3 (others −inf-ish): weights 1/4, 3/4.
    logits = torch.full((1, 1, 3, 3), -1e4)
    logits[0, 0, 0, 0] = 0.0
    logits[0, 0, 2, 2] = torch.log(torch.tensor(3.0))
    torch.testing.assert_close(spatial_soft_argmax(logits), torch.tensor([[[1.5, 1.5]]]))
    # Temperature 2 on logits 0 and 2 log 3 gives the same weights.
    logits[0, 0, 2, 2] = 2 * torch.log(torch.tensor(3.0))
    torch.testing.assert_close(
        spatial_soft_argmax(logits, temperature=2.0), torch.tensor([[[1.5, 1.5]]])
    )


def test_a_tiny_temperature_gives_the_hard_argmax_not_nan():
    """Before: ``spatial_soft_argmax(x, 1e-45)`` divided the logits to infinity, and the
    softmax of inf - inf gave NaN positions."""
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    flat = x.flatten(2).argmax(-1)
    hard = torch.stack([flat % 5, flat // 5], dim=-1).float()  # (x, y) of each maximum
    for temperature in (1e-45, 1e-30):
        torch.testing.assert_close(spatial_soft_argmax(x, temperature), hard)


def test_soft_argmax_gradcheck():
    logits = torch.randn(2, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(spatial_soft_argmax, (logits,))


def test_soft_argmax_errors():
    with pytest.raises(ValueError, match="logits"):
        spatial_soft_argmax(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="temperature"):
        spatial_soft_argmax(torch.zeros(1, 1, 4, 4), temperature=0.0)


def test_channel_wise_heatmap_keypoints():
    torch.manual_seed(0)
    net = ChannelWiseHeatmap(1, k=9, width=8, depth=2)
    images = torch.rand(2, 1, 40, 40)
    keypoints = net(images)
    assert keypoints.shape == (2, 9, 3)
    assert (keypoints[..., 2] == 20.0).all()
    assert (keypoints[..., :2] >= 0).all() and (keypoints[..., :2] <= 39).all()
    torch.testing.assert_close(keypoints[..., :2], spatial_soft_argmax(net.logits(images)))
    keypoints[..., :2].sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_channel_wise_heatmap_paper_size():
    net = ChannelWiseHeatmap(3, k=9, side=40.0)
    assert net(torch.rand(1, 3, 80, 80)).shape == (1, 9, 3)
    assert net.logits(torch.rand(1, 3, 80, 80)).shape == (1, 9, 80, 80)
    with pytest.raises(ValueError, match="3 channels"):
        net(torch.rand(1, 1, 80, 80))
    with pytest.raises(ValueError, match="side"):
        ChannelWiseHeatmap(3, side=0.0)


def test_grid_keypoints_tile_the_image():
    keypoints = grid_keypoints(80, 80)
    assert keypoints.shape == (1, 9, 3)
    assert keypoints.dtype == torch.get_default_dtype()
    side = 80 / 3
    torch.testing.assert_close(keypoints[0, :, 2], torch.full((9,), side))
    torch.testing.assert_close(keypoints[0, 0, :2], torch.tensor([-0.5 + side / 2] * 2))
    torch.testing.assert_close(keypoints[0, 8, :2], torch.tensor([79.5 - side / 2] * 2))
    # Row-major: x varies fastest.
    torch.testing.assert_close(
        keypoints[0, 1, :2], torch.tensor([-0.5 + 1.5 * side, -0.5 + side / 2])
    )
    x, y = keypoints[0, :, 0].reshape(3, 3), keypoints[0, :, 1].reshape(3, 3)
    left, right = x - side / 2, x + side / 2
    torch.testing.assert_close(left[:, 0], torch.full((3,), -0.5))
    torch.testing.assert_close(right[:, -1], torch.full((3,), 79.5))
    torch.testing.assert_close(right[:, :-1], left[:, 1:])  # neighbouring cells touch
    torch.testing.assert_close(y[1:] - y[:-1], torch.full((2, 3), side))


def test_grid_keypoints_rectangular_image_and_dtype():
    keypoints = grid_keypoints(60, 240, rows=1, cols=4, dtype=torch.float64)
    assert keypoints.dtype == torch.float64
    expected = torch.tensor([[[29.5, 29.5, 60.0], [89.5, 29.5, 60.0], [149.5, 29.5, 60.0],
                              [209.5, 29.5, 60.0]]], dtype=torch.float64)  # fmt: skip
    torch.testing.assert_close(keypoints, expected)


def test_grid_keypoints_errors():
    with pytest.raises(ValueError, match="square"):
        grid_keypoints(80, 60)
    with pytest.raises(ValueError, match="rows"):
        grid_keypoints(80, 80, rows=0)


def test_the_grid_baseline_is_a_patch_model_without_a_detector():
    from mistnet.config import ModelConfig
    from mistnet.models import MIST, GridMIST, PatchModel
    from mistnet.models.build import build_model

    cfg = ModelConfig(patch_size=8, patch_base_width=4, patch_levels=1, patch_blocks=1)
    model = build_model(cfg, "grid")
    assert isinstance(model, GridMIST) and isinstance(model, PatchModel)
    assert not isinstance(model, MIST)
    assert not hasattr(model, "log_heatmaps") and not hasattr(model, "detect")
    assert all(name.startswith("task_net.") for name in model.state_dict())
    out = model(torch.rand(2, 1, 60, 60))
    assert out.heatmaps is None and out.heatmap_logits is None
    assert torch.equal(out.keypoints, grid_keypoints(60, 60).expand(2, -1, -1))
    assert out.task.shape[:2] == (2, 9)


def _small_model(method: str):
    from mistnet.config import ModelConfig
    from mistnet.models.build import build_model

    k = 9 if method == "grid" else 3
    cfg = ModelConfig(k=k, patch_size=8, patch_base_width=4, patch_levels=1, patch_blocks=1)
    return build_model(cfg, method)


@pytest.mark.parametrize("method", ["mist", "channelwise", "grid"])
@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (torch.rand(2, 1, 40, 40, dtype=torch.float64), ValueError, "images are torch.float64"),
        (torch.zeros(2, 1, 40, 40, dtype=torch.uint8), ValueError, "scale 0..255 pixels"),
        (torch.rand(2, 1, 40, 40).numpy(), TypeError, "torch.Tensor, got ndarray"),
        (torch.rand(2, 1, 40, 40, device="meta"), ValueError, "on the meta device holds no"),
        (torch.rand(2, 1, 40, 40).to_sparse(), ValueError, "sparse_coo layout holds no"),
        (torch.rand(1, 40, 40), ValueError, r"shape \(B, C, H, W\), got \(1, 40, 40\)"),
    ],
)
def test_a_model_refuses_images_it_cannot_take_naming_them(method, images, error, message):
    """Before: float64 and uint8 images failed inside a convolution ("Input type (double) and
    bias type (float) should be the same"), a numpy array with AttributeError, meta and sparse
    tensors with torch's NotImplementedError."""
    with pytest.raises(error, match=message):
        _small_model(method)(images)


@pytest.mark.parametrize(
    ("method", "k", "message"),
    [
        ("mist", -1, "k must be an integer >= 0, got -1"),
        ("mist", 2.5, "k must be an integer >= 0"),
        ("channelwise", 5, "ChannelWiseMIST always finds its K = 3 .*, not k = 5"),
        ("grid", 4, "GridMIST always finds its K = 9 .*, not k = 4"),
    ],
)
def test_k_is_the_models_when_0_and_a_fixed_k_is_not_silently_replaced(method, k, message):
    """Before: ``ChannelWiseMIST`` (and the grid) returned K detections for any ``k``."""
    model, images = _small_model(method), torch.rand(1, 1, 40, 40)
    assert model(images, 0).keypoints.shape[1] == model.k
    # a 0-d integer tensor is an integer, as check_int takes it (refused once, by the new check)
    assert model(images, torch.tensor(model.k)).keypoints.shape[1] == model.k
    with pytest.raises(ValueError, match=message):
        model(images, k)


@pytest.mark.parametrize(
    ("logits", "temperature", "message"),
    [
        (torch.zeros(1, 1, 2, 3), True, "temperature must be a finite number > 0, got True"),
        (torch.zeros(1, 1, 2, 3), float("nan"), "temperature must be a finite number > 0"),
        ([[[[1.0]]]], 1.0, r"logits must be a torch.Tensor of shape \(B, K, H, W\), got list"),
        (torch.zeros(1, 1, 0, 3), 1.0, r"with H, W >= 1, got \(1, 1, 0, 3\)"),  # was 0.0
    ],
)
def test_spatial_soft_argmax_names_what_it_refuses(logits, temperature, message):
    """Before: True was a temperature of 1, a list an AttributeError, an empty map (0, 0)."""
    with pytest.raises(ValueError, match=message):
        spatial_soft_argmax(logits, temperature)
