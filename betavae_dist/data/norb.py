"""SmallNORB (LeCun et al. 2004), read from its six binary matrix files (`data.path`); nothing is downloaded.

48,600 grey photographs of toys, training and test halves together, as disentanglement_lib's
`SmallNORB` has them: category (5), instance (10), elevation (9), azimuth (18) and lighting (6),
the last running fastest. The instance is a nuisance, as there: drawn at random with the others but
not scored by the metrics (`FactorDataset.nuisance`). Each half is three files,
`smallnorb-<chunk>-{dat,cat,info}.mat` (gunzipped): the stereo pairs (24300, 2, 96, 96) uint8, the
categories, and instance, elevation, azimuth (0, 2, ..., 34) and lighting. The left image of a
pair is brought to 64x64 as disentanglement_lib does (PIL's `resize`, Lanczos), when a batch asks
for it: the images stay memory-mapped. disentanglement_lib read the image bytes as int8; the format
says unsigned bytes, as here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .dataset import ReleaseFiles, grid_index

CHUNKS = ("5x46789x9x18x6x2x96x96-training", "5x01235x9x18x6x2x96x96-testing")
KINDS = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}  # the format's byte matrix and integer matrix
WHERE = ("get the six smallnorb-*-{dat,cat,info}.mat.gz files of NYU's norb-v1.0-small release (cs.nyu.edu/~ylclab), "
         "gunzip them into one folder and set data.path to it")


def read_matrix(path: Path) -> np.ndarray:
    """A matrix in SmallNORB's binary format, memory-mapped: int32 magic, int32 ndim, max(3, ndim)
    int32 dimensions, then the data."""
    try:
        magic, ndim = np.fromfile(path, np.int32, 2)
        dims = np.fromfile(path, np.int32, max(3, ndim), offset=8)[:ndim]
        return np.memmap(path, KINDS[int(magic)], "r", offset=8 + 4 * max(3, ndim), shape=tuple(int(d) for d in dims))
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"SmallNORB: {path} is not a matrix of the release's format ({type(e).__name__}: {e})") from None


class SmallNORB(ReleaseFiles):
    factor_names = ("category", "instance", "elevation", "azimuth", "lighting")
    factor_sizes = (5, 10, 9, 18, 6)
    nuisance = ("instance",)
    image_shape = (1, 64, 64)
    pixel_max = 255
    files, where = "the folder of the six .mat files", WHERE

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        files = [folder / f"smallnorb-{chunk}-{kind}.mat" for chunk in CHUNKS for kind in ("dat", "cat", "info")]
        if missing := [f.name for f in files if not f.is_file()]:
            raise FileNotFoundError(f"SmallNORB: {', '.join(missing)} not in {folder} (data.path); {WHERE}")
        self.pairs, rows = [], []
        for chunk in CHUNKS:
            pairs, category, info = (read_matrix(folder / f"smallnorb-{chunk}-{kind}.mat") for kind in ("dat", "cat", "info"))
            n = len(pairs)
            if pairs.ndim != 4 or pairs.shape[1:] != (2, 96, 96) or info.shape != (n, 4) or category.shape != (n,):
                raise ValueError(f"SmallNORB: {folder}/smallnorb-{chunk}-*: images {pairs.shape}, categories {category.shape}, "
                                 f"info {info.shape}; the release has (24300, 2, 96, 96), (24300,), (24300, 4)")
            factors = np.column_stack([category, info]).astype(np.int64)
            factors[:, 3] //= 2  # azimuths 0, 2, ..., 34
            self.pairs.append(pairs)
            rows.append(factors)
        factors = np.concatenate(rows)
        bad = (factors < 0) | (factors >= np.array(self.factor_sizes))
        if bad.any() or len(factors) != self.num_images:
            raise ValueError(f"SmallNORB: the factors of {folder} are not the release's grid of {self.num_images} images")
        self.row_of = np.full(self.num_images, -1, np.int64)  # grid index -> row of the two halves together
        self.row_of[grid_index(factors, self.factor_sizes)] = np.arange(len(factors))
        if (self.row_of < 0).any():
            raise ValueError(f"SmallNORB: the images of {folder} do not cover the grid (a point twice, another never)")

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        rows = self.row_of[self.factors_to_index(self.check_factors(factors))]
        half = len(self.pairs[0])
        out = np.empty((len(rows), *self.image_shape), np.uint8)
        for i, row in enumerate(rows):
            left = self.pairs[0][row, 0] if row < half else self.pairs[1][row - half, 0]
            out[i, 0] = np.asarray(Image.fromarray(np.asarray(left)).resize((64, 64), Image.Resampling.LANCZOS))
        return out
