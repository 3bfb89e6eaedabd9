"""``mist detect``'s options beyond K (``--min-score``, ``--side``, ``--tile``) and its files for
the whole call: ``detections.csv``, ``coco_results.json`` and ``coco_images.json``."""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mistnet import validate
from mistnet.config import Config
from mistnet.detection import clipped_corners, default_min_score
from mistnet.errors import MistError
from mistnet.imagefile import scaled_size
from mistnet.io import atomic_write_text, json_text
from mistnet.locks import LOCK
from mistnet.markers import MARKER, marked_files
from mistnet.models.mist import MIST, GridMIST
from mistnet.textfile import MAX_TEXT_BYTES
from mistnet.viz.canvas import made_by_mistnet

CSV_COLUMNS = ("image", "x", "y", "side", "score", "class")


@dataclass(frozen=True)
class DetectOptions:
    """How each image is run: resized by ``factor`` (``--side``), in ``tile`` windows or whole."""

    side: float | None = None
    factor: float = 1.0
    tile: tuple[int, int] | None = None
    min_score: float | None = None
    max_detections: int | None = None

    def record(self, windows: int) -> dict[str, Any]:
        """The entries these options add to an image's JSON record."""
        out: dict[str, Any] = {}
        if self.side is not None:
            out.update(side=self.side, scale=round(self.factor, 6))
        if self.tile:
            out.update(tile=list(self.tile), windows=windows)
        if self.min_score is not None:
            out["min_score"] = self.min_score
        return out


def validate_options(
    args: argparse.Namespace,
    cfg: Config,
    model: MIST,
    sizes: list[tuple[int, int]],
    smallest: int,
) -> DetectOptions:
    """Check ``--min-score``, ``--side`` and ``--tile`` against the run and every image's
    ``(H, W)``.

    Raises:
        MistError: a score outside [0, 1], a side <= 0, tiles for the grid baseline or a run without
            its training size, or an image that ``--side`` makes too small for the model or
            larger than ``--max-pixels``.
    """
    if args.min_score is not None and not 0 <= args.min_score <= 1:  # NaN included
        raise MistError(  # :g showed 1.0000001 as "got 1"
            f"--min-score must be a score in [0, 1], got {validate.shown(args.min_score)}"
        )
    if args.max_detections is not None and args.max_detections < 1:
        raise MistError(f"--max-detections must be at least 1, got {args.max_detections}")
    if args.side is not None and not 0 < args.side < math.inf:
        raise MistError(f"--side must be a positive number of pixels, got {args.side:g}")
    factor = cfg.model.base_side / args.side if args.side is not None else 1.0
    scaled = f" with --side {args.side:g}" if args.side is not None else ""
    tile = None
    if args.tile:
        if isinstance(model, GridMIST):
            raise MistError("the grid baseline has no detector to run in tiles; drop --tile")
        if not cfg.record.image_size:
            raise MistError(f"{args.run} does not record its training image size; drop --tile")
        tile = tuple(int(v) for v in cfg.record.image_size)
        if min(tile) < smallest:  # a hand-edited config.json: its windows could not be scored
            raise MistError(
                f"{args.run}: config.json's record.image_size {list(tile)} is smaller than the "
                f"{smallest}x{smallest} pixels the model needs; drop --tile"
            )
    for path, (H, W) in zip(args.images, sizes, strict=True):
        hint = "give the objects' size in pixels"
        h, w = scaled_size(H, W, factor, args.max_pixels, f"{path}{scaled}", hint)
        if min(h, w) < smallest or (tile is None and h * w < (args.k or model.k)):
            raise MistError(
                f"{path}: {W}x{H} becomes {w}x{h}{scaled}, too small for the "
                f"model (at least {smallest}x{smallest} pixels)"
            )
    min_score = default_min_score(model) if args.min_score is None else args.min_score
    return DetectOptions(args.side, factor, tile, min_score, args.max_detections)


def display(image: Tensor, signed: bool) -> np.ndarray:
    """``(C, H, W)`` float -> ``(H, W, 3)`` uint8 for drawing, without float64 copies."""
    x = (image + 1) / 2 if signed else image
    u8 = (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)  # floor(x * 255 + 0.5), as viz.to_rgb
    return u8.expand(3, -1, -1).permute(1, 2, 0).contiguous().numpy()


def _coco_bbox(corners: list[float]) -> list[float]:
    """``(x0, y0, x1, y1)`` to COCO's ``[x, y, w, h]``."""
    x0, y0, x1, y1 = corners
    return [x0, y0, x1 - x0, y1 - y0]


