"""The unsupervised scores against disentanglement_lib's: its unit checks, and its
`unsupervised_metrics` transcribed below (NumPy, scipy and the same scikit-learn call, from
evaluation/metrics/unsupervised_metrics.py and utils.py) on the same codes."""

import numpy as np
import pytest
import scipy.linalg

from betavae_dist.metrics.codes import CodeTable, Streams
from betavae_dist.metrics.unsupervised import gaussian_total_correlation, gaussian_wasserstein_correlation
from helpers import dlib_noisy, dlib_oracle, dlib_rotated, metric

CORRELATED = np.array([[1, 0.9], [0.9, 1.0]])


def test_disentanglement_libs_unit_checks():
    assert abs(gaussian_total_correlation(np.eye(5))) < 1e-12
    assert abs(gaussian_wasserstein_correlation(np.eye(5))) < 1e-12
    # KL(N(0, C) || N(0, diag C)), the long way (its kl_gaussians_numerically_unstable)
    diagonal = np.diag(np.diag(CORRELATED))
    kl = 0.5 * (np.trace(np.linalg.inv(diagonal) @ CORRELATED) - 2 + np.log(np.linalg.det(diagonal) / np.linalg.det(CORRELATED)))
    assert gaussian_total_correlation(CORRELATED) == pytest.approx(kl)
    wasserstein = np.trace(CORRELATED + diagonal - 2 * scipy.linalg.sqrtm(CORRELATED @ diagonal)).real
    assert gaussian_wasserstein_correlation(CORRELATED) == pytest.approx(wasserstein)


def dlib_unsupervised(mus_train):
    """disentanglement_lib's computation on (codes, points), as there."""
    from sklearn.metrics import mutual_info_score

    num_codes = mus_train.shape[0]
    cov_mus = np.cov(mus_train)
    scores = {"gaussian_total_correlation": 0.5 * (np.sum(np.log(np.diag(cov_mus))) - np.linalg.slogdet(cov_mus)[1])}
    sqrtm = scipy.linalg.sqrtm(cov_mus * np.expand_dims(np.diag(cov_mus), axis=1))
    scores["gaussian_wasserstein_correlation"] = 2 * np.trace(cov_mus) - 2 * np.trace(sqrtm)
    scores["gaussian_wasserstein_correlation_norm"] = scores["gaussian_wasserstein_correlation"] / np.sum(np.diag(cov_mus))
    discretized = np.zeros_like(mus_train)
    for i in range(num_codes):
        discretized[i, :] = np.digitize(mus_train[i, :], np.histogram(mus_train[i, :], 20)[1][:-1])
    mi = np.array([[mutual_info_score(a, b) for b in discretized] for a in discretized])
    np.fill_diagonal(mi, 0)
    scores["mutual_info_score"] = np.sum(mi) / (num_codes**2 - num_codes)
    return scores


@pytest.mark.parametrize("codes", [lambda: dlib_oracle, lambda: dlib_rotated, dlib_noisy])
def test_equals_disentanglement_libs_computation_on_the_same_codes(dsprites, codes):
    ours = metric("unsupervised", dsprites, codes(), n_train=2000)
    samples = dsprites.sample_factors(2000, Streams(0, "unsupervised")())  # the metric's points, drawn as it draws them
    reference = dlib_unsupervised(CodeTable(codes(), dsprites.factor_sizes)(samples).T)
    for key, value in reference.items():
        assert ours[f"unsupervised.{key}"] == pytest.approx(np.real(value), rel=1e-6, abs=1e-9), key


def test_a_rotation_is_more_correlated_than_the_oracle(dsprites):
    oracle = metric("unsupervised", dsprites, dlib_oracle, n_train=2000)
    rotated = metric("unsupervised", dsprites, dlib_rotated, n_train=2000)
    measured = {"gaussian_total_correlation": 10, "gaussian_wasserstein_correlation_norm": 10, "mutual_info_score": 2}
    for key, times in measured.items():
        assert rotated[f"unsupervised.{key}"] > oracle[f"unsupervised.{key}"] * times, key  # measured 23x, 29x, 3x
