"""Checks on the figures written by mistnet.viz: valid PNGs, sizes, colours where boxes are."""

import math
import re
import warnings

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, hide_matplotlib, mist
from PIL import Image

from mistnet.errors import MistError, MistWarning
from mistnet.models import MISTOutput
from mistnet.viz import (
    GT_COLOR,
    PRED_COLOR,
    annotate_image,
    draw_scenes_grid,
    log_curves,
    mist_figure,
    output_figure,
    plot_curves,
    to_rgb,
)


def read_png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def count_color(rgb, color, tol=40):
    diff = np.abs(rgb.astype(int) - np.asarray(color)[None, None, :]).max(axis=-1)
    return int((diff <= tol).sum())


def no_temp_files(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")] == []


# ------------------------------------------------------------------------------------ to_rgb


def test_to_rgb_gray_rgb_uint8():
    gray = torch.tensor([[[0.0, 0.5, 1.0]]])  # (1, 1, 3)
    out = to_rgb(gray)
    assert out.shape == (1, 3, 3) and out.dtype == np.uint8
    assert out[0].tolist() == [[0, 0, 0], [128, 128, 128], [255, 255, 255]]
    rgb = torch.zeros(3, 2, 2)
    rgb[1] = 1.0
    assert to_rgb(rgb)[0, 0].tolist() == [0, 255, 0]
    u8 = np.full((2, 3, 3), 7, dtype=np.uint8)
    assert np.array_equal(to_rgb(u8), u8)
    assert to_rgb(np.zeros((4, 5))).shape == (4, 5, 3)


def test_to_rgb_signed_and_clipping():
    x = torch.tensor([[[-1.0, -0.5, 0.0, 0.5, 1.0, 3.0, -3.0]]])
    assert to_rgb(x, signed=True)[0, :, 0].tolist() == [0, 64, 128, 191, 255, 255, 0]
    # unsigned: negatives clip to 0
    assert to_rgb(x)[0, :, 0].tolist() == [0, 0, 0, 128, 255, 255, 0]


def test_to_rgb_bad_shape():
    with pytest.raises(ValueError, match="image"):
        to_rgb(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="image"):
        to_rgb(np.zeros((4, 4, 2), dtype=np.uint8))


# ---------------------------------------------------------------------------- annotate_image


def test_annotate_image_box_pixels(tmp_path):
    img = np.zeros((60, 80, 3), dtype=np.uint8)
    out = tmp_path / "a.png"
    # box [30, 50] x [20, 40]: outline on columns 30 and 50, rows 20 and 40
    annotate_image(img, torch.tensor([[40.0, 30, 20, 20]]), torch.tensor([3]), [0.9], out)
    px = read_png(out)
    assert px.shape == (60, 80, 3)
    assert tuple(px[30, 50]) == PRED_COLOR  # right edge (row 30, col 50)
    assert tuple(px[30, 30]) == PRED_COLOR  # left edge
    assert tuple(px[40, 40]) == PRED_COLOR  # bottom edge
    assert tuple(px[30, 40]) == (0, 0, 0)  # inside
    assert tuple(px[30, 51]) == (0, 0, 0)  # just outside
    assert tuple(px[41, 40]) == (0, 0, 0)
    # label text is drawn above the box in the box colour (anti-aliased: red-dominant pixels)
    top = px[:20].astype(int)
    assert int(((top[..., 0] > 100) & (top[..., 0] > 3 * top[..., 1])).sum()) > 5
    assert no_temp_files(tmp_path)


def test_annotate_image_keypoints_color_scale_padding(tmp_path):
    img = torch.zeros(1, 40, 50)  # float gray
    out = tmp_path / "b.png"
    boxes = torch.tensor([[20.0, 20, 10], [5.0, 5, 4]])  # keypoints (x, y, side)
    annotate_image(img, boxes, torch.tensor([1, -1]), None, out, color=(0, 0, 255), scale=3)
    px = read_png(out)
    assert px.shape == (120, 150, 3)
    # left edge x = 15 -> 3 * 15.5 - 0.5 = 46; rows 46 .. 3 * 25.5 - 0.5 = 76
    assert tuple(px[60, 46]) == (0, 0, 255)
    assert tuple(px[60, 76]) == (0, 0, 255)
    assert tuple(px[60, 45]) == (0, 0, 0)
    # the padded box (label -1) is not drawn
    assert count_color(px[:30, :30], (0, 0, 255), tol=0) == 0


def test_annotate_image_signed_background(tmp_path):
    img = torch.full((1, 10, 12), -1.0)
    img[0, 2, 3] = 1.0
    img[0, 5, 5] = 0.0
    out = tmp_path / "s.png"
    annotate_image(img, None, None, None, out, signed=True)
    px = read_png(out)
    assert px.shape == (10, 12, 3)
    assert px[0, 0].tolist() == [0, 0, 0]
    assert px[2, 3].tolist() == [255, 255, 255]
    assert px[5, 5].tolist() == [128, 128, 128]


def test_annotate_image_overwrites_and_bad_scale(tmp_path):
    out = tmp_path / "sub" / "dir" / "o.png"
    annotate_image(np.zeros((8, 8, 3), np.uint8), None, None, None, out)
    annotate_image(np.full((8, 8, 3), 200, np.uint8), None, None, None, out)
    assert read_png(out)[0, 0].tolist() == [200, 200, 200]
    with pytest.raises(ValueError, match="scale"):
        annotate_image(np.zeros((8, 8, 3), np.uint8), None, None, None, out, scale=0)


@pytest.mark.parametrize("scale", [0, -2, 2.5, True, math.nan, "2", 10**400])
def test_annotate_image_refuses_a_scale_that_is_no_positive_integer(tmp_path, scale):
    # Before: True was taken as 1; NaN raised "cannot convert float NaN to integer"
    with pytest.raises(ValueError, match="scale: expected a positive integer, got"):
        annotate_image(np.zeros((8, 8, 3), np.uint8), None, None, None, tmp_path / "o.png",
                       scale=scale)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_annotate_image_refuses_non_finite_boxes_but_not_padding(tmp_path):
    img, out = np.zeros((8, 8, 3), np.uint8), tmp_path / "o.png"
    box = torch.tensor([[math.nan, 3, 2, 2]])
    # Before: "cannot convert float NaN to integer", naming neither the box nor the argument
    with pytest.raises(ValueError, match="boxes: hold NaN or infinite values"):
        annotate_image(img, box, None, None, out)
    with pytest.raises(ValueError, match="boxes: hold NaN"):
        annotate_image(img, box * math.inf, torch.tensor([2]), None, out)
    assert list(tmp_path.iterdir()) == []
    annotate_image(img, box, torch.tensor([-1]), None, out)  # padding is not drawn: not read
    assert read_png(out).shape == (8, 8, 3)


def test_annotate_image_names_boxes_of_none_given_with_labels_or_scores(tmp_path):
    """Before: "labels: expected 0 entries, got 1": boxes=None was read as no boxes and the
    labels took the blame."""
    img, out = np.zeros((8, 8, 3), np.uint8), tmp_path / "o.png"
    for labels, scores, given in [([3], [0.9], "labels and scores"), (None, [0.9], "scores")]:
        with pytest.raises(ValueError, match=f"^boxes: None \\(no boxes\\) but {given} given"):
            annotate_image(img, None, labels, scores, out)
    assert list(tmp_path.iterdir()) == []
    annotate_image(img, None, None, None, out)  # no boxes at all: the image alone
    assert read_png(out).shape == (8, 8, 3)


# -------------------------------------------------------------------------- draw_scenes_grid


def _scene_batch(n=3, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.zeros(n, 1, 80, 80)
    xy = torch.rand(n, k, 2, generator=g) * 50 + 15
    for b in range(n):
        for j in range(k):
            x, y = xy[b, j].round().long().tolist()
            imgs[b, 0, y - 6 : y + 6, x - 3 : x + 3] = 1.0
    boxes = torch.cat([xy, torch.full((n, k, 2), 20.0)], dim=-1)
    labels = torch.randint(0, 10, (n, k), generator=g)
    return imgs, boxes, labels


def test_draw_scenes_grid_colours(tmp_path):
    imgs, boxes, labels = _scene_batch()
    gt_only = tmp_path / "gt.png"
    draw_scenes_grid(imgs, boxes, labels, gt_only)
    px = read_png(gt_only)
    assert count_color(px, GT_COLOR) > 50
    assert count_color(px, PRED_COLOR) == 0
    both = tmp_path / "both.png"
    pred = boxes[..., :3] + 2.0
    draw_scenes_grid(imgs, boxes, labels, both, pred, labels, torch.rand(3, 4), ncols=2)
    px2 = read_png(both)
    assert count_color(px2, PRED_COLOR) > 50
    # 2 columns x 2 rows instead of 3 x 1: taller than wide
    assert px2.shape[0] > px2.shape[1]
    assert no_temp_files(tmp_path)


def test_draw_scenes_grid_variable_counts_and_signed(tmp_path):
    imgs = [torch.rand(1, 30, 40) * 2 - 1, torch.rand(1, 30, 40) * 2 - 1]
    boxes = [torch.tensor([[10.0, 10, 8, 8]]), torch.zeros(0, 4)]
    labels = [torch.tensor([2]), torch.zeros(0, dtype=torch.long)]
    out = tmp_path / "v.png"
    draw_scenes_grid(imgs, boxes, labels, out, signed=True, titles=["a", "b"])
    assert read_png(out).ndim == 3
    # padded labels (-1) are skipped: no GT colour at all
    out2 = tmp_path / "p.png"
    draw_scenes_grid(
        torch.zeros(1, 3, 30, 40), torch.tensor([[[10.0, 10, 8, 8]]]), torch.tensor([[-1]]), out2
    )
    assert count_color(read_png(out2), GT_COLOR) == 0


def test_draw_scenes_grid_bad_args(tmp_path):
    imgs, boxes, labels = _scene_batch()
    with pytest.raises(ValueError, match="boxes"):
        draw_scenes_grid(imgs, boxes[:2], labels, tmp_path / "x.png")
    with pytest.raises(ValueError, match="ncols"):
        draw_scenes_grid(imgs, boxes, labels, tmp_path / "x.png", ncols=0)


# ------------------------------------------------------------------------------- mist_figure


def test_mist_figure_autoencoder_and_classifier(tmp_path):
    imgs, boxes, labels = _scene_batch(n=2, k=9)
    heat = torch.rand(2, 80, 80)
    patches = torch.rand(2, 9, 1, 32, 32)
    ae = tmp_path / "ae.png"
    mist_figure(
        imgs,
        heat,
        boxes[..., :3],
        None,
        patches,
        ae,
        recon_patches=patches * 0.5,
        reconstructions=imgs * 0.9,
        gt_boxes=boxes,
    )
    cls = tmp_path / "cls.png"
    mist_figure(imgs, heat, boxes, labels, patches, cls)
    px_ae, px_cls = read_png(ae), read_png(cls)
    # 6 panels per row vs 4, same number of rows
    assert px_ae.shape[1] / px_cls.shape[1] == pytest.approx(6 / 4, rel=0.02)
    assert count_color(px_ae, GT_COLOR) > 50
    assert count_color(px_cls, PRED_COLOR) > 50
    assert no_temp_files(tmp_path)


def test_mist_figure_single_image_signed_multiscale(tmp_path):
    img = torch.rand(1, 60, 240) * 2 - 1  # Gabor-like signed, SVHN-like aspect
    heat = torch.rand(3, 30, 120)  # (S, H', W') at half resolution
    out = tmp_path / "one.png"
    mist_figure(
        img,
        heat,
        torch.tensor([[40.0, 30, 40], [100, 30, 40]]),
        torch.tensor([1, 7]),
        torch.rand(2, 1, 32, 32) * 2 - 1,
        out,
        signed=True,
    )
    px = read_png(out)
    assert px.shape[1] > px.shape[0]


def test_mist_figure_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="heatmaps"):
        mist_figure(
            torch.rand(2, 1, 8, 8),
            torch.rand(3, 8, 8),
            torch.zeros(2, 1, 3),
            None,
            torch.rand(2, 1, 1, 4, 4),
            tmp_path / "x.png",
        )


def _output(imgs, k, task, reconstruction=None):
    B = imgs.shape[0]
    heat = torch.rand(B, 1, 80, 80)
    kp = torch.rand(B, k, 3) * 60 + 10
    return MISTOutput(
        heat, heat, kp, torch.rand(B, k), torch.rand(B, k, 1, 16, 16), task, reconstruction
    )


def test_output_figure_draws_what_mist_figure_draws_for_each_task(tmp_path):
    torch.manual_seed(0)
    imgs, boxes, _ = _scene_batch(n=2, k=9)
    logits = torch.randn(2, 9, 10)
    cls = _output(imgs, 9, logits)
    counts = torch.tensor([9, 4])
    output_figure(imgs, cls, tmp_path / "a.png", gt_boxes=boxes, counts=counts)
    labels = logits.argmax(-1)
    labels[1, 4:] = -1  # past the second image's 4 instances: not drawn
    mist_figure(imgs, cls.heatmaps, cls.keypoints, labels, cls.patches, tmp_path / "b.png",
                gt_boxes=boxes)  # fmt: skip
    assert read_png(tmp_path / "a.png").tolist() == read_png(tmp_path / "b.png").tolist()

    decoded = torch.rand(2, 9, 1, 16, 16)
    ae = _output(imgs, 9, decoded, reconstruction=imgs * 0.5)
    output_figure(imgs, ae, tmp_path / "c.png")
    mist_figure(imgs, ae.heatmaps, ae.keypoints, None, ae.patches, tmp_path / "d.png",
                recon_patches=decoded, reconstructions=imgs * 0.5)  # fmt: skip
    assert read_png(tmp_path / "c.png").tolist() == read_png(tmp_path / "d.png").tolist()


def test_without_matplotlib_figures_name_the_extra(capsys, monkeypatch, tmp_path):
    hide_matplotlib(monkeypatch)
    message = "drawing figures needs matplotlib (pip install 'mistnet[figures]')"
    imgs, boxes, labels = _scene_batch(n=1, k=9)
    with pytest.raises(MistError, match=re.escape(message)):
        draw_scenes_grid(imgs, boxes, labels, tmp_path / "g.png")
    args = ["data", "show", "mnist-hard", "--n", 2, "--out", tmp_path / "s.png"]
    assert_user_error(mist(capsys, *args), message)
    assert list(tmp_path.iterdir()) == []
    annotate_image(imgs[0], boxes[0], labels[0], None, tmp_path / "a.png")  # PIL only: works
    assert read_png(tmp_path / "a.png").shape == (80, 80, 3)


def test_matplotlibs_complaint_of_an_unwritable_config_folder_is_one_warning(tmp_path):
    """Before: with HOME not writable, ``plot``, ``show`` and ``data show`` printed
    matplotlib's own two lines ("mkdir -p failed ...", "Matplotlib created a temporary cache
    directory ...") beside mistnet's. (A folder under a file stands in: root writes anywhere.)"""
    import subprocess
    import sys

    from cli_helpers import subprocess_env

    (tmp_path / "file").write_text("")
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as said:\n"
        "    warnings.simplefilter('always')\n"
        "    from mistnet.extras import require_matplotlib\n"
        "    require_matplotlib()\n"
        "print(len(said), said[0].category.__name__, said[0].message)\n"
    )
    env = {**subprocess_env(), "MPLCONFIGDIR": str(tmp_path / "file" / "mpl")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    count, kind, message = done.stdout.split(" ", 2)
    assert (count, kind) == ("1", "MistWarning") and message.startswith("matplotlib: ")
    assert "\n" not in message.strip() and "set MPLCONFIGDIR to a writable folder" in message


# ------------------------------------------------------------------------------- plot_curves


def test_plot_curves(tmp_path):
    hist = {
        "loss/task": [(i, 1.0 / (i + 1)) for i in range(50)],
        "loss/eta": [(i, math.nan if i == 3 else math.exp(-i / 10)) for i in range(50)],
        "val/both": [(10 * i, i / 10) for i in range(5)],
        "empty": [],
    }
    out = tmp_path / "c.png"
    plot_curves(hist, out, ncols=2, logy=["loss/task"])
    px = read_png(out)
    # 2 x 2 grid of 3.6 x 2.6 inch panels at 100 dpi
    assert px.shape[:2] == (520, 720)
    one = tmp_path / "one.png"
    plot_curves({"loss": [(0, 1.0), (1, 0.5)]}, one, logy=True)
    assert read_png(one).shape[:2] == (260, 360)
    with pytest.raises(ValueError, match="history"):
        plot_curves({}, out)
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize(
    "history, dpi, message",
    [
        # Before: "cannot convert float NaN to integer", naming no argument
        ({"loss": [(0, 1.0)]}, math.nan, "dpi: expected a finite number >= 10, got nan"),
        ({"loss": [(0, 1.0)]}, 0, "dpi: expected a finite number >= 10, got 0"),
        ({"loss": [(0, 1.0)]}, True, "dpi: expected a finite number >= 10, got True"),
        # Before: matplotlib's "FT_Set_Char_Size ... invalid ppem value"; PIL's "cannot write
        # empty image"; an OverflowError of 10**400, naming nothing
        ({"loss": [(0, 1.0)]}, 5, "dpi: expected a finite number >= 10, got 5"),
        ({"loss": [(0, 1.0)]}, 0.3, "dpi: expected a finite number >= 10, got 0.3"),
        ({"loss": [(0, 1.0)]}, 10**400, "dpi: .* got an integer of 1329 bits"),
        ({"loss": [(0, 10**400)]}, 100, r"history\['loss'\] holds an integer beyond floats"),
        # Before: a raw TypeError (list indices must be integers)
        ([("loss", 1)], 100, r"history: expected a mapping \{name: \[\(step, value\)"),
        # Before: numpy's "cannot reshape array of size 3 into shape (2)"; a TypeError
        ({"loss": [(0, 1.0, 2.0)]}, 100, r"^history\['loss'\]: expected \(step, value\) pa"),
        ({"loss": [(0, "a")]}, 100, r"^history\['loss'\]: expected \(step, value\) pairs"),
        ({"loss": 5}, 100, r"^history\['loss'\]: expected \(step, value\) pairs"),
    ],
)
def test_plot_curves_refuses_a_history_that_is_no_mapping_and_a_bad_dpi(
    tmp_path, history, dpi, message
):
    with pytest.raises(ValueError, match=message):
        plot_curves(history, tmp_path / "f.png", dpi=dpi)
    # a logy key the history lacks was ignored without a word (a typo drew it linear)
    with pytest.raises(ValueError, match="^logy names 'los', which is no key of history"):
        plot_curves({"loss": [(0, 1.0)]}, tmp_path / "f.png", logy=["los"])
    assert list(tmp_path.iterdir()) == []


def test_mist_figure_has_a_legend_of_the_box_colours_and_the_caption(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr("mistnet.viz.panels.save_figure", lambda fig, *_: figures.append(fig))
    imgs, boxes, labels = _scene_batch(n=2, k=9)
    args = (imgs, torch.rand(2, 80, 80), boxes, labels, torch.rand(2, 9, 1, 16, 16))
    mist_figure(*args, tmp_path / "a.png", gt_boxes=boxes, caption="step 40; test: both 0.5")
    mist_figure(*args, tmp_path / "b.png")
    with_truth, without = figures

    def legend(fig):
        (box,) = fig.legends
        return {
            t.get_text(): p.get_edgecolor()[:3]
            for t, p in zip(box.texts, box.legend_handles, strict=True)
        }

    predicted = pytest.approx([c / 255 for c in PRED_COLOR])
    assert legend(with_truth) == {
        "ground truth": pytest.approx([c / 255 for c in GT_COLOR]),
        "detections (predicted)": predicted,
    }
    assert legend(without) == {"detections (predicted)": predicted}
    assert [t.get_text() for t in with_truth.texts] == ["step 40; test: both 0.5"]
    assert without.texts == []


def test_a_signal_while_a_figure_is_drawn_is_acted_on_once_it_is_drawn(tmp_path):
    """Before: SIGTERM or Ctrl-C raised inside matplotlib's C++ drawing came out as
    ``ValueError: Invalid bounding box`` (an internal error); now the drawing finishes, then
    the signal stops the command and the temporary PNG is removed."""
    import signal

    from matplotlib.artist import Artist

    from mistnet.signals import Terminated, signals_as_exceptions
    from mistnet.viz.canvas import new_figure, save_figure

    class Signalling(Artist):
        def draw(self, renderer):
            signal.raise_signal(signal.SIGTERM)  # as `kill` sends it mid-drawing

    fig = new_figure(1, 1, 20)
    fig.add_artist(Signalling())
    finished = []
    savefig = fig.savefig
    fig.savefig = lambda *a, **k: (savefig(*a, **k), finished.append(True))
    with pytest.raises(Terminated), signals_as_exceptions():
        save_figure(fig, tmp_path / "f.png", 20)
    assert finished == [True] and list(tmp_path.iterdir()) == []


def test_to_rgb_refuses_a_signed_flag_that_is_no_bool_and_nan_pixels():
    """Before: signed='no' was taken as true ([[[191, 191, 191]]] for 0.5), and NaN pixels
    were drawn black without a word."""
    half = torch.full((1, 1, 1), 0.5)
    with pytest.raises(TypeError, match="signed must be True or False, got 'no'"):
        to_rgb(half, signed="no")
    assert to_rgb(half, signed=np.bool_(False)).tolist() == [[[128, 128, 128]]]
    with pytest.raises(ValueError, match=r"image holds 1 NaN or infinite values \(of 2\)"):
        to_rgb(torch.tensor([[[0.5, math.nan]]]))


@pytest.mark.parametrize(
    "records, error, message",
    [
        # Before: AttributeError: 'str' object has no attribute 'get'
        ({"step": 1}, TypeError, "records must be a list of log records .*, got dict"),
        ("log.jsonl", TypeError, "records must be a list of log records .*, got str"),
        # Before: {} with no error: the record dropped
        ([{"step": "a", "split": "train"}], ValueError, r"records\[0\]: 'step' must be an integer"),
        ([{"step": 1}], ValueError, r"records\[0\]: no 'split' key"),
        ([{"step": 1, "split": "val", "both": 0.5}, 3], ValueError, r"records\[1\]: not a log"),
    ],
)
def test_log_curves_refuses_what_is_no_list_of_log_lines(records, error, message):
    with pytest.raises(error, match=message):
        log_curves(records)
    assert log_curves([{"step": 1, "split": "val", "both": None}]) == {}  # null: no point


def test_log_curves_places_every_validation_at_its_own_minutes():
    """Before: a validation logged before the first training line (``val_every`` below
    ``log_every``) got NaN minutes and ``plot_runs(minutes=True)`` dropped it without a word;
    a later one took the previous training line's time, not its own."""
    records = [
        {"step": 1, "split": "val", "both": 0.1},
        {"step": 2, "split": "val", "both": 0.2},
        {"step": 4, "split": "train", "wall": 240.0, "task": 3.0},  # 4 minutes at step 4
        {"step": 6, "split": "val", "both": 0.3},
        {"step": 8, "split": "train", "wall": 600.0, "task": 2.0},  # 10 minutes at step 8
        {"step": 8, "split": "val", "both": 0.4},
        {"step": 9, "split": "val", "both": 0.5},  # after the last training line
    ]
    curves = log_curves(records)
    assert curves["train/task"] == [(4, 4.0, 3.0), (8, 10.0, 2.0)]
    minutes = [m for _, m, _ in curves["val/both"]]
    # from (0, 0) to the first line, then between lines, then at the last pace (1.5 / step)
    assert minutes == pytest.approx([1.0, 2.0, 7.0, 10.0, 11.5])
    # no training line with a time: no minutes at all (plot_runs warns and leaves them out)
    assert math.isnan(log_curves([{"step": 3, "split": "val", "both": 0.5}])["val/both"][0][1])


def test_plot_runs_in_minutes_draws_early_validations_and_counts_untimed_ones(tmp_path):
    """Before: the early validations were left out of the minutes plot with no message."""
    from mistnet.viz import plot_runs

    timed = [
        {"step": 1, "split": "val", "both": 0.1},
        {"step": 2, "split": "train", "wall": 60.0, "task": 1.0},
    ]
    untimed = [{"step": 1, "split": "val", "both": 0.1}, {"step": 2, "split": "val", "both": 0.2}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the timed run: every point drawn, no warning
        plot_runs({"a": timed}, tmp_path / "a.png", keys=["val/both"], minutes=True)
    with pytest.warns(MistWarning, match=r"^b: 2 point\(s\) left out: its log has no training"):
        plot_runs({"a": timed, "b": untimed}, tmp_path / "b.png", keys=["val/both"], minutes=True)
    assert read_png(tmp_path / "b.png").shape[0] > 100


# ------------------------------------------------------- arguments checked by name (round 13)

_IMGS = torch.rand(2, 1, 20, 20)
_BOXES = torch.tensor([[[5.0, 5, 4, 4]], [[10, 10, 4, 4]]])
_LABELS = torch.tensor([[1], [2]])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        # Before: IndexError "list index out of range"
        ({"titles": ["a"]}, ValueError, "^titles: expected 2 entries, one per image, got 1$"),
        # Before: taken, one letter drawn per panel
        ({"titles": "ab"}, TypeError, "^titles: expected a list of 2 strings, got str$"),
        ({"titles": ["a", 5]}, TypeError, "^titles: expected strings, got int 5$"),
        # Before: "'<' not supported between 'str' and 'int'", "an integer is required",
        # matplotlib's "Number of columns must be a positive integer"
        ({"ncols": "4"}, ValueError, "^ncols must be an integer >= 1, got '4'$"),
        ({"ncols": True}, ValueError, "^ncols must be an integer >= 1, got True$"),
        ({"ncols": 1.5}, ValueError, "^ncols must be an integer >= 1, got 1.5$"),
        # Before: IndexError "index 0 is out of bounds for axis 0 with size 0"
        (
            {"pred_boxes": _BOXES, "pred_labels": _LABELS, "scores": torch.zeros(2, 0)},
            ValueError,
            "^scores: expected 1 entries, one per box, got 0$",
        ),
        # Before: NaN ground-truth boxes were not drawn, without a word
        ({"boxes": _BOXES * math.nan}, ValueError, "^boxes: hold NaN or infinite values"),
        ({"pred_boxes": -_BOXES}, ValueError, "^pred_boxes: expected a width and height >= 0"),
    ],
)
def test_draw_scenes_grid_names_the_argument_it_refuses(tmp_path, kwargs, error, message):
    call = {"images": _IMGS, "boxes": _BOXES, "labels": _LABELS, **kwargs}
    with pytest.raises(error, match=message):
        draw_scenes_grid(out_path=tmp_path / "g.png", **call)
    assert list(tmp_path.iterdir()) == []


def test_draw_scenes_grid_refuses_an_iterator_and_an_empty_image(tmp_path):
    """Before: an iterator raised "object of type 'list_iterator' has no len()", a 0 x 0
    image "ZeroDivisionError: float division by zero"."""
    with pytest.raises(TypeError, match="^images: expected a batched tensor or array, or a list"):
        draw_scenes_grid(iter([_IMGS[0]]), None, None, tmp_path / "g.png")
    with pytest.raises(ValueError, match=r"^images\[0\]: expected an image of H, W >= 1"):
        draw_scenes_grid(torch.zeros(1, 1, 0, 0), None, None, tmp_path / "g.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "boxes, labels, scores, kwargs, message",
    [
        # Before: Pillow's "x1 must be greater than or equal to x0", naming no argument
        ([[5.0, 5, -4, -4]], None, None, {}, r"^boxes: expected a width and height >= 0, got"),
        # Before: IndexError "index 1 is out of bounds for axis 0 with size 1"
        ([[5.0, 5, 4, 4], [9, 9, 4, 4]], None, [0.5], {}, "^scores: expected 2 entries"),
        # Before: "nan" written beside the box
        ([[5.0, 5, 4, 4]], None, [math.nan], {}, "^scores"),
        # Before: numpy's "invalid value encountered in cast", the label drawn as none
        ([[5.0, 5, 4, 4]], [math.nan], None, {}, "^labels: expected whole numbers, got nan$"),
        # Before: numpy's MemoryError "Unable to allocate 1.07 PiB"
        (None, None, None, {"scale": 10**6}, "^scale: 1000000 makes the image 20000000x2"),
    ],
)
def test_annotate_image_names_the_argument_it_refuses(tmp_path, boxes, labels, scores, kwargs,
                                                      message):  # fmt: skip
    with pytest.raises(ValueError, match=message):
        annotate_image(torch.rand(1, 20, 20), boxes, labels, scores, tmp_path / "a.png", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_annotate_image_clips_a_box_far_outside_the_image(tmp_path):
    """Before: a finite box at x = 1e20 raised "SystemError: <method 'draw_rectangle' of
    'ImagingDraw' objects> returned a result with an exception set"."""
    img, out = np.zeros((20, 20, 3), np.uint8), tmp_path / "a.png"
    boxes = np.array([[1e20, 5, 4, 4], [0, 5, 1e300, 4], [1.7e308, 5, 1.7e308, 4]])
    annotate_image(img, boxes, None, None, out, scale=2)
    red = np.abs(read_png(out).astype(int) - PRED_COLOR).max(-1) <= 40
    # the first is right of the image, the others span it: their top and bottom rows only
    assert red.any(axis=1).nonzero()[0].tolist() == [7, 15]
    assert red[7].all() and red[15].all() and not red[8:15].any()


def test_annotate_image_refuses_a_scale_beyond_the_pixel_limit(tmp_path):
    """Before: scale=10**6 raised numpy's MemoryError "Unable to allocate 1.07 PiB"."""
    with pytest.raises(
        ValueError,
        match=r"^scale: 3163 makes the image 6326x6326 = 40,018,276 pixels, more than the limit of 40,000,000",
    ):
        annotate_image(np.zeros((2, 2, 3), np.uint8), None, None, None, tmp_path / "a.png",
                       scale=3163)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def _figure_args():
    return (torch.rand(2, 8, 8), torch.rand(2, 3, 3) * 4 + 2, None, torch.rand(2, 3, 1, 4, 4))


def test_mist_figure_names_the_argument_holding_nan_and_refuses_no_image(tmp_path):
    """Before: NaN patches said "image holds 64 NaN or infinite values" though the images were
    fine, NaN det_boxes were not drawn without a word, and B = 0 gave matplotlib's "Number of
    rows must be a positive integer, not 0"."""
    heat, det, labels, patches = _figure_args()
    out = tmp_path / "m.png"
    with pytest.raises(ValueError, match=r"^patches holds 16 NaN or infinite values \(of 16\)$"):
        mist_figure(_IMGS[:, :, :8, :8], heat, det, labels, patches * math.nan, out)
    with pytest.raises(ValueError, match="^det_boxes: hold NaN or infinite values"):
        mist_figure(_IMGS[:, :, :8, :8], heat, det * math.nan, labels, patches, out)
    with pytest.raises(ValueError, match=r"^heatmaps holds 64 NaN or infinite values \(of 64\)$"):
        mist_figure(_IMGS[:, :, :8, :8], heat * math.nan, det, labels, patches, out)
    with pytest.raises(ValueError, match=r"^images: expected at least one image .*\(0, 1, 8, 8\)"):
        mist_figure(_IMGS[:0, :, :8, :8], heat[:0], det[:0], labels, patches[:0], out)
    assert list(tmp_path.iterdir()) == []


def test_output_figure_takes_counts_as_a_list_and_names_its_arguments(tmp_path):
    """Before: counts=[9, 4] or np.array raised "'list' object has no attribute 'cpu'",
    images.numpy() and output=None an AttributeError naming no argument."""
    torch.manual_seed(0)
    imgs, boxes, _ = _scene_batch(n=2, k=9)
    cls = _output(imgs, 9, torch.randn(2, 9, 10))
    output_figure(imgs, cls, tmp_path / "a.png", counts=torch.tensor([9, 4]))
    output_figure(imgs, cls, tmp_path / "b.png", counts=[9, 4])
    output_figure(imgs, cls, tmp_path / "c.png", counts=np.array([9, 4]))
    a = read_png(tmp_path / "a.png").tolist()
    assert a == read_png(tmp_path / "b.png").tolist() == read_png(tmp_path / "c.png").tolist()
    for args, kwargs, error, message in [
        ((imgs, cls), {"counts": [1]}, ValueError, r"^counts: expected one count per image"),
        ((imgs, cls), {"counts": [1.5, 2]}, TypeError, "^counts: expected integer instance"),
        ((imgs.numpy(), cls), {}, TypeError, "^images: expected a .* torch.Tensor, got ndarray$"),
        ((imgs, None), {}, TypeError, "^output: expected the model's MISTOutput, got NoneType$"),
        # an output of other images: "heatmaps: ..." before, an argument never passed
        ((imgs[:1], cls), {}, ValueError, "^output: made of 2 images, but images holds 1$"),
    ]:
        with pytest.raises(error, match=message):
            output_figure(*args, tmp_path / "x.png", **kwargs)
    assert not (tmp_path / "x.png").exists()


def test_plot_runs_refuses_a_list_of_runs_a_string_of_keys_and_a_bad_ncols(tmp_path):
    """Before: [records] raised "'list' object has no attribute 'items'", keys="train/task"
    said "no run has the curve 't'" (read a letter at a time), ncols="3" a raw TypeError."""
    from mistnet.viz import plot_runs

    records = [
        {"step": 1, "split": "train", "task": 1.0},
        {"step": 2, "split": "train", "task": 0.5},
    ]
    for args, kwargs, error, message in [
        (([records],), {}, TypeError, r"^runs: expected a mapping \{label: log records\}, got"),
        (({"a": records},), {"keys": "train/task"}, TypeError, "^keys: expected a list of curve"),
        (({"a": records},), {"keys": [5]}, TypeError, "^keys: expected a list of curve names"),
        (({"a": records},), {"ncols": "3"}, ValueError, "^ncols must be an integer >= 1, got"),
    ]:
        with pytest.raises(error, match=message):
            plot_runs(*args, tmp_path / "p.png", **kwargs)
    assert list(tmp_path.iterdir()) == []
    assert plot_runs({"a": records}, tmp_path / "p.png", keys=["train/task"]) == ["train/task"]
    with pytest.raises(ValueError, match="^ncols must be an integer >= 1, got 0$"):
        plot_curves({"a": [(1, 1.0)]}, tmp_path / "q.png", ncols=0)


def test_to_rgb_draws_bfloat16_and_refuses_integer_images_other_than_uint8():
    """Before: an int64 0..255 image was clipped to a white one; bfloat16 failed in numpy
    ("Got unsupported ScalarType BFloat16"); a meta tensor inside torch."""
    im = torch.rand(1, 8, 8)
    np.testing.assert_array_equal(to_rgb(im.bfloat16()), to_rgb(im.bfloat16().float()))
    with pytest.raises(ValueError, match="image: expected a float .* or uint8 .* got dtype int64"):
        to_rgb((im * 255).long())
    with pytest.raises(ValueError, match="meta device"):
        to_rgb(im.to("meta"))


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        (
            dict(class_names="ab"),
            TypeError,
            "class_names: expected a list or tuple of names, got 'ab'",
        ),
        (dict(class_names=[1, 2]), TypeError, "class_names: expected a list or tuple of names"),
        # Before: a raw "KeyError: 0" and "object of type 'generator' has no len()"
        (
            dict(class_names={"a": 1}),
            TypeError,
            "^class_names: expected a list or tuple of names, got dict$",
        ),
        (
            dict(class_names=(n for n in "ab")),
            TypeError,
            "^class_names: expected a list or tuple of names, got generator$",
        ),
        (dict(color=(0.5, 0.5, 0.5)), ValueError, r"color: expected 3 integers in 0..255"),
        (dict(color=(255, 0)), ValueError, r"color: expected 3 integers in 0..255"),
        (dict(color=(300, 0, 0)), ValueError, r"color: expected 3 integers in 0..255"),
        (dict(labels=torch.tensor([True])), TypeError, "labels: expected numbers, got Tensor"),
    ],
)
def test_annotate_image_names_class_names_colours_and_labels_it_cannot_draw(
    tmp_path, kw, error, message
):
    """Before: the string "ab" named class 1 "b", a bool label was drawn as class 1, and a
    float colour failed inside Pillow naming nothing."""
    args = {"labels": torch.tensor([1]), "color": PRED_COLOR, "class_names": ("a", "b"), **kw}
    labels = args.pop("labels")
    out = tmp_path / "a.png"
    with pytest.raises(error, match=message):
        annotate_image(
            torch.rand(1, 8, 8), torch.tensor([[4.0, 4, 3, 3]]), labels, None, out, **args
        )
    assert not out.exists()


