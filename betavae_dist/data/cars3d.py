"""Cars3D (Reed et al. 2015), read from its per-car `.mat` files (`data.path`); nothing is downloaded.

183 car models, each rendered at 4 elevations and 24 azimuths: 17,568 RGB images, as
disentanglement_lib's `Cars3D` has them, factors elevation (4), azimuth (24) and object type (183),
the last running fastest. Each `*.mat` file of the release's `cars/` folder holds `im`, (128, 128,
3, 24, 4) uint8: image rows and columns, colour, azimuth, elevation. Each image is brought to 64x64
as disentanglement_lib does (PIL's `thumbnail` with Lanczos filtering). The object type is the
file's place in name order; disentanglement_lib took the directory listing's order, which the file
system decides. The set (216 MB) is read and resized once, when it is opened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .dataset import ReleaseFiles

WHERE = ("get the Cars3D release of Reed et al.'s \"Deep Visual Analogy-Making\" (scottreed.info), unpack it and set "
         "data.path to its cars/ folder of .mat files")
MESH = (128, 128, 3, 24, 4)  # one file's `im`: rows, columns, colour, azimuth, elevation


class Cars3D(ReleaseFiles):
    factor_names = ("elevation", "azimuth", "object_type")
    factor_sizes = (4, 24, 183)
    image_shape = (3, 64, 64)
    pixel_max = 255
    files, where = "the folder of the 183 .mat files", WHERE

    def __init__(self, folder: str | Path):
        from scipy.io import loadmat

        folder = Path(folder)
        files = sorted(folder.glob("*.mat")) if folder.is_dir() else []
        if len(files) != self.factor_sizes[2]:
            raise FileNotFoundError(f"Cars3D: {len(files)} .mat files in {folder} (data.path), the release has "
                                    f"{self.factor_sizes[2]}; {WHERE}")
        self.images = np.empty((*self.factor_sizes, 3, 64, 64), np.uint8)  # (elevation, azimuth, car, C, H, W)
        for car, path in enumerate(files):
            try:
                mesh = loadmat(path)["im"]
            except (OSError, ValueError, KeyError) as e:
                raise ValueError(f"Cars3D: cannot read {path} (data.path): {e}") from None
            if mesh.shape != MESH or mesh.dtype != np.uint8:
                raise ValueError(f"Cars3D: {path} holds im of {mesh.shape} {mesh.dtype}, the release's are {MESH} uint8")
            for azimuth in range(MESH[3]):
                for elevation in range(MESH[4]):
                    picture = Image.fromarray(mesh[:, :, :, azimuth, elevation])
                    picture.thumbnail((64, 64), Image.Resampling.LANCZOS)
                    self.images[elevation, azimuth, car] = np.asarray(picture).transpose(2, 0, 1)
        self.images = self.images.reshape(-1, *self.image_shape)  # the grid's order: object type fastest

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        return self.images[self.factors_to_index(self.check_factors(factors))]
