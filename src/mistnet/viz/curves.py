"""Training curves: a run's log as curves, and panels of losses and metrics (``mist plot``)."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mistnet.errors import DataError, MistWarning
from mistnet.ops._checks import check_flag, check_int
from mistnet.runlog import check_record
from mistnet.viz.canvas import drawn, figure_path, new_figure, save_figure


def plot_curves(
    history: Mapping[str, Sequence[tuple[float, float]]],
    out_path: str | os.PathLike,
    *,
    ncols: int = 3,
    logy: bool | Sequence[str] = False,
    dpi: int = 100,
) -> None:
    """Loss / metric curves (Fig. 7 style), one subplot per key.

    Args:
        history: ``{name: [(step, value), ...]}``; non-finite values are skipped.
        out_path: PNG path.
        ncols: subplot columns.
        logy: log-scale y for all keys (True) or for the named keys; keys with non-positive
            values stay linear.
        dpi: output resolution, a finite number > 0.

    Raises:
        TypeError: a ``logy`` that is neither a bool nor a list or tuple of keys (``"loss"``
            was read a letter at a time).
        ValueError: no key, a curve that is no list of ``(step, value)`` pairs, or one holding
            a step or value beyond ``±1e300`` (too large to draw: a ``DataError``), a ``logy``
            naming a key ``history`` lacks, a bad ``ncols``, ``dpi`` or ``out_path``.
    """
    figure_path(out_path)  # before any drawing
    if not isinstance(history, Mapping):  # a list of pairs: a raw TypeError
        raise ValueError(
            "history: expected a mapping {name: [(step, value), ...]}, "
            f"got {type(history).__name__}"
        )
    keys = list(history)
    if not keys:
        raise ValueError("history: expected at least one key")
    check_int(ncols, "ncols")
    curves = {key: _points(history[key], key) for key in keys}  # all before any drawing
    logy = _logy(logy)
    if not isinstance(logy, bool) and (unknown := [k for k in logy if k not in history]):
        raise ValueError(f"logy names {unknown[0]!r}, which is no key of history")
    fig, axes = _panel_grid(len(keys), ncols, dpi)
    for key, ax in zip(keys, axes, strict=True):
        pts = curves[key]
        ax.plot(pts[:, 0], pts[:, 1], linewidth=1.0)
        want_log = logy is True or (not isinstance(logy, bool) and key in logy)
        if want_log and len(pts) and (pts[:, 1] > 0).all():
            ax.set_yscale("log")
        _style_panel(ax, key, "step")
    drawn(fig.tight_layout)
    save_figure(fig, out_path, dpi)


def _points(points: Any, key: str) -> np.ndarray:
    """The finite ``(step, value)`` pairs of the curve ``key`` as an ``(N, 2)`` array; a curve
    of triples or of no numbers is refused naming it (numpy's "cannot reshape array" before),
    and so is one too large to draw (:func:`_drawable`)."""
    if isinstance(points, torch.Tensor) and points.is_floating_point() and not points.is_meta:
        points = points.detach().to("cpu", torch.float64)  # bfloat16: numpy has no such type
    try:
        pts = np.asarray(list(points), dtype=np.float64)
    except OverflowError:  # 10**400: "int too large to convert to float"
        raise DataError(
            f"the curves hold values too large to draw: history[{key!r}] holds an integer "
            f"beyond floats (steps and values of at most ±{_DRAWABLE:g} are drawn)"
        ) from None
    except (TypeError, ValueError):
        pts = None
    if pts is None or (pts.size and (pts.ndim != 2 or pts.shape[1] != 2)):
        raise ValueError(f"history[{key!r}]: expected (step, value) pairs of numbers")
    pts = pts.reshape(-1, 2)
    return _drawable(pts[np.isfinite(pts).all(axis=1)], f"history[{key!r}]")


def _logy(logy: object) -> bool | list[str] | tuple[str, ...]:
    """``logy`` of :func:`plot_curves` once it is a bool or a list or tuple of key names: None
    was "'NoneType' object is not iterable", and "loss" was read a letter at a time."""
    if isinstance(logy, list | tuple) and all(isinstance(k, str) for k in logy):
        return logy
    if isinstance(logy, bool | np.bool_):
        return bool(logy)
    raise TypeError(f"logy must be True, False or a list of keys of history, got {logy!r}")


#: The largest step, minute or value a curve may hold, either sign: matplotlib's axes overflow
#: beyond about 8e307 ("ValueError: arange: cannot compute length", naming nothing).
_DRAWABLE = 1e300


def _drawable(pts: np.ndarray, what: str) -> np.ndarray:
    """``pts``, the finite points of the curve ``what``, once none lies beyond :data:`_DRAWABLE`.

    Raises:
        mistnet.errors.DataError: (a ValueError) ``"the curves hold values too large to draw:
            <what> holds 1e+308 ..."``.
    """
    big = np.abs(pts) > _DRAWABLE
    if big.any():
        raise DataError(
            f"the curves hold values too large to draw: {what} holds {pts[big][0]:g} "
            f"(steps and values of at most ±{_DRAWABLE:g} are drawn)"
        )
    return pts


def _panel_grid(n: int, ncols: int, dpi: int):
    """A figure of ``n`` curve panels in up to ``ncols`` columns: ``(figure, the n axes)``."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = new_figure(3.6 * ncols, 2.6 * nrows, dpi)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes[:n]


def _style_panel(ax, title: str, xlabel: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


#: Keys of a run's log lines that are bookkeeping, not curves.
_NOT_CURVES = {"step", "split", "wall", "n_images", "n_instances", "n_detections"}


def log_curves(records: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, float, float]]]:
    """A run's ``log.jsonl`` lines as curves ``{"train/task": [(step, minutes, value)], ...}``.

    Training lines give ``train/<loss>``, validation lines ``val/<metric>``. A training line's
    minutes are its own ``wall``. A validation line has no time of its own (the loop writes
    ``wall`` on training lines only), so its minutes are read off the training times at its
    step: interpolated linearly in the step between the training lines around it, with
    training starting at step 0, minute 0 (``val_every`` below ``log_every``: the validations
    before the first training line are placed between 0 and that line's time); after the last
    training line (a final validation once ``--max-minutes`` stopped the run), extrapolated at
    the pace of the last two logged points. A log with no timed training line gives NaN
    minutes, which :func:`plot_runs` counts and leaves out with a warning.

    Example:
        >>> log_curves([{"step": 5, "split": "val", "both": 0.25},
        ...             {"step": 10, "split": "train", "wall": 60.0, "task": 2.0},
        ...             {"step": 10, "split": "val", "both": 0.5}])
        {'val/both': [(5, 0.5, 0.25), (10, 1.0, 0.5)], 'train/task': [(10, 1.0, 2.0)]}

    Raises:
        TypeError: ``records`` is no list of records (a dict, a string).
        mistnet.errors.DataError: ``"records[i]: ..."`` for a record that is no log line
            (:func:`mistnet.runlog.parse_record`'s checks), e.g. a ``step`` that is no integer.
    """
    if isinstance(records, Mapping | str | bytes) or not isinstance(records, Iterable):
        raise TypeError(
            f"records must be a list of log records (dicts), got {type(records).__name__}"
        )
    # each line as the log reader checks it ({'step': 'a'} was dropped without a word)
    lines = [
        check_record(dict(r) if isinstance(r, Mapping) else r, "", f"records[{i}]")
        for i, r in enumerate(records)
    ]
    timed = {0: 0.0}  # wall counts from the start of training (a resumed run's goes on)
    timed.update({r.step: r.wall / 60 for r in lines if r.split == "train" and r.wall is not None})
    ordered = sorted(lines, key=lambda r: (r.step, r.split != "train"))
    curves: dict[str, list[tuple[int, float, float]]] = {}
    for r, minutes in zip(ordered, _minutes_at([r.step for r in ordered], timed), strict=True):
        for key, value in r.values.items():
            if key not in _NOT_CURVES and value is not None:
                curves.setdefault(f"{r.split}/{key}", []).append((r.step, minutes, value))
    return curves


