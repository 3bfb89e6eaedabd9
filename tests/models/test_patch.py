import pytest
import torch
from helpers import n_params

from mistnet.models import PatchAutoencoder, PatchClassifier, PatchDecoder, PatchEncoder

SMALL = {"base_width": 8, "levels": 3, "blocks": 1}  # 32 channels at 4×4 → latent 512


def test_paper_encoder_size():
    enc = PatchEncoder(3)
    assert enc.latent_dim == 128
    assert (enc.out_channels, enc.out_size) == (128, 1)
    # 3 blocks of 18c²+6c params at c = 8..128, a 128-wide bottleneck, 1×1 projections: ≈ 2.1 M.
    blocks = sum(3 * (18 * c * c + 6 * c) for c in (8, 16, 32, 64, 128, 128))
    projections = sum(i * o + o for i, o in ((3, 8), (8, 16), (16, 32), (32, 64), (64, 128)))
    assert n_params(enc) == blocks + projections == 2_081_152


def test_paper_sizes_shapes():
    torch.manual_seed(0)
    patches = torch.rand(2, 1, 32, 32)
    assert PatchEncoder(1)(patches).shape == (2, 128)
    assert PatchAutoencoder(1)(patches).shape == (2, 1, 32, 32)
    assert PatchClassifier(3)(torch.rand(1, 2, 3, 32, 32)).shape == (1, 2, 10)


def test_small_preset_shapes():
    enc = PatchEncoder(1, **SMALL)
    assert enc.latent_dim == 32 * 4 * 4
    assert enc(torch.rand(5, 1, 32, 32)).shape == (5, 512)
    ae = PatchAutoencoder(1, **SMALL)
    assert ae(torch.rand(2, 9, 1, 32, 32)).shape == (2, 9, 1, 32, 32)
    clf = PatchClassifier(3, num_classes=4, patch_size=16, base_width=4, levels=2, blocks=1)
    assert clf.encoder.latent_dim == 8 * 4 * 4
    assert clf(torch.rand(3, 3, 16, 16)).shape == (3, 4)


def test_five_dim_input_equals_flattened():
    torch.manual_seed(0)
    ae = PatchAutoencoder(1, **SMALL)
    clf = PatchClassifier(1, **SMALL)
    patches = torch.rand(2, 3, 1, 32, 32)
    flat = patches.reshape(6, 1, 32, 32)
    torch.testing.assert_close(ae(patches).reshape(6, 1, 32, 32), ae(flat))
    torch.testing.assert_close(clf(patches).reshape(6, 10), clf(flat))


