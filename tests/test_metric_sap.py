from betavae_dist.metrics.sap import sap
from conftest import constant, oracle, rotated, score


def test_oracle_top_rotation_lower_constant_zero(dsprites):
    top = score(sap, dsprites, oracle, "sap")
    assert top >= 0.4
    assert score(sap, dsprites, rotated, "sap") <= top / 2
    assert score(sap, dsprites, constant, "sap") == 0
