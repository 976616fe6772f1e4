"""Training batches streamed from WebDataset tar shards (`data.source: webdataset`).

Each epoch, the shard list is shuffled with the same (seed, epoch) on every rank. The manifest's
sample counts make that order one sequence of N samples; rank r takes the contiguous range
[r·R, (r+1)·R) with R = K·b (K batches of b samples, K = N // (ranks·b), rounded down to whole
optimiser steps), and each DataLoader worker takes a contiguous part of its rank's range. Ranges
cross shard boundaries, so every rank gets exactly K batches, the ranks' samples are disjoint,
and uneven shards, or fewer shards than ranks x workers, need no special case. Only the shards
overlapping a worker's range are read. The N - ranks·R left-over samples change each epoch.

Within its range a worker shuffles samples through a buffer seeded by (seed, epoch, rank,
worker). A resumed run starts the right epoch again and skips the batches it had already used.

Bad input (`data.on_error`): `raise` stops with the shard and sample key; `skip` warns with them,
counts them, tops the worker's range up by repeating already-seen samples so every rank still
yields K batches, and stops once a worker skipped more than `data.max_skip_fraction` of its range.
"""

from __future__ import annotations

import functools
import itertools
import random
import sys
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..model_config import IMAGE_SIZE
from ..registry import ConfigError
from .batches import Batching, to_device
from .dataset import to_unit
from .images import decode
from .manifest import StreamError, load_manifest
from .tars import regular_files

if TYPE_CHECKING:
    from .settings import DataConfig

class _Counter:
    """Skipped samples of one worker, with the policy that decides what a bad sample does."""

    def __init__(self, on_error: str, max_fraction: float, planned: int):
        self.on_error, self.max_fraction, self.planned, self.skipped = on_error, max_fraction, planned, 0

    def bad(self, message: str, n: int = 1) -> None:
        if self.on_error == "raise":
            raise StreamError(message)
        self.skipped += n
        print(f"warning: skipped {n} sample(s): {message}", file=sys.stderr)
        if self.skipped > self.max_fraction * self.planned:
            raise StreamError(f"skipped {self.skipped} of {self.planned} samples, more than "
                              f"data.max_skip_fraction={self.max_fraction}; last: {message}")


def read_range(pieces: list[tuple[str, int, int]], decode_image: Callable[[dict], np.ndarray],
               counter: _Counter) -> Iterator[tuple[str, np.ndarray]]:
    """Decoded (key, image) for samples [start, stop) of each shard in `pieces`."""
    for url, start, stop in pieces:
        position, key = 0, None
        try:
            stream = wds.gopen(url)
        except Exception as e:  # gopen raises OSError, ValueError or the pipe's error
            counter.bad(f"shard {url}: cannot open ({e})", stop - start)
            continue
        try:
            files = ({"fname": name, "data": data, "__url__": url} for name, data in regular_files(stream))
            for sample in wds.tariterators.group_by_keys(files):
                if position >= stop:
                    break
                key = sample["__key__"]
                if position >= start:
                    try:
                        yield key, decode_image(sample)
                    except (OSError, ValueError) as e:
                        counter.bad(f"shard {url}, sample {key}: {e}")
                position += 1
        except (ValueError, OSError) as e:  # TarFormatError, a duplicate file name, a broken pipe
            counter.bad(f"shard {url}: unreadable tar after sample {key} ({e})", max(stop - max(position, start), 0))
            continue
        finally:
            stream.close()
        if position < stop:
            counter.bad(f"shard {url}: {position} samples, the manifest promised at least {stop}", stop - position)


