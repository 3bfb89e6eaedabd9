import pytest
import torch
import torch.nn.functional as F
from helpers import n_params

from mistnet.models import HeatmapBody, HeatmapNet
from mistnet.models.heatmap import receptive_field


@pytest.mark.parametrize("in_channels", [1, 3])
def test_body_keeps_size_and_channels(in_channels):
    body = HeatmapBody(in_channels)
    out = body(torch.rand(2, in_channels, 80, 80))
    assert out.shape == (2, 1, 80, 80)
    assert HeatmapBody(in_channels, out_channels=5)(torch.rand(1, in_channels, 30, 41)).shape == (
        1,
        5,
        30,
        41,
    )


def test_body_parameter_count_is_official_plus_separate_norms():
    # [C] measured 74,407 with one GroupNorm shared per block; separate norms add 4 blocks × 64.
    assert n_params(HeatmapBody(3)) == 74_407 + 4 * 64
    # One input channel: BN 2 params instead of 6, stem 64 instead of 128.
    assert n_params(HeatmapBody(1)) == 74_407 + 4 * 64 - 4 - 64


def test_body_norms_are_separate_modules():
    block = HeatmapBody(1).blocks[0]
    assert block.norm1 is not block.norm2
    assert block.norm1.weight.data_ptr() != block.norm2.weight.data_ptr()


@pytest.mark.parametrize(
    "size, dilations, margin",
    [(48, (), 16), (80, (1, 2, 4, 8), 30)],  # content >= half the receptive field from borders
    ids=["valid", "dilated"],
)
def test_body_is_translation_equivariant(size, dilations, margin):
    torch.manual_seed(0)
    body = HeatmapBody(1, width=8 if dilations else 32, depth=4, dilations=dilations).eval()
    image = torch.zeros(1, 1, size, size)
    image[..., margin + 2 : margin + 14, margin : margin + 12] = torch.rand(12, 12)
    dy, dx = 3, -4
    shifted = torch.roll(image, shifts=(dy, dx), dims=(2, 3))
    with torch.no_grad():
        out, out_shifted = body(image), body(shifted)
    expected = torch.roll(out, shifts=(dy, dx), dims=(2, 3))
    interior = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    torch.testing.assert_close(out_shifted[interior], expected[interior], atol=1e-5, rtol=1e-5)
    # The map is not constant, so the check above is not vacuous.
    assert out[interior].std() > 1e-3


