"""What a run decides once, before its first step, for a solo run (one point) and a pack (K points)
alike: how the global batch splits (data/batches.Batching), each point's objective and run
directory, and whether the step is one CUDA graph (and if not, why). The data, the step and the
checkpoint code take it from here and compute none of it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .data.batches import Batching
from .objectives import build_objective
from .objectives.base import Objective
from .optim import CAPTURABLE
from .rundir import RunDir

if TYPE_CHECKING:
    from .experiment import Config


@dataclass
class Plan:
    cfgs: list[Config]  # each point's config; the points share all but their seed, run_dir and loss settings
    dirs: list[RunDir]
    batching: Batching
    objectives: list[Objective]  # one instance per point, built once
    device: torch.device
    why_eager: str | None  # None: the step is one CUDA graph (if its capture works)

    @property
    def cfg(self) -> Config:
        """What the points share (pack/train.py's pack_key)."""
        return self.cfgs[0]

    def eager_line(self, why: str | None) -> str | None:
        """The line that says the step runs eagerly and `why` (`why_eager`, or a failed capture's
        reason), where one is due: on a GPU with train.cuda_graph=auto, or with =on anywhere."""
        mode = self.cfg.train.cuda_graph
        if why and (mode == "on" or (mode == "auto" and self.device.type == "cuda")):
            return f"CUDA graph off, eager steps: {why}"
        return None


def make_plan(cfgs: list[Config], device: torch.device, world: int = 1, rank: int = 0,
              launch_obstacle: str | None = None) -> Plan:
    """The plan of the points `cfgs` on `world` ranks (a pack: one); `launch_obstacle`: why the
    launch rules out a CUDA graph (DDP, DeepSpeed, fp16 loss scaling), if it does."""
    cfg = cfgs[0]
    why_eager = ("train.cuda_graph=off" if cfg.train.cuda_graph == "off" else
                 "not on a GPU" if device.type != "cuda" else launch_obstacle or (
                     f"optim.name={cfg.optim.name} keeps its step count on the host" if cfg.optim.name not in CAPTURABLE
                     else None))
    return Plan(cfgs, [RunDir(c.run_dir) for c in cfgs], Batching.of(cfg.train, world, rank),
                [build_objective(c.loss, c.model) for c in cfgs], device, why_eager)