def _minutes_at(steps: Sequence[int], timed: Mapping[int, float]) -> list[float]:
    """The training minutes at each of ``steps`` from ``{step: minutes}`` of the timed lines
    (step 0 included): a timed step's own, linear between them, at the last pace beyond the
    last, NaN where only step 0 is timed."""
    known = np.array(sorted(timed), dtype=np.float64)
    at = np.array([timed[s] for s in sorted(timed)], dtype=np.float64)
    x = np.asarray(steps, dtype=np.float64)
    if len(known) < 2:
        return [timed.get(s, math.nan) for s in steps]
    pace = (at[-1] - at[-2]) / (known[-1] - known[-2])
    out = np.where(x <= known[-1], np.interp(x, known, at), at[-1] + pace * (x - known[-1]))
    return [timed.get(s, float(m)) for s, m in zip(steps, out, strict=True)]


def check_keys(keys: object, name: str = "keys") -> list[str]:
    """``keys`` of :func:`plot_runs` (``name``; ``"--key"`` for ``mist plot``) as a list, once
    it is a list or tuple of curve names that names each curve once.

    Raises:
        TypeError: no list or tuple of strings (``"train/task"`` was read a letter at a time:
            "no run has the curve 't'").
        ValueError: a curve named twice (it was drawn twice, the second on top of the first).
    """
    keys = () if keys is None else keys
    if not isinstance(keys, list | tuple) or not all(isinstance(k, str) for k in keys):
        raise TypeError(
            f"{name}: expected a list of curve names such as ['train/task'], got {keys!r}"
        )
    twice = [k for i, k in enumerate(keys) if k in keys[:i]]
    if twice:
        shown = f"{name} {twice[0]}" if name.startswith("--") else f"{name}: {twice[0]!r}"
        raise ValueError(f"{shown} is given twice; name each curve once")
    return list(keys)


