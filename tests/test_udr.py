"""UDR equals disentanglement_lib's compute_udr_sklearn: its own unit cases (udr_test.py) and its
Spearman matrix (spearman_correlation_conv, transcribed) on the same codes; and the sweep command."""

import json
import math
import shutil

import numpy as np
import pytest
import yaml

from betavae_dist.sweep_file import Sweep
from betavae_dist.udr import lasso_matrix, relative_strength_disentanglement, score_sweep, spearman_matrix, udr_scores


def dlib_spearman_correlation_conv(vec1, vec2):
    import scipy.stats
    corr_y = []
    for i in range(vec1.shape[1]):
        corr_x = []
        for j in range(vec2.shape[1]):
            corr, _ = scipy.stats.spearmanr(vec1[:, i], vec2[:, j], nan_policy="omit")
            corr_x.append(corr)
        corr_y.append(np.stack(corr_x))
    return np.transpose(np.absolute(np.stack(corr_y, axis=1)))


def test_relative_strength_as_disentanglement_lib_tests_it():
    assert relative_strength_disentanglement(np.eye(3)) == 1.0
    assert 0.6 < relative_strength_disentanglement(np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])) < 0.7
    assert 0.3 < relative_strength_disentanglement(np.ones((3, 3))) < 0.4
    assert relative_strength_disentanglement(np.zeros((3, 3))) == 0.0


def test_the_correlation_matrices_as_disentanglement_lib_tests_them():
    state = np.random.RandomState(0)
    vec1 = state.random_sample((1000, 3))
    vec2 = vec1.copy()
    vec2[:, 1] = vec2[:, 0]
    np.testing.assert_allclose(spearman_matrix(vec1, vec2), [[1, 1, 0], [0, 0, 0], [0, 0, 1]], atol=0.1)
    np.testing.assert_allclose(spearman_matrix(vec1, vec2), dlib_spearman_correlation_conv(vec1, vec2), atol=1e-12)
    tied = np.round(state.random_sample((300, 4)), 1)  # ties, as quantised codes have
    np.testing.assert_allclose(spearman_matrix(tied, tied[:, ::-1]), dlib_spearman_correlation_conv(tied, tied[:, ::-1]),
                               atol=1e-12)
    np.testing.assert_allclose(lasso_matrix(vec1 * 10, vec2 * 10), [[1, 1, 0], [0, 0, 0], [0, 0, 1]], atol=0.2)


@pytest.mark.parametrize("kind", ["spearman", "lasso"])
def test_a_permuted_sign_flipped_copy_scores_high(kind):
    rng = np.random.default_rng(0)
    codes = rng.uniform(size=(1000, 5))
    other = codes[:, rng.permutation(5)] * np.array([1, -1, 1, -1, 1])
    _, scores = udr_scores([codes, other], [np.ones(5), np.ones(5)], kind)
    assert (0.8 < scores).all() and (scores <= 1.0).all()


def test_latents_without_kl_are_left_out():
    """disentanglement_lib's test_metric_kl: one informative latent and four of noise."""
    rng = np.random.default_rng(0)
    signal = rng.uniform(size=(1000, 1))
    codes = [np.hstack([signal, rng.uniform(size=(1000, 4))]) for _ in range(2)]
    kl = np.array([1.0, 0, 0, 0, 0])
    assert (udr_scores(codes, [kl, kl], "lasso", filter_low_kl=False)[1] < 0.2).all()
    assert (udr_scores(codes, [kl, kl], "lasso")[1] > 0.8).all()


def test_the_sweep_command_scores_each_settings_seeds(small_run, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": "configs/dsprites_beta4.yaml", "out_dir": str(tmp_path / "sweep"),
                                    "grid": {"seed": [0, 1, 2], "loss.beta": [4]}}))
    sweep = Sweep.load(path)
    for point in sweep.points[:2]:  # two evaluated seeds (the same model twice), the third not trained
        run_dir = sweep.run_dir(point)
        shutil.copytree(small_run / "export", run_dir / "export")
        (run_dir / "evaluation.json").write_text(json.dumps({"mig.score": 0.1}))
    said = []
    scored = score_sweep(sweep, n=200, say=said.append)
    assert set(scored) == {sweep.name(p) for p in sweep.points[:2]}
    evaluation = json.loads((sweep.run_dir(sweep.points[0]) / "evaluation.json").read_text())
    # A 4-step model has no latent above UDR's KL threshold: nothing to compare, NaN (not a crash).
    assert evaluation["mig.score"] == 0.1 and math.isnan(evaluation["udr.lasso"]) and "udr.spearman" in evaluation
    assert said and said[0].startswith("udr: {'loss.beta': 4}: 2 seeds")


def test_models_without_an_informative_latent_score_nan():
    codes = [np.random.default_rng(k).uniform(size=(100, 3)) for k in range(3)]
    pairs, scores = udr_scores(codes, [np.zeros(3)] * 3, "spearman")
    assert np.isnan(scores).all()
