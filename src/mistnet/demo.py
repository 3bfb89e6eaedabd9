"""``mist demo`` (and ``make demo``): MIST learns to find digits with no location labels, on a CPU.

Steps: write an MNIST-hard dataset (``OUT/data``) from the embedded digits or, with
``digits="mnist"``, from full MNIST in the data cache, train MIST into
``OUT/run`` with the task's preset — multi-instance classification (``mnist-hard-cpu``: the
image-level multiset of labels is the only supervision) or the auto-encoder
(``mnist-hard-recon-cpu``: no labels at all) — evaluate the best checkpoint on the test split
(``OUT/metrics.json``) and draw the paper's Fig. 5 (or Fig. 3) panels (``OUT/figure.png``; needs
the ``figures`` extra). The run directory works with ``mist eval``, ``mist detect`` and
``mist show``.
"""

from __future__ import annotations

import glob
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mistnet import validate
from mistnet.config import Config, overridden, override, resolve
from mistnet.data import (
    DigitPools,
    build_generator,
    load_digits,
    make_scenes,
    open_dataset,
    write_dataset,
)
from mistnet.data.dataset import SceneDataset
from mistnet.data.runs import check_data
from mistnet.data.sampling import loader
from mistnet.data.scenes import require_memory
from mistnet.data.store import DATASET_FILES, claim_dataset
from mistnet.errors import MistError, say
from mistnet.evaluation import evaluate_run, read_record
from mistnet.extras import matplotlib_missing
from mistnet.io import atomic_write_json, json_text
from mistnet.locks import exclusive_lock
from mistnet.loop import train
from mistnet.outfiles import written_json, written_png
from mistnet.outputs import claim_output, discard_new, entries, open_output, writing_inside
from mistnet.ownership import Mine, Own, refuse_links, require_only_own
from mistnet.progress import metrics_text, terminal_bar
from mistnet.rundir import TRAINING_FILES, Run, tensorboard_only
from mistnet.setaside import replacing
from mistnet.viz import output_figure

#: The preset of each demo task.
PRESETS: dict[str, str] = {"classify": "mnist-hard-cpu", "reconstruct": "mnist-hard-recon-cpu"}
#: The outputs a demo directory holds: a dataset and the run trained on it.
CHILDREN = ("data", "run")
#: The entries a demo writes into its folder (:func:`mistnet.ownership.require_only_own`'s).
DEMO_FILES = ("data/", "run/", "metrics.json", "figure.png", ".lock")
#: The data keys of ``--set`` that the demo's own data sets, each with what to give instead.
_MADE = {
    "data.path": "mist train --data DIR trains on a dataset of yours",
    "data.name": "mist train --data DIR trains on a dataset of yours",
    "data.digits": "give --digits SRC, digits= in Python",
    **{
        f"data.n_{split}": f"give --n-{split} N, n_{split}= in Python"
        for split in ("train", "val", "test")
    },
}


def _sizes(n_train: int, n_val: int, n_test: int) -> dict[str, int]:
    return {"train": n_train, "val": n_val, "test": n_test}


def _check_before_making(cfg: Config, pools: DigitPools, sizes: dict[str, int]) -> None:
    """Refuse, before any scene is made, scenes beyond memory and a config that cannot train on
    the demo's scenes (``--set model.k=100000`` on 80x80 images): a scene of the generator
    shows what the dataset will be."""
    generator = build_generator("mnist-hard", pools)
    require_memory(generator, sizes)
    check_data(cfg, SceneDataset(generator, "train", size=1), "the demo's MNIST-hard", True)
    if sizes["train"] < cfg.train.batch_size:  # said by training, once every scene was made
        raise MistError(
            f"--n-train {sizes['train']} (n_train= in Python) is fewer scenes than one batch "
            f"(train.batch_size = {cfg.train.batch_size}); give at least {cfg.train.batch_size}"
        )


def build_data(
    out: Path, n_train: int, n_val: int, n_test: int, seed: int, digits: DigitPools
) -> Path:
    generator = build_generator("mnist-hard", digits)
    splits = {}
    chunk = 500
    for split, n in _sizes(n_train, n_val, n_test).items():
        parts = []
        steps = range(0, n, chunk)  # a bar on a terminal only: a log file gets no \r lines
        for start in tqdm(
            steps, desc=f"scenes/{split}", leave=False, disable=not sys.stderr.isatty()
        ):
            parts.append(make_scenes(generator, split, range(start, min(n, start + chunk)), seed))
        splits[split] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    manifest = {"generator": "mnist-hard", "seed": seed, "digits": generator.digits}
    return write_dataset(out, "mnist-hard", splits, manifest, overwrite=True)


