"""``mist detect``: image files of any size and mode, its error paths, the grid baseline."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, mist
from PIL import Image

from mistnet.commands.detect import ANNOTATION_SIDE, detect_one, read_image
from mistnet.config import apply_overrides, load_preset
from mistnet.models.baselines import grid_keypoints
from mistnet.models.build import build_model


def test_detect_unreadable_image(capsys, tiny_run, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG garbage " * 20)
    out = tmp_path / "det"
    assert_user_error(mist(capsys, "detect", tiny_run, bad, "--out", out), str(bad), "readable")
    assert_user_error(
        mist(capsys, "detect", tiny_run, tmp_path / "missing.png", "--out", out), "missing.png"
    )
    assert not out.exists()


def test_detect_too_small_image(capsys, tiny_run, tmp_path):
    path = tmp_path / "thin.png"
    Image.fromarray(np.zeros((3, 40), np.uint8), "L").save(path)
    assert_user_error(
        mist(capsys, "detect", tiny_run, path, "--out", tmp_path / "d"), "thin.png", "too small"
    )


def odd_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Write PNG/JPEG files of odd sizes and modes; returns {file name: (W, H)}."""
    rng = np.random.default_rng(0)
    u8 = lambda *s: (rng.random(s) * 255).astype(np.uint8)  # noqa: E731
    Image.fromarray(u8(61, 97), "L").save(folder / "gray.png")
    Image.fromarray(u8(80, 120, 4), "RGBA").save(folder / "rgba.png")
    Image.fromarray(u8(200, 64, 3), "RGB").convert("P").save(folder / "palette.png")
    Image.fromarray((rng.random((50, 70)) * 65535).astype(np.uint16)).save(folder / "deep.png")
    Image.fromarray(u8(45, 33, 3), "RGB").save(folder / "photo.jpg")
    Image.fromarray(u8(40, 41) > 128).save(folder / "bits.png")  # mode "1"
    return {
        "gray.png": (97, 61),
        "rgba.png": (120, 80),
        "palette.png": (64, 200),
        "deep.png": (70, 50),
        "photo.jpg": (33, 45),
        "bits.png": (41, 40),
    }


def test_detect_on_odd_sizes_and_modes(capsys, tiny_run, tmp_path):
    sizes = odd_images(tmp_path)
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert Image.open(tmp_path / "palette.png").mode == "P"
    out = tmp_path / "det"
    rc, stdout, err = mist(capsys, "detect", tiny_run, *[tmp_path / f for f in sizes], "--out", out)
    assert rc == 0, err
    for name, (W, H) in sizes.items():
        stem = Path(name).stem
        record = json.loads((out / f"{stem}.json").read_text())
        assert (record["width"], record["height"], record["k"]) == (W, H, 9)
        boxes = np.array(record["boxes"])
        assert boxes.shape == (9, 3)
        assert (boxes[:, 2] == 20.0).all()
        assert (
            (boxes[:, 0] >= 0) & (boxes[:, 0] < W) & (boxes[:, 1] >= 0) & (boxes[:, 1] < H)
        ).all()
        assert len(record["scores"]) == 9
        assert record["scores"] == sorted(record["scores"], reverse=True)
        assert len(record["labels"]) == 9 and all(0 <= v < 10 for v in record["labels"])
        scale = max(1, ANNOTATION_SIDE // max(W, H))
        with Image.open(out / f"{stem}.png") as im:
            assert im.size == (W * scale, H * scale)
            assert im.mode == "RGB"
    assert stdout.count("9 boxes") == len(sizes)


def test_detect_k_option(capsys, tiny_run, tmp_path):
    odd_images(tmp_path)
    rc, _, err = mist(
        capsys, "detect", tiny_run, tmp_path / "gray.png", "--k", "4", "--out", tmp_path / "d"
    )
    assert rc == 0, err
    assert len(json.loads((tmp_path / "d" / "gray.json").read_text())["boxes"]) == 4


def test_read_image_conversions(tmp_path):
    deep = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    x = read_image(tmp_path / "deep.png", 1)
    assert x.shape == (1, 2, 2) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.from_numpy(deep / 65535.0).float())
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere ...
    rgba[0, :, 3] = 255  # ... opaque in the first row, transparent in the second
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    x = read_image(tmp_path / "rgba.png", 3)
    assert x.shape == (3, 2, 3)
    assert torch.equal(x[:, 0], torch.tensor([1.0, 0, 0])[:, None].expand(3, 3))
    assert torch.equal(x[:, 1], torch.zeros(3, 3))  # transparent over black
    gray = read_image(tmp_path / "rgba.png", 1)
    assert gray.shape == (1, 2, 3)
    assert float(gray[0, 0, 0]) == pytest.approx(round(0.299 * 255) / 255, abs=1 / 255)
    x3 = read_image(tmp_path / "deep.png", 3)
    assert x3.shape == (3, 2, 2) and torch.equal(x3[0], x3[2])


def test_detect_one_tiles_each_image_by_its_own_size_with_the_grid_baseline():
    cfg = apply_overrides(load_preset("tiny-cpu"), ["model.task=reconstruct", "train.method=grid"])
    torch.manual_seed(0)
    model = build_model(cfg.model, "grid").eval()
    pred = detect_one(model, torch.rand(1, 60, 60), model.k)
    assert torch.equal(pred.keypoints, grid_keypoints(60, 60))  # 20 px cells for 60 px
    assert pred.reconstruction.shape == (1, 1, 60, 60)
    image = torch.rand(1, 80, 80)  # the model keeps no size: the next image gets its own cells
    got = detect_one(model, image, model.k)
    assert torch.equal(got.keypoints, grid_keypoints(80, 80))
    with torch.inference_mode():
        want = model(image[None])
    for name in ("keypoints", "scores", "patches", "task", "reconstruction"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
