"""The demo preset's first 100 training steps give bit-identical statistics to a recording.

CPU training is deterministic at a fixed thread count *on one kind of CPU*: the same code on
another processor (another vendor, another vector unit) takes other kernels and differs in the
last bits from the first step on. A recording therefore names the machine it was made on
(:func:`machine`), and the test compares bit for bit only on a machine of that kind; elsewhere it
skips and says how to record one. Any change to the training core that claims to keep behaviour
(a reshaping, a clean-up) must reproduce every logged float exactly where a recording applies.

Recordings live in ``tests/golden/mnist-hard-cpu-100.json``, one per machine kind (when and why
they were remade: CHANGELOG.md). Regenerate them only for a change that is meant to alter
training, and say so in the commit and the changelog::

    python tests/test_golden.py --write     # adds or replaces this machine's recording
"""

import hashlib
import json
import platform
import sys
from pathlib import Path

import pytest
import torch

from mistnet.config import resolve
from mistnet.loop import train

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


def machine() -> str:
    """What decides CPU kernels' rounding: architecture, CPU model (name, family, model number,
    stepping) and the instruction-set flags the OS reports (hashed), torch's vector unit, torch.

    The name alone was not enough: two VMs both called "AMD EPYC" with torch's AVX512 path
    differed in the heatmap loss's last bit from step 11 on.
    """
    fields: dict[str, str] = {}
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]  # the first processor
        for line in first.splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            fields[key] = value
    except OSError:
        pass
    fields.setdefault("model name", platform.processor() or "unknown")
    flags = hashlib.sha256(fields.get("flags", "").encode()).hexdigest()[:8]
    cpu = f"{fields['model name']} (family {fields.get('cpu family', '?')} model "
    cpu += f"{fields.get('model', '?')} stepping {fields.get('stepping', '?')}, flags {flags})"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{platform.machine()} | {cpu} | {capability} | torch {torch.__version__}"


def recordings() -> dict[str, list[dict]]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


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
    expected = recordings().get(machine())
    if expected is None:
        pytest.skip(
            f"no recording for this machine ({machine()}); "
            "`python tests/test_golden.py --write` makes one"
        )
    got = record_steps(tmp_path / "run")
    assert len(got) == len(expected) == STEPS
    for want, have in zip(expected, got, strict=True):
        assert have == want, f"step {want['step']} differs: {have} != {want}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit(__doc__)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        all_runs = recordings() | {machine(): record_steps(Path(tmp) / "run")}
    GOLDEN.write_text(json.dumps(all_runs, indent=1) + "\n")
    print(f"wrote {GOLDEN} for {machine()}")
