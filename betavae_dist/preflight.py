"""The checks of a training run that need no process group: each rank runs them first, and
`betavae_dist.launch` before it starts any rank (so it imports no more than these need)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate.tracking import get_available_trackers

from .config import ConfigError
from .data.batches import Batching
from .models import activation_bytes
from .rundir import RunDir

if TYPE_CHECKING:
    from .experiment import Config


def preflight(cfg: Config, world_size: int) -> None:
    """The trackers named are installed, a micro-batch on `world_size` ranks fits in memory, the run
    directory holds no other run, and a checkpoint directory that train.resume names exists."""
    missing = [t for t in cfg.train.trackers if t != "all" and t not in map(str, get_available_trackers())]
    if missing:
        raise ConfigError(f"train.report_to={missing[0]} needs its package: pip install {missing[0]}")
    check_memory(cfg, Batching.of(cfg.train, world_size).micro)
    RunDir(cfg.run_dir).refuse_another_run(cfg)
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