class _EpochRanges(IterableDataset):
    """One epoch of one rank: each DataLoader worker yields its (images, keys, skipped) batches."""

    def __init__(self, stream: "ShardStream", epoch: int):
        self.stream, self.epoch = stream, epoch

    def __iter__(self):
        s = self.stream
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        batches = s.batches_per_epoch // workers + (worker < s.batches_per_epoch % workers)
        first_batch = worker * (s.batches_per_epoch // workers) + min(worker, s.batches_per_epoch % workers)
        rank, micro = s.batching.rank, s.batching.micro
        start = rank * s.batches_per_epoch * micro + first_batch * micro
        planned = batches * micro
        pieces = s.pieces(self.epoch, start, start + planned)
        counter = _Counter(s.data.on_error, s.data.max_skip_fraction, planned)
        rng = random.Random(hash((s.seed, self.epoch, rank, worker)))
        samples = wds.shuffle(s.data.shuffle_buffer, initial=s.data.shuffle_buffer, rng=rng)(
            read_range(pieces, s.decode, counter))
        seen: list[tuple[str, np.ndarray]] = []
        repeated = 0
        for _ in range(batches):
            batch = list(itertools.islice(samples, micro))
            seen.extend(batch[: micro - len(seen)])
            while len(batch) < micro:  # skipped samples: repeat seen ones to keep K batches
                if not seen:
                    raise StreamError(f"rank {rank} worker {worker}: no readable sample in its range")
                batch.append(seen[repeated % len(seen)])
                repeated += 1
            images = to_unit(torch.from_numpy(np.stack([image for _, image in batch])), 255)  # 8-bit images
            yield images, [key for key, _ in batch], counter.skipped


def worker_message(error: StreamError) -> str:
    """A worker's error as the worker said it: torch re-raises it in the main process with the
    worker's whole traceback in the message ("Caught StreamError in DataLoader worker process 1")."""
    text = str(error).strip()
    if not text.startswith("Caught "):
        return text
    last = text.splitlines()[-1]  # "betavae_dist.data.stream.StreamError: shard ..., sample ...: ..."
    return last.split(": ", 1)[1] if "StreamError: " in last else last


class ShardStream:
    """Micro-batches for one rank, in step order, from WebDataset shards."""

    def __init__(self, data: DataConfig, seed: int, channels: int, batching: Batching,
                 device: torch.device = torch.device("cpu")):
        """`data`: the `data.*` settings; `channels`: the model's (model.channels)."""
        self.data, self.seed, self.batching, self.device = data, seed, batching, device
        self.urls, self.counts, self.manifest = load_manifest(data)
        total = sum(self.counts)
        self.steps_per_epoch = total // batching.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the shards hold {total} samples, fewer than one global batch of {batching.batch_size}")
        self.batches_per_epoch = self.steps_per_epoch * batching.grad_accum
        image = self.manifest.get("image", {})  # a wids index says nothing of its images
        if image.get("channels") not in (None, channels):
            raise ConfigError(f"the shards hold {image['channels']}-channel images but model.channels={channels}")
        if "size" in image and image["size"] != IMAGE_SIZE and data.resize == "off":
            held = f"{image['size']}x{image['size']} images" if image["size"] else (
                f"images of other sizes ({', '.join(image.get('sizes', []))}, width x height)")
            raise ConfigError(f"the shards hold {held} but the networks take {IMAGE_SIZE}x{IMAGE_SIZE}; data.resize=crop "
                              "resizes each image's short side and crops its centre")
        self.decode = functools.partial(decode, shape=(channels, IMAGE_SIZE, IMAGE_SIZE), resize=data.resize == "crop",
                                        expected_by="the manifest says" if "size" in image else "the model takes")

    def pieces(self, epoch: int, start: int, stop: int) -> list[tuple[str, int, int]]:
        """(url, first, last) sample ranges covering epoch positions [start, stop)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.urls))  # same on every rank
        pieces, offset = [], 0
        for i in order:
            lo, hi = max(start, offset), min(stop, offset + self.counts[i])
            if lo < hi:
                pieces.append((self.urls[i], lo - offset, hi - offset))
            offset += self.counts[i]
        return pieces

    def keyed_micro_batches(self, start_step: int) -> Iterator[tuple[torch.Tensor, list[str], int]]:
        """(images in [0, 1], sample keys, samples skipped so far this epoch by this rank's workers)."""
        epoch, skip = divmod(start_step, self.steps_per_epoch)
        skip *= self.batching.grad_accum
        workers = self.data.workers
        for epoch in itertools.count(epoch):
            loader = DataLoader(_EpochRanges(self, epoch), batch_size=None, num_workers=workers,
                                pin_memory=self.device.type == "cuda")
            skipped = {}
            try:
                for i, (images, keys, worker_skipped) in enumerate(loader):
                    skipped[i % max(workers, 1)] = worker_skipped  # the loader takes workers in turn
                    if i >= skip:
                        yield images, keys, sum(skipped.values())
            except StreamError as e:
                raise StreamError(worker_message(e)) from None
            skip = 0

    def micro_batches(self, start_step: int) -> Iterator[tuple[torch.Tensor, int]]:
        """(images on `device`, skipped so far this epoch); a GPU's copies are pinned and overlap."""
        batches = ((images, skipped) for images, _, skipped in self.keyed_micro_batches(start_step))
        return to_device(batches, self.device) if self.device.type == "cuda" else batches
