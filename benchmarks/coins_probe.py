"""The auto-encoder on a real photograph: scikit-image's ``coins`` (24 coins on a grey table).

Three steps, each a plain command, so that anyone can rerun them:

1. ``python benchmarks/coins_probe.py images OUT`` (needs ``pip install scikit-image``; nothing
   else of it is used): writes ``OUT/src/coins.png`` at half resolution (152 x 192, coins about
   17-32 px across) and ``OUT/coins_boxes.csv``, the 24 coins' boxes found by the region-based
   segmentation of scikit-image's own tutorial (Sobel elevation, watershed from dark and bright
   markers, holes filled).
2. ``python benchmarks/coins_probe.py data OUT``: ``mist data import-images`` of 48 x 48 crops
   (the image is cut into train / val / test bands of 96, 48 and 48 columns, so no test pixel
   is trained on), boxes kept.
3. ``python benchmarks/coins_probe.py train OUT NAME [--minutes M] [--steps N]
   [--set KEY=VALUE ...]``:
   ``mist train`` of the reconstruction preset at the coins' scale (``RECIPE``), then ``mist eval`` on the test band: ``rmse`` beside ``rmse_image_mean`` and
   ``rmse_zero``, and the class-agnostic detection of the coins (``det_iou50`` with each
   crop's own coin count as K).
4. ``python benchmarks/coins_probe.py detect OUT NAME``: ``mist detect --tile`` on the whole
   half-resolution image, then, per band (train: columns 0-95, val: 96-143, test: 144-191),
   the coins with a box centre inside the coin (within half its smaller side) and the boxes
   whose centre lies inside a coin.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

from common import own_folders

# a 28 px box sampled by 29 px patches (pixel-aligned, as the preset's 22 / 23) holds all but
# the largest coins; a 48 px crop holds up to four coins, whole or cut by its edge
RECIPE = ["model.k=4", "model.base_side=28", "model.patch_size=29"]


def images(out: Path) -> None:
    import numpy as np
    from scipy import ndimage as ndi
    from skimage import data, filters, io, measure, segmentation, transform

    full = data.coins()  # (303, 384) uint8
    markers = np.zeros_like(full)
    markers[full < 30] = 1
    markers[full > 150] = 2
    coins = ndi.binary_fill_holes(segmentation.watershed(filters.sobel(full), markers) - 1)
    regions = [r for r in measure.regionprops(ndi.label(coins)[0]) if r.area > 100]
    half = transform.rescale(full, 0.5, anti_aliasing=True)  # float in [0, 1]
    (out / "src").mkdir(parents=True)
    io.imsave(out / "src" / "coins.png", (half * 255).round().astype(np.uint8))
    with open(out / "coins_boxes.csv", "x", newline="") as f:  # never over a file of OUT's
        w = csv.writer(f)
        w.writerow(["filename", "cx", "cy", "w", "h"])
        for r in regions:
            y0, x0, y1, x1 = r.bbox  # pixel centres of the half image: (v - 0.5) / 2
            cx, cy = (x0 + x1 - 1) / 4 - 0.25, (y0 + y1 - 1) / 4 - 0.25
            w.writerow(["coins.png", f"{cx:.2f}", f"{cy:.2f}", (x1 - x0) / 2, (y1 - y0) / 2])
    print(f"wrote {out / 'src' / 'coins.png'} and {len(regions)} boxes")


def mist(*args: str) -> str:
    done = subprocess.run(["mist", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr.strip() or f"mist {args[0]} failed")
    return done.stdout


def make_data(out: Path) -> None:
    print(
        mist(
            "data",
            "import-images",
            str(out / "src"),
            "--out",
            str(out / "data"),
            "--crop",
            "48",
            "48",
            "--per-image",
            "800",
            "--val",
            "0.25",
            "--test",
            "0.25",
            "--boxes",
            str(out / "coins_boxes.csv"),
            "--seed",
            "0",
        )
    )


def train(out: Path, name: str, minutes: float, steps: int, sets: list[str], threads: int) -> None:
    run = out / name
    overrides = [x for s in RECIPE + sets for x in ("--set", s)]
    mist(
        "train",
        "--preset",
        "mnist-hard-recon-cpu",
        "--data",
        str(out / "data"),
        "--out",
        str(run),
        "--max-minutes",
        str(minutes),
        "--threads",
        str(threads),
        "--no-progress",
        "--set",
        f"train.steps={steps}",
        *overrides,
    )
    mist("eval", str(run), "--per-image-k")
    record = json.loads((run / "eval-test.json").read_text())
    keys = ("rmse", "rmse_image_mean", "rmse_zero", "det_iou50", "n_images")
    print(
        json.dumps(
            {"run": name, "step": record["step"], **{k: record["metrics"].get(k) for k in keys}}
        )
    )


BANDS = (("train", 0, 96), ("val", 96, 144), ("test", 144, 192))


def detect(out: Path, name: str) -> None:
    found = out / f"{name}-detections"
    mist("detect", str(out / name), str(out / "src" / "coins.png"), "--tile", "--out", str(found))
    coins = [
        (float(r["cx"]), float(r["cy"]), min(float(r["w"]), float(r["h"])) / 2)
        for r in csv.DictReader(open(out / "coins_boxes.csv"))
    ]
    boxes = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(open(found / "detections.csv"))]

    def inside(box, coin):
        return math.hypot(box[0] - coin[0], box[1] - coin[1]) <= coin[2]

    for band, lo, hi in BANDS:
        here = [c for c in coins if lo <= c[0] < hi]
        mine = [b for b in boxes if lo <= b[0] < hi]
        hit = sum(any(inside(b, c) for b in boxes) for c in here)
        on = sum(any(inside(b, c) for c in coins) for b in mine)
        print(f"{band}: coins found {hit}/{len(here)}, boxes on a coin {on}/{len(mine)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("images", "data", "train", "detect"))
    p.add_argument("out", type=Path)
    p.add_argument("name", nargs="?", default="run")
    p.add_argument("--minutes", type=float, default=6.0, help="training time cap")
    p.add_argument("--steps", type=int, default=100000, help="training steps cap")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], dest="sets")
    a = p.parse_args()
    own_folders("coins_probe.py", a.out)  # its image, boxes, dataset, runs and detections
    if a.what == "images":
        images(a.out)
    elif a.what == "data":
        make_data(a.out)
    elif a.what == "train":
        train(a.out, a.name, a.minutes, a.steps, a.sets, a.threads)
    else:
        detect(a.out, a.name)


if __name__ == "__main__":
    main()
