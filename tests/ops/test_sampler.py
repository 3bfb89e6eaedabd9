import numpy as np
import pytest
import torch

from mistnet.ops import extract_patches, paste_patches


def test_grid_convention_on_linear_ramps():
    H, W, P = 40, 50, 9
    xs = torch.arange(W, dtype=torch.float64).expand(H, W)
    ys = torch.arange(H, dtype=torch.float64)[:, None].expand(H, W)
    img = torch.stack([xs, ys])[None]  # (1, 2, H, W): channel 0 = x, channel 1 = y
    kp = torch.tensor([[[20.3, 17.6, 12.5], [30.0, 10.0, 8.0]]], dtype=torch.float64)
    p = extract_patches(img, kp, P)
    assert p.shape == (1, 2, 2, P, P)
    t = torch.arange(P, dtype=torch.float64) / (P - 1) - 0.5
    for k in range(2):
        cx, cy, s = kp[0, k].tolist()
        torch.testing.assert_close(p[0, k, 0], (cx + t * s).expand(P, P))
        torch.testing.assert_close(p[0, k, 1], (cy + t * s)[:, None].expand(P, P))


def test_outside_the_image_is_zero():
    img = torch.ones(1, 1, 10, 10)
    p = extract_patches(img, torch.tensor([[[-20.0, 5.0, 4.0]]]), 5)
    assert p.abs().max() == 0


def test_batched_equals_per_sample():
    torch.manual_seed(0)
    img = torch.rand(3, 2, 20, 24)
    kp = torch.rand(3, 4, 3) * torch.tensor([24.0, 20.0, 8.0]) + torch.tensor([0, 0, 4.0])
    p = extract_patches(img, kp, 8)
    back = paste_patches(p, kp, 20, 24)
    for b in range(3):
        torch.testing.assert_close(p[b : b + 1], extract_patches(img[b : b + 1], kp[b : b + 1], 8))
        torch.testing.assert_close(
            back[b : b + 1], paste_patches(p[b : b + 1], kp[b : b + 1], 20, 24)
        )


