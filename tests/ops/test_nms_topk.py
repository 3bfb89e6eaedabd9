import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mistnet.ops import (
    local_spatial_log_softmax,
    local_spatial_softmax,
    nms,
    render_heatmap,
    topk_keypoints,
)


def test_nms_keeps_maxima_and_ties():
    h = torch.zeros(1, 1, 9, 9)
    h[0, 0, 2, 2] = 1.0
    h[0, 0, 2, 3] = 1.0  # a tie next to it: both survive
    h[0, 0, 6, 6] = 0.5
    h[0, 0, 6, 7] = 0.4  # suppressed by its neighbour
    out = nms(h, 5)
    assert out[0, 0, 2, 2] == 1.0 and out[0, 0, 2, 3] == 1.0
    assert out[0, 0, 6, 6] == 0.5
    assert out[0, 0, 6, 7] == -math.inf
    assert out[0, 0, 4, 4] == -math.inf  # zero next to the 1.0 peak


def test_topk_finds_separated_peaks_highest_first():
    h = torch.zeros(1, 1, 30, 40)
    peaks = [(5, 3, 0.9), (20, 25, 0.8), (35, 10, 0.7)]  # (x, y, value)
    for x, y, val in peaks:
        h[0, 0, y, x] = val
    kp, score = topk_keypoints(h, 3, [20.0])
    assert kp[0].tolist() == [[x, y, 20.0] for x, y, _ in peaks]
    torch.testing.assert_close(score[0], torch.tensor([0.9, 0.8, 0.7]), atol=1e-5, rtol=0)


def test_batched_equals_per_sample():
    torch.manual_seed(0)
    h = local_spatial_softmax(torch.randn(4, 1, 24, 24))
    kp, score = topk_keypoints(h, 6, [20.0])
    for b in range(4):
        kb, sb = topk_keypoints(h[b : b + 1], 6, [20.0])
        torch.testing.assert_close(kp[b : b + 1], kb)
        torch.testing.assert_close(score[b : b + 1], sb)


def test_constant_heatmap_gives_distinct_pixels_with_equal_scores():
    kp, score = topk_keypoints(torch.full((2, 1, 10, 10), 0.3), 5, [20.0])
    assert torch.all(score == score[0, 0])
    for b in range(2):
        assert len({(x, y) for x, y, _ in kp[b].tolist()}) == 5
    assert kp[..., :2].min() >= 0 and kp[..., :2].max() <= 9


def test_k_larger_than_number_of_maxima_fills_with_best_non_maxima():
    ramp = torch.arange(12.0)
    h = (0.001 * (ramp[None, :] + ramp[:, None]))[None, None].clone()  # one maximum, at (11, 11)
    h[0, 0, 5, 5] = 1.0
    h[0, 0, 5, 6] = 0.7  # next to the peak: not a maximum, but the best non-maximum
    kp, score = topk_keypoints(h, 4, [20.0])
    assert kp[0, :3, :2].tolist() == [[5.0, 5.0], [11.0, 11.0], [6.0, 5.0]]
    assert kp[0, 3, :2].tolist() in ([10.0, 11.0], [11.0, 10.0])
    torch.testing.assert_close(score[0, :3], torch.tensor([1.0, 0.022, 0.7]))


def test_output_is_detached_and_typed():
    h = torch.rand(1, 1, 8, 8, requires_grad=True)
    kp, score = topk_keypoints(h, 2, [20.0])
    assert not kp.requires_grad and not score.requires_grad
    assert kp.dtype == h.dtype


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(h=torch.rand(1, 1, 4, 4), k=17, sides=[20.0]), "k must be"),
        (dict(h=torch.rand(1, 1, 4, 4), k=0, sides=[20.0]), "k must be"),
        (dict(h=torch.rand(1, 2, 4, 4), k=1, sides=[20.0]), "sides has 1"),
        (dict(h=torch.rand(1, 2, 4, 4), k=1, sides=[20.0, 10.0]), "increasing"),
        (dict(h=torch.rand(4, 4), k=1, sides=[20.0]), "h must have shape"),
        (
            dict(h=torch.rand(1, 1, 4, 4), k=1, sides=[20.0], nms_window=4),
            "nms_window must be an odd integer >= 1, got 4",
        ),
        # k=True, 2.5 and a bool tensor stay refused now that numpy ints are taken
        (dict(h=torch.rand(1, 1, 4, 4), k=True, sides=[20.0]), "k must be an integer in"),
        (dict(h=torch.rand(1, 1, 4, 4), k=2.5, sides=[20.0]), r"k must be .*, got 2.5"),
        (dict(h=torch.rand(1, 1, 4, 4), k=torch.tensor(True), sides=[20.0]), "k must be"),
    ],
)
def test_topk_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        topk_keypoints(**kwargs)


