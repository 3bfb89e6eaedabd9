"""The data of a trained run: a split opened as the run saw it, and whether the run fits it."""

from __future__ import annotations

import filecmp
import hashlib
import os
import warnings
from pathlib import Path

from torch.utils.data import Dataset

from mistnet.config import Config, DataConfig
from mistnet.data.checksums import SPLIT_DIGESTS, arrays_digest
from mistnet.data.digits import canonical_split
from mistnet.data.manifest import MANIFEST, counted_instances, read_manifest
from mistnet.data.memory import IN_MEMORY
from mistnet.data.scenes import GENERATORS
from mistnet.data.store import SPLITS, annotations_of, classes_of, open_dataset
from mistnet.errors import MistError, MistWarning
from mistnet.io import json_text
from mistnet.models.heatmap import smallest_side
from mistnet.validate import require_directory


def training_split(cfg: Config, split: str) -> Dataset:
    """The ``split`` of the run's own data (:func:`open_data`), which ``mist train`` trains or
    validates on.

    Raises:
        MistError: a dataset directory without a val split (imported with ``--val 0``): the
            command line trains only with validation.
    """
    path = cfg.data.path
    if split == "val" and path and Path(path).is_dir():
        meta = read_manifest(path)
        if "val" not in meta.get("splits", {}):
            made = meta.get("generator")
            again = (  # --val of import-images is a fraction ("--val 2" was then refused)
                "import the data again with --val F (a fraction in (0, 1), e.g. 0.1)"
                if made == "images"
                else "make the data again with --n-val N (N > 0)"
                if made in GENERATORS
                else "make the data again with a val split"
            )
            raise MistError(
                f"{path} has no val split, which mist train validates on: {again}, or train "
                "without validation in Python (mistnet.fit(..., val=None))"
            )
    return open_data(cfg, None, split)[1]


def open_data(cfg: Config, data: str | None, split: str) -> tuple[str, Dataset]:
    """The ``split`` of ``data`` (a directory or generator name; default the run's own data:
    ``data.path``, else the generator ``data.name``).

    A generator is sampled with the run's data seed and split size, so ``mist eval`` on the
    run's generator sees the same scenes the run's own validation / test would.

    Returns:
        ``(source, dataset)``: the directory or name the data came from, and the split.

    Raises:
        MistError: ``data`` looks like a path but is no directory.
        DataError: neither a dataset directory nor a generator name.
    """
    if data is not None and not isinstance(data, str):
        raise TypeError(f"data must be a directory or generator name, got {type(data).__name__}")
    split = canonical_split(split)  # "valid" is "val"; another name a ValueError
    d = cfg.data
    source = data or d.path or d.name
    if source == IN_MEMORY:
        raise MistError(
            "this run was trained on data in memory (mistnet.fit); pass the data (--data DIR, data=DIR in Python)"
        )
    path = Path(source)
    named = not data and source == d.path  # data.path names a folder, never a generator
    looks_like_path = named or os.sep in source or source.startswith(".") or os.path.lexists(path)
    if looks_like_path and not path.is_dir():
        if named and not path.exists():  # moved or removed since
            raise MistError(
                f"the run's dataset {source} (data.path) does not exist; pass the data (--data DIR, data=DIR in Python)"
            )
        require_directory(path, "data directory")
    sizes = {"train": d.n_train, "val": d.n_val, "test": d.n_test}
    if path.is_dir():
        dataset = open_dataset(source, split)
    elif d.name == IN_MEMORY and not sizes[split]:  # fit records the sizes of its data
        raise MistError(
            f"this run was trained on data in memory (mistnet.fit) and records no {split} "
            f"size to make {source} scenes of; give a dataset directory (--data DIR)"
        )
    else:
        dataset = open_dataset(source, split, size=sizes[split], seed=d.seed, digits=d.digits)
    return source, dataset


