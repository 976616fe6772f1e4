"""The interface of a dataset with ground-truth factors (disentanglement_lib's GroundTruthData).

A dataset is a finite grid of factor values with one image per grid point. It declares its
factors' names and sizes and its image shape, and returns raw uint8 images (`raw_images`) in
0..`pixel_max`. Everything else (index <-> factors, sampling, float images) comes from here, and
`to_unit` is the one place raw pixels become floats in [0, 1]: the training batches, the metrics
and the WebDataset stream all go through it.

A new dataset is a subclass with the class attributes below and `raw_images`, in its own file,
plus one line in the registry of `data/settings.py` (or `DATASETS.register("name")`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BetaVAEError

if TYPE_CHECKING:
    import torch

    from .settings import DataConfig


class DataError(BetaVAEError, RuntimeError):
    """Data that cannot be read; the message names the file (and the shard and sample)."""


def to_unit(pixels: torch.Tensor, pixel_max: int) -> torch.Tensor:
    """uint8 pixels in 0..pixel_max -> float32 in [0, 1] (dSprites' 0/1 pixels need no division)."""
    x = pixels.float()
    return x if pixel_max == 1 else x.div_(pixel_max)


def _strides(sizes) -> np.ndarray:
    return np.array([math.prod(sizes[i + 1:]) for i in range(len(sizes))], np.int64)


def grid_index(factors: np.ndarray, sizes) -> np.ndarray:
    """(n, k) classes of a grid of `sizes` -> (n,) flat indices, the last factor running fastest."""
    return np.asarray(factors, np.int64) @ _strides(sizes)


def grid_factors(index: np.ndarray, sizes) -> np.ndarray:
    """(n,) flat indices of a grid of `sizes` -> (n, k) classes; the inverse of `grid_index`."""
    return (np.asarray(index, np.int64)[:, None] // _strides(sizes)) % np.array(sizes, np.int64)


class FactorDataset:
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    nuisance: tuple[str, ...] = ()  # factors drawn at random with the others but not scored (SmallNORB's instance)
    image_shape: tuple[int, int, int] = (1, 64, 64)  # (channels, height, width)
    pixel_max: int = 1  # raw pixels are uint8 in 0..pixel_max: 1 for binary images, 255 for photographs

    @classmethod
    def from_config(cls, data: DataConfig) -> FactorDataset:
        """The dataset as `data.*` settings describe it; override if it has any."""
        return cls()

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        """(n, num_factors) factor classes -> (n, C, H, W) uint8 images in 0..pixel_max."""
        raise NotImplementedError

    @property
    def num_images(self) -> int:
        return math.prod(self.factor_sizes)

    @classmethod
    def factors_to_index(cls, factors: np.ndarray) -> np.ndarray:
        """(n, num_factors) factor classes -> (n,) indices, the last factor running fastest."""
        return grid_index(factors, cls.factor_sizes)

    @classmethod
    def index_to_factors(cls, index: np.ndarray) -> np.ndarray:
        """(n,) indices -> (n, num_factors) factor classes."""
        return grid_factors(index, cls.factor_sizes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor vectors drawn uniformly from the grid."""
        return rng.integers(0, self.factor_sizes, size=(n, len(self.factor_sizes)), dtype=np.int64)

    @classmethod
    def check_factors(cls, factors: np.ndarray) -> np.ndarray:
        """`factors` as int64, or a ValueError naming the first factor outside its range."""
        factors = np.asarray(factors, np.int64)
        if factors.ndim != 2 or factors.shape[1] != len(cls.factor_sizes):
            raise ValueError(f"factors must have shape (n, {len(cls.factor_sizes)}), got {factors.shape}")
        bad = (factors < 0) | (factors >= np.array(cls.factor_sizes))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(f"factor {cls.factor_names[col]} of row {row} is {factors[row, col]}, "
                             f"outside 0..{cls.factor_sizes[col] - 1}")
        return factors

    def raw_images_at(self, index: np.ndarray) -> np.ndarray:
        return self.raw_images(self.index_to_factors(index))

    def images(self, factors: np.ndarray) -> np.ndarray:
        """(n, C, H, W) float32 images in [0, 1]."""
        import torch  # here, not at import: the registry's datasets are imported with the config

        return to_unit(torch.from_numpy(self.raw_images(factors)), self.pixel_max).numpy()


class ReleaseFiles(FactorDataset):
    """A dataset read from the files of its release, which the user names in `data.path`; nothing
    is downloaded. Subclasses say what the path must be and where to get it, and take it in
    `__init__(path)`."""

    files: str  # what data.path names, e.g. "the file 3dshapes.h5"
    where: str  # how to get the files, for the error when they are missing

    @classmethod
    def from_config(cls, data: DataConfig) -> ReleaseFiles:
        if not data.path:
            raise ValueError(f"data.name={data.name} needs data.path, {cls.files}; {cls.where}")
        return cls(data.path)
