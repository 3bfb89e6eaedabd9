"""Small helpers shared by test modules (tests/ is on pytest's pythonpath)."""

import torch


def n_params(module: torch.nn.Module) -> int:
    """The number of scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
