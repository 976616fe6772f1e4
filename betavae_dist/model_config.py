"""The `model` section: the network's settings, and the names it chooses from (the architectures of
architectures.py, the likelihoods of objectives/likelihoods.py, loaded when first built)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import setting
from .registry import Lazy, Registry

IMAGE_SIZE = 64
MAX_LATENTS, MAX_CHANNELS = 4096, 16  # bounds of the config and of an export's config.json

ARCHITECTURES = Registry("architecture", {name: Lazy(f"betavae_dist.architectures:{name}")
                                          for name in ("fc", "conv64", "conv64_deep", "dlib_conv")})

LIKELIHOODS = Registry("likelihood", {
    "bernoulli": Lazy("betavae_dist.objectives.likelihoods:BERNOULLI"),  # binary images (dSprites)
    "gaussian": Lazy("betavae_dist.objectives.likelihoods:GAUSSIAN"),  # natural images
})


@dataclass
class ModelConfig:
    arch: str = setting("conv64", "\"fc\" (Higgins et al.), \"conv64\" (Burgess et al.), \"conv64_deep\" (CelebA), "
                        "\"dlib_conv\" (disentanglement_lib's)", choices=ARCHITECTURES)
    latents: int = setting(10, "size of the code z", low=1, high=MAX_LATENTS)
    channels: int = setting(1, "image channels: 1 for dSprites, 3 for colour images", low=1, high=MAX_CHANNELS)
    likelihood: str = setting("bernoulli", "\"bernoulli\" (binary images) or \"gaussian\" (natural images)",
                              choices=LIKELIHOODS)
    gaussian_std: float = setting(0.7071067811865476, "sigma of the Gaussian likelihood; 1/sqrt(2) = summed MSE",
                                  positive=True)
