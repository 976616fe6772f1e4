"""The training loop's settings (`train.*`); the loop itself is loop.py. Nothing heavy is imported
here, so that composing or checking a config does not load the engine."""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError, comma_list, setting

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
        if not self.trackers:
            return
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS  # only to check named trackers: accelerate is heavy

        known = ("all", *LOGGER_TYPE_TO_CLASS)
        unknown = [t for t in self.trackers if t not in known]
        if unknown:
            raise ConfigError(f"train.report_to: unknown tracker {unknown[0]!r}; choose from {', '.join(known)}")
