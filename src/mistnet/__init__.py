"""mistnet: Multiple Instance Spatial Transformers (MIST) in PyTorch."""

__version__ = "0.1.0"
