"""PNG figures of a trained model: reconstructions and latent traversals (a row per latent, the
most informative first, each labelled with its KL), and each latent's KL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .models import BetaVAE
from .model_config import LIKELIHOODS


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


ACTIVE_KL = 0.01  # nats: a latent whose KL is below this carries (almost) nothing about the image


@torch.no_grad()
def latent_kl(model: BetaVAE, x: torch.Tensor) -> list[float]:
    """Each latent's KL(q(z_k|x) || N(0, 1)), averaged over the images x: how a β-VAE is read."""
    mean, logvar = (t.float() for t in model.encode(x))
    return (0.5 * (mean.square() + logvar.exp() - logvar - 1)).mean(0).tolist()


def latent_stats(model: BetaVAE, x: torch.Tensor) -> dict:
    """What a log line says of the latents: each one's KL on x, and how many are active."""
    kl = latent_kl(model, x)
    return {"active_latents": sum(v > ACTIVE_KL for v in kl), "kl_latents": kl}


@torch.no_grad()
def traversal(model: BetaVAE, x: torch.Tensor, likelihood: str, order: list[int], span: float = 3.0,
              steps: int = 9) -> torch.Tensor:
    """(len(order), steps, C, H, W): row i moves latent order[i] of x's mean code over [-span, span]."""
    mean, _ = model.encode(x[:1])
    values = torch.linspace(-span, span, steps, device=mean.device)
    codes = mean.repeat(len(order) * steps, 1).view(len(order), steps, -1)
    for row, k in enumerate(order):
        codes[row, :, k] = values
    images = to_pixels(model.decode(codes.flatten(0, 1)), likelihood)
    return images.view(len(order), steps, *images.shape[1:])


def labelled(image: np.ndarray, labels: list[str], width: int = 86, pad: int = 2) -> np.ndarray:
    """A tiled image (tile) with a white column on its left holding one label per row of tiles."""
    rows = len(labels)
    height = (image.shape[0] - pad) // rows
    column = Image.new("L", (width, image.shape[0]), 255)
    draw = ImageDraw.Draw(column)
    for r, label in enumerate(labels):
        draw.text((4, pad + r * height + height // 2 - 6), label, fill=0)
    left = np.repeat(np.asarray(column)[..., None], image.shape[2], axis=2)
    return np.concatenate([left, image], axis=1)


def traversal_figure(model: BetaVAE, x: torch.Tensor, likelihood: str, kl: list[float]) -> np.ndarray:
    """The traversal, rows sorted by KL (largest first), each labelled "z<k>  KL <value>"."""
    order = sorted(range(len(kl)), key=lambda k: -kl[k])
    return labelled(tile(traversal(model, x, likelihood, order)), [f"z{k}  KL {kl[k]:.2f}" for k in order])
