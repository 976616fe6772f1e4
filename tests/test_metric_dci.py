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
@pytest.mark.slow
@pytest.mark.parametrize("represent,expected", [
    (dlib_oracle, (1.000, 1.000, 1.000)), (dlib_rotated, (0.092, 0.096, 0.428)), (dlib_noisy(), (0.531, 0.547, 0.519))])
def test_matches_disentanglement_lib(dsprites, represent, expected):
    result = metric("dci", dsprites, represent, **SMALL)
    got = [result[f"dci.{key}"] for key in ("disentanglement", "completeness", "informativeness")]
    np.testing.assert_allclose(got, expected, atol=0.02)
