"""DIP-VAE-I and DIP-VAE-II (Kumar et al. 2018), as disentanglement_lib's `DIPVAE`
(methods/unsupervised/vae.py: `compute_covariance_z_mean`, `regularize_diag_off_diag_dip`).

regulariser = KL + lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2, with C the
covariance over the batch of the encoder means (I), or of the aggregate posterior,
E[diag exp(logvar)] + cov(means) (II); lambda_d = `loss.lambda_d_factor` x `loss.lambda_od`
(disentanglement_lib's study: lambda_od in 1, 2, 5, 10, 20, 50; the factor 10 for I, 1 for II).
C is a batch statistic, not a mean of per-sample terms: ranks and gradient accumulation change it
(each micro-batch's own covariance), so 1 and n ranks do not train the same model.
"""

from __future__ import annotations

import torch

from .base import Objective
from .settings import DIPIISettings, DIPSettings


def covariance(x: torch.Tensor) -> torch.Tensor:
    """(latents, latents) covariance over the batch, E[x x^T] - E[x] E[x]^T, as disentanglement_lib computes it."""
    mean = x.mean(0)
    return (x[:, :, None] * x[:, None, :]).mean(0) - mean[:, None] * mean[None, :]


def off_diagonal_penalty(c: torch.Tensor, lambda_od, lambda_d) -> torch.Tensor:
    diagonal = torch.diagonal(c)
    return lambda_od * (c - torch.diag(diagonal)).square().sum() + lambda_d * (diagonal - 1).square().sum()


class DIPVAEI(Objective):
    Settings = DIPSettings
    terms = (*Objective.terms, "dip")
    mean_of_samples = False  # a batch covariance

    def covariance(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return covariance(mean)

    def regulariser(self, mean, logvar, z, kl, schedule):
        dip = off_diagonal_penalty(self.covariance(mean, logvar), self.cfg.lambda_od,
                                   self.cfg.lambda_d_factor * self.cfg.lambda_od)
        return kl + dip, {"dip": dip}


class DIPVAEII(DIPVAEI):
    Settings = DIPIISettings

    def covariance(self, mean, logvar):
        return torch.diag(logvar.exp().mean(0)) + covariance(mean)