def claim_demo(out: Path) -> list[Path]:
    """Create the demo directory ``out``, or accept one an earlier ``mist demo`` made once its
    ``data/`` and ``run/`` are seen to be a dataset and a run holding nothing but their own
    files (they are replaced, :func:`demo_slots`, only when the new demo has succeeded).

    Returns:
        The directories created (none when ``out`` existed).

    Raises:
        MistError: ``out`` exists and is not a demo's, or holds a ``data/`` or ``run/`` that
            mistnet did not write or that holds a file or folder of the user's.
    """
    created = open_output(out, "demo", "mist demo")
    if created:
        return created
    with writing_inside(out, CHILDREN):
        # was "--out must give <its target> itself"
        refuse_links(
            [out / "data", out / "run"], "mist demo", "move it away, or choose another --out"
        )
        claim_dataset(out / "data", overwrite=True, command="mist demo")  # not "mist data's"
        run = Run(out / "run")
        if claim_output(run.path, "run", "mist demo", legacy=lambda path: run.is_legacy()):
            require_only_own(run.path, run_files(run.path), "a run")
    return []


@contextmanager
def demo_folder(out: Path) -> Iterator[None]:
    """Claim the demo directory ``out`` (:func:`claim_demo`) and hold its ``.lock`` while the
    block writes a new demo into it: a second ``mist demo`` into the same folder meanwhile is
    refused, rather than setting the first one's live run aside. The earlier demo's entries
    are set aside (:func:`demo_slots`) and put back if the block fails, when what it added is
    removed unless its run reached a checkpoint.

    Raises:
        MistError: see :func:`claim_demo`; or another ``mist demo`` is writing to ``out``.
    """
    before = entries(out)
    created = claim_demo(out)
    with exclusive_lock(out, "mist demo", transient=True):
        try:
            with writing_inside(out, CHILDREN), replacing(demo_slots(out)):
                yield
        except BaseException:
            if not Run(out / "run").last.exists():  # nothing worth keeping: as it was before
                discard_new(out, created, before, DEMO_FILES)
            raise


def demo_slots(out: Path) -> list[tuple[Path, Own | Mine]]:
    """What a demo writes into ``out``, each with what it may hold (see
    :func:`mistnet.setaside.replacing`): an earlier demo's are set aside until the new one is
    made, and put back if it fails."""
    return [
        (out / "data", ("a dataset", DATASET_FILES)),
        (out / "run", ("a run", run_files)),
        (out / "metrics.json", written_json("digits", "train", "wall_s")),
        (out / "figure.png", written_png),
    ]


def run_files(run_dir: Path) -> list[str]:
    """The entries of ``run_dir`` that a demo may remove with its run: what ``mist train``
    writes, each ``eval-*.json`` that is a record of ``mist eval`` and ``tb/`` while it holds
    TensorBoard's event files alone (a second demo removed ``eval-notes.json`` and a ``tb/``
    of the user's by their names)."""
    names = list(TRAINING_FILES)
    records = [p.name for p in run_dir.glob("eval-*.json") if p.is_file() and not p.is_symlink()]
    names += [glob.escape(n) for n in records if read_record(run_dir / n) is not None]
    if tensorboard_only(run_dir / "tb"):
        names.append("tb/")
    return names


def figure_caption(preset: str, summary: dict[str, Any], metrics: dict[str, float]) -> str:
    """The line at the top of ``figure.png``: what was trained, how long, and how well it did.

    Example:
        >>> figure_caption("mnist-hard-cpu", {"steps": 2000, "best_step": 1800},
        ...                {"both": 0.81234, "n_images": 500, "rmse": 0.1})
        'mnist-hard-cpu, 2000 steps (best checkpoint: step 1800); test: both 0.8123, rmse 0.1000'
    """
    return (
        f"{preset}, {summary['steps']} steps (best checkpoint: step {best_step(summary)}); "
        f"test: {metrics_text(metrics)}"
    )


def best_step(summary: dict[str, Any]) -> int:
    """The step of the best checkpoint: the last one where no validation gave a value (a run of
    0 steps; it was said "step None").

    Example:
        >>> best_step({"steps": 0, "best_step": None}), best_step({"steps": 9, "best_step": 4})
        (0, 4)
    """
    return summary["steps"] if summary["best_step"] is None else summary["best_step"]


def draw_figure(
    run_dir: Path, data_dir: Path, path: Path, device: str, caption: str, log: Callable[[str], None]
) -> None:
    """The best checkpoint's detections on the first four test scenes, drawn into ``path``."""
    log(f"[4/4] figure -> {path}")
    _, model, _ = Run(run_dir).load("best", device=device)
    batch = next(iter(loader(open_dataset(data_dir, "test"), 4, 0)))
    images = batch["image"].to(device)
    with torch.inference_mode():
        output = model(images)
    output_figure(images, output, path, gt_boxes=batch["boxes"], caption=caption)


