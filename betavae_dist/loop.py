"""The training loop, one for solo runs and packs (its settings, `train.*`: train_config.py).

`train_loop(run, start, stop)` owns the cadence (log, checkpoint, evaluate, stop), the single
statistics read per such step, the finite checks and the failure policy, and metrics.jsonl. What
it trains is a `Run`: solo.py's one model (any number of ranks, DDP or DeepSpeed, eager or one CUDA
graph) or pack/train.py's K points in one process; a solo run is a pack of one point.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, TextIO

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .progress import Lines, make_progress
from .rundir import TrainingError
from .stepstats import StepStats, non_finite
from .stopping import PREEMPTED_EXIT_CODE, Preempted, StopPoll, StopSignal

if TYPE_CHECKING:
    from .plan import Plan

class Run:
    """What the loop trains: one model (solo.py, any number of ranks) or the K points of a pack
    (pack/train.py, one process); point k is `plan.cfgs[k]`, and a solo run is a pack of one. An
    implementation sets `plan`, `stats`, `optimizer` and `description` and writes `step`, `read`,
    `sound`, `fail`, `save` and `finish`; the rest have defaults for one process that evaluates
    at the end and logs to metrics.jsonl only."""

    plan: Plan
    stats: StepStats
    optimizer: torch.optim.Optimizer
    description: str  # how it steps, for the banner
    is_main = True  # the process that writes logs and prints
    ranks = 1

    @property
    def cfgs(self) -> list:
        return self.plan.cfgs

    @property
    def device(self) -> torch.device:
        return self.plan.device

    @property
    def terms(self) -> tuple[str, ...]:
        """The statistics logged: the objective's terms and grad_norm."""
        return self.stats.terms

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, step: int) -> list[dict]:
        """One optimiser step; each point's schedule values at it (logged)."""
        raise NotImplementedError

    def read(self, stop: bool) -> tuple[list[dict], bool]:
        """Each point's statistics since the last `reset` (StepStats.read), and whether any rank
        wants to stop (`stop`: this one does). The one host read; every rank calls it at the same step.
        A point's `extra` values (each latent's KL, skipped samples) are logged with its terms."""
        raise NotImplementedError

    def reset(self) -> None:
        """Start the next window of statistics."""
        self.stats.reset()

    def sound(self) -> list[bool]:
        """Whether each point's weights still give a finite loss (finite weights can have diverged)."""
        raise NotImplementedError

    def fail(self, k: int, problem: str, done: int) -> None:
        """Point k failed after step `done`: a solo run raises TrainingError, a pack freezes the point."""
        raise NotImplementedError

    def save(self, done: int, alive: list[bool]) -> None:
        """A checkpoint of every live point at step `done`."""
        raise NotImplementedError

    def evaluate(self, done: int) -> dict:
        """The metrics during training, after step `done` (eval.every; packs are evaluated at the end)."""
        return {}

    def track(self, values: dict, done: int) -> None:
        """Values for the trackers (TensorBoard, ...), besides metrics.jsonl."""

    def preempt(self) -> None:
        """Let go of what a stop leaves behind (DeepSpeed's engine), before Preempted is raised."""

    def finish(self, alive: list[bool]) -> None:
        """Export and draw each live point at the end."""
        raise NotImplementedError


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
        logs = [files.enter_context(d.open_metrics(start)) if run.is_main else None for d in run.plan.dirs]
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
                for log, line in zip(logs, lines):
                    if line is not None:
                        write_line(log, line, done)
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
