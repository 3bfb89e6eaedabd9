"""``mist show``: the Fig. 3 / Fig. 5 panels of a few scenes."""

from cli_helpers import assert_user_error, mist
from PIL import Image

from mistnet.commands.show import MAX_SCENES


def test_show_writes_a_figure(capsys, tiny_run, tmp_path):
    out = tmp_path / "fig.png"
    rc, said, err = mist(capsys, "show", tiny_run, "--n", "2", "--out", out)
    assert rc == 0, err
    assert f"wrote {out} (2 scenes of " in said
    with Image.open(out) as im:
        assert im.size[0] > im.size[1] > 100
    rc, said, err = mist(capsys, "show", tiny_run, "--n", "1", "--out", out)
    assert rc == 0 and f"wrote {out} (1 scene of " in said, err  # was "1 scenes"


def test_show_refuses_more_detections_than_pixels_and_too_many_scenes(capsys, tiny_run, tmp_path):
    """Before: ``--k 100000`` (above the 80 x 80 images' pixels) was an internal error ("k must
    be an integer in [1, H*W=6400]"), and ``--n`` had no upper bound (``--n 3000`` ran out of
    memory)."""
    out = tmp_path / "fig.png"
    assert_user_error(
        mist(capsys, "show", tiny_run, "--k", "6401", "--n", "1", "--out", out),
        "--k 6401: ",
        "has 80x80 images, too few pixels for 6401 detections (at most 6400)",
    )
    for n in ("101", "3000", "0"):
        assert_user_error(
            mist(capsys, "show", tiny_run, "--n", n, "--out", out),
            f"--n must be in [1, {MAX_SCENES}] (one row per scene), got {n}",
        )
    assert not out.exists()
    rc, _, err = mist(capsys, "show", tiny_run, "--k", "6400", "--n", "1", "--out", out)
    assert rc == 0, err
