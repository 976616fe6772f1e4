"""FactorVAE (Kim & Mnih 2018), as disentanglement_lib's `FactorVAE` (methods/unsupervised/vae.py:
`shuffle_codes`, `FactorVAE.model_fn`; methods/shared/architectures.py: `fc_discriminator`,
`make_discriminator`).

A discriminator (an MLP of 6 x 1,000 leaky-ReLU units, 2 logits) learns to tell a batch's sampled
codes from the same codes with each latent shuffled across the batch (a sample of the product of
the marginals); its logits estimate the total correlation, TC = E[logit_0 - logit_1], and the VAE
minimises recon + KL + γ·TC. Both are trained in one step from one forward pass, as
disentanglement_lib's grouped train ops: the VAE on its loss (the discriminator's weights frozen
for it), the discriminator on −(½·E log D(z)_0 + ½·E log D(shuffled z)_1) (the codes frozen for
it), with its own Adam settings (lr 1e-4, betas 0.5 / 0.9): a parameter group of the run's
optimiser, which is the same as a second Adam (Adam is elementwise, its step count per parameter).

The discriminator is part of the model (`critic.*`: in checkpoints, so a run resumes exactly, and
in the CUDA graph and the pack's stacked parameters), not of the export. The shuffle is drawn from
the step's noise (`noise_columns`), so it is the same packed or solo, after a resume, on any device.
TC and the discriminator's loss are batch statistics (the shuffle stays within a micro-batch): 1
and n ranks, or accumulation, train other models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Objective
from .settings import FactorVAESettings

WIDTH, DEPTH = 1000, 6  # fc_discriminator
LEAK = 0.2  # tf.nn.leaky_relu's alpha


def discriminator(latents: int) -> nn.Module:
    layers, width = [], latents
    for _ in range(DEPTH):
        layers += [nn.Linear(width, WIDTH), nn.LeakyReLU(LEAK)]
        width = WIDTH
    return nn.Sequential(*layers, nn.Linear(width, 2))


def shuffle_codes(z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Each latent's column of z permuted across the batch by its own permutation, the ranks of an
    independent column of `keys` (random, the shape of z)."""
    return z.gather(0, keys.argsort(0))


def clipped_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log of make_discriminator's softmax clipped to [1e-6, 1 - 1e-6]."""
    return torch.log(F.softmax(logits, 1).clamp(1e-6, 1 - 1e-6))


class FactorVAE(Objective):
    Settings = FactorVAESettings
    terms = (*Objective.terms, "tc", "discriminator")
    trained_terms = ("discriminator",)  # minimised too, by the discriminator's parameters alone
    shared_settings = ("critic_lr", "critic_beta1", "critic_beta2")  # one parameter group for a pack's critics
    mean_of_samples = False  # batch statistics

    @staticmethod
    def critic(latents: int) -> nn.Module:
        return discriminator(latents)

    def noise_columns(self, latents: int) -> int:
        return latents  # keys of the shuffle

    def critic_group(self) -> dict:
        return {"lr": self.cfg.critic_lr, "betas": (self.cfg.critic_beta1, self.cfg.critic_beta2)}

    def regulariser(self, mean, logvar, z, kl, schedule):
        logits = self.judge(z, frozen=True)  # the VAE's gradient does not train the discriminator
        tc = (logits[:, 0] - logits[:, 1]).mean()
        codes = z.detach()  # the discriminator's gradient does not train the encoder
        real = clipped_log_probs(self.judge(codes, frozen=False))[:, 0].mean()
        shuffled = clipped_log_probs(self.judge(shuffle_codes(codes, schedule["noise"]), frozen=False))[:, 1].mean()
        return kl + self.cfg.gamma * tc, {"tc": tc, "discriminator": -(0.5 * real + 0.5 * shuffled)}
