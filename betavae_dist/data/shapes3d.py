"""3D Shapes (Kim & Mnih 2018), read from DeepMind's `3dshapes.h5` (`data.path`); nothing is downloaded.

480,000 RGB images of 64x64, one per point of a grid of six factors, as disentanglement_lib's
`Shapes3D` has them: floor hue (10), wall hue (10), object hue (10), scale (8), shape (4) and
orientation (15), the last running fastest (the file's order). The file holds `images` (480000,
64, 64, 3) uint8 and `labels` (480000, 6) float64, the factor values. Opening it reads the labels
only (23 MB) and checks that they are that grid in that order; images are read from the file as
batches ask for them, so a run never holds the 5.9 GB set in memory (a GPU run uploads it once:
data/batches.py). disentanglement_lib read an older `.npz` release into memory as floats; the
images and factors are the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import ReleaseFiles, grid_index

WHERE = ("get 3dshapes.h5 from DeepMind's 3d-shapes release (the README of github.com/google-deepmind/3d-shapes) "
         "and set data.path to it")


class Shapes3D(ReleaseFiles):
    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    factor_sizes = (10, 10, 10, 8, 4, 15)
    image_shape = (3, 64, 64)
    pixel_max = 255
    files, where = "the file 3dshapes.h5", WHERE

    def __init__(self, path: str | Path):
        try:
            import h5py
        except ImportError:
            raise ValueError("Shapes3D reads HDF5 with h5py: pip install 'betavae-dist[datasets]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"Shapes3D file not found: {self.path} (data.path); {WHERE}")
        try:
            self.file = h5py.File(self.path, "r")
            self.data, labels = self.file["images"], self.file["labels"]
        except (OSError, KeyError) as e:
            raise ValueError(f"{self.path} is not 3dshapes.h5 (data.path): {e}") from None
        n = self.num_images
        if self.data.shape != (n, 64, 64, 3) or self.data.dtype != np.uint8 or labels.shape != (n, 6):
            raise ValueError(f"{self.path}: images {self.data.shape} {self.data.dtype} and labels {labels.shape}, "
                             f"3dshapes.h5 has ({n}, 64, 64, 3) uint8 and ({n}, 6) (data.path)")
        self._check_grid(labels[()])

    def _check_grid(self, labels: np.ndarray) -> None:
        """The labels must be the factor grid, the last factor running fastest, as released."""
        classes = np.empty(labels.shape, np.int64)
        for k, (name, size) in enumerate(zip(self.factor_names, self.factor_sizes)):
            values, classes[:, k] = np.unique(labels[:, k], return_inverse=True)
            if len(values) != size:
                raise ValueError(f"{self.path}: factor {name} has {len(values)} values, 3dshapes.h5 has {size} (data.path)")
        wrong = np.flatnonzero(grid_index(classes, self.factor_sizes) != np.arange(len(labels)))
        if len(wrong):
            raise ValueError(f"{self.path}: image {wrong[0]} is not where the factor grid puts it "
                             f"(its labels {labels[wrong[0]].tolist()}); the file's order is not 3dshapes.h5's")

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        index = self.factors_to_index(self.check_factors(factors))
        if not len(index):
            return np.zeros((0, *self.image_shape), np.uint8)
        rows, back = np.unique(index, return_inverse=True)  # h5py reads increasing rows, each once
        whole_range = rows[-1] - rows[0] + 1 == len(rows)  # e.g. a GPU run's upload: one read, not a list
        images = self.data[rows[0] : rows[-1] + 1] if whole_range else self.data[rows]
        return np.ascontiguousarray(images[back].transpose(0, 3, 1, 2))
