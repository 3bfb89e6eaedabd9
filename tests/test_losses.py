import itertools
import math

import pytest
import torch

from mistnet.losses import (
    centring_loss,
    heatmap_loss,
    mixture_centring_loss,
    multi_instance_loss,
    reconstruction_loss,
    set_classification_loss,
    task_weight,
)


def confident_logits(classes: list[int], num_classes: int = 10, margin: float = 50.0):
    return torch.nn.functional.one_hot(torch.tensor(classes), num_classes).float() * margin


# --- reconstruction (eq. 8) ---------------------------------------------------------------------


def test_reconstruction_loss_hand_value():
    images = torch.zeros(2, 2, 2, 3)
    recon = torch.zeros(2, 2, 2, 3)
    recon[0, 0, 0, 0] = 0.5  # 0.25
    recon[0, 1, 1, 2] = -1.0  # 1.0
    recon[1] = 0.1  # 12 pixels × 0.01 = 0.12
    per_image = reconstruction_loss(images, recon, reduction="none")
    torch.testing.assert_close(per_image, torch.tensor([1.25, 0.12]))
    torch.testing.assert_close(reconstruction_loss(images, recon), torch.tensor(0.685))


def test_reconstruction_loss_errors():
    with pytest.raises(ValueError, match="reconstruction"):
        reconstruction_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="images"):
        reconstruction_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="reduction"):
        reconstruction_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), reduction="sum")


# --- multi-instance classification (eq. 9) ------------------------------------------------------


def test_multi_instance_loss_is_zero_for_perfect_predictions():
    labels = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5]])
    logits = confident_logits(labels[0].tolist()).unsqueeze(0)
    assert multi_instance_loss(logits, labels).item() < 1e-12


def test_multi_instance_loss_is_order_invariant():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 10)
    labels = torch.randint(0, 10, (3, 5))
    reference = multi_instance_loss(logits, labels, reduction="none")
    permuted = multi_instance_loss(
        logits[:, torch.randperm(6)], labels[:, torch.randperm(5)], reduction="none"
    )
    torch.testing.assert_close(permuted, reference)


def test_multi_instance_loss_maximum():
    # One-hot predictions and labels on different classes: ‖e_i − e_j‖² = 2 (1 with [C]'s ½).
    logits = confident_logits([0, 0]).unsqueeze(0)
    labels = torch.tensor([[7, 7]])
    torch.testing.assert_close(multi_instance_loss(logits, labels), torch.tensor(2.0))
    torch.testing.assert_close(multi_instance_loss(logits, labels, scale=0.5), torch.tensor(1.0))
    torch.manual_seed(0)
    random = multi_instance_loss(
        torch.randn(64, 4, 10) * 10, torch.randint(0, 10, (64, 3)), reduction="none"
    )
    assert (random >= 0).all() and (random <= 2).all()


def test_multi_instance_loss_hand_value_with_repeats_and_l_ne_k():
    # Labels {0, 0, 1} → histogram (2/3, 1/3, 0); K = 2 patches with p = (.6, .2, .2), (.2, .2, .6)
    # → mean (.4, .2, .4).
    probs = torch.tensor([[[0.6, 0.2, 0.2], [0.2, 0.2, 0.6]]])
    labels = torch.tensor([[0, 1, 0]])
    expected = (2 / 3 - 0.4) ** 2 + (1 / 3 - 0.2) ** 2 + 0.4**2
    torch.testing.assert_close(multi_instance_loss(probs.log(), labels), torch.tensor(expected))


def test_multi_instance_loss_padding_equals_per_image():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[1, 2, -1, -1], [0, 0, 4, 3]])
    batched = multi_instance_loss(logits, labels, reduction="none")
    first = multi_instance_loss(logits[:1], labels[:1, :2])
    second = multi_instance_loss(logits[1:], labels[1:])
    torch.testing.assert_close(batched, torch.stack((first, second)))
    torch.testing.assert_close(multi_instance_loss(logits, labels), batched.mean())


