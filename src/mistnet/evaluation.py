"""Evaluation of a trained run: best checkpoint, a checked data split, its metrics, a record.

``mist eval``, ``make demo`` and ``mist reproduce`` all evaluate through :func:`evaluate_run`,
so the numbers each of them writes for the same run and split are the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mistnet import pretrained, validate
from mistnet.data.digits import canonical_split
from mistnet.data.runs import OTHER_DATA, check_data, open_data, require_trained_on
from mistnet.data.sampling import loader
from mistnet.data.store import annotations_of
from mistnet.device import device_argument
from mistnet.engine import Meter, evaluate, meter_problem
from mistnet.errors import ArgumentError, MistError
from mistnet.metrics import unmeasured
from mistnet.models.mist import PatchModel
from mistnet.rundir import Run
from mistnet.textfile import read_json
from mistnet.torchstate import callers_torch_state


@dataclass(frozen=True)
class Evaluation:
    """The metrics of one run's checkpoint on one split, and what they were computed on.

    Attributes:
        run: the run directory, or the name of the pretrained model evaluated.
        checkpoint: file name of the checkpoint evaluated (``best.safetensors`` when it exists).
        step: training steps of that checkpoint.
        data: the dataset directory or generator name.
        split: ``train``, ``val`` or ``test``.
        images: number of scenes evaluated.
        k: detections per image, or ``"per-image"`` (each scene's ground-truth count).
        metrics: :func:`mistnet.engine.evaluate`'s metrics (with ``classif/<name>`` per class
            when the run names its classes).
        not_measured: the metrics the data's ground truth cannot give, each with the reason
            (:func:`mistnet.metrics.unmeasured`).
        run_dir: the run directory's absolute path (None for a pretrained model): ``run`` is
            as given, relative to a working directory that is not recorded, so this is what
            says which run a record measured.
        checkpoint_digest: the checkpoint's checksum: the record of a run moved since is
            told by it from a namesake's (``mist eval --json`` replaces only a record of the
            same weights there).
    """

    run: str
    checkpoint: str
    step: int
    data: str
    split: str
    images: int
    k: int | str
    metrics: dict[str, float]
    not_measured: dict[str, str] = dataclasses.field(default_factory=dict)
    run_dir: str | None = None
    checkpoint_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record ``mist eval`` writes (these keys, in this order)."""
        return dataclasses.asdict(self)


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record at ``path`` if it is one ``mist eval`` writes (a JSON object with the fields
    of :class:`Evaluation`, the last two only since they were added and text or null, ``run`` as
    text), else None: a file of the user's, unreadable or of other content."""
    try:
        doc = read_json(path)
    except (MistError, OSError, ValueError):
        return None
    later = {"run_dir", "checkpoint_digest"}
    needed = set(Evaluation.__dataclass_fields__) - later
    if not (isinstance(doc, dict) and needed <= set(doc) and isinstance(doc["run"], str)):
        return None
    if any(not isinstance(doc.get(key), str | None) for key in later):  # run_dir 5: a TypeError
        return None
    return doc


def check_k(k: int, dataset, source: str, method: str, python: bool = True) -> None:
    """Refuse ``--k`` above the pixel count of the images: the heatmap methods' E_K picks K
    pixels (the run's own ``model.k`` is checked by :func:`~mistnet.data.runs.check_data`).
    ``mist eval`` and ``mist show`` share it (``python``: name ``k=`` too, as
    :func:`evaluate_run` takes it).

    Raises:
        ArgumentError: ``k`` above ``dataset.height * dataset.width``, naming ``source``.
    """
    places = int(dataset.height) * int(dataset.width)
    if k > places and method in ("mist", "supervised"):
        name = f"--k {validate.shown(k)} (k= in Python)" if python else f"--k {validate.shown(k)}"
        many = str(k) if validate.shown(k) == str(k) else "that many"  # "an integer of 67 bits"
        raise ArgumentError(
            f"{name}: {source} has {dataset.width}x{dataset.height} images, too few pixels "
            f"for {many} detections (at most {places})"
        )


