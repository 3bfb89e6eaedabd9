import dataclasses
import json

import numpy as np
import pytest

from mistnet import config
from mistnet.config import (
    Config,
    apply_overrides,
    from_dict,
    load_json,
    load_preset,
    overridden,
    preset_names,
    resolve,
    set_value,
    validate,
)
from mistnet.configrules import unread_keys
from mistnet.errors import MistError
from mistnet.models.build import build_model
from mistnet.validate import typed_value

SHIPPED = {
    "mnist-hard-classify",
    "mnist-easy-recon",
    "mnist-hard-recon",
    "gabor-recon",
    "svhn-classify",
    "mnist-hard-supervised",
    "mnist-hard-channelwise",
    "mnist-easy-grid",
    "tiny-cpu",
}


# -- rejection of unknown names and ill-typed values -------------------------------------------


def test_unknown_section_rejected():
    with pytest.raises(MistError, match="unknown config section 'optim'"):
        from_dict({"optim": {"lr": 1.0}})
    with pytest.raises(MistError, match="unknown config section"):
        apply_overrides(Config(), ["optim.lr=1"])


def test_unknown_key_rejected():
    with pytest.raises(MistError, match=r"unknown config key model\.depth"):
        from_dict({"model": {"depth": 3}})
    with pytest.raises(MistError, match=r"unknown config key train\.learning_rate"):
        apply_overrides(Config(), ["train.learning_rate=1e-3"])


def test_set_value_refuses_an_unknown_section_listing_the_known_ones():
    """Before: AttributeError "'Config' object has no attribute 'nosuch'" (TypeError
    "attribute name must be string" for None)."""
    known = r"known: \['data', 'model', 'record', 'train'\]"
    for section in ("nosuch", None, "to_dict"):
        with pytest.raises(MistError, match=rf"^unknown config section {section!r}; {known}$"):
            set_value(Config(), section, "key", 1)
    with pytest.raises(TypeError, match="cfg must be a Config, got dict"):
        set_value({}, "model", "k", 1)
    with pytest.raises(MistError, match=r"^unknown config key model\.nosuch; known: \["):
        set_value(Config(), "model", "nosuch", 1)
    for key in (["k"], None):  # ["k"]: "unhashable type: 'list'"
        with pytest.raises(MistError, match=r"^unknown config key model\.(\['k'\]|None); kno"):
            set_value(Config(), "model", key, 1)
    with pytest.raises(MistError, match=r"^unknown config key train\.\['lr'\]; known: \["):
        set_value(Config(), "train", ["lr"], 1)  # past the renamed keys too


def test_section_must_be_a_table():
    with pytest.raises(MistError, match="must be a table"):
        from_dict({"model": 3})


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.steps=abc", r"train\.steps must be an integer, got 'abc'"),
        ("train.steps=1.5", r"train\.steps must be an integer"),
        ("train.steps=true", r"train\.steps must be an integer"),  # bool is not an int here
        ("train.lr_keypoints=fast", r"train\.lr_keypoints must be a number"),
        ("train.method=adam", r"train\.method must be one of \['mist', 'supervised'"),
        ("model.task=segment", r"model\.task must be one of"),
        ("model.factors=0.5", r"model\.factors must be a list"),
        ('model.factors=[1.0, "half"]', r"model\.factors\[1\] must be a number"),
        ("data.name=3", r"data\.name takes a string, and 3 reads as a TOML int"),
    ],
)
def test_ill_typed_override_rejected(override, message):
    cfg = Config()
    with pytest.raises(MistError, match=message):
        apply_overrides(cfg, [override])


@pytest.mark.parametrize("override", ["train.lr_keypoints", "lr_keypoints=3", "a.b.c=1", "=1"])
def test_malformed_override_rejected(override):
    with pytest.raises(MistError):
        apply_overrides(Config(), [override])


def test_bool_fields_accept_only_bools():
    # No shipped field is a bool yet; the coercion rule still has to hold for future ones.
    assert typed_value(True, bool, "x.flag") is True
    with pytest.raises(MistError, match="must be true or false"):
        typed_value(1, bool, "x.flag")
    with pytest.raises(MistError, match="must be true or false"):
        typed_value("yes", bool, "x.flag")


# -- override parsing ---------------------------------------------------------------------------


def test_override_values_are_parsed_as_toml():
    cfg = apply_overrides(
        Config(),
        [
            "train.lr_keypoints=3e-4",
            "train.proximal_weight=1",  # an int is a lossless float
            "train.steps=120",
            "model.factors=[1, 0.5]",
            "data.name=mnist-easy",  # a bare word falls back to a string
            'data.path="/tmp/a b/c=d"',  # quoted: spaces and "=" survive
            "train.centre_mode = mixture",  # spaces around "=" are fine
            "train.centre_weight=1",  # (which the centring prior's weight makes read)
        ],
    )
    assert cfg.train.lr_keypoints == 3e-4 and isinstance(cfg.train.lr_keypoints, float)
    assert cfg.train.proximal_weight == 1.0 and isinstance(cfg.train.proximal_weight, float)
    assert cfg.train.steps == 120 and isinstance(cfg.train.steps, int)
    assert cfg.model.factors == (1.0, 0.5)
    assert all(isinstance(f, float) for f in cfg.model.factors)
    assert cfg.data.name == "mnist-easy"
    assert cfg.data.path == "/tmp/a b/c=d"
    assert cfg.train.centre_mode == "mixture"
    assert config._parse_value("true") is True
    assert config._parse_value("[true, false]") == [True, False]