def _adopt_dataset(cfg: Config, made: str) -> None:
    """Record in ``cfg.data`` what the dataset directory ``data.path`` was ``made`` of: its
    generator's name, split sizes and digits (the default where it has none). A preset's,
    which training never read, were recorded before; ``mist eval RUN --data <generator>``
    reads them."""
    meta, d = read_manifest(cfg.data.path), cfg.data
    splits = meta.get("splits", {})
    d.name = made
    d.n_train, d.n_val, d.n_test = (int(splits.get(s, 0)) for s in ("train", "val", "test"))
    digits = meta.get("digits")
    d.digits = digits if isinstance(digits, str) and digits.strip() else DataConfig().digits


def check_data(cfg: Config, dataset: Dataset, source: str, training: bool = False) -> None:
    """Reject data the run cannot be trained or evaluated on, with a one-line reason.

    Args:
        cfg: the run's config; ``record.image_size`` is the size it was trained on (a grid
            baseline only fits that size).
        dataset: a :class:`~mistnet.data.SceneFolder` or :class:`~mistnet.data.SceneDataset`.
        source: how the user named the data, for the message.
        training: ``dataset`` is the split a run trains on, which must also carry boxes for
            the supervised baseline, when it names its classes, ``model.num_classes`` of them,
            and for a classifier a label on every image.

    Raises:
        MistError: other channels, signed data for a classifier, the auto-encoder's output
            range does not match, another image size for the grid baseline, images of fewer
            pixels than ``model.k`` for the heatmap methods, or too few on a side (at the
            smallest pyramid level) for the heatmap network, a classifier on
            data without labels or with class ids it does not have (or no instances at all),
            class names other than the run's, or (``training``) the supervised baseline
            without boxes, another class count, an image without a label, or a
            ``model.base_side`` larger than the images.
    """
    m = cfg.model
    channels = int(dataset.channels)
    if channels != m.in_channels:
        raise MistError(
            f"{source} has {channels}-channel images but the run's model takes {m.in_channels}"
        )
    if dataset.signed and m.task == "classify":
        has = "with" if "labels" in annotations_of(dataset) else "without"
        raise MistError(
            f"{source} holds float32 images (read as signed textures, as Gabor noise) {has} "
            "class labels; a classifier takes uint8 images (0..255)"
        )
    if m.task == "reconstruct" and dataset.signed != (m.output == "signed"):
        kind = "float32 (read as signed textures, as Gabor noise)" if dataset.signed else "[0, 1]"
        raise MistError(
            f"{source} holds {kind} images but the run's auto-encoder has {m.output} output"
        )
    size = (int(dataset.height), int(dataset.width))
    trained = tuple(cfg.record.image_size)
    if cfg.train.method == "grid" and trained and size != trained:
        raise MistError(
            f"{source} has {size[1]}x{size[0]} images but this grid baseline was trained on "
            f"{trained[1]}x{trained[0]}"
        )
    _check_model_fits(cfg, size, source)
    if training:  # after the pyramid's sizes: a factor of 1e-30 is said of its level
        _check_training_data(cfg, dataset, source)
    if m.task == "classify":
        _check_classes(cfg, dataset, source, training)


