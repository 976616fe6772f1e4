"""The objective every method shares: reconstruction plus a regulariser that subclasses override.

Conventions: the reconstruction term is the negative log-likelihood summed over pixels and the
KL is summed over latents; both are then averaged over the batch, in fp32 whatever the autocast
dtype. With this convention β is the paper's unnormalised β. Higgins et al. also quote
β_norm = β·M/N (M latents, N pixels): β = 4 with 10 latents on 64x64 dSprites is β_norm ≈ 0.0098.
Code that averages the reconstruction over pixels instead needs β/N for the same trade-off.

As in disentanglement_lib's `methods/unsupervised/vae.py`, a method is a subclass that overrides
`regulariser` only (and `schedule`, if the regulariser depends on the training step), and declares
its hyperparameters as its `Settings`, a subclass of `LossConfig` (`loss.<name>` in configs; in a
pack, each point's float settings are its own). The engine averages, all-reduces and logs every
term named in `terms`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from ..config import setting
from ..registry import Registry
from .likelihoods import LIKELIHOODS

if TYPE_CHECKING:
    from ..models import ModelConfig


# The objectives by the name `loss.objective` gives; objectives/__init__.py lists the built-in ones.
OBJECTIVES = Registry("objective")


@dataclass
class LossConfig:
    """The `loss` section: `objective` names the method, and the section then holds that method's
    own settings (its `Settings`, a subclass of this)."""

    SWITCH: ClassVar[str] = "objective"
    objective: str = setting("beta", "the method (objectives/); the keys below marked with it are its settings",
                             choices=OBJECTIVES)

    @staticmethod
    def variant(name: str) -> type[LossConfig]:
        return OBJECTIVES[name].Settings

Scalar = float | torch.Tensor  # a schedule value: a number, or a 0-dim fp32 tensor a CUDA graph refills


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(N(mean, exp(logvar)) || N(0, I)), summed over latents."""
    mean, logvar = mean.float(), logvar.float()
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(1)


class Objective:
    """loss = recon + regulariser; `__call__` returns every term of `terms`, each a batch mean."""

    Settings: ClassVar[type[LossConfig]] = LossConfig  # the method's hyperparameters: loss.<name>

    terms: tuple[str, ...] = ("loss", "recon", "kl")  # logged, in this order; subclasses may add theirs
    # The loss is a mean of per-sample terms, so a batch split over ranks or micro-batches gives the
    # gradient of the whole batch. False for a penalty of a batch mean (|KL - C|): the trainer says so.
    mean_of_samples: bool = True

    def __init__(self, loss: LossConfig, model: ModelConfig):
        self.cfg, self.likelihood, self.gaussian_std = loss, LIKELIHOODS[model.likelihood], model.gaussian_std

    def schedule(self, step: int) -> dict[str, float]:
        """Values that depend on the global optimiser step only (so they are right after a resume
        and the same on every rank); computed on the host, given to `regulariser`, and logged."""
        return {}

    def regulariser(self, mean: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, kl: torch.Tensor,
                    schedule: dict[str, Scalar]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the penalty added to the reconstruction term, extra terms to log); all fp32 batch means.
        `kl` is the batch mean KL to the prior, computed already."""
        raise NotImplementedError

    def __call__(self, output: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
                 z: torch.Tensor, schedule: dict[str, Scalar]) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=x.device.type, enabled=False):
            nll = self.likelihood.nll(output.float(), x.float(), self.gaussian_std)
            recon = nll.flatten(1).sum(1).mean()
            kl = kl_to_standard_normal(mean, logvar).mean()
            penalty, extra = self.regulariser(mean.float(), logvar.float(), z.float(), kl, schedule)
        return {"loss": recon + penalty, "recon": recon, "kl": kl, **extra}