def test_multi_instance_loss_patch_mask_equals_dropping_patches():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[1, 2], [0, 3]])
    mask = torch.tensor([[True, False, True, True], [True, True, True, True]])
    masked = multi_instance_loss(logits, labels, patch_mask=mask, reduction="none")
    first = multi_instance_loss(logits[:1, [0, 2, 3]], labels[:1])
    second = multi_instance_loss(logits[1:], labels[1:])
    torch.testing.assert_close(masked, torch.stack((first, second)))


def test_multi_instance_loss_gradient_is_finite():
    logits = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[1, 1, -1], [0, 2, 3]])
    assert torch.autograd.gradcheck(lambda z: multi_instance_loss(z, labels), (logits,))


def test_multi_instance_loss_errors():
    logits = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="at least one label"):
        multi_instance_loss(logits, torch.tensor([[1, -1], [-1, -1]]))
    with pytest.raises(ValueError, match="labels"):
        multi_instance_loss(logits, torch.tensor([[1, 4], [0, 0]]))
    with pytest.raises(ValueError, match="labels"):
        multi_instance_loss(logits, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="int64"):
        multi_instance_loss(logits, torch.tensor([[1], [2]], dtype=torch.int32))
    with pytest.raises(ValueError, match="logits"):
        multi_instance_loss(torch.zeros(3, 4), torch.tensor([[1], [2], [0]]))
    with pytest.raises(ValueError, match="patch_mask"):
        multi_instance_loss(logits, torch.tensor([[1], [2]]), patch_mask=torch.ones(2, 2).bool())
    with pytest.raises(ValueError, match="patch_mask"):
        empty = torch.tensor([[True, True, True], [False, False, False]])
        multi_instance_loss(logits, torch.tensor([[1], [2]]), patch_mask=empty)


# --- set classification loss ----------------------------------------------------------------------


def brute_force_set_loss(logits: torch.Tensor, labels: list[int]) -> float:
    """Min over one-to-one assignments of the mean −log p, by enumerating permutations."""
    nll = -torch.log_softmax(logits.double(), dim=-1)  # (K, C)
    K, L = nll.shape[0], len(labels)
    m = min(K, L)
    best = float("inf")
    for patches in itertools.permutations(range(K), m):
        for chosen in itertools.permutations(range(L), m):
            cost = sum(nll[k, labels[l]].item() for k, l in zip(patches, chosen, strict=True))
            best = min(best, cost / m)
    return best


@pytest.mark.parametrize(("K", "L"), [(3, 3), (4, 2), (2, 4), (3, 1)])
def test_set_loss_matches_brute_force(K, L):
    torch.manual_seed(K * 10 + L)
    logits = torch.randn(3, K, 5, dtype=torch.float64) * 3
    labels = torch.randint(0, 5, (3, L))
    labels[0, 0] = labels[0, -1]  # a repeated class
    labels[1, 1:] = -1  # one image with a single label
    per_image = set_classification_loss(logits, labels, reduction="none")
    for b in range(3):
        valid = [int(y) for y in labels[b] if y >= 0]
        assert per_image[b].item() == pytest.approx(brute_force_set_loss(logits[b], valid))
    torch.testing.assert_close(set_classification_loss(logits, labels), per_image.mean())


def test_set_loss_is_order_invariant_and_small_for_perfect_predictions():
    labels = torch.tensor([[2, 7, 7, 0]])
    logits = confident_logits([7, 0, 2, 7], margin=20.0).unsqueeze(0)
    assert set_classification_loss(logits, labels).item() < 1e-6
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 10)
    labels = torch.randint(0, 10, (2, 4))
    reference = set_classification_loss(logits, labels, reduction="none")
    permuted = set_classification_loss(
        logits[:, torch.randperm(4)], labels[:, torch.randperm(4)], reduction="none"
    )
    torch.testing.assert_close(permuted, reference)


