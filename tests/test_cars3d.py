"""Cars3D from a cars/ folder written here in the release's format: 183 `.mat` files, each `im` of
(128, 128, 3, 24, 4) uint8 (rows, columns, colour, azimuth, elevation)."""

import numpy as np
import pytest
from scipy.io import savemat

from betavae_dist.experiment import from_sources
from betavae_dist.data import DataError, build_dataset
from betavae_dist.data.cars3d import Cars3D
from betavae_dist.data.dataset import grid_factors


def colour(car, azimuth, elevation):
    return np.array([car, 10 * azimuth, 50 * elevation], np.uint8)


def write_cars(folder, cars=183):
    folder.mkdir()
    for car in range(cars):
        im = np.empty((128, 128, 3, 24, 4), np.uint8)
        for azimuth in range(24):
            for elevation in range(4):
                im[:, :, :, azimuth, elevation] = colour(car, azimuth, elevation)
        im[40:80, 50:60, :, :, :] = 255  # a bar, to see the resizing
        savemat(folder / f"car_{car:03d}_mesh.mat", {"im": im}, do_compression=True)
    return folder


@pytest.fixture(scope="module")
def cars(tmp_path_factory):
    return write_cars(tmp_path_factory.mktemp("cars3d") / "cars")


@pytest.mark.slow  # 183 files, 17,568 images resized: ~13 s
def test_images_are_those_of_their_factors_resized_as_disentanglement_lib_does(cars):
    dataset = build_dataset(from_sources(None, ["data.name=cars3d", f"data.path={cars}", "model.channels=3"]).data)
    assert isinstance(dataset, Cars3D)
    index = np.array([0, 1, 182, 183, 4 * 24 * 183 - 1, 5_000])
    factors = grid_factors(index, dataset.factor_sizes)
    images = dataset.raw_images(factors)
    assert images.shape == (6, 3, 64, 64) and images.dtype == np.uint8
    for image, (elevation, azimuth, car) in zip(images, factors):
        assert (image[:, 0, 0] == colour(car, azimuth, elevation)).all()  # background: the car's own colour
        assert (image[:, 30, 27] >= 250).all() and (image[:, 30, 10] == image[:, 0, 0]).all()  # the bar, halved


def test_without_the_183_files_it_says_where_to_get_them(tmp_path):
    with pytest.raises(DataError, match="data.name=cars3d needs data.path, the folder of the 183 .mat files"):
        build_dataset(from_sources(None, ["data.name=cars3d", "model.channels=3"]).data)
    few = write_cars(tmp_path / "few", cars=3)
    with pytest.raises(DataError, match=f"Cars3D: 3 .mat files in {few} \\(data.path\\), the release has 183; get the"):
        build_dataset(from_sources(None, ["data.name=cars3d", f"data.path={few}", "model.channels=3"]).data)
    (tmp_path / "wrong").mkdir()
    for car in range(183):
        savemat(tmp_path / "wrong" / f"car_{car:03d}.mat", {"im": np.zeros((64, 64, 3, 24, 4), np.uint8)})
    with pytest.raises(ValueError, match="car_000.mat holds im of \\(64, 64, 3, 24, 4\\) uint8, the release's are"):
        Cars3D(tmp_path / "wrong")
