"""Modularity and explicitness against disentanglement_lib's: its unit checks of `modularity`, and
its `compute_modularity_explicitness` transcribed below (NumPy and the same scikit-learn calls, from
evaluation/metrics/modularity_explicitness.py and utils.py) on the same codes."""

import numpy as np
import pytest

from betavae_dist.metrics.codes import CodeTable, Streams, factor_set
from betavae_dist.metrics.modularity import modularity
from helpers import dlib_noisy, dlib_oracle, dlib_rotated, metric


@pytest.mark.parametrize("information, expected", [  # modularity_explicitness_test.py's cases
    (np.diag(5.0 * np.ones(5)), 1.0),
    (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 2 / 3),
    (np.zeros((10, 10)), 0.0),
    (np.vstack([np.diag(5.0 * np.ones(5))] * 2), 1.0),
    (np.diag(5.0 * np.ones(5))[:2], 1.0),
    (np.hstack([np.diag(5.0 * np.ones(5))] * 2), 1 - 1 / 9),
])
def test_modularity_of_disentanglement_libs_cases(information, expected):
    assert modularity(information) == pytest.approx(expected)


def dlib_modularity_explicitness(mus_train, ys_train, mus_test, ys_test):
    """disentanglement_lib's computation, its arrays (codes or factors, points) as there."""
    from sklearn import linear_model, preprocessing
    from sklearn import metrics as skm

    def discretize(target, num_bins=20):  # utils._histogram_discretize
        discretized = np.zeros_like(target)
        for i in range(target.shape[0]):
            discretized[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
        return discretized

    def normalize_data(data, mean=None, stddev=None):  # utils.normalize_data
        mean = np.mean(data, axis=1) if mean is None else mean
        stddev = np.std(data, axis=1) if stddev is None else stddev
        return (data - mean[:, np.newaxis]) / stddev[:, np.newaxis], mean, stddev

    discretized = discretize(mus_train)
    mi = np.array([[skm.mutual_info_score(y, m) for y in ys_train] for m in discretized])
    squared_mi = np.square(mi)
    max_squared_mi = np.max(squared_mi, axis=1)
    score = 1.0 - (np.sum(squared_mi, axis=1) - max_squared_mi) / (max_squared_mi * (squared_mi.shape[1] - 1.0))
    score[max_squared_mi == 0.0] = 0.0
    train, mean, sd = normalize_data(mus_train)
    test, _, _ = normalize_data(mus_test, mean, sd)
    roc_train, roc_test = [], []
    for y_train, y_test in zip(ys_train, ys_test):
        clf = linear_model.LogisticRegression().fit(train.T, y_train)
        mlb = preprocessing.MultiLabelBinarizer()
        roc_train.append(skm.roc_auc_score(mlb.fit_transform(np.expand_dims(y_train, 1)), clf.predict_proba(train.T)))
        roc_test.append(skm.roc_auc_score(mlb.fit_transform(np.expand_dims(y_test, 1)), clf.predict_proba(test.T)))
    return {"score": np.mean(score), "explicitness": np.mean(roc_test), "explicitness_train": np.mean(roc_train)}


@pytest.mark.parametrize("codes", [lambda: dlib_oracle, lambda: dlib_rotated, dlib_noisy])  # a fresh stream each call
def test_equals_disentanglement_libs_computation_on_the_same_codes(dsprites, codes):
    ours = metric("modularity", dsprites, codes(), n_train=2000, n_eval=1000)
    samples = dsprites.sample_factors(3000, Streams(0, "modularity")())  # the metric's points, drawn as it draws them
    mus = CodeTable(codes(), dsprites.factor_sizes)(samples)
    ys = samples[:, factor_set(dsprites, "all")].T
    reference = dlib_modularity_explicitness(mus[:2000].T, ys[:, :2000], mus[2000:].T, ys[:, 2000:])
    for key, value in reference.items():
        assert ours[f"modularity.{key}"] == pytest.approx(value, abs=1e-9), key


def test_a_rotation_is_less_modular_than_the_oracle(dsprites):
    oracle = metric("modularity", dsprites, dlib_oracle, n_train=2000, n_eval=1000)
    rotated = metric("modularity", dsprites, dlib_rotated, n_train=2000, n_eval=1000)
    assert oracle["modularity.score"] > 0.99 and rotated["modularity.score"] < oracle["modularity.score"] - 0.1
    assert oracle["modularity.explicitness"] > 0.95  # every factor is a linear function of the oracle's codes
