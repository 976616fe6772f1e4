"""Decoder likelihoods p(x|z) (`model.likelihood`, named in model_config.py): the per-pixel negative
log-likelihood the objective sums, and the image a decoder output stands for (for figures)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Likelihood:
    nll: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # (output, x, gaussian_std) -> per pixel
    image: Callable[[torch.Tensor], torch.Tensor]  # decoder output -> image in [0, 1]


def _bernoulli_nll(output: torch.Tensor, x: torch.Tensor, std: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(output, x, reduction="none")  # output: logits


def _gaussian_nll(output: torch.Tensor, x: torch.Tensor, std: float) -> torch.Tensor:
    # output: means with a fixed std; the constant log(std·sqrt(2π)) per pixel is dropped, so
    # std = 1/sqrt(2) gives the summed squared error.
    return (output - x).square() / (2.0 * std**2)


BERNOULLI = Likelihood(_bernoulli_nll, torch.sigmoid)
GAUSSIAN = Likelihood(_gaussian_nll, lambda output: output.clamp(0, 1))
