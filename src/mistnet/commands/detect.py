"""``mist detect``: run a trained model on ordinary image files.

The model is the best checkpoint of the run directory RUN, or with --model NAME a pretrained
model (mist models lists them) in its place.

Any PNG/JPEG (or other format Pillow reads) of any size and mode works: the image is converted to
the model's channel count (gray for 1 channel, RGB for 3; transparent pixels over black, 16-bit
gray scaled by 65535) and to floats in [0, 1]. The heatmap network is fully convolutional, so
no resizing is done (but see --side); box coordinates are in the file's pixels. For every
IMAGE, DIR/<stem>.json holds the K boxes as (x, y, side) (the squares the model read, which may
reach past the image) and as corners (x0, y0, x1, y1) clipped to the image (pixel (0, 0) spans
[0, 1]), their scores and (for a classifier) labels, and DIR/<stem>.png
the image with the boxes drawn, upscaled so that small images stay readable (labels are
written by class name when the run names its classes), and for an auto-encoder
DIR/<stem>-recon.png its reconstruction. For the whole call, DIR/detections.csv has one row per
box (image, x, y, side, score, class) and DIR/coco_results.json the COCO results
list ({image_id, category_id, bbox [x, y, w, h], score}; bbox from the top-left corner of the
top-left pixel, category_id = class index + 1), with DIR/coco_images.json mapping image ids to
files and category ids to names (a COCO file with no annotations: pycocotools'
COCO(coco_images.json).loadRes(coco_results.json) reads the pair, except when no box passed
--min-score: coco_results.json is then [], which loadRes cannot take). --format picks among
json, csv and coco (default all).

A box's score in [0, 1] is the heatmap mass inside its NMS window (about 1 for a clear instance;
on a flat patch the NMS window's share of the softmax window: 0.54 for an 11x11 one in 15x15),
times the class probability for a classifier; --min-score drops boxes scored below S (default
0.75 for a classifier, 0.5 for an auto-encoder, or a tenth of the way from a flat patch's score
to 1 where higher: 0.58 for the CPU presets; 0 keeps all K).
--max-detections keeps the N best boxes per image. --side PX resizes each image so that objects of about PX
pixels take the model's box side (model.base_side), and maps the boxes back. --tile runs the
image in windows of the training size that overlap by the box side (at most half a window)
and merges their detections (non-maximum suppression across windows) in bounded memory; --k is
then per window (at most a window's pixels), and at most K per training-sized area of the image
are kept (--max-detections overrides).

An image whose header declares more than --max-pixels pixels is refused before it is decoded.
Every image is read and detected before DIR changes: a failure leaves DIR as it was. DIR must be
new or a directory an earlier mist detect wrote (replaced by this call's files, once it holds
nothing but the files that detect wrote, as its .mistnet lists them; a file of yours in it is
never deleted: the call refuses; a second detect into it refuses while this one runs), lie inside no run, dataset or other mistnet output, and hold none of the
input images; two images whose files would share a name (a/x.png and b/x.png, or
coco_results.png) are refused.

Example::

    mist detect runs/classify scene.png photos/*.jpg --out detections/ --k 5
    mist detect runs/stars sky-4000x3000.png --tile --side 12 --min-score 0.3 --out stars/
    mist detect --model mnist-hard-classifier scene.png --out detections/   # pretrained
"""

from __future__ import annotations

import argparse
import json
import os
import unicodedata
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mistnet import pretrained
from mistnet.commands._args import (
    add_compute_arguments,
    add_k_argument,
    add_max_pixels_argument,
    add_model_argument,
    checked_max_pixels,
    compute_device,
    integer,
    number,
    run_or_model,
)
from mistnet.commands.detect_outputs import DetectionTable, display, own_files, validate_options
from mistnet.detection import (
    CLASSIFIER_MIN_SCORE,
    DEFAULT_MIN_SCORE,
    clipped_corners,
    detect_image,
    min_image_side,
    read_image,
)
from mistnet.errors import MistError, say
from mistnet.imagefile import upright_size
from mistnet.io import atomic_write_text, json_text, require_short_name, unsafe_in_name
from mistnet.locks import exclusive_lock
from mistnet.markers import MARKER, mark
from mistnet.models.mist import GridMIST
from mistnet.outputs import claim_output, new_directory
from mistnet.ownership import require_only_own
from mistnet.rundir import Run
from mistnet.validate import require_finite
from mistnet.viz import annotate_image, to_rgb
from mistnet.viz.annotate import save_png