@pytest.mark.parametrize("k", [np.int64(2), np.int32(2), torch.tensor(2)])
def test_topk_takes_numpy_and_tensor_integers_for_k(k):
    # Before: k=np.int64(2) was refused ("k must be an integer in [1, H*W=16], got np.int64(2)")
    h = torch.rand(1, 1, 4, 4)
    kp, score = topk_keypoints(h, k, [20.0], np.int64(3))
    want_kp, want_score = topk_keypoints(h, 2, [20.0], 3)
    assert torch.equal(kp, want_kp) and torch.equal(score, want_score)


def _distinct_positions(draw, k, H, W):
    cells = draw(
        st.lists(
            st.tuples(st.integers(0, W - 1), st.integers(0, H - 1)),
            min_size=k,
            max_size=k,
            unique=True,
        )
    )
    return cells


@settings(max_examples=40, deadline=None)
@given(data=st.data(), k=st.integers(1, 6))
def test_topk_of_render_is_identity_single_scale(data, k):
    H, W = 24, 30
    cells = _distinct_positions(data.draw, k, H, W)
    jitter = data.draw(st.lists(st.floats(-0.49, 0.49), min_size=2 * k, max_size=2 * k))
    kp = torch.tensor(
        [[[x + jitter[2 * i], y + jitter[2 * i + 1], 20.0] for i, (x, y) in enumerate(cells)]],
        dtype=torch.float64,
    )
    out, _ = topk_keypoints(render_heatmap(kp, [20.0], H, W), k, [20.0])
    expected = torch.cat([torch.floor(kp[..., :2] + 0.5), kp[..., 2:]], -1)
    # E_K returns the K points in score order; all scores tie, so compare as sets.
    assert sorted(map(tuple, out[0].tolist())) == sorted(map(tuple, expected[0].tolist()))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), k=st.integers(1, 5))
def test_topk_of_render_is_identity_three_scales(data, k):
    H, W = 40, 40
    sides = [20.0, 20.0 * 2**0.5, 40.0]
    # Scales give unequal pooled values, so keep points outside each other's NMS window.
    xs = data.draw(st.lists(st.integers(0, 7), min_size=k, max_size=k, unique=True))
    ys = data.draw(st.lists(st.integers(0, 7), min_size=k, max_size=k))
    s = data.draw(st.lists(st.floats(20.0, 40.0), min_size=k, max_size=k))
    kp = torch.tensor(
        [[[5.0 * x + 2, 5.0 * y + 2, si] for x, y, si in zip(xs, ys, s, strict=True)]],
        dtype=torch.float64,
    )
    out, _ = topk_keypoints(render_heatmap(kp, sides, H, W), k, sides)
    got = {(x, y): side for x, y, side in out[0].tolist()}
    for x, y, side in kp[0].tolist():
        assert got[(x, y)] == pytest.approx(side, rel=1e-4)


def test_log_topk_equals_topk_where_nothing_underflows():
    torch.manual_seed(4)
    logits = torch.randn(3, 1, 24, 24) * 0.3
    kp, score = topk_keypoints(local_spatial_softmax(logits), 5, [20.0])
    kp_log, score_log = topk_keypoints(local_spatial_log_softmax(logits), 5, [20.0], log=True)
    torch.testing.assert_close(kp_log, kp)
    torch.testing.assert_close(score_log, score)


def test_log_topk_finds_a_peak_far_below_the_highest_one():
    # A background at -31, a peak at +1 and one at -30: exp underflows everywhere but at the
    # first peak, so the direct heatmap is a plateau of zeros and E_K's second pick is the first
    # pixel of that plateau (the top border). In the log domain the second peak still ranks
    # above the background (by its level: eps, relative to the image's highest logit, sets it).
    h = torch.full((1, 1, 20, 40), -31.0)
    h[..., 10, 30] = -30.0
    h[..., 10, 5] = 1.0
    direct, _ = topk_keypoints(local_spatial_softmax(h), 2, [20.0])
    assert direct[0, 1, :2].tolist() != [30.0, 10.0]
    kp, score = topk_keypoints(local_spatial_log_softmax(h), 2, [20.0], log=True)
    assert kp[0, :, :2].tolist() == [[5.0, 10.0], [30.0, 10.0]]
    assert score[0, 0] > 0.9


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_keypoints_of_a_reduced_precision_heatmap_are_exact_pixels(dtype):
    """Before: x and y were made in the heatmap's dtype, which holds integers only to 256
    (bfloat16) or 2048 (float16): a maximum at x = 3001 came out as 3000 or 3008."""
    h = torch.zeros(1, 1, 8, 3100, dtype=dtype)
    h[0, 0, 5, 3001] = 1.0
    kp, _ = topk_keypoints(h, 1, [20.0])
    assert kp.dtype == torch.float32 and kp[0, 0].tolist() == [3001.0, 5.0, 20.0]


