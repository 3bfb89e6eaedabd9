"""mistnet: Multiple Instance Spatial Transformers (MIST) in PyTorch.

``mistnet.fit`` trains on datasets in memory into a run directory and ``mistnet.load`` reads a
run back (:mod:`mistnet.api`); they are imported on first use, so ``import mistnet`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["fit", "load"]


def __getattr__(name: str):
    if name in __all__:
        from mistnet import api

        return getattr(api, name)
    raise AttributeError(f"module 'mistnet' has no attribute {name!r}")
