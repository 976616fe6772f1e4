import numpy as np
import pytest

from betavae_dist.metrics.dci import completeness, disentanglement
from helpers import constant, dlib_noisy, dlib_oracle, dlib_rotated, metric

SMALL = dict(n_train=2000, n_eval=1000)  # what disentanglement_lib's reference values were computed with

# disentanglement_lib's dci_test.py: importance matrices (codes x factors) with known scores.
DIAGONAL = np.diag(5.0 * np.ones(5))
ONE_CODE_TWO_FACTORS = 1 - np.log(2) / np.log(10)
BY_HAND = {  # matrix: (disentanglement, completeness)
    "diagonal": (DIAGONAL, 1, 1),
    "diagonal, an empty code": (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1, 1),
    "zero": (np.zeros((10, 10)), 0, 0),
    "redundant codes": (np.vstack([DIAGONAL, DIAGONAL]), 1, ONE_CODE_TWO_FACTORS),
    "missed factors": (DIAGONAL[:2, :], 1, 1),
    "one code, two factors": (np.hstack([DIAGONAL, DIAGONAL]), ONE_CODE_TWO_FACTORS, 1),
}


@pytest.mark.parametrize("case", BY_HAND)
def test_disentanglement_and_completeness_of_known_importances(case):
    importance, d, c = BY_HAND[case]
    assert disentanglement(importance) == pytest.approx(d, abs=1e-7)
    assert completeness(importance) == pytest.approx(c, abs=1e-7)


def test_constant_code_scores_zero(dsprites):
    flat = metric("dci", dsprites, constant, n_train=500, n_eval=200)
    assert flat["dci.disentanglement"] == pytest.approx(0, abs=1e-9)  # no code is used: uniform importances
    assert flat["dci.completeness"] == pytest.approx(0, abs=1e-9)
    assert flat["dci.informativeness"] < 0.4  # the trees can only guess the most frequent class


# disentanglement_lib at 2,000 / 1,000 samples, seed 0 (the metrics issue's table). Tolerance: over
# seeds 0/1/2 ours spread by ±0.004 (D, C) and ±0.006 (I) on the rotated code (measured).
@pytest.mark.parametrize("represent,expected", [
    (dlib_oracle, (1.000, 1.000, 1.000)), (dlib_rotated, (0.092, 0.096, 0.428)), (dlib_noisy(), (0.531, 0.547, 0.519))])
def test_matches_disentanglement_lib(dsprites, represent, expected):
    result = metric("dci", dsprites, represent, **SMALL)
    got = [result[f"dci.{key}"] for key in ("disentanglement", "completeness", "informativeness")]
    np.testing.assert_allclose(got, expected, atol=0.02)


def separable(classes: int, n: int = 1500, seed: int = 0):
    """Codes in which two of 6 dimensions carry the class, the rest noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 0] += 0.7 * y
    x[:, 3] += y % 2
    return x[:1000], y[:1000], x[1000:], y[1000:]


@pytest.mark.parametrize("classes", [2, 3, 6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_trees_are_scikit_learns_trees(classes, seed):
    """Two stages: where two features split a node the same way, scikit-learn takes the one its random
    feature order meets first, so the fast trees equal scikit-learn's for one of its random states."""
    from sklearn.ensemble import GradientBoostingClassifier

    from betavae_dist.metrics import boosting
    x, y, x_test, y_test = separable(classes, seed=seed)
    importance, train_accuracy, test_accuracy = boosting.fit(x, y, x_test, y_test, stages=2)
    for state in range(200):
        reference = GradientBoostingClassifier(n_estimators=2, random_state=state).fit(x, y)
        if np.allclose(importance, reference.feature_importances_, rtol=0, atol=1e-9):
            break
    else:
        pytest.fail("no random state of scikit-learn grows these trees")
    assert train_accuracy == (reference.predict(x) == y).mean()
    assert test_accuracy == (reference.predict(x_test) == y_test).mean()


def test_fast_trees_refuse_a_single_class():
    from betavae_dist.metrics import boosting
    x, _, x_test, y_test = separable(2)
    with pytest.raises(ValueError, match="needs 2 or more classes; the training labels hold 1"):
        boosting.fit(x, np.zeros(len(x), int), x_test, y_test)


# The fast trees against scikit-learn's on the same codes. Over 100 stages they part only where two
# splits tie exactly (scikit-learn breaks ties by a random feature order): measured differences
# here stay within 0.01, below the spread between seeds of either.
def noisy(factors):
    """The oracle plus noise that is a function of the factors (the same codes for both backends)."""
    return dlib_oracle(factors) + 0.05 * np.sin(factors @ np.random.RandomState(1).randn(6, 5) * 37)


def collapsed(factors):
    return 1e-3 * np.random.RandomState(0).randn(len(factors), 5)  # nothing of the factors


@pytest.mark.slow  # scikit-learn's trees: ~8 s each
@pytest.mark.parametrize("represent", [dlib_rotated, noisy, collapsed])
def test_fast_dci_equals_scikit_learns(dsprites, represent):
    fast = metric("dci", dsprites, represent, n_train=600, n_eval=300, seed=1)
    reference = metric("dci", dsprites, represent, n_train=600, n_eval=300, seed=1, backend="sklearn")
    for key in ("disentanglement", "completeness", "informativeness", "informativeness_train"):
        assert fast[f"dci.{key}"] == pytest.approx(reference[f"dci.{key}"], abs=0.01), key
