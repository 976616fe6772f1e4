"""Representation functions and the distributed, deduplicated computation of codes.

A representation function maps (n, num_factors) factor vectors to (n, d) codes. `CodeTable`
wraps one for the metrics: it encodes each distinct factor vector once (dSprites is a finite
grid, so the ~1.9 million images of the β-VAE metric hold far fewer distinct ones) and keeps its
code for the metrics that follow (FactorVAE's images are then nearly all known), in fixed chunks
of `batch_size` that are dealt round-robin to the ranks and gathered back in order. Codes too wide
to keep for the whole grid (raw pixels: 4,096 floats for each of dSprites' 737,280 images, 12 GB)
are encoded per request instead, and `point_codes` has metrics encode a chunk of points at a time.
A chunk's contents and shape never depend on the number of ranks, so neither do the codes, and
every rank runs the same number of forward passes (which a ZeRO-3 sharded model needs).
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..data.dataset import grid_factors, grid_index

if TYPE_CHECKING:
    import torch

Represent = Callable[[np.ndarray], np.ndarray]

KEEP_BYTES = 2 << 30  # the most a CodeTable keeps: a 10-latent model's codes for dSprites take 30 MB
POINT_CODES = 1 << 16  # the most codes a metric holds at once (raw pixels: 1 GB)


REPRESENTATIONS = ("mean", "sampled")  # disentanglement_lib's postprocessing/methods.py


def model_representation(model: torch.nn.Module, dataset, device: torch.device | str, representation: str = "mean",
                         seed: int = 0) -> Represent:
    """Factor vectors -> the codes of their images: the encoder's mean (the metrics' protocol), or
    (`sampled`) a draw of q(z|x), mean + exp(logvar / 2) · ε, with ε a function of (seed, the
    image's grid index) alone, so that an image has one sampled code on any number of ranks."""
    import torch  # here, not at import: the metrics' settings are imported with the config

    @torch.no_grad()
    def represent(factors: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(dataset.images(factors)).to(device)
        mean, logvar = model.encode(x.contiguous(memory_format=model.memory_format))
        if representation == "sampled":
            eps = image_noise(grid_index(factors, dataset.factor_sizes), mean.shape[1], seed)
            mean = mean.float() + torch.exp(0.5 * logvar.float()) * torch.from_numpy(eps).to(mean.device)
        return mean.float().cpu().numpy()

    return represent


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def image_noise(flat: np.ndarray, width: int, seed: int) -> np.ndarray:
    """(n, width) standard normal float32 draws, a function of (seed, each image's flat index) alone:
    a counter-based generator (splitmix64 of the counter, two uniforms, Box-Muller)."""
    counters = np.asarray(flat, np.uint64)[:, None] * np.uint64(2 * width) + np.arange(2 * width, dtype=np.uint64)
    bits = _splitmix64(counters ^ _splitmix64(np.uint64(seed)))
    uniform = (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    u1, u2 = 1.0 - uniform[:, :width], uniform[:, width:]  # u1 in (0, 1]
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)).astype(np.float32)


class Streams:
    """A metric's random streams: each a function of (eval.seed, the metric's name, part, index)
    only, so a metric's points do not depend on how the work is split across ranks, nor on which
    other metrics run."""

    def __init__(self, seed: int, name: str):
        self.seed, self.name = seed, name

    def __call__(self, index: int = 0, part: str = "") -> np.random.Generator:
        key = f"{self.name}/{part}" if part else self.name
        return np.random.default_rng([self.seed, int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"), index])


class CodeTable:
    def __init__(self, represent: Represent, factor_sizes, accelerator=None, batch_size: int = 64,
                 on_requested: Callable[[int], None] = lambda n: None, on_encoded: Callable[[int], None] = lambda n: None,
                 keep_bytes: int = KEEP_BYTES):
        """`on_requested(n)` is told of each request of n new images, `on_encoded(n)` of each round of
        n images encoded (by all ranks together). `seconds` adds up the time spent rendering,
        encoding and gathering."""
        self.represent, self.batch_size, self.accelerator = represent, batch_size, accelerator
        self.on_requested, self.on_encoded, self.keep_bytes = on_requested, on_encoded, keep_bytes
        self.sizes = tuple(factor_sizes)
        self._codes, self._known = None, np.zeros(math.prod(factor_sizes), bool)
        self.seconds = 0.0

    def columns(self, columns: slice) -> Represent:
        """The representation made of some columns of the codes (one model of a pack)."""
        return lambda factors: self(factors)[:, columns]

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        flat = grid_index(factors, self.sizes)
        if self._codes is None:  # the first call, or codes too wide to keep
            unique, inverse = np.unique(flat, return_inverse=True)
            codes = self._encode(unique)
            if codes.shape[1] * codes.itemsize * len(self._known) <= self.keep_bytes:
                self._codes = np.empty((len(self._known), codes.shape[1]), codes.dtype)
                self._codes[unique], self._known[unique] = codes, True
            return codes[inverse.ravel()]
        missing = np.unique(flat[~self._known[flat]])  # the same on every rank: calls come in the same order
        if len(missing):
            self._codes[missing], self._known[missing] = self._encode(missing), True
        return self._codes[flat]

    def _encode(self, flat: np.ndarray) -> np.ndarray:
        import torch  # here, not at import: the metrics' settings are imported with the config

        start = time.perf_counter()
        self.on_requested(len(flat))
        world = self.accelerator.num_processes if self.accelerator else 1
        rank = self.accelerator.process_index if self.accelerator else 0
        chunks = math.ceil(len(flat) / self.batch_size)
        rounds = math.ceil(chunks / world)
        mine = []
        for k in range(rounds):
            j = k * world + rank
            chunk = flat[j * self.batch_size : (j + 1) * self.batch_size] if j < chunks else flat[:1]
            chunk = np.pad(chunk, (0, self.batch_size - len(chunk)), mode="edge")  # fixed shape
            factors = grid_factors(chunk, self.sizes)
            mine.append(torch.from_numpy(np.ascontiguousarray(self.represent(factors), np.float32)))
            self.on_encoded(min(self.batch_size * world, len(flat) - k * world * self.batch_size))
        codes = torch.stack(mine)  # (rounds, batch, d)
        if world > 1:
            gathered = self.accelerator.gather(codes.to(self.accelerator.device)).cpu()
            codes = gathered.view(world, rounds, *codes.shape[1:]).transpose(0, 1)  # chunk j = k*world + r
        self.seconds += time.perf_counter() - start
        return codes.reshape(-1, codes.shape[-1])[: len(flat)].numpy()


def point_codes(represent: Represent, factors: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`reduce` of the codes of each point's images: factors (n, *images, F) -> codes (c, *images, d)
    for c points at a time (at most POINT_CODES codes), so that wide codes fit in memory."""
    per_point = math.prod(factors.shape[1:-1])
    step = max(1, POINT_CODES // per_point)
    reduced = []
    for start in range(0, len(factors), step):
        chunk = factors[start:start + step]
        reduced.append(reduce(represent(chunk.reshape(-1, chunk.shape[-1])).reshape(*chunk.shape[:-1], -1)))
    return np.concatenate(reduced)


FACTOR_SETS = ("all", "no_shape")


def factor_set(dataset, name: str) -> list[int]:
    """Indices of the factors a metric uses: `all` = every factor that varies and is not a nuisance
    (dSprites: all but colour; SmallNORB: all but instance), `no_shape` = those without shape."""
    varying = [i for i, size in enumerate(dataset.factor_sizes)
               if size > 1 and dataset.factor_names[i] not in dataset.nuisance]
    if name == "all":
        return varying
    if name == "no_shape":
        return [i for i in varying if dataset.factor_names[i] != "shape"]
    raise ValueError(f"unknown factor set {name!r}; choose from {', '.join(FACTOR_SETS)}")
