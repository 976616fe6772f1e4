"""One model trained on 1, 2 or n ranks through Accelerate (DDP, DeepSpeed ZeRO, mixed precision;
one CUDA graph per step on one GPU): the `Run` that loop.train_loop drives.

The run directory gets: config.yaml (the resolved config), metrics.jsonl, checkpoints/step_N,
export/ (model.safetensors + config.json), reconstruction.png and traversal.png.
"""

from __future__ import annotations

import numpy as np
import torch
from accelerate.utils import DistributedType, set_seed

from . import checkpoint, tracking, visualize
from .data import build_batches, build_dataset
from .data.batches import NoiseWindow
from .distributed import (Heartbeat, configure_deepspeed, die_with_launcher, launched_world_size, make_accelerator,
                          offloads_optimizer, shutdown, unwrap)
from .experiment import Config
from .loop import Run, train_loop
from .metrics import evaluate_model
from .models import BetaVAE, build_model, write_export
from .optim import build_optimizer, parameter_groups
from .plan import Plan, make_plan
from .preflight import preflight
from .progress import Lines
from .results import record
from .rundir import RunDir, TrainingError
from .runtime import cpu_threads, keep_heap
from .step import launch_obstacle, loss_terms, make_step
from .stepstats import StepStats, finite_weights
from .stopping import StopSignal

FIGURES = ("reconstruction", "traversal")  # RUN/<name>.png


def invariance_caveats(cfg: Config, objective, ranks: int) -> list[str]:
    """Why this run's model would change with the number of ranks or micro-batches, if it would."""
    caveats = []
    if not objective.mean_of_samples and ranks * cfg.train.grad_accum > 1:
        caveats.append(f"loss.objective={cfg.loss.objective} is not a mean over samples: with {ranks} rank(s) x "
                       f"{cfg.train.grad_accum} micro-batch(es) its gradient is not the whole batch's, so the model "
                       "depends on them")
    if cfg.data.source == "webdataset" and ranks > 1:
        caveats.append("data.source=webdataset: each rank reads its own shards in its own order, so the samples of a "
                       "step, and the model, depend on the number of ranks")
    return caveats


def save_figures(model: BetaVAE, x: torch.Tensor, cfg: Config, files: RunDir | None = None) -> dict[str, np.ndarray]:
    """Every rank runs the forward passes (a sharded model needs them all); the one given `files`
    writes them there. Returns the figures by name, as (height, width, C) images."""
    kl = visualize.latent_kl(model, x)
    figures = dict(zip(FIGURES, (visualize.tile(visualize.reconstructions(model, x, cfg.model.likelihood)),
                                 visualize.traversal_figure(model, x, cfg.model.likelihood, kl))))
    if files is not None:
        for name, image in figures.items():
            visualize.save_image(image, files.figure(name))
    return figures


