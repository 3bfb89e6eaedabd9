"""Datasets of the MIST paper (docs/design.md, Data): digit pools, scene generators, Gabor noise,
SVHN, our on-disk format and the official MIST layout.

Main entry points:

- :func:`mistnet.data.digits.load_digits` -> :class:`DigitPools` (embedded 5k digits,
  full MNIST in the data cache or IDX files)
- :data:`mistnet.data.scenes.GENERATORS`, :func:`make_scenes`; as PyTorch data:
  :class:`mistnet.data.dataset.SceneDataset`, :func:`collate_scenes`
- :func:`mistnet.data.store.write_dataset`, :class:`SceneFolder`, :func:`open_dataset`
- :func:`mistnet.data.official.export_official` / :func:`import_official`
- :func:`mistnet.data.svhn.load_svhn` (needs h5py)
- :func:`mistnet.data.runs.open_data` / :func:`check_data`: a trained run's data, and whether the
  run fits it
"""

from mistnet.data.dataset import SceneDataset, collate_scenes
from mistnet.data.digits import DigitPools, load_digits
from mistnet.data.runs import check_data, open_data
from mistnet.data.scenes import GENERATORS, Scene, SceneGenerator, build_generator, make_scenes
from mistnet.data.store import SceneFolder, load_split, open_dataset, write_dataset

__all__ = [
    "GENERATORS",
    "DigitPools",
    "Scene",
    "SceneDataset",
    "SceneFolder",
    "SceneGenerator",
    "build_generator",
    "check_data",
    "collate_scenes",
    "load_digits",
    "load_split",
    "make_scenes",
    "open_data",
    "open_dataset",
    "write_dataset",
]
