"""What RMSE a perfect patch auto-encoder could reach on MNIST-hard, for each box side and patch size.

Table 1's MIST reconstructs an image as the sum of K patches pasted back by S^-1, each the
decoding of a patch cut by S at a keypoint. Even with the true centres and an auto-encoder that
outputs exactly what it should, two things bound the error, and both are fixed by the model's
sizes before any learning: the patch resolution P against the box side (S then S^-1 resample the
window, so a 20 px window through a 16 px patch blurs every stroke), and the box side against the
digits (ink outside the box cannot be reconstructed). This script measures, on the test scenes of
the generator, the mean per-image RMSE (intensities in [0, 1], unclipped sum, as Table 1) of:

- ``oracle``: each digit rendered alone on the canvas, cut at its true centre by S and pasted
  back by S^-1, summed over the digits: the best any MIST auto-encoder can do at these sizes;
- ``window copy``: the whole scene cut at the true centres and pasted back (an auto-encoder that
  copies its window, neighbours' strokes included, so overlaps count twice);
- and, for scale, the zero image and each image's own mean.

    python benchmarks/recon_bound.py [--scenes 500] [--sides 20 24 28] [--patches 16 20 24 28 32]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import count, positive

from mistnet.data.scenes import build_generator, paste_digits
from mistnet.ops import extract_patches, paste_patches


def _rmse(recon: torch.Tensor, image: torch.Tensor) -> float:
    return float(((recon - image) ** 2).mean((1, 2, 3)).sqrt().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist-hard", help="scene generator name")
    parser.add_argument("--scenes", type=count, default=500, help="test scenes")
    parser.add_argument("--sides", type=positive, nargs="+", default=[20.0, 24.0, 28.0])
    parser.add_argument("--patches", type=count, nargs="+", default=[16, 20, 24, 28, 32])
    args = parser.parse_args()

    gen = build_generator(args.data)
    pool, _ = gen.pools.split("test")
    images, alone, centres = [], [], []
    for i in range(args.scenes):
        scene = gen.generate("test", i, seed=0)
        images.append(scene.image[0])
        cx = scene.boxes[:, :2].astype(np.int64)
        singles = [
            paste_digits(np.zeros_like(scene.image[0]), pool[s][None], c[None])
            for s, c in zip(scene.sources, cx, strict=True)
        ]
        alone.append(np.stack(singles))
        centres.append(scene.boxes[:, :2])
    image = torch.from_numpy(np.stack(images)[:, None]).float() / 255  # (N, 1, H, W)
    N, _, H, W = image.shape
    print(f"{args.data}: {N} test scenes, {H}x{W}")
    print(f"zero image: RMSE {_rmse(torch.zeros_like(image), image):.4f}")
    print(
        f"per-image mean: RMSE {_rmse(image.mean((2, 3), keepdim=True).expand_as(image), image):.4f}"
    )
    print("\n| box side | patch | oracle (each digit alone) | window copy (whole scene) |")
    print("|---|---|---|---|")
    for side in args.sides:
        for size in args.patches:
            oracle, copy = [], []
            for n in range(N):
                kp = torch.tensor(
                    np.concatenate([centres[n], np.full((len(centres[n]), 1), side)], 1)
                ).float()[None]
                singles = torch.from_numpy(alone[n]).float()[:, None] / 255  # (K, 1, H, W)
                K = singles.shape[0]
                own = extract_patches(singles, kp[0][:, None], size)  # (K, 1, 1, P, P)
                oracle.append(paste_patches(own.view(1, K, 1, size, size), kp, H, W))
                copy.append(paste_patches(extract_patches(image[n : n + 1], kp, size), kp, H, W))
            print(
                f"| {side:.0f} | {size} | {_rmse(torch.cat(oracle), image):.4f} | "
                f"{_rmse(torch.cat(copy), image):.4f} |"
            )


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
