import math

import numpy as np

from betavae_dist.metrics.mig import entropy, mig, mutual_information
from conftest import constant, oracle, rotated, score


def test_information_by_hand():
    a = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert entropy(a) == math.log(4)
    assert mutual_information(a, a) == math.log(4)
    assert mutual_information(a, np.array([0, 1] * 4)) == 0  # independent


def test_oracle_top_rotation_lower_constant_zero(dsprites):
    top = score(mig, dsprites, oracle, "mig")
    assert top >= 0.85  # 20 bins cap the 32/40-valued factors (see mig.py)
    assert score(mig, dsprites, rotated, "mig") <= top / 2
    assert score(mig, dsprites, constant, "mig") == 0
