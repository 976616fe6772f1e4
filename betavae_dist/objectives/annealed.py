"""Capacity-annealed β-VAE (Burgess et al. 2018): recon + γ·|KL − C|, with the capacity C rising
linearly from 0 to `loss.capacity_max` over `loss.capacity_steps` optimiser steps.

disentanglement_lib's `AnnealedVAE` (methods/unsupervised/vae.py) is the same regulariser with
its settings `gamma`, `c_max` and `iteration_threshold`; its study: γ = 1,000, c_max in 5, 10, 25,
50, 75, 100 and 100,000 steps (configs/study/annealed.yaml).
"""

from __future__ import annotations

from .base import Objective
from .settings import AnnealedSettings


class Annealed(Objective):
    Settings = AnnealedSettings
    mean_of_samples = False  # |KL - C| of each micro-batch's mean KL: ranks and accumulation change it

    def schedule(self, step: int) -> dict[str, float]:
        return {"capacity": self.cfg.capacity_max * min(1.0, step / self.cfg.capacity_steps)}

    def regulariser(self, mean, logvar, z, kl, schedule):
        return self.cfg.gamma * (kl - schedule["capacity"]).abs(), {}
