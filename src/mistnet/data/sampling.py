"""Batches for training and evaluation: which scenes make step ``t``'s batch, and the loader.

The batch of step ``t`` is a pure function of ``(seed, t)``, so a run resumed after any
interruption, SIGKILL included, draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from mistnet.data.dataset import collate_scenes
from mistnet.errors import MistError
from mistnet.machine import fits_in_memory


class StepSampler(Sampler[int]):
    """Indices for steps ``start, start + 1, ...``: epoch ``e`` is a permutation seeded by ``e``.

    The index of sample ``j`` of step ``t`` depends only on ``(seed, t, j)``, which is what
    makes resumption exact. Of ``world_size`` processes, the one of ``rank`` takes the
    ``rank``-th of ``world_size`` equal consecutive slices of every batch (``batch_size`` is the
    whole batch).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start_step: int,
        steps: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or world_size < 1 or batch_size % world_size:
            raise ValueError(
                f"StepSampler: batch_size ({batch_size}) must be a positive multiple of "
                f"world_size ({world_size})"
            )
        if n < batch_size:
            raise MistError(
                f"the training split has {n} scenes, fewer than one batch (train.batch_size = "
                f"{batch_size}); lower train.batch_size or give more training scenes"
            )
        # an epoch's order is held whole: 2**40 scenes failed as "out of memory", naming nothing
        fits_in_memory(8 * n, f"the order of an epoch's {n:,} training scenes", "data.n_train")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.steps = start_step, steps
        self.shard = batch_size // world_size
        self.offset = rank * self.shard

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.shard

    def __iter__(self) -> Iterator[int]:
        per_epoch = self.n // self.batch_size
        epoch, perm = -1, None
        for t in range(self.start, self.steps):
            e, pos = divmod(t, per_epoch)
            if e != epoch:
                epoch = e
                perm = np.random.default_rng([self.seed, e]).permutation(self.n)
            first = pos * self.batch_size + self.offset
            yield from perm[first : first + self.shard].tolist()


def loader(
    dataset: Dataset, batch_size: int, workers: int, sampler: Sampler | None = None
) -> DataLoader:
    """Scene batches of ``dataset`` (:func:`collate_scenes`): in order, or as ``sampler`` says."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_scenes,
        drop_last=sampler is not None,
        persistent_workers=False,
    )