def _keys_to_draw(keys: list[str], found: set[str]) -> list[str]:
    """The curves :func:`plot_runs` draws: ``keys`` once each is one of the ``found``, else
    the default ones (the training losses and the validation metrics but the per-class ones).

    Raises:
        ValueError: a key no run has, or none of the default curves (the message lists the
            curves there are, which ``keys`` may name).
    """
    there = ", ".join(sorted(found)) or "none"
    missing = [k for k in keys if k not in found]
    if missing:
        raise ValueError(f"no run has the curve {missing[0]!r}; the curves are {there}")
    if keys:
        return keys
    if not found:
        raise ValueError("the runs have no curves to draw")
    losses = [k for k in ("train/task", "train/heatmap") if k in found]
    keys = losses + sorted(k for k in found if k.startswith("val/") and k.count("/") == 1)
    if not keys:  # "no curves to draw" before, though --key train/foo drew one
        raise ValueError(
            "the runs have none of the curves drawn by default (train/task, train/heatmap, "
            f"val/<metric>); the curves are {there}: name those to draw with keys "
            "(--key of mist plot)"
        )
    return keys


def _run_points(curve: list[tuple[int, float, float]], minutes: bool, what: str):
    """The finite ``(x, value)`` points of a curve of :func:`log_curves`, ``x`` its steps or
    its minutes, checked (:func:`_drawable`, naming ``what``), and how many points had no
    minutes."""
    pts = np.asarray([(m if minutes else s, v) for s, m, v in curve], dtype=np.float64)
    pts = pts.reshape(-1, 2)
    untimed = sum(not math.isfinite(m) for _, m, _ in curve) if minutes else 0
    return _drawable(pts[np.isfinite(pts).all(axis=1)], what), untimed


def plot_runs(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    out_path: str | os.PathLike,
    *,
    keys: Sequence[str] | None = (),
    minutes: bool = False,
    ncols: int = 3,
    dpi: int = 100,
) -> list[str]:
    """Losses and validation metrics of several runs, one panel per curve, one line per run.

    Args:
        runs: ``{label: log records}`` (see :func:`log_curves`).
        out_path: PNG path, new or a figure mistnet wrote.
        keys: a list of the curves to draw (``"train/task"``, ``"train/border"``,
            ``"val/both"``), each once; empty or ``None``: the training losses ``train/task``
            and ``train/heatmap`` and every validation metric but the per-class
            ``val/classif/<name>``.
        minutes: training minutes on the x axis instead of steps (a validation's are
            interpolated, see :func:`log_curves`); a run whose log has no timed training
            line has none: its points are left out, and a warning says how many.

    Returns:
        The keys drawn.

    Raises:
        TypeError: ``runs`` no mapping, ``keys`` no list of strings ("no run has the curve 't'").
        ValueError: a key given twice, a key no run has a curve of, or no default curve (the
            message lists those they have), no curve at all, a step, minute or value beyond
            ``±1e300`` (too large to draw, named: a ``DataError``), with ``minutes`` no point
            to place (a ``DataError``), an ``ncols`` that is no
            integer >= 1, or an ``out_path`` refused.
    """
    figure_path(out_path)  # before any drawing
    minutes = check_flag(minutes, "minutes")
    if not isinstance(runs, Mapping):
        raise TypeError(
            f"runs: expected a mapping {{label: log records}}, got {type(runs).__name__}"
        )
    keys = check_keys(keys)
    check_int(ncols, "ncols")
    curves = {label: log_curves(records) for label, records in runs.items()}
    keys = _keys_to_draw(keys, {k for c in curves.values() for k in c})
    points = {  # all checked before any drawing
        (key, label): _run_points(c.get(key, []), minutes, f"{key} of the run {label!r}")
        for key in keys
        for label, c in curves.items()
    }
    if minutes and not any(len(pts) for pts, _ in points.values()):  # an empty figure was written
        raise DataError(
            "no point to draw in minutes: no run's log has a training line with a time ('wall'); "
            "draw the curves by step (leave out --minutes)"
        )
    fig, axes = _panel_grid(len(keys), ncols, dpi)
    for key, ax in zip(keys, axes, strict=True):
        for label in curves:
            pts = points[key, label][0]
            marker = "o" if key.startswith("val/") or len(pts) < 30 else ""
            ax.plot(pts[:, 0], pts[:, 1], marker=marker, linewidth=1.0, markersize=3, label=label)
        _style_panel(ax, key, "training minutes" if minutes else "step")
    for label in curves:
        n = sum(points[key, label][1] for key in keys)
        if n:
            warnings.warn(
                f"{label}: {n} point(s) left out: its log has no training line with a time "
                "('wall') to place them in minutes",
                MistWarning,
                stacklevel=2,
            )
    if len(runs) > 1:
        axes[0].legend(fontsize=7)
    drawn(fig.tight_layout)
    save_figure(fig, out_path, dpi)
    return list(keys)
