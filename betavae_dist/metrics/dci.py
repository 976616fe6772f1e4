"""DCI disentanglement, completeness and informativeness (Eastwood & Williams 2018).

A linear softmax classifier predicts each factor from the (standardised) codes; the importance
R[i, k] of code i for factor k is the mean |weight| of code i in factor k's classifier.
Eastwood & Williams used lasso and random forests; disentanglement_lib uses gradient-boosted
trees; we use the linear model so the metric needs no extra library and stays deterministic.
- disentanglement: sum_i rho_i (1 - H_K(P_i.)), P_ik = R_ik / sum_k R_ik, rho_i = sum_k R_ik / sum R
- completeness: mean_k (1 - H_D(P_.k)), P_ik = R_ik / sum_i R_ik
- informativeness: mean over factors of the classifier's accuracy on `n_eval` held-out samples
(H_K: entropy in base K = number of factors; H_D: base D = number of code dimensions).
"""

from __future__ import annotations

import numpy as np

from .codes import Represent, point_rng
from .linear import accuracy, fit_softmax

STREAM = 4


def _one_minus_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """1 - entropy of each column of p (columns sum to 1), in the given base."""
    logs = np.log(np.where(p > 0, p, 1.0)) / np.log(max(base, 2))
    return 1.0 + (p * logs).sum(0)


def dci(dataset, represent: Represent, factors: list[int], seed: int = 0, n_train: int = 10_000,
        n_eval: int = 5_000, **_) -> dict[str, float]:
    samples = dataset.sample_factors(n_train + n_eval, point_rng(seed, STREAM, 0))
    codes = represent(samples)
    importance = np.zeros((codes.shape[1], len(factors)))
    informativeness = []
    for j, k in enumerate(factors):
        y = samples[:, k]
        predict, weights = fit_softmax(codes[:n_train], y[:n_train], dataset.factor_sizes[k])
        importance[:, j] = np.abs(weights).mean(1)
        informativeness.append(accuracy(predict, codes[n_train:], y[n_train:]))
    total = importance.sum()
    if total == 0:  # nothing predicts anything: a collapsed representation
        return {"dci.disentanglement": 0.0, "dci.completeness": 0.0, "dci.informativeness": float(np.mean(informativeness))}
    per_code = importance.sum(1)
    used = per_code > 0
    d_i = _one_minus_entropy((importance[used] / per_code[used, None]).T, len(factors))
    completeness = _one_minus_entropy(importance / np.maximum(importance.sum(0), 1e-300), codes.shape[1])
    return {
        "dci.disentanglement": float((d_i * per_code[used] / total).sum()),
        "dci.completeness": float(completeness.mean()),
        "dci.informativeness": float(np.mean(informativeness)),
    }
