"""The model constructors refuse, by the caller's name for it, what the ops would refuse only at
the first forward (or never)."""

import math

import numpy as np
import pytest
import torch

from mistnet.config import ModelConfig, load_preset
from mistnet.models import (
    MIST,
    ChannelWiseHeatmap,
    GridMIST,
    HeatmapBody,
    HeatmapNet,
    PatchAutoencoder,
    PatchClassifier,
    PatchDecoder,
    PatchEncoder,
    PreNormResBlock,
    grid_keypoints,
)
from mistnet.models import build as build_module
from mistnet.models.build import build_model, build_seeded


def _nets():
    task = PatchClassifier(1, patch_size=8, base_width=4, levels=1, blocks=1)
    return HeatmapNet(1, width=4, depth=1), task


def _mist(**kwargs):
    """A MIST of :func:`_nets` at their patch side (another is refused first)."""
    return MIST(*_nets(), patch_size=8, **kwargs)


@pytest.mark.parametrize(
    "dilations, shown",
    [([1.5] * 4, "1.5"), ([2.9] * 4, "2.9"), ([1.5], "1.5"), ([2, 2, 2, 2.0], "2.0")],
)
def test_dilations_that_are_no_integers_are_refused(dilations, shown):
    """Before: int() truncated them: 1.5 built no dilated convolution at all, 2.9 dilation 2;
    [1.5] at depth 4 was shown as "got (1,)", not as given."""
    with pytest.raises(ValueError, match=f"dilations must be an integer >= 1, got {shown}$"):
        HeatmapNet(1, depth=4, dilations=dilations)


def test_dilations_that_are_integers_are_taken():
    body = HeatmapBody(1, width=4, depth=2, dilations=np.array([1, 3]))
    got = [
        m.dilation
        for m in body.modules()
        if isinstance(m, torch.nn.Conv2d) and m.dilation != (1, 1)
    ]
    assert got == [(3, 3)]  # numpy integers taken
    with pytest.raises(TypeError, match="dilations must be a sequence of integers >= 1, got 2"):
        HeatmapBody(1, depth=1, dilations=2)