def _check_classes(cfg: Config, dataset: Dataset, source: str, training: bool) -> None:
    """:func:`check_data`'s checks of a classifier's data: labels (boxes alone, to be
    evaluated on), class ids the classifier has, class names the run's."""
    m, held = cfg.model, annotations_of(dataset)
    if "labels" not in held and (training or "boxes" not in held):
        # evaluated on boxes alone, the class-agnostic metrics are measured (left out: the rest)
        raise MistError(
            f"{source} has no labels; a classifier needs them "
            + (
                "(an auto-encoder does not: model.task=reconstruct)"
                if training
                else "or boxes to be evaluated on"
            )
        )
    arrays = getattr(dataset, "arrays", None)  # a directory; generators draw their own labels
    drawn = getattr(dataset, "num_classes", None)  # a generator's
    if arrays is None and drawn is not None and drawn > m.num_classes:
        raise MistError(
            f"{source} scenes hold classes 0..{drawn - 1} but the run's classifier has "
            f"{m.num_classes} (model.num_classes)"
        )
    if arrays is not None:
        labels = arrays["labels"][counted_instances(arrays["counts"], arrays["labels"].shape[1])]
        if labels.size == 0:
            raise MistError(f"{source} holds no instances to classify")
        if labels.max() >= m.num_classes:
            raise MistError(
                f"{source} has class ids up to {labels.max()} but the run's classifier has "
                f"{m.num_classes} classes (0..{m.num_classes - 1})"
            )
    names = classes_of(dataset)
    # A run without class names knows its classes by number: data whose class i is named
    # other than "i" would be scored against the wrong ids.
    recorded = tuple(cfg.record.class_names)
    trained_names = recorded or tuple(str(i) for i in range(len(names)))
    if names and names != trained_names:
        trained_on = ", ".join(recorded) if recorded else "classes without names (0, 1, ...)"
        raise MistError(
            f"{source} names the classes {', '.join(names)}; the run was trained on {trained_on}"
        )
    if not names and recorded != tuple(map(str, range(len(recorded)))):
        # the other way round: scored by class id as the run's names, which was unsaid
        shown = ", ".join(recorded[:4]) + (", ..." if len(recorded) > 4 else "")
        warnings.warn(
            f"{source} names no classes: its class ids 0..{len(recorded) - 1} are read as the "
            f"run's classes {shown}",
            MistWarning,
            stacklevel=3,
        )


def _check_model_fits(cfg: Config, size: tuple[int, int], source: str) -> None:
    """Refuse images of ``size`` ``(H, W)`` too small for the run's detector: fewer pixels
    than ``model.k``, or fewer on a side (at the smallest pyramid level) than its heatmap
    network pads by reflection."""
    m = cfg.model
    places = size[0] * size[1]
    if cfg.train.method in ("mist", "supervised") and m.k > places:  # E_K picks K pixels
        raise MistError(
            f"{source} has {size[1]}x{size[0]} images, too few pixels for model.k = {m.k} "
            f"detections (at most {places})"
        )
    if cfg.train.method != "grid":  # the grid baseline has no heatmap network
        need = smallest_side(m.heatmap_depth, m.heatmap_dilations)
        f = min(m.factors) if cfg.train.method in ("mist", "supervised") else 1.0
        side = min(max(1, round(f * n)) for n in size)  # HeatmapNet's smallest pyramid level
        if side < need:
            raise MistError(
                f"{source} has {size[1]}x{size[0]} images, {side} px on a side at pyramid "
                f"factor {f:g}; the heatmap network (model.heatmap_depth / heatmap_dilations) "
                f"needs {need}: lower those, or raise the smallest of model.factors"
            )


def _check_training_data(cfg: Config, dataset: Dataset, source: str) -> None:
    m, found = cfg.model, annotations_of(dataset)
    H, W = int(dataset.height), int(dataset.width)
    # the largest boxes, at the coarsest pyramid level: base_side / min(factors) (a factor
    # of 0.2 made 100 px boxes on 80 px images while base_side = 100 was refused)
    f = min(m.factors) if cfg.train.method in ("mist", "supervised") else 1.0
    if m.base_side / f > max(H, W):  # 1e12: every box covered the image many times
        sides = f"model.base_side = {m.base_side:g}" if f == 1 else (
            f"model.base_side / min(model.factors) = {m.base_side:g} / {f:g} = "
            f"{m.base_side / f:g}"
        )  # fmt: skip
        raise MistError(
            f"{source} has {W}x{H} images; boxes of {sides} px are larger than them: give at "
            f"most {max(H, W)}"
        )
    if cfg.train.method == "supervised" and "boxes" not in found:
        raise MistError(f"{source}: train.method = supervised trains on boxes, which it lacks")
    names = classes_of(dataset)
    if names and m.task == "classify" and len(names) != m.num_classes:
        raise MistError(
            f"{source} names {len(names)} classes but model.num_classes = {m.num_classes} "
            f"(--set model.num_classes={len(names)}, or num_classes={len(names)} in mistnet.fit)"
        )
    counts = (getattr(dataset, "arrays", None) or {}).get("counts")  # a directory's
    if m.task != "classify" or cfg.train.method == "supervised" or "labels" not in found:
        return
    empty = 0 if counts is None else int((counts == 0).sum())
    if empty:  # eq. 9 and the set loss compare each image's labels with its K patches
        raise MistError(  # "(an empty labels field)": of an import's CSV, not every dataset
            f"{source}: {empty} of the {len(counts)} training images have no label (a count of 0: "
            "an empty labels field, imported); "
            "a classifier needs at least one per image: leave them out, or train an "
            "auto-encoder (--set model.task=reconstruct)"
        )


