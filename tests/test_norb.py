"""SmallNORB from its six binary matrix files, written here in the release's format at full size
(the image files sparse: only some pictures stored), rows shuffled as a file may have them."""

import numpy as np
import pytest

from betavae_dist.experiment import from_sources
from betavae_dist.data import DataError, build_dataset
from betavae_dist.data.dataset import grid_factors, grid_index
from betavae_dist.data.norb import CHUNKS, SmallNORB
from betavae_dist.metrics.codes import factor_set

INSTANCES = ((4, 6, 7, 8, 9), (0, 1, 2, 3, 5))  # training, testing
PICTURED = [0, 1, 17, 48_599, 30_000]  # grid indices whose left image holds a picture


def picture(index):
    """The left image of grid point `index` here: a bright square whose grey level names the point."""
    image = np.zeros((96, 96), np.uint8)
    image[24:72, 24:72] = 10 + index % 240
    return image


def header(magic, dims):
    return np.array([magic, len(dims), *dims, *[1] * (3 - len(dims))], np.int32).tobytes()


def write_norb(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for chunk, instances in zip(CHUNKS, INSTANCES):
        grid = np.stack(np.meshgrid(range(5), instances, range(9), range(18), range(6), indexing="ij"), -1).reshape(-1, 5)
        grid = grid[rng.permutation(len(grid))]  # the release's rows are in an order of their own
        categories = grid[:, 0].astype(np.int32).tobytes()
        (folder / f"smallnorb-{chunk}-cat.mat").write_bytes(header(0x1E3D4C54, [len(grid)]) + categories)
        info = grid[:, 1:] * np.array([1, 1, 2, 1])  # azimuths 0, 2, ..., 34
        (folder / f"smallnorb-{chunk}-info.mat").write_bytes(header(0x1E3D4C54, [len(grid), 4]) + info.astype(np.int32).tobytes())
        dat = folder / f"smallnorb-{chunk}-dat.mat"
        start = len(header(0x1E3D4C55, [len(grid), 2, 96, 96]))
        with open(dat, "wb") as f:
            f.write(header(0x1E3D4C55, [len(grid), 2, 96, 96]))
            f.truncate(start + len(grid) * 2 * 96 * 96)  # 448 MB, sparse
            rows = grid_index(grid, SmallNORB.factor_sizes)
            for index in PICTURED:
                for row in np.flatnonzero(rows == index):
                    f.seek(start + row * 2 * 96 * 96)
                    f.write(picture(index).tobytes())
    return folder


@pytest.fixture(scope="module")
def norb(tmp_path_factory):
    return write_norb(tmp_path_factory.mktemp("smallnorb") / "norb")


def test_images_are_those_of_their_factors_and_instance_is_a_nuisance(norb):
    dataset = build_dataset(from_sources(None, ["data.name=smallnorb", f"data.path={norb}", "model.channels=1"]).data)
    assert isinstance(dataset, SmallNORB) and factor_set(dataset, "all") == [0, 2, 3, 4]  # instance: drawn, not scored
    images = dataset.raw_images(grid_factors(np.array(PICTURED), dataset.factor_sizes))
    assert images.shape == (len(PICTURED), 1, 64, 64) and images.dtype == np.uint8
    for image, index in zip(images, PICTURED):
        assert image[0, 32, 32] == 10 + index % 240 and image[0, 2, 2] == 0  # the square, resized 96 -> 64
    assert dataset.raw_images(grid_factors(np.array([5]), dataset.factor_sizes)).max() == 0  # a point not pictured here


def test_missing_or_damaged_files_are_named(norb, tmp_path):
    with pytest.raises(DataError, match="data.name=smallnorb needs data.path, the folder of the six .mat files"):
        build_dataset(from_sources(None, ["data.name=smallnorb"]).data)
    with pytest.raises(DataError, match=f"SmallNORB: smallnorb-{CHUNKS[0]}-dat.mat, .* not in {tmp_path} \\(data.path\\); get"):
        build_dataset(from_sources(None, ["data.name=smallnorb", f"data.path={tmp_path}"]).data)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in norb.iterdir():
        (broken / f.name).symlink_to(f)
    (broken / f"smallnorb-{CHUNKS[1]}-info.mat").unlink()
    (broken / f"smallnorb-{CHUNKS[1]}-info.mat").write_bytes(b"\x00" * 8)
    with pytest.raises(ValueError, match=f"SmallNORB: {broken}/smallnorb-{CHUNKS[1]}-info.mat is not a matrix of the release"):
        SmallNORB(broken)


@pytest.mark.parametrize("baseline, metrics", [("pixels", "beta_vae"), ("pca:4", "beta_vae,mig")])  # MIG of 4,096 pixels: 15 s
def test_the_baselines_score_it(norb, tmp_path, baseline, metrics):
    import json

    from betavae_dist.evaluate import main as evaluate_main
    from helpers import in_process

    out = tmp_path / "result.json"
    proc = in_process(evaluate_main, ["--model", baseline, "--out", str(out), "data.name=smallnorb", f"data.path={norb}",
                                      f"eval.metrics={metrics}", "eval.n_train=60", "eval.n_eval=30", "eval.pairs=4"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert 0 <= result["beta_vae.eval_accuracy"] <= 1 and 0 <= result.get("mig.score", 0) <= 1
