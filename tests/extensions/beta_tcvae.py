"""β-TCVAE (Chen et al. 2018) as an example of a new objective in one file: only the regulariser.

KL + (β − 1)·TC, with the total correlation TC estimated on the batch by minibatch-weighted
sampling, as disentanglement_lib's `BetaTCVAE` does; TC is logged beside loss, recon and kl.
"""

import math

import torch

from betavae_dist.objectives import OBJECTIVES
from betavae_dist.objectives.base import Objective


def gaussian_log_density(z, mean, logvar):
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mean).square() * torch.exp(-logvar))


def total_correlation(z, mean, logvar):
    """log q(z) − Σ_j log q(z_j), each q estimated from the batch's posteriors."""
    log_q = gaussian_log_density(z[:, None], mean[None], logvar[None])  # (sample, posterior, latent)
    log_qz = torch.logsumexp(log_q.sum(2), dim=1)
    log_qz_product = torch.logsumexp(log_q, dim=1).sum(1)
    return (log_qz - log_qz_product).mean()


@OBJECTIVES.register("beta_tc")
class BetaTC(Objective):
    terms = (*Objective.terms, "tc")

    def regulariser(self, mean, logvar, z, kl, schedule):
        tc = total_correlation(z, mean, logvar)
        return kl + (self.cfg.beta - 1.0) * tc, {"tc": tc}
