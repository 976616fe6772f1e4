"""Separated Attribute Predictability (Kumar et al. 2018, section 4), discrete-factor variant.

S[i, k] = held-out accuracy of a linear softmax classifier predicting factor k from code i alone
(disentanglement_lib fits a linear SVM there). SAP = mean over factors of the gap between the
two most predictive codes.
"""

from __future__ import annotations

import numpy as np

from .codes import Represent, point_rng
from .linear import accuracy, fit_softmax

STREAM = 5


def sap(dataset, represent: Represent, factors: list[int], seed: int = 0, n_train: int = 10_000,
        n_eval: int = 5_000, **_) -> dict[str, float]:
    samples = dataset.sample_factors(n_train + n_eval, point_rng(seed, STREAM, 0))
    codes = represent(samples)
    scores = np.zeros((codes.shape[1], len(factors)))
    for i in range(codes.shape[1]):
        x = codes[:, i : i + 1]
        for j, k in enumerate(factors):
            y = samples[:, k]
            predict, _ = fit_softmax(x[:n_train], y[:n_train], dataset.factor_sizes[k])
            scores[i, j] = accuracy(predict, x[n_train:], y[n_train:])
    top = np.sort(scores, axis=0)[::-1]
    gaps = top[0] - (top[1] if len(top) > 1 else 0.0)
    return {"sap": float(gaps.mean())}