@pytest.mark.parametrize(
    "call, message",
    [
        # Before: TypeError "'<' not supported between instances of 'str' and 'int'"
        (lambda: HeatmapNet("1"), "in_channels must be an integer >= 1, got '1'"),
        # Before: accepted as 1 channel / 1.5 px, a raw comparison error, a torch error, or
        # 2**10**12 channels grown until memory ran out
        (lambda: PatchEncoder(True), "in_channels must be an integer >= 1, got True"),
        (lambda: PatchEncoder(1, patch_size=1.5), "patch_size must be an integer >= 1, got 1.5"),
        (lambda: PatchEncoder("2"), "in_channels must be an integer >= 1, got '2'"),
        (lambda: PatchEncoder(1, levels=10**12), r"levels must be an integer in \[1, 12\]"),
        (lambda: PatchClassifier(1, True), "num_classes must be an integer >= 1, got True"),
        (lambda: PatchAutoencoder(True), "_channels must be an integer >= 1, got True"),
        (lambda: PreNormResBlock(-1), "channels must be an integer >= 1, got -1"),
        # Before: torch's "empty(): argument 'size' (position 1) must be tuple of ints"
        (lambda: HeatmapNet(1.5), "in_channels must be an integer >= 1, got 1.5"),
        (lambda: HeatmapBody(1, width=True), "width must be an integer >= 1, got True"),
        # Before: "out_channels must be >= 1, got 0" (the caller passed k)
        (lambda: ChannelWiseHeatmap(1, k=0), "k must be an integer >= 1, got 0"),
        (lambda: ChannelWiseHeatmap(1, side=math.inf), "side must be a finite number > 0"),
        # Before: "k must be >= 1, got 0" (the caller passed rows)
        (lambda: GridMIST(_nets()[1], rows=0), "rows must be an integer >= 1, got 0"),
        # Before: accepted; the forward failed in reshape(): "type must be tuple of ints"
        (lambda: GridMIST(_nets()[1], rows=2.5, cols=2.5), "rows must be an integer >= 1, got 2.5"),
        (lambda: GridMIST(_nets()[1], cols="3"), "cols must be an integer >= 1, got '3'"),
        # Before: TypeError "'<' not supported between instances of 'str' and 'int'"
        (lambda: _mist(k="2"), "k must be an integer >= 1, got '2'"),
        # Before: all accepted, refused at the first forward (patch_size as "size")
        (lambda: _mist(k=2.5), "k must be an integer >= 1, got 2.5"),
        (lambda: _mist(k=True), "k must be an integer >= 1, got True"),
        (lambda: MIST(*_nets(), patch_size=1), "patch_size must be an integer >= 2, got 1"),
        (lambda: _mist(softmax_window=2), "softmax_window must be an odd integer >= 1"),
        (lambda: _mist(nms_window=4), r"nms_window must be an odd integer in \[1, "),
        (
            lambda: _mist(softmax_window=5, nms_window=7),
            r"nms_window must be an odd integer in \[1, softmax_window=5\], got 7",
        ),
        (lambda: _mist(softmax_strength=math.nan), "softmax_strength must be a finite"),
        (lambda: _mist(softmax_eps=-1), "softmax_eps must be a finite number >= 0"),
        (lambda: _mist(sides=()), "sides must hold at least one box side"),
        (lambda: _mist(sides=(40.0, 20.0)), "sides must be strictly increasing"),
        # Before: TypeError "new(): invalid data type 'str'"
        (lambda: grid_keypoints(9, 9, rows="3"), "rows must be an integer >= 1, got '3'"),
        # Before: "grid cells must be square ..." for a height that is no integer
        (lambda: grid_keypoints(1.5, 9), "height must be an integer >= 1, got 1.5"),
        # Before: torch's RuntimeError "Expected one of cpu, cuda, ... device type at start"
        (lambda: grid_keypoints(9, 9, device="gpu"), "device must name a torch device"),
        (lambda: grid_keypoints(9, 9, dtype=torch.int64), "dtype must be a floating-point"),
        # Before: accepted; every detection scored 0
        (
            lambda: _mist(softmax_eps=1e300),
            r"softmax_eps must be in \[0, 1\), got 1e\+300",
        ),
        (lambda: _mist(softmax_eps=1.0), r"softmax_eps must be in \[0, 1\), got 1.0"),
        # Before: every soft-argmax position NaN
        (
            lambda: ChannelWiseHeatmap(1, temperature=1e-320),
            r"temperature must be >= 2.94e-39 \(its reciprocal a float32\), got 1e-320",
        ),
        # Before: RuntimeError "value cannot be converted to type float without overflow"
        (
            lambda: ChannelWiseHeatmap(1, side=1e39),
            r"side must be a finite number > 0 and <= 3.4e38 \(the largest float32\), got 1e\+39",
        ),
    ],
)
def test_constructors_refuse_arguments_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "call, message",
    [
        # Before: accepted; the forward failed: "'NoneType' object is not callable"
        (lambda: MIST(None, _nets()[1]), "heatmap_net must be a torch.nn.Module, got NoneType"),
        (lambda: MIST(_nets()[0], "net"), "task_net must be a torch.nn.Module, got str"),
        (lambda: _mist(sides="20"), "sides must be a sequence of box sides"),
        (lambda: HeatmapBody(1, channels_last="no"), "channels_last must be True or False"),
        (lambda: grid_keypoints(9, 9, device=[0]), "device must be a torch.device or its name"),
    ],
)
def test_constructors_refuse_arguments_of_the_wrong_type_by_name(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_constructors_take_numpy_integers_and_still_run():
    heat, task = _nets()
    model = MIST(heat, task, k=np.int64(2), sides=np.array([8.0]), patch_size=np.int64(8))
    assert (model.k, model.sides, model.patch_size) == (2, (8.0,), 8)
    assert model(torch.rand(1, 1, 24, 24)).keypoints.shape == (1, 2, 3)
    grid = GridMIST(task, rows=np.int64(2), cols=2, patch_size=8)
    assert grid(torch.rand(1, 1, 20, 20)).keypoints.shape == (1, 4, 3)
    assert grid_keypoints(9, 9, device=torch.device("cpu")).shape == (1, 9, 3)


@pytest.mark.parametrize(
    ("task", "task_net", "message"),
    [
        (
            "reconstruct",
            PatchClassifier(1, levels=1, blocks=1),
            "task='reconstruct' needs a PatchAutoencoder as task_net, got a PatchClassifier",
        ),  # fmt: skip
        (
            "classify",
            PatchAutoencoder(1, levels=1, blocks=1),
            "task='classify' needs a PatchClassifier as task_net, got a PatchAutoencoder",
        ),  # fmt: skip
    ],
)
def test_a_task_network_of_the_other_task_is_refused_naming_both(task, task_net, message):
    """Before: accepted; a classifier's logits were pasted back as patches at the first
    forward (or decoded patches read as class logits)."""
    with pytest.raises(ValueError, match=message):
        MIST(_nets()[0], task_net, task=task)
    with pytest.raises(ValueError, match=message):
        GridMIST(task_net, task=task)


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (torch.zeros(1, 1, 24, 24, dtype=torch.int64), ValueError, "images must be floating"),
        (torch.rand(1, 1, 24, 24).bfloat16(), ValueError, "images are torch.bfloat16 but the"),
        (torch.rand(1, 1, 24, 24, device="meta"), ValueError, "images: a tensor on the meta"),
        ([[[[0.5] * 24] * 24]], TypeError, r"images must be a \(B, C, H, W\) torch.Tensor"),
    ],
)
def test_the_parts_of_mist_refuse_images_as_its_forward_does(images, error, message):
    """Before: ``log_heatmaps`` (a part training calls) raised torch's NotImplementedError,
    RuntimeError or AttributeError for what ``forward`` refused, ``run_task`` torch's
    RuntimeError for bfloat16 images."""
    model = MIST(*_nets(), k=2, patch_size=8)
    keypoints = torch.tensor([[[8.0, 8.0, 8.0]]])
    for call in (model, model.log_heatmaps, lambda x: model.run_task(x, keypoints)):
        with pytest.raises(error, match=message):
            call(images)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: HeatmapNet(1, width=10**6), r"HeatmapBody\(width=1000000, depth=4, "),
        (lambda: HeatmapBody(1, depth=10**9), r"HeatmapBody\(width=32, depth=1000000000, "),
        (lambda: PatchClassifier(1, base_width=10**6), "base_width=1000000, levels=5, blocks=3"),
        (lambda: PatchAutoencoder(1, base_width=10**6), "base_width=1000000, levels=5"),
        (lambda: PatchClassifier(1, num_classes=10**12), "head of num_classes=1000000000000"),
        (
            lambda: PatchClassifier(1, patch_size=10**6),
            "head of num_classes=10, patch_size=1000000",
        ),
        (lambda: ChannelWiseHeatmap(1, k=10**9), "k=1000000000: its 32,000,000,000 weights"),
        (
            lambda: PreNormResBlock(100_000),
            r"^PreNormResBlock\(channels=100000\): its 180,000,000,000 weights need 720",
        ),
        (
            lambda: grid_keypoints(10**6, 10**6, 10**6, 10**6),
            r"rows=1000000, cols=1000000: the grid's keypoints need 24,000.0 GB",
        ),
    ],
)
def test_sizes_beyond_the_memory_are_refused_before_allocating_naming_them(
    monkeypatch, call, message
):
    """Before: torch's allocator failed ("DefaultCPUAllocator: can't allocate memory: you tried
    to allocate 36000000000000 bytes"), or (depth=10**9) Python built blocks until killed."""
    monkeypatch.setattr("mistnet.machine.available_memory", lambda: 10**9)  # 1 GB free
    with pytest.raises(ValueError, match=message + ".* of memory, more than the 1.0 GB available"):
        call()


