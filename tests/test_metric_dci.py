from betavae_dist.metrics.dci import dci
from conftest import constant, oracle, rotated, score


def test_oracle_top_rotation_lower_constant_zero(dsprites):
    for key in ("dci.disentanglement", "dci.completeness"):
        top = score(dci, dsprites, oracle, key)
        assert top >= 0.85, key
        assert score(dci, dsprites, rotated, key) <= top / 2, key
        assert score(dci, dsprites, constant, key) == 0, key
    # Informativeness is about prediction, not alignment: a rotation keeps most of it.
    assert score(dci, dsprites, rotated, "dci.informativeness") > 2 * score(dci, dsprites, constant, "dci.informativeness")
