"""Sweep throughput: K points trained as one pack against K solo runs in sequence, in one run.

"solo" is the trainer's own step (`make_step`: a CUDA graph on a GPU, eager on the CPU, with
`build_batches` and `NoiseWindow`, a statistics read every 50 steps); K solo runs one after
another train at its rate, so its images/s is the reference for every K. "packed K" is the pack's
step (pack/: `PackBatches`, `PackStep` over K stacked points with different β and seeds, one
statistics read per 50 steps), counting the images of all K points. Each case runs in a fresh
process; cases are interleaved over the repeats; the table gives medians and the ratio
packed / solo, and the largest K once more with its stacked weights and images in plain
(contiguous) layout instead of the pack's channels-last one. Below it, the solo rate in FLOP/s
(the step's convolutions and matmuls, forward and backward, as torch's FlopCounterMode counts
them) against this device's fp32 matmul rate: how much room any packing has, where the solo step
is bound by arithmetic rather than overhead.

    python benchmarks/sweep_throughput.py                    # CPU: conv64, K = 1, 4
    python benchmarks/sweep_throughput.py --device cuda      # GPU: K = 1, 4, 18
    python benchmarks/sweep_throughput.py --objectives beta,annealed,dip_i,dip_ii,beta_tcvae --packs 4   # each method

The whole 18-point sweep on a GPU, trained, evaluated and reported (the issue's 10-minute target):
    time python -m betavae_dist.sweep run configs/sweeps/dsprites_beta.yaml --pack 18
"""

from __future__ import annotations

import argparse
import statistics

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from betavae_dist.models import IMAGE_SIZE, BetaVAE
from betavae_dist.objectives import OBJECTIVES
from betavae_dist.optim import build_optimizer, parameter_groups
from betavae_dist.pack.model import PackedVAE
from betavae_dist.pack.step import PackStep
from betavae_dist.pack.train import PackBatches
from betavae_dist.plan import make_plan
from betavae_dist.stepstats import StepStats
from betavae_dist.runtime import keep_heap
from isolated import run_isolated
from train_throughput import READ_EVERY, config, images_per_s, ours

BETAS = [1, 2, 4, 6, 8, 16]  # configs/sweeps/dsprites_beta.yaml's, with seeds 0, 1, 2, ...


def packed(k: int, arch: str, batch: int, graph: bool, seconds: float, device: torch.device,
           memory_format: torch.memory_format | None = None, objective: str = "beta") -> float:
    keep_heap()
    cfgs = []
    for i in range(k):
        cfg = config(arch, batch, objective)
        cfg.seed, cfg.run_dir = i // len(BETAS), f"point{i}"
        if objective == "beta":
            cfg.loss.beta = float(BETAS[i % len(BETAS)])
        cfg.train.cuda_graph = "on" if graph else "off"
        cfgs.append(cfg)
    plan = make_plan(cfgs, device)
    schedule = plan.objectives[0].schedule
    model = PackedVAE(cfgs, device, memory_format=memory_format)
    optimizer = build_optimizer(parameter_groups(model.params.items(), plan.objectives[0].critic_group()), cfgs[0].optim)
    batches, stats = PackBatches(plan), StepStats(device, model.terms, points=k)
    run_step = PackStep(model, optimizer, plan, stats)

    def step(i):
        run_step.run(i, batches.images(i), batches.noise(i), {name: [v] * k for name, v in schedule(i).items()})
        if (i + 1) % READ_EVERY == 0:
            stats.read(model.finite_points(), False, 0, ranks=1)
            stats.reset()

    return images_per_s(step, k * batch, seconds, device)


def solo(arch: str, batch: int, graph: bool, seconds: float, objective: str = "beta") -> float:
    keep_heap()
    return ours(config(arch, batch, objective), "no", graph, seconds)


def arithmetic(arch: str, batch: int, device: torch.device) -> tuple[float, float]:
    """(FLOPs of one training step per image, this device's fp32 matmul FLOP/s: 2048² products)."""
    cfg = config(arch, batch).model
    model = BetaVAE(cfg.arch, cfg.latents, cfg.channels).to(device)
    x = torch.rand(batch, cfg.channels, IMAGE_SIZE, IMAGE_SIZE, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x, torch.randn(batch, cfg.latents, device=device))[0].float().sum().backward()
    a = torch.randn(2048, 2048, device=device)
    matmul = images_per_s(lambda i: a @ a, 2 * 2048**3, 2.0, device)  # "images" are FLOPs here
    return counter.get_total_flops() / batch, matmul


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--arch", default="conv64")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--packs", default=None, help="comma-separated K; default 1,4 (CPU), 1,4,18 (GPU)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per case (default 10 CPU, 3 GPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--objectives", default="beta", help=f"comma-separated loss.objective names ({', '.join(OBJECTIVES)}); "
                        "each packed K against its own solo rate")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    packs = [int(k) for k in (args.packs or ("1,4,18" if gpu else "1,4")).split(",")]
    seconds = args.seconds or (3.0 if gpu else 10.0)
    device = torch.device(args.device)

    objectives = args.objectives.split(",")
    cases, reference_of = {}, {}
    for objective in objectives:
        label = "" if objectives == ["beta"] else f" {objective}"
        solo_name = f"solo{label} (K runs in sequence)"
        cases[solo_name] = (solo, args.arch, args.batch, gpu, seconds, objective)
        for k in packs:
            cases[f"packed K={k}{label}"] = (packed, k, args.arch, args.batch, gpu, seconds, device, None, objective)
            reference_of[f"packed K={k}{label}"] = solo_name
        reference_of[solo_name] = solo_name
    # The pack's layout against plain stacking (pack/model.py), at the largest K.
    plain = f"packed K={packs[-1]}{'' if objectives == ['beta'] else ' ' + objectives[0]}, plain layout"
    cases[plain] = (packed, packs[-1], args.arch, args.batch, gpu, seconds, device, torch.contiguous_format, objectives[0])
    reference_of[plain] = next(iter(cases))  # the first objective's solo
    results: dict = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit every case alike
        for name, (fn, *fn_args) in cases.items():
            results[name].append(run_isolated(fn, *fn_args))

    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    steps = "one CUDA graph per step" if gpu else "eager steps"
    table = Table(title=f"sweep throughput on {where}: {args.arch}, batch {args.batch} per point, {steps}, "
                        f"median of {args.repeats} x {seconds:g} s")
    for column in ("case", "images/s, all points (median)", "min..max", "× solo"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for name, values in results.items():
        median = statistics.median(values)
        ratio = median / statistics.median(results[reference_of[name]])
        table.add_row(name, f"{median:,.0f}", f"{min(values):,.0f}..{max(values):,.0f}", f"{ratio:.2f}")
    reference = statistics.median(results[next(iter(cases))])
    console = Console(width=130)
    console.print(table)
    per_image, matmul = run_isolated(arithmetic, args.arch, args.batch, device)
    achieved = reference * per_image
    console.print(f"solo: {per_image / 1e6:.0f} MFLOP per image per step (convolutions and matmuls, forward and backward) "
                  f"× {reference:,.0f} img/s = {achieved / 1e9:,.0f} GFLOP/s, {achieved / matmul:.0%} of this device's "
                  f"fp32 matmul rate ({matmul / 1e9:,.0f} GFLOP/s): packing that ran every layer at matmul speed would "
                  f"reach {matmul / achieved:.1f}× solo")


if __name__ == "__main__":
    main()
