"""β-VAE objectives, computed in fp32 whatever the autocast dtype.

Conventions: the reconstruction term is the negative log-likelihood summed over pixels and the
KL is summed over latents; both are then averaged over the batch. With this convention `beta` is
the paper's unnormalised β. Higgins et al. also quote β_norm = β·M/N (M latents, N pixels):
β = 4 with 10 latents on 64x64 dSprites is β_norm ≈ 0.0098. Code that averages the
reconstruction over pixels instead needs β/N for the same trade-off.

- "H" (Higgins et al. 2017): recon + β·KL; β = 1 is the plain VAE.
- "B" (Burgess et al. 2018): recon + γ·|KL − C|, with the capacity C rising linearly from 0 to
  C_max over `capacity_steps` optimiser steps. C is a function of the global step alone, so it is
  right after a resume and identical on every rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import LossConfig, ModelConfig


def reconstruction_nll(output: torch.Tensor, x: torch.Tensor, likelihood: str, gaussian_std: float) -> torch.Tensor:
    """Per-sample negative log-likelihood, summed over pixels.

    bernoulli: `output` are logits. gaussian: `output` are means with a fixed std; the constant
    log(std·sqrt(2π)) per pixel is dropped, so std = 1/sqrt(2) gives the summed squared error.
    """
    output, x = output.float(), x.float()
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(output, x, reduction="none")
    elif likelihood == "gaussian":
        nll = (output - x).square() / (2.0 * gaussian_std**2)
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    return nll.flatten(1).sum(1)


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(N(mean, exp(logvar)) || N(0, I)), summed over latents."""
    mean, logvar = mean.float(), logvar.float()
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(1)


def capacity(step: int, loss_cfg: LossConfig) -> float:
    """Target KL of objective "B" at a global optimiser step."""
    return loss_cfg.capacity_max * min(1.0, step / loss_cfg.capacity_steps)


def beta_vae_loss(
    output: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    target_kl: float | torch.Tensor,
    loss_cfg: LossConfig,
    model_cfg: ModelConfig,
) -> dict[str, torch.Tensor]:
    """Loss to minimise plus its parts, each a batch mean in fp32. `target_kl` is objective B's C
    at this step, `capacity(step, loss_cfg)`: a number, or a 0-dim fp32 tensor that a CUDA graph
    refills each step (the same fp32 value either way)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        recon = reconstruction_nll(output, x, model_cfg.likelihood, model_cfg.gaussian_std).mean()
        kl = kl_to_standard_normal(mean, logvar).mean()
        if loss_cfg.objective == "H":
            loss = recon + loss_cfg.beta * kl
        elif loss_cfg.objective == "B":
            loss = recon + loss_cfg.gamma * (kl - target_kl).abs()
        else:
            raise ValueError(f"unknown objective {loss_cfg.objective!r}")
    return {"loss": loss, "recon": recon, "kl": kl}