def test_gradcheck_extract_wrt_images_and_keypoints():
    torch.manual_seed(0)
    img = torch.rand(2, 2, 9, 11, dtype=torch.float64, requires_grad=True)
    kp = torch.tensor(
        [[[4.31, 3.73, 5.13], [6.27, 5.41, 3.37]], [[2.63, 6.17, 4.43], [8.11, 2.29, 6.31]]],
        dtype=torch.float64,
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(lambda i, k: extract_patches(i, k, 5), (img, kp))


def test_gradcheck_paste_wrt_patches_and_keypoints():
    torch.manual_seed(1)
    patches = torch.rand(2, 2, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    kp = torch.tensor(
        [[[4.31, 3.73, 5.13], [6.27, 5.41, 3.37]], [[2.63, 6.17, 4.43], [8.11, 2.29, 6.31]]],
        dtype=torch.float64,
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(lambda p, k: paste_patches(p, k, 9, 11), (patches, kp))


def test_round_trip_on_smooth_image_and_zero_outside():
    H = W = 64
    yy, xx = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    img = (torch.sin(xx / 9.0) * torch.cos(yy / 7.0) * 0.5 + 0.5)[None, None]
    kp = torch.tensor([[[30.0, 28.0, 20.0]]], dtype=torch.float64)
    back = paste_patches(extract_patches(img, kp, 32), kp, H, W)
    inside = (
        slice(19, 38),
        slice(21, 40),
    )  # rows y 19..37, cols x 21..39: inside [20, 40] x [18, 38]
    rel = (back[0, 0][inside] - img[0, 0][inside]).abs() / img[0, 0][inside].abs().clamp(min=1e-3)
    assert rel.max() < 0.02
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[18:39, 20:41] = False
    assert back[0, 0][outside].abs().max() == 0


def test_overlapping_patches_add():
    patches = torch.ones(1, 2, 1, 4, 4)
    kp = torch.tensor([[[5.0, 5.0, 6.0], [6.0, 5.0, 6.0]]])
    out = paste_patches(patches, kp, 12, 12)
    assert out[0, 0, 5, 5] == 2.0 and out[0, 0, 5, 0] == 0.0
    single = paste_patches(patches[:, :1], kp[:, :1], 12, 12) + paste_patches(
        patches[:, 1:], kp[:, 1:], 12, 12
    )
    torch.testing.assert_close(out, single)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: extract_patches(torch.rand(1, 8, 8), torch.rand(1, 1, 3) + 1), "images"),
        (lambda: extract_patches(torch.rand(2, 1, 8, 8), torch.rand(1, 1, 3) + 1), "batch size"),
        (lambda: extract_patches(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 2)), "keypoints"),
        (
            lambda: extract_patches(
                torch.rand(1, 1, 8, 8), torch.tensor([[[1.0, float("inf"), 2.0]]])
            ),
            "NaN",
        ),
        (lambda: paste_patches(torch.rand(1, 2, 1, 4, 4), torch.rand(1, 3, 3) + 1, 8, 8), "K=3"),
        (lambda: paste_patches(torch.rand(1, 2, 1, 4, 5), torch.rand(1, 2, 3) + 1, 8, 8), "square"),
        (lambda: paste_patches(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 3) + 1, 8, 8), "patches"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


_IMG, _KP = torch.rand(1, 1, 8, 8), torch.tensor([[[4.0, 4.0, 3.0]]])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Before: size=2.5 failed in linspace (TypeError), a meta image in grid_sample, meta
        # keypoints in Tensor.item(), a sparse image with NotImplementedError, a zero-width
        # image in grid_sampler (RuntimeError)
        ({"size": 2.5}, "size must be an integer >= 2, got 2.5"),
        ({"size": 1}, "size must be an integer >= 2, got 1"),
        ({"size": True}, "size must be an integer >= 2, got True"),
        ({"images": _IMG.to("meta")}, "images: a tensor on the meta device holds no values"),
        ({"keypoints": _KP.to("meta")}, "keypoints: a tensor on the meta device holds no values"),
        ({"images": _IMG.to_sparse()}, "images: a tensor of torch.sparse_coo layout holds no"),
        ({"images": torch.rand(1, 1, 8, 0)}, r"images must have shape .* with H, W >= 1"),
    ],
)
def test_extract_patches_names_a_bad_argument(change, message):
    kwargs = {"images": _IMG, "keypoints": _KP, "size": 4, **change}
    with pytest.raises(ValueError, match=message):
        extract_patches(**kwargs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Before: height NaN failed in arange ("unsupported range"), 2.5 in expand (TypeError)
        ({"height": float("nan")}, "height must be an integer >= 1, got nan"),
        ({"height": 2.5}, "height must be an integer >= 1, got 2.5"),
        ({"width": True}, "width must be an integer >= 1, got True"),
        ({"width": 0}, "width must be an integer >= 1, got 0"),
        (
            {"patches": torch.rand(1, 1, 1, 4, 4, device="meta")},
            "patches: a tensor on the meta device holds no",
        ),
    ],
)
def test_paste_patches_names_a_bad_argument(change, message):
    kwargs = {"patches": torch.rand(1, 1, 1, 4, 4), "keypoints": _KP, "height": 8, "width": 8}
    with pytest.raises(ValueError, match=message):
        paste_patches(**{**kwargs, **change})


def test_the_sampler_takes_numpy_integers_for_sizes():
    p = extract_patches(_IMG, _KP, np.int64(4))
    torch.testing.assert_close(p, extract_patches(_IMG, _KP, 4))
    back = paste_patches(p, _KP, np.int64(8), torch.tensor(8))
    torch.testing.assert_close(back, paste_patches(p, _KP, 8, 8))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: extract_patches(_IMG, _KP, 10**6), r"^size=1000000: the patches \(B, K, C, "),
        (
            lambda: paste_patches(torch.rand(1, 1, 1, 4, 4), _KP, 10**6, 10**6),
            r"^height=1000000, width=1000000: the pasted patches \(B, K, C, height, width\)",
        ),
        (  # no patch: the (B, C, H, W) zeros alone are too many
            lambda: paste_patches(torch.rand(1, 0, 1, 4, 4), _KP[:, :0], 10**7, 10**7),
            r"^height=10000000, width=10000000: ",
        ),
    ],
)
def test_the_sampler_refuses_sizes_beyond_memory_before_allocating(call, message):
    """Before: an 8 TB allocation failed in the allocator with a raw RuntimeError ("can't
    allocate memory"), or the machine swapped."""
    with pytest.raises(ValueError, match=message + ".* need .* of memory, more than"):
        call()


