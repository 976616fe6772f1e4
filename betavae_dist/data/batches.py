"""Training batches from a factor dataset, as a pure function of the global step.

(`build_batches` in data/__init__.py picks this or the WebDataset stream of stream.py from
`data.source`; both yield micro-batches of images in [0, 1] with a count of skipped samples, from
any start step.)

Step s of a run with global batch B uses positions [s·B, (s+1)·B) of an endless sequence of
epochs, each a permutation of the dataset seeded by (seed, epoch). Micro-batch m of rank r
(of W ranks, A accumulation steps) takes the slice number m·W + r of that global batch, and
the reparameterisation noise of each sample is drawn from (seed, step) the same way.

So a run sees the same samples with the same noise whatever its number of ranks, and a resumed
run continues exactly where the checkpoint left off; no loader state needs saving.

On a GPU, `DeviceBatches` serves the same sequence from the device: the whole set is uploaded once
as raw uint8 (737,280 x 4 KiB = 2.8 GiB for dSprites) and gathered there by index, so a step copies
nothing from the host. `NoiseWindow` draws the noise of many steps at once and uploads it in one
copy. Host data (the WebDataset stream) goes through `to_device`: pinned, non-blocking, one batch
ahead.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from ..registry import ConfigError
from .dataset import FactorDataset, to_unit

if TYPE_CHECKING:
    from ..train_config import TrainConfig


@dataclass(frozen=True)
class Batching:
    """How each step's global batch of `batch_size` splits over `world` ranks and `grad_accum`
    micro-batches, as this `rank` holds it; computed once per run (plan.py) and handed to the data,
    the step and DeepSpeed's config."""

    batch_size: int
    grad_accum: int
    world: int = 1
    rank: int = 0
    micro: int = field(init=False)  # samples per rank per micro-batch
    rows: tuple[slice, ...] = field(init=False)  # rows of the global batch each micro-batch of this rank holds

    def __post_init__(self):
        per_step = self.world * self.grad_accum
        if self.batch_size % per_step:
            raise ConfigError(f"train.batch_size={self.batch_size} is not divisible by {self.world} ranks "
                              f"x train.grad_accum={self.grad_accum}")
        micro = self.batch_size // per_step
        object.__setattr__(self, "micro", micro)
        object.__setattr__(self, "rows", tuple(slice((m * self.world + self.rank) * micro,
                                                     (m * self.world + self.rank + 1) * micro)
                                               for m in range(self.grad_accum)))

    @classmethod
    def of(cls, train: TrainConfig, world: int = 1, rank: int = 0) -> Batching:
        return cls(train.batch_size, train.grad_accum, world, rank)


class StepBatches:
    def __init__(self, dataset: FactorDataset, seed: int, batching: Batching):
        self.dataset, self.seed, self.batching = dataset, seed, batching
        self._epoch, self._order = -1, None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:  # one permutation is cached: epochs are visited in order
            self._epoch = epoch
            self._order = epoch_permutation(self.seed, epoch, self.dataset.num_images)
        return self._order

    def indices(self, step: int, micro: int) -> np.ndarray:
        batch = self.batching.batch_size
        positions = step * batch + np.arange(batch)[self.batching.rows[micro]]
        epochs, within = np.divmod(positions, self.dataset.num_images)
        out = np.empty_like(positions)
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            out[sel] = self._epoch_order(int(epoch))[within[sel]]
        return out

    def images(self, step: int, micro: int) -> torch.Tensor:
        """This rank's images of one micro-batch: float (b, C, 64, 64) in [0, 1]."""
        return to_unit(torch.from_numpy(self.dataset.raw_images_at(self.indices(step, micro))), self.dataset.pixel_max)

    def micro_batches(self, start_step: int) -> Iterator[tuple[torch.Tensor, int]]:
        for step in itertools.count(start_step):
            for micro in range(self.batching.grad_accum):
                yield self.images(step, micro), 0


