"""β-TCVAE (Chen et al. 2018), as disentanglement_lib's `BetaTCVAE` (methods/unsupervised/vae.py:
`gaussian_log_density`, `total_correlation`): regulariser = KL + (β − 1)·TC, the ELBO plus
(1 − β)·TC of the paper's equation 4 with α = γ = 1.

TC, the total correlation of the aggregate posterior, is estimated on the batch by minibatch-
weighted sampling without its constant, and logged as `tc`. disentanglement_lib's study: β in 1,
2, 4, 6, 8, 10. The estimate is a batch statistic (each sample's code against every posterior of
the batch), not a mean of per-sample terms: ranks and gradient accumulation change it, so 1 and n
ranks do not train the same model.
"""

from __future__ import annotations

import math

import torch

from .base import Objective
from .settings import BetaTCVAESettings


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((z - mean).square() * torch.exp(-logvar) + logvar + math.log(2 * math.pi))


def total_correlation(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """E_j[log q(z_j) − Σ_l log q(z_jl)], each q estimated from the batch's posteriors."""
    log_q = gaussian_log_density(z[:, None], mean[None], logvar[None])  # (sample j, posterior i, latent l)
    log_qz_product = torch.logsumexp(log_q, dim=1).sum(1)
    log_qz = torch.logsumexp(log_q.sum(2), dim=1)
    return (log_qz - log_qz_product).mean()


class BetaTCVAE(Objective):
    Settings = BetaTCVAESettings
    terms = (*Objective.terms, "tc")
    mean_of_samples = False  # a batch estimate

    def regulariser(self, mean, logvar, z, kl, schedule):
        tc = total_correlation(z, mean, logvar)
        return kl + (self.cfg.beta - 1.0) * tc, {"tc": tc}
