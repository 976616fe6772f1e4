"""The `optim` section: the optimiser's settings, and the optimisers it names (built in optim.py)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import setting
from .registry import Lazy, Registry

OPTIMIZERS = Registry("optimiser", {name: Lazy(f"betavae_dist.optim:{name}") for name in ("adam", "adamw", "adagrad", "sgd")})


@dataclass
class OptimConfig:
    name: str = setting("adam", "the optimiser", choices=OPTIMIZERS)
    lr: float = setting(5e-4, "learning rate", positive=True)
    beta1: float = setting(0.9, "Adam's first-moment decay; SGD's momentum", low=0, high=0.999999, allowed="in [0, 1)")
    beta2: float = setting(0.999, "Adam's second-moment decay", low=0, high=0.999999, allowed="in [0, 1)")
    weight_decay: float = setting(0.0, "L2 penalty (decoupled for adamw)", low=0)
    grad_clip: float = setting(0.0, "max global grad norm; 0 disables clipping", low=0, allowed=">= 0 (0 = off)")