def test_set_loss_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[1, 1, -1], [0, 2, 3]])
    assert torch.autograd.gradcheck(lambda z: set_classification_loss(z, labels), (logits,))
    # K > L: the unmatched patch gets no gradient.
    logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [0.0, 0.0]]], requires_grad=True)
    set_classification_loss(logits, torch.tensor([[1, 0]])).backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[0, 2] == 0).all() and (logits.grad[0, :2] != 0).any()


def test_set_loss_errors():
    with pytest.raises(ValueError, match="at least one label"):
        set_classification_loss(torch.zeros(1, 2, 3), torch.tensor([[-1, -1]]))
    with pytest.raises(ValueError, match="reduction"):
        set_classification_loss(torch.zeros(1, 2, 3), torch.tensor([[0]]), reduction="sum")


# --- heatmap loss (eq. 7) ---------------------------------------------------------------------


def test_heatmap_loss_hand_value_with_weights():
    heatmaps = torch.zeros(2, 2, 2, 2, requires_grad=True)
    target = torch.zeros(2, 2, 2, 2)
    target[0, 0, 0, 0] = 1.0  # image 0: 1/8
    target[1] = 0.5  # image 1: 0.25
    weight = torch.tensor([0.5, 2.0], requires_grad=True)
    per_image = heatmap_loss(heatmaps, target, weight, reduction="none")
    torch.testing.assert_close(per_image, torch.tensor([0.0625, 0.5]))
    loss = heatmap_loss(heatmaps, target, weight)
    torch.testing.assert_close(loss, torch.tensor(0.28125))
    torch.testing.assert_close(heatmap_loss(heatmaps, target), torch.tensor(0.1875))
    loss.backward()
    assert weight.grad is None  # weights are detached
    # d/dh of 0.5·mean_b(w_b·mean((h − t)²)) at h = 0 for the target pixel: 0.5·0.5·2·(−1)/8.
    assert heatmaps.grad[0, 0, 0, 0].item() == pytest.approx(-0.0625)


def test_heatmap_loss_errors():
    with pytest.raises(ValueError, match="target"):
        heatmap_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="heatmaps"):
        heatmap_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="weight"):
        heatmap_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.ones(3))


def test_task_weight():
    losses = torch.tensor([0.0, 0.1, 1.0], requires_grad=True)
    weight = task_weight(losses)
    torch.testing.assert_close(weight, torch.exp(torch.tensor([0.0, -0.5, -5.0])))
    assert not weight.requires_grad
    torch.testing.assert_close(task_weight(losses, beta=1.0), torch.exp(-losses.detach()))


def test_heatmap_nll_hand_value_and_minimiser():
    from mistnet.losses import heatmap_nll_loss

    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 2] = 1.0
    h = torch.full((1, 1, 4, 4), 0.25).log()
    assert heatmap_nll_loss(h, target, eps=0.0).item() == pytest.approx(-math.log(0.25))
    assert heatmap_nll_loss(h, target, eps=1e-6).item() == pytest.approx(-math.log(0.25 + 1e-6))
    peaked = h.clone()
    peaked[0, 0, 1, 2] = math.log(0.9)
    assert heatmap_nll_loss(peaked, target) < heatmap_nll_loss(h, target)
    w = torch.tensor([0.5])
    assert heatmap_nll_loss(h, target, w, eps=0.0).item() == pytest.approx(-0.5 * math.log(0.25))
    with pytest.raises(ValueError, match="heatmaps must have shape"):
        heatmap_nll_loss(h[0], target[0])


def test_heatmap_nll_far_below_eps_saturates_and_is_finite():
    from mistnet.losses import heatmap_nll_loss

    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 2] = 1.0
    # a response of e^-300 (0 in float32): -log(h + eps) = -log(eps), and its gradient fades
    deep = torch.full((1, 1, 4, 4), -300.0, requires_grad=True)
    loss = heatmap_nll_loss(deep, target, eps=1e-6)
    loss.backward()
    assert loss.item() == pytest.approx(-math.log(1e-6))
    assert abs(deep.grad[0, 0, 1, 2].item()) < 1e-100
    # the exact log-likelihood keeps pulling at full strength
    deep.grad = None
    exact = heatmap_nll_loss(deep, target, eps=0.0)
    exact.backward()
    assert exact.item() == pytest.approx(300.0)
    assert deep.grad[0, 0, 1, 2].item() == pytest.approx(-1.0)