#: Annotated images are upscaled by an integer factor up to about this many pixels.
ANNOTATION_SIDE = 320
FORMATS = ("json", "csv", "coco")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "detect",
        help="detect instances in image files",
        description=__doc__.split("Example::", 1)[0].split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:" + __doc__.split("Example::", 1)[1],
    )
    p.add_argument("run", metavar="RUN", nargs="?", help="run directory written by mist train")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.intermixed = True  # mist detect RUN --out DIR IMAGE...: the images after the option
    add_model_argument(p)
    add_k_argument(p, "model")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--min-score",
        type=number,
        default=None,
        metavar="S",
        help=(
            f"drop boxes scored below S, in [0, 1] (default {CLASSIFIER_MIN_SCORE} for a "
            f"classifier, {DEFAULT_MIN_SCORE} for an auto-encoder or above a flat patch's "
            "score; 0 keeps all)"
        ),
    )
    p.add_argument(
        "--max-detections",
        type=integer,
        default=None,
        metavar="N",
        help="keep at most N boxes per image (default K; with --tile K per training-sized area)",
    )
    p.add_argument(
        "--side",
        type=number,
        default=None,
        metavar="PX",
        help="object size in pixels, > 0 (default: no resizing)",
    )
    p.add_argument("--tile", action="store_true", help="run in training-size windows, merged")
    p.add_argument(
        "--format",
        action="append",
        choices=FORMATS,
        default=None,
        help="outputs to write (repeatable; default all: json, csv, coco)",
    )
    add_max_pixels_argument(p)
    add_compute_arguments(p)
    p.set_defaults(func=run)


def _stems(paths: list[str], formats: set[str]) -> list[str]:
    """The stem each image's files are named after, once no two files would share a name.

    Raises:
        MistError: an image given twice, two images would write one file (``a/x.png`` and
            ``b/x.png``; ``x.png`` and ``x-recon.png``), or an image's file would be a file of the whole call
            (``coco_results.png``), or an image's name is too long for its outputs
            (:func:`~mistnet.io.require_short_name`).
    """
    # a control character (a newline, a bidi override) of an image's name is "_" in its files'
    # names, as an output's own name may hold none (the records keep the image's own path)
    stems = [_printable(Path(p).stem) for p in paths]
    # by the name as a file system that ignores case or Unicode forms (macOS, Windows) sees it
    taken = {_folded(n): ("this call's table", n) for n in DetectionTable.names(formats)}
    for path, stem in zip(paths, stems, strict=True):
        for name in _image_files(stem, formats):
            require_short_name(name, f"{path}: its output")
            if (key := _folded(name)) in taken:
                earlier, its = taken[key]
                if earlier in paths and os.path.realpath(earlier) == os.path.realpath(path):
                    raise MistError(f"{path}: given twice (as {earlier}); name each image once")
                where = "" if its == name else f" ({its}) where case and Unicode forms are one"
                raise MistError(
                    f"{path}: its output {name} would overwrite {earlier}'s{where}; rename the "
                    "image"
                )
            taken[key] = (str(path), name)
    return stems


def _printable(stem: str) -> str:
    """``stem`` with ``_`` for each character an output's name may not hold
    (:func:`~mistnet.io.unsafe_in_name`)."""
    return "".join("_" if unsafe_in_name(c) else c for c in stem)


def _folded(name: str) -> str:
    """``name`` as a file system that ignores case and Unicode forms sees it: NFC, each letter
    in lower case on its own (full folding made ``ß`` and ``ss`` one name, which none does;
    ``str.lower`` made a final ``Σ`` a ``ς``, which ``σ`` is on those systems)."""
    lower = "".join(c.lower() for c in unicodedata.normalize("NFC", name))  # no context rule
    return lower.replace("\u03c2", "\u03c3")  # final sigma: one letter with sigma


