"""Scene generators: determinism, pools, Poisson distance, boxes vs ink, counts, Gabor sums."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mistnet.data.dataset import SceneDataset, collate_scenes
from mistnet.data.digits import load_digits
from mistnet.data.gabor import gabor_kernel
from mistnet.data.scenes import GENERATORS, build_generator, make_scenes, paste_digits
from mistnet.errors import DataError

BANK = 32  # small layout bank keeps tests fast; the default path is covered separately


@pytest.fixture(scope="module")
def hard():
    return build_generator("mnist-hard", layout_bank=BANK)


def test_registry_names():
    assert {"mnist-easy", "mnist-hard", "mnist-hard-6to9", "mnist-hard-3to9", "gabor"} <= set(
        GENERATORS
    )
    assert build_generator("mnist-hard-4to5").counts.tolist() == [4, 5]
    with pytest.raises(DataError, match="unknown scene generator 'nope'"):
        build_generator("nope")
    with pytest.raises(DataError, match="impossible layout: 40 digits"):
        build_generator("mnist-hard-40")


@pytest.mark.parametrize("name", ["mnist-easy", "mnist-hard", "mnist-hard-3to9", "gabor"])
def test_deterministic_and_seed_dependent(name):
    kw = {"layout_bank": BANK} if name.startswith("mnist-hard") else {}
    a = make_scenes(build_generator(name, **kw), "train", range(6), seed=3)
    b = make_scenes(build_generator(name, **kw), "train", [5, 4, 3, 2, 1, 0], seed=3)
    c = make_scenes(build_generator(name, **kw), "train", range(6), seed=4)
    d = make_scenes(build_generator(name, **kw), "test", range(6), seed=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k][::-1])  # pure function of the index
    assert not np.array_equal(a["images"], c["images"])
    assert not np.array_equal(a["boxes"], c["boxes"])
    assert not np.array_equal(a["images"], d["images"])


def test_pure_function_independent_of_bank_state():
    g1 = build_generator("mnist-hard", layout_bank=BANK)
    g2 = build_generator("mnist-hard", layout_bank=BANK)
    make_scenes(g1, "train", range(50, 80), seed=0)  # fill g1's bank in another order
    a = make_scenes(g1, "train", range(10), seed=0)
    b = make_scenes(g2, "train", range(10), seed=0)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_digits_come_from_the_split_pool(hard):
    pools = load_digits()
    for split in ("train", "val", "test"):
        images, labels = pools.split(split)
        for i in range(5):
            s = hard.generate(split, i, seed=0)
            assert s.sources.max() < len(images)
            np.testing.assert_array_equal(labels[s.sources], s.labels)
            # the image is exactly the max-composite of these pool digits at the box centres
            canvas = np.zeros((80, 80), np.uint8)
            paste_digits(canvas, images[s.sources], s.boxes[:, :2].astype(np.int64))
            np.testing.assert_array_equal(canvas, s.image[0])


def _min_pairwise(c: np.ndarray) -> float:
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    return d[~np.eye(len(c), dtype=bool)].min()


@pytest.mark.parametrize("bank", [BANK, 0])
def test_poisson_minimum_distance_and_region(bank):
    g = build_generator("mnist-hard", layout_bank=bank)
    n = 150 if bank else 40
    a = make_scenes(g, "train", range(n), seed=1)
    centres = a["boxes"][..., :2]
    assert np.all(centres >= 10) and np.all(centres <= 70)
    assert np.all(centres == np.round(centres))
    # Bridson guarantees >= 14 before rounding; rounding moves each point by <= sqrt(0.5)
    dmin = min(_min_pairwise(c) for c in centres)
    assert dmin >= 14 - np.sqrt(2) - 1e-6
    assert dmin < 16  # points are packed, not spread on a coarse grid


def _ink_com(digit: np.ndarray, centre: np.ndarray) -> np.ndarray:
    canvas = np.zeros((80, 80), np.uint8)
    paste_digits(canvas, digit[None], centre[None])
    ys, xs = np.mgrid[:80, :80]
    w = canvas.astype(np.float64)
    return np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()


@pytest.mark.parametrize("name", ["mnist-hard", "mnist-easy"])
def test_boxes_hold_their_digit_ink(name):
    g = build_generator(name, **({"layout_bank": BANK} if name == "mnist-hard" else {}))
    images = load_digits().test[0]
    checked = 0
    for i in range(40):
        s = g.generate("test", i, seed=0)
        assert np.all(s.boxes[:, 2:] == 20)
        for src, box in zip(s.sources, s.boxes, strict=True):
            c = box[:2].astype(np.int64)
            if np.any(c < 10) or np.any(c > 69):
                continue  # (easy) unclipped jitter can crop real ink; 4 px margins are empty
            com = _ink_com(images[src], c)
            assert np.all(np.abs(com - box[:2]) <= 2.0), (i, com, box)
            checked += 1
    assert checked > 200


def test_mnist_easy_layout():
    g = build_generator("mnist-easy")
    a = make_scenes(g, "val", range(200), seed=0)
    np.testing.assert_array_equal(a["labels"], np.tile(np.arange(1, 10), (200, 1)))
    grid = -0.5 + (np.arange(3) + 0.5) * 80 / 3
    nominal = np.stack(np.meshgrid(grid, grid), -1).reshape(9, 2)
    offsets = a["boxes"][..., :2] - nominal  # (200, 9, 2)
    std = offsets.std()
    assert abs(std - 80 / 3 / 8) < 0.4  # 1/8 of the cell, plus rounding noise
    assert abs(offsets.mean()) < 0.3


@pytest.mark.parametrize(
    "name, allowed",
    [
        ("mnist-hard", {9}),
        ("mnist-hard-6to9", {6, 7, 8, 9}),
        ("mnist-hard-3to9", set(range(3, 10))),
    ],
)
def test_counts_per_table3_set(name, allowed):
    g = build_generator(name, layout_bank=BANK)
    n = 70 * len(allowed)
    a = make_scenes(g, "train", range(n), seed=0)
    counts = a["counts"]
    assert set(counts.tolist()) == allowed
    assert g.max_count == 9 and a["labels"].shape == (n, 9)
    hist = np.bincount(counts)[sorted(allowed)]
    assert hist.min() > 0.5 * n / len(allowed)  # roughly uniform
    for row, c in zip(a["labels"], counts, strict=True):
        assert np.all(row[:c] >= 0) and np.all(row[c:] == -1)
    assert np.all(a["boxes"][np.arange(9)[None] >= counts[:, None]] == 0)


def test_hard_labels_uniform_with_repeats(hard):
    a = make_scenes(hard, "train", range(300), seed=0)
    hist = np.bincount(a["labels"].ravel(), minlength=10)
    assert hist.min() > 0.7 * hist.mean()
    assert any(len(set(r.tolist())) < 9 for r in a["labels"])  # repeats occur


def test_gabor_equals_sum_of_kernels():
    g = build_generator("gabor")
    ys, xs = np.mgrid[:80, :80].astype(np.float64)
    for i in range(3):
        s = g.generate("train", i, seed=0)
        assert s.image.dtype == np.float32 and s.image.shape == (1, 80, 80)
        assert s.boxes.shape == (20, 4) and np.all(s.labels == 0)
        ref = sum(gabor_kernel(xs - x, ys - y) for x, y in s.boxes[:, :2])
        np.testing.assert_allclose(s.image[0], ref, atol=1e-5)
        assert s.image.min() < -0.1  # signed
    k = gabor_kernel(np.array([0.0, 10.0, 10.5, 3.0]), np.array([0.0, 0.0, 0.0, 3.0]))
    assert k[0] == 0.5 and k[2] == 0.0
    assert k[1] == pytest.approx(0.5 * np.exp(-np.pi) * np.cos(2 * np.pi * np.cos(np.pi / 4)))
    assert k[3] == pytest.approx(0.5 * np.exp(-np.pi * 0.18) * np.cos(2 * np.pi * 0.6 / np.sqrt(2)))


def test_dataset_items_and_collate():
    ds = SceneDataset("mnist-hard-3to9", "valid", size=8, seed=2, layout_bank=BANK)
    assert (ds.channels, ds.height, ds.width, ds.max_count, ds.name) == (
        1,
        80,
        80,
        9,
        "mnist-hard-3to9",
    )
    assert len(ds) == 8
    item = ds[1]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 80, 80)
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    n = int(item["count"])
    assert item["boxes"].shape == (n, 4) and item["labels"].shape == (n,)
    assert item["count"].dtype == torch.int64 and item["count"].ndim == 0
    batch = collate_scenes([ds[i] for i in range(4)])
    N = int(batch["count"].max())
    assert batch["image"].shape == (4, 1, 80, 80)
    assert batch["boxes"].shape == (4, N, 4) and batch["labels"].shape == (4, N)
    for b in range(4):
        c = int(batch["count"][b])
        assert torch.equal(batch["boxes"][b, :c], ds[b]["boxes"])
        assert torch.all(batch["labels"][b, c:] == -1) and torch.all(batch["boxes"][b, c:] == 0)
    with pytest.raises(IndexError):
        ds[8]


def test_dataloader_workers_match_sequential():
    ds = SceneDataset("mnist-hard", "train", size=12, seed=5, layout_bank=BANK)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_scenes)
    batches = list(loader)
    seq = collate_scenes([ds[i] for i in range(12)])
    assert torch.equal(torch.cat([b["image"] for b in batches]), seq["image"])
    assert torch.equal(torch.cat([b["boxes"] for b in batches]), seq["boxes"])


def test_default_bank_path():
    ds = SceneDataset("mnist-hard", "test", size=3)
    assert ds.generator.layout_bank == 1024 and ds[2]["boxes"].shape == (9, 4)


@pytest.mark.parametrize(
    "name, x_range", [("mnist-hard-left", (10, 45)), ("mnist-hard-right", (35, 70))]
)
def test_uneven_layouts_stay_in_their_band(name, x_range):
    g = build_generator(name, layout_bank=BANK)
    a = make_scenes(g, "train", range(120), seed=1)
    assert np.all(a["counts"] == 9)
    centres = a["boxes"][..., :2]
    x, y = centres[..., 0], centres[..., 1]
    assert x.min() >= x_range[0] and x.max() <= x_range[1]  # the flips keep the band
    assert y.min() >= 10 and y.max() <= 70
    # both halves of the band are used (flips about the band's centre, not the canvas's)
    mid = sum(x_range) / 2
    assert 0.3 < (x < mid).mean() < 0.7
    dmin = min(_min_pairwise(c) for c in centres)
    assert dmin >= 12 - np.sqrt(2) - 1e-6
    # no ink outside the band's digit frames: the far side of the canvas stays black
    far = slice(60, 80) if name.endswith("left") else slice(0, 21)
    assert a["images"][..., far].max() == 0
    again = make_scenes(build_generator(name, layout_bank=BANK), "train", range(120), seed=1)
    np.testing.assert_array_equal(a["images"], again["images"])


def test_rectangular_region_feasibility_is_checked():
    from mistnet.data.scenes import MnistHard

    with pytest.raises(DataError, match=r"in \[10, 30\] x \[10, 70\]"):
        MnistHard(counts=(9,), radius=14.0, region=((10.0, 30.0), (10.0, 70.0)))


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        # before: black scenes labelled with 9 digits wholly outside the image
        (lambda: SceneDataset("mnist-hard", "train", 3, region=(-1000.0, 1000.0)), DataError,
         "region .* must lie in the 80 x 80 px canvas"),
        (lambda: SceneDataset("mnist-hard", "train", 3, radius=float("nan")), DataError,
         "radius must be a finite number >= 1"),  # was deep in scipy
        (lambda: SceneDataset("gabor", "train", 3, a=float("nan")), DataError,
         "a must be a finite number > 0"),  # was deep in numpy
        (lambda: SceneDataset("mnist-hard", "train", 3, counts=[3]), DataError,
         "its digit counts are in its name"),  # was a bare TypeError
        (lambda: SceneDataset("mnist-hard", "train", 2.5), TypeError, "size must be an integer"),
        (lambda: SceneDataset("mnist-hard", "train", 3, seed="0"), TypeError, "seed must be"),
        (lambda: SceneDataset("mnist-hard", "train", 3, seed=2**64), ValueError, "seed must be"),
        (lambda: SceneDataset("mnist-hard", "train", 3)[2.0], TypeError, "scene index must be"),
    ],
)  # fmt: skip
def test_scene_datasets_check_their_arguments(make, error, message):
    """Before: each was taken (2.5 scenes were 2, the seeds "0", 1.5 and 2**64 made other
    scenes than any integer seed, a float index was truncated) or failed deep inside."""
    with pytest.raises(error, match=message):
        make()


def test_scene_indices_seeds_and_generator_arguments_are_checked():
    """Before: mnist-hard-1to9999999999 enumerated ten billion counts until memory ran out;
    index 1.7, True and seed 1.5 were cut to scene 1 / seed 1, 2**64 and "1" taken, 2**70 an
    OverflowError, a name a bare AttributeError; jitter=100 put boxes hundreds of pixels
    outside the image; layout_bank=2.5 was taken."""
    with pytest.raises(DataError, match="at most 99 digits a scene"):
        build_generator("mnist-hard-1to9999999999")
    g = build_generator("mnist-hard", layout_bank=16)
    for indices, seed, error, message in [
        ([1.7], 0, TypeError, "indices must be integers, got float64"),
        ([True], 0, TypeError, "indices must be integers, got bool"),
        ([2**70], 0, TypeError, "indices must be integers, got object"),
        ([-1], 0, ValueError, r"scene index must be an integer in \[0, 2\*\*63\), got -1"),
        ([1], 1.5, TypeError, "seed must be an integer, got 1.5"),
        ([1], "1", TypeError, "seed must be an integer, got '1'"),
        ([1], 2**64, ValueError, r"seed must be an integer in \[0, 2\*\*63\)"),
        # one number: scene 5 alone (N = 1), not 5 scenes; a 2-D array was flattened
        (5, 0, TypeError, r"indices must be a sequence of scene indices \(N,\), got 5"),
        (np.zeros((2, 2), np.int64), 0, TypeError, r"indices must be a sequence of scene"),
    ]:
        with pytest.raises(error, match=message):
            make_scenes(g, "train", indices, seed)
    with pytest.raises(TypeError, match="generator must be a SceneGenerator, got str"):
        make_scenes("mnist-hard", "train", [1])
    with pytest.raises(TypeError, match="scene index must be an integer, got 1.5"):
        SceneDataset("mnist-hard", "train", size=3).scene(1.5)
    assert make_scenes(g, "train", np.array([1, 2]), np.int64(0))["counts"].shape == (2,)
    with pytest.raises(DataError, match="jitter must be at most 0.25"):
        build_generator("mnist-easy", jitter=100.0)
    with pytest.raises(TypeError, match="layout_bank must be an integer, got 2.5"):
        build_generator("mnist-hard", layout_bank=2.5)


@pytest.mark.parametrize(
    ("items", "error", "message"),
    [
        ([{}], ValueError, r"items\[0\] lacks 'image', 'boxes', 'labels', 'count'"),
        ([None], TypeError, r"items\[0\] must be a dict, got NoneType"),
    ],
)
def test_collate_scenes_names_the_item_that_is_not_a_scene(items, error, message):
    """Before: ``collate_scenes([{}])`` failed with a bare KeyError: 'count'."""
    with pytest.raises(error, match=message):
        collate_scenes(items)


_SCENE = SceneDataset("mnist-hard", "train", 2)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        # Before: taken without a word (3.7 as 3, True as class 1, -1 / 2.5 as counts, a
        # 0..255 image beside a 0..1 one) or a raw torch error from the stacking.
        (dict(labels=_SCENE[1]["labels"].float() + 0.7), ValueError, r"\['labels'\] must be"),
        (dict(labels=_SCENE[1]["labels"] > 4), ValueError, r"\['labels'\] must be .* torch\.bool"),
        (dict(labels=_SCENE[1]["labels"][:2]), ValueError, r"\['labels'\] must be \(9,\)"),
        (dict(count=torch.tensor(-1)), ValueError, r"\['count'\] is -1, outside 0\.\.9"),
        (dict(count=torch.tensor(99)), ValueError, r"\['count'\] is 99, outside 0\.\.9"),
        (dict(count=torch.tensor(2.5)), ValueError, r"\['count'\] must be a 0-d integer"),
        (dict(image=(_SCENE[1]["image"] * 255).byte()), ValueError, r"\['image'\] must be a"),
        (dict(image=_SCENE[1]["image"][0]), ValueError, r"\['image'\] must be a \(C, H, W\)"),
        (
            dict(image=_SCENE[1]["image"][:, :40]),
            ValueError,
            r"\['image'\] is .*a batch holds one size",
        ),
        (dict(boxes=_SCENE[1]["boxes"][:, :3]), ValueError, r"\['boxes'\] must be \(N, 4\)"),
        (dict(boxes=_SCENE[1]["boxes"].tolist()), TypeError, r"\['boxes'\] must be a tensor"),
    ],
)
def test_collate_scenes_names_a_value_of_an_item_that_the_batch_cannot_hold(change, error, message):
    items = [_SCENE[0], {**_SCENE[1], **change}]
    with pytest.raises(error, match=r"collate_scenes: items\[1\]" + message):
        collate_scenes(items)
    batch = collate_scenes([_SCENE[0], _SCENE[1]])  # the items as they are
    assert batch["labels"].shape == (2, 9) and batch["image"].shape == (2, 1, 80, 80)


def test_make_scenes_refuses_more_scenes_than_fit_in_memory_naming_indices(monkeypatch):
    """Before: ``make_scenes(gabor, "train", range(10**9))`` grew to 24 GB and was killed."""
    monkeypatch.setattr("mistnet.machine.available_memory", lambda: 10**9)  # 1 GB free
    gabor = build_generator("gabor")
    with pytest.raises(ValueError, match=r"1,000,000,000 scenes of gabor need .*\(indices\)"):
        make_scenes(gabor, "train", range(10**9))
    with pytest.raises(ValueError, match=r"100,000 scenes of gabor need .*\(indices\)"):
        make_scenes(gabor, "train", np.arange(10**5))  # 2.6 GB
    assert make_scenes(gabor, "train", range(2))["images"].shape == (2, 1, 80, 80)


def test_a_generator_object_takes_no_digits_or_parameters_beside_it():
    """Before: SceneDataset(generator, ..., layout_bank=0, digits="/nonexistent") ignored both
    without a word (the object holds its own)."""
    from mistnet.data import SceneDataset, build_generator

    g = build_generator("mnist-hard")
    with pytest.raises(TypeError, match=r"^digits, layout_bank: a SceneGenerator given as name"):
        SceneDataset(g, "train", size=1, layout_bank=0, digits="/nonexistent")
    assert len(SceneDataset(g, "train", size=2)) == 2


def test_collate_scenes_gives_float32_images_whatever_the_items_float_dtype():
    """Before: items of float64 images made a float64 batch (documented: float32)."""
    import torch

    from mistnet.data import collate_scenes

    item = {
        "image": torch.rand(1, 8, 8, dtype=torch.float64),
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "count": torch.tensor(0),
    }
    batch = collate_scenes([item, item])
    assert batch["image"].dtype == torch.float32
    assert torch.equal(batch["image"][0], item["image"].float())


@pytest.mark.parametrize("key", ["image", "boxes", "labels", "count"])
def test_collate_scenes_refuses_an_item_tensor_that_holds_no_values(key):
    """Before: a meta ``count`` failed in ``Tensor.item()``, meta ``boxes`` with "Cannot copy out
    of meta tensor", and a meta ``image`` was taken: the batch's image was on the meta device."""
    items = [_SCENE[0], {**_SCENE[1], key: _SCENE[1][key].to("meta")}]
    with pytest.raises(ValueError, match=rf"collate_scenes: items\[1\]\['{key}'\]: a tensor on "
                       "the meta device holds no values to read"):  # fmt: skip
        collate_scenes(items)
    sparse = {**_SCENE[0], key: _SCENE[0][key].to_sparse()}
    with pytest.raises(ValueError, match=rf"items\[0\]\['{key}'\]: a tensor of torch.sparse_coo"):
        collate_scenes([sparse])