def test_later_override_wins():
    cfg = apply_overrides(Config(), ["train.keypoint_iters=3", "train.keypoint_iters=5"])
    assert cfg.train.keypoint_iters == 5


# -- presets ------------------------------------------------------------------------------------


def test_shipped_presets_listed():
    assert SHIPPED <= set(preset_names())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_preset_loads_and_builds(name):
    cfg = load_preset(name)
    assert isinstance(cfg, Config)
    model = build_model(cfg.model, cfg.train.method)
    assert model.k == cfg.model.k


def test_every_preset_says_what_it_reproduces():
    from importlib import resources

    for name in SHIPPED:
        text = (resources.files("mistnet") / "configs" / f"{name}.toml").read_text()
        assert text.startswith("# Reproduces"), name


def test_paper_preset_follows_spec_defaults():
    cfg = load_preset("mnist-hard-classify")
    m, t = cfg.model, cfg.train
    assert (m.k, m.base_side, m.factors, m.patch_size) == (9, 20.0, (1.0,), 32)
    assert (m.heatmap_width, m.heatmap_depth, m.patch_levels, m.patch_blocks) == (32, 4, 5, 3)
    assert (t.batch_size, t.lr_task, t.lr_heatmap, t.lr_keypoints, t.keypoint_iters) == (
        32,
        1e-4,
        1e-4,
        1e4,
        2,
    )
    assert (t.class_loss, t.weight_beta, t.proximal_weight, t.centre_weight) == (
        "eq9",
        5.0,
        0.0,
        0.0,
    )
    assert t.steps * t.batch_size == 10 * 50_000
    recon = load_preset("mnist-hard-recon")
    assert (recon.model.task, recon.train.weight_beta, recon.train.lr_keypoints) == (
        "reconstruct",
        0,
        3.2,
    )
    gabor = load_preset("gabor-recon")
    assert (gabor.model.k, gabor.model.output, gabor.data.name) == (20, "signed", "gabor")
    svhn = load_preset("svhn-classify")
    assert (svhn.model.in_channels, svhn.model.k, svhn.model.factors) == (3, 2, (0.5,))


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(MistError, match="unknown preset 'mnist-medium'.*tiny-cpu"):
        load_preset("mnist-medium")


