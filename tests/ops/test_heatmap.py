import numpy as np
import pytest
import torch

from mistnet.ops import render_heatmap


def test_single_scale_rounds_half_up_and_clamps():
    kp = torch.tensor([[[1.5, 0.49, 20.0], [-3.0, 2.0, 20.0], [9.0, 99.0, 20.0]]])
    T = render_heatmap(kp, [20.0], 4, 5)
    assert T.shape == (1, 1, 4, 5)
    expected = torch.zeros(4, 5)
    expected[0, 2] = 1  # x 1.5 rounds up to 2, y 0.49 to 0
    expected[2, 0] = 1  # clamped left
    expected[3, 4] = 1  # clamped to the bottom-right corner
    torch.testing.assert_close(T[0, 0], expected)


def test_two_scale_split_has_the_right_first_moment():
    sides = [10.0, 20.0, 40.0]
    kp = torch.tensor([[[3.0, 3.0, 25.0], [0.0, 0.0, 5.0], [6.0, 6.0, 50.0]]])
    T = render_heatmap(kp, sides, 8, 8)
    torch.testing.assert_close(T[0, :, 3, 3], torch.tensor([0.0, 0.75, 0.25]))
    torch.testing.assert_close(T[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # clamped to sigma_1
    torch.testing.assert_close(T[0, :, 6, 6], torch.tensor([0.0, 0.0, 1.0]))  # clamped to sigma_S
    assert T.sum().item() == pytest.approx(3.0)


def test_collisions_combine_by_max_and_mask_skips():
    kp = torch.tensor([[[2.0, 2.0, 20.0], [2.2, 1.9, 20.0], [5.0, 5.0, 20.0]]])
    T = render_heatmap(kp, [20.0], 8, 8, mask=torch.tensor([[True, True, False]]))
    assert T.sum().item() == 1.0 and T[0, 0, 2, 2] == 1.0


def test_detached_even_from_grad_inputs():
    kp = torch.tensor([[[2.0, 2.0, 20.0]]], requires_grad=True)
    assert not render_heatmap(kp, [20.0], 4, 4).requires_grad


@pytest.mark.parametrize(
    "kp, match",
    [
        (torch.zeros(3, 3), "keypoints must have shape"),
        (torch.zeros(1, 2, 2), "keypoints must have shape"),
        (torch.tensor([[[float("nan"), 0.0, 20.0]]]), "NaN"),
        (torch.tensor([[[1.0, 1.0, 0.0]]]), "side"),
    ],
)
def test_errors(kp, match):
    with pytest.raises(ValueError, match=match):
        render_heatmap(kp, [20.0], 4, 4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Before: a non-boolean mask was multiplied in (0.5 drew a half peak, 7 a peak of 7);
        # a list mask failed with AttributeError
        ({"mask": torch.tensor([[0.5]])}, r"mask must be a bool tensor of shape \(B, K\)"),
        ({"mask": torch.tensor([[7]])}, "mask must be a bool tensor .*, got torch.int64"),
        ({"mask": [[True]]}, "mask must be a bool tensor .*, got list"),
        ({"mask": torch.tensor([True])}, r"mask must have shape \(B, K\)"),
        # Before: height=True became 1; 2.5 and NaN failed in zeros(), '8' in a comparison
        ({"height": True}, "height must be an integer >= 1, got True"),
        ({"height": 2.5}, "height must be an integer >= 1, got 2.5"),
        ({"height": float("nan")}, "height must be an integer >= 1, got nan"),
        ({"height": "8"}, "height must be an integer >= 1, got '8'"),
        ({"height": 0}, "height must be an integer >= 1, got 0"),
        ({"width": -3}, "width must be an integer >= 1, got -3"),
    ],
)
def test_render_heatmap_names_a_bad_argument(change, message):
    kwargs = {"keypoints": torch.tensor([[[5.0, 5.0, 20.0]]]), "sides": [20.0], **change}
    kwargs = {"height": 8, "width": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        render_heatmap(**kwargs)


def test_render_heatmap_takes_numpy_integers_for_its_size():
    kp = torch.tensor([[[5.0, 5.0, 20.0]]])
    want = render_heatmap(kp, [20.0], 8, 9)
    assert torch.equal(render_heatmap(kp, [20.0], np.int64(8), torch.tensor(9)), want)


@pytest.mark.parametrize("sides", [[True], np.array([True]), [np.True_], ["8"]])
def test_render_heatmap_refuses_sides_that_are_no_numbers(sides):
    """Before: ``[True]`` (a list or array of bools) was a side of 1 pixel."""
    with pytest.raises(TypeError, match="sides must be a sequence of box sides in pixels"):
        render_heatmap(torch.tensor([[[8.0, 8.0, 6.0]]]), sides, 16, 16)
    assert render_heatmap(torch.tensor([[[8.0, 8.0, 6.0]]]), np.array([6]), 16, 16).shape[1] == 1


def test_render_heatmap_refuses_a_size_beyond_memory_before_allocating():
    """Before: a 4 TB zeros() failed in the allocator (a raw RuntimeError), or the machine
    swapped."""
    message = r"^height=1000000, width=1000000: the heatmap \(B, S, height, width\) .* of memory"
    with pytest.raises(ValueError, match=message):
        render_heatmap(torch.tensor([[[5.0, 5.0, 20.0]]]), [20.0], 10**6, 10**6)


@pytest.mark.parametrize(
    "mask",
    [
        torch.ones(1, 1, dtype=torch.bool, device="meta"),
        torch.ones(1, 1, dtype=torch.bool).to_sparse(),
    ],
)
def test_render_refuses_a_mask_with_no_values(mask):
    with pytest.raises(ValueError, match="^mask: a tensor .* holds no values"):
        render_heatmap(torch.tensor([[[7.0, 7.0, 6.0]]]), [6.0], 16, 16, mask=mask)
