"""The README's "Your own images" section runs as written (with fewer training steps).

The shell walkthrough runs on a folder of coloured shapes made here; the Python example trains
through ``mistnet.fit`` on its in-memory Dataset, and ``mist detect`` then runs on the run it wrote.
"""

import glob
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import mist
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
# What makes the examples fast enough for a test; nothing else is changed.
FEWER_STEPS = {
    "--max-minutes 20": "--max-minutes 20 --no-progress --device cpu --set train.steps=6 "
    "--set train.val_every=3 --set train.batch_size=4",
    "steps=300, val_every=100": "steps=4, val_every=2",
}


def section_blocks(language: str) -> list[str]:
    text = README.read_text()
    section = text.split("## Your own images", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)
    assert blocks, f"no {language} block in the section"
    return blocks


def shorten(text: str) -> str:
    for long, short in FEWER_STEPS.items():
        text = text.replace(long, short)
    return text


def test_the_shortening_applies_to_the_examples():
    blocks = section_blocks("bash") + section_blocks("python")
    assert all(sum(long in block for block in blocks) == 1 for long in FEWER_STEPS)


def coloured_shapes(root: Path) -> None:
    """photos/ (12 RGB PNGs of red discs, green squares, blue bars, with labels.csv) and more/."""
    rng = np.random.default_rng(0)
    (root / "photos" / "b").mkdir(parents=True)
    (root / "more").mkdir()
    rows = ["filename,labels"]
    yy, xx = np.mgrid[:80, :80]
    for i in range(14):
        a = np.zeros((80, 80, 3), np.uint8)
        names = []
        for j, (x, y) in enumerate([(20, 20), (58, 24), (36, 60)][: 1 + i % 3]):
            x, y = x + int(rng.integers(-4, 5)), y + int(rng.integers(-4, 5))
            kind = ("disc", "square", "bar")[(i + j) % 3]
            if kind == "disc":
                a[(xx - x) ** 2 + (yy - y) ** 2 <= 36] = (230, 40, 40)
            elif kind == "square":
                a[y - 5 : y + 5, x - 5 : x + 5] = (40, 220, 40)
            else:
                a[y - 2 : y + 2, x - 8 : x + 8] = (40, 40, 230)
            names.append(kind)
        rel = f"{'b/' if i % 2 else ''}shot{i:02d}.png"
        target = root / ("more" if i >= 12 else "photos") / (Path(rel).name if i >= 12 else rel)
        Image.fromarray(a).save(target)
        if i < 12:
            rows.append(f"{rel},{' '.join(names)}")
    (root / "photos" / "labels.csv").write_text("\n".join(rows) + "\n")


def commands(block: str) -> list[list[str]]:
    lines = block.replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        argv = shlex.split(line)
        if argv:
            assert argv[0] == "mist", line
            out.append(
                [a for arg in argv[1:] for a in (sorted(glob.glob(arg)) if "*" in arg else [arg])]
            )
    return out


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    coloured_shapes(tmp_path)
    ran = []
    for block in section_blocks("bash"):
        for argv in commands(shorten(block)):
            rc, out, err = mist(capsys, *argv)
            assert rc == 0, f"mist {' '.join(argv)}: {err}"
            ran.append(argv[0])
    assert ran == ["data", "data", "train", "eval", "detect", "plot"]
    manifest = json.loads(Path("data/photos/manifest.json").read_text())
    assert manifest["classes"] == ["bar", "disc", "square"] and manifest["channels"] == 3
    config = json.loads(Path("runs/photos/config.json").read_text())
    assert config["record"]["class_names"] == ["bar", "disc", "square"]
    rows = Path("found/detections.csv").read_text().splitlines()
    assert rows[0] == "image,x,y,side,score,class"
    assert {row.split(",")[-1] for row in rows[1:]} <= {"bar", "disc", "square"}
    assert Path("found/coco_results.json").is_file() and Path("photos-curves.png").is_file()
    assert "classif" in json.loads(Path("runs/photos/eval-test.json").read_text())["metrics"]


def test_the_python_example_fits_and_mist_detect_reads_its_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (code,) = section_blocks("python")
    namespace: dict = {}
    exec(compile(shorten(code), "README.md", "exec"), namespace)  # noqa: S102
    printed, _ = capsys.readouterr()
    assert printed == "('small', 'large') torch.Size([1, 3, 3]) torch.Size([1, 3, 2])\n"
    run = Path("runs/spots")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["select_metric"] == "classif"
    assert {"config.json", "best.safetensors", "last.safetensors", "log.jsonl"} <= {
        p.name for p in run.iterdir()
    }
    image = namespace["Spots"](1, 7)[0][0]
    Image.fromarray((image[0].numpy() * 255).astype(np.uint8)).save("picture.png")
    rc, _, err = mist(
        capsys,
        "detect",
        run,
        "picture.png",
        "--out",
        "found",
        "--device",
        "cpu",
        "--min-score",
        "0",
    )
    assert rc == 0, err
    record = json.loads(Path("found/picture.json").read_text())
    assert record["k"] == 3 and set(record["classes"]) <= {"small", "large"}


def test_the_names_the_library_api_lists_are_exported_by_their_modules():
    """Before: the README listed ``set_patch_costs`` and ``heatmap_nll_loss`` in
    ``mistnet.losses``, whose ``__all__`` left them out (``import *`` missed them)."""
    import importlib

    bullets = re.findall(r"^- `(mistnet\.\w+)`: (.*?)(?=^- |^\n)", README.read_text(), re.S | re.M)
    checked = 0
    for module_name, text in bullets:
        module = importlib.import_module(module_name)
        exported = set(getattr(module, "__all__", ()))
        for name in re.findall(r"`(\w+)`", text):
            if exported and callable(getattr(module, name, None)):
                assert name in exported, f"README lists {module_name}.{name}; not in __all__"
                checked += 1
    assert checked >= 20  # the bullets were found: ops, models, losses, engine, metrics, data
