"""What a dataset's manifest records of each split's arrays: a digest of their content, so that
a split file swapped in from another dataset (``cp other/test.npz ds/``, or the val split copied
over the test split) is refused where it is read instead of scored as this dataset's.

The digest is of the arrays (name, dtype, shape and bytes), not of the ``.npz`` file, whose zip
entries carry the time they were written: the same scenes made again have the same digest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mistnet.errors import DataError

#: The manifest key holding ``{split: digest}``; a dataset written before it has none, and its
#: splits are read unchecked.
SPLIT_DIGESTS = "split_digests"


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """``"sha256:<hex>"`` of ``arrays`` by name, dtype, shape and content."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")  # (N, 0) boxes too
    return "sha256:" + h.hexdigest()


def check_split_digest(meta: dict, split: str, arrays: dict[str, np.ndarray], path: Path) -> None:
    """Refuse the arrays of ``split`` read from ``path`` when the manifest ``meta`` records
    another digest for it.

    Raises:
        DataError: naming the file, the manifest, or a record that is no map of text.
    """
    recorded = meta.get(SPLIT_DIGESTS)
    if recorded is None:
        return
    manifest = path.parent / "manifest.json"
    if not isinstance(recorded, dict) or not isinstance(recorded.get(split, ""), str):
        raise DataError(f"{manifest}: {SPLIT_DIGESTS} must map each split to a digest")
    if split in recorded and recorded[split] != arrays_digest(arrays):
        raise DataError(
            f"{path}: its scenes are not those {manifest.name} recorded for the {split} split "
            "(a split of another dataset copied in, or the dataset made again while this "
            "read it?); run this again, else make or import the dataset again"
        )