def test_a_cuda_grid_is_refused_where_there_is_no_cuda(monkeypatch):
    """Before: AssertionError "Torch not compiled with CUDA enabled" from torch.arange."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", torch.device("cuda", 0)):
        with pytest.raises(ValueError, match="device cuda.* was asked for but no CUDA device"):
            grid_keypoints(9, 9, device=device)


def test_mist_refuses_sides_and_strength_its_forward_cannot_take():
    hn = HeatmapNet(1, width=8, depth=2)
    # both were built and the first forward failed ("sides has 2 entries but h has S=1",
    # "strength must be a finite number ...")
    with pytest.raises(ValueError, match="^sides has 2 entries but heatmap_net has S=1"):
        MIST(hn, PatchClassifier(1), sides=(10.0, 20.0))
    with pytest.raises(ValueError, match=r"^softmax_strength must be .* <= 3.40282e\+38"):
        MIST(hn, PatchClassifier(1), softmax_strength=1e300)
    two = HeatmapNet(1, factors=(1.0, 0.5), width=8, depth=2)
    assert MIST(two, PatchClassifier(1), sides=(10.0, 20.0)).sides == (10.0, 20.0)
    assert (
        MIST(hn.double(), PatchClassifier(1).double(), softmax_strength=1e300).softmax_strength
        == 1e300
    )


@pytest.mark.parametrize(
    "call, message",
    [
        # Before: the encoder was built (drawing its initial weights) before the decoder
        # refused its output
        (lambda: PatchAutoencoder(1, output="relu"), "^output must be one of"),
        (lambda: PatchAutoencoder(1, blocks=1, output=None), "^output must be one of"),
        (lambda: PatchDecoder(1, output="relu"), "^output must be one of"),
        (lambda: PatchClassifier(1, num_classes=0), "^num_classes must be"),
        (lambda: HeatmapNet(1, dilations=(1, 2)), "^dilations must be 4 integers"),
        (lambda: HeatmapBody(1, channels_last="no"), "^channels_last must be True or False"),
        (lambda: ChannelWiseHeatmap(1, temperature=0), "^temperature must be"),
        (lambda: PreNormResBlock(0), "^channels must be"),
        # Before: the task network was built before the method was read
        (lambda: build_model(ModelConfig(), "nope"), "^unknown method 'nope'"),
    ],
)
def test_a_refused_constructor_leaves_the_random_generator_as_it_was(call, message):
    """A seeded script that catches the error draws the same numbers afterwards."""
    state = torch.get_rng_state()
    with pytest.raises((TypeError, ValueError), match=message):
        call()
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    "cfg, shown", [(load_preset("tiny-cpu"), "Config"), (None, "NoneType"), ({"k": 3}, "dict")]
)
def test_build_model_names_a_config_that_is_no_model_config(cfg, shown):
    """Before: an AttributeError ("'Config' object has no attribute 'patch_size'") for the whole
    config the README's wording invited."""
    state = torch.get_rng_state()
    with pytest.raises(
        TypeError, match=f"^cfg must be a ModelConfig \\(a Config's model\\), got {shown}$"
    ):
        build_model(cfg)
    assert torch.equal(torch.get_rng_state(), state)


