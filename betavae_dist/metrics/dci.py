"""DCI disentanglement, completeness and informativeness (Eastwood & Williams 2018).

Reproduces disentanglement_lib's `compute_dci` (evaluation/metrics/dci.py). For each factor, a
gradient-boosted tree classifier (scikit-learn's `GradientBoostingClassifier()`, its defaults)
predicts the factor from the codes of `n_train` samples; R[i, k] is the trees' importance of code i
for factor k (each column sums to 1).
- disentanglement: sum_i rho_i (1 - H_K(P_i.)), P_ik = R_ik / sum_k R_ik, rho_i = sum_k R_ik / sum R
- completeness: sum_k rho_k (1 - H_D(P_.k)), P_ik = R_ik / sum_i R_ik, rho_k = sum_i R_ik / sum R
- informativeness: the trees' accuracy on `n_eval` held-out samples, averaged over factors
  (`dci.informativeness_train`: on the training samples).
H_K is the entropy in base K = number of factors, H_D in base D = code dimensions; 1e-11 is added
to R before normalising, as disentanglement_lib does. Defaults 10,000 / 5,000, as there.
Differences: the trees get `random_state=seed` (disentanglement_lib leaves them unseeded, so its
importances can change from run to run where splits tie), and the samples come from
the metric's own stream. Trees are slow (one per class and boosting stage: orientation's 40 classes
make 4,000), so the factors are fitted in parallel worker processes, one per core.
"""

from __future__ import annotations

import os

from typing import TYPE_CHECKING

import numpy as np
from joblib import Parallel, delayed

from ..data.dataset import FactorDataset
from .classifiers import accuracy, fit
from .codes import Represent, Streams

if TYPE_CHECKING:
    from ..config import EvalConfig


def _fit_factor(x_train, y_train, x_test, y_test, seed: int) -> tuple[np.ndarray, float, float]:
    """(importance of each code, train accuracy, test accuracy) of one factor's trees."""
    from sklearn.ensemble import GradientBoostingClassifier  # here, not at import (classifiers.py)

    model = fit(GradientBoostingClassifier(random_state=seed), x_train, y_train)
    return np.abs(model.feature_importances_), accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)


def _one_minus_entropy(r: np.ndarray, base: int) -> np.ndarray:
    """1 - entropy of each column of r, normalised to sum to 1, in the given base."""
    p = r + 1e-11
    p = p / p.sum(0)
    return 1.0 + (p * np.log(p)).sum(0) / np.log(max(base, 2))


def _weighted(per_part: np.ndarray, weights: np.ndarray) -> float:
    if weights.sum() == 0:  # no code predicts anything: weigh the parts equally
        weights = np.ones_like(weights)
    return float((per_part * weights / weights.sum()).sum())


def disentanglement(importance: np.ndarray) -> float:
    """From the (codes, factors) importance matrix: how much each code is about one factor only."""
    return _weighted(_one_minus_entropy(importance.T, importance.shape[1]), importance.sum(1))


def completeness(importance: np.ndarray) -> float:
    """From the (codes, factors) importance matrix: how much each factor is in one code only."""
    return _weighted(_one_minus_entropy(importance, importance.shape[0]), importance.sum(0))


def dci(dataset: FactorDataset, represent: Represent, factors: list[int], cfg: EvalConfig, rng: Streams) -> dict[str, float]:
    n_train = cfg.n_train
    samples = dataset.sample_factors(n_train + cfg.n_eval, rng())
    codes = represent(samples)
    largest_first = sorted(range(len(factors)), key=lambda j: -dataset.factor_sizes[factors[j]])
    workers = min(len(factors), len(os.sched_getaffinity(0)))
    fitted = Parallel(n_jobs=workers)(
        delayed(_fit_factor)(codes[:n_train], samples[:n_train, factors[j]], codes[n_train:],
                             samples[n_train:, factors[j]], rng.seed)
        for j in largest_first)
    by_factor = dict(zip(largest_first, fitted))
    importance = np.stack([by_factor[j][0] for j in range(len(factors))], 1)  # (codes, factors)
    return {
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
        "informativeness": float(np.mean([by_factor[j][2] for j in range(len(factors))])),
        "informativeness_train": float(np.mean([by_factor[j][1] for j in range(len(factors))])),
    }