def adopt_data(
    cfg: Config, train: Dataset, val: Dataset | None, resumed: bool = False
) -> frozenset[str]:
    """Check that ``cfg`` can train on ``train`` and validate on ``val`` (:func:`check_data`);
    record the training data's image size and class names in ``cfg.record`` (a dataset
    directory's generator name, too, as ``cfg.data.name``); return the ground truth that
    validation can measure (that of ``val``, else of ``train``).

    A ``resumed`` run keeps what it recorded: data of another image size, made by another
    generator, or naming other classes (:func:`check_data`), is not the data it trained on
    (its folder was replaced).

    Raises:
        MistError: an empty ``val``, ``resumed`` on data of another image size or generator, or what
            :func:`check_data` refuses.
    """
    source = cfg.data.path or cfg.data.name
    if val is not None and len(val) == 0:
        raise MistError(f"{source}: the val split is empty; training validates on it")
    remedy = "a resumed run trains on the data it started with"
    if resumed and not cfg.data.path:  # its folder's name lost: said before the checks below
        require_trained_on(cfg, train, source, remedy)
    record = cfg.record
    size = (int(train.height), int(train.width))
    if resumed and record.image_size and tuple(record.image_size) != size:
        h, w = record.image_size
        raise MistError(
            f"{source} has {size[1]}x{size[0]} images but the run was trained on {w}x{h} ones; "
            f"{remedy}"
        )
    record.image_size = size
    made = str(getattr(train, "name", "")) if cfg.data.path else ""
    if resumed and record.data_made_by and made != record.data_made_by:
        raise MistError(
            f"{source} is a dataset made by {made or 'no generator'!r} but the run was trained "
            f"on one made by {record.data_made_by!r}; {remedy}"
        )
    record.data_made_by = made
    if made and not resumed:  # the preset's generator and sizes were recorded beside the data
        _adopt_dataset(cfg, made)
    names = classes_of(train)
    if cfg.model.task != "classify":
        record.class_names = ()
    elif not resumed:  # a config's names (an edited config.json) beside unnamed data: none
        record.class_names = names
    check_data(cfg, train, f"{source} [train]", training=True)
    if val is not None:
        if cfg.model.task == "classify" and "labels" not in annotations_of(val):
            # evaluated on boxes alone (check_data), but best.safetensors is chosen by classif
            raise MistError(f"{source} [val] has no labels; a classifier validates on them")
        check_data(cfg, val, f"{source} [val]")
    if resumed:
        require_trained_on(cfg, train, source, remedy)
    manifest = getattr(train, "manifest", None) if cfg.data.path else None
    record.data_manifest = manifest_digest(manifest) if isinstance(manifest, dict) else ""
    return annotations_of(train if val is None else val)


#: What :func:`require_trained_on` tells a command reading a run's own data to do.
OTHER_DATA = "name it as the data (--data DIR, data=DIR in Python) to use it all the same"