def test_mist_refuses_networks_built_for_other_channels_naming_both():
    """Before: built; the first forward refused "patches must have 1 channels ... got (2, 3, 3,
    16, 16)", naming patches, which the caller never passed."""
    from mistnet.models import ChannelWiseMIST

    message = "^heatmap_net takes images of 3 channels but task_net \\(a PatchClassifier\\) "
    for heatmap_net, model in [
        (HeatmapNet(3), MIST),
        (ChannelWiseHeatmap(3, k=9), ChannelWiseMIST),
    ]:
        with pytest.raises(ValueError, match=message + "patches of 1; build both"):
            model(heatmap_net, PatchClassifier(1))
    with pytest.raises(ValueError, match="takes images of 1 channels but task_net \\(a PatchAuto"):
        MIST(HeatmapNet(1), PatchAutoencoder(3), task="reconstruct")
    assert MIST(HeatmapNet(3), PatchClassifier(3)).task_net.in_channels == 3


def test_a_seeded_build_is_the_same_whatever_the_callers_default_device(monkeypatch):
    """Before: the model was built on the caller's default device (``torch.set_default_device
    ("cuda")``), its weights drawn from the CUDA generator, which training no longer seeds:
    another model for the same ``train.seed``. A meta default device stands in for CUDA here
    (``build_seeded`` refuses meta itself, so that check is lifted for the test)."""
    cfg = load_preset("tiny-cpu").model
    torch.manual_seed(3)
    expected = build_model(cfg, "mist").state_dict()
    monkeypatch.setattr(build_module, "require_real_default_device", lambda: None)
    with torch.device("meta"):
        model = build_seeded(cfg, "mist", 3)
    got = model.state_dict()
    assert all(v.device.type == "cpu" and torch.equal(v, expected[k]) for k, v in got.items())
