from pathlib import Path

import pytest
from cli_helpers import TINY

from mistnet import loop
from mistnet.config import apply_overrides, load_preset


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A 10-step tiny-cpu classifier run (best and last checkpoints), shared by the commands."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = apply_overrides(load_preset("tiny-cpu"), [*TINY, "train.steps=10", "train.val_every=10"])
    loop.train(cfg, out, device="cpu", progress=False)
    return out
