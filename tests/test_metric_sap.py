import numpy as np
import pytest

from betavae_dist.metrics.sap import gap_score
from helpers import constant, dlib_noisy, dlib_oracle, dlib_rotated, metric, oracle, rotated, score


def test_gap_score_by_hand():
    assert gap_score(np.diag([0.9, 0.7, 0.5]) + 0.1) == pytest.approx(0.7)  # gaps 0.8, 0.6, 0.4
    assert gap_score(np.full((4, 3), 0.6)) == 0  # every code predicts as well: no gap
    assert gap_score(np.array([[0.8, 0.3]])) == pytest.approx(0.55)  # one code: the gap to nothing


def test_oracle_top_rotation_lower_constant_zero(dsprites):
    top = score("sap", dsprites, oracle, "sap.score")
    assert top >= 0.15  # one weak linear SVM per code: ordinal factors with many values are hard for it
    assert score("sap", dsprites, rotated, "sap.score") <= top - 0.05  # measured 0.17 against 0.10
    assert score("sap", dsprites, constant, "sap.score") == 0


# disentanglement_lib, its default sizes, seed 0 (the metrics issue's table; it gives no rotated
# value). Tolerance: disentanglement_lib's own oracle scores over seeds 0/1/2 were 0.179/0.179/0.212;
# ours 0.181/0.177/0.179 (noisy 0.209/0.206/0.207).
@pytest.mark.parametrize("represent,expected", [(dlib_oracle, 0.179), (dlib_noisy(), 0.204)])
def test_matches_disentanglement_lib(dsprites, represent, expected):
    result = metric("sap", dsprites, represent)
    assert result["sap.score"] == pytest.approx(expected, abs=0.02)


def test_rotated_code_has_no_single_predictive_code(dsprites):
    result = metric("sap", dsprites, dlib_rotated)
    assert result["sap.score"] < 0.05  # measured 0.025-0.029 over 3 seeds


# The compiled SVM against scikit-learn's LinearSVC: the same problem, solved to its minimum here and
# by liblinear's dual coordinate descent there (up to its tolerance).
@pytest.mark.parametrize("classes,shift", [(2, 0.0), (3, 0.0), (6, 0.5), (40, -2.0)])
def test_fast_svm_finds_linearsvcs_coefficients(classes, shift):
    from sklearn.svm import LinearSVC

    from betavae_dist.metrics import linear_svm

    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 3000)
    x = y / classes + shift + 0.3 * rng.standard_normal(3000)  # an ordinal factor, noisy and shifted
    reference = LinearSVC(C=0.01, class_weight="balanced", dual=True, tol=1e-8, max_iter=100_000).fit(x[:, None], y)
    coef = linear_svm._fit(x, y, classes, 0.01)
    np.testing.assert_allclose(coef[:, 0], reference.coef_[:, 0], atol=1e-5)
    np.testing.assert_allclose(coef[:, 1], reference.intercept_, atol=1e-5)
    x_test, y_test = x[::-1] + 0.01, y[::-1]  # accuracies where no point lies on a boundary
    assert linear_svm.accuracy(x, y, x_test, y_test) == (reference.predict(x_test[:, None]) == y_test).mean()


def test_fast_svm_needs_two_classes():
    from betavae_dist.metrics import linear_svm

    with pytest.raises(ValueError, match="two classes"):
        linear_svm.accuracy(np.arange(5.0), np.zeros(5, int), np.arange(5.0), np.zeros(5, int))


@pytest.mark.parametrize("codes", [dlib_noisy, lambda: dlib_rotated])  # each backend its own, equal, noise
def test_fast_sap_equals_scikit_learns(dsprites, codes):
    fast = metric("sap", dsprites, codes(), n_train=2000, n_eval=1000, seed=1)
    reference = metric("sap", dsprites, codes(), n_train=2000, n_eval=1000, seed=1, backend="sklearn")
    assert fast["sap.score"] == pytest.approx(reference["sap.score"], abs=1e-3)