def test_batched_equals_per_patch():
    # Layer norm is per sample, so patches do not interact even in train mode.
    torch.manual_seed(0)
    clf = PatchClassifier(1, **SMALL)
    patches = torch.rand(3, 1, 32, 32)
    single = torch.cat([clf(patches[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(clf(patches), single, atol=1e-5, rtol=1e-5)


def test_classifier_returns_logits_not_probabilities():
    torch.manual_seed(0)
    logits = PatchClassifier(1, **SMALL)(torch.rand(4, 1, 32, 32))
    assert (logits < 0).any()
    assert not torch.allclose(logits.sum(-1), torch.ones(4))


@pytest.mark.parametrize(("output", "low", "high"), [("sigmoid", 0.0, 1.0), ("signed", -1.0, 1.0)])
def test_decoder_output_range(output, low, high):
    torch.manual_seed(0)
    dec = PatchDecoder(1, output=output, **SMALL)
    with torch.no_grad():  # saturate the output so both ends of the range are reached
        dec.stages[-1].weight.mul_(200.0)
    out = dec(torch.randn(8, dec.latent_dim))
    assert out.shape == (8, 1, 32, 32)
    assert out.min() >= low and out.max() <= high
    assert out.min() < low + 0.1 and out.max() > high - 0.1


def test_autoencoder_gradient_reaches_patches():
    ae = PatchAutoencoder(1, **SMALL)
    patches = torch.rand(2, 1, 32, 32, requires_grad=True)
    ae(patches).square().sum().backward()
    assert torch.isfinite(patches.grad).all() and patches.grad.abs().sum() > 0


def test_residual_blocks_use_separate_pre_norms():
    block = PatchEncoder(1, **SMALL).stages[1]
    assert block.norm1 is not block.norm2
    assert isinstance(block.norm1, torch.nn.GroupNorm) and block.norm1.num_groups == 1


def test_odd_patch_is_zero_padded_inside_and_cropped_back():
    # P = 23 with 2 levels runs at 24: the same weights on the explicitly zero-padded patch give
    # the same latent, and the decoder's 24 x 24 output is cropped to the patch.
    torch.manual_seed(0)
    odd = PatchAutoencoder(1, patch_size=23, base_width=4, levels=2, blocks=1)
    even = PatchAutoencoder(1, patch_size=24, base_width=4, levels=2, blocks=1)
    even.load_state_dict(odd.state_dict())
    x = torch.rand(2, 3, 1, 23, 23)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1))
    flat, flat_padded = x.reshape(6, 1, 23, 23), padded.reshape(6, 1, 24, 24)
    torch.testing.assert_close(odd.encoder(flat), even.encoder(flat_padded))
    assert odd.encoder.latent_dim == 8 * 6 * 6
    out = odd(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, even(padded)[..., :23, :23])
    assert PatchEncoder(1, patch_size=20, levels=3).out_size == 3  # 20 -> 24 -> 3


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="patch_size"):
        PatchEncoder(1, patch_size=0, levels=3)
    with pytest.raises(ValueError, match="output"):
        PatchAutoencoder(1, output="relu", **SMALL)
    with pytest.raises(ValueError, match="levels"):
        PatchEncoder(1, levels=0)
    ae = PatchAutoencoder(3, **SMALL)
    with pytest.raises(ValueError, match="patches"):
        ae(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="3 channels"):
        ae(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="32×32"):
        ae(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="patches"):
        PatchEncoder(3, **SMALL)(torch.rand(1, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="latent"):
        ae.decoder(torch.rand(2, 7))


@pytest.mark.parametrize("net", [PatchClassifier, PatchAutoencoder])
@pytest.mark.parametrize(
    ("patches", "error", "message"),
    [
        # Before: AttributeError "'list' object has no attribute 'dim'"
        ([1], TypeError, "patches must be a torch.Tensor of shape"),
        # Before: RuntimeError "Input type (double) and bias type (float) should be the same"
        (torch.rand(2, 1, 16, 16, dtype=torch.float64), ValueError, "patches are torch.float64"),
        (torch.zeros(2, 1, 16, 16, dtype=torch.int64), ValueError, "patches must be floating"),
        (torch.rand(2, 3, 1, 16, 16).bfloat16(), ValueError, "patches are torch.bfloat16"),
        # Before: RuntimeError "Tensor on device cpu is not on the expected device meta!"
        (torch.rand(2, 1, 16, 16, device="meta"), ValueError, "patches: a tensor on the meta"),
    ],
)
def test_patch_networks_refuse_patches_they_cannot_take_by_name(net, patches, error, message):
    model = net(1, patch_size=16, base_width=4, levels=2, blocks=1)
    with pytest.raises(error, match=message):
        model(patches)
    with pytest.raises(error, match=message):
        model.encoder(
            patches.reshape(-1, 1, 16, 16) if isinstance(patches, torch.Tensor) else patches
        )


@pytest.mark.parametrize(
    ("latent", "error", "message"),
    [
        # Before: AttributeError "'list' object has no attribute 'dim'"
        ([[1.0] * 16], TypeError, r"^latent must be a torch.Tensor of shape \(N, 16\), got list$"),
        # Before: RuntimeError "expected scalar type Long but found Float"
        (torch.zeros(2, 16, dtype=torch.int64), ValueError, "^latent must be a floating-point"),
        # Before: "x: a tensor on the meta device ..." (x: no argument of the caller's)
        (torch.rand(2, 16, device="meta"), ValueError, "^latent: a tensor on the meta device"),
        # Before: RuntimeError "expected scalar type Double but found Float"
        (torch.rand(2, 16, dtype=torch.float64), ValueError, "^latent are torch.float64 but"),
        (torch.rand(2, 7), ValueError, r"^latent must have shape \(N, 16\), got \(2, 7\)$"),
    ],
)
def test_a_decoder_refuses_latents_it_cannot_take_by_name(latent, error, message):
    decoder = PatchDecoder(1, patch_size=8, base_width=2, levels=2, blocks=1)  # latent 4·2·2
    with pytest.raises(error, match=message):
        decoder(latent)
    assert decoder(torch.rand(2, 16)).shape == (2, 1, 8, 8)
