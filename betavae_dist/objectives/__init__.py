"""Training objectives, by the name `loss.objective` gives; one file each, one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .annealed import Annealed
from .base import OBJECTIVES, Objective
from .beta import Beta
from .beta_tcvae import BetaTCVAE
from .dip import DIPVAEI, DIPVAEII
from .factor_vae import FactorVAE

if TYPE_CHECKING:
    from ..models import ModelConfig
    from .base import LossConfig

OBJECTIVES.update({
    "beta": Beta,  # Higgins et al. 2017
    "annealed": Annealed,  # Burgess et al. 2018
    "dip_i": DIPVAEI,  # Kumar et al. 2018
    "dip_ii": DIPVAEII,
    "beta_tcvae": BetaTCVAE,  # Chen et al. 2018
    "factor_vae": FactorVAE,  # Kim & Mnih 2018
})


def build_objective(loss: LossConfig, model: ModelConfig) -> Objective:
    """The objective `loss.objective` with its settings (`loss.*`) for a network of `model.*`."""
    return OBJECTIVES.choose(loss.objective, "loss.objective")(loss, model)