def test_annotate_image_refuses_a_directory_and_a_label_that_is_no_class_id(tmp_path):
    """Before: a directory as ``out_path`` raised IsADirectoryError from the final rename,
    label -5 was drawn as "-5" and label 2 among two class names as "2"."""
    img, box = np.zeros((8, 8, 3), np.uint8), torch.tensor([[4.0, 4, 3, 3]])
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match="^out_path: expected a PNG file to write, got the dir"):
        annotate_image(img, box, None, None, tmp_path / "d")
    out = tmp_path / "a.png"
    with pytest.raises(ValueError, match=r"^labels: expected class ids >= 0 \(-1: padding, not "
                       r"drawn\), got -5$"):  # fmt: skip
        annotate_image(img, box, torch.tensor([-5]), None, out)
    with pytest.raises(ValueError, match="^labels: expected class ids below the 2 class_names, "
                       "got 2$"):  # fmt: skip
        annotate_image(img, box, [2], None, out, class_names=("a", "b"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    annotate_image(img, box, [7], None, out)  # no names: any class id >= 0 is drawn
    annotate_image(img, box, [-1], None, out, class_names=("a", "b"))  # padding: not drawn


def test_every_figure_writer_replaces_only_its_own_figures(tmp_path):
    """Before: ``annotate_image``, ``plot_curves``, ``draw_scenes_grid`` and ``plot_runs``
    replaced whatever was at ``out_path``: notes.txt became a PNG, a photo of the user's and a
    symbolic link were replaced, ``x.png/`` wrote ``x.png``, and a folder was a raw
    IsADirectoryError; a dpi of 10**6 was matplotlib's ``MemoryError: std::bad_alloc``."""
    import os

    from mistnet.viz import plot_curves

    history = {"loss": [(0, 1.0), (1, 0.5)]}
    (tmp_path / "notes.txt").write_text("my notes")
    Image.new("L", (4, 4)).save(tmp_path / "photo.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "photo.png")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "folder").mkdir()
    before = {
        p.name: p.read_bytes()
        for p in tmp_path.iterdir()
        if p.is_file() and p.suffix != ".png" or p.name == "photo.png"
    }
    img, box = np.zeros((8, 8, 3), np.uint8), torch.tensor([[4.0, 4, 3, 3]])
    for path, message in (
        ("notes.txt", "notes.txt: give a file name ending in .png"),
        ("photo.png", "photo.png exists and is no figure mistnet wrote"),
        ("link.png", "link.png is a symbolic link"),
        ("fifo.png", "fifo.png exists and is no figure mistnet wrote"),
        ("folder", "out_path: expected a PNG file to write, got the directory"),
        ("x.png/", "out_path: expected a PNG file to write, got the directory"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            plot_curves(history, f"{tmp_path}/{path}")
        with pytest.raises(ValueError, match=re.escape(message)):
            annotate_image(img, box, None, None, f"{tmp_path}/{path}")
    with pytest.raises(ValueError, match=r"^the figure would be .* inches at dpi 1e\+06, .* draw"):
        plot_curves(history, tmp_path / "big.png", dpi=10**6)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before}
    assert after == before and (tmp_path / "link.png").is_symlink()
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "big.png").exists()
    plot_curves(history, tmp_path / "mine.png")  # a figure of mistnet's is replaced
    plot_curves(history, tmp_path / "mine.png")
    annotate_image(img, box, None, None, tmp_path / "mine.png")
    assert Image.open(tmp_path / "mine.png").size == (8, 8)


# ------------------------------------------------------- arguments checked by name (round 14)


def test_plot_curves_refuses_a_logy_that_is_no_bool_or_list_of_keys(tmp_path):
    """Before: logy=None raised "'NoneType' object is not iterable", logy="loss" said "logy
    names 'l'" (read a letter at a time), and logy="ab" was taken for the keys a and b."""
    history = {"a": [(0, 1.0), (1, 2.0)], "b": [(0, 1.0)]}
    for logy in (None, "loss", "ab", 1, ["a", 2]):
        with pytest.raises(TypeError, match="^logy must be True, False or a list of keys of hi"):
            plot_curves(history, tmp_path / "c.png", logy=logy)
    assert list(tmp_path.iterdir()) == []
    plot_curves(history, tmp_path / "c.png", logy=("a", "b"))
    plot_curves(history, tmp_path / "c.png", logy=np.bool_(True))


def test_plot_curves_and_plot_runs_name_values_too_large_to_draw(tmp_path):
    """Before: matplotlib's "ValueError: arange: cannot compute length", naming nothing (only
    ``mist plot`` caught it)."""
    from mistnet.viz import plot_runs

    with pytest.raises(ValueError, match=re.escape(
        "the curves hold values too large to draw: history['loss'] holds 1e+308 (steps and "
        "values of at most ±1e+300 are drawn)"
    )):  # fmt: skip
        plot_curves({"ok": [(0, 1.0)], "loss": [(0, 1e308), (1, -1e308)]}, tmp_path / "f.png")
    with pytest.raises(ValueError, match=r"^the curves hold .*: history\['x'\] holds 1.7e\+308"):
        plot_curves({"x": [(1.7e308, 1.0)]}, tmp_path / "f.png")  # a step too
    records = [
        {"step": 0, "split": "train", "task": 1e308},
        {"step": 1, "split": "train", "task": -1e308},
    ]
    with pytest.raises(ValueError, match="^the curves .*: train/task of the run 'r' holds 1e"):
        plot_runs({"r": records}, tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == []
    plot_curves({"loss": [(0, 1e300), (1, -1e300)]}, tmp_path / "f.png")  # the largest drawn


def _one_run():
    return {"r": [{"step": 1, "split": "train", "wall": 1.0, "task": 1.0, "foo": 2.0}]}


def test_plot_runs_refuses_a_key_given_twice(tmp_path):
    """Before: keys=["train/task", "train/task"] drew the curve twice, one on the other, which
    ``mist plot --key X --key X`` refused."""
    from mistnet.viz import plot_runs

    with pytest.raises(ValueError, match="^keys: 'train/task' is given twice; name each curve"):
        plot_runs(_one_run(), tmp_path / "p.png", keys=["train/task", "train/foo", "train/task"])
    assert list(tmp_path.iterdir()) == []
    assert plot_runs(_one_run(), tmp_path / "p.png", keys=("train/foo",)) == ["train/foo"]


def test_plot_runs_without_a_default_curve_lists_the_curves_there_are(tmp_path):
    """Before: "the runs have no curves to draw", though keys=["train/foo"] drew one."""
    from mistnet.viz import plot_runs

    runs = {
        "r": [
            {"step": 1, "split": "train", "wall": 1.0, "foo": 1.0},
            {"step": 1, "split": "val", "classif/zero": 1.0},
        ]
    }
    with pytest.raises(ValueError, match=re.escape(
        "the runs have none of the curves drawn by default (train/task, train/heatmap, "
        "val/<metric>); the curves are train/foo, val/classif/zero: name those to draw with "
        "keys (--key of mist plot)"
    )):  # fmt: skip
        plot_runs(runs, tmp_path / "p.png")
    with pytest.raises(ValueError, match="^the runs have no curves to draw$"):
        plot_runs({"r": [{"step": 1, "split": "train", "wall": 1.0}]}, tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []
    assert plot_runs(runs, tmp_path / "p.png", keys=["train/foo"]) == ["train/foo"]


def test_draw_scenes_grid_refuses_scores_or_pred_labels_without_pred_boxes(tmp_path):
    """Before: scores and pred_labels without pred_boxes were ignored without a word."""
    out = tmp_path / "g.png"
    scores = torch.rand(2, 1)
    for kwargs, message in [
        ({"scores": scores}, "^scores: given without pred_boxes; predicted labels and scores"),
        ({"pred_labels": _LABELS}, "^pred_labels: given without pred_boxes; predicted labels"),
        (
            {"pred_boxes": [_BOXES[0], None], "scores": [scores[0], scores[1]]},
            "^scores: given without pred_boxes for image 1; predicted labels and scores are",
        ),
    ]:
        with pytest.raises(ValueError, match=message):
            draw_scenes_grid(_IMGS, _BOXES, _LABELS, out, **kwargs)
    assert list(tmp_path.iterdir()) == []
    draw_scenes_grid(_IMGS, _BOXES, _LABELS, out, [_BOXES[0], None], scores=[scores[0], None])


def test_mist_figure_and_output_figure_check_class_names_and_labels_as_annotate_image(tmp_path):
    """Before: class_names="cat" drew the labels "c", "a", "t", None raised "object of type
    'NoneType' has no len()", [1, 2] a raw TypeError in draw_boxes; label 7 among two names
    was drawn "7", label -5 without a label."""
    heat, det, _, patches = _figure_args()
    imgs, out = _IMGS[:, :, :8, :8], tmp_path / "m.png"
    labels = torch.tensor([[0, 1, 1], [1, 0, -1]])  # -1: padding, not drawn
    for names, message in [
        ("cat", "^class_names: expected a list or tuple of names, got 'cat'$"),
        (None, "^class_names: expected a list or tuple of names, got NoneType$"),
        ([1, 2], r"^class_names: expected a list or tuple of names, got \[1, 2\]$"),
    ]:
        with pytest.raises(TypeError, match=message):
            mist_figure(imgs, heat, det, labels, patches, out, class_names=names)
        with pytest.raises(TypeError, match=message):
            output_figure(*_classifier(), out, class_names=names)
    for bad, names, message in [
        (7, ("a", "b"), "^det_labels: expected class ids below the 2 class_names, got 7$"),
        (-5, (), r"^det_labels: expected class ids >= 0 \(-1: padding, not drawn\), got -5$"),
    ]:
        with pytest.raises(ValueError, match=message):
            mist_figure(imgs, heat, det, labels.masked_fill(labels == 1, bad), patches, out,
                        class_names=names)  # fmt: skip
    with pytest.raises(ValueError, match="^det_labels: expected class ids below the 2 class_"):
        output_figure(*_classifier(), out, class_names=["a", "b"])  # 10 classes, 2 names
    assert list(tmp_path.iterdir()) == []
    mist_figure(imgs, heat, det, labels, patches, out, class_names=["a", "b"])
    output_figure(*_classifier(), out, class_names=[str(i) for i in range(10)])


def _classifier():
    imgs, _, _ = _scene_batch(n=2, k=3)
    return imgs, _output(imgs, 3, torch.randn(2, 3, 10))


def test_mist_figure_refuses_heatmaps_that_are_no_real_numbers(tmp_path):
    """Before: complex heatmaps were drawn (their real part) after numpy's ComplexWarning, and
    text ones raised "could not convert string to float"."""
    heat, det, labels, patches = _figure_args()
    imgs, out = _IMGS[:, :, :8, :8], tmp_path / "m.png"
    for bad, dtype in [(heat.numpy() * (1 + 5j), "complex64"), (np.full((2, 8, 8), "a"), "<U1")]:
        with pytest.raises(TypeError, match=f"^heatmaps: expected real numbers, got ndarray of "
                           f"dtype {re.escape(dtype)}$"):  # fmt: skip
            mist_figure(imgs, bad, det, labels, patches, out)
    with pytest.raises(TypeError, match="^heatmaps: expected real numbers, got ndarray of dtype c"):
        mist_figure(imgs, heat * (1 + 5j), det, labels, patches, out)  # a complex tensor
    assert list(tmp_path.iterdir()) == []
    mist_figure(imgs, (heat * 10).long(), det, labels, patches, out)  # integers: drawn


def test_figures_refuse_negative_counts_and_class_names_no_reader_takes(tmp_path):
    """Before: ``output_figure(counts=[-1, 2])`` drew -1 as 0; ``annotate_image`` took class
    names given twice or holding a newline, which every other entry point refuses."""
    image = np.zeros((8, 8, 3), np.uint8)
    for names, message in [
        (["a", "a"], "'a' is named twice"),
        (["a", "b\nc"], "control character"),
        (["a", ""], "a class name is empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            annotate_image(image, None, None, None, tmp_path / "o.png", class_names=names)
    from mistnet.viz.panels import _counts

    with pytest.raises(ValueError, match=r"^counts: expected counts >= 0, got -1"):
        _counts([-1, 2], 2)
    assert list(tmp_path.iterdir()) == []


def test_plot_runs_takes_numpy_numbers_in_records_built_in_python(tmp_path):
    """Before: ``{"step": np.int64(1), ...}`` was "'step' must be an integer in [0, 2**63),
    got np.int64(1)" and ``np.float32(1)`` "must be a finite number or null"."""
    from mistnet.viz import plot_runs

    records = [
        {"step": np.int64(s), "split": "train", "task": np.float32(1 / s)} for s in (1, 2, 3)
    ]
    assert plot_runs({"a": records}, tmp_path / "r.png") == ["train/task"]
    for bad in ({"step": 10**400}, {"wall": 10**400}, {"task": 10**400}):  # was spelt in full
        record = {"step": 1, "split": "train", "task": 1.0, **bad}
        with pytest.raises(ValueError, match=r"must be .*, got an integer of 1329 bits$"):
            plot_runs({"a": [record]}, tmp_path / "s.png")


def test_plot_curves_takes_a_curve_of_bfloat16_as_one_of_float32(tmp_path):
    """Before: a bfloat16 tensor of (step, value) pairs was "expected (step, value) pairs of
    numbers" (numpy has no bfloat16); float32 was taken."""
    pairs = torch.tensor([[0.0, 1.0], [1.0, 0.5], [2.0, 0.25]])
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        out = tmp_path / f"{dtype}.png".replace("torch.", "")
        plot_curves({"loss": pairs.to(dtype)}, out)
        assert read_png(out).shape[2] in (3, 4)