def test_a_shipped_name_is_the_shipped_preset_whatever_the_working_directory_holds(
    tmp_path, monkeypatch
):
    """Before: with a folder ``tiny-cpu`` (a run named after its preset) in the working
    directory, ``--preset tiny-cpu`` said "tiny-cpu: a directory, not a regular file", and
    ``mist demo`` (no preset given) failed so on a folder ``mnist-hard-cpu``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-cpu").mkdir()
    (tmp_path / "mnist-hard-cpu").write_text("not toml [")
    from importlib import resources

    shipped = resources.files("mistnet") / "configs"
    for name in ("tiny-cpu", "mnist-hard-cpu"):
        assert load_preset(name) == load_preset(str(shipped / f"{name}.toml"))
    with pytest.raises(MistError, match="invalid TOML"):  # the file, when named as one
        load_preset("./mnist-hard-cpu")
    # Before: a path to a file that is not there fell through to the shipped preset of its name.
    for missing in ("./mnist-easy-recon", "sub/tiny-cpu", tmp_path / "tiny-cpu-x" / "tiny-cpu"):
        with pytest.raises(MistError, match="no such file"):
            load_preset(missing)
    with pytest.raises(MistError, match=r"^\./gabor-recon: no such file \(the shipped preset is"):
        load_preset("./gabor-recon")


def test_preset_from_a_toml_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[model]\nk = 4\n[train]\nmethod = "supervised"\n')
    cfg = resolve(str(path), ["train.steps=7"])
    assert (cfg.model.k, cfg.train.method, cfg.train.steps) == (4, "supervised", 7)
    with pytest.raises(MistError, match="no such file"):
        load_preset(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nk = 4\n")
    with pytest.raises(MistError, match="invalid TOML"):
        load_preset(str(bad))
    typo = tmp_path / "typo.toml"
    typo.write_text("[model]\nkk = 4\n")
    with pytest.raises(MistError, match=r"unknown config key model\.kk"):
        load_preset(str(typo))


def test_an_integer_past_pythons_digit_limit_is_one_line_everywhere(tmp_path):
    huge = "1" + "0" * 5000
    limit = "an integer of more than 4300 digits"
    with pytest.raises(MistError, match=rf"^--set model.k: {limit}$"):
        resolve("tiny-cpu", [f"model.k={huge}"])
    preset = tmp_path / "huge.toml"
    preset.write_text(f"[model]\nk = {huge}\n")
    with pytest.raises(MistError, match=rf"huge.toml: invalid TOML: {limit}$"):
        load_preset(str(preset))
    record = tmp_path / "config.json"
    record.write_text(f'{{"model": {{"k": {huge}}}}}')
    with pytest.raises(MistError, match=rf"config.json: not valid JSON \({limit}\)$"):
        load_json(record)


# -- round trip ---------------------------------------------------------------------------------


def test_json_round_trip(tmp_path):
    cfg = resolve(
        "svhn-classify",
        ["model.factors=[1.0, 0.7, 0.5]", "data.path=/x/y", "train.centre_weight=1"],
    )
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    back = load_json(path)
    assert back == cfg
    assert json.loads(back.to_json()) == dataclasses.asdict(cfg) | {
        "model": dataclasses.asdict(cfg.model)
        | {"factors": [1.0, 0.7, 0.5], "heatmap_dilations": []},
        "record": {
            "image_size": [],
            "class_names": [],
            "data_made_by": "",
            "data_manifest": "",
        },
    }
    assert back.model.factors == (1.0, 0.7, 0.5)


def test_load_json_rejects_garbage(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(MistError, match="config.json: not valid JSON"):
        load_json(path)
    # Before: a section deleted from a run's config.json was read as the defaults (a run of
    # 4 steps "below the 15000 steps of the run")
    path.write_text('{"model": {"a\\nb": 1}, "data": {}, "train": {}}')  # was two lines
    with pytest.raises(MistError, match=r"unknown config key model.'a\\nb'; known"):
        load_json(path)
    path.write_text('{"model": {}, "data": {}}')
    with pytest.raises(MistError, match="config.json: config section 'train' is missing"):
        load_json(path)


# -- ranges and older run configs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.log_every=0", r"train.log_every must be >= 1, got 0"),
        ("train.ckpt_every=0", r"train.ckpt_every must be >= 1, got 0"),
        ("train.steps=-1", r"train.steps must be >= 0, got -1"),
        ("train.batch_size=0", r"train.batch_size must be >= 1, got 0"),
        ("model.k=0", r"model.k must be >= 1, got 0"),
        ("model.num_classes=0", r"model.num_classes must be >= 1"),
        ("model.patch_size=0", r"model.patch_size must be >= 1"),
        ("model.patch_size=1", r"model.patch_size must be >= 2, got 1"),
        ("model.base_side=-20", r"model.base_side must be >= 1 \(pixels\)"),
        ("model.factors=[]", r"model.factors must be a non-empty, strictly decreasing"),
        ("model.factors=[0.5, 1.0]", r"model.factors must be a non-empty, strictly decreasing"),
        ("model.nms_window=4", r"model.nms_window must be an odd integer >= 1, got 4"),
        ("train.lr_task=nan", r"train.lr_task must be a finite number, got nan"),
        ("train.lr_heatmap=-1e-3", r"train.lr_heatmap must be a number in \[1.2e-38"),
        ("train.lr_keypoints=-1", r"train.lr_keypoints must be 0 or a number in \[1.2e-38, inf"),
        (  # the grid has no heatmap network to start from
            "train.method=grid\0train.init_from=r/best.safetensors",
            r"train.init_parts must be 'task' or 'all' for train.method = grid",
        ),
        # 0 in float32: a clip of 1e-320 px froze the keypoints, where 0 means no clip
        ("train.max_step_px=1e-320", r"train.max_step_px must be 0 or a number in \[1.2e-38"),
        ("train.proximal_weight=1e-320", r"train.proximal_weight must be 0 or a number in"),
        ("train.ema_decay=1", r"train.ema_decay must be in \[0, 1\), got 1.0"),
        ("train.select_metric=rmse", r"train.select_metric must be one of \['both'.*'classify'"),
        ("train.select_metric=bothh", r"train.select_metric must be one of \['', 'both'"),
        ("data.n_val=-3", r"data.n_val must be >= 0"),
        # NMS within the local softmax's window; no level below one pixel; workers capped
        ("model.nms_window=17", r"model.nms_window must be at most model.softmax_window = 15"),
        (
            "model.patch_levels=6",
            r"model.patch_levels must be at most log2\(model.patch_size = 32\)",
        ),
        ("model.patch_levels=1000000000", r"model.patch_levels must be at most .* = 5, got"),
        (
            "train.seed=18446744073709551616",
            r"train.seed must be an integer in \(-2\*\*63, 2\*\*63\)",
        ),
        (
            "train.lr_task=1" + "0" * 400,
            r"train.lr_task must be a finite number, got an integer of \d+ bits",
        ),
        ('data.digits="x\\u0000y"', r"data.digits holds a NUL character, got 'x\\x00y'"),
        ("model.in_channels=2", r"model.in_channels must be 1 \(grey\) or 3 \(colour\), got 2"),
        ("data.workers=100000", r"data.workers must be at most \d+ \(4 x the \d+ cores"),
        # before: 0 steps trained and exit 0 at 2**63 - 1; numpy's "array is too big" (an
        # internal error) from 2**60 (2**40 and below: checked against memory, test_sampling)
        ("data.n_train=9223372036854775807", r"data.n_train must be at most 1,099,511,627,776"),
        ("data.n_train=1152921504606846976", r"data.n_train must be at most 1,099,511,627,776"),
        # before: train.steps=5 kept, the line after it dropped without a word
        ("train.steps=5\nmodel.k=3", r"train.steps='5\\nmodel.k=3': more than one value"),
        ('data.name=" "', r"data.name must be a generator or dataset name, got ' '"),  # read .
        # before: accepted, and read the working directory's IDX files (recorded as "")
        ("data.digits=", r"data.digits must be 'embedded', 'mnist' or an IDX folder, got ''"),
        ('data.digits=" "', r"data.digits must be 'embedded', 'mnist' or an IDX folder, got ' '"),
        # before: recorded and printed raw (a preset's name beside --data is not compared)
        ('data.name="x\\u001b[31m"', r"data.name must be a name of at most 200 printable"),
        ('data.name="' + "n" * 201 + '"', r"printable characters, got '201 characters'"),
        # before: internal errors ("sides must be positive and finite, got [inf]"; Adam's
        # "value cannot be converted to type float without overflow")
        ("model.base_side=1e300", r"model.base_side must be a finite float32 .*, got 1e\+300"),
        ("train.lr_task=1e300", r"train.lr_task must be a finite float32"),
        # before: Adam's overflow again, from lr 3.4e37 (its first step is 10 x lr)
        ("train.lr_task=3.4e38", r"train.lr_task must be a number in \[1.2e-38, 1e\+30\]"),
        ("train.lr_heatmap=1e31", r"train.lr_heatmap must be a number in \[1.2e-38, 1e\+30\]"),
        # before: accepted, 0 in float32: a run that trained nothing
        ("train.lr_task=1e-320", r"train.lr_task must be a number in \[1.2e-38, 1e\+30\]"),
        # before: the centring loss's own refusal at step 1, an internal error; a strength of
        # 1e-300 was 0 in float32, a uniform softmax trained without a word
        ("train.centre_sigma=1e-7", r"train.centre_sigma must be in \[1e-6, 1e6\], got 1e-07"),
        ("train.centre_sigma=2e6", r"train.centre_sigma must be in \[1e-6, 1e6\]"),
        ("model.softmax_strength=1e-300", r"model.softmax_strength must be a number float32"),
        ("model.softmax_strength=1e-45", r"model.softmax_strength must be a number float32"),
        # before: trained on x, while predict and detect fed the classifier 2x - 1
        ("model.output=signed", r"model.output must be 'sigmoid' for a classifier"),
        # before: accepted and recorded, while training started from scratch
        ("train.init_parts=task", r"train.init_parts must be left out without train.init_from"),
    ],
)
def test_out_of_range_values_are_refused_with_the_key(override, message):
    with pytest.raises(MistError, match=message):
        resolve("mnist-hard-classify", override.split("\0"))  # a NUL: two overrides


def test_numpy_scalars_are_numbers():
    """``fit(k=np.int64(3))`` from a computed sweep, as ``predict`` takes them."""
    cfg = resolve("tiny-cpu")
    set_value(cfg, "model", "k", np.int64(3))
    set_value(cfg, "train", "lr_task", np.float32(0.5))
    assert (cfg.model.k, cfg.train.lr_task) == (3, 0.5)
    assert type(cfg.model.k) is int and type(cfg.train.lr_task) is float
    with pytest.raises(MistError, match="model.k must be an integer, got np.True_"):
        set_value(cfg, "model", "k", np.bool_(True))


def test_numpy_bools_are_flags_and_0d_tensors_numbers():
    """Before: ``np.True_`` for a flag and ``torch.tensor(3)`` for an integer were refused
    ("must be true or false, got np.True_", "must be an integer, got tensor(3)")."""
    import torch

    cfg = resolve("tiny-cpu")
    set_value(cfg, "model", "k", torch.tensor(3))
    assert cfg.model.k == 3 and type(cfg.model.k) is int
    for value in (torch.tensor([3]), torch.tensor(3.0), torch.tensor(True), np.array([3])):
        with pytest.raises(MistError, match=r"^model\.k must be an integer, got "):
            set_value(cfg, "model", "k", value)
    # 0-d tensors and arrays are numbers too, as they are integers (before: "must be a number,
    # got tensor(0.5000)"); one of more dimensions, a bool or a complex one is not
    set_value(cfg, "train", "lr_task", torch.tensor(0.25, dtype=torch.float64))
    set_value(cfg, "train", "lr_heatmap", np.array(2))
    assert (cfg.train.lr_task, cfg.train.lr_heatmap) == (0.25, 2.0)
    assert type(cfg.train.lr_task) is float and type(cfg.train.lr_heatmap) is float
    for value in (torch.tensor([0.5]), torch.tensor(True), torch.tensor(1j), np.array("1")):
        with pytest.raises(MistError, match=r"^train\.lr_task must be a number, got "):
            set_value(cfg, "train", "lr_task", value)
    flag = typed_value(np.False_, bool, "x.flag")
    assert flag is False
    with pytest.raises(MistError, match=r"^x\.flag must be true or false, got 1"):
        typed_value(1, bool, "x.flag")


def test_the_grid_baseline_refuses_another_k():
    # Before: trained with its 9 cells while config.json recorded k = 2.
    with pytest.raises(MistError, match=r"model.k must be 9 for train.method = grid"):
        resolve("mnist-hard-classify", ["train.method=grid", "model.k=2"])
    assert resolve("mnist-easy-grid").model.k == 9


def test_reconstruction_selects_on_rmse_only():
    assert resolve("mnist-hard-recon", ["train.select_metric=rmse"]).train.select_metric == "rmse"
    with pytest.raises(MistError, match=r"one of \['rmse'\] for model.task = 'reconstruct'"):
        resolve("mnist-hard-recon", ["train.select_metric=both"])


def old_run_config(**train) -> dict:
    """A run's config.json as versions before the training-core reshaping wrote it."""
    data = json.loads(load_preset("mnist-hard-cpu").to_json())
    del data["record"]
    data["model"]["class_names"] = []
    data["train"].pop("class_loss")
    data["train"].update(
        task_loss="set", x_loss="set", x_noise=0.0, target_sigma=0.0, weighting="image",
        lr_schedule="constant", lr_final=0.05, stage_order="paper", threads=2,
    )  # fmt: skip
    data["train"].update(train)
    return data


