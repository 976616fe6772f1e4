"""Training batches for the built-in dSprites, as a pure function of the global step.

(`build_batches` picks this or the WebDataset stream of stream.py from `data.source`; both yield
micro-batches of images in [0, 1] with a count of skipped samples, from any start step.)

Step s of a run with global batch B uses positions [s·B, (s+1)·B) of an endless sequence of
epochs, each a permutation of the dataset seeded by (seed, epoch). Micro-batch m of rank r
(of W ranks, A accumulation steps) takes the slice number m·W + r of that global batch, and
the reparameterisation noise of each sample is drawn from (seed, step) the same way.

So a run sees the same samples with the same noise whatever its number of ranks, and a resumed
run continues exactly where the checkpoint left off; no loader state needs saving.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
import torch

from .config import Config, ConfigError
from .dsprites import DSprites


class StepBatches:
    def __init__(self, dataset: DSprites, cfg: Config, world_size: int, rank: int):
        self.dataset, self.seed = dataset, cfg.seed
        self.global_batch, self.micro_batch = cfg.train.batch_size, micro_batch_size(cfg, world_size)
        self.world_size, self.rank, self.grad_accum = world_size, rank, cfg.train.grad_accum
        self._epoch, self._order = -1, None

    def _slice(self, micro: int) -> slice:
        return micro_slice(micro, self.world_size, self.rank, self.micro_batch)

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

    def images(self, step: int, micro: int) -> torch.Tensor:
        """This rank's images of one micro-batch: float (b, C, 64, 64) in [0, 1]."""
        return torch.from_numpy(self.dataset.images_at(self.indices(step, micro))).float()

    def micro_batches(self, start_step: int) -> Iterator[tuple[torch.Tensor, int]]:
        for step in itertools.count(start_step):
            for micro in range(self.grad_accum):
                yield self.images(step, micro), 0


def micro_batch_size(cfg: Config, world_size: int) -> int:
    """Samples per rank per micro-batch: the global batch split over ranks and accumulation steps."""
    per_step = world_size * cfg.train.grad_accum
    if cfg.train.batch_size % per_step:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not divisible by {world_size} ranks "
                          f"x train.grad_accum={cfg.train.grad_accum}")
    return cfg.train.batch_size // per_step


def micro_slice(micro: int, world_size: int, rank: int, micro_batch: int) -> slice:
    """Rows of the global batch that micro-batch `micro` of `rank` holds."""
    first = (micro * world_size + rank) * micro_batch
    return slice(first, first + micro_batch)


def step_noise(cfg: Config, step: int) -> torch.Tensor:
    """Reparameterisation noise of the whole global batch of `step`, from (seed, step); micro-batch
    m of rank r uses rows `micro_slice(m, ...)`."""
    rng = np.random.default_rng([cfg.seed, step, 1])
    return torch.from_numpy(rng.standard_normal((cfg.train.batch_size, cfg.model.latents), dtype=np.float32))


class DataError(RuntimeError):
    """Training data that cannot be read; the message names the file."""


def build_dataset(cfg: Config) -> DSprites:
    """The factor dataset: training data of `data.source: dsprites`, and what the metrics use."""
    try:
        return DSprites(cfg.data.dsprites_npz or None)
    except (OSError, ValueError) as e:
        raise DataError(str(e)) from None


def build_batches(cfg: Config, world_size: int, rank: int):
    """The training micro-batch source named by `data.source`."""
    if cfg.data.source == "webdataset":
        from .stream import ShardStream

        return ShardStream(cfg, world_size, rank)
    return StepBatches(build_dataset(cfg), cfg, world_size, rank)
