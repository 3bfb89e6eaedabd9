"""The paper's figures for a reproduced table, drawn with :mod:`mistnet.viz` from the seed-0 runs.

- Table 1: Fig. 2 (input and the reconstructions of MIST, Grid, Ch.-wise side by side), Fig. 3
  (MIST on MNIST hard: detections, patches, decoded patches, reconstruction), loss curves.
- Gabor: Fig. 4 (detections within 3 px of an impulse in green, the others in red), the panels of
  Fig. 3, the true kernel beside the learned one (mean decoded patch), loss curves.
- Table 2: Fig. 5 for MIST, Ch.-wise and Supervised, Fig. 7 (task and heatmap losses, and the
  heatmap of two test scenes at initialisation, at the best and at the last checkpoint), Fig. 8
  (the uneven-layout run on its band, the mirrored band and the even layout).
- Table 3: Fig. 5 panels with K = each scene's ground-truth count. Table 4: Fig. 6 panels.

Every figure is a PNG under ``OUT/figures/``; the functions return ``(relative path, caption)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mistnet.data import collate_scenes, open_dataset
from mistnet.data.gabor import gabor_stencil
from mistnet.extras import require_matplotlib
from mistnet.metrics import greedy_assign, valid_mask
from mistnet.models.build import build_seeded
from mistnet.reproduce.report import require_own_figure
from mistnet.reproduce.runs import IMPULSE_RADIUS, RunSpec
from mistnet.rundir import Run
from mistnet.runlog import read_log
from mistnet.viz import draw_scenes_grid, output_figure, plot_curves


def _scenes(path: Path, n: int) -> dict[str, torch.Tensor]:
    dataset = open_dataset(path, "test")
    return collate_scenes([dataset[i] for i in range(min(n, len(dataset)))])


def _load(spec: RunSpec, which: str, device: str):
    return Run(spec.run_dir).load(which, device=device)


@torch.inference_mode()
def _forward(model, images: torch.Tensor, k: int | None = None):
    return model(images, k)


def _history(spec: RunSpec, label: str, keys: tuple[str, ...]) -> dict[str, list]:
    """``{f"{label}: {key}": [(step, value), ...]}`` from the run's ``log.jsonl``."""
    history: dict[str, list] = {}
    log = spec.run_dir / "log.jsonl"
    if not log.is_file():
        return history
    for rec in (r.as_dict() for r in read_log(log)):
        split = rec.get("split")
        for key in keys:
            name, _, want = key.partition("@")
            if name in rec and split == (want or "train"):
                title = f"{label}: {name}" + (" (val)" if want == "val" else "")
                history.setdefault(title, []).append((rec["step"], rec[name]))
    return history


def _mist_panels(spec: RunSpec, out: Path, n: int, device: str, per_image_k: bool = False):
    cfg, model, _ = _load(spec, "best", device)
    batch = _scenes(spec.data["test"], n)
    images = batch["image"].to(device)
    count = batch["count"]
    res = _forward(model, images, int(count.max()) if per_image_k else None)
    output_figure(
        images,
        res,
        out,
        gt_boxes=[batch["boxes"][b, : int(count[b])] for b in range(images.shape[0])],
        counts=count if per_image_k else None,
        signed=cfg.model.output == "signed",
    )
    return model, batch, res


def _curves(specs: list[tuple[str, RunSpec]], keys: tuple[str, ...], out: Path) -> bool:
    history: dict[str, list] = {}
    for label, spec in specs:
        history.update(_history(spec, label, keys))
    if not history:
        return False
    plot_curves(history, out, ncols=3, logy=[k for k in history if k.endswith(": task")])
    return True


def _recon_comparison(specs: dict[str, RunSpec], out: Path, n: int, device: str) -> None:
    batch = _scenes(next(iter(specs.values())).data["test"], n)
    images = batch["image"].to(device)
    recons = {}
    for label, spec in specs.items():
        _, model, _ = _load(spec, "best", device)
        recons[label] = _forward(model, images).reconstruction.cpu()
    panels, titles = [], []
    for b in range(images.shape[0]):
        panels.append(batch["image"][b])
        titles.append("input")
        for label, rec in recons.items():
            panels.append(rec[b])
            titles.append(label)
    draw_scenes_grid(panels, None, None, out, ncols=1 + len(recons), titles=titles)