#: The train keys' names before they were renamed (old: new).
OLD_NAMES = {
    "lr_k": "lr_keypoints",
    "k_iter": "keypoint_iters",
    "lam": "proximal_weight",
    "x_centre": "centre_weight",
}


def with_old_names(section: dict) -> dict:
    new_to_old = {new: old for old, new in OLD_NAMES.items()}
    return {new_to_old.get(k, k): v for k, v in section.items()}


def test_a_run_config_with_the_old_key_names_loads_to_the_same_config(tmp_path):
    cfg = load_preset("mnist-hard-cpu")  # sets all four keys, none to its default
    assert (cfg.train.lr_keypoints, cfg.train.keypoint_iters, cfg.train.centre_weight) != (
        Config().train.lr_keypoints,
        Config().train.keypoint_iters,
        Config().train.centre_weight,
    )
    data = json.loads(cfg.to_json())
    data["train"] = with_old_names({**data["train"], "proximal_weight": 0.25})
    assert set(OLD_NAMES) <= set(data["train"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    expected = apply_overrides(load_preset("mnist-hard-cpu"), ["train.proximal_weight=0.25"])
    assert load_json(path) == expected


def test_a_toml_preset_with_the_old_key_names_loads_to_the_same_config(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[train]\nlr_k = 300.0\nk_iter = 5\nlam = 0.5\nx_centre = 2.0\n")
    new = "[train]\nlr_keypoints = 300.0\nkeypoint_iters = 5\nproximal_weight = 0.5\ncentre_weight = 2.0\n"
    (tmp_path / "new.toml").write_text(new)
    assert load_preset(str(path)) == load_preset(str(tmp_path / "new.toml"))
    path.write_text("[train]\nlr_k = 300.0\nlr_keypoints = 300.0\n")
    with pytest.raises(MistError, match=r"train.lr_k is the old name of train.lr_keypoints"):
        load_preset(str(path))
    # Before: the old task_loss took class_loss's place without a word ("set" trained "eq9")
    for old in ("task_loss", "x_loss"):
        path.write_text(f'[train]\nclass_loss = "set"\n{old} = "eq9"\n')
        with pytest.raises(MistError, match=rf"train.{old} is the old name of train.class_loss"):
            load_preset(str(path))


def test_an_override_with_an_old_key_name_names_the_new_one():
    with pytest.raises(MistError, match=r"^config key train.k_iter is now train.keypoint_iters$"):
        resolve("tiny-cpu", ["train.k_iter=3"])
    # Before: "unknown config key train.threads; known: [...]", where a preset's train.threads
    # was told it is the option --threads
    with pytest.raises(MistError, match=r"^config key train.threads is now a run-time option: "):
        resolve("tiny-cpu", ["train.threads=1"])


def test_a_setting_that_reads_as_0_without_being_0_is_refused(tmp_path):
    """Before: ``--set train.max_step_px=1e-400`` (a preset's ``ema_decay = 1e-400``, a JSON
    config's) was 0.0, a setting of its own (no clip, no average), taken silently."""
    said = r"'1e-400' is too small for a float \(it reads as 0\); give 0 or a larger number"
    with pytest.raises(MistError, match=r"^--set train.max_step_px: " + said):
        resolve("tiny-cpu", ["train.max_step_px=1e-400"])
    (tmp_path / "p.toml").write_text("[train]\nema_decay = 1e-400\n")
    with pytest.raises(MistError, match=r"p.toml: invalid TOML: " + said):
        load_preset(str(tmp_path / "p.toml"))
    (tmp_path / "config.json").write_text('{"train": {"ema_decay": 1e-400}}')
    with pytest.raises(MistError, match=said):
        load_json(tmp_path / "config.json")
    assert resolve("tiny-cpu", ["train.max_step_px=0e-400"]).train.max_step_px == 0.0
    # a string key is told to quote it, as 1e5 is (not the float's advice)
    with pytest.raises(MistError, match=r"data.path takes a string, and 1e-400 reads as a TOML"):
        resolve("tiny-cpu", ["data.path=1e-400"])


def test_a_run_config_of_an_older_version_loads_with_the_same_behaviour(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old_run_config()))
    assert load_json(path) == load_preset("mnist-hard-cpu")
    recon = json.loads(load_preset("mnist-hard-recon").to_json())
    recon["train"].pop("class_loss")  # the versions with task_loss had no class_loss
    recon["train"].update(task_loss="recon", x_loss="recon")
    path.write_text(json.dumps(recon))
    assert load_json(path) == load_preset("mnist-hard-recon")


def test_an_older_run_config_keeps_what_training_recorded_in_its_record(tmp_path):
    data = old_run_config()
    data["model"].update(image_size=[40, 48], class_names=list("abcdefghij"))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    cfg = load_json(path)
    assert cfg.record.image_size == (40, 48) and cfg.record.class_names == tuple("abcdefghij")
    assert "image_size" not in cfg.to_dict()["model"]


def test_the_record_is_not_set_by_a_preset_or_an_override(tmp_path):
    with pytest.raises(MistError, match=r"unknown config section 'record'"):
        resolve("tiny-cpu", ["record.image_size=[40, 40]"])
    preset = tmp_path / "p.toml"
    preset.write_text("[record]\nimage_size = [40, 40]\n")
    with pytest.raises(MistError, match=r"unknown config section 'record'"):
        load_preset(str(preset))
    # as an older version's key: named, not "unknown config section 'record'" (never written)
    preset.write_text("[model]\nimage_size = [80, 80]\n")
    with pytest.raises(MistError, match=r"p.toml: model.image_size is what training records"):
        load_preset(str(preset))


@pytest.mark.parametrize("names", [["a", "\x1b[31m"], ["a", " "], ["a\nb", "c"]])
def test_recorded_class_names_are_printable_text(names):
    """Before: a class name holding an escape (a packaged model's, a run's config.json) was
    taken, and written raw into detections.csv, which import-images then refused."""
    from mistnet.config import from_record

    data = load_preset("tiny-cpu").to_dict()
    data["model"]["num_classes"] = 2
    data["record"] = {"image_size": [], "class_names": names}
    with pytest.raises(MistError, match=r"^m.json: record.class_names must be names of print"):
        from_record(data, "m.json")
    data["record"]["class_names"] = ["a", "b"]
    assert from_record(data, "m.json").record.class_names == ("a", "b")


@pytest.mark.parametrize(
    "train, message",
    [
        ({"x_noise": 1.5}, r"train.x_noise was removed.*other than 0.0"),
        ({"lr_schedule": "cosine"}, r"train.lr_schedule was removed"),
        ({"stage_order": "code"}, r"train.stage_order was removed"),
        ({"x_loss": "eq9"}, r"different task and x-step losses"),
    ],
)
def test_an_older_run_config_that_used_a_removed_option_is_refused(tmp_path, train, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old_run_config(**train)))
    with pytest.raises(MistError, match=message):
        load_json(path)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: from_dict(5), "data must be a dict"),
        (lambda: validate(5), "cfg must be a mistnet.config.Config"),
        (lambda: load_preset(None), "preset must be a path as text"),
        (lambda: load_json(5), "path must be a path as text"),
        (lambda: resolve("mnist-hard-cpu", "model.k=3"), "overrides must be a list"),
        (lambda: apply_overrides(load_preset("mnist-hard-cpu"), [5]), "overrides must hold"),
        (lambda: overridden("model.k=3"), "overrides must be a list"),
    ],
)
def test_the_config_functions_name_an_argument_of_the_wrong_type(call, message):
    """Before: AttributeError / "expected str, bytes or os.PathLike object", and a single
    string of overrides was read character by character ("override 'm' must look like ...")."""
    with pytest.raises(TypeError, match=message):
        call()


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train", "steps", 2.5, "train.steps must be an integer, got 2.5"),
        ("train", "steps", True, "train.steps must be an integer, got True"),
        ("model", "k", 2.0, "model.k must be an integer, got 2.0"),
        ("model", "factors", 1.0, "model.factors must be a list"),
        ("data", "name", None, "data.name must be a string"),
    ],
)
def test_a_config_built_in_python_is_type_checked_before_training(
    tmp_path, section, key, value, message
):
    """Before: validate and loop.train checked ranges only; train.steps=2.5 trained and wrote a
    config.json no command could read back."""
    from mistnet import loop

    cfg = load_preset("tiny-cpu")
    setattr(getattr(cfg, section), key, value)
    with pytest.raises(MistError, match=message):
        validate(cfg)
    with pytest.raises(MistError, match=message):
        loop.train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    import numpy as np

    cfg = load_preset("tiny-cpu")
    cfg.train.steps, cfg.model.factors = np.int64(3), [1.0, 0.5]
    assert validate(cfg).train.steps == 3 and type(cfg.train.steps) is int
    assert cfg.model.factors == (1.0, 0.5)


