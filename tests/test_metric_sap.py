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
