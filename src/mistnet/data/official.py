"""The official MIST code's dataset layout (``ubc-vision/mist`` ``datasets/mnist.py``).

For each mode in ``train``, ``valid``, ``test`` the root holds:

- ``<mode>.txt``: one image path per line, relative to the root;
- ``<mode>_labels.txt``: one line per image, K comma-separated integer labels;
- ``<mode>_keypoints.npy``: float ``(N, K, 3)`` of ``(x, y, r)`` with ``r`` the *half* box side;
- the images: 3-channel PNGs (we write ``images/<mode>/<i>.png``).

Export needs square boxes, the same count K >= 1 in every image and uint8 images (the official
loader reads 8-bit images and assumes K labels per row; its ``np.genfromtxt`` skips a blank row,
so an image without instances has no row, and the model takes K >= 1 patches). Import accepts
any subset of the modes; grey images (all three channels equal) become one channel, 16-bit grey
PNGs are scaled to 8 bits; a mode's labels or keypoints without its list, an image listed twice
(in one list or two) and a keypoint centred outside its image are refused.
Import reads only regular files inside the root: a list naming an absolute path, a ``..`` path
or a symlink out of the root is refused (:mod:`mistnet.validate`), and so is an image whose
header declares more than ``max_pixels`` pixels.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mistnet.data.imagefiles import read_image, to_channels
from mistnet.data.importoptions import import_paths
from mistnet.data.manifest import read_manifest
from mistnet.data.store import claim_dataset, folder_name, load_split, write_dataset
from mistnet.errors import DataError, MistWarning
from mistnet.imagefile import DEFAULT_MAX_PIXELS
from mistnet.machine import shown_value
from mistnet.outputs import claim_output, new_directory
from mistnet.textfile import read_text
from mistnet.validate import (
    NUMPY_READ_ERRORS,
    flag,
    inside,
    regular_file,
    require_directory,
    require_finite,
    require_float32,
    require_numpy_file,
    too_large_array,
)

OFFICIAL_MODES: dict[str, str] = {"train": "train", "val": "valid", "test": "test"}


def export_official(
    directory: str | os.PathLike, out: str | os.PathLike, progress: bool = True
) -> Path:
    """Convert a dataset in our format to the official layout (atomically).

    Args:
        directory: dataset directory in our format.
        out: new directory for the official layout; returned.

    Raises:
        TypeError: ``directory`` or ``out`` no path, ``progress`` no bool.
        ArgumentError: an empty ``directory`` or ``out``, or one holding a NUL character.
        DataError: float images, boxes that are not square (``w`` and ``h`` equal within
            ``numpy.allclose``'s tolerance, 1e-5 relative: the side written is ``w``), a
            variable count per image, images without instances, or a dataset without boxes or
            labels.
    """
    import_paths(directory=directory, out=out)  # "" exported the working directory
    flag(progress, "progress")
    src = Path(directory)
    meta = read_manifest(src)
    lacking = {"boxes", "labels"} - set(meta.get("annotations", ["boxes", "labels"]))
    if lacking:
        raise DataError(
            f"{src}: the official layout needs boxes and labels; this dataset has no "
            + " and no ".join(sorted(lacking))
        )
    splits = [s for s in OFFICIAL_MODES if s in meta.get("splits", {})]
    if not splits:
        raise DataError(f"{src / 'manifest.json'}: dataset has no splits")
    loaded = {s: load_split(src, s)[0] for s in splits}
    for split, a in loaded.items():
        where = src / f"{split}.npz"
        if a["images"].dtype != np.uint8:
            raise DataError(f"{where}: the official layout holds 8-bit PNGs; images are float")
        if a["counts"].size and (a["counts"] != a["counts"][0]).any():
            raise DataError(f"{where}: the official layout needs the same count in every image")
        n = int(a["counts"][0]) if a["counts"].size else 0
        if a["counts"].size and n == 0:  # a blank labels row: skipped by the official loader
            raise DataError(
                f"{where}: the official layout needs at least one instance in every image (K "
                "labels a row); these images have none"
            )
        if not np.allclose(a["boxes"][:, :n, 2], a["boxes"][:, :n, 3]):
            raise DataError(f"{where}: the official layout needs square boxes (w == h)")
    inputs = [("the dataset", src)]
    if claim_output(
        out, "official", "mist data export-official", None, inputs, option="OUT", again=False
    ):
        raise DataError(f"{out}: already exists (remove it or choose another output)")
    with new_directory(out, "official") as tmp:
        for split, a in loaded.items():
            mode = OFFICIAL_MODES[split]
            n_img = a["images"].shape[0]
            k = int(a["counts"][0]) if n_img else 0
            (tmp / "images" / mode).mkdir(parents=True)
            rel = [f"images/{mode}/{i:06d}.png" for i in range(n_img)]
            for i in tqdm(
                range(n_img), desc=f"export {mode}", disable=not progress or n_img < 2000
            ):
                img = a["images"][i]  # (C, H, W)
                rgb = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
                Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0))).save(tmp / rel[i])
            (tmp / f"{mode}.txt").write_text("".join(r + "\n" for r in rel))
            labels = a["labels"][:, :k]
            (tmp / f"{mode}_labels.txt").write_text(
                "".join(",".join(str(int(v)) for v in row) + "\n" for row in labels)
            )
            boxes = a["boxes"][:, :k].astype(np.float64)
            kp = np.concatenate([boxes[..., :2], boxes[..., 2:3] / 2.0], axis=-1)  # (N, K, 3)
            np.save(tmp / f"{mode}_keypoints.npy", kp)
    if names := meta.get("classes"):  # dropped without a word: a run on the import refused
        warnings.warn(  # the original dataset ("names the classes ...")
            f"{out}: the official layout holds class ids only; the names "
            f"{', '.join(map(str, names))} are not kept (import-images --labels keeps names)",
            MistWarning,
            2,
        )
    return Path(out)


def read_official(
    root: str | os.PathLike, progress: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, dict[str, np.ndarray]]:
    """Read whichever modes of an official-layout directory exist.

    Args:
        root: the layout's root directory.
        max_pixels: refuse an image of more pixels (checked from its header).

    Returns:
        ``{split: arrays}`` (split names ``train``/``val``/``test``) in the format of
        :func:`mistnet.data.manifest.validate_arrays`.

    Raises:
        DataError: naming the file for missing/inconsistent lists, keypoints or images, a path
            that leaves ``root``, a file that is not a regular file, or a too large image.
        TypeError, ArgumentError: ``root`` no path or an empty one, ``progress`` no bool.
    """
    import_paths(root=root)
    flag(progress, "progress")
    root = Path(root)
    modes = _modes(root)
    out: dict[str, dict[str, np.ndarray]] = {}
    listed: dict[Path, str] = {}  # each image (resolved) -> where it was listed first
    sizes: dict[tuple[int, ...], Path] = {}  # each split's (H, W) -> its first image
    for split, mode in modes.items():
        # The layout's own files are held inside the root too (a symlink out is refused).
        list_path, lab_path, kp_path = (
            inside(root, f"{mode}{end}", root) for end in (".txt", "_labels.txt", "_keypoints.npy")
        )
        names = [ln.strip() for ln in read_text(list_path).split("\n") if ln.strip()]
        paths = [inside(root, name, list_path) for name in names]
        _list_once(listed, names, paths, list_path)
        for p in (lab_path, kp_path):
            if not p.exists():
                raise DataError(f"{p}: missing (needed with {list_path.name})")
        rows = _read_labels(lab_path)
        kp = _read_keypoints(regular_file(kp_path))
        n = len(names)
        if len(rows) != n:
            raise DataError(
                f"{lab_path}: {len(rows)} label rows for {n} images in {list_path.name}"
            )
        if kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 3:
            raise DataError(f"{kp_path}: expected ({n}, K, 3) keypoints, got {kp.shape}")
        K = kp.shape[1]
        if any(len(r) != K for r in rows):
            raise DataError(f"{lab_path}: every row must hold {K} labels (keypoints have K={K})")
        if (kp[..., 2] <= 0).any():
            raise DataError(f"{kp_path}: every radius (the third value) must be > 0")
        images = _read_images(paths, mode, sizes, progress and n >= 2000, max_pixels)
        _check_centres(kp, images.shape[2:], kp_path, names)
        kp = kp.astype(np.float32)
        if (kp[..., 2] <= 0).any():  # a radius of 1e-50: 0 as float32, a box of side 0
            raise DataError(f"{kp_path}: a radius too small for a float32 number (it becomes 0)")
        boxes = np.concatenate([kp[..., :2], 2 * kp[..., 2:3], 2 * kp[..., 2:3]], axis=-1)
        out[split] = {
            "images": images,
            "boxes": np.ascontiguousarray(boxes, dtype=np.float32),
            "labels": np.asarray(rows, dtype=np.int64).reshape(n, K),
            "counts": np.full(n, K, dtype=np.int64),
        }
    full = next((a for a in out.values() if len(a["images"])), None)
    for a in out.values():  # an empty split has the others' image size (it was said 80 x 80)
        if full is not None and not len(a["images"]):  # and K (its (0, 3, 3) made max_count 3)
            a.update({key: full[key][:0] for key in ("images", "boxes", "labels", "counts")})
    grey = all(
        (a["images"][:, 0] == a["images"][:, 1]).all()
        and (a["images"][:, 0] == a["images"][:, 2]).all()
        for a in out.values()
    )
    if grey:
        for a in out.values():
            a["images"] = np.ascontiguousarray(a["images"][:, :1])
    return out


def _read_images(
    paths: list[Path], mode: str, sizes: dict, progress: bool, max_pixels: int
) -> np.ndarray:
    """``(N, 3, H, W)`` uint8 of a mode's images, read as ``import-images`` reads them (16-bit
    and float scaled, transparency over black), all of one size and of the size of the
    splits read before (``sizes``: each ``(H, W)`` -> its split's first image)."""
    images = None
    for i, p in enumerate(tqdm(paths, desc=f"import {mode}", disable=not progress)):
        arr = to_channels(read_image(p, max_pixels), 3)
        if images is None:
            images = np.zeros((len(paths), 3, *arr.shape[:2]), dtype=np.uint8)
        elif arr.shape[:2] != images.shape[2:]:
            raise DataError(f"{p}: size {arr.shape[:2]} differs from {images.shape[2:]}")
        images[i] = arr.transpose(2, 0, 1)
    if images is None:
        return np.zeros((0, 3, 80, 80), dtype=np.uint8)
    if sizes and images.shape[2:] not in sizes:
        first = next(iter(sizes.items()))
        raise DataError(  # else written out, then refused naming the output
            f"{paths[0]}: size {images.shape[2:]} differs from {first[0]} of {first[1]} "
            "(every split of a dataset has one image size)"
        )
    sizes.setdefault(images.shape[2:], paths[0])
    return images


def _list_once(listed: dict[Path, str], names: list[str], paths: list[Path], where: Path) -> None:
    """Add the images of the list ``where`` to ``listed`` (resolved path -> first entry),
    refusing one listed before: twice in a split, or in two splits (a leak between them)."""
    for i, (name, p) in enumerate(zip(names, paths, strict=True)):
        entry = f"{where.name} entry {i + 1}"
        first = listed.setdefault(p.resolve(), entry)
        if first != entry:
            raise DataError(
                f"{where}: entry {i + 1} {name!r} is the image of {first}; list it once"
            )


def _check_centres(kp: np.ndarray, size: tuple[int, ...], where: Path, names: list[str]) -> None:
    """Refuse a keypoint ``(N, K, 3)`` whose centre lies outside its ``(H, W)`` image (which
    spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``, pixel centres on integers)."""
    H, W = size
    x, y = kp[..., 0], kp[..., 1]
    out = (x < -0.5) | (x > W - 0.5) | (y < -0.5) | (y > H - 0.5)
    if out.any():
        i, k = (int(v) for v in np.argwhere(out)[0])
        raise DataError(
            f"{where}: keypoint {k} of image {i} ({names[i]}) is centred at "
            f"({x[i, k]:g}, {y[i, k]:g}), outside its {W}x{H} image"
        )


def _modes(root: Path) -> dict[str, str]:
    """``{split: mode}`` of the modes whose list (``train.txt``, ...) the layout holds.

    Raises:
        DataError: ``root`` is no directory, holds no list (no official layout), or holds a
            mode's labels or keypoints without its list (the mode would be dropped silently).
    """
    require_directory(root, "folder in the official layout")  # a file: "no such directory"
    modes = {s: m for s, m in OFFICIAL_MODES.items() if (root / f"{m}.txt").exists()}
    if not modes:
        raise DataError(f"{root}: no train.txt, valid.txt or test.txt (not an official layout)")
    for mode in OFFICIAL_MODES.values():
        orphans = [f"{mode}{end}" for end in ("_labels.txt", "_keypoints.npy")]
        found = [name for name in orphans if os.path.lexists(root / name)]
        if mode not in modes.values() and found:
            raise DataError(
                f"{root / (mode + '.txt')}: missing, but the layout holds {found[0]}; restore "
                f"the list or remove the {mode} files"
            )
    return modes


def _read_labels(path: Path) -> list[list[int]]:
    """The rows of a ``<mode>_labels.txt``: comma-separated class ids in [0, 2**63) (the
    layout names no class count: whether they fit a model's classes is a run's check)."""
    rows = []
    for n, line in enumerate(read_text(path).split("\n"), 1):  # not at U+2028
        row = [_class_id(v.strip(), f"{path} line {n}") for v in line.split(",") if v.strip()]
        if line.strip():
            rows.append(row)
    return rows


def _class_id(text: str, where: str) -> int:
    """One label of ``digits 0-9`` in [0, 2**63), read once."""
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):  # int() took '１' and '1_0' (as 1 and 10)
        raise DataError(
            f"{where}: labels must be comma-separated integers of digits 0-9, got {text!r}"
        )
    # more than 19 digits is past int64 (and 5,000 past what int() converts)
    value = int(text) if len(text) <= 19 else -1
    if not 0 <= value < 2**63:
        raise DataError(f"{where}: label {shown_value(text)} is not a class id (in [0, 2**63))")
    return value


