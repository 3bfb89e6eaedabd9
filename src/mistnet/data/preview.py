"""A picture of scenes with their ground-truth boxes and labels (``mist data show``).

Only the ground truth a dataset has is drawn: boxes when it has boxes, labels (by class name
when it names its classes) as box captions or, without boxes, as the panel's title.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from mistnet.data.store import annotations_of, classes_of, label_name
from mistnet.errors import DataError
from mistnet.extras import require_matplotlib
from mistnet.io import atomic_write
from mistnet.signals import deferred_signals
from mistnet.viz.canvas import drawable_box


def _panel(H: int, W: int) -> tuple[float, float]:
    """Width and height in inches of the panel of an ``H`` x ``W`` image: wide SVHN panels
    stay readable, and a panel is at least a third of an inch on a side, at most 6 (a
    1 x 5000 image drew no row of pixels)."""
    if not H or not W:
        raise DataError(f"the images are {W}x{H} pixels: nothing to draw")
    panel_h = 1.8 * min(1.0, 3.6 * H / W)
    return min(max(panel_h * W / H, 0.35), 6.0), max(panel_h, 0.35)


def _draw_scene(ax, item: dict, annotations: frozenset[str], classes, mpatches) -> None:
    """One scene in its panel: the image, its boxes and labels (or a caption of the labels)."""
    img = item["image"].numpy()
    if img.shape[0] == 1:
        im = img[0]
        signed = im.min() < 0
        ax.imshow(
            im,
            cmap="RdBu_r" if signed else "gray",
            vmin=-1 if signed else 0,
            vmax=1,
            interpolation="nearest",
        )
    else:
        ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1), interpolation="nearest")
    names = [label_name(lab, classes) for lab in item["labels"].tolist()]
    if "boxes" not in annotations:  # image-level labels: a caption, no made-up boxes
        if "labels" in annotations:
            ax.set_title(" ".join(names) or "(none)", fontsize=6)
        names = []
    for box, name in zip(item["boxes"].tolist(), names, strict=False):
        x0, y0, w, h = drawable_box(*box, img.shape[2], img.shape[1])  # 1e9: FreeType overflow
        ax.add_patch(mpatches.Rectangle((x0, y0), w, h, fill=False, lw=0.8, ec="lime"))
        if "labels" in annotations:
            ax.text(
                x0 + 0.5,
                y0 + 0.5,
                name,
                color="yellow",
                fontsize=6,
                va="top",
                ha="left",
                clip_on=True,  # a label far outside the image would widen the layout
            )


def save_scene_grid(
    dataset: Dataset, out: str | os.PathLike, n: int = 16, title: str | None = None
) -> Path:
    """Draw the first ``n`` items of a scene dataset in a grid, with boxes and labels, as a PNG.

    Args:
        dataset: items as :class:`mistnet.data.dataset.SceneDataset` yields them.
        out: PNG path (written via a temporary name, then renamed).
        n: number of scenes (clipped to the dataset size).
        title: figure title.

    Returns:
        The PNG path.
    """
    matplotlib = require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    annotations, classes = annotations_of(dataset), classes_of(dataset)
    n = max(1, min(int(n), len(dataset)))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    item0 = dataset[0]
    _, H, W = item0["image"].shape
    panel_w, panel_h = _panel(H, W)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel_w, rows * panel_h), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= n:
            continue
        _draw_scene(ax, dataset[k], annotations, classes, mpatches)
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
    if title:
        fig.suptitle(title, fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(tmp: Path) -> None:
        with deferred_signals():  # as viz.canvas.drawn: not raised inside matplotlib's C++
            fig.tight_layout()
            fig.savefig(tmp, dpi=150)

    try:
        atomic_write(out, save)
    finally:
        plt.close(fig)
    return out
