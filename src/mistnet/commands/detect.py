"""``mist detect``: run a trained model on ordinary image files.

Any PNG/JPEG (or other format Pillow reads) of any size and mode works: the image is converted to
the model's channel count (gray for 1 channel, RGB for 3; transparent pixels over black, 16-bit
gray scaled by 65535) and to floats in [0, 1]. The heatmap network is fully convolutional, so
no resizing is done; box coordinates are in the file's pixels. For every IMAGE, DIR/<stem>.json
holds the K boxes as (x, y, side), their scores and (for a classifier) labels, and DIR/<stem>.png
the image with the boxes drawn, upscaled so that small images stay readable. An image whose
header declares more than --max-pixels pixels is refused before it is decoded. Every image is
read and detected before DIR is touched: a failure leaves DIR as it was.

Example::

    mist detect runs/classify scene.png photos/*.jpg --out detections/ --k 5
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from mistnet.commands._args import add_device_argument
from mistnet.device import check_device, resolve_device
from mistnet.errors import MistError
from mistnet.io import atomic_write_text, json_text, staged_directory
from mistnet.models.heatmap import HeatmapBody
from mistnet.models.mist import MIST, GridMIST, MISTOutput
from mistnet.runner import Run
from mistnet.validate import DEFAULT_MAX_PIXELS, open_image, require_finite
from mistnet.viz import annotate_image, to_rgb

#: Annotated images are upscaled by an integer factor up to about this many pixels.
ANNOTATION_SIDE = 320


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "detect",
        help="detect instances in image files",
        description=__doc__.split("Example::", 1)[0].split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:" + __doc__.split("Example::", 1)[1],
    )
    p.add_argument("run", metavar="RUN", help="run directory written by mist train")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--k", type=int, default=0, metavar="K", help="detections per image")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse images of more pixels, from the header (default {DEFAULT_MAX_PIXELS:,})",
    )
    add_device_argument(p)
    p.set_defaults(func=run)


def read_image(
    path: str | os.PathLike, channels: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Read an image file as a ``(channels, H, W)`` float32 tensor in [0, 1].

    Args:
        path: any file Pillow can read.
        channels: 1 (gray) or 3 (RGB).
        max_pixels: refuse an image whose header declares more pixels.

    Raises:
        DataError: the file is missing, not a regular file, not a readable image, too large,
            or (a float image) holds NaN or infinite values.
    """

    im = ImageOps.exif_transpose(open_image(path, max_pixels))
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        require_finite(a, f"{path}: pixels")
        if im.mode != "F":  # 16-bit gray (32-bit "I" is how older Pillow opens it)
            a = a / (65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0)
        a = np.clip(a, 0.0, 1.0)[None]  # (1, H, W)
        if channels == 3:
            a = np.repeat(a, 3, axis=0)
        return torch.from_numpy(a.astype(np.float32))
    if im.mode == "P" or "A" in im.getbands() or im.mode == "PA":
        rgba = im.convert("RGBA")  # transparency (alpha or a palette entry) over black
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba).convert("RGB")
    im = im.convert("L" if channels == 1 else "RGB")
    a = np.asarray(im, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
    return torch.from_numpy(np.ascontiguousarray(a))


def min_image_side(model) -> int:
    """Smallest image side the model's heatmap network accepts (its reflection padding)."""

    bodies = [m for m in model.modules() if isinstance(m, HeatmapBody)]
    if not bodies:
        return 1
    pad = max(b.pad for b in bodies)
    f = min(getattr(model.heatmap_net, "factors", (1.0,)))
    n = 1
    while max(1, round(f * n)) <= pad:
        n += 1
    return n


def _stems(paths: list[str]) -> list[str]:
    stems = [Path(p).stem for p in paths]
    seen: dict[str, str] = {}
    for path, stem in zip(paths, stems, strict=True):
        if stem in seen:
            raise MistError(f"{seen[stem]} and {path} would both write {stem}.json; rename one")
        seen[stem] = path
    return stems


def _dumps(record: dict[str, Any]) -> str:
    """Strict JSON with one top-level key per line (a box list stays on one line)."""
    lines = [
        f"  {json.dumps(key)}: {json_text(value, indent=None)}" for key, value in record.items()
    ]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def detect_one(model: MIST, image: torch.Tensor, k: int) -> MISTOutput:
    """Run ``model`` on one ``(C, H, W)`` image; returns its :class:`~mistnet.models.MISTOutput`.

    The grid baseline tiles whatever image it is given with the same 3 x 3 layout.
    """
    with torch.inference_mode():
        return model(image[None], k)  # (1, C, H, W)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(check_device(args.device))
    cfg, model, _ = Run(args.run).load("best", device=device)
    if args.k < 0:
        raise MistError(f"--k must be positive, got {args.k}")
    if args.max_pixels < 1:
        raise MistError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    k = args.k or model.k
    if isinstance(model, GridMIST) and args.k and args.k != model.k:
        raise MistError(f"the grid baseline always uses its {model.k} cells; drop --k")
    channels, signed = cfg.model.in_channels, cfg.model.output == "signed"
    smallest = min_image_side(model)
    stems = _stems(args.images)
    # Read every image first, so a bad file stops the command before anything is written.
    images = [read_image(path, channels, args.max_pixels) for path in args.images]
    for path, image in zip(args.images, images, strict=True):
        _, H, W = image.shape
        if min(H, W) < smallest:
            raise MistError(
                f"{path}: {W}x{H} is too small; the heatmap network needs at least "
                f"{smallest}x{smallest} pixels"
            )
        if isinstance(model, GridMIST) and H != W:
            raise MistError(f"{path}: {W}x{H}; the grid baseline's 3 x 3 cells need a square image")
        if H * W < k:
            raise MistError(f"{path}: {W}x{H} has fewer pixels than K = {k}")
    out = Path(args.out)
    done = []
    with staged_directory(out) as staging:  # out changes only once every image is done
        for path, stem, image in zip(args.images, stems, images, strict=True):
            _, H, W = image.shape
            x = image.to(device)
            if signed:
                x = 2 * x - 1  # the Gabor auto-encoder works on signed images
            pred = detect_one(model, x, k)
            kp = pred.keypoints[0].cpu()  # (K, 3)
            scores = pred.scores[0].cpu()  # (K,)
            require_finite(
                torch.cat([kp.flatten(), scores]), f"{path}: the model's boxes and scores"
            )
            record: dict[str, Any] = {
                "image": str(path),
                "width": W,
                "height": H,
                "k": int(kp.shape[0]),
                "boxes": [[round(float(v), 3) for v in row] for row in kp],
                "scores": [round(float(s), 6) for s in scores],
            }
            labels = None
            if cfg.model.task == "classify":
                labels = pred.task[0].argmax(-1).cpu()
                record["labels"] = [int(v) for v in labels]
            atomic_write_text(staging / f"{stem}.json", _dumps(record))
            scale = max(1, ANNOTATION_SIDE // max(H, W))
            annotate_image(
                x.cpu(), kp, labels, scores, staging / f"{stem}.png", signed=signed, scale=scale
            )
            if pred.reconstruction is not None:
                rgb = to_rgb(pred.reconstruction[0].cpu(), signed)
                rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
                Image.fromarray(rgb).save(staging / f"{stem}-recon.png")
            done.append(
                f"{path}: {W}x{H}, {record['k']} boxes -> {out / stem}.json, {out / stem}.png"
            )
    print("\n".join(done))
    return 0