def _check_arguments(
    run, model, data, split: str, k, per_image_k, batch_size, device, meters
) -> tuple[str | None, str, int, int, torch.device]:
    """:func:`evaluate_run`'s arguments, each checked before any work (the command line checks
    its options itself): ``data`` as a string, the split's canonical name, ``k`` and
    ``batch_size`` as ints, the device resolved (``auto``).

    Raises:
        TypeError: ``run`` or ``data`` no path, ``meters`` no sequence of meters, ``device``
            neither a name nor a ``torch.device``.
        ArgumentError: ``run`` and ``model`` both given or neither, ``data`` neither a path
            nor a name, an unknown split, a ``k`` or ``batch_size`` that is no integer >= 0
            (numpy's integers and 0-d integer tensors are), a ``per_image_k`` that is no bool
            or comes with ``k``, a ``device`` that is no device name or CUDA where there is
            none.
    """
    if (run is None) == (model is None):
        raise ArgumentError("give run or model (a pretrained model's name), one of the two")
    if run is not None and not validate.path_argument(run, "run"):
        raise ArgumentError("run '' is an empty path; give the run directory")
    if data is not None:
        if not isinstance(data, str | os.PathLike):
            raise ArgumentError(f"data must be a path or a generator name, got {data!r}")
        data = os.fspath(data)
        if not data.strip():  # "" evaluated the run's own data without a word
            raise ArgumentError(f"data {data!r} is empty; give a dataset, or None for the run's")
    if not isinstance(split, str):
        raise ArgumentError(f"split must be one of train, val, test; got {split!r}")
    try:
        split = canonical_split(split)
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    k, batch_size = (_count(k, "k"), _count(batch_size, "batch_size"))
    if not isinstance(per_image_k, bool | np.bool_):
        raise ArgumentError(f"per_image_k must be True or False, got {per_image_k!r}")
    if k and per_image_k:
        raise ArgumentError("k and per_image_k exclude each other")
    _check_meters(meters)
    return data, split, k, batch_size, device_argument(device)


def _count(value: object, name: str) -> int:
    """``value`` as an int if it is an integer >= 0 (:func:`~mistnet.validate.as_integer`:
    numpy's and 0-d integer tensors too).

    Raises:
        ArgumentError: ``"<name> must be an integer >= 0 (0: the run's), got <value>"``.
    """
    n = validate.as_integer(value)
    if n is None or n < 0:
        got = validate.shown(value)
        raise ArgumentError(f"{name} must be an integer >= 0 (0: the run's), got {got}")
    return n


def _check_meters(meters) -> None:
    """Refuse ``meters`` that are not a sequence of :class:`~mistnet.engine.Meter`."""
    if not isinstance(meters, Sequence) or isinstance(meters, str):
        raise TypeError(f"meters must be a sequence of meters, got {type(meters).__name__}")
    for n, meter in enumerate(meters):
        if (problem := meter_problem(meter)) is not None:
            raise TypeError(f"meters[{n}] ({type(meter).__name__}) is no meter: {problem}")


def _open_checked(cfg, data: str | None, split: str):
    """The source and ``split`` of ``data`` (default: the run's own, refused when made again
    since), not empty and such as the run can be evaluated on."""
    source, dataset = open_data(cfg, data, split)
    if data is None:
        require_trained_on(cfg, dataset, source, OTHER_DATA)
    if len(dataset) == 0:
        raise MistError(f"{source}: the {split} split is empty")
    check_data(cfg, dataset, source)
    return source, dataset


def _detections(
    net: PatchModel, k: int, per_image_k: bool, dataset: Dataset, source: str, method: str
) -> tuple[int, frozenset[str]]:
    """The K to detect (``k``, 0: the model's) and the annotations of ``dataset``, once the
    model can find them (:func:`check_k`) and ``per_image_k`` has counts to read: on data
    without annotations every count was 0, so the model's K was used and the record said
    per-image K."""
    if problem := net.k_problem(k, per_image_k):
        raise ArgumentError(f"{problem}; drop --k / --per-image-k (k=, per_image_k= in Python)")
    k = k or net.k
    check_k(k, dataset, source, method)
    annotations = annotations_of(dataset)
    if per_image_k and not annotations:
        raise ArgumentError(
            f"{source}: per-image K needs each image's instance count, and this data has no "
            "annotations (images only); drop --per-image-k (per_image_k= in Python)"
        )
    return k, annotations