class DeviceBatches(StepBatches):
    """StepBatches' sequence, with the dataset held on `device` as uint8 and gathered there.

    The permutations of the current and the next epoch live on the device (a micro-batch can
    straddle an epoch boundary), uploaded once per epoch; a micro-batch is a contiguous slice of
    them, so each step costs one gather and one conversion, and no host work or copy.
    """

    def __init__(self, dataset: FactorDataset, seed: int, batching: Batching, device: torch.device,
                 pixels: torch.Tensor | None = None):
        """`pixels`: the dataset already on the device (`device_pixels`), e.g. shared by the points of a pack."""
        super().__init__(dataset, seed, batching)
        self.device, self._orders_epoch, self._orders = device, -1, None
        self.pixels = device_pixels(dataset, device) if pixels is None else pixels

    def _device_orders(self, epoch: int) -> torch.Tensor:
        if epoch != self._orders_epoch:
            n = self.dataset.num_images
            both = np.concatenate([epoch_permutation(self.seed, epoch, n), epoch_permutation(self.seed, epoch + 1, n)])
            self._orders_epoch, self._orders = epoch, upload(torch.from_numpy(both), self.device)
        return self._orders

    def indices(self, step: int, micro: int) -> torch.Tensor:
        first = step * self.batching.batch_size + self.batching.rows[micro].start
        epoch, within = divmod(first, self.dataset.num_images)
        return self._device_orders(epoch)[within:within + self.batching.micro]

    def images(self, step: int, micro: int) -> torch.Tensor:
        return to_unit(self.pixels[self.indices(step, micro)], self.dataset.pixel_max)


UPLOAD_CHUNK = 65_536  # images rendered and uploaded at a time: 256 MiB of host memory


def device_pixels(dataset: FactorDataset, device: torch.device) -> torch.Tensor:
    """Every raw image of `dataset` as one uint8 tensor on `device`, rendered and uploaded in chunks."""
    n = dataset.num_images
    first = dataset.raw_images_at(np.arange(min(n, UPLOAD_CHUNK)))
    pixels = torch.empty((n, *first.shape[1:]), dtype=torch.uint8, device=device)
    for start in range(0, n, UPLOAD_CHUNK):
        chunk = first if start == 0 else dataset.raw_images_at(np.arange(start, min(n, start + UPLOAD_CHUNK)))
        pixels[start:start + len(chunk)].copy_(torch.from_numpy(chunk))
    return pixels


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the n images."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def upload(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy host data to `device` without making the host wait for the GPU (pinned, non-blocking).
    The pinned staging buffer comes from torch's caching host allocator, which keeps it until the
    copy is done."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def to_device(micro_batches: Iterator[tuple[torch.Tensor, int]], device: torch.device):
    """Host micro-batches on `device`, each copy issued one batch ahead so it overlaps the step."""
    ahead = None
    for images, skipped in micro_batches:
        current, ahead = ahead, (upload(images, device), skipped)
        if current is not None:
            yield current
    if ahead is not None:
        yield ahead


def step_noise(seed: int, step: int, batch_size: int, latents: int, width: int | None = None) -> torch.Tensor:
    """Reparameterisation noise of the whole global batch of `step`, from (seed, step); micro-batch
    m of rank r uses rows `Batching.rows[m]`. `width` > latents: the objective's own random columns
    after them (Objective.noise_width), drawn next, so the first columns do not change."""
    rng = np.random.default_rng([seed, step, 1])
    columns = [rng.standard_normal((batch_size, latents), dtype=np.float32)]
    if width and width > latents:
        columns.append(rng.standard_normal((batch_size, width - latents), dtype=np.float32))
    return torch.from_numpy(np.concatenate(columns, 1))


class NoiseWindow:
    """`step_noise` of a window of steps, drawn on the host and uploaded to `device` in one copy."""

    BYTES = 4 << 20  # a window holds about this much noise (at least one step)

    def __init__(self, seed: int, batch_size: int, latents: int, device: torch.device, last_step: int,
                 width: int | None = None):
        self.seed, self.batch_size, self.latents, self.device, self.last_step = seed, batch_size, latents, device, last_step
        self.width = width or latents
        self.steps = max(1, self.BYTES // (batch_size * self.width * 4))
        self._first, self._window = None, None

    def __call__(self, step: int) -> torch.Tensor:
        if self._first is None or not self._first <= step < self._first + len(self._window):
            steps = range(step, max(step + 1, min(step + self.steps, self.last_step)))
            self._first = step
            noise = [step_noise(self.seed, s, self.batch_size, self.latents, self.width) for s in steps]
            self._window = upload(torch.stack(noise), self.device)
        return self._window[step - self._first]
