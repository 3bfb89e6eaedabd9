"""Peak memory of ``mist data import-images --size`` on a few large photographs.

Usage: python benchmarks/import_memory.py [--side 3000] [--counts 3 6 12] [--src DIR]

Writes ``count`` RGB PNGs of ``side`` x ``side`` pixels (smooth gradients plus noise: small on
disk, large decoded) into a temporary folder and imports each set with ``--size 32 32`` in a
fresh process, printing that process's peak resident memory (``ru_maxrss`` from ``wait4``) and
wall time. ``--src`` runs the ``mistnet`` of another checkout's ``src/`` (``git worktree add``
an older commit to compare): the figure that matters is how the peak grows with ``count``.
Record results with the machine in RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(folder: Path, count: int, side: int) -> None:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, side, dtype=np.float32)
    for i in range(count):
        base = ramp[None, :, None] + ramp[:, None, None] * 0.2 + np.float32(i)
        noise = rng.integers(0, 8, (side, side, 1), dtype=np.uint8)
        rgb = (np.broadcast_to(base, (side, side, 3)) + noise).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{i:03d}.png", compress_level=1)


def peak_of_import(src: Path, out: Path, env: dict[str, str]) -> tuple[float, float]:
    """(peak resident MiB, wall seconds) of one ``mist data import-images`` process."""
    argv = [sys.executable, "-m", "mistnet", "data", "import-images", str(src), "--out", str(out)]
    argv += ["--size", "32", "32", "--val", "0", "--test", "0"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"import failed: {proc.stderr.read().decode().strip()}")
    return usage.ru_maxrss / 1024, wall  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=3000)
    parser.add_argument("--counts", type=int, nargs="+", default=[3, 6, 12])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
    print(f"mistnet from {args.src}; {args.side}x{args.side} RGB PNGs, --size 32 32")
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.counts:
            folder = Path(tmp) / f"src{count}"
            folder.mkdir()
            make_images(folder, count, args.side)
            mib = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
            peak, wall = peak_of_import(folder, Path(tmp) / f"out{count}", env)
            print(f"{count:3d} images ({mib:.1f} MiB on disk): peak {peak:,.0f} MiB, {wall:.1f} s")


if __name__ == "__main__":
    main()