class DetectionTable:
    """The detections of every image of one call, written as CSV and as COCO results.

    Args:
        classify: the run classifies (else every box is one class, ``object``).
        names: the run's class names (index ``i`` names class ``i``), or ``()``.
        classes: how many classes the run's classifier has (0: as many as ``names``): every
            one is a COCO category, whichever this call found.
    """

    def __init__(self, classify: bool, names: tuple[str, ...], classes: int = 0) -> None:
        self.classify, self.names, self.classes = classify, names, classes
        self.images: list[dict[str, Any]] = []
        self.rows: list[tuple] = []
        self.results: list[dict[str, Any]] = []

    def class_name(self, label: int | None) -> str:
        if label is None:
            return ""
        return self.names[label] if label < len(self.names) else str(label)

    def add(
        self, image: str, width: int, height: int, kp: Tensor, scores: Tensor, labels: Tensor | None
    ) -> None:
        """One image's ``(N, 3)`` keypoints, ``(N,)`` scores and ``(N,)`` labels (or None)."""
        image_id = len(self.images) + 1
        corners = clipped_corners(kp, width, height).tolist()  # COCO's pixel (0, 0) spans [0, 1]
        self.images.append({"id": image_id, "file_name": image, "width": width, "height": height})
        for n, ((x, y, side), score) in enumerate(zip(kp.tolist(), scores.tolist(), strict=True)):
            label = None if labels is None else int(labels[n])
            self.rows.append(
                (
                    image,
                    round(x, 3),
                    round(y, 3),
                    round(side, 3),
                    round(score, 6),
                    self.class_name(label),
                )
            )
            self.results.append(
                {
                    "image_id": image_id,
                    "category_id": (label or 0) + 1,
                    "bbox": [round(v, 3) for v in _coco_bbox(corners[n])],
                    "score": round(score, 6),
                }
            )

    def categories(self) -> list[dict[str, Any]]:
        if not self.classify:
            return [{"id": 1, "name": "object"}]
        found = 1 + max((r["category_id"] - 1 for r in self.results), default=0)
        count = max(self.classes, len(self.names), found)  # not only the classes found
        return [{"id": i + 1, "name": self.class_name(i)} for i in range(count)]

    @staticmethod
    def names(formats: set[str]) -> list[str]:
        """The files :meth:`write` writes for ``formats``."""
        return ["detections.csv"] * ("csv" in formats) + [
            "coco_images.json",
            "coco_results.json",
        ] * ("coco" in formats)

    def write(self, out: Path, formats: set[str]) -> None:
        """``detections.csv`` (``csv``) and ``coco_results.json`` + ``coco_images.json``
        (``coco``) in ``out``."""
        if "csv" in formats:
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            writer.writerows(self.rows)
            atomic_write_text(out / "detections.csv", text.getvalue())
        if "coco" in formats:
            images = {"images": self.images, "categories": self.categories(), "annotations": []}
            atomic_write_text(out / "coco_images.json", json_text(images, indent=1) + "\n")
            atomic_write_text(
                out / "coco_results.json", json_text(self.results, indent=None) + "\n"
            )


#: The keys of every per-image JSON file of ``mist detect`` (those of its earliest version).
RECORD_KEYS = {"image", "width", "height", "k", "boxes", "scores"}


def _json(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:  # none of detect's: not read whole
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _earlier_versions_files(folder: Path) -> list[str]:
    """The files of ``folder`` (a detections folder whose marker lists none: an earlier
    version's) that are provably ``mist detect``'s: JSON files of its shapes, a CSV of its
    columns, and the PNG files named after an image these record."""
    names, images = [], []
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink() or not entry.is_file():
            continue
        doc = _json(entry) if entry.suffix == ".json" else None
        if entry.name == "detections.csv" and entry.stat().st_size <= MAX_TEXT_BYTES:
            with open(entry, encoding="utf-8", errors="replace", newline="") as f:
                rows = list(csv.reader(f))
            if rows and tuple(rows[0]) == CSV_COLUMNS:
                names.append(entry.name)
                images += [row[0] for row in rows[1:] if row]
        elif entry.name == "coco_images.json" and isinstance(doc, dict):
            listed = doc.get("images")
            if set(doc) == {"images", "categories", "annotations"} and isinstance(listed, list):
                names.append(entry.name)
                images += [i.get("file_name") for i in listed if isinstance(i, dict)]
        elif entry.name == "coco_results.json" and isinstance(doc, list):
            if all(isinstance(r, dict) and {"image_id", "bbox"} <= set(r) for r in doc):
                names.append(entry.name)
        elif isinstance(doc, dict) and RECORD_KEYS <= set(doc):
            names.append(entry.name)
            images.append(doc["image"])
    stems = {Path(i).stem for i in images if isinstance(i, str)}
    return names + [f"{s}{end}" for s in stems for end in (".png", "-recon.png")]


def own_files(folder: Path) -> list[str]:
    """The ``fnmatch`` patterns of what an earlier ``mist detect`` wrote into ``folder``: the
    files it provably wrote (records of its shapes, the images they name, PNG files saying
    mistnet wrote them: :func:`~mistnet.viz.canvas.made_by_mistnet`), and of those only
    the ones its marker lists when it lists them (an earlier version's lists none): a marker
    edited to list a file of the user's cannot get that file removed
    (:func:`mistnet.ownership.require_only_own` refuses the folder instead); besides, the marker
    and a lock."""
    listed = marked_files(folder)
    names = _earlier_versions_files(folder)
    if listed is not None:  # an image of no record (csv alone, no box in it): detect's own PNG
        pngs = {n for n in listed if n.endswith(".png") and made_by_mistnet(folder / n)}
        names = sorted((set(names) | pngs) & set(listed))
    return [MARKER, LOCK, *(glob.escape(name) for name in names)]