def test_body_batched_equals_per_sample_in_eval():
    torch.manual_seed(0)
    body = HeatmapBody(3).eval()
    images = torch.rand(3, 3, 24, 24)
    with torch.no_grad():
        batched = body(images)
        single = torch.cat([body(images[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_body_errors_name_the_argument():
    body = HeatmapBody(3)
    with pytest.raises(ValueError, match="images"):
        body(torch.rand(3, 20, 20))
    with pytest.raises(ValueError, match="3 channels"):
        body(torch.rand(1, 1, 20, 20))
    with pytest.raises(ValueError, match="padding"):
        body(torch.rand(1, 3, 8, 20))
    with pytest.raises(ValueError, match="depth"):
        HeatmapBody(3, depth=0)


def test_net_multiscale_shape_and_sides():
    net = HeatmapNet(1, factors=(1.0, 2**-0.5, 0.5))
    out = net(torch.rand(2, 1, 80, 80))
    assert out.shape == (2, 3, 80, 80)
    assert net.factors == (1.0, 2**-0.5, 0.5)
    assert net.num_scales == 3
    torch.testing.assert_close(torch.tensor(net.sides()), torch.tensor([20.0, 20 * 2**0.5, 40.0]))
    assert net.sides(10.0) == pytest.approx((10.0, 10 * 2**0.5, 20.0))


def test_net_shares_weights_across_scales():
    assert n_params(HeatmapNet(1, factors=(1.0, 0.5))) == n_params(HeatmapBody(1))


def test_net_scales_match_single_scale_nets_and_body():
    torch.manual_seed(0)
    multi = HeatmapNet(1, factors=(1.0, 0.5)).eval()
    half = HeatmapNet(1, factors=(0.5,)).eval()
    half.load_state_dict(multi.state_dict())
    images = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        out = multi(images)
        torch.testing.assert_close(out[:, :1], multi.body(images))
        torch.testing.assert_close(out[:, 1:], half(images))
        low = multi.body(F.avg_pool2d(images, 2))  # area downsampling by 2 = 2×2 mean
        expected = F.interpolate(low, size=(40, 40), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out[:, 1:], expected)


def test_net_gradients_reach_every_parameter():
    net = HeatmapNet(1, factors=(1.0, 0.5), width=8, depth=2)
    net(torch.rand(2, 1, 24, 24)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_net_errors():
    with pytest.raises(ValueError, match="factors"):
        HeatmapNet(1, factors=())
    with pytest.raises(ValueError, match="factors"):
        HeatmapNet(1, factors=(1.5,))
    with pytest.raises(ValueError, match="factors"):
        HeatmapNet(1, factors=(0.5, 1.0))
    net = HeatmapNet(3)
    with pytest.raises(ValueError, match="images"):
        net(torch.rand(1, 1, 3, 20, 20))
    with pytest.raises(ValueError, match="3 channels"):
        net(torch.rand(1, 1, 20, 20))


def test_channels_last_body_matches_contiguous_body():
    torch.manual_seed(0)
    fast = HeatmapNet(1, width=8, depth=2)
    plain = HeatmapNet(1, width=8, depth=2, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    assert fast.body.stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.body.stem.weight.is_contiguous()
    images = torch.rand(2, 1, 30, 36)
    out_fast, out_plain = fast(images), plain(images)
    assert out_fast.is_contiguous()
    torch.testing.assert_close(out_fast, out_plain, atol=1e-5, rtol=1e-5)
    (out_fast * images).sum().backward()
    (out_plain * images).sum().backward()
    g_fast = fast.body.blocks[0].conv1.weight.grad
    g_plain = plain.body.blocks[0].conv1.weight.grad
    assert float((g_fast - g_plain).norm() / g_plain.norm()) < 1e-5  # float summation order only


# -- the dilated body (model.heatmap_dilations) ----------------------------------------------


def test_dilated_body_keeps_size_and_widens_the_receptive_field():
    body = HeatmapBody(1, width=8, depth=4, dilations=(1, 2, 4, 8))
    assert body(torch.rand(2, 1, 80, 80)).shape == (2, 1, 80, 80)
    assert body(torch.rand(1, 1, 17, 23)).shape == (1, 1, 17, 23)  # no input padding needed
    assert (body.receptive_field, HeatmapBody(1, depth=4).receptive_field) == (39, 17)
    assert receptive_field(2, (3, 1)) == 1 + 8 + 4
    # the same parameters as the plain body: dilation changes where a kernel looks, not its size
    assert n_params(body) == n_params(HeatmapBody(1, width=8, depth=4))


def test_dilated_body_gradcheck():
    torch.manual_seed(0)
    body = HeatmapBody(1, width=2, depth=2, dilations=(1, 2), channels_last=False).double()
    images = torch.rand(1, 1, 9, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(body, (images,), eps=1e-6, atol=1e-4)


def test_dilated_body_errors():
    with pytest.raises(ValueError, match=r"dilations must be 4 integers >= 1"):
        HeatmapBody(1, depth=4, dilations=(1, 2))
    with pytest.raises(ValueError, match=r"dilations must be an integer >= 1, got 0"):
        HeatmapBody(1, depth=2, dilations=(0, 1))
    with pytest.raises(ValueError, match="larger than the reflection padding 8 px"):
        HeatmapBody(1, depth=2, dilations=(1, 8))(torch.rand(1, 1, 8, 30))


@pytest.mark.parametrize(
    ("factors", "error", "message"),
    [
        ([True], ValueError, "factors must be a finite number > 0, got True"),  # was (1.0,)
        ("1", TypeError, "factors must be a sequence of numbers"),  # was its characters
        ("0.5", TypeError, "factors must be a sequence of numbers"),  # float('.') failed
        ([1.0, "0.5"], ValueError, "factors must be a finite number > 0, got '0.5'"),
        ([1.0, 1.5], ValueError, r"factors must lie in \(0, 1\]"),
    ],
)
def test_heatmap_net_names_factors_that_are_no_numbers(factors, error, message):
    with pytest.raises(error, match=message):
        HeatmapNet(1, factors=factors)
    assert HeatmapNet(1, factors=[1.0, 0.5]).factors == (1.0, 0.5)


_BAD_IMAGES = [
    (torch.zeros(1, 1, 16, 16, dtype=torch.int64), ValueError, "images must be floating point"),
    (torch.rand(1, 1, 16, 16).bfloat16(), ValueError, "images are torch.bfloat16 but the model"),
    (torch.rand(1, 1, 16, 16, device="meta"), ValueError, "images: a tensor on the meta device"),
    ([[[[0.5] * 16] * 16]], TypeError, r"images must be a \(B, 1, H, W\) torch.Tensor, got list"),
]


@pytest.mark.parametrize(("images", "error", "message"), _BAD_IMAGES)
def test_net_refuses_images_it_cannot_take_naming_them(images, error, message):
    """Before: torch's NotImplementedError ("batch_norm" not implemented for 'Long'),
    RuntimeError ("Input type (c10::BFloat16) and bias type (float) should be the same",
    "Tensor on device cpu is not on the expected device meta!") or AttributeError ("'list'
    object has no attribute 'dim'")."""
    with pytest.raises(error, match=message):
        HeatmapNet(1, width=4, depth=1)(images)


def test_heatmap_net_takes_factors_as_a_tensor():
    # the tensor's items were 0-d tensors: "factors must be a finite number > 0, got tensor(1.)"
    assert HeatmapNet(1, factors=torch.tensor([1.0, 0.5])).factors == (1.0, 0.5)
    with pytest.raises(TypeError, match="^factors must be a sequence of numbers"):
        HeatmapNet(1, factors=torch.tensor([True]))
