"""β-VAE (Higgins et al. 2017): recon + β·KL; β = 1 is the plain VAE."""

from __future__ import annotations

from .base import Objective
from .settings import BetaSettings


class Beta(Objective):
    Settings = BetaSettings

    def regulariser(self, mean, logvar, z, kl, schedule):
        return self.cfg.beta * kl, {}