def evaluate_demo(out: Path, summary: dict[str, Any], device: str, log: Callable[[str], None]):
    """The best checkpoint of ``out/run`` evaluated on the test split of ``out/data``."""
    log(f"[3/4] evaluating the best checkpoint (step {best_step(summary)}) on the test split")
    return evaluate_run(out / "run", str(out / "data"), "test", batch_size=50, device=device)


def run_demo(
    out: str | Path,
    *,
    task: str | None = None,
    preset: str | None = None,
    minutes: float = 12.0,
    threads: int = 2,
    n_train: int = 20_000,
    n_val: int = 300,
    n_test: int = 500,
    seed: int = 0,
    digits: str = "embedded",
    device: str = "cpu",
    overrides: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Make the data, train, evaluate and draw into ``out``; return the ``metrics.json`` record.

    Args:
        out: a new output directory, or one an earlier demo made (its ``data/`` and ``run/``
            are replaced); see :func:`claim_demo`.
        task: ``classify`` or ``reconstruct``; selects the preset of :data:`PRESETS` (default:
            the preset's task, else ``classify``).
        preset: another preset name or TOML file instead (its task must be ``task`` when
            both are given).
        minutes: training time cap.
        threads: torch CPU threads.
        n_train, n_val, n_test: scenes per split.
        seed: data seed.
        digits: ``embedded``, ``mnist`` (full MNIST in the data cache) or a directory of MNIST
            IDX files (see :func:`mistnet.data.load_digits`).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        overrides: ``section.key=value`` config overrides.
        log: progress messages (default: printed to stdout, flushed).

    Raises:
        MistError: an unknown task or preset, a preset (or ``model.task`` override) of
            another task than ``task``, ``minutes`` no number > 0, a bad override,
            digits not found (an empty data cache for ``mnist``), or any user error of the run.
    """
    if task is not None and task not in PRESETS:
        raise ValueError(f"task must be one of {', '.join(PRESETS)}, got {task!r}")
    minutes = validate.minutes(minutes, "minutes")  # -1 was refused once the scenes were made
    preset, log = preset or PRESETS[task or "classify"], log or say
    out, t0 = Path(out), time.monotonic()
    data_dir, run_dir = out / "data", out / "run"
    cfg = _demo_config(preset, task, data_dir, overrides)
    pools = load_digits(digits)
    _check_before_making(cfg, pools, _sizes(n_train, n_val, n_test))
    no_figure = matplotlib_missing()
    if no_figure:
        log(f"note: no figure.png: {no_figure}")
    with demo_folder(out):
        log(f"[1/4] MNIST-hard scenes from {pools.describe()} -> {data_dir}")
        build_data(data_dir, n_train, n_val, n_test, seed, pools)
        log(
            f"[2/4] training preset {preset} ({cfg.model.task}) for at most {minutes:g} "
            f"min -> {run_dir}"
        )
        options = {"device": device, "max_minutes": minutes, "threads": threads}
        summary = train(cfg, run_dir, **options, **terminal_bar())
        result = evaluate_demo(out, summary, device, log)
        record = {
            **result.to_dict(),
            "digits": pools.record(),
            "train": summary,
            "wall_s": round(time.monotonic() - t0, 1),
        }
        atomic_write_json(out / "metrics.json", record)
        if not no_figure:
            caption = figure_caption(preset, summary, result.metrics)
            draw_figure(run_dir, data_dir, out / "figure.png", device, caption, log)
    _report(result.metrics, f"digits: {pools.describe()}", t0, log)
    return record


def _demo_config(preset: str, task: str | None, data_dir: Path, overrides: Sequence[str]) -> Config:
    """The preset with the demo's own data and the user's overrides; refuses an override of
    what the demo makes, and a preset of another task than the ``task`` asked for."""
    given = overridden(list(overrides))
    for key, item in given.items():
        if key in _MADE:  # trained on, or recorded, but not what it made
            raise MistError(
                f"--set {item}: mist demo trains on the MNIST-hard scenes it makes in "
                f"{data_dir}; leave out {key} ({_MADE[key]})"
            )
    made = [override("data.path", str(data_dir)), override("data.name", "mnist-hard")]
    cfg = resolve(preset, [*made, *overrides])
    if task is not None and cfg.model.task != task:  # trained a classifier without a word
        source = f"--set {given['model.task']}" if "model.task" in given else f"the preset {preset}"
        raise MistError(
            f"task {task} (--task) but {source} trains model.task = {cfg.model.task}; leave "
            "out one of them"
        )
    return cfg


def _report(metrics: dict[str, Any], digits: str, t0: float, log: Callable[[str], None]) -> None:
    """The demo's last lines: its test metrics as a JSON block (a line each, so that ``log``
    escapes names in it, not its newlines), the digits and the time taken."""
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    for line in [*json_text(rounded).splitlines(), digits]:
        log(line)
    log(f"demo finished in {time.monotonic() - t0:.0f} s")