def _read_keypoints(path: Path) -> np.ndarray:
    """A ``<mode>_keypoints.npy``: finite numbers, never unpickled."""
    require_numpy_file(path, "keypoints file", archive=False)  # text: "pickled ... pickle.load()"
    try:
        kp = np.load(path, allow_pickle=False)
    except MemoryError as exc:
        raise too_large_array(path, exc) from None
    except NUMPY_READ_ERRORS as exc:
        raise DataError(f"{path}: corrupt keypoints file ({exc})") from None
    if not isinstance(kp, np.ndarray) or kp.dtype.kind not in "fiu":
        kind = getattr(kp, "dtype", type(kp).__name__)
        raise DataError(f"{path}: keypoints must be numbers, got {kind}")
    require_finite(kp, f"{path}: keypoints")
    require_float32(2 * kp.astype(np.float64), f"{path}: keypoints (the box side is 2r)")
    return kp


def import_official(
    root: str | os.PathLike,
    out: str | os.PathLike,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Path:
    """Convert an official-layout directory into our format (atomically).

    Raises:
        TypeError: ``root`` or ``out`` is no path.
        ArgumentError: an empty ``root`` or ``out``, or one holding a NUL character.
        DataError: see :func:`read_official`; ``out`` is taken or lies inside ``root``.
    """
    import_paths(root=root, out=out)
    flag(progress, "progress")
    _modes(Path(root))  # a layout, then an out outside it, before any image is read
    claim_dataset(out, inputs=[("the official layout", root)], option="OUT")
    splits = read_official(root, progress, max_pixels)
    return write_dataset(
        out,
        folder_name(Path(root).resolve(), "official"),
        splits,
        manifest={"generator": "official-import", "source": str(Path(root).resolve())},
        overwrite_option="",  # import-official has no option that replaces a dataset
    )