@pytest.mark.parametrize("log", ["no", 1, None])
def test_topk_refuses_a_log_flag_that_is_no_bool(log):
    """Before: log="no" (or 1) was taken as true: the heatmap read as log-responses (a
    ValueError since; a TypeError now, as every flag of the library)."""
    with pytest.raises(TypeError, match=f"log must be True or False, got {log!r}"):
        topk_keypoints(torch.rand(1, 1, 4, 4), 1, [20.0], log=log)
    assert topk_keypoints(torch.rand(1, 1, 4, 4), 1, [20.0], log=np.bool_(False))[0].shape == (
        1,
        1,
        3,
    )


@pytest.mark.parametrize("sides", ["4", None, ["4"], [[4.0], [8.0, 2.0]], torch.tensor([True])])
def test_topk_and_render_name_sides_that_are_no_numbers(sides):
    """Before: sides='4' gave "new(): invalid data type 'str'", None "must be real number, not
    NoneType", ['4'] "too many dimensions 'str'": none of them named sides."""
    with pytest.raises(TypeError, match="sides must be a sequence of box sides in pixels"):
        topk_keypoints(torch.rand(1, 1, 4, 4), 2, sides=sides)
    with pytest.raises(TypeError, match="sides must be a sequence of box sides in pixels"):
        render_heatmap(torch.ones(1, 1, 3), sides, 4, 4)


@pytest.mark.parametrize(
    ("sides", "message"),
    [
        ([1e39], r"sides must be at most 3.40282e\+38 \(the largest torch.float32\), got \[1e\+39"),
        (
            torch.tensor([8.0, 1e39], dtype=torch.float64),
            r"at most 3.40282e\+38 .* got \[8.0, 1e\+39",
        ),
        ([-1.0], r"sides must be positive and finite, got \[-1.0\]"),
    ],
)
def test_sides_beyond_the_heatmaps_dtype_are_shown_as_given(sides, message):
    """Before: "sides must be positive and finite, got [inf]" for the finite side 1e39, which
    float32 cannot hold."""
    with pytest.raises(ValueError, match=message):
        topk_keypoints(torch.rand(1, 1, 4, 4), 1, sides=sides)


@pytest.mark.parametrize("shape", [(1, 1, 0, 8), (1, 1, 8, 0), (1, 0, 4, 4)])
def test_nms_refuses_empty_maps(shape):
    """Before: a raw RuntimeError from max_pool2d ("Expected 3D or 4D (batch mode) tensor ...
    but got: [1, 1, 0, 8]"); B = 0 still works."""
    with pytest.raises(ValueError, match=r"h must have shape \(B, C, H, W\) with C, H, W >= 1"):
        nms(torch.rand(*shape))
    assert nms(torch.rand(0, 1, 4, 4)).shape == (0, 1, 4, 4)


def test_a_window_wider_than_the_map_acts_as_the_whole_map():
    h = torch.rand(2, 3, 4, 5)
    # 2**63 - 1 failed in max_pool2d: "cannot be converted to type int without overflow"
    assert torch.equal(nms(h, 2**63 - 1), nms(h, 9))
    kp, score = topk_keypoints(h[:, :1], 2, [4.0], nms_window=2**63 - 1)
    kp9, score9 = topk_keypoints(h[:, :1], 2, [4.0], nms_window=9)
    assert torch.equal(kp, kp9) and torch.equal(score, score9)


def test_topk_log_fills_with_the_highest_finite_non_maxima_despite_minus_inf():
    # -inf in the span made the non-maxima's shift inf: all tied at -inf, and pixel 7 (h = 0)
    # was taken third instead of pixel 3 (h = e^-2)
    lh = torch.full((1, 1, 1, 12), -math.inf)
    lh[0, 0, 0, 2], lh[0, 0, 0, 3], lh[0, 0, 0, 9] = -1.0, -2.0, -3.0
    kp, score = topk_keypoints(lh, 3, [10.0], log=True)
    assert kp[0, :, 0].tolist() == [2.0, 9.0, 3.0]
    assert torch.allclose(score[0], torch.tensor([-1.0, -3.0, -2.0]).exp(), rtol=1e-4)
    # an all -inf map: no NaN key, scores 0
    kp, score = topk_keypoints(torch.full((1, 1, 2, 3), -math.inf), 2, [10.0], log=True)
    assert score.tolist() == [[0.0, 0.0]] and torch.isfinite(kp).all()


def test_topk_blames_an_empty_map_not_k():
    with pytest.raises(ValueError, match=r"^h must have shape \(B, S, H, W\) with S, H, W >= 1"):
        topk_keypoints(torch.rand(1, 2, 0, 6), 1, [10.0, 20.0])


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_a_float8_heatmap_is_refused_naming_the_argument(dtype):
    """Before: torch's NotImplementedError ("max_pool2d" / "isfinite" not implemented for
    Float8) from nms, topk_keypoints and the local softmax."""
    h = torch.rand(1, 1, 16, 16).to(dtype)
    for call in (lambda: nms(h), lambda: topk_keypoints(h, 3, [20.0])):
        with pytest.raises(ValueError, match=r"h must be a floating-point tensor \(16 bits"):
            call()
