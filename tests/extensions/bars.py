"""A tiny procedural factor dataset as an example of a new dataset in one file: a 16x16 square of
one of 4 grey levels at one of 8x8 positions (256 images), 8-bit pixels in 0..255."""

import numpy as np

from betavae_dist.data import DATASETS
from betavae_dist.data.dataset import FactorDataset

LEVELS = (63, 127, 191, 255)


@DATASETS.register("bars")
class Bars(FactorDataset):
    factor_names = ("level", "x", "y")
    factor_sizes = (4, 8, 8)
    image_shape = (1, 64, 64)
    pixel_max = 255

    def raw_images(self, factors):
        factors = self.check_factors(factors)
        out = np.zeros((len(factors), 1, 64, 64), np.uint8)
        for i, (level, x, y) in enumerate(factors):
            out[i, 0, 6 * y : 6 * y + 16, 6 * x : 6 * x + 16] = LEVELS[level]
        return out
