"""The objective every method shares: reconstruction plus a regulariser that subclasses override.

Conventions: the reconstruction term is the negative log-likelihood summed over pixels and the
KL is summed over latents; both are then averaged over the batch, in fp32 whatever the autocast
dtype. With this convention β is the paper's unnormalised β. Higgins et al. also quote
β_norm = β·M/N (M latents, N pixels): β = 4 with 10 latents on 64x64 dSprites is β_norm ≈ 0.0098.
Code that averages the reconstruction over pixels instead needs β/N for the same trade-off.

As in disentanglement_lib's `methods/unsupervised/vae.py`, a method is a subclass that overrides
`regulariser` only (and `schedule`, if the regulariser depends on the training step), and declares
its hyperparameters as its `Settings`, a subclass of `LossConfig` (`loss.<name>` in configs, declared
in settings.py; in a pack, each point's float settings are its own). The engine averages,
all-reduces and logs every term named in `terms`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ClassVar

import torch
from torch import nn
from torch.func import functional_call

from ..model_config import LIKELIHOODS
from .settings import LossConfig

if TYPE_CHECKING:
    from ..model_config import ModelConfig


CRITIC = "critic."  # the model's attribute that holds an objective's critic, as its parameters' names begin


Scalar = float | torch.Tensor  # a schedule value: a number, or a 0-dim fp32 tensor a CUDA graph refills


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(N(mean, exp(logvar)) || N(0, I)), summed over latents."""
    mean, logvar = mean.float(), logvar.float()
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(1)


class Objective:
    """loss = recon + regulariser; `__call__` returns every term of `terms`, each a batch mean."""

    Settings: ClassVar[type[LossConfig]] = LossConfig  # the method's hyperparameters: loss.<name>
    # A second network trained in the same step (FactorVAE's discriminator), built from the number of
    # latents: the model's `critic`, with its own optimiser settings (`critic_group`; its Settings say
    # `trains_critic`). It minimises `trained_terms` (the VAE does not); the regulariser calls it
    # through `judge`.
    critic: ClassVar[Callable[[int], nn.Module] | None] = None  # its parameters' names start with CRITIC
    trained_terms: tuple[str, ...] = ()
    shared_settings: tuple[str, ...] = ()  # settings the points of a pack must share (optimiser groups)

    terms: tuple[str, ...] = ("loss", "recon", "kl")  # logged, in this order; subclasses may add theirs
    # The loss is a mean of per-sample terms, so a batch split over ranks or micro-batches gives the
    # gradient of the whole batch. False for a penalty of a batch mean (|KL - C|): the trainer says so.
    mean_of_samples: bool = True

    def __init__(self, loss: LossConfig, model: ModelConfig):
        self.cfg, self.likelihood, self.gaussian_std = loss, LIKELIHOODS[model.likelihood], model.gaussian_std
        self.latents = model.latents
        self.noise_width = model.latents + self.noise_columns(model.latents)
        self._critic, self._critic_params = None, None

    def noise_columns(self, latents: int) -> int:
        """Random columns the regulariser needs beside the reparameterisation noise, drawn with it
        (so they are the same packed or solo, after a resume) and given as `schedule["noise"]`."""
        return 0

    def split_noise(self, noise: torch.Tensor, schedule: dict) -> tuple[torch.Tensor, dict]:
        """(the reparameterisation noise, the schedule with the regulariser's columns as "noise")."""
        if self.noise_width == self.latents:
            return noise, schedule
        return noise[..., :self.latents], {**schedule, "noise": noise[..., self.latents:]}

    def critic_group(self) -> dict:
        """The optimiser settings of the critic's parameter group (Adam's lr, betas)."""
        return {}

    def bind(self, critic: nn.Module, params: dict[str, torch.Tensor] | None = None) -> None:
        """The critic `judge` runs: a module, with `params` in its place (a pack's point) if given."""
        self._critic, self._critic_params = critic, params

    def judge(self, z: torch.Tensor, frozen: bool) -> torch.Tensor:
        """The critic's output on z; `frozen`: its parameters detached (the VAE's gradient does not train it)."""
        params = self._critic_params if self._critic_params is not None else dict(self._critic.named_parameters())
        if frozen:
            params = {name: p.detach() for name, p in params.items()}
        return functional_call(self._critic, params, (z,))

    def minimised(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the step differentiates: the loss, plus the terms the critic minimises."""
        return values["loss"] + sum(values[name] for name in self.trained_terms)

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