def _heatmap_evolution(spec: RunSpec, out: Path, n: int, device: str) -> None:
    """Fig. 7c: the heatmap of ``n`` test scenes at step 0, the best and the last checkpoint."""

    cfg, best, ckpt_best = _load(spec, "best", device)
    _, last, ckpt_last = _load(spec, "last", device)
    with torch.random.fork_rng(devices=[]):  # as loop.train builds it
        init = build_seeded(cfg.model, cfg.train.method, cfg.train.seed).to(device).eval()
    batch = _scenes(spec.data["test"], n)
    images = batch["image"].to(device)
    stages = [
        ("step 0", init),
        (f"step {ckpt_best.step} (best)", best),
        (f"step {ckpt_last.step} (last)", last),
    ]
    maps = {name: _forward(m, images).heatmaps.amax(1, keepdim=True).cpu() for name, m in stages}
    panels, titles = [], []
    for b in range(images.shape[0]):
        panels.append(batch["image"][b])
        titles.append("input")
        for name, h in maps.items():
            m = h[b]
            lo, hi = float(m.min()), float(m.max())
            panels.append((m - lo) / (hi - lo) if hi > lo else m * 0)  # each map on its own range
            titles.append(f"heatmap, {name}")
    draw_scenes_grid(panels, None, None, out, ncols=1 + len(stages), titles=titles)


def _figure(fig_dir: Path, name: str) -> Path:
    """``fig_dir/name``, once it is free or a figure mistnet drew (never a file of the user's:
    :func:`~mistnet.reproduce.report.require_own_figure`)."""
    path = fig_dir / name
    require_own_figure(path)
    return path


def _gabor(spec: RunSpec, fig_dir: Path, n: int, device: str) -> list[tuple[str, str]]:
    figs = []
    path = _figure(fig_dir, "gabor-fig3-panels.png")
    model, batch, res = _mist_panels(spec, path, n, device)
    figs.append(
        (
            path,
            "MIST on Gabor noise: input with impulses, heatmap, detections, patches, "
            "decoded patches, reconstruction (signed, grey = 0)",
        )
    )
    boxes, count = batch["boxes"], batch["count"]
    kp = res.keypoints.cpu()  # (B, K, 3)
    # The matching of metrics.match_points, keeping which detection each impulse took.
    dist = torch.cdist(boxes[..., :2].double(), kp[..., :2].double())  # (B, N, K)
    eligible = valid_mask(batch["labels"], count).unsqueeze(2).expand_as(dist)
    assign = greedy_assign(-dist, eligible, -(IMPULSE_RADIUS + 1e-9))  # (B, N)
    correct = (assign.unsqueeze(2) == torch.arange(kp.shape[1])).any(1)  # (B, K)
    good = [kp[b][correct[b]] for b in range(kp.shape[0])]
    bad = [kp[b][~correct[b]] for b in range(kp.shape[0])]
    titles = [
        f"impulses found: {int((assign[b] >= 0).sum())}/{int(count[b])}" for b in range(kp.shape[0])
    ]
    path = _figure(fig_dir, "gabor-fig4-localisation.png")
    draw_scenes_grid(
        list(batch["image"]), good, None, path, pred_boxes=bad, ncols=n, signed=True, titles=titles
    )
    figs.append((path, "Fig. 4: detections within 3 px of an impulse (green) and the others (red)"))
    decoded = res.task.cpu()  # (B, K, 1, P, P)
    true = torch.from_numpy(gabor_stencil()).float()[None]
    learned = decoded.flatten(0, 1).mean(0)  # (1, P, P)
    path = _figure(fig_dir, "gabor-kernel.png")
    draw_scenes_grid(
        [true, learned],
        None,
        None,
        path,
        ncols=2,
        signed=True,
        titles=["true kernel (21 x 21 px)", "learned (mean decoded patch)"],
    )
    figs.append((path, "the Gabor kernel of the data beside the auto-encoder's mean output"))
    return figs