# --- the x-step centring prior (not in the paper) -----------------------------------------------


def _blob_image(cx: float, cy: float, size: int = 48, sigma: float = 3.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    d2 = (xx - cx) ** 2 + (yy - cy) ** 2
    return torch.exp(-d2 / (2 * sigma**2)).view(1, 1, size, size).double()


def test_centring_loss_is_zero_on_a_symmetric_blob_and_grows_with_the_offset():
    from mistnet.ops import extract_patches

    image = _blob_image(24.0, 24.0)
    values = []
    for dx in (0.0, 1.0, 2.0, 4.0):
        kp = torch.tensor([[[24.0 + dx, 24.0, 20.0]]], dtype=torch.float64)
        values.append(float(centring_loss(extract_patches(image, kp, 21), kp[..., 2])))
    assert values[0] < 1e-12
    assert values[0] < values[1] < values[2] < values[3]


def test_centring_loss_gradient_descent_finds_the_blob_centre():
    """Through the sampler the prior behaves as mean shift: SGD on the keypoint finds the blob."""
    from mistnet.ops import extract_patches

    image = _blob_image(20.3, 26.6)
    kp = torch.tensor([[[24.0, 23.0, 20.0]]], dtype=torch.float64)
    for _ in range(60):
        kp = kp.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(
            centring_loss(extract_patches(image, kp, 21), kp[..., 2]).sum(), kp
        )
        kp = (kp - 0.3 * grad).detach()
    error = (kp[0, 0, :2] - torch.tensor([20.3, 26.6], dtype=torch.float64)).norm()
    assert float(error) < 0.2


def test_centring_loss_uses_magnitude_for_signed_images():
    p = torch.zeros(1, 1, 1, 5, 5)
    p[..., 2, 0] = -1.0  # negative mass at the left edge counts like positive mass
    assert torch.allclose(centring_loss(p, torch.tensor([[8.0]])), torch.tensor([16.0]))


@pytest.mark.parametrize(
    "patches, sides",
    [
        (torch.zeros(1, 1, 5, 5), torch.ones(1, 1)),  # missing the K axis
        (torch.zeros(1, 1, 1, 5, 4), torch.ones(1, 1)),  # not square
        (torch.zeros(1, 2, 1, 5, 5), torch.ones(1, 3)),  # sides do not match K
    ],
)
def test_centring_loss_rejects_bad_shapes(patches, sides):
    with pytest.raises(ValueError, match="must have shape"):
        centring_loss(patches, sides)


def _two_blobs(gap: float, size: int = 64) -> torch.Tensor:
    """Two equal blobs on the row y = 32, at x = 20 and x = 20 + gap."""
    return _blob_image(20.0, 32.0, size) + _blob_image(20.0 + gap, 32.0, size)


def test_mixture_centring_descent_splits_a_pair_and_claims_unexplained_ink():
    """Gradient steps on the mixture prior take two keypoints started 3 px off toward each
    other onto their blobs, and a keypoint 12 px from an unclaimed blob onto it."""
    image = _two_blobs(14.0) + _blob_image(20.0, 8.0, 64)
    kp = torch.tensor(
        [[[23.0, 32.0, 20.0], [31.0, 32.0, 20.0], [20.0, 20.0, 20.0]]], dtype=torch.float64
    )
    for _ in range(30):
        kp = kp.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(mixture_centring_loss(image, kp, 0.25).sum(), kp)
        kp = kp - 1.5 * grad  # the gradient of mean_k |x - c|^2 is 2 (x - c) / K, K = 3
    target = torch.tensor([[20.0, 32.0], [34.0, 32.0], [20.0, 8.0]], dtype=torch.float64)
    assert (kp[0, :, :2] - target).norm(dim=-1).max() < 0.5  # from 3 and 12 px off
    assert torch.equal(kp[..., 2], torch.full((1, 3), 20.0, dtype=torch.float64))


def test_mixture_centring_keeps_a_keypoint_without_ink_and_rejects_bad_shapes():
    kp = torch.tensor([[[10.0, 12.0, 20.0]]])
    loss = mixture_centring_loss(torch.zeros(1, 1, 30, 30), kp)
    assert torch.equal(loss, torch.zeros(1))
    with pytest.raises(ValueError, match="images must have shape"):
        mixture_centring_loss(torch.zeros(30, 30), kp)
    with pytest.raises(ValueError, match="keypoints must have shape"):
        mixture_centring_loss(torch.zeros(2, 1, 30, 30), kp)


@pytest.mark.parametrize(
    "call, message",
    [
        # Before: tensor(nan)
        (
            lambda: multi_instance_loss(torch.randn(1, 3, 10), torch.tensor([[1]]), scale=math.nan),
            "scale must be a finite number > 0, got nan",
        ),
        (
            lambda: multi_instance_loss(torch.randn(1, 3, 10), torch.tensor([[1]]), scale=0),
            "scale must be a finite number > 0, got 0",
        ),
        # Before: tensor([nan, nan])
        (lambda: task_weight(torch.tensor([0.1, 0.2]), beta=math.nan), "beta must be a finite"),
        # Before: tensor([1.1052, 1.2214]): the weighting inverted
        (lambda: task_weight(torch.tensor([0.1, 0.2]), beta=-1.0), r"beta .* >= 0, got -1.0"),
    ],
)
def test_loss_scalars_that_are_nan_or_negative_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
    assert task_weight(torch.tensor([0.1, 0.2]), beta=0).tolist() == [1.0, 1.0]  # 0: switched off


def test_a_label_below_minus_one_is_refused_not_taken_as_padding():
    """Before: label -5 was taken as padding, silently (multi_instance_loss gave the loss of
    ``[[2, -1]]``); the metrics refused it since round 12."""
    logits = torch.zeros(1, 3, 10)
    for loss in (multi_instance_loss, set_classification_loss):
        with pytest.raises(
            ValueError, match=r"labels: class indices >= 0 \(or -1, padding\), got -5"
        ):
            loss(logits, torch.tensor([[2, -5]]))
    assert multi_instance_loss(logits, torch.tensor([[2, -1]])).item() == pytest.approx(0.9)


@pytest.mark.parametrize("eps", [math.nan, -1.0, True, math.inf, "0.1"])
def test_heatmap_nll_eps_must_be_a_finite_number_at_least_zero(eps):
    """Before: NaN and -1 were ignored (the exact loss), True gave a negative NLL, inf NaN, and a
    string a raw TypeError."""
    from mistnet.losses import heatmap_nll_loss

    log_h = torch.full((1, 1, 4, 4), 1 / 16).log()
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 1] = 1
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        heatmap_nll_loss(log_h, target, eps=eps)
    assert heatmap_nll_loss(log_h, target, eps=0).item() == pytest.approx(math.log(16))


