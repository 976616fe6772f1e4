"""PNG figures of a trained model: reconstructions and latent traversals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .models import BetaVAE
from .objectives.likelihoods import LIKELIHOODS


def to_pixels(output: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Decoder output -> images in [0, 1]."""
    return LIKELIHOODS[likelihood].image(output.float())


def tile(images: torch.Tensor, pad: int = 2) -> np.ndarray:
    """(rows, cols, C, H, W) in [0, 1] -> one (height, width, C) uint8 image, white between tiles."""
    rows, cols, c, h, w = images.shape
    tiles = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for r in range(rows):
        for col in range(cols):
            top, left = pad + r * (h + pad), pad + col * (w + pad)
            grid[top : top + h, left : left + w] = tiles[r, col]
    return grid


def save_image(image: np.ndarray, path: Path) -> None:
    """A (height, width, C) uint8 image as a PNG."""
    Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(path)


def save_grid(images: torch.Tensor, path: Path, pad: int = 2) -> None:
    """(rows, cols, C, H, W) in [0, 1] -> one PNG with a white border between tiles."""
    save_image(tile(images, pad), path)


@torch.no_grad()
def reconstructions(model: BetaVAE, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """(2, n, C, H, W): the inputs above their reconstructions from the encoder mean."""
    mean, _ = model.encode(x)
    return torch.stack([x.float(), to_pixels(model.decode(mean), likelihood)])


@torch.no_grad()
def traversal(model: BetaVAE, x: torch.Tensor, likelihood: str, span: float = 3.0, steps: int = 9) -> torch.Tensor:
    """(latents, steps, C, H, W): each row moves one latent of x's mean code over [-span, span]."""
    mean, _ = model.encode(x[:1])
    values = torch.linspace(-span, span, steps, device=mean.device)
    codes = mean.repeat(model.latents * steps, 1).view(model.latents, steps, -1)
    for k in range(model.latents):
        codes[k, :, k] = values
    images = to_pixels(model.decode(codes.flatten(0, 1)), likelihood)
    return images.view(model.latents, steps, *images.shape[1:])