def _image_files(stem: str, formats: set[str]) -> list[str]:
    """The files written for one image (the reconstruction only by an auto-encoder)."""
    return [f"{stem}.json"] * ("json" in formats) + [f"{stem}.png", f"{stem}-recon.png"]


#: What a detections folder holds (the marker, a lock, the files its marker lists); an earlier
#: one is replaced only while it holds nothing else.
OWN = ("a detections folder", own_files)


def _check_out(out: Path, images: list[str], run: str | None) -> bool:
    """Refuse an ``--out`` that is not new or detect's own, lies inside another output or the
    run ``run``, holds an input image, or (an earlier ``mist detect``'s) anything but its files.

    Returns:
        Whether ``out`` is the directory of an earlier ``mist detect``.
    """
    inputs = [("the run", run)] if run is not None else []
    existing = claim_output(out, "detections", "mist detect", inputs=inputs)
    if existing:
        home = out.resolve()
        for path in images:
            if Path(path).resolve().is_relative_to(home):
                raise MistError(f"{out} holds the input image {path}; choose another --out")
        require_only_own(out, own_files(out), OWN[0])
    return existing


def _image_sizes(args: argparse.Namespace, model, k: int, smallest: int) -> list[tuple[int, int]]:
    """Every ``IMAGE``'s upright ``(H, W)`` from its header, once each is checked to fit the
    model (with ``--side``, at the size it is scaled to: :func:`validate_options`). Nothing is
    decoded: the images are decoded one at a time as they are detected (all at once, 100
    photos of 12 MP held 14 GB)."""
    hint = "crop or downscale it, or raise --max-pixels (--tile keeps the memory bounded)"
    sizes = []
    for path in args.images:
        W, H = upright_size(path, checked_max_pixels(args), hint)
        if isinstance(model, GridMIST) and H != W:
            raise MistError(f"{path}: {W}x{H}; the grid baseline's 3 x 3 cells need a square image")
        if args.side is None:  # a 4x4 image that --side 2 makes 40x40 was refused
            if min(H, W) < smallest:
                raise MistError(
                    f"{path}: {W}x{H} is too small; the heatmap network needs at least "
                    f"{smallest}x{smallest} pixels"
                )
            if H * W < k:
                raise MistError(f"{path}: {W}x{H} has fewer pixels than K = {k}")
        sizes.append((H, W))
    return sizes


def _decoded(args: argparse.Namespace, path: str, channels: int, size: tuple[int, int]):
    """``path`` decoded as a ``(C, H, W)`` tensor of the ``size`` its header said, or turned
    (a PNG's EXIF orientation after its pixels is found only when decoded; every check of
    :func:`_image_sizes` holds either way)."""
    image = read_image(path, channels, checked_max_pixels(args))
    if tuple(image.shape[1:]) not in (size, size[::-1]):
        H, W = size
        raise MistError(f"{path}: its header said {W}x{H}; the file changed while detect ran")
    return image


def _dumps(record: dict[str, Any]) -> str:
    """Strict JSON with one top-level key per line (a box list stays on one line)."""
    lines = [
        f"  {json.dumps(key)}: {json_text(value, indent=None)}" for key, value in record.items()
    ]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _load(args: argparse.Namespace, device: torch.device):
    """The config and model of RUN or of ``--model NAME``; with ``--model`` the first IMAGE
    lands in ``args.run`` (RUN is optional), so it moves back to ``args.images``, unless it is
    a directory: no image, so RUN given with ``--model``, refused as ``mist eval`` does."""
    if args.model is not None and args.run is not None and not Path(args.run).is_dir():
        args.images, args.run = [args.run, *args.images], None
    run_or_model(args)
    if args.model is not None:
        cfg, model, _ = pretrained.load(args.model, device=device)
    else:
        cfg, model, _ = Run(args.run).load("best", device=device)
    return cfg, model


