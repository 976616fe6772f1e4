"""A β-VAE with free bits (Kingma et al. 2016) as an example of a new objective in one file, with
settings of its own: only the regulariser and its `Settings`.

regulariser = β · Σ_l max(free_bits, KL_l), KL_l the batch mean KL of latent l: a latent's KL
below `loss.free_bits` nats costs nothing more, so the encoder is not pushed to collapse it.
"""

from dataclasses import dataclass

import torch

from betavae_dist.config import setting
from betavae_dist.objectives import OBJECTIVES
from betavae_dist.objectives.base import LossConfig, Objective


@dataclass
class FreeBitsSettings(LossConfig):
    beta: float = setting(4.0, "weight of the KL", low=0)
    free_bits: float = setting(0.5, "nats of each latent's KL that cost nothing", low=0)


@OBJECTIVES.register("free_bits")
class FreeBits(Objective):
    Settings = FreeBitsSettings
    terms = (*Objective.terms, "kl_floored")
    mean_of_samples = False  # max(.) of batch means

    def regulariser(self, mean, logvar, z, kl, schedule):
        per_latent = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean(0)
        floored = torch.maximum(per_latent, torch.as_tensor(self.cfg.free_bits, dtype=per_latent.dtype)).sum()
        return self.cfg.beta * floored, {"kl_floored": floored}