class SoloRun(Run):
    """The model, its optimiser and step on this rank, built (and resumed) as every rank must."""

    def __init__(self, plan: Plan, accelerator):
        self.plan, self.accelerator, cfg, self.files = plan, accelerator, plan.cfg, plan.dirs[0]
        self.is_main, self.ranks = accelerator.is_main_process, accelerator.num_processes
        self.batches = build_batches(cfg.data, cfg.seed, cfg.model.channels, plan.batching, self.device)
        if cfg.eval.every:  # the metrics' factor dataset, built once (an original npz is 3 GB)
            self.eval_dataset = self.batches.dataset if cfg.data.source == "dataset" else build_dataset(cfg.data)
        configure_deepspeed(accelerator, cfg, plan.batching.micro)
        self.objective = plan.objectives[0]
        set_seed(cfg.seed)  # identical initial weights on every rank
        model = build_model(cfg.model, cfg.loss.objective)
        if accelerator.distributed_type != DistributedType.DEEPSPEED:  # ZeRO flattens parameters: keep them contiguous
            model = model.to(memory_format=model.memory_format)
        groups = parameter_groups(model.named_parameters(), self.objective.critic_group())
        optimizer = build_optimizer(groups, cfg.optim, offloads_optimizer(accelerator))
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.unwrapped = unwrap(accelerator, self.model)
        if self.objective.critic is not None:
            self.objective.bind(self.unwrapped.critic)
        set_seed(cfg.seed + accelerator.process_index)  # per-rank streams for anything else random

        self.resumed_from = checkpoint.choose_resume(cfg.train.resume, self.files.checkpoints, accelerator)
        self.start = checkpoint.load(accelerator, self.resumed_from) if self.resumed_from else 0
        if self.start > cfg.train.steps:
            raise TrainingError(f"{self.resumed_from} is at step {self.start}, past train.steps={cfg.train.steps}: this "
                                "run went further; a new run_dir (or train.resume=none) trains a shorter one")
        self.stats = StepStats(self.device, self.objective.terms)
        # After resuming: a graph captures the state.
        self.run_step = make_step(self.model, self.optimizer, accelerator, plan, self.stats)
        self.description = self.run_step.description
        self.noise = NoiseWindow(cfg.seed, cfg.train.batch_size, cfg.model.latents, self.device, cfg.train.steps,
                                 self.objective.noise_width)
        first = next(self.batches.micro_batches(0))[0].to(self.device)
        self.probe = first[:8]  # checked at saves, drawn at evaluations and at the end
        self.kl_probe = first[:64]  # each latent's KL, at log steps
        self.micro_batches = self.batches.micro_batches(self.start)
        self.skipped, self.schedule = 0, {}
        self.evaluation: dict | None = None  # evaluation.json of the last evaluation

    def step(self, step: int) -> list[dict]:
        self.schedule = self.objective.schedule(step)
        self.skipped = self.run_step(step, self.micro_batches, self.noise(step), self.schedule)
        return [self.schedule]

    def read(self, stop: bool) -> tuple[list[dict], bool]:
        points = self.stats.read(finite_weights(self.unwrapped), stop, self.skipped, self.ranks)
        points[0]["extra"] = visualize.latent_stats(self.unwrapped, self.kl_probe)  # every rank: a sharded model needs them all
        if self.cfgs[0].data.source == "webdataset":  # bad samples skipped this epoch, all ranks
            points[0]["extra"]["data_skipped"] = points[0]["data_skipped"]
        return points, points[0]["stop"]

    @torch.no_grad()
    def sound(self) -> list[bool]:
        """One forward pass of a few images, on every rank (a sharded model needs them all), which then agree."""
        noise = torch.zeros(len(self.probe), self.objective.noise_width, device=self.device)
        loss, _ = loss_terms(self.unwrapped, self.probe, noise, self.objective, self.schedule)
        return [not self.accelerator.reduce(torch.isfinite(loss).logical_not().float(), "sum").item()]

    def fail(self, k: int, problem: str, done: int) -> None:
        """Every rank finds the same problem (the statistics and the probe are all-reduced): rank 0 tells it."""
        raise TrainingError(f"{problem}; stopped, last good checkpoint: {self.files.last_checkpoint() or 'none yet'}",
                            quiet=not self.is_main)

    def save(self, done: int, alive: list[bool]) -> None:
        checkpoint.save(self.accelerator, self.files.checkpoints, done, self.cfgs[0].train.keep_checkpoints)

    def evaluate(self, done: int) -> dict:
        """The metrics now, and the figures for the trackers; the last evaluation (at the final step,
        the loop's) goes with the export."""
        cfg = self.cfgs[0]
        with torch.no_grad():
            # Plain lines (rank 0): on a terminal they print above the training bar, a live display of its own.
            results = evaluate_model(self.unwrapped, self.eval_dataset, cfg.eval, self.accelerator,
                                     Lines(disable=not (self.is_main and cfg.train.progress)))
        self.evaluation = record(self.files.export, self.ranks, cfg, results)
        if self.accelerator.trackers:
            tracking.log_figures(self.accelerator, save_figures(self.unwrapped, self.probe, cfg), done)
        return results

    def track(self, values: dict, done: int) -> None:
        """Training's values under train/ (evaluation's are eval/ already); rank 0 holds the trackers."""
        self.accelerator.log(tracking.scalars({k if "/" in k else f"train/{k}": v for k, v in values.items()}), step=done)

    def preempt(self) -> None:
        shutdown(self.accelerator, self.model, self.optimizer)

    def finish(self, alive: list[bool]) -> None:
        cfg, files = self.cfgs[0], self.files
        if self.is_main:  # from the final checkpoint: fp32 master weights, consolidated under any ZeRO stage
            write_export(checkpoint.weights(files.last_checkpoint()), cfg, files.export, self.evaluation)
        figures = save_figures(self.unwrapped, self.probe, cfg, files if self.is_main else None)
        if not cfg.eval.every:  # else the evaluation at the last step logged them
            tracking.log_figures(self.accelerator, figures, cfg.train.steps)
        self.accelerator.print(f"done: {files} (export in {files.export})")
        shutdown(self.accelerator, self.model, self.optimizer)


def train(cfg: Config) -> None:
    """Train one run to `train.steps`. The process is left as it was found (signal handlers, the
    heartbeat thread), so tests and notebooks can call this in-process; only glibc's heap setting
    (runtime.keep_heap) stays, as it cannot be undone."""
    keep_heap()
    preflight(cfg, launched_world_size())
    die_with_launcher()
    accelerator = make_accelerator(cfg.train.collective_timeout, gradient_accumulation_steps=cfg.train.grad_accum,
                                   log_with=cfg.train.trackers or None, project_dir=cfg.run_dir)
    plan = make_plan([cfg], accelerator.device, accelerator.num_processes, accelerator.process_index,
                     launch_obstacle(accelerator))
    files = plan.dirs[0]
    files.prepare(accelerator.process_index)
    workers = cfg.data.workers if cfg.data.source == "webdataset" else 0
    with StopSignal() as stop, Heartbeat(files.path, accelerator.process_index), cpu_threads(workers) as threads:
        accelerator.wait_for_everyone()
        run = SoloRun(plan, accelerator)
        if run.is_main:
            files.save_config(cfg)
        for caveat in invariance_caveats(cfg, run.objective, run.ranks):
            accelerator.print(f"note: {caveat}")
        if cfg.train.trackers:  # the run directory's name names the run (TensorBoard writes RUN/<name>/)
            tracking.start(accelerator, cfg, files.path.name)
        accelerator.print(
            f"{run.ranks} process(es) on {run.device} ({accelerator.distributed_type.value}, "
            f"{accelerator.mixed_precision}){f', {threads} CPU thread(s) each' if run.device.type == 'cpu' else ''}, "
            f"{run.description}, global batch {cfg.train.batch_size}, "
            + (f"resuming from {run.resumed_from} at step {run.start}" if run.resumed_from else "starting at step 0"))
        alive = train_loop(run, run.start, stop)
        run.finish(alive)
