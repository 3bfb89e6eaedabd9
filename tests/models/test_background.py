"""The reconstruction's background plane (not in the paper): ``model.background``."""

import pytest
import torch

from mistnet.config import apply_overrides, load_preset
from mistnet.models.build import build_model
from mistnet.models.mist import median_background


def tiny(*overrides: str):
    cfg = apply_overrides(load_preset("tiny-cpu"), ["model.k=3", *overrides])
    torch.manual_seed(0)
    return build_model(cfg.model, cfg.train.method).eval()


def test_background_plane_leaves_a_black_scene_and_mnist_like_scenes_unchanged():
    plain = tiny("model.task=reconstruct")
    with_bg = tiny("model.task=reconstruct", "model.background=median")
    with_bg.load_state_dict(plain.state_dict())  # no parameters of its own
    black = torch.zeros(2, 1, 40, 40)
    digits = black.clone()
    digits[:, :, 8:20, 10:14] = 1.0  # strokes on under half of the pixels
    for x in (black, digits):
        with torch.no_grad():
            torch.testing.assert_close(with_bg(x).reconstruction, plain(x).reconstruction)


def test_background_plane_is_the_median_and_adds_to_the_patches():
    plain = tiny("model.task=reconstruct")
    with_bg = tiny("model.task=reconstruct", "model.background=median")
    with_bg.load_state_dict(plain.state_dict())
    x = torch.full((2, 1, 40, 40), 0.3)
    x[1] = 0.6
    x[:, :, 5:12, 5:12] = 0.9  # a bright instance on a grey table
    assert median_background(x).flatten().tolist() == pytest.approx([0.3, 0.6])
    with torch.no_grad():
        diff = with_bg(x).reconstruction - plain(x).reconstruction
    torch.testing.assert_close(diff, median_background(x).expand_as(diff))
    # translation: the plane does not move, so the reconstruction shifts with the image
    shifted = torch.roll(x, (3, 2), (2, 3))
    torch.testing.assert_close(median_background(shifted), median_background(x))


def test_unknown_background_is_refused():
    with pytest.raises(ValueError, match="background"):
        tiny("model.task=reconstruct").__class__(
            torch.nn.Identity(), torch.nn.Identity(), "reconstruct", background="mean"
        )
