"""Progress for a terminal and for a log file.

On a terminal, rich's live bars. Elsewhere (SLURM's slurm-*.out, nohup, CI) a live bar shows
nothing until the end, so `Lines` prints plain lines instead: a task's line at most every `every`
seconds, and whenever it reaches its total. Training asks for every=0, a line per log step (step,
stats, ETA); the evaluator keeps 30 s (images encoded of those requested so far; each metric).
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Lines:
    """The part of rich's `Progress` the trainers and the evaluator use, as plain lines on stdout."""

    def __init__(self, disable: bool = False, every: float = 30.0):
        """`every`: the fewest seconds between two lines of a task, except the line that ends it."""
        self.disable, self.every, self.tasks = disable, every, []
        self.console = self  # progress.console.print(...) prints a line

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def print(self, text: str) -> None:
        if not self.disable:
            print(text, flush=True)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        now = time.monotonic()
        self.tasks.append(dict(description=description, total=total, completed=completed, start=completed,
                               began=now, said=now, fields=fields))
        return len(self.tasks) - 1

    def advance(self, task: int, amount: float = 1) -> None:
        self.update(task, completed=self.tasks[task]["completed"] + amount)

    def update(self, task: int, completed: float | None = None, total: float | None = None, **fields) -> None:
        t = self.tasks[task]
        t["fields"].update(fields)
        t["completed"] = t["completed"] if completed is None else completed
        t["total"] = t["total"] if total is None else total
        done = t["total"] is not None and t["completed"] >= t["total"] > 0
        if (completed is not None and done) or time.monotonic() - t["said"] >= self.every:
            self._say(task)

    def _say(self, task: int) -> None:
        t = self.tasks[task]
        t["said"] = now = time.monotonic()
        elapsed, total = now - t["began"], t["total"]
        count = f"{t['completed']:,.0f}" + (f"/{total:,.0f}" if total is not None else "")
        parts = [f"{t['description']} {count}", *(str(v) for v in t["fields"].values() if v != "")]
        if total is not None and t["completed"] >= total:
            parts.append(f"done in {timedelta(seconds=round(elapsed))}")
        elif total is not None and t["completed"] > t["start"]:
            left = elapsed * (total - t["completed"]) / (t["completed"] - t["start"])
            parts.append(f"ETA {timedelta(seconds=round(left))}")
        else:
            parts.append(f"after {timedelta(seconds=round(elapsed))}")
        self.print("  ".join(parts))


def make_progress(*columns, disable: bool = False, every: float = 30.0) -> Progress | Lines:
    """rich's live `Progress` with these columns on a terminal, else `Lines` (`every`: see Lines)."""
    if sys.stdout.isatty():
        return Progress(*columns, disable=disable)
    return Lines(disable=disable, every=every)


def evaluation_progress(disable: bool = False) -> Progress | Lines:
    """The evaluator's progress (images encoded, each metric's points, the fits): bars on a terminal,
    a line at most every 30 s per task in a log file."""
    return make_progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         disable=disable)