def _hard_with(**kw):
    from mistnet.data.scenes import MnistHard

    return MnistHard(layout_bank=4, **kw)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        # gabor: 2.5 and True were 2 and 1 impulses, None a bare '<' TypeError, 10**12 failed
        # (or swapped) making its scenes, a = 1e-5 a 298 GiB MemoryError naming nothing
        # a = 1e300 made NaN scenes, amplitude = 1e300 scenes of inf
        (lambda: build_generator("gabor", a=1e300), DataError, r"^a=1e\+300 and amplitude=0.5 give a texture beyond float32"),
        (lambda: build_generator("gabor", amplitude=1e300), DataError, "amplitude=1e\\+300 give a texture beyond"),
        (lambda: build_generator("gabor", omega=float("nan")), DataError, "^omega must be a finite number, got nan$"),
        (lambda: build_generator("gabor", count=2.5), TypeError, r"^count must be an integer, got 2\.5"),
        (lambda: build_generator("gabor", count=True), TypeError, "^count must be an integer, got True"),
        (lambda: build_generator("gabor", count=None), TypeError, "^count must be an integer, got None"),
        (lambda: build_generator("gabor", count="3"), TypeError, "^count must be an integer, got '3'"),
        (lambda: build_generator("gabor", count=0), DataError, r"^count must be an integer in 1\.\.6400"),
        (lambda: build_generator("gabor", count=10**12), DataError, r"^count must be .* in 1\.\.6400"),
        (lambda: build_generator("gabor", a=1e-5), DataError, r"^a must be >= 0\.0125 .*got 1e-05"),
        # region: (10.,) an IndexError, (10, 70, 5) cut to (10, 70), (70, 10) and True taken,
        # a rectangle for gabor and the others raw TypeErrors/ValueErrors naming nothing
        (lambda: build_generator("gabor", region=(10.0,)), DataError, r"^region must be \(low, high\), got \(10\.0,\)"),
        (lambda: build_generator("gabor", region=(10, 70, 5)), DataError, r"^region must be \(low, high\)"),
        (lambda: build_generator("gabor", region=None), DataError, r"^region must be \(low, high\), got None"),
        (lambda: build_generator("gabor", region="ab"), DataError, r"^region must be \(low, high\)"),
        (lambda: build_generator("gabor", region=((10, 45), (10, 70))), DataError, r"^region must be \(low, high\), got"),
        (lambda: build_generator("gabor", region=(70, 10)), DataError, r"^region \(70, 10\) must have low < high"),
        (lambda: build_generator("gabor", region=(True, 70)), DataError, r"^region must hold numbers, got \(True, 70\)"),
        (lambda: build_generator("mnist-hard", region=(10.0,)), DataError, r"^region must be \(low, high\) or \(\(x_low"),
        (lambda: build_generator("mnist-hard", region=None), DataError, r"^region must be \(low, high\) or"),
        (lambda: build_generator("mnist-hard", region="ab"), DataError, r"^region must be \(low, high\) or"),
        (lambda: build_generator("mnist-hard", region=((10, 45),)), DataError, r"^region must be \(low, high\) or"),
        (lambda: build_generator("mnist-hard", region=((10, 45, 3), (10, 70))), DataError, r"^region must be \(low, high\) or"),
        (lambda: build_generator("mnist-hard", region=(10, (10, 70))), DataError, r"^region must be \(low, high\) or"),
        (lambda: build_generator("mnist-hard", region=(10, 70, 5)), DataError, r"^region must be \(low, high\) or"),
        (lambda: build_generator("mnist-hard", region=(True, 70)), DataError, r"^region must hold numbers"),
        (lambda: build_generator("mnist-hard", region=((10, 45), (70, 10))), DataError, r"^region .* must have low < high"),
        # radius 1e-6: Bridson filled the region with ~10**15 points (no end)
        (lambda: build_generator("mnist-hard", radius=1e-6), DataError, r"^radius must be a finite number >= 1, got 1e-06"),
        # the uneven layouts' radius and region: "MnistHard() got multiple values for keyword"
        (lambda: build_generator("mnist-hard-left", radius=10.0), DataError, r"'mnist-hard-left': its radius and region are"),
        (lambda: build_generator("mnist-hard-right", region=(10, 70)), DataError, r"'mnist-hard-right': its radius and region"),
        (lambda: build_generator("mnist-hard-3", counts=[2]), DataError, "its digit counts are in its name"),
        # MnistHard's counts: 2.5 and True were 2 and 1 digits, "9" nine, None a bare TypeError
        (lambda: _hard_with(counts=(2.5,)), TypeError, r"^counts must be a sequence of integers, got \(2\.5,\)"),
        (lambda: _hard_with(counts=[True, 3]), TypeError, r"^counts must be a sequence of integers"),
        (lambda: _hard_with(counts="9"), TypeError, r"^counts must be a sequence of integers, got '9'"),
        (lambda: _hard_with(counts=None), TypeError, r"^counts must be a sequence of integers, got None"),
        (lambda: _hard_with(counts=(0, 3)), DataError, r"^digit counts must be integers in 1\.\.99, got \(0, 3\)"),
        (lambda: _hard_with(counts=range(10**10)), DataError, r"^digit counts must be integers in 1\.\.99"),
        (lambda: _hard_with(name=5), TypeError, "^name must be a string, got 5"),
    ],
)  # fmt: skip
def test_generator_parameters_are_checked_naming_them(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_generator_parameters_of_every_accepted_kind_still_build():
    """The checks above refuse no value that was right: numpy and 0-d integers, arrays as a
    region, a rectangle for mnist-hard, the default digits named."""
    g = build_generator("gabor", count=np.int64(3), region=np.array([20, 60]), a=0.0125)
    assert (g.max_count, g.region) == (3, (20.0, 60.0))
    assert g.generate("train", 0).boxes.shape == (3, 4)
    h = build_generator(
        "mnist-hard-3to5", region=((10, 45), (10.0, 70.0)), radius=12, layout_bank=4
    )
    assert h.params()["region"] == [[10.0, 45.0], [10.0, 70.0]] and h.counts.tolist() == [3, 4, 5]
    assert build_generator("mnist-hard", region=(10, 70), layout_bank=4).params()["region"] == [
        10.0,
        70.0,
    ]
    assert _hard_with(counts=np.array([4, 3, 4])).counts.tolist() == [3, 4]
    assert build_generator("mnist-hard-left", layout_bank=4).region == ((10.0, 45.0), (10.0, 70.0))
    assert len(SceneDataset("gabor", "train", 2, digits="embedded")) == 2