def test_a_refused_override_leaves_the_callers_config_as_it_was():
    """Before: ``apply_overrides(cfg, ["model.k=3", "train.steps=-5"])`` raised but left the
    caller's config with k=3 and steps=-5; a dict as the config was an AttributeError."""
    cfg = load_preset("tiny-cpu")
    before = cfg.to_dict()
    for overrides in (["model.k=3", "train.steps=-5"], ["model.k=3", "model.nope=1"]):
        with pytest.raises(MistError):
            apply_overrides(cfg, overrides)
        assert cfg.to_dict() == before
    with pytest.raises(TypeError, match="cfg must be a Config, got dict"):
        apply_overrides({}, ["model.k=3"])
    assert apply_overrides(cfg, ["model.k=3"]) is cfg and cfg.model.k == 3


def test_override_refuses_values_without_a_toml_form_and_takes_numpy_scalars():
    """Before: None and NaN became the strings 'null' and 'NaN' (data.path="null"), a key of
    None the text 'None=1'; a numpy integer was "not JSON serializable"."""
    import numpy as np

    from mistnet.config import override

    for key, value, error, message in [
        ("data.path", None, TypeError, "a value must be a string, number, bool or list"),
        (
            "data.path",
            float("nan"),
            ValueError,
            "a value must be a finite number within int64, got nan",
        ),
        (None, 1, TypeError, "key must be a string section.key"),
    ]:
        with pytest.raises(error, match=message):
            override(key, value)
    assert override("model.k", np.int64(3)) == "model.k=3"
    assert apply_overrides(load_preset("tiny-cpu"), [override("model.k", np.int64(3))]).model.k == 3
    # Before: a folder named with DEL (legal) gave "--set data.path=...: invalid TOML value:
    # Illegal character" from train --data, demo --out and reproduce, naming a --set never given
    for path in ("D\x7f", "a\x7fb\x01c\u00e9"):
        cfg = apply_overrides(load_preset("tiny-cpu"), [override("data.path", path)])
        assert cfg.data.path == path


