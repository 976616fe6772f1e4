"""3D Shapes from a 3dshapes.h5 written here in the release's layout (full size, only some images
stored: an HDF5 file leaves unwritten chunks out), read without loading the 5.9 GB set."""

import json

import numpy as np
import pytest

from betavae_dist.data import DataError, build_dataset
from betavae_dist.data.dataset import grid_factors
from betavae_dist.data.shapes3d import Shapes3D
from betavae_dist.experiment import from_sources
from betavae_dist.metrics.codes import factor_set
from helpers import train_here

h5py = pytest.importorskip("h5py")
N = 480_000
VALUES = [np.linspace(0, 0.9, 10)] * 3 + [np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15)]
WRITTEN = [0, 1, 15, 479_999, *range(123_456, 123_456 + 64)]


def image_of(index):
    """What image `index` holds here: its index in the three colour channels."""
    return np.broadcast_to(np.array([index % 251, index // 251 % 251, index // 63_001], np.uint8), (64, 64, 3))


def write_3dshapes(path, labels=None):
    grid = np.stack(np.meshgrid(*VALUES, indexing="ij"), -1).reshape(N, 6)  # the last factor fastest
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (N, 64, 64, 3), np.uint8, chunks=(1, 64, 64, 3), compression="gzip")
        f.create_dataset("labels", data=grid if labels is None else labels(grid), compression="gzip")
        for i in WRITTEN:
            images[i] = image_of(i)
    return path


@pytest.fixture(scope="module")
def shapes_file(tmp_path_factory):
    return write_3dshapes(tmp_path_factory.mktemp("shapes3d") / "3dshapes.h5")


def peak_rss():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) * 1024


def test_images_are_those_of_their_factors_and_the_set_is_never_read_whole(shapes_file):
    before = peak_rss()
    dataset = Shapes3D(shapes_file)
    factors = grid_factors(np.array(WRITTEN[::-1] + [15]), dataset.factor_sizes)  # any order, one twice
    images = dataset.raw_images(factors)
    assert images.shape == (len(factors), 3, 64, 64) and images.dtype == np.uint8
    for got, index in zip(images, WRITTEN[::-1] + [15]):
        assert (got.transpose(1, 2, 0) == image_of(index)).all()
    assert dataset.raw_images_at(np.arange(123_456, 123_456 + 64)).shape == (64, 3, 64, 64)  # one range, one read
    assert peak_rss() - before < 1 << 30  # the images are 5.9 GB; the labels 23 MB
    assert dataset.images(factors[:1]).max() == pytest.approx(image_of(WRITTEN[-1]).max() / 255)


def test_it_trains_and_every_metric_scores_it(shapes_file, tmp_path):
    proc = train_here(tmp_path / "run", "data.name=shapes3d", f"data.path={shapes_file}", "model.channels=3",
                      "train.steps=2", "eval.every=2", "eval.n_train=60", "eval.n_eval=30", "eval.pairs=4",
                      "eval.n_samples=200", "eval.metrics=beta_vae,factor_vae,mig,dci,sap")
    result = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("beta_vae.eval_accuracy", "factor_vae.eval_accuracy", "mig.score", "dci.disentanglement", "sap.score"):
        assert np.isfinite(result[f"eval/{key}"]), (key, proc.stdout[-2000:])
    assert factor_set(Shapes3D(shapes_file), "all") == [0, 1, 2, 3, 4, 5]


def test_data_name_builds_it_from_data_path_or_says_where_to_get_the_file(shapes_file, tmp_path):
    cfg = from_sources(None, ["data.name=shapes3d", f"data.path={shapes_file}", "model.channels=3"])
    assert isinstance(build_dataset(cfg.data), Shapes3D)
    with pytest.raises(DataError, match="data.name=shapes3d needs data.path, the file 3dshapes.h5; get 3dshapes.h5"):
        build_dataset(from_sources(None, ["data.name=shapes3d", "model.channels=3"]).data)
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(DataError, match=f"Shapes3D file not found: {missing} \\(data.path\\); get 3dshapes.h5"):
        build_dataset(from_sources(None, ["data.name=shapes3d", f"data.path={missing}", "model.channels=3"]).data)


def test_a_file_in_another_order_or_layout_is_refused_naming_it(tmp_path):
    shuffled = write_3dshapes(tmp_path / "shuffled.h5", labels=lambda grid: grid[::-1])
    with pytest.raises(ValueError, match=f"{shuffled}: image 0 is not where the factor grid puts it"):
        Shapes3D(shuffled)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("images", (10, 64, 64, 3), np.uint8)
        f.create_dataset("labels", (10, 6), np.float64)
    with pytest.raises(ValueError, match=f"{other}: images \\(10, 64, 64, 3\\) uint8 and labels \\(10, 6\\), 3dshapes.h5 has"):
        Shapes3D(other)
    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("someone's notes")
    with pytest.raises(ValueError, match=f"{not_hdf5} is not 3dshapes.h5"):
        Shapes3D(not_hdf5)


def test_a_pack_of_two_trains_on_it(shapes_file, tmp_path):
    from betavae_dist.pack.train import train_pack

    cfgs = [from_sources("configs/dsprites_beta4.yaml", ["data.name=shapes3d", f"data.path={shapes_file}", "model.channels=3",
                                                         "train.batch_size=16", "train.steps=2", "train.progress=false",
                                                         f"loss.beta={beta}", f"run_dir={tmp_path / str(beta)}"])
            for beta in (1, 4)]
    assert train_pack(cfgs) == []  # no point failed
    assert all((tmp_path / str(beta) / "export" / "model.safetensors").is_file() for beta in (1, 4))
