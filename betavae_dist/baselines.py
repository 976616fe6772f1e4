"""Representations that need no training, for the paper's table: raw pixels, and PCA and ICA of
the pixels. `python -m betavae_dist.evaluate --model pca:10` scores one like a trained model.

PCA and ICA are fitted on `FIT_IMAGES` images drawn uniformly from the factor dataset with
`eval.seed` (scikit-learn's `PCA` and `FastICA(whiten="unit-variance")`, on one thread, so every
rank fits the same map); both are then an affine map of the flattened pixels, run like an encoder.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from .data.dataset import FactorDataset
from .registry import ConfigError

FIT_IMAGES = 10_000
DEFAULT_COMPONENTS = 10
NAME = re.compile(r"^(pixels|pca|ica)(?::(\d+))?$")


class Pixels(nn.Module):
    """The flattened pixels as codes; `encode` as a trained model's, no log-variance."""

    memory_format = torch.contiguous_format

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x.flatten(1).float(), None


class Projection(Pixels):
    """codes = (flattened pixels − mean) @ components.T: PCA's or ICA's map."""

    def __init__(self, mean: np.ndarray, components: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("components", torch.from_numpy(components.astype(np.float32)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return (super().encode(x)[0] - self.mean) @ self.components.T, None


def is_baseline(name: str) -> bool:
    return NAME.match(name) is not None


def build_baseline(name: str, dataset: FactorDataset, seed: int) -> Pixels:
    """`pixels`, `pca[:N]` or `ica[:N]` (N components, default 10) for `dataset`."""
    kind, n = NAME.match(name).groups()
    pixels = int(np.prod(dataset.image_shape))
    if kind == "pixels":
        if n:
            raise ConfigError(f"--model {name}: raw pixels take no number of components")
        return Pixels().eval()
    n = int(n or DEFAULT_COMPONENTS)
    if not 1 <= n <= min(pixels, FIT_IMAGES):
        raise ConfigError(f"--model {name}: components must be 1..{min(pixels, FIT_IMAGES)}")
    rng = np.random.default_rng([seed, 7])
    x = dataset.images(dataset.sample_factors(FIT_IMAGES, rng)).reshape(FIT_IMAGES, -1)
    from sklearn.decomposition import PCA, FastICA  # here, not at import (metrics/classifiers.py)

    with threadpool_limits(1):
        if kind == "pca":
            fitted = PCA(n, random_state=seed).fit(x)
        else:
            fitted = FastICA(n, whiten="unit-variance", random_state=seed, max_iter=400).fit(x)
    return Projection(fitted.mean_, fitted.components_).eval()
