"""Training objectives, by the name `loss.objective` gives: one file each, and one line with its
settings in settings.py (which imports none of them: they are loaded when first built)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .settings import OBJECTIVES, LossConfig

if TYPE_CHECKING:
    from ..model_config import ModelConfig
    from .base import Objective


def build_objective(loss: LossConfig, model: ModelConfig) -> Objective:
    """The objective `loss.objective` with its settings (`loss.*`) for a network of `model.*`."""
    return OBJECTIVES.choose(loss.objective, "loss.objective")(loss, model)
