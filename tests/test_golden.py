"""The demo preset's first 100 training steps give bit-identical statistics to a recording.

CPU training is deterministic at a fixed thread count, so any change to the training core that
claims to keep behaviour (a reshaping, a clean-up) must reproduce every logged float exactly.
The recording in ``tests/golden/mnist-hard-cpu-100.json`` was first made with the code of 0286302
(before the training core was reshaped, which reproduced it exactly) and remade once when the
preset took dilated heatmap blocks; regenerate it only for a change that is meant to alter
training, and say so in the commit::

    python tests/test_golden.py --write
"""

import json
import sys
from pathlib import Path

import pytest
import torch

from mistnet.config import resolve
from mistnet.runner import train

GOLDEN = Path(__file__).parent / "golden" / "mnist-hard-cpu-100.json"
STEPS = 100
# Validation is not part of the recording (it would only add time); two threads as the demo.
THREADS = 2
OVERRIDES = [
    f"train.steps={STEPS}",
    "train.log_every=1",
    "train.val_every=100000",
    "train.ckpt_every=100000",
    "data.n_val=8",
]


def record_steps(out: Path) -> list[dict]:
    threads = torch.get_num_threads()
    try:
        train(resolve("mnist-hard-cpu", OVERRIDES), out, progress=False, threads=THREADS)
    finally:
        torch.set_num_threads(threads)
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "wall"} for r in lines if r["split"] == "train"]


@pytest.mark.slow
def test_demo_preset_first_100_steps_match_the_recording(tmp_path):
    expected = json.loads(GOLDEN.read_text())
    got = record_steps(tmp_path / "run")
    assert len(got) == len(expected) == STEPS
    for want, have in zip(expected, got, strict=True):
        assert have == want, f"step {want['step']} differs: {have} != {want}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit(__doc__)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(record_steps(Path(tmp) / "run"), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