def test_a_gpu_result_is_weighed_against_the_gpus_memory(monkeypatch):
    """On a GPU the bound is its whole memory (the host's free memory says nothing of it)."""
    from types import SimpleNamespace

    from mistnet.ops._checks import check_memory

    like = SimpleNamespace(device=torch.device("cuda", 0), element_size=lambda: 4)
    total = SimpleNamespace(total_memory=80 * 10**9)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: total)
    monkeypatch.setattr("mistnet.machine.available_memory", lambda: 10**6)  # not read for a GPU
    check_memory((10**10,), like, "what", "fewer")  # 40 GB of 80
    with pytest.raises(ValueError, match=r"^what need 400.0 GB of memory, more than the 80.0 GB"):
        check_memory((10**11,), like, "what", "fewer")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_sampler_refuses_a_gpu_result_beyond_the_gpus_memory():
    img, kp = _IMG.cuda(), _KP.cuda()
    with pytest.raises(ValueError, match=r"^size=1000000: .* GB of cuda:0; make fewer"):
        extract_patches(img, kp, 10**6)


@pytest.mark.parametrize(
    "images, kp, match",
    [
        (torch.rand(1, 1, 16, 16).half(), torch.tensor([[[70000.0, 7, 6]]]), "float16"),
        (torch.rand(1, 1, 16, 16), torch.tensor([[[1e300, 7, 6]]], dtype=torch.float64), "float32"),
        (torch.rand(1, 1, 16, 16), torch.tensor([[[7, 7, 1e-300]]], dtype=torch.float64), "side"),
    ],
)
def test_extract_checks_keypoints_in_the_images_dtype(images, kp, match):
    # finite keypoints became inf (NaN patches) or a side 0 once cast to the images' dtype
    with pytest.raises(ValueError, match=f"keypoints.*{match}"):
        extract_patches(images, kp, 3)


def test_paste_refuses_a_subnormal_side_and_empty_patches():
    kp = torch.tensor([[[7.0, 7.0, 1e-45]]])  # 1 / side overflowed: 255 of 256 pixels NaN
    with pytest.raises(ValueError, match=r"keypoints\[\.\.\., 2\] \(box side\)"):
        paste_patches(torch.rand(1, 1, 1, 5, 5), kp, 16, 16)
    with pytest.raises(ValueError, match="patches must have shape .* P >= 1"):
        paste_patches(torch.rand(1, 1, 1, 0, 0), torch.tensor([[[7.0, 7.0, 3.0]]]), 16, 16)


def test_far_finite_keypoints_sample_zero_not_nan():
    # the grid's unnormalisation overflowed to inf, and grid_sample read NaN
    kp = torch.tensor([[[3e38, 7.0, 3e38]]])
    assert torch.equal(extract_patches(torch.rand(1, 1, 16, 16), kp, 3), torch.zeros(1, 1, 1, 3, 3))
    back = paste_patches(torch.rand(1, 1, 1, 5, 5), torch.tensor([[[3e38, 7.0, 3.0]]]), 8, 8)
    assert torch.equal(back, torch.zeros(1, 1, 8, 8))


def test_extract_reads_zero_off_an_image_one_pixel_high_or_wide():
    # align_corners=True mapped every coordinate of an axis of one pixel onto it: a box 97 px
    # below a 1 x 8 image read all ones, one at (50, 50) of a 1 x 1 image read its pixel
    row = extract_patches(torch.ones(1, 1, 1, 8), torch.tensor([[[3.0, 100.0, 2.0]]]), 3)
    assert torch.equal(row, torch.zeros(1, 1, 1, 3, 3))
    dot = extract_patches(torch.ones(1, 1, 1, 1), torch.tensor([[[50.0, 50.0, 2.0]]]), 3)
    assert torch.equal(dot, torch.zeros(1, 1, 1, 3, 3))
    # on the image, bilinear against the zero outside, as a wider image samples its edge
    centred = extract_patches(torch.ones(1, 1, 1, 1), torch.tensor([[[0.0, 0.0, 1.0]]]), 3)
    assert centred[0, 0, 0].tolist() == [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]
    column = extract_patches(
        torch.arange(8.0).view(1, 1, 8, 1), torch.tensor([[[0.0, 3.0, 2.0]]]), 3
    )
    assert column[0, 0, 0].tolist() == [[0.0, 2.0, 0.0], [0.0, 3.0, 0.0], [0.0, 4.0, 0.0]]
