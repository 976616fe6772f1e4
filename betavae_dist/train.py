"""Train a β-VAE with Accelerate.

    accelerate launch --config_file launch/cpu_ddp.yaml -m betavae_dist.train \
        --config configs/dsprites_beta4.yaml loss.beta=8 train.steps=2000
    python -m betavae_dist.train --config configs/dsprites_beta4.yaml      # one process

The run directory gets: config.yaml (the resolved config), metrics.jsonl, checkpoints/step_N,
export/ (model.safetensors + config.json), reconstruction.png and traversal.png.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.tracking import get_available_trackers
from accelerate.utils import DistributedType, set_seed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import checkpoint, visualize
from .config import ConfigError, flat, identity_changes, save_yaml
from .experiment import Config, from_sources, load_or_exit
from .data import DataError, build_batches, build_dataset
from .data.batches import NoiseWindow, micro_batch_size
from .distributed import (Heartbeat, LaunchError, configure_deepspeed, die_with_launcher, first_to_tell,
                          launched_world_size, make_accelerator, offloads_optimizer, shutdown, silent_ranks, unwrap)
from .export import ExportError, write_export
from .metrics import evaluate_model
from .models import BetaVAE, activation_bytes
from .objectives import build_objective
from .optim import build_optimizer
from .peers import lost_peer
from .progress import Lines, make_progress
from .runtime import cpu_threads, keep_heap
from .step import StepStats, make_step, non_finite


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is untouched."""


class Preempted(Exception):
    """A stop signal came and the checkpoint of the step reached is written: `main` exits with
    PREEMPTED_EXIT_CODE, so that SLURM's requeue (or the user) runs the same command again."""


FIGURES = ("reconstruction", "traversal")  # RUN/<name>.png
# Stopped by SIGTERM/SIGUSR1 after writing a checkpoint: requeue and resume. slurm/common.sh makes
# it 0: the job script learns of the preemption from the signal, and srun logs any other as an error.
PREEMPTED_EXIT_CODE = int(os.environ.get("BETAVAE_PREEMPTED_EXIT_CODE", "3"))


class StopSignal:
    """Remembers SIGTERM/SIGUSR1 (what SLURM sends before a time limit or preemption) so the loop
    can checkpoint at the next step instead of dying mid-step. A signal that comes again later
    than REPEAT_GRACE seconds after the first exits at once (someone insisting, or a launcher
    tearing down a job whose other rank died). Within the grace it is the same stop: under SLURM
    with several nodes a cancel reaches each worker twice, from SLURM and forwarded by the elastic
    agent, milliseconds apart (the agent waits 30 s for its workers before it kills them)."""

    REPEAT_GRACE = 5.0
    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __enter__(self) -> StopSignal:
        """Listen; leaving the `with` puts the process's own handlers back (tests train in-process)."""
        self.received, self._first = None, 0.0
        self._before = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.received is None:
            self.received, self._first = signal.Signals(signum).name, time.monotonic()
        elif time.monotonic() - self._first > self.REPEAT_GRACE:
            raise SystemExit(128 + signum)


class StopPoll:
    """Whether a stop signal came, asked at ordinary steps too, so that SLURM's warning (say
    --signal=B:USR1@120) is acted on within about BUDGET seconds of training whatever
    `train.log_every`: at every step in a process alone; with several ranks every k steps, in one
    small all-reduce (did any rank get one, and the slowest rank's seconds since the last poll),
    from which every rank derives the same next k."""

    BUDGET = 2.0

    def __init__(self, stop: StopSignal, accelerator: Accelerator):
        self.stop, self.accelerator = stop, accelerator
        self.every, self.steps, self.last = 1, 0, time.monotonic()

    def __call__(self) -> bool:
        if self.accelerator.num_processes == 1:
            return self.stop.received is not None
        self.steps += 1
        if self.steps < self.every:
            return False
        now = time.monotonic()
        asked = torch.tensor([float(self.stop.received is not None), now - self.last], device=self.accelerator.device)
        torch.distributed.all_reduce(asked, op=torch.distributed.ReduceOp.MAX)
        stop, seconds = asked.tolist()
        self.every = max(1, min(1000, int(self.steps * self.BUDGET / max(seconds, 1e-6))))
        self.steps, self.last = 0, now
        return stop > 0


