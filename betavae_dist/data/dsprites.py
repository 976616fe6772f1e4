"""dSprites (Matthey et al. 2017), rendered procedurally from its exact factor grid.

Factors, in the original's order (the index runs with posY fastest):
    color 1, shape 3 (square, ellipse, heart), scale 6 (0.5..1), orientation 40 (0..2pi, both ends
    included, so orientation 0 and 39 give the same image), posX 32 and posY 32 (0..1).
Images are 64x64 with values 0/1, 737,280 in all.

The grid is the original's; the sprite geometry is our own approximation of it (a square of side
16 px at scale 1, an ellipse of 16x8 px, a heart of about 16x16 px, centres from pixel 12 to 51).
Rendering uses only float32 +, -, *, / and comparisons (the 40 cosines come from Python's `math`
and are rounded), so the same factors give the same bytes on every machine.

If you have the original `dsprites_ndarray_*.npz`, `DSprites(npz_path=...)` (`data.dsprites_npz`)
serves its images through the same interface.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .dataset import FactorDataset

if TYPE_CHECKING:
    from .settings import DataConfig

FACTOR_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (1, 3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
NUM_IMAGES = math.prod(FACTOR_SIZES)  # 737,280
IMAGE_SIZE = 64

# Factor values as in the original's `latents_values`.
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * math.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)

_HALF_SIZE_PX = 8.0  # half side of the square at scale 1
_POS_PX = (12.0 + POSITIONS * 39.0).astype(np.float32)  # sprite centre in pixels, 12..51
_SIZE_PX = (SCALES * _HALF_SIZE_PX).astype(np.float32)
# Rounded so that cos/sin of 0 and 2*pi are bit-identical (+0.0 normalises -0.0).
_COS = np.array([round(math.cos(a), 12) + 0.0 for a in ORIENTATIONS], np.float32)
_SIN = np.array([round(math.sin(a), 12) + 0.0 for a in ORIENTATIONS], np.float32)
# Every sprite lies within 12 px of its centre: render only a window around it.
_WINDOW = 28
_WINDOW_RANGE = np.arange(_WINDOW)


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Is the point (u, v), in sprite units (half-extent 1), inside the shape?"""
    if shape == 0:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if shape == 1:  # ellipse, 2:1
        return u * u + 4.0 * (v * v) <= 1.0
    # heart: (a^2 + b^2 - 1)^3 <= a^2 b^3, lobes up (image rows grow downwards)
    a = u * np.float32(1.14)
    b = np.float32(0.118) - v * np.float32(1.14)
    r = a * a + b * b - 1.0
    return r * r * r <= (a * a) * (b * b * b)


def render(factors: np.ndarray) -> np.ndarray:
    """(n, 6) factor classes -> (n, 64, 64) uint8 images with values 0/1."""
    factors = DSprites.check_factors(factors)
    n = len(factors)
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    cx, cy = _POS_PX[factors[:, 4]], _POS_PX[factors[:, 5]]
    # Window origin, kept inside the image; the sprite never reaches the clipped side.
    x0 = np.clip(np.floor(cx).astype(np.int64) - 13, 0, IMAGE_SIZE - _WINDOW)
    y0 = np.clip(np.floor(cy).astype(np.int64) - 13, 0, IMAGE_SIZE - _WINDOW)
    for shape in range(FACTOR_SIZES[1]):
        rows = np.flatnonzero(factors[:, 1] == shape)
        if rows.size == 0:
            continue
        f = factors[rows]
        size = _SIZE_PX[f[:, 2]][:, None]
        dx = ((x0[rows, None] + _WINDOW_RANGE).astype(np.float32) - cx[rows, None]) / size
        dy = ((y0[rows, None] + _WINDOW_RANGE).astype(np.float32) - cy[rows, None]) / size
        cos, sin = _COS[f[:, 3]][:, None, None], _SIN[f[:, 3]][:, None, None]
        dx, dy = dx[:, None, :], dy[:, :, None]  # (k, 1, W) columns and (k, W, 1) rows
        u = dx * cos + dy * sin
        v = dy * cos - dx * sin
        mask = _inside(shape, u, v)
        out[
            rows[:, None, None],
            y0[rows, None, None] + _WINDOW_RANGE[None, :, None],
            x0[rows, None, None] + _WINDOW_RANGE[None, None, :],
        ] = mask
    return out


class DSprites(FactorDataset):
    """dSprites: rendered procedurally or, given `npz_path`, looked up in the original npz."""

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    image_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
    pixel_max = 1

    def __init__(self, npz_path: str | Path | None = None):
        self._imgs = _load_npz(Path(npz_path)) if npz_path else None

    @classmethod
    def from_config(cls, data: DataConfig) -> DSprites:
        return cls(data.dsprites_npz or None)

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        if self._imgs is None:
            images = render(factors)
        else:
            images = self._imgs[self.factors_to_index(self.check_factors(factors))]
        return images[:, None]


def _load_npz(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"dSprites file not found: {path} (data.dsprites_npz)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            imgs = archive["imgs"]
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a dsprites_ndarray npz with an 'imgs' array ({e})") from None
    if imgs.shape != (NUM_IMAGES, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{path}: 'imgs' has shape {imgs.shape}, expected ({NUM_IMAGES}, 64, 64)")
    return imgs.astype(np.uint8, copy=False)
