"""Someone's encoder, not built by betavae_dist: a plain torch.nn.Sequential and a function around
it, as `evaluate --model plain_encoder:encoder` (or `:codes`) and `score_encoder` take them."""

import torch
from torch import nn

torch.manual_seed(0)  # the same weights in every process that imports it
encoder = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 32), nn.ReLU(), nn.Linear(32, 6))


def codes(images: torch.Tensor):
    """A function too: images (n, 1, 64, 64) in [0, 1] -> a NumPy array of codes (n, 6)."""
    return encoder(images).detach().cpu().numpy()
