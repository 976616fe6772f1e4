"""MPI3D from a release-format archive: a full-size `.npy` of the images (sparse: a few stored), and
`.npz` archives whose images are memory-mapped (stored) or refused with a way out (compressed)."""

import zipfile

import numpy as np
import pytest

from betavae_dist.experiment import from_sources
from betavae_dist.data import DataError, build_dataset
from betavae_dist.data.dataset import grid_factors
from betavae_dist.data.mpi3d import MPI3DReal, npz_member

WRITTEN = [0, 7, 460_799, 200_000]


def image_of(index):
    return np.broadcast_to(np.array([index % 251, index // 251 % 251, index // 63_001], np.uint8), (64, 64, 3))


@pytest.fixture(scope="module")
def toy_npy(tmp_path_factory):
    path = tmp_path_factory.mktemp("mpi3d") / "mpi3d_toy.npy"
    images = np.lib.format.open_memmap(path, "w+", np.uint8, (460_800, 64, 64, 3))  # 5.7 GB, sparse
    for i in WRITTEN:
        images[i] = image_of(i)
    images.flush()
    return path


def test_images_are_those_of_their_factors(toy_npy):
    dataset = build_dataset(from_sources(None, ["data.name=mpi3d_toy", f"data.path={toy_npy}", "model.channels=3"]).data)
    images = dataset.raw_images(grid_factors(np.array(WRITTEN), dataset.factor_sizes))
    assert images.shape == (4, 3, 64, 64)
    for image, index in zip(images, WRITTEN):
        assert (image.transpose(1, 2, 0) == image_of(index)).all()
    with pytest.raises(ValueError, match="holds images of \\(460800, 64, 64, 3\\) uint8; this set has \\(1036800, 64, 64, 3\\)"):
        MPI3DReal(toy_npy)  # the toy set is not the real one


def test_npz_images_are_memory_mapped_where_stored_and_refused_where_compressed(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    np.savez(tmp_path / "stored.npz", images=images, labels=np.arange(6))
    mapped = npz_member(tmp_path / "stored.npz", "images")
    assert isinstance(mapped, np.memmap) and (mapped == images).all()
    np.savez_compressed(tmp_path / "packed.npz", images=images)
    with pytest.raises(ValueError, match="its images are compressed, so they cannot be read a batch at a time; unpack them once"):
        npz_member(tmp_path / "packed.npz", "images")
    with zipfile.ZipFile(tmp_path / "stored.npz") as archive:
        assert archive.getinfo("images.npy").compress_type == zipfile.ZIP_STORED


def test_without_the_file_it_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="data.name=mpi3d_real needs data.path, the release's .npz; get mpi3d_toy.npz"):
        build_dataset(from_sources(None, ["data.name=mpi3d_real", "model.channels=3"]).data)
    with pytest.raises(DataError, match=f"MPI3D file not found: {tmp_path / 'x.npz'} \\(data.path\\)"):
        build_dataset(from_sources(None, ["data.name=mpi3d_toy", f"data.path={tmp_path / 'x.npz'}", "model.channels=3"]).data)
