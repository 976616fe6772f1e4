import json

import numpy as np
import pytest

from betavae_dist.metrics import codes, run_metric
from betavae_dist.metrics.beta_vae import beta_vae_points
from betavae_dist.metrics.codes import CodeTable, Streams, factor_set, model_representation
from betavae_dist.models import BetaVAE
from helpers import (SMALL_EVAL, constant, dlib_constant, dlib_noisy, dlib_oracle, dlib_rotated, eval_config, metric, oracle,
                     rotated, score, train)

KEY = "beta_vae.eval_accuracy"


def test_oracle_scores_top_rotation_lower_constant_chance(dsprites):
    top = score("beta_vae", dsprites, oracle, KEY)
    mixed = score("beta_vae", dsprites, rotated, KEY)
    flat = score("beta_vae", dsprites, constant, KEY)
    assert top >= 0.99
    # The β-VAE metric is known to tolerate rotations partly (Kim & Mnih 2018): lower, not zero.
    assert mixed <= top - 0.02
    assert abs(flat - 1 / 5) < 0.05  # 5 factors: chance


def test_no_shape_preset_has_four_classes(dsprites):
    factors = factor_set(dsprites, "no_shape")
    assert [dsprites.factor_names[i] for i in factors] == ["scale", "orientation", "posX", "posY"]
    _, labels = beta_vae_points(dsprites, CodeTable(oracle, dsprites.factor_sizes), factors, Streams(0, "beta_vae"), 4, 200)
    assert set(labels) == {0, 1, 2, 3}


def test_pairs_share_exactly_the_chosen_factor(dsprites):
    seen = []
    def spy(factors):
        seen.append(factors.copy())
        return oracle(factors)
    points, labels = beta_vae_points(dsprites, spy, [1, 2, 3, 4, 5], Streams(0, "beta_vae"), 8, 50)
    pairs = seen[0].reshape(50, 2, 8, 6)
    first, second = pairs[:, 0], pairs[:, 1]
    for i in range(50):
        y = [1, 2, 3, 4, 5][labels[i]]
        assert (first[i, :, y] == second[i, :, y]).all()
        assert points[i, y] == 0


def test_points_do_not_depend_on_chunking_and_images_are_encoded_once(dsprites, monkeypatch):
    calls = []
    def counting(factors):
        calls.append(len(factors))
        return oracle(factors)
    fs = factor_set(dsprites, "all")
    rng = Streams(3, "beta_vae")
    a, _ = beta_vae_points(dsprites, CodeTable(counting, dsprites.factor_sizes, batch_size=7), fs, rng, 16, 100)
    b, _ = beta_vae_points(dsprites, CodeTable(oracle, dsprites.factor_sizes, batch_size=512), fs, rng, 16, 100)
    np.testing.assert_array_equal(a, b)
    encoded = sum(calls)
    assert encoded < 2 * 16 * 100  # fewer than one encode per image of every pair...
    assert all(n == 7 for n in calls)  # ...in fixed-shape chunks
    # Codes too wide to keep (raw pixels) are encoded per request, and points a few at a time: the same points.
    calls.clear()
    monkeypatch.setattr(codes, "POINT_CODES", 3 * 2 * 16)
    c, _ = beta_vae_points(dsprites, CodeTable(counting, dsprites.factor_sizes, batch_size=7, keep_bytes=0), fs, rng, 16, 100)
    np.testing.assert_array_equal(a, c)
    assert sum(calls) > 2 * 16 * 100 * 0.9 and len(calls) > 34 * 4  # 34 chunks of 3 points, each encoded anew


def test_seed_changes_points_and_same_seed_repeats(dsprites):
    run = lambda seed: metric("beta_vae", dsprites, rotated, **{**SMALL_EVAL, "seed": seed})
    assert run(0) == run(0)
    assert run(0)["beta_vae.points_sha256"] != run(1)["beta_vae.points_sha256"]


# disentanglement_lib, its default sizes, seed 0 (the metrics issue's table). Tolerances: 3 seeds
# of each library spread by ±0.002 on the rotated code and ±0.007 on the constant one (measured).
@pytest.mark.parametrize("represent,expected,tolerance", [
    (dlib_oracle, 1.000, 0.005), (dlib_rotated, 0.907, 0.01), (dlib_noisy(), 1.000, 0.005),
    (dlib_constant, 0.210, 0.02)])
def test_matches_disentanglement_lib(dsprites, represent, expected, tolerance):
    result = metric("beta_vae", dsprites, represent)
    assert result[KEY] == pytest.approx(expected, abs=tolerance)


@pytest.mark.integration
def test_a_collapsed_model_scores_near_chance_over_seeds(tmp_run, dsprites):
    # Early in training (KL ~ 0.005 nats) the codes barely depend on the image. Under
    # disentanglement_lib's protocol such a model is not exactly at chance (0.2): over 10 seeds its
    # scores were 0.273 ± 0.075 (ours 0.267 ± 0.074 on the same codes, 0.19-0.38), since the
    # classifier still reads something from the tiny |z1 - z2|. What must not happen is what
    # standardised features did to them: 0.73-0.79.
    train(tmp_run, "train.steps=300", "train.batch_size=64", "train.log_every=100")
    kl = json.loads((tmp_run / "metrics.jsonl").read_text().splitlines()[-1])["kl"]
    assert kl < 0.02
    model = BetaVAE.from_pretrained(tmp_run / "export").eval()
    table = CodeTable(model_representation(model, dsprites, "cpu"), dsprites.factor_sizes)
    scores = [run_metric("beta_vae", dsprites, table, factor_set(dsprites, "all"),
                         eval_config(seed=seed, n_train=2000, n_eval=1000, pairs=32))[KEY] for seed in range(3)]
    assert max(scores) < 0.5 and 0.15 < np.mean(scores) < 0.4, scores