@pytest.mark.parametrize("sigma", [0, -0.5, math.nan, "0.4"])
def test_centring_sigma_must_be_a_finite_number_above_zero(sigma):
    """Before: sigma 0 gave NaN (centring_loss) or a loss of 0 for a keypoint 5 px off its ink
    (mixture_centring_loss), NaN gave 0, and a string a raw TypeError."""
    image = torch.zeros(1, 1, 9, 40)
    image[0, 0, 4, 3] = 1
    kp = torch.tensor([[[8.0, 4.0, 10.0]]])
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        mixture_centring_loss(image, kp, sigma=sigma)
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        centring_loss(torch.rand(1, 2, 1, 5, 5), torch.full((1, 2), 8.0), sigma=sigma)
    assert mixture_centring_loss(image, kp).tolist() == [25.0]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: multi_instance_loss([[[0.0]]], torch.tensor([[0]])), TypeError, "logits: expected a torch.Tensor"),
        (lambda: multi_instance_loss(torch.ones(1, 3, 10, dtype=torch.long), torch.tensor([[0]])), ValueError, "logits must be a floating-point tensor .* got torch.int64"),
        (lambda: reconstruction_loss(torch.ones(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, 1, 2, 2, dtype=torch.uint8)), ValueError, "images must be a floating-point tensor .* got torch.uint8"),
        (lambda: heatmap_loss(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), weight=[1.0, 1.0]), TypeError, r"weight: expected a torch.Tensor of shape \(B,\)"),
        (lambda: heatmap_loss(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4) > 0.5), ValueError, "target must be a floating-point tensor, got torch.bool"),
        (lambda: task_weight([1.0]), TypeError, "per_image_task_loss: expected a torch.Tensor"),
        (lambda: multi_instance_loss(torch.zeros(2, 3, 4), torch.zeros(2, 1, dtype=torch.long), patch_mask=[[True] * 3] * 2), TypeError, "patch_mask: expected a torch.Tensor"),
        (lambda: multi_instance_loss(torch.zeros(0, 3, 10), torch.zeros(0, 1, dtype=torch.long)), ValueError, r"logits must have shape \(B, K, C\) with B, K, C >= 1, got \(0, 3, 10\)"),
        (lambda: reconstruction_loss(torch.zeros(0, 1, 2, 2), torch.zeros(0, 1, 2, 2)), ValueError, r"images must have shape \(B, C, H, W\) with B >= 1"),
        (lambda: heatmap_loss(torch.zeros(0, 1, 2, 2), torch.zeros(0, 1, 2, 2)), ValueError, r"heatmaps must have shape .* >= 1, got \(0, 1, 2, 2\)"),
        (lambda: set_classification_loss(torch.full((1, 3, 4), math.nan), torch.tensor([[1]])), ValueError, "logits contains NaN or infinite values"),
    ],
)  # fmt: skip
def test_losses_name_an_argument_of_the_wrong_type_dtype_or_an_empty_batch(call, error, message):
    """Before: AttributeError ('list' object has no attribute 'dim'), torch's NotImplementedError
    or RuntimeError for integer tensors, NaN for an empty batch, scipy's "matrix contains invalid
    numeric entries"; a bool target failed inside torch's subtraction."""
    with pytest.raises(error, match=message):
        call()


