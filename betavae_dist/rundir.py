"""A run directory: every file of a run by name (`RunDir`), the checks before training writes into
it, its metrics.jsonl, and the record of a point that failed.

    RUN/config.yaml        the resolved config (what `resume=auto` compares against)
    RUN/metrics.jsonl      a line per log step (and per evaluation during training)
    RUN/checkpoints/step_N atomic, verified checkpoints (checkpoint/)
    RUN/export/            model.safetensors + config.json (export/), and the last evaluation's copy
    RUN/evaluation.json    the scores of the run's export (evaluate.py, sweep run)
    RUN/<figure>.png       reconstructions and traversals
    RUN/failed.json        a sweep point that failed: its step, problem and last good checkpoint
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import checkpoint
from .config import ConfigError, identity_changes, save_yaml
from .config_files import load
from .errors import BetaVAEError
from .export import EVALUATION

if TYPE_CHECKING:
    from .experiment import Config


class RunDir:
    """The files of the run in `path`, and the sequence that readies it for training."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoints = self.path / "checkpoints"
        self.export = self.path / "export"
        self.evaluation = self.path / EVALUATION
        self.failed = self.path / "failed.json"

    def __str__(self) -> str:
        return str(self.path)

    def figure(self, name: str) -> Path:
        return self.path / f"{name}.png"

    def last_checkpoint(self) -> Path | None:
        return checkpoint.latest(self.checkpoints)

    def refuse_another_run(self, cfg: Config) -> None:
        """`resume=auto` continues a run only under its own config (recorded in config.yaml): the
        schedule, logging and evaluation may change, not what is trained."""
        if cfg.train.resume != "auto" or not checkpoint.checkpoints(self.checkpoints) or not self.config.is_file():
            return
        changes = identity_changes(load(type(cfg), str(self.config), []), cfg)
        if changes:
            raise ConfigError(f"{self.path} holds a run with another config ({'; '.join(changes)}); "
                              "train.resume=force continues it under this one, or choose a new run_dir")

    def prepare(self, rank: int) -> None:
        """Every rank checks it can write the run directory, so none waits for a rank that failed;
        and that nothing in checkpoints/ takes a name a checkpoint will need (before training, not
        at the step that would need it)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{rank}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise TrainingError(f"cannot write the run directory {self.path} (run_dir): {e.strerror}") from None
        checkpoint.refuse_intruders(self.checkpoints)

    def save_config(self, cfg: Config) -> None:
        save_yaml(cfg, self.config)

    def open_metrics(self, start: int) -> TextIO:
        return open_metrics_log(self.metrics, start)

    def record_failure(self, problem: str, step: int | None) -> Path | None:
        """failed.json for a point that failed (a sweep leaves it out of later runs); returns its
        last good checkpoint."""
        last = self.last_checkpoint()
        self.failed.write_text(json.dumps({"step": step, "problem": problem,
                                           "last_good_checkpoint": str(last) if last else None}))
        return last

    def failure(self) -> dict | None:
        """failed.json, if the run failed."""
        return json.loads(self.failed.read_text()) if self.failed.is_file() else None


class TrainingError(BetaVAEError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is untouched."""


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


