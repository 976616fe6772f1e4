"""colour-, noisy- and scream-dSprites: dSprites' sprites painted as disentanglement_lib paints them,
with each image's draws a function of (data.seed, its index)."""

import json

import numpy as np
import pytest
from PIL import Image

from betavae_dist.experiment import from_sources
from betavae_dist.data import DataError, build_dataset
from betavae_dist.data.dsprites import DSprites
from betavae_dist.data.dsprites_variants import ColorDSprites, NoisyDSprites, ScreamDSprites
from helpers import train_here

FACTORS = np.random.default_rng(0).integers(0, DSprites.factor_sizes, (16, 6))


def test_color_dsprites_paints_each_sprite_in_its_own_colour():
    sprites = DSprites().raw_images(FACTORS)[:, 0].astype(bool)
    images = ColorDSprites().raw_images(FACTORS)
    assert images.shape == (16, 3, 64, 64) and images.dtype == np.uint8
    for image, sprite in zip(images, sprites):
        assert (image[:, ~sprite] == 0).all()  # black background
        colour = image[:, sprite]
        assert (colour == colour[:, :1]).all() and (colour >= 127).all()  # one colour, each channel in [0.5, 1]
    assert (ColorDSprites().raw_images(FACTORS[3:4]) == images[3:4]).all()  # drawn alone: the same image
    assert (ColorDSprites(seed=1).raw_images(FACTORS) != images).any()


def test_noisy_dsprites_puts_white_sprites_on_noise():
    sprites = DSprites().raw_images(FACTORS)[:, 0].astype(bool)
    images = NoisyDSprites().raw_images(FACTORS)
    for image, sprite in zip(images, sprites):
        assert (image[:, sprite] == 255).all()
        assert abs(image[:, ~sprite].mean() - 127.5) < 3 and image[:, ~sprite].std() > 70  # uniform noise
    assert (NoisyDSprites().raw_images(FACTORS[::-1]) == images[::-1]).all()


def test_scream_dsprites_inverts_a_shifted_crop_of_the_photograph_under_the_sprite(tmp_path):
    photo = tmp_path / "grey.png"
    Image.fromarray(np.full((300, 400, 3), 100, np.uint8)).save(photo)
    sprites = DSprites().raw_images(FACTORS)[:, 0].astype(bool)
    images = build_dataset(from_sources(None, ["data.name=scream_dsprites", f"data.path={photo}", "model.channels=3"]).data)
    images = images.raw_images(FACTORS).astype(int)
    for image, sprite in zip(images, sprites):
        background = image[:, ~sprite]
        assert (background == background[:, :1]).all()  # a grey photograph: one colour per image
        assert (background >= 50).all() and (background <= 178).all()  # (100/255 + uniform(0, 1)) / 2
        assert (np.abs(image[:, sprite] + background[:, :1] - 255) <= 1).all()  # the sprite: inverted


def test_scream_dsprites_needs_a_photograph_large_enough(tmp_path):
    with pytest.raises(DataError, match="data.name=scream_dsprites needs data.path, a photograph"):
        build_dataset(from_sources(None, ["data.name=scream_dsprites", "model.channels=3"]).data)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(small)
    with pytest.raises(ValueError, match="is 80x60 once shrunk to fit 350x274; a 64x64 crop needs more"):
        ScreamDSprites(small)


def test_noisy_dsprites_trains_and_is_scored(tmp_path):
    train_here(tmp_path / "run", "data.name=noisy_dsprites", "model.channels=3", "train.steps=2", "eval.every=2",
               "eval.n_train=60", "eval.n_eval=30", "eval.pairs=4", "eval.n_samples=200", "eval.metrics=beta_vae,mig")
    result = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= result["eval/beta_vae.eval_accuracy"] <= 1 and 0 <= result["eval/mig.score"] <= 1