def evaluate_run(
    run: str | Path | None,
    data: str | os.PathLike | None = None,
    split: str = "test",
    *,
    k: int = 0,
    per_image_k: bool = False,
    batch_size: int = 0,
    device: torch.device | str = "cpu",
    meters: Sequence[Meter] = (),
    model: str | None = None,
) -> Evaluation:
    """Evaluate the best checkpoint of ``run`` (or the pretrained ``model``) on ``split`` of
    ``data``.

    Args:
        run: a run directory written by :func:`mistnet.loop.train`.
        data: dataset directory or generator name (default: the run's own data, see
            :func:`mistnet.data.runs.open_data`).
        split: ``train``, ``val`` or ``test``.
        k: detections per image (0: the model's K).
        per_image_k: detect each scene's ground-truth count instead (Table 3); the data
            must be annotated.
        batch_size: evaluation batch size (0: the run's training batch size).
        device: where the model runs.
        meters: more meters fed in the same pass (:class:`mistnet.engine.Meter`); the caller
            reads their metrics.
        model: the name of a pretrained model (:mod:`mistnet.pretrained`) to evaluate instead
            of ``run`` (then None); its data is that of the run it was trained by.

    torch's random generators, thread count and default dtype are left as the caller had them,
    and the caller's ``torch.autocast`` does not reach the model: the numbers are those
    ``mist eval`` writes.

    Raises:
        MistError: not a run, data the run cannot be evaluated on (with the reason), an empty
            split, more detections than the images have pixels, or outputs or metrics that
            are not finite.
        ArgumentError: ``run`` and ``model`` both or neither, or an argument of a wrong type
            or range (:func:`_check_arguments`).
    """
    data, split, k, batch_size, device = _check_arguments(
        run, model, data, split, k, per_image_k, batch_size, device, meters
    )
    # the loader's iterator draws its base seed from torch's global generator: each call
    # advanced the caller's random numbers by two draws
    with callers_torch_state():
        return _evaluate(run, model, data, split, k, per_image_k, batch_size, device, meters)


def _evaluate(run, model, data, split, k, per_image_k, batch_size, device, meters) -> Evaluation:
    """:func:`evaluate_run` of checked arguments."""
    if model is None:
        cfg, net, ckpt = Run(run).load("best", device=device)
    else:
        cfg, net, ckpt = pretrained.load(model, device=device)
        if data is None and cfg.data.path and not os.path.isdir(cfg.data.path):
            # the path its training run recorded, on the machine that trained it; relative:
            # to the folder it was packaged in (the card's commands ran there)
            where = (
                "here (the path is relative to the folder the model was packaged in)"
                if not os.path.isabs(cfg.data.path)
                else "on this machine"
            )
            raise MistError(
                f"{model}: the dataset it was trained on ({cfg.data.path}) is not {where}; "
                "pass the data (--data DIR, data=DIR in Python; `mist models` shows the "
                "commands that made it)"
            )
    source, dataset = _open_checked(cfg, data, split)
    k, annotations = _detections(net, k, per_image_k, dataset, source, cfg.train.method)
    try:
        metrics = evaluate(
            net,
            loader(dataset, min(batch_size or cfg.train.batch_size, len(dataset)), 0),
            device=device,
            k=k,
            per_image_k=per_image_k,
            signed=cfg.model.output == "signed",
            annotations=annotations,
            class_names=tuple(cfg.record.class_names),
            meters=meters,
        )
    except MistError as exc:  # the model's outputs not finite
        raise MistError(f"{ckpt.path} on {source} [{split}]: {exc}") from None
    if broken := [name for name, value in metrics.items() if not math.isfinite(value)]:
        raise MistError(
            f"{ckpt.path} on {source} [{split}]: {', '.join(broken)} not finite; the model's "
            "outputs are NaN or infinite on this data"
        )
    return Evaluation(
        run=str(Path(run)) if model is None else model,
        checkpoint=ckpt.path.name,
        step=ckpt.step,
        data=str(Path(source).resolve()) if Path(source).is_dir() else source,  # as data.path
        split=split,
        images=len(dataset),
        k="per-image" if per_image_k else k,
        metrics=metrics,
        not_measured=unmeasured(cfg.model.task, annotations),
        run_dir=str(Path(run).resolve()) if model is None else None,
        checkpoint_digest=ckpt.digest,
    )
