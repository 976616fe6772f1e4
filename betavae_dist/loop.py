"""The training loop, one for solo runs and packs, and its settings (`train.*`).

`train_loop(run, start, stop)` owns the cadence (log, checkpoint, evaluate, stop), the single
statistics read per such step, the finite checks and the failure policy, and metrics.jsonl. What
it trains is a `Run`: solo.py's one model (any number of ranks, DDP or DeepSpeed, eager or one CUDA
graph) or pack/train.py's K points in one process; a solo run is a pack of one point.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

import torch
from accelerate.tracking import LOGGER_TYPE_TO_CLASS
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .config import ConfigError, comma_list, setting
from .progress import Lines, make_progress
from .rundir import TrainingError, open_metrics_log
from .step import non_finite
from .stopping import PREEMPTED_EXIT_CODE, Preempted, StopPoll, StopSignal

MAX_BATCH = 1 << 20


@dataclass
class TrainConfig:
    steps: int = setting(10_000, "optimiser steps in all", positive=True, resumable=True)
    batch_size: int = setting(64, "global batch per optimiser step, whatever the number of ranks", low=1, high=MAX_BATCH,
                              positive=True)
    grad_accum: int = setting(1, "micro-batches per optimiser step on each rank", positive=True, resumable=True)
    log_every: int = setting(50, "steps between lines of metrics.jsonl", positive=True, resumable=True)
    ckpt_every: int = setting(1000, "steps between checkpoints", positive=True, resumable=True)
    keep_checkpoints: int = setting(3, "newest checkpoints kept", positive=True, resumable=True)
    resume: str = setting("auto", "auto: newest verified checkpoint, same config only; force: any config; none; or a "
                          "path", resumable=True)
    report_to: str = setting("", "trackers (accelerate's names, comma-separated: tensorboard, wandb, mlflow, ...) or "
                             "all", resumable=True)
    progress: bool = setting(True, "rank 0: a progress bar on a terminal, a line per log step in a log file",
                             resumable=True)
    cuda_graph: str = setting("auto", "\"auto\" (one process on one GPU), \"on\" (say why when it cannot), \"off\"",
                              choices=("auto", "on", "off"), resumable=True)
    collective_timeout: int = setting(300, "seconds a rank waits for the others (a frozen or lost peer) before "
                                      "stopping", positive=True, resumable=True)

    @property
    def trackers(self) -> list[str]:
        return comma_list(self.report_to)

    def check(self) -> None:
        known = ("all", *LOGGER_TYPE_TO_CLASS)
        unknown = [t for t in self.trackers if t not in known]
        if unknown:
            raise ConfigError(f"train.report_to: unknown tracker {unknown[0]!r}; choose from {', '.join(known)}")


class Run(Protocol):
    """What the loop trains: one model (solo.py, any number of ranks) or the K points of a pack
    (pack/train.py, one process). Point k of `cfgs` is model k; a solo run is a pack of one."""

    cfgs: list  # each point's Config
    is_main: bool  # the process that writes logs and prints
    ranks: int
    device: torch.device
    description: str  # how it steps, for the banner
    terms: tuple[str, ...]  # the statistics logged: the objective's terms and grad_norm

    def step(self, step: int) -> list[dict]:
        """One optimiser step; each point's schedule values at it (logged)."""

    def read(self, stop: bool) -> tuple[list[dict], bool]:
        """Each point's statistics since the last `reset` (step.StepStats), and whether any rank
        wants to stop (`stop`: this one does). The one host read; every rank calls it at the same step.
        A point's `extra` values (a solo run's latent KLs) are logged with its terms."""

    def reset(self) -> None:
        """Start the next window of statistics."""

    def sound(self) -> list[bool]:
        """Whether each point's weights still give a finite loss (finite weights can have diverged)."""

    def fail(self, k: int, problem: str, done: int) -> None:
        """Point k failed after step `done`: a solo run raises TrainingError, a pack freezes the point."""

    def save(self, done: int, alive: list[bool]) -> None:
        """A checkpoint of every live point at step `done`."""

    def evaluate(self, done: int) -> dict:
        """The metrics during training, after step `done` (solo runs; packs are evaluated at the end)."""

    def track(self, values: dict, done: int) -> None:
        """Values for the trackers (TensorBoard, ...), besides metrics.jsonl."""

    def preempt(self) -> None:
        """Let go of what a stop leaves behind (DeepSpeed's engine), before Preempted is raised."""

    def finish(self, alive: list[bool]) -> None:
        """Export and draw each live point at the end."""

    @property
    def lr(self) -> float: ...