def prepare_run_dir(run_dir: Path, rank: int) -> None:
    """Every rank checks it can write the run directory, so none waits for a rank that failed."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{rank}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"cannot write the run directory {run_dir} (run_dir): {e.strerror}") from None


def refuse_another_run(cfg: Config, run_dir: Path, ckpt_dir: Path) -> None:
    """`resume=auto` continues a run only under its own config (recorded in config.yaml): the
    schedule, logging and evaluation may change, not what is trained."""
    recorded = run_dir / "config.yaml"
    if cfg.train.resume != "auto" or not checkpoint.checkpoints(ckpt_dir) or not recorded.is_file():
        return
    changes = identity_changes(from_sources(str(recorded), []), cfg)
    if changes:
        raise ConfigError(f"{run_dir} holds a run with another config ({'; '.join(changes)}); "
                          "train.resume=force continues it under this one, or choose a new run_dir")


def progress_bar(enabled: bool) -> Progress | Lines:
    """A live bar on a terminal; in a log file, a line per log step (progress.py)."""
    return make_progress(TextColumn("step"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[stats]}"),
                         TimeRemainingColumn(), disable=not enabled, every=0)  # log steps set the pace


def save_figures(model: BetaVAE, x: torch.Tensor, cfg: Config, write: bool = True) -> dict[str, np.ndarray]:
    """Every rank runs the forward passes (a sharded model needs them all); the one told to writes.
    Returns the figures by name, as (height, width, C) images."""
    figures = {name: visualize.tile(grid) for name, grid in zip(FIGURES, (
        visualize.reconstructions(model, x, cfg.model.likelihood), visualize.traversal(model, x, cfg.model.likelihood)))}
    if write:
        for name, image in figures.items():
            visualize.save_image(image, Path(cfg.run_dir) / f"{name}.png")
    return figures


def preflight(cfg: Config, world_size: int) -> None:
    """The checks that need no process group: each rank runs them first, and `betavae_dist.launch`
    before it starts any rank."""
    missing = [t for t in cfg.train.trackers if t != "all" and t not in map(str, get_available_trackers())]
    if missing:
        raise ConfigError(f"train.report_to={missing[0]} needs its package: pip install {missing[0]}")
    check_memory(cfg, micro_batch_size(cfg, world_size))
    refuse_another_run(cfg, Path(cfg.run_dir), Path(cfg.run_dir) / "checkpoints")
    if cfg.train.resume not in ("auto", "force", "none") and not Path(cfg.train.resume).is_dir():
        raise ConfigError(f"train.resume={cfg.train.resume}: no such checkpoint directory")


def check_memory(cfg: Config, samples: int) -> None:
    """Refuse a micro-batch whose activations alone (about twice the forward's layer outputs, for
    backward's temporaries) would not fit in one device's memory: a GPU's, else this machine's."""
    need = 2 * samples * activation_bytes(cfg.model.arch, cfg.model.latents, cfg.model.channels)
    if torch.cuda.is_available():
        where, have = torch.cuda.get_device_name(), torch.cuda.get_device_properties(0).total_memory
    else:
        where, have = "this machine's memory", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size}: {samples} samples per micro-batch need about "
                          f"{need / 2**30:,.0f} GiB of activations ({cfg.model.arch}), more than {where} has "
                          f"({have / 2**30:,.0f} GiB); lower train.batch_size or raise train.grad_accum")


def train(cfg: Config) -> None:
    """Train one run to `train.steps`. The process is left as it was found (signal handlers, the
    heartbeat thread), so tests and notebooks can call this in-process; only glibc's heap setting
    (runtime.keep_heap) stays, as it cannot be undone."""
    keep_heap()
    preflight(cfg, launched_world_size())
    run_dir, ckpt_dir = Path(cfg.run_dir), Path(cfg.run_dir) / "checkpoints"
    die_with_launcher()
    accelerator = make_accelerator(
        cfg.train.collective_timeout,
        gradient_accumulation_steps=cfg.train.grad_accum,
        log_with=cfg.train.trackers or None,
        project_dir=cfg.run_dir,
    )
    prepare_run_dir(run_dir, accelerator.process_index)
    checkpoint.refuse_intruders(ckpt_dir)  # before training, not at the step that would need the name
    workers = cfg.data.workers if cfg.data.source == "webdataset" else 0
    with StopSignal() as stop, Heartbeat(run_dir, accelerator.process_index), cpu_threads(workers):
        accelerator.wait_for_everyone()
        is_main = accelerator.is_main_process

        batches = build_batches(cfg, accelerator.num_processes, accelerator.process_index, accelerator.device)
        if cfg.eval.every:  # the metrics' factor dataset, built once (an original npz is 3 GB)
            eval_dataset = batches.dataset if cfg.data.source == "dataset" else build_dataset(cfg)
        configure_deepspeed(accelerator, cfg, batches.micro_batch)
        set_seed(cfg.seed)  # identical initial weights on every rank
        model = BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels)
        if accelerator.distributed_type != DistributedType.DEEPSPEED:  # ZeRO flattens parameters: keep them contiguous
            model = model.to(memory_format=model.memory_format)
        optimizer = build_optimizer(model.parameters(), cfg, offloads_optimizer(accelerator))
        model, optimizer = accelerator.prepare(model, optimizer)
        unwrapped = unwrap(accelerator, model)
        set_seed(cfg.seed + accelerator.process_index)  # per-rank streams for anything else random

        resume_from = checkpoint.choose_resume(cfg.train.resume, ckpt_dir, accelerator)
        start = checkpoint.load(accelerator, resume_from) if resume_from else 0
        if start > cfg.train.steps:
            raise TrainingError(f"{resume_from} is at step {start}, past train.steps={cfg.train.steps}: this run went "
                                "further; a new run_dir (or train.resume=none) trains a shorter one")
        if is_main:
            save_yaml(cfg, run_dir / "config.yaml")
        objective = build_objective(cfg)
        for caveat in invariance_caveats(cfg, objective, accelerator.num_processes):
            accelerator.print(f"note: {caveat}")
        stats = StepStats(accelerator.device, objective.terms)
        run_step = make_step(model, optimizer, accelerator, cfg, objective, stats)  # after resuming: a graph captures the state
        noise = NoiseWindow(cfg, accelerator.device, cfg.train.steps)
        probe = next(batches.micro_batches(0))[0][:8].to(accelerator.device)  # checked at saves, drawn at the end
        poll = StopPoll(stop, accelerator)
        if cfg.train.trackers:  # the run directory's name names the run (TensorBoard writes RUN/<name>/)
            accelerator.init_trackers(run_dir.name, config=flat(cfg.to_dict()))
        accelerator.print(
            f"{accelerator.num_processes} process(es) on {accelerator.device} ({accelerator.distributed_type.value}, "
            f"{accelerator.mixed_precision}), {run_step.description}, global batch {cfg.train.batch_size}, "
            + (f"resuming from {resume_from} at step {start}" if resume_from else "starting at step 0")
        )

        metrics_file = open_metrics_log(run_dir / "metrics.jsonl", start) if is_main else nullcontext()
        with progress_bar(is_main and cfg.train.progress) as progress, metrics_file as metrics_log:
            task = progress.add_task("step", total=cfg.train.steps, completed=start, stats="")
            window_start, window_steps = time.perf_counter(), 0
            micro_batches = batches.micro_batches(start)
            for step in range(start, cfg.train.steps):
                schedule = objective.schedule(step)
                skipped = run_step(step, micro_batches, noise(step), schedule)
                done, window_steps = step + 1, window_steps + 1
                last = done == cfg.train.steps
                log_now = done % cfg.train.log_every == 0 or last
                save_now = done % cfg.train.ckpt_every == 0 or last
                eval_now = cfg.eval.every and (done % cfg.eval.every == 0 or last)
                if not (log_now or save_now or eval_now or poll()):
                    continue  # an ordinary step: nothing is read back from the device
                metrics = stats.read(unwrapped, stop.received is not None, skipped, accelerator)
                check_finite(metrics, done, ckpt_dir)
                if log_now:
                    elapsed = time.perf_counter() - window_start  # after the read, so the GPU's work is in it
                    logged = {k: metrics[k] for k in stats.terms}
                    logged.update(img_per_s=window_steps * cfg.train.batch_size / elapsed, lr=optimizer.param_groups[0]["lr"],
                                  **schedule)
                    if cfg.data.source == "webdataset":  # bad samples skipped so far this epoch, all ranks together
                        logged["data_skipped"] = metrics["data_skipped"]
                    record(logged, done, metrics_log, accelerator)
                    progress.update(task, completed=done, stats=_summary(logged))
                    stats.reset()
                    window_start, window_steps = time.perf_counter(), 0
                if save_now or metrics["stop"]:
                    check_sound(unwrapped, probe, objective, schedule, done, ckpt_dir, accelerator)
                    checkpoint.save(accelerator, ckpt_dir, done, cfg.train.keep_checkpoints)
                if metrics["stop"]:
                    shutdown(accelerator, model, optimizer)
                    raise Preempted(f"stop signal: checkpoint at step {done} written; exit {PREEMPTED_EXIT_CODE}: "
                                    "the same command resumes from it")
                if eval_now:
                    eval_start = time.perf_counter()
                    with torch.no_grad():
                        scores = evaluate_model(unwrapped, eval_dataset, cfg, accelerator)
                    window_start += time.perf_counter() - eval_start  # keep img/s about training
                    scores = {f"eval/{k}": v for k, v in scores.items() if isinstance(v, (int, float))}
                    record(scores, done, metrics_log, accelerator)
                    if is_main:  # a disabled bar's console still prints
                        progress.console.print(f"step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))

        if is_main:  # from the final checkpoint: fp32 master weights, consolidated under any ZeRO stage
            write_export(checkpoint.weights(checkpoint.latest(ckpt_dir)), cfg, run_dir / "export")
        figures = save_figures(unwrapped, probe, cfg, accelerator.is_main_process)
        log_figures(accelerator, figures, cfg.train.steps)
        accelerator.print(f"done: {run_dir} (export in {run_dir / 'export'})")
        shutdown(accelerator, model, optimizer)


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


@torch.no_grad()
def check_sound(model: BetaVAE, probe: torch.Tensor, objective, schedule: dict, done: int, ckpt_dir: Path,
                accelerator: Accelerator) -> None:
    """Refuse to checkpoint weights whose loss is no longer finite: weights can stay finite while
    they diverge (~1e30 after one step at optim.lr=1e30), and a "last good checkpoint" must
    reconstruct finite images. One forward pass of a few images at checkpoint steps, on every rank
    (a sharded model needs them all), which then agree."""
    output, mean, logvar, z = model(probe, torch.zeros(len(probe), model.latents, device=probe.device))
    loss = objective(output, probe, mean, logvar, z, schedule)["loss"]
    if accelerator.reduce(torch.isfinite(loss).logical_not().float(), "sum").item():
        raise TrainingError(f"the weights after step {done} give a non-finite loss (they diverged: optim.lr?); not "
                            f"saved, stopped, last good checkpoint: {checkpoint.latest(ckpt_dir) or 'none yet'}")


def check_finite(metrics: dict, done: int, ckpt_dir: Path) -> None:
    """Stop before anything is saved from a run that went non-finite, naming the first bad step."""
    problem = non_finite(metrics, done)
    if problem:
        raise TrainingError(f"{problem}; stopped, last good checkpoint: {checkpoint.latest(ckpt_dir) or 'none yet'}")


def open_metrics_log(path: Path, start: int) -> TextIO:
    """A run's metrics.jsonl, to append to from step `start`. The lines of later steps (written
    after the checkpoint the run resumes from, before it was stopped) and a line cut short by a kill
    are dropped first, atomically, so that each step appears once."""
    if path.is_file():
        kept = []
        for line in path.read_text().splitlines(keepends=True):
            try:
                if line.endswith("\n") and json.loads(line)["step"] <= start:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                pass
        partial = path.with_name(path.name + ".partial")
        partial.write_text("".join(kept))
        os.replace(partial, path)
    return open(path, "a")


def record(values: dict, step: int, metrics_log, accelerator: Accelerator) -> None:
    """One line of the JSON-lines log (rank 0) and the trackers, where training's values go under
    train/ (evaluation's are eval/ already)."""
    if metrics_log:
        metrics_log.write(json.dumps({"step": step, **values}) + "\n")
        metrics_log.flush()
    accelerator.log({k if "/" in k else f"train/{k}": v for k, v in values.items()}, step=step)


def log_figures(accelerator: Accelerator, figures: dict[str, np.ndarray], step: int) -> None:
    """The run's figures in TensorBoard's image tab too (rank 0 holds the trackers)."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for name, image in figures.items():
                tracker.writer.add_image(name, image, step, dataformats="HWC")


def _summary(m: dict) -> str:
    return f"loss {m['loss']:.2f}  recon {m['recon']:.2f}  KL {m['kl']:.2f}  {m['img_per_s']:.0f} img/s"


def say(line: str) -> None:
    """One line on stderr in one write: the ranks share the launcher's stderr, and print's separate
    write of the newline let two ranks' lines run together."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    cfg = load_or_exit(sys.argv[1:] if argv is None else argv, "betavae_dist.train")
    try:
        train(cfg)
    except Preempted as e:
        if os.environ.get("RANK", "0") == "0":
            print(e, flush=True)
        raise SystemExit(PREEMPTED_EXIT_CODE) from None
    except ConfigError as e:
        say(f"betavae_dist.train: config error: {e}")
        raise SystemExit(2) from None
    except (TrainingError, LaunchError, DataError, ExportError, checkpoint.CheckpointError) as e:
        if not getattr(e, "quiet", False):  # one line per job where every rank raised the same
            say(f"betavae_dist.train: error: {e}")
            first_to_tell(Path(cfg.run_dir))  # this line is the cause: ranks that now lose this one stay quiet
        raise SystemExit(1) from None
    except RuntimeError as e:  # a collective that timed out or lost a peer: gloo and NCCL raise RuntimeErrors
        timed_out = "timed out" in str(e).lower() or "timeout" in str(e).lower()
        if not (timed_out or lost_peer(e)):
            raise
        rank, silent = os.environ.get("RANK", "0"), silent_ranks(Path(cfg.run_dir), int(os.environ.get("WORLD_SIZE", "1")))
        what = (f"waited train.collective_timeout={cfg.train.collective_timeout} s for another rank (frozen, killed or "
                f"unreachable): {silent or 'every rank still beats (the network?)'}" if timed_out else
                f"lost its connection to another rank: {silent or 'none on this host has ended (another node?)'}")
        if first_to_tell(Path(cfg.run_dir)):
            say(f"betavae_dist.train: error: rank {rank} {what}; stopping. Last good checkpoint: "
                f"{checkpoint.latest(Path(cfg.run_dir) / 'checkpoints') or 'none yet'}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