def run(args: argparse.Namespace) -> int:
    device = compute_device(args)
    cfg, model = _load(args, device)
    if args.k is not None and args.k < 1:
        raise MistError(f"--k must be at least 1 (leave it out for the model's), got {args.k}")
    k = args.k or model.k
    if problem := model.k_problem(args.k or 0):
        raise MistError(f"{problem}; drop --k")
    formats = set(args.format or FORMATS)
    out = Path(args.out)
    existing = _check_out(out, args.images, args.run)
    # a second detect into this out refuses while this one runs
    with exclusive_lock(out, "mist detect", transient=True) if existing else nullcontext():
        return _detect(args, cfg, model, device, k, formats, existing)


def _detect(args, cfg, model, device, k: int, formats: set[str], existing: bool) -> int:
    """Detect in every ``IMAGE`` and write ``--out``: new, or in place of an earlier one."""
    out = Path(args.out)
    signed, smallest = cfg.model.output == "signed", min_image_side(model)
    stems = _stems(args.images, formats)
    # Every header first, so a bad file stops the command before any work; a file damaged
    # past its header stops it when decoded, and the output is not made (new_directory)
    sizes = _image_sizes(args, model, k, smallest)
    how = validate_options(args, cfg, model, sizes, smallest)
    names = tuple(cfg.record.class_names)
    done = []
    table = DetectionTable(cfg.model.task == "classify", names, cfg.model.num_classes)
    # out changes only once every image is done, and holds this call's files alone
    with new_directory(out, "detections", replace=existing, own=OWN) as staging:
        for path, stem, size in zip(args.images, stems, sizes, strict=True):
            x = _decoded(args, path, cfg.model.in_channels, size).to(device)
            _, H, W = x.shape
            if signed:
                x = 2 * x - 1  # the Gabor auto-encoder works on signed images
            pred = detect_image(
                model,
                x,
                k,
                how.factor,
                how.tile,
                max_detections=how.max_detections,
                max_pixels=args.max_pixels,
            )
            kp, scores = pred.keypoints.cpu(), pred.scores.cpu()  # (N, 3), (N,)
            require_finite(
                torch.cat([kp.flatten(), scores]), f"{path}: the model's boxes and scores"
            )
            labels = None if pred.logits is None else pred.logits.argmax(-1).cpu()
            below = ""
            if how.min_score is not None:
                keep = scores >= how.min_score
                if not keep.all():  # a run that is still learning scores everything low
                    below = f" ({int((~keep).sum())} below --min-score {how.min_score:g})"
                kp, scores = kp[keep], scores[keep]
                labels = None if labels is None else labels[keep]
            record: dict[str, Any] = {
                "image": str(path),
                "width": W,
                "height": H,
                "k": int(kp.shape[0]),
                "boxes": [[round(float(v), 3) for v in row] for row in kp],
                "xyxy": [[round(float(v), 3) for v in row] for row in clipped_corners(kp, W, H)],
                "scores": [round(float(s), 6) for s in scores],
            }
            if labels is not None:
                record["labels"] = [int(v) for v in labels]
                if names:
                    record["classes"] = [names[int(v)] for v in labels]
            record.update(how.record(pred.windows))
            if "json" in formats:
                atomic_write_text(staging / f"{stem}.json", _dumps(record))
            table.add(str(path), W, H, kp, scores, labels)
            scale = max(1, ANNOTATION_SIDE // max(H, W))
            annotate_image(
                display(x.cpu(), signed),
                kp,
                labels,
                scores,
                staging / f"{stem}.png",
                scale=scale,
                class_names=names,
            )
            if pred.reconstruction is not None:
                rgb = to_rgb(pred.reconstruction.cpu(), signed)
                rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
                save_png(Image.fromarray(rgb), staging / f"{stem}-recon.png")
            written = [f"{out / stem}.json"] * ("json" in formats) + [f"{out / stem}.png"]
            if pred.reconstruction is not None:
                written.append(f"{out / stem}-recon.png")
            done.append(f"{path}: {W}x{H}, {record['k']} boxes{below} -> {', '.join(written)}")
        table.write(staging, formats)
        # the files this call wrote, so that the next replaces these and nothing else
        mark(staging, "detections", [p.name for p in staging.iterdir() if p.name != MARKER])
    say(*done)
    return 0
