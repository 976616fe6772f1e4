"""MPI3D (Gondal et al. 2019), read from a release's `.npz` (`data.path`); nothing is downloaded.

A robot arm holding an object, photographed (`mpi3d_real`) or rendered (`mpi3d_toy`,
`mpi3d_realistic`), as disentanglement_lib's `MPI3D` has it: object colour (4; 6 for the real
set), object shape (4; 6), object size (2), camera height (3), background colour (3), and the
arm's two degrees of freedom (40 each), the last running fastest: 460,800 images (1,036,800 real),
64x64 RGB. The release's `.npz` holds `images` (n, 64, 64, 3) uint8. It is memory-mapped where the
archive stores it uncompressed, so a run never holds the 5.7 GB (13 GB real) in memory; a `.npy` of
the images (`np.save`) is read the same way.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .dataset import ReleaseFiles

WHERE = ("get mpi3d_toy.npz, mpi3d_realistic.npz or mpi3d_real.npz from the MPI3D release (the README of "
         "github.com/rr-learning/disentanglement_dataset) and set data.path to it")


def npz_member(path: Path, name: str) -> np.memmap:
    """Array `name` of the `.npz` at `path`, memory-mapped: the archive must store it uncompressed."""
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        info = archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{path}: its {name} are compressed, so they cannot be read a batch at a time; unpack them once "
                             f"(python -c \"import numpy as np; np.save('{path.stem}.npy', np.load('{path}')['{name}'])\") "
                             f"and set data.path to the .npy")
        f.seek(info.header_offset + 26)  # the local file header: its name and extra field come before the data
        name_length, extra_length = np.frombuffer(f.read(4), "<u2")
        f.seek(info.header_offset + 30 + int(name_length) + int(extra_length))
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        return np.memmap(path, dtype, "r", offset=f.tell(), shape=shape, order="F" if fortran else "C")


class MPI3D(ReleaseFiles):
    """mpi3d_toy and mpi3d_realistic: 4 colours and 4 shapes."""
    factor_names = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                    "horizontal_axis", "vertical_axis")
    factor_sizes = (4, 4, 2, 3, 3, 40, 40)
    image_shape = (3, 64, 64)
    pixel_max = 255
    files, where = "the release's .npz", WHERE

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"MPI3D file not found: {self.path} (data.path); {WHERE}")
        try:
            self.data = np.load(self.path, mmap_mode="r") if self.path.suffix == ".npy" else npz_member(self.path, "images")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"MPI3D: cannot read the images of {self.path} (data.path): {e}") from None
        if self.data.shape != (self.num_images, 64, 64, 3) or self.data.dtype != np.uint8:
            raise ValueError(f"MPI3D: {self.path} holds images of {self.data.shape} {self.data.dtype}; this set has "
                             f"({self.num_images}, 64, 64, 3) uint8 (is data.name the right one of mpi3d_toy, "
                             "mpi3d_realistic, mpi3d_real?)")

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        index = self.factors_to_index(self.check_factors(factors))
        return np.ascontiguousarray(self.data[index].transpose(0, 3, 1, 2))


class MPI3DReal(MPI3D):
    """mpi3d_real: 6 colours and 6 shapes."""
    factor_sizes = (6, 6, 2, 3, 3, 40, 40)
