from betavae_dist.metrics.factor_vae import factor_vae_score
from conftest import constant, oracle, rotated, score

KEY = "factor_vae.eval_accuracy"


def test_oracle_top_rotation_lower_constant_zero(dsprites):
    assert score(factor_vae_score, dsprites, oracle, KEY) >= 0.99
    assert score(factor_vae_score, dsprites, rotated, KEY) <= 0.98
    assert score(factor_vae_score, dsprites, constant, KEY) == 0
    assert score(factor_vae_score, dsprites, constant, "factor_vae.active_dims") == 0
    assert score(factor_vae_score, dsprites, oracle, "factor_vae.active_dims") == 5  # colour never varies
