"""Capacity-annealed β-VAE (Burgess et al. 2018): recon + γ·|KL − C|, with the capacity C rising
linearly from 0 to `loss.capacity_max` over `loss.capacity_steps` optimiser steps.

disentanglement_lib's `AnnealedVAE` (methods/unsupervised/vae.py) is the same regulariser with
its settings `gamma`, `c_max` and `iteration_threshold`; its study: γ = 1,000, c_max in 5, 10, 25,
50, 75, 100 and 100,000 steps (configs/study/annealed.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import setting
from .base import LossConfig, Objective


@dataclass
class AnnealedSettings(LossConfig):
    gamma: float = setting(1000.0, "weight of |KL - C|", low=0)
    capacity_max: float = setting(25.0, "final capacity C, in nats (disentanglement_lib: c_max)", low=0)
    capacity_steps: int = setting(100_000, "C rises linearly from 0 to capacity_max over this many steps "
                                  "(disentanglement_lib: iteration_threshold)", positive=True)


class Annealed(Objective):
    Settings = AnnealedSettings
    mean_of_samples = False  # |KL - C| of each micro-batch's mean KL: ranks and accumulation change it

    def schedule(self, step: int) -> dict[str, float]:
        return {"capacity": self.cfg.capacity_max * min(1.0, step / self.cfg.capacity_steps)}

    def regulariser(self, mean, logvar, z, kl, schedule):
        return self.cfg.gamma * (kl - schedule["capacity"]).abs(), {}