def test_the_set_loss_matches_logits_whose_probabilities_underflow():
    """float16 logits 1.2e5 apart give a probability 0, a cost of +inf; scipy took it until a
    whole row was infinite ("cost matrix is infeasible"), and a check refused it as NaN."""
    logits = torch.tensor([[[-6e4, 6e4], [6e4, -6e4]]]).half()
    loss = set_classification_loss(logits, torch.tensor([[1, 0]]))
    assert loss.item() == 0.0  # each patch matched to the label it gives probability 1
    both = set_classification_loss(logits, torch.tensor([[0, 0]]))
    assert both.item() == math.inf  # one patch must take the label it gives probability 0


@pytest.mark.parametrize(
    "call, message",
    [
        # Before: NaN (sigma 1e-30 underflowed to 0 once squared in float32), an OverflowError
        (lambda: centring_loss(torch.rand(2, 3, 1, 5, 5), torch.full((2, 3), 8.0), 1e-30), r"sigma must be a window of 1e-6 to 1e6 sides, got 1e-30"),
        (lambda: centring_loss(torch.rand(2, 3, 1, 5, 5), torch.full((2, 3), 8.0), 1e200), r"sigma must be a window .* got 1e\+200"),
        (lambda: mixture_centring_loss(torch.rand(2, 1, 8, 8), torch.ones(2, 1, 3), 1e-9), "sigma must be a window"),
        # Before: the mean over no patch or keypoint, NaN; integer patches a loss of 0
        (lambda: centring_loss(torch.rand(2, 0, 1, 5, 5), torch.zeros(2, 0)), r"patches must have shape \(B, K, C, P, P\) with B, K >= 1"),
        (lambda: mixture_centring_loss(torch.rand(2, 1, 8, 8), torch.zeros(2, 0, 3)), r"with K >= 1, got \(2, 0, 3\)"),
        (lambda: centring_loss((torch.rand(2, 3, 1, 5, 5) * 10).long(), torch.full((2, 3), 8.0)), "patches must be a floating-point tensor"),
    ],
)  # fmt: skip
def test_centring_losses_refuse_windows_and_batches_that_give_no_number(call, message):
    with pytest.raises(ValueError, match=message):
        call()
    p = torch.zeros(1, 1, 1, 5, 5)
    p[..., 2, 4] = 1.0
    assert centring_loss(p, torch.tensor([[8.0]]), sigma=1e6).tolist() == [16.0]  # no window


