"""Training throughput: our step against a plain eager PyTorch loop, measured in one run.

The reference is the way typical single-GPU β-VAE code trains: a per-sample `Dataset` over an
in-memory uint8 array, a shuffling `DataLoader` with default collation, `.to(device)`, the same
network and batch, Adam, fp32, no per-step sync. "model only" is the same loop on one batch already
on the device: the eager ceiling. Ours is the trainer's step end to end (`build_batches`,
`NoiseWindow`, `make_step`, a statistics read every 50 steps), eager or as a CUDA graph
(`train.cuda_graph`), in fp32 and in bf16 autocast (Accelerate's mixed_precision="bf16").
Prints median images/s and ratios against the plain loop measured in the same run.

    python benchmarks/train_throughput.py                       # CPU: conv64, batch 64
    python benchmarks/train_throughput.py --device cuda         # conv64 and fc, batch 64 and 1024

On the CPU every case runs in a fresh process (the trainer's malloc setting cannot be undone). On a
GPU the reference cases share one fresh process and ours another, per repeat, so the 2.8 GiB
device copy of dSprites is built once per batch size and process rather than once per case.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.state import AcceleratorState, GradientState
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from betavae_dist.experiment import Config, from_sources
from betavae_dist.data import build_batches
from betavae_dist.data.batches import NoiseWindow
from betavae_dist.distributed import make_accelerator, unwrap
from betavae_dist.data.dsprites import NUM_IMAGES, DSprites, render
from betavae_dist.models import BetaVAE, build_model
from betavae_dist.runtime import keep_heap
from betavae_dist.plan import make_plan
from betavae_dist.step import launch_obstacle, make_step
from betavae_dist.stepstats import StepStats, finite_weights
from betavae_dist.optim import build_optimizer, parameter_groups
from isolated import run_isolated

READ_EVERY = 50  # the trainer's default train.log_every: one statistics read per 50 steps


class ArrayDataset(Dataset):
    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i]).float().unsqueeze(0)


def config(arch: str, batch: int, objective: str = "beta") -> Config:
    cfg = from_sources(None, [f"model.arch={arch}", f"train.batch_size={batch}", "train.steps=1000000000",
                              f"loss.objective={objective}"])
    return cfg


def images_per_s(step, batch: int, seconds: float, device: torch.device) -> float:
    """Run `step(i)` for about `seconds` after a warm-up; the clock stops once the device is done."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(5):
        step(i)
    sync()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or steps < 10:
        for _ in range(10):
            step(5 + steps)
            steps += 1
    sync()
    return steps * batch / (time.perf_counter() - start)


def reference(cfg: Config, fixed_batch: bool, seconds: float, device: torch.device, n_images: int) -> float:
    images = render(DSprites.index_to_factors(np.random.default_rng(0).choice(NUM_IMAGES, n_images, replace=False)))
    torch.manual_seed(0)
    model = BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    loader = DataLoader(ArrayDataset(images), batch_size=cfg.train.batch_size, shuffle=True, drop_last=True)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    fixed = next(batches).to(device)

    def step(_):
        x = fixed if fixed_batch else next(batches).to(device)
        mean, logvar = model.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        out = model.decode(z)
        recon = F.binary_cross_entropy_with_logits(out, x, reduction="sum") / x.shape[0]
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum() / x.shape[0]
        loss = recon + cfg.loss.beta * kl
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return images_per_s(step, cfg.train.batch_size, seconds, device)


_sources: dict = {}  # (batch size) -> the trainer's batch source, built once per process


def ours(cfg: Config, precision: str, graph: bool, seconds: float) -> float:
    AcceleratorState._reset_state(True)  # a fresh Accelerator per case, whatever the last one was
    GradientState._reset_state()
    accelerator = make_accelerator(mixed_precision=precision)
    cfg.train.cuda_graph = "on" if graph else "off"
    torch.manual_seed(0)
    plan = make_plan([cfg], accelerator.device, launch_obstacle=launch_obstacle(accelerator))
    objective = plan.objectives[0]
    model = build_model(cfg.model, cfg.loss.objective)  # with the objective's critic, if it has one (FactorVAE)
    model = model.to(memory_format=model.memory_format)
    groups = parameter_groups(model.named_parameters(), objective.critic_group())
    model, optimizer = accelerator.prepare(model, build_optimizer(groups, cfg.optim))
    if objective.critic is not None:
        objective.bind(unwrap(accelerator, model).critic)
    stats = StepStats(accelerator.device, objective.terms)
    run_step = make_step(model, optimizer, accelerator, plan, stats)
    key = cfg.train.batch_size
    if key not in _sources:
        _sources[key] = build_batches(cfg.data, cfg.seed, cfg.model.channels, plan.batching, accelerator.device)
    batches = _sources[key].micro_batches(0)
    noise = NoiseWindow(cfg.seed, cfg.train.batch_size, cfg.model.latents, accelerator.device, cfg.train.steps,
                        objective.noise_width)

    def step(i):
        run_step(i, batches, noise(i), objective.schedule(i))
        if (i + 1) % READ_EVERY == 0:
            stats.read(finite_weights(model), False, 0, ranks=1)
            stats.reset()

    return images_per_s(step, cfg.train.batch_size, seconds, accelerator.device)


def run_cases(cases: list[tuple]) -> list[float]:
    """Run (function, args...) cases one after another in this process."""
    if any(fn is ours for fn, *_ in cases):
        keep_heap()  # what the trainer does at start-up
    return [fn(*args) for fn, *args in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--arch", default=None, help="comma-separated; default conv64 (CPU), conv64,fc (GPU)")
    parser.add_argument("--batch", default=None, help="comma-separated; default 64 (CPU), 64,1024 (GPU)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per case (default 10 CPU, 2 GPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-images", type=int, default=20_000)
    args = parser.parse_args()
    gpu = args.device == "cuda"
    archs = (args.arch or ("conv64,fc" if gpu else "conv64")).split(",")
    batches = [int(b) for b in (args.batch or ("64,1024" if gpu else "64")).split(",")]
    seconds = args.seconds or (2.0 if gpu else 10.0)
    device = torch.device(args.device)

    reference_cases, our_cases = {}, {}
    for arch, batch in itertools.product(archs, batches):
        cfg = config(arch, batch)
        reference_cases[(arch, batch, "plain eager loop fp32")] = (reference, cfg, False, seconds, device, args.reference_images)
        reference_cases[(arch, batch, "model only, eager fp32")] = (reference, cfg, True, seconds, device, args.reference_images)
        for graph, precision in itertools.product([False, True] if gpu else [False], ["no", "bf16"]):
            name = f"ours, {'CUDA graph' if graph else 'eager'} {'fp32' if precision == 'no' else precision}"
            our_cases[(arch, batch, name)] = (ours, cfg, precision, graph, seconds)
    groups = [reference_cases, our_cases] if gpu else [{k: v} for k, v in {**reference_cases, **our_cases}.items()]

    results: dict = {key: [] for group in groups for key in group}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit every case alike
        for group in groups:
            for key, value in zip(group, run_isolated(run_cases, list(group.values()))):
                results[key].append(value)

    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    table = Table(title=f"training throughput on {where}, median of {args.repeats} x {seconds:g} s")
    for column in ("arch", "batch", "loop", "images/s (median)", "min..max", "× plain loop"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    for (arch, batch, loop), values in results.items():
        median = statistics.median(values)
        ratio = median / statistics.median(results[(arch, batch, "plain eager loop fp32")])
        table.add_row(arch, str(batch), loop, f"{median:,.0f}", f"{min(values):,.0f}..{max(values):,.0f}", f"{ratio:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
