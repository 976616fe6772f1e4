"""Each objective's settings (`loss.<name>`) and the objectives by the name `loss.objective` gives.

The settings live here, apart from the methods (one file each, with torch), so that composing and
checking a config loads no torch; a method names its settings as its `Settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import setting
from ..registry import Lazy, Registry


@dataclass
class LossConfig:
    """The `loss` section: `objective` names the method, and the section then holds that method's
    own settings (its `Settings`, a subclass of this)."""

    SWITCH: ClassVar[str] = "objective"
    # The method trains a second network with Adam settings of its own (its Objective's `critic`).
    trains_critic: ClassVar[bool] = False
    objective: str = setting("beta", "the method (objectives/); the keys below marked with it are its settings",
                             choices=lambda: OBJECTIVES)

    @staticmethod
    def variant(name: str) -> type[LossConfig]:
        return OBJECTIVES.about(name).Settings


@dataclass
class BetaSettings(LossConfig):
    beta: float = setting(4.0, "weight of the KL; 1 is the plain VAE", low=0)


@dataclass
class AnnealedSettings(LossConfig):
    gamma: float = setting(1000.0, "weight of |KL - C|", low=0)
    capacity_max: float = setting(25.0, "final capacity C, in nats (disentanglement_lib: c_max)", low=0)
    capacity_steps: int = setting(100_000, "C rises linearly from 0 to capacity_max over this many steps "
                                  "(disentanglement_lib: iteration_threshold)", positive=True)


@dataclass
class DIPSettings(LossConfig):
    lambda_od: float = setting(10.0, "weight of the off-diagonal covariance penalty", low=0)
    lambda_d_factor: float = setting(10.0, "the diagonal's weight is this x lambda_od (disentanglement_lib: 10 for "
                                     "DIP-VAE-I, 1 for II)", low=0)


@dataclass
class DIPIISettings(DIPSettings):
    lambda_d_factor: float = setting(1.0, "the diagonal's weight is this x lambda_od (disentanglement_lib: 10 for "
                                     "DIP-VAE-I, 1 for II)", low=0)


@dataclass
class BetaTCVAESettings(LossConfig):
    beta: float = setting(6.0, "the total correlation's weight: KL + (beta - 1) x TC", low=0)


@dataclass
class FactorVAESettings(LossConfig):
    trains_critic: ClassVar[bool] = True
    gamma: float = setting(10.0, "weight of the discriminator's total-correlation estimate", low=0)
    critic_lr: float = setting(1e-4, "the discriminator's Adam learning rate", positive=True)
    critic_beta1: float = setting(0.5, "the discriminator's Adam first-moment decay", low=0, high=0.999999,
                                  allowed="in [0, 1)")
    critic_beta2: float = setting(0.9, "the discriminator's Adam second-moment decay", low=0, high=0.999999,
                                  allowed="in [0, 1)")


OBJECTIVES = Registry("objective", {
    "beta": Lazy("betavae_dist.objectives.beta:Beta", Settings=BetaSettings),  # Higgins et al. 2017
    "annealed": Lazy("betavae_dist.objectives.annealed:Annealed", Settings=AnnealedSettings),  # Burgess et al. 2018
    "dip_i": Lazy("betavae_dist.objectives.dip:DIPVAEI", Settings=DIPSettings),  # Kumar et al. 2018
    "dip_ii": Lazy("betavae_dist.objectives.dip:DIPVAEII", Settings=DIPIISettings),
    "beta_tcvae": Lazy("betavae_dist.objectives.beta_tcvae:BetaTCVAE", Settings=BetaTCVAESettings),  # Chen et al. 2018
    "factor_vae": Lazy("betavae_dist.objectives.factor_vae:FactorVAE", Settings=FactorVAESettings),  # Kim & Mnih 2018
})
