"""disentanglement_lib's variants of dSprites (data/ground_truth/dsprites.py): the same factors and
shapes, in colour, on noise, or on a photograph. 64x64 RGB (`model.channels=3`).

- color_dsprites: the sprite in a colour drawn per image, each channel uniform in [0.5, 1];
- noisy_dsprites: the background pixels uniform noise in [0, 1] per channel, the sprite white;
- scream_dsprites: the background a random 64x64 crop of a photograph (disentanglement_lib uses
  Munch's The Scream, which cannot be shipped: `data.path` names your copy; it is shrunk to fit
  350x274 as there) with a random colour added and halved, the sprite in its inverse colours.

disentanglement_lib draws the colour, noise or crop again each time it shows an image. Here they
are drawn once per image, from (`data.seed`, the image's index in the grid): each of the 737,280
images has its own colour (noise, crop), the same on any number of ranks and after a resume, and
the metrics' table of codes (one per image) still holds. The pixels are 8-bit (disentanglement_lib
keeps floats).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .dsprites import DSprites

if TYPE_CHECKING:
    from .settings import DataConfig


def uniforms(seed: int, index: np.ndarray, count: int) -> np.ndarray:
    """(len(index), count) numbers uniform in [0, 1), each a function of (seed, image index, j):
    splitmix64 of a counter, so any image's draws come without drawing the others'."""
    counter = (np.asarray(index, np.uint64)[:, None] * np.uint64(count) + np.arange(count, dtype=np.uint64)
               + np.uint64(seed) * np.uint64(0xD1B54A32D192ED03))
    with np.errstate(over="ignore"):
        z = counter * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def to_bytes(unit: np.ndarray) -> np.ndarray:
    return np.rint(unit * 255).astype(np.uint8)


class ColoredDSprites(DSprites):
    """The base of the variants: RGB, 8-bit, draws keyed by (`data.seed`, index)."""

    image_shape = (3, 64, 64)
    pixel_max = 255

    def __init__(self, npz_path: str | Path | None = None, seed: int = 0):
        super().__init__(npz_path)
        self.seed = seed

    @classmethod
    def from_config(cls, data: DataConfig) -> ColoredDSprites:
        return cls(data.dsprites_npz or None, data.seed)

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        factors = self.check_factors(factors)
        sprite = super().raw_images(factors).astype(bool)  # (n, 1, 64, 64)
        return to_bytes(self.paint(sprite, self.factors_to_index(factors)))

    def paint(self, sprite: np.ndarray, index: np.ndarray) -> np.ndarray:
        """(n, 3, 64, 64) floats in [0, 1] of the sprites (n, 1, 64, 64) of grid points `index`."""
        raise NotImplementedError


class ColorDSprites(ColoredDSprites):
    def paint(self, sprite, index):
        colour = 0.5 + 0.5 * uniforms(self.seed, index, 3)  # uniform(0.5, 1) per channel
        return sprite * colour[:, :, None, None]


class NoisyDSprites(ColoredDSprites):
    def paint(self, sprite, index):
        noise = uniforms(self.seed, index, 3 * 64 * 64).reshape(-1, 3, 64, 64)
        return np.where(sprite, 1.0, noise)  # min(sprite + noise, 1)


class ScreamDSprites(ColoredDSprites):
    def __init__(self, photo: str | Path, npz_path: str | Path | None = None, seed: int = 0):
        super().__init__(npz_path, seed)
        try:
            with Image.open(photo) as image:
                image = image.convert("RGB")
                image.thumbnail((350, 274))
                self.photo = np.asarray(image, np.float64).transpose(2, 0, 1) / 255  # (3, H, W)
        except OSError as e:
            raise ValueError(f"scream_dsprites: cannot read the photograph {photo} (data.path): {e}") from None
        if min(self.photo.shape[1:]) <= 64:
            raise ValueError(f"scream_dsprites: {photo} (data.path) is {self.photo.shape[2]}x{self.photo.shape[1]} "
                             "once shrunk to fit 350x274; a 64x64 crop needs more")

    @classmethod
    def from_config(cls, data: DataConfig) -> ScreamDSprites:
        if not data.path:
            raise ValueError("data.name=scream_dsprites needs data.path, a photograph for the backgrounds (disentanglement_lib "
                             "used a JPEG of Munch's The Scream, which cannot be shipped with this package)")
        return cls(data.path, data.dsprites_npz or None, data.seed)

    def paint(self, sprite, index):
        draws = uniforms(self.seed, index, 5)
        rows, cols = (draws[:, :2] * (np.array(self.photo.shape[1:]) - 64)).astype(np.int64).T
        out = np.empty((len(index), 3, 64, 64))
        for i, (row, col) in enumerate(zip(rows, cols)):
            out[i] = (self.photo[:, row : row + 64, col : col + 64] + draws[i, 2:, None, None]) / 2
        return np.where(sprite, 1 - out, out)
