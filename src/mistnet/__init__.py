"""mistnet: Multiple Instance Spatial Transformers (MIST) in PyTorch.

``mistnet.fit`` trains on datasets in memory into a run directory, ``mistnet.load`` reads a
run back (:mod:`mistnet.api`) and ``model.predict`` (:func:`mistnet.predict`) detects in image
files, Pillow images or tensors, returning a :class:`mistnet.Prediction` per image
(:mod:`mistnet.prediction`); they are imported on first use, so ``import mistnet`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["Prediction", "fit", "load", "predict"]


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def __getattr__(name: str):
    if name in ("fit", "load"):
        from mistnet import api

        return getattr(api, name)
    if name in ("Prediction", "predict"):
        from mistnet import prediction

        return getattr(prediction, name)
    raise AttributeError(f"module 'mistnet' has no attribute {name!r}")
