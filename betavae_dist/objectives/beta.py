"""β-VAE (Higgins et al. 2017): recon + β·KL; β = 1 is the plain VAE."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import setting
from .base import LossConfig, Objective


@dataclass
class BetaSettings(LossConfig):
    beta: float = setting(4.0, "weight of the KL; 1 is the plain VAE", low=0)


class Beta(Objective):
    Settings = BetaSettings

    def regulariser(self, mean, logvar, z, kl, schedule):
        return self.cfg.beta * kl, {}
