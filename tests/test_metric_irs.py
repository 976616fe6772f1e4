"""IRS against disentanglement_lib's: its checks (an identity code near 1, a constant one 0), and its
`compute_irs` transcribed below (from evaluation/metrics/irs.py and utils.py) on the same codes."""

import numpy as np
import pytest

from betavae_dist.metrics.codes import CodeTable, Streams, factor_set
from helpers import dlib_noisy, dlib_oracle, dlib_rotated, metric


def dlib_irs(mus, ys, diff_quantile=0.99):
    """disentanglement_lib's computation on (codes, points) and (factors, points), as there."""
    discretized = np.zeros_like(ys)
    for i in range(ys.shape[0]):
        discretized[i, :] = np.digitize(ys[i, :], np.histogram(ys[i, :], 20)[1][:-1])
    active = mus[mus.var(axis=1) > 0.0, :]
    if not active.any():
        return 0.0
    gen_factors, latents = discretized.T, active.T
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cum_deviations = np.zeros([latents.shape[1], gen_factors.shape[1]])
    for i in range(gen_factors.shape[1]):
        unique_factors = np.unique(gen_factors[:, i], axis=0)
        for k in range(unique_factors.shape[0]):
            match = gen_factors[:, i] == unique_factors[k]
            e_loc = np.mean(latents[match, :], axis=0)
            cum_deviations[:, i] += np.percentile(np.abs(latents[match, :] - e_loc), q=diff_quantile * 100, axis=0)
        cum_deviations[:, i] /= unique_factors.shape[0]
    disentanglement_scores = (1.0 - cum_deviations / max_deviations[:, np.newaxis]).max(axis=1)
    if np.sum(max_deviations) > 0.0:
        return np.average(disentanglement_scores, weights=max_deviations)
    return np.mean(disentanglement_scores)


@pytest.mark.parametrize("codes", [lambda: dlib_oracle, lambda: dlib_rotated, dlib_noisy])
def test_equals_disentanglement_libs_computation_on_the_same_codes(dsprites, codes):
    ours = metric("irs", dsprites, codes(), n_train=2000)
    samples = dsprites.sample_factors(2000, Streams(0, "irs")())  # the metric's points, drawn as it draws them
    mus = CodeTable(codes(), dsprites.factor_sizes)(samples)
    assert ours["irs.score"] == pytest.approx(dlib_irs(mus.T, samples[:, factor_set(dsprites, "all")].T), abs=1e-12)


def test_the_oracle_scores_near_one_a_constant_code_zero(dsprites):
    assert metric("irs", dsprites, dlib_oracle, n_train=2000)["irs.score"] > 0.9  # dlib's check: in [0.9, 1]
    constant = metric("irs", dsprites, lambda factors: np.zeros((len(factors), 5)), n_train=2000)
    assert constant["irs.score"] == 0 and constant["irs.active_dims"] == 0