def require_same_sizes(cfg: Config, data: tuple | None, resumed: bool) -> None:
    """Refuse ``data`` given in memory, ``(train, val)``, to resume (``resumed``) a run trained
    in memory (``mistnet.fit``, which records its data's sizes and nothing more of it) when it
    is of other sizes: it was taken without a word, the run going on on other items.

    Raises:
        MistError: naming the split, both sizes and what to do.
    """
    if not (data and resumed and cfg.data.name == IN_MEMORY):
        return
    train, val = data
    for split, n in (("train", len(train)), ("val", 0 if val is None else len(val))):
        if n != (was := getattr(cfg.data, f"n_{split}")):
            raise MistError(
                f"the {split} data has {n} items but the run was trained on {was}; a resumed "
                "run trains on the data it started with"
            )


def require_trained_on(cfg: Config, dataset: Dataset, source: str, remedy: str) -> None:
    """Refuse the run's own dataset folder (``data.path``) once it was made again since the
    run trained on it (its manifest's digest is not ``record.data_manifest``): another seed
    can put the run's training images into its test split.

    Raises:
        MistError: naming ``source``, and ``remedy``, what to do; also a run that recorded a
            dataset folder while its ``data.path`` is empty (its config.json edited).
    """
    manifest = getattr(dataset, "manifest", None)
    recorded = cfg.record.data_manifest
    if recorded and not cfg.data.path:  # config.json edited: a generator's scenes were scored
        raise MistError(
            f"the run was trained on a dataset folder (record.data_manifest) but its "
            f"config.json names none (data.path is empty, data.name {cfg.data.name!r}); "
            f"{remedy}"
        )
    if cfg.data.path and recorded and isinstance(manifest, dict):
        if manifest_digest(manifest) != recorded:
            raise MistError(
                f"{source}: its manifest.json is not that of the dataset the run was trained "
                f"on (made again with another seed, other sizes or other options); {remedy}"
            )


def manifest_digest(manifest: dict) -> str:
    """A short digest of a dataset's ``manifest``: the same for the same dataset made again
    with the same options, another for other ones (seed, split sizes, parameters)."""
    # without the splits' digests, as before they were recorded: a run's record still names
    # the data it trained on (and a pretrained model's, the data made again by this version)
    said = {k: v for k, v in manifest.items() if k != SPLIT_DIGESTS}
    text = json_text(said, indent=None, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def content_digest(dataset: Dataset | None) -> str:
    """What ``dataset`` holds, as a digest that processes training one run compare: a dataset
    folder's split (its manifest's digest, checked as the split was read, or the arrays'),
    a generator's digit pool of the split (the scenes are a function of it, the seed and the
    parameters, which the config names); ``"none"`` for no dataset, the type's name for other
    data (in-memory items: told apart by their sizes only).

    Example:
        >>> content_digest(None)
        'none'
    """
    if dataset is None:
        return "none"
    arrays, manifest = getattr(dataset, "arrays", None), getattr(dataset, "manifest", None)
    if isinstance(arrays, dict):  # a SceneFolder (imported photos keep the options' digest)
        recorded = manifest.get(SPLIT_DIGESTS, {}) if isinstance(manifest, dict) else {}
        return str(recorded.get(dataset.split) or arrays_digest(arrays))
    pools = getattr(getattr(dataset, "generator", None), "pools", None)
    if pools is not None:  # two machines' data.digits folders of other digits
        images, labels = pools.split(dataset.split)
        return arrays_digest({"images": images, "labels": labels})
    return type(dataset).__name__


def same_files(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether the dataset folders ``a`` and ``b`` hold the same manifest and splits, byte for
    byte: a copy. (The manifest's digest names the options a dataset was made with, not its
    pixels: photos changed and imported again have the digest of the first import.)"""
    names = [MANIFEST, *(f"{split}.npz" for split in SPLITS)]
    for name in names:
        x, y = os.path.join(a, name), os.path.join(b, name)
        if os.path.lexists(x) != os.path.lexists(y):
            return False
        try:
            if os.path.lexists(x) and not filecmp.cmp(x, y, shallow=False):
                return False
        except OSError:
            return False  # refused by the caller, naming both
    return True