@pytest.mark.parametrize(
    "override, shown",
    [
        ("train.init_from=2024-01-01", "2024-01-01 reads as a TOML date"),
        ("data.path=2024", "2024 reads as a TOML int"),
        ("data.digits = 1.5", "1.5 reads as a TOML float"),
        ("data.path=true", "true reads as a TOML bool"),
    ],
)
def test_a_string_key_given_a_toml_date_or_number_says_to_quote_it(override, shown):
    """Before: ``train.init_from must be a string, got datetime.date(2024, 1, 1)`` (a Python
    repr, and no word of quoting) for a folder named by a date or a number."""
    key, text = (part.strip() for part in override.split("=", 1))
    with pytest.raises(MistError) as info:
        apply_overrides(Config(), [override])
    assert str(info.value) == (
        f"--set {key}={text}: {key} takes a string, and {shown}; quote it: --set '{key}=\"{text}\"'"
    )
    quoted = apply_overrides(Config(), [f'{key}="{text}"'])  # the fix it names works
    section, name = key.split(".")
    assert getattr(getattr(quoted, section), name) == text


def test_override_refuses_what_its_reader_would_and_from_dict_names_a_key_of_no_string():
    """Before: ``override("model.factors", [nan])`` returned text that ``apply_overrides`` then
    refused as invalid TOML, ``override("model.k", 10**5000)`` raised Python's digit-limit
    error, and ``from_dict({"model": {5: 1}})`` an AttributeError."""
    for value, error, message in [
        ([float("nan")], ValueError, "model.factors: a value must be a finite number"),
        ([None, 1.0], TypeError, "model.factors: a value must be a string, number, bool"),
        (10**5000, ValueError, "within int64, got an integer of 16610 bits"),
    ]:
        with pytest.raises(error, match=message):
            config.override("model.factors", value)
    assert config.override("model.factors", [1, np.float32(2.5)]) == "model.factors=[1, 2.5]"
    with pytest.raises(MistError, match=r"unknown config key model\.5;"):
        from_dict({"model": {5: 1}})