def test_heatmap_loss_refuses_a_bool_weight():
    h, t = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match="^weight: expected real numbers"):
        heatmap_loss(h, t, torch.tensor([True, False]))  # True was read as 1


@pytest.mark.parametrize("loss", [torch.ones(2, 2), torch.tensor([1, 2])])
def test_task_weight_refuses_no_floating_vector(loss):
    with pytest.raises(ValueError, match="^per_image_task_loss must be a floating-point"):
        task_weight(loss)


def test_heatmap_nll_loss_is_zero_off_the_targets_where_h_is_zero():
    from mistnet.losses import heatmap_nll_loss

    # 0 * log 0 = 0 * -inf was NaN: a pixel whose softmax underflowed, off every target
    lh = torch.tensor([[[[-0.1, -math.inf]]]], requires_grad=True)
    loss = heatmap_nll_loss(lh, torch.tensor([[[[1.0, 0.0]]]]))
    loss.backward()
    assert math.isclose(loss.item(), 0.1, rel_tol=1e-6)
    assert lh.grad.tolist() == [[[[-1.0, 0.0]]]]
    # on a target, h = 0 still costs inf
    assert heatmap_nll_loss(lh.detach(), torch.tensor([[[[0.0, 1.0]]]])).item() == math.inf


def test_heatmap_nll_loss_names_log_heatmaps():
    from mistnet.losses import heatmap_nll_loss

    with pytest.raises(ValueError, match=r"^log_heatmaps must have shape \(B, S, H, W\)"):
        heatmap_nll_loss(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="^target must have the shape of log_heatmaps"):
        heatmap_nll_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))


def test_centring_loss_of_one_sample_is_zero_and_of_none_refused():
    # linspace(-1/2, 1/2, 1) is [-1/2]: the centre sample sat half a side off (loss 32)
    assert centring_loss(torch.ones(1, 1, 1, 1, 1), torch.tensor([[8.0]])).tolist() == [0.0]
    with pytest.raises(ValueError, match=r"^patches must have shape .* with P >= 1"):
        centring_loss(torch.ones(1, 1, 1, 0, 0), torch.tensor([[8.0]]))  # was a loss of 0
    with pytest.raises(ValueError, match="^sides: expected real numbers"):
        centring_loss(torch.ones(1, 1, 1, 5, 5), torch.tensor([[True]]))  # True was 1 px


def test_mixture_centring_loss_side_zero_keeps_the_other_terms():
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 3, 3] = 1.0
    img[0, 0, 5, 7] = 1.0
    kp = torch.tensor([[[3.0, 3.0, 0.0], [5.0, 5.0, 4.0]]])
    # 0 / 0 windows made every responsibility NaN: the loss was 0, the 2 px offset lost;
    # now the limit of a narrowing window (about (0 + 2²) / 2)
    narrow = kp.clone()
    narrow[0, 0, 2] = 1e-3
    loss = mixture_centring_loss(img, kp)
    assert 1.8 < loss.item() < 2.0
    assert torch.allclose(loss, mixture_centring_loss(img, narrow))
    with pytest.raises(ValueError, match="^keypoints: expected real numbers"):
        mixture_centring_loss(img, torch.ones(1, 1, 3, dtype=torch.bool))
