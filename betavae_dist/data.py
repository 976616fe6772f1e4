"""Training batches for the built-in dSprites, as a pure function of the global step.

Step s of a run with global batch B uses positions [s·B, (s+1)·B) of an endless sequence of
epochs, each a permutation of the dataset seeded by (seed, epoch). Micro-batch m of rank r
(of W ranks, A accumulation steps) takes the slice number m·W + r of that global batch, and
the reparameterisation noise of each sample is drawn from (seed, step) the same way.

So a run sees the same samples with the same noise whatever its number of ranks, and a resumed
run continues exactly where the checkpoint left off; no loader state needs saving.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import Config, ConfigError
from .dsprites import DSprites


class StepBatches:
    def __init__(self, dataset: DSprites, cfg: Config, world_size: int, rank: int):
        per_step = world_size * cfg.train.grad_accum
        if cfg.train.batch_size % per_step:
            raise ConfigError(
                f"train.batch_size={cfg.train.batch_size} is not divisible by "
                f"{world_size} ranks x train.grad_accum={cfg.train.grad_accum}"
            )
        self.dataset, self.seed = dataset, cfg.seed
        self.global_batch, self.micro_batch = cfg.train.batch_size, cfg.train.batch_size // per_step
        self.world_size, self.rank, self.latents = world_size, rank, cfg.model.latents
        self._epoch, self._order = -1, None

    def _slice(self, micro: int) -> slice:
        first = (micro * self.world_size + self.rank) * self.micro_batch
        return slice(first, first + self.micro_batch)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:  # one permutation is cached: epochs are visited in order
            self._epoch = epoch
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.dataset.num_images)
        return self._order

    def indices(self, step: int, micro: int) -> np.ndarray:
        positions = step * self.global_batch + np.arange(self.global_batch)[self._slice(micro)]
        epochs, within = np.divmod(positions, self.dataset.num_images)
        out = np.empty_like(positions)
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            out[sel] = self._epoch_order(int(epoch))[within[sel]]
        return out

    def batch(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images uint8 (b, C, 64, 64), noise float32 (b, latents)) for this rank."""
        images = torch.from_numpy(self.dataset.images_at(self.indices(step, micro)))
        noise_rng = np.random.default_rng([self.seed, step, 1])
        noise = noise_rng.standard_normal((self.global_batch, self.latents), dtype=np.float32)
        return images, torch.from_numpy(noise[self._slice(micro)])


class DataError(RuntimeError):
    """Training data that cannot be read; the message names the file."""


def build_dataset(cfg: Config) -> DSprites:
    try:
        return DSprites(cfg.data.dsprites_npz or None)
    except (OSError, ValueError) as e:
        raise DataError(str(e)) from None