def test_a_digits_folder_is_written_relative_to_the_run_and_names_stay_names(tmp_path, monkeypatch):
    """Before: data.digits was written as typed ("idx", relative to where mist train ran) and
    read from each command's working directory. Now a folder is written as data.path is
    (relative to the run inside its parent folder, else absolute); ``embedded`` and ``mnist``
    stay names even beside a folder of that name; a run of an older version that recorded
    ``idx`` still finds it in the working directory."""
    from helpers import small_mnist

    from mistnet.runpaths import absolute, stored

    monkeypatch.chdir(tmp_path)
    small_mnist(tmp_path / "work" / "idx")
    small_mnist(tmp_path / "outside", gzipped=("train-images-idx3-ubyte",))
    for name in ("mnist", "embedded"):
        small_mnist(tmp_path / name)
    run = tmp_path / "work" / "run"
    run.mkdir(parents=True)
    written = {
        "work/idx": "../idx",
        "outside": str(tmp_path / "outside"),
        "mnist": "mnist",
        "embedded": "embedded",
    }
    for typed, expected in written.items():
        cfg = resolve("tiny-cpu", [f"data.digits={typed}"])
        assert stored(cfg, run).data.digits == expected
        (run / "config.json").write_text(stored(cfg, run).to_json())
        read = load_json(run / "config.json").data.digits
        assert read == (typed if typed in ("mnist", "embedded") else str(tmp_path / typed))
        assert absolute(cfg).data.digits == read
    old = resolve("tiny-cpu", ["data.digits=outside"])  # as typed, from tmp_path
    (run / "config.json").write_text(old.to_json())
    assert load_json(run / "config.json").data.digits == str(tmp_path / "outside")


