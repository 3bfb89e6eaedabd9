"""``mist show``: the paper's Fig. 3 / Fig. 5 panels for a few scenes of a split.

One row per scene: input (ground-truth boxes in green), heatmap, detections with their labels,
the extracted patches and, for an auto-encoder, the decoded patches and the reconstruction.

Example::

    mist show runs/classify --data mnist-hard --split test --n 4 --out fig5.png
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from mistnet.commands._args import (
    add_compute_arguments,
    add_k_argument,
    add_run_data_arguments,
    compute_device,
    integer,
)
from mistnet.data import collate_scenes
from mistnet.data.runs import OTHER_DATA, check_data, open_data, require_trained_on
from mistnet.data.store import annotations_of
from mistnet.errors import MistError, say
from mistnet.evaluation import check_k
from mistnet.outfiles import check_new_file, new_file
from mistnet.rundir import Run
from mistnet.runhints import pretrained_file
from mistnet.viz import output_figure

#: The most scenes ``--n`` draws: one row each, 100 rows already make a PNG some 20,000 pixels
#: tall (``--n 3000`` ran out of memory).
MAX_SCENES = 100


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "show",
        help="draw input, heatmap, detections and patches for a few scenes",
        description=__doc__.split("Example::", 1)[0].split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:" + __doc__.split("Example::", 1)[1],
    )
    add_run_data_arguments(p)
    p.add_argument(
        "--n",
        type=integer,
        default=4,
        metavar="N",
        help=f"number of scenes, one row each (default 4, at most {MAX_SCENES}; fewer if the "
        "split holds fewer)",
    )
    add_k_argument(p)
    p.add_argument("--out", required=True, metavar="FIG.png", help="output PNG")
    add_compute_arguments(p)
    p.set_defaults(func=run)


def _directory(what: str, data: str | None) -> list[tuple[str, str]]:
    """``[(what, data)]`` when ``data`` is a folder (not a generator name), else none."""
    return [(what, data)] if data is not None and Path(data).is_dir() else []


def run(args: argparse.Namespace) -> int:
    if not os.path.lexists(args.run) and pretrained_file(args.run):  # "does not exist" alone
        raise MistError(
            f"run directory {args.run} does not exist; {args.run} is a pretrained model, and "
            "mist show draws runs only (mist detect --model draws a model's detections)"
        )
    inputs = [("the run", args.run), *_directory("the dataset", args.data)]
    check_new_file(args.out, "mist show", inputs)
    if not 1 <= args.n <= MAX_SCENES:
        raise MistError(f"--n must be in [1, {MAX_SCENES}] (one row per scene), got {args.n}")
    if args.k is not None and args.k < 1:
        raise MistError(f"--k must be at least 1 (leave it out for the run's), got {args.k}")
    device = compute_device(args)
    cfg, model, ckpt = Run(args.run).load("best", device=device)
    if problem := model.k_problem(args.k or 0):
        raise MistError(f"{problem}; drop --k")
    source, dataset = open_data(cfg, args.data, args.split)
    if args.data is None:
        require_trained_on(cfg, dataset, source, OTHER_DATA)
    check_data(cfg, dataset, source)
    if args.k is not None:
        check_k(args.k, dataset, source, cfg.train.method, python=False)
    inputs += _directory("the dataset", source)  # the run's own, when no --data
    n = min(args.n, len(dataset))
    if n == 0:
        raise MistError(f"{source}: the {args.split} split is empty")
    batch = collate_scenes([dataset[i] for i in range(n)])
    images = batch["image"].to(device)
    with torch.inference_mode():
        out = model(images, args.k)
    drawn = (out.heatmaps, out.keypoints, out.scores, out.task, out.reconstruction)
    if not all(torch.isfinite(t).all() for t in drawn if t is not None):  # "heatmaps holds NaN"
        raise MistError(
            f"{ckpt.path} on {source} [{args.split}]: the model's outputs are NaN or infinite "
            "on this data (damaged weights, such as a negative BatchNorm variance?)"
        )
    boxed = "boxes" in annotations_of(dataset)
    gt = [batch["boxes"][b, : int(batch["count"][b])] for b in range(n)] if boxed else None
    with new_file(args.out, "mist show", inputs) as tmp:
        output_figure(
            images,
            out,
            tmp,
            gt_boxes=gt,
            signed=cfg.model.output == "signed",
            class_names=cfg.record.class_names,
        )
    say(f"wrote {args.out} ({n} scene{'s' * (n != 1)} of {source} [{args.split}])")
    return 0