def progress_bar(enabled: bool) -> Progress | Lines:
    """A live bar on a terminal; in a log file, a line per log step (progress.py)."""
    return make_progress(TextColumn("step"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[stats]}"),
                         TimeRemainingColumn(), disable=not enabled, every=0)  # log steps set the pace


def summary(lines: list[dict | None], rate: float, terms: tuple[str, ...]) -> str:
    """The progress bar's text: a point's loss terms (the objective's own too: β-TCVAE's tc, ...),
    or how many points of a pack are alive."""
    if len(lines) == 1:
        m = lines[0]
        shown = "  ".join(f"{'KL' if t == 'kl' else t} {m[t]:.2f}" for t in terms if t != "grad_norm")
        active = f"  active {m['active_latents']}/{len(m['kl_latents'])}" if "kl_latents" in m else ""
        return f"{shown}{active}  {rate:.0f} img/s"
    alive = sum(line is not None for line in lines)
    return f"{alive}/{len(lines)} points  {alive * rate:.0f} img/s in all"


def train_loop(run: Run, start: int, stop: StopSignal) -> list[bool]:
    """Train `run` from step `start` to `train.steps`: the cadence of logs, checkpoints, evaluations
    and stops, the finite checks and the failure policy. Nothing is read back from the device at an
    ordinary step. Returns which points are alive at the end."""
    cfg = run.cfgs[0]
    steps, size = cfg.train.steps, len(run.cfgs)
    poll, alive = StopPoll(stop, run.ranks, run.device), [True] * size
    with ExitStack() as files, progress_bar(run.is_main and cfg.train.progress) as progress:
        logs = [files.enter_context(open_metrics_log(Path(c.run_dir) / "metrics.jsonl", start)) if run.is_main else None
                for c in run.cfgs]
        task = progress.add_task("step", total=steps, completed=start, stats="")
        window_start, window_steps = time.perf_counter(), 0
        for step in range(start, steps):
            schedules = run.step(step)
            done, window_steps = step + 1, window_steps + 1
            last = done == steps
            log_now = done % cfg.train.log_every == 0 or last
            save_now = done % cfg.train.ckpt_every == 0 or last
            eval_now = cfg.eval.every and (done % cfg.eval.every == 0 or last)
            if not (log_now or save_now or eval_now or poll()):
                continue  # an ordinary step
            points, stop_now = run.read(stop.received is not None)
            sound = run.sound() if save_now or stop_now else [True] * size
            for k, point in enumerate(points):
                problem = alive[k] and (non_finite(point, done) or (not sound[k] and (
                    f"the weights after step {done} give a non-finite loss (they diverged: optim.lr?); not saved")))
                if problem:
                    alive[k] = False
                    run.fail(k, problem, done)
            if not any(alive):
                raise TrainingError("every point of the pack failed (see the lines above)")
            if log_now:
                elapsed = time.perf_counter() - window_start  # after the read, so the device's work is in it
                rate = window_steps * cfg.train.batch_size / elapsed
                lines = [dict({name: point[name] for name in run.terms}, img_per_s=rate, lr=run.lr, **schedule,
                              **point.get("extra", {})) if alive[k] else None
                         for k, (point, schedule) in enumerate(zip(points, schedules))]
                for k, line in enumerate(lines):
                    if line is None:
                        continue
                    if cfg.data.source == "webdataset":  # bad samples skipped this epoch, all ranks
                        line["data_skipped"] = points[k]["data_skipped"]
                    write_line(logs[k], line, done)
                    run.track(line, done)
                progress.update(task, completed=done, stats=summary(lines, rate, run.terms))
                run.reset()
                window_start, window_steps = time.perf_counter(), 0
            if save_now or stop_now:
                with stop.writing():
                    run.save(done, alive)
            if stop_now:
                run.preempt()
                raise Preempted(f"stop signal: checkpoint{'s' * (size > 1)} at step {done} written; exit "
                                f"{PREEMPTED_EXIT_CODE}: the same command resumes from {'them' if size > 1 else 'it'}")
            if eval_now:
                eval_start = time.perf_counter()
                scores = {f"eval/{k}": v for k, v in run.evaluate(done).items() if isinstance(v, (int, float))}
                window_start += time.perf_counter() - eval_start  # keep img/s about training
                write_line(logs[0], scores, done)
                run.track(scores, done)
                if run.is_main:  # a disabled bar's console still prints
                    progress.console.print(f"step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
    return alive


def write_line(log: TextIO | None, values: dict, step: int) -> None:
    """One line of a point's metrics.jsonl (the main process holds the files)."""
    if log is not None:
        log.write(json.dumps({"step": step, **values}) + "\n")
        log.flush()