@pytest.mark.parametrize(
    "overrides, said",
    [
        (["train.method=grid", "train.lr_heatmap=1e-3"], "train.lr_heatmap = 0.001"),
        (["train.method=grid", "model.factors=[1.0, 0.5]"], "model.factors = [1.0, 0.5]"),
        (["train.method=grid", "model.heatmap_width=8"], "model.heatmap_width = 8"),
        (["train.method=channelwise", "train.heatmap_loss='nll'"], "train.heatmap_loss = 'nll'"),
        (["train.method=channelwise", "train.keypoint_iters=4"], "train.keypoint_iters = 4"),
        (["train.method=supervised", "train.weight_beta=0"], "train.weight_beta = 0.0"),
        (["train.method=supervised", "train.class_loss='set'"], "train.class_loss = 'set'"),
        (["model.background='median'"], "model.background = 'median'"),
        (["train.method=grid", "model.softmax_window=21"], "model.softmax_window = 21"),
        (["train.method=grid", "model.base_side=30"], "model.base_side = 30.0"),
        (["train.method=channelwise", "model.nms_window=7"], "model.nms_window = 7"),
        (["model.task=reconstruct", "train.select_metric=''", "model.num_classes=3"], "= 3"),
        # a switch that leaves keys unread: no x-step, no centring prior, no digits
        (["train.keypoint_iters=0", "train.lr_keypoints=5"], "train.lr_keypoints = 5.0"),
        (["train.centre_mode='mixture'"], "not read under train.centre_weight = 0.0"),
        (["data.name=gabor", "data.digits=mnist"], "data.digits = 'mnist'"),
    ],
)
def test_a_key_the_method_or_task_never_reads_is_refused(overrides, said):
    # Before: taken, recorded in config.json as used, and the run trained as without it.
    with pytest.raises(MistError, match=r"not read under (train|model|data)\.\w+ = ") as err:
        resolve("mnist-hard-classify", overrides)
    assert said in str(err.value) and "\n" not in str(err.value)
    cfg = resolve("mnist-easy-recon")
    with pytest.raises(MistError, match=r"train.class_loss = 'set': not read under model.task"):
        apply_overrides(cfg, ["train.class_loss='set'"])


def test_a_method_set_over_a_preset_puts_its_unread_keys_back_to_their_defaults(tmp_path):
    # The cpu preset's x-step, heatmap-loss and heatmap sizes are not the grid's: the run
    # records the defaults it trains as, and a key given with the method is refused instead.
    cfg = resolve("mnist-hard-cpu", ["train.method=grid"])
    default = config.Config()
    for section, key, _ in unread_keys(cfg):
        assert getattr(getattr(cfg, section), key) == getattr(getattr(default, section), key)
    assert cfg.train.lr_task == 1e-3 and cfg.train.ema_decay == 0.99  # what it reads stays
    assert resolve("mnist-hard-recon", ["train.method=channelwise"]).train.lr_keypoints == 1e4
    # a switch puts its keys back too: no centring prior, no x-step
    off = resolve("mnist-hard-cpu", ["train.centre_weight=0"]).train
    assert (off.centre_sigma, off.centre_mode, off.lr_keypoints) == (0.4, "patch", 1e3)
    off = resolve("mnist-hard-cpu", ["train.keypoint_iters=0"]).train
    assert (off.lr_keypoints, off.max_step_px, off.centre_weight) == (1e4, 0.0, 0.0)
    # a preset naming the method itself is the user's: refused
    (tmp_path / "grid.toml").write_text('[train]\nmethod = "grid"\nlr_heatmap = 1e-3\n')
    with pytest.raises(MistError, match=r"grid.toml: train.lr_heatmap = 0.001: not read"):
        load_preset(str(tmp_path / "grid.toml"))


def test_a_run_recorded_with_keys_its_method_never_read_still_loads(tmp_path):
    # Older versions recorded them; the run loads with them at their defaults (what it used).
    cfg = resolve("mnist-easy-grid").to_dict()
    cfg["train"]["lr_heatmap"] = 1e-3
    cfg["model"]["heatmap_width"] = 8
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    loaded = load_json(tmp_path / "config.json")
    assert (loaded.train.lr_heatmap, loaded.model.heatmap_width) == (1e-4, 32)
    assert config.from_record(cfg, "model").train.lr_heatmap == 1e-4
    # as the preset of a new run, the same file is an ask: refused, as a TOML file's key is;
    # what the run took from its data is the new run's to take
    with pytest.raises(MistError, match=r"config.json: train.lr_heatmap = 0.001, .*: not read"):
        load_preset(str(tmp_path / "config.json"))
    cfg = resolve("tiny-cpu").to_dict()
    cfg["record"] = {"image_size": [40, 40], "class_names": [f"c{i}" for i in range(10)]}
    (tmp_path / "named.json").write_text(json.dumps(cfg))
    assert load_preset(str(tmp_path / "named.json")).record == config.RunRecord()
