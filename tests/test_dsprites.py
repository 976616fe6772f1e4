import hashlib

import numpy as np
import pytest

from betavae_dist.data import dsprites as d


def factors(shape=0, scale=5, orientation=0, x=16, y=16, n=1):
    return np.tile(np.array([[0, shape, scale, orientation, x, y]]), (n, 1))


def test_grid_matches_the_original():
    assert d.FACTOR_SIZES == (1, 3, 6, 40, 32, 32)
    assert d.NUM_IMAGES == 737_280
    np.testing.assert_allclose(d.SCALES, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert d.ORIENTATIONS[0] == 0 and d.ORIENTATIONS[-1] == pytest.approx(2 * np.pi)
    assert d.POSITIONS[0] == 0 and d.POSITIONS[-1] == 1


def test_index_order_is_posy_fastest_and_round_trips():
    f = d.DSprites.index_to_factors(np.array([0, 1, 32, 1024, 40960, 245760, 737279]))
    np.testing.assert_array_equal(f[1], [0, 0, 0, 0, 0, 1])  # posY fastest
    np.testing.assert_array_equal(f[2], [0, 0, 0, 0, 1, 0])  # then posX
    np.testing.assert_array_equal(f[3], [0, 0, 0, 1, 0, 0])  # then orientation
    np.testing.assert_array_equal(f[4], [0, 0, 1, 0, 0, 0])  # then scale
    np.testing.assert_array_equal(f[5], [0, 1, 0, 0, 0, 0])  # then shape
    np.testing.assert_array_equal(f[6], [0, 2, 5, 39, 31, 31])
    every = np.arange(d.NUM_IMAGES)
    np.testing.assert_array_equal(d.DSprites.factors_to_index(d.DSprites.index_to_factors(every)), every)


def test_images_are_binary_64x64_and_every_sprite_is_inside():
    images = d.render(d.DSprites.index_to_factors(np.arange(0, d.NUM_IMAGES, 97)))
    assert images.shape[1:] == (64, 64) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 1}
    assert images.reshape(len(images), -1).sum(1).min() > 0
    # Largest sprites at the extreme positions stay clear of the border (nothing clipped).
    corners = [factors(s, 5, o, x, y) for s in range(3) for o in (0, 5, 10) for x in (0, 31) for y in (0, 31)]
    edge = d.render(np.concatenate(corners))
    assert edge[:, 0, :].sum() == edge[:, -1, :].sum() == edge[:, :, 0].sum() == edge[:, :, -1].sum() == 0


@pytest.mark.parametrize("shape", range(3))
def test_area_grows_with_scale(shape):
    areas = d.render(np.concatenate([factors(shape, s) for s in range(6)])).sum(axis=(1, 2))
    assert np.all(np.diff(areas) > 0), areas


def test_position_moves_the_centroid():
    images = d.render(np.concatenate([factors(2, 3, 7, x, 10) for x in range(32)]))
    cols = np.arange(64)
    centroid_x = (images.sum(1) * cols).sum(1) / images.sum((1, 2))
    assert np.all(np.diff(centroid_x) > 0)
    images = d.render(np.concatenate([factors(2, 3, 7, 10, y) for y in range(32)]))
    centroid_y = (images.sum(2) * cols).sum(1) / images.sum((1, 2))
    assert np.all(np.diff(centroid_y) > 0)
    assert 8 < centroid_y[0] < 16 and 47 < centroid_y[-1] < 55


def test_rotation_by_2pi_renders_the_same_image_and_other_angles_differ():
    for shape in range(3):
        first, last = d.render(np.concatenate([factors(shape, 5, 0), factors(shape, 5, 39)]))
        np.testing.assert_array_equal(first, last)
    heart = d.render(np.concatenate([factors(2, 5, o) for o in range(39)]))
    assert len({h.tobytes() for h in heart}) == 39  # the heart has no rotational symmetry


def test_shapes_differ_at_equal_scale():
    square, ellipse, heart = d.render(np.concatenate([factors(s, 5) for s in range(3)])).sum((1, 2))
    assert square > heart > ellipse


def test_rendering_is_deterministic_bytes():
    # Pinned digest: the same factors must give the same bytes on every machine and run.
    f = d.DSprites.index_to_factors(np.arange(0, d.NUM_IMAGES, 1009))
    digest = hashlib.sha256(d.render(f).tobytes()).hexdigest()
    assert digest == hashlib.sha256(d.render(f).tobytes()).hexdigest()
    assert digest == RENDER_DIGEST


def test_bad_factors_are_named():
    with pytest.raises(ValueError, match="orientation of row 0 is 40"):
        d.render(factors(0, 0, 40))


def test_dataset_api_and_missing_npz_named(tmp_path):
    ds = d.DSprites()
    f = ds.sample_factors(5, np.random.default_rng(0))
    assert ds.raw_images(f).shape == (5, 1, 64, 64)
    np.testing.assert_array_equal(ds.raw_images_at(d.DSprites.factors_to_index(f)), ds.raw_images(f))
    missing = tmp_path / "dsprites_ndarray.npz"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        d.DSprites(missing)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, imgs=np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="wrong.npz.*shape"):
        d.DSprites(wrong)


RENDER_DIGEST = "ba189c08baa0bc54be9ccf30ce0fa9bd99e977e5f587b994803947928cdd8ee8"
