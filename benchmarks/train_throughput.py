"""Training throughput: our step against a plain eager PyTorch reference, in one run.

The reference is the way typical single-GPU β-VAE code trains: a per-sample `Dataset` over an
in-memory uint8 array, a shuffling `DataLoader` with default collation, the same network and
batch, fp32. We time ours with the model alone (a fixed in-memory batch) and end to end (batches
rendered on the fly by `StepBatches`), in fp32 and in bf16 autocast (Accelerate's
mixed_precision="bf16"). Prints a table of median images/s and ratios against the reference.

    python benchmarks/train_throughput.py [--arch conv64] [--batch 64] [--steps 30] [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from betavae_dist.config import Config
from betavae_dist.data import StepBatches, build_dataset
from betavae_dist.distributed import make_accelerator
from betavae_dist.dsprites import NUM_IMAGES, index_to_factors, render
from betavae_dist.models import BetaVAE
from betavae_dist.runtime import keep_heap
from isolated import run_isolated
from betavae_dist.train import build_optimizer, train_step


class ArrayDataset(Dataset):
    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i]).float().unsqueeze(0)


def reference_images(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return render(index_to_factors(rng.choice(NUM_IMAGES, n, replace=False)))


def reference_images_per_s(n_images: int, cfg: Config, steps: int, fixed_batch: bool) -> float:
    images = reference_images(n_images)
    torch.manual_seed(0)
    model = BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    loader = DataLoader(ArrayDataset(images), batch_size=cfg.train.batch_size, shuffle=True, drop_last=True)
    fixed = next(iter(loader))
    batches = iter(loader)
    start = None
    for i in range(steps + 3):  # 3 warm-up steps
        if i == 3:
            start = time.perf_counter()
        x = fixed if fixed_batch else next(batches)
        mean, logvar = model.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        out = model.decode(z)
        recon = F.binary_cross_entropy_with_logits(out, x, reduction="sum") / x.shape[0]
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum() / x.shape[0]
        loss = recon + cfg.loss.beta * kl
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * cfg.train.batch_size / (time.perf_counter() - start)


def ours_images_per_s(cfg: Config, steps: int, precision: str, fixed_batch: bool) -> float:
    keep_heap()  # what the trainer does at start-up
    torch.manual_seed(0)
    accelerator = make_accelerator(mixed_precision=precision)
    model = BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels)
    model = model.to(memory_format=model.memory_format)
    model, optimizer = accelerator.prepare(model, build_optimizer(model.parameters(), cfg))
    batches = StepBatches(build_dataset(cfg), cfg, 1, 0).micro_batches(0)
    if fixed_batch:  # the model step alone: one pre-built batch over and over
        batches = itertools.repeat(next(batches))
    start = None
    for step in range(steps + 3):
        if step == 3:
            start = time.perf_counter()
        train_step(model, optimizer, batches, step, cfg, accelerator)
    return steps * cfg.train.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="conv64", choices=["fc", "conv64"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-images", type=int, default=20_000)
    args = parser.parse_args()

    cfg = Config()
    cfg.model.arch, cfg.train.batch_size = args.arch, args.batch
    n = args.reference_images
    cases = {  # each case in a fresh process (isolated.py): nothing leaks from one to another
        ("model only", "reference fp32"): (reference_images_per_s, n, cfg, args.steps, True),
        ("model only", "ours fp32"): (ours_images_per_s, cfg, args.steps, "no", True),
        ("model only", "ours bf16"): (ours_images_per_s, cfg, args.steps, "bf16", True),
        ("end to end", "reference fp32"): (reference_images_per_s, n, cfg, args.steps, False),
        ("end to end", "ours fp32"): (ours_images_per_s, cfg, args.steps, "no", False),
        ("end to end", "ours bf16"): (ours_images_per_s, cfg, args.steps, "bf16", False),
    }
    results: dict = {key: [] for key in cases}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit every case alike
        for key, (fn, *fn_args) in cases.items():
            results[key].append(run_isolated(fn, *fn_args))

    table = Table(title=f"training throughput, {args.arch}, batch {args.batch}, {torch.get_num_threads()} threads, "
                        f"median of {args.repeats} x {args.steps} steps")
    for column in ("scope", "loop", "images/s (median)", "min..max", "× reference"):
        table.add_column(column, justify="right" if column != "loop" else "left")
    for (scope, loop), values in results.items():
        median = statistics.median(values)
        ratio = median / statistics.median(results[(scope, "reference fp32")])
        table.add_row(scope, loop, f"{median:.0f}", f"{min(values):.0f}..{max(values):.0f}", f"{ratio:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
