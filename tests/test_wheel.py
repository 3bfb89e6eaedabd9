"""The built wheel works on its own: built from the tracked sources, installed by pip into a fresh
virtual environment outside the source tree, it runs ``mist --version``, ``mist data make``,
``mist train`` and ``mist demo`` from a temporary directory, with its package data (the embedded
digits, the presets) and nothing but its declared runtime dependencies.

No network: the wheel is built with ``--no-build-isolation --no-index`` from this environment's
setuptools; the fresh environment sees exactly the runtime dependencies the wheel declares (and
theirs), taken from this environment (where ``make install`` put ``torch==2.13.0`` first) through
a ``.pth`` file of links, and pip installs the wheel with ``--no-index`` against them. So
matplotlib, h5py, pytest and mlxtend are absent there, as after a plain ``pip install``.
"""

import importlib.metadata
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import mist
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import mistnet

pytestmark = [pytest.mark.slow, pytest.mark.wheel]

ROOT = Path(__file__).resolve().parents[1]
SIZES = ["--n-train", "32", "--n-val", "8", "--n-test", "8"]


def _run(argv, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{argv}: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def _build_wheel(tmp: Path) -> Path:
    """The wheel of the tracked (and untracked, not ignored) files, built in a copy of them."""
    listed = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], ROOT).stdout
    src = tmp / "src"
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if path.is_file() or path.is_symlink():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                (src / name).symlink_to(os.readlink(path))
            else:
                (src / name).write_bytes(path.read_bytes())
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    _run([*pip, "-q", "-w", wheels, src], tmp)
    (wheel,) = wheels.glob("mistnet-*.whl")
    return wheel


def _runtime_closure(requirements: list[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions that ``requirements`` (no extras) need, transitively."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(requirements)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name not in found:
            found[name] = importlib.metadata.distribution(req.name)
            todo += found[name].requires or []
    return list(found.values())


def _link_dependencies(dists: list[importlib.metadata.Distribution], deps: Path) -> None:
    """Link each distribution's top-level files and folders (its dist-info included) into deps."""
    deps.mkdir()
    for dist in dists:
        site = Path(dist.locate_file(""))
        for top in sorted({Path(f).parts[0] for f in dist.files or ()}):
            if top not in ("..", "__pycache__") and not (deps / top).exists():
                (deps / top).symlink_to(site / top)


def test_the_wheel_installs_and_runs_outside_the_source_tree(tmp_path, capsys):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(f"mistnet-{mistnet.__version__}.dist-info/METADATA").decode()
    for data in ("mistnet/data/mnist_5k.npz", "mistnet/data/MNIST_5K_LICENSE.md"):
        assert data in names
    assert "mistnet/configs/mnist-hard-cpu.toml" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    requires = [
        line.split(":", 1)[1].strip() for line in meta.splitlines() if "Requires-Dist" in line
    ]
    runtime = sorted(canonicalize_name(Requirement(r).name) for r in requires if "extra" not in r)
    assert runtime == ["numpy", "pillow", "safetensors", "scipy", "torch", "tqdm"]

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
    )
    _link_dependencies(_runtime_closure(requires), tmp_path / "deps")
    Path(purelib.stdout.strip(), "runtime_deps.pth").write_text(f"{tmp_path / 'deps'}\n")
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index", wheel],
        tmp_path,
    )

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {"OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    version = _run(["mist", "--version"], work, env)
    assert version.stdout.strip() == f"mistnet {mistnet.__version__}"
    where = _run(
        [python, "-c", "import importlib.util as u, mistnet; print(mistnet.__file__); "
         "print([m for m in ('matplotlib', 'h5py', 'mlxtend', 'pytest') if u.find_spec(m)])"],
        work, env,
    )  # fmt: skip
    module, optional = where.stdout.splitlines()
    assert Path(module).is_relative_to(venv) and optional == "[]"

    # The wheel's digits make the very scenes the source tree makes.
    _run(["mist", "data", "make", "mnist-hard", "--out", "data", *SIZES], work, env)
    rc, _, err = mist(capsys, "data", "make", "mnist-hard", "--out", tmp_path / "here", *SIZES)
    assert rc == 0, err
    for split in ("train", "val", "test"):
        with (
            np.load(work / "data" / f"{split}.npz") as a,
            np.load(tmp_path / "here" / f"{split}.npz") as b,
        ):
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])

    tiny = ["--set", "train.steps=3", "--set", "train.val_every=3", "--set", "train.ckpt_every=3"]
    train = ["mist", "train", "--preset", "tiny-cpu", "--data", "data", "--out", "run"]
    _run([*train, *tiny, "--threads", "1", "--no-progress"], work, env)
    assert json.loads((work / "run" / "summary.json").read_text())["steps"] == 3

    small = ["--set", "model.heatmap_width=8", "--set", "model.heatmap_depth=2",
             "--set", "model.heatmap_dilations=[1, 2]", "--set", "model.patch_base_width=4",
             "--set", "train.batch_size=8", *tiny]  # fmt: skip
    demo = _run(
        ["mist", "demo", "--out", "demo", "--minutes", "1", "--threads", "1", *SIZES, *small],
        work,
        env,
    )
    record = json.loads((work / "demo" / "metrics.json").read_text())
    assert record["train"]["steps"] == 3 and record["metrics"]["n_images"] == 8
    assert "pip install 'mistnet[figures]'" in demo.stdout
    assert not (work / "demo" / "figure.png").exists()
