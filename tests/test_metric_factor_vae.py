import pytest

from helpers import constant, dlib_noisy, dlib_oracle, dlib_rotated, metric, oracle, rotated, score

KEY = "factor_vae.eval_accuracy"


def test_oracle_top_rotation_lower_constant_zero(dsprites):
    assert score("factor_vae", dsprites, oracle, KEY) >= 0.99
    assert score("factor_vae", dsprites, rotated, KEY) <= 0.98
    assert score("factor_vae", dsprites, constant, KEY) == 0
    assert score("factor_vae", dsprites, constant, "factor_vae.active_dims") == 0
    assert score("factor_vae", dsprites, oracle, "factor_vae.active_dims") == 5  # colour never varies


# disentanglement_lib, its default sizes, seed 0 (the metrics issue's table). Tolerance: 3 seeds
# spread by ±0.01 on the rotated code in both libraries (measured: ours 0.742-0.761).
@pytest.mark.parametrize("represent,expected,tolerance", [
    (dlib_oracle, 1.000, 0.005), (dlib_rotated, 0.765, 0.03), (dlib_noisy(), 1.000, 0.005)])
def test_matches_disentanglement_lib(dsprites, represent, expected, tolerance):
    result = metric("factor_vae", dsprites, represent)
    assert result[KEY] == pytest.approx(expected, abs=tolerance)
