"""``mist show``: the Fig. 3 / Fig. 5 panels of a few scenes."""

from cli_helpers import mist
from PIL import Image


def test_show_writes_a_figure(capsys, tiny_run, tmp_path):
    out = tmp_path / "fig.png"
    rc, _, err = mist(capsys, "show", tiny_run, "--n", "2", "--out", out)
    assert rc == 0, err
    with Image.open(out) as im:
        assert im.size[0] > im.size[1] > 100