def _uneven(spec: RunSpec, out: Path, n: int, device: str) -> None:
    _, model, _ = _load(spec, "best", device)
    images, gt, gl, det, dl, titles = [], [], [], [], [], []
    names = {"test": "left band (trained)", "right": "right band (unseen)", "even": "even layout"}
    for name, title in names.items():
        batch = _scenes(spec.data[name], n)
        res = _forward(model, batch["image"].to(device))
        for b in range(batch["image"].shape[0]):
            images.append(batch["image"][b])
            c = int(batch["count"][b])
            gt.append(batch["boxes"][b, :c])
            gl.append(batch["labels"][b, :c])
            det.append(res.keypoints[b].cpu())
            dl.append(res.task[b].argmax(-1).cpu())
            titles.append(title)
    draw_scenes_grid(images, gt, gl, out, pred_boxes=det, pred_labels=dl, ncols=n, titles=titles)


def table_figures(
    table: str, specs: dict[str, RunSpec], out: Path, n: int, device: str
) -> list[tuple[str, str]]:
    """Draw the figures of ``table`` from its seed-0 runs ``specs`` (by row key).

    Returns:
        ``(path relative to out, caption)`` for each figure written.
    """
    require_matplotlib()  # before the folder: without it, an empty figures/ was left
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs: list[tuple[Path, str]] = []
    if table == "table1":
        for ds, name in (("mnist-easy", "MNIST easy"), ("mnist-hard", "MNIST hard")):
            path = _figure(fig_dir, f"table1-fig2-{ds}.png")
            methods = {"MIST": "mist", "Grid": "grid", "Ch.-wise": "channelwise"}
            _recon_comparison({m: specs[f"{ds}-{k}"] for m, k in methods.items()}, path, n, device)
            figs.append((path, f"Fig. 2 ({name}): input and the reconstructions of each method"))
        path = _figure(fig_dir, "table1-fig3-mnist-hard.png")
        _mist_panels(specs["mnist-hard-mist"], path, n, device)
        figs.append((path, "Fig. 3: MIST auto-encoding MNIST hard (patches and decoded patches)"))
        path = _figure(fig_dir, "table1-curves.png")
        runs = [(k, s) for k, s in specs.items()]
        if _curves(runs, ("task", "rmse@val"), path):
            figs.append((path, "training loss (eq. 8) and validation RMSE of every run"))
    elif table == "gabor":
        figs += _gabor(specs["gabor-mist"], fig_dir, n, device)
        path = _figure(fig_dir, "gabor-curves.png")
        if _curves([("MIST", specs["gabor-mist"])], ("task", "heatmap", "rmse@val"), path):
            figs.append((path, "Fig. 7-style curves: task loss, heatmap loss, validation RMSE"))
    elif table == "table2":
        for key, name in (
            ("mist", "MIST"),
            ("channelwise", "Ch.-wise"),
            ("supervised", "Supervised"),
        ):
            path = _figure(fig_dir, f"table2-fig5-{key}.png")
            _mist_panels(specs[key], path, n, device)
            figs.append((path, f"Fig. 5 ({name}): ground truth (green), detections with labels"))
        path = _figure(fig_dir, "table2-fig7-curves.png")
        if _curves(
            [("MIST", specs["mist"])], ("task", "heatmap", "det_iou50@val", "both@val"), path
        ):
            figs.append((path, "Fig. 7a/b: task and heatmap losses of MIST, validation metrics"))
        path = _figure(fig_dir, "table2-fig7-heatmaps.png")
        _heatmap_evolution(specs["mist"], path, min(n, 2), device)
        figs.append((path, "Fig. 7c: the heatmap at initialisation, best and last checkpoint"))
        path = _figure(fig_dir, "table2-fig8-uneven.png")
        _uneven(specs["uneven"], path, n, device)
        figs.append((path, "Fig. 8 / App. E: trained on the left band, tested on three layouts"))
    elif table == "table3":
        for key, spec in specs.items():
            path = _figure(fig_dir, f"table3-{key}.png")
            _mist_panels(spec, path, n, device, per_image_k=True)
            figs.append((path, f"{spec.row.label}: detections with K = the scene's count"))
    elif table == "table4":
        for key, spec in specs.items():
            path = _figure(fig_dir, f"table4-fig6-{key}.png")
            _mist_panels(spec, path, n, device)
            figs.append((path, f"Fig. 6 ({spec.row.label}): SVHN detections and labels"))
        path = _figure(fig_dir, "table4-curves.png")
        if _curves([(s.row.label, s) for s in specs.values()], ("task", "ap50@val"), path):
            figs.append((path, "task loss and validation AP IoU=.50"))
    return [(str(p.relative_to(out)), caption) for p, caption in figs]


__all__ = ["table_figures"]
