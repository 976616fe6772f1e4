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
The trees: `eval.dci.backend=fast` (the default) grows scikit-learn's trees again, compiled
(boosting.py: the same splits, importances and accuracies, 23-25x less CPU time at
disentanglement_lib's sizes); `sklearn` fits `GradientBoostingClassifier(random_state=seed)`
itself, the reference (disentanglement_lib leaves it unseeded, so its importances can change from
run to run where two splits tie). The samples come from the metric's own stream; each factor's
trees are one fit, run by one rank (fits.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import setting
from ..data.dataset import FactorDataset
from .classifiers import BACKENDS, accuracy, fit
from .codes import Represent, Streams
from .fits import Fit, Plan


@dataclass
class DCISettings:  # disentanglement_lib's defaults
    n_train: int = setting(10_000, "training points of each factor's trees", positive=True)
    n_eval: int = setting(5_000, "held-out points (informativeness)", positive=True)
    backend: str = setting("fast", "the trees: \"fast\" (scikit-learn's grown again, compiled) or \"sklearn\" "
                           "(the reference)", choices=BACKENDS)


@dataclass(frozen=True)
class Trees:
    """What DCI reads off one factor's trees."""
    importance: np.ndarray  # of each code, summing to 1 (or all zeros when no tree splits)
    train_accuracy: float
    test_accuracy: float


def _sklearn_trees(x_train, y_train, x_test, y_test, seed: int, threads: int) -> Trees:
    from sklearn.ensemble import GradientBoostingClassifier  # here, not at import (classifiers.py)

    model = fit(GradientBoostingClassifier(random_state=seed), x_train, y_train)
    return Trees(np.abs(model.feature_importances_), accuracy(model, x_train, y_train), accuracy(model, x_test, y_test))


def _fast_trees(x_train, y_train, x_test, y_test, seed: int, threads: int) -> Trees:
    from . import boosting  # here, not at import: numba's start-up, and a trainer never needs it

    return Trees(*boosting.fit(x_train, y_train, x_test, y_test, threads))  # no seed: its tie-breaking order is fixed


TREES = {"fast": _fast_trees, "sklearn": _sklearn_trees}


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


def dci(dataset: FactorDataset, represent: Represent, factors: list[int], settings: DCISettings, rng: Streams) -> Plan:
    n_train = settings.n_train
    samples = dataset.sample_factors(n_train + settings.n_eval, rng())
    codes = represent(samples)
    trees = TREES[settings.backend]

    def factor_fit(k: int) -> Fit:
        y = samples[:, k]
        return Fit(f"dci/{dataset.factor_names[k]}", dataset.factor_sizes[k] * n_train,
                   lambda threads: trees(codes[:n_train], y[:n_train], codes[n_train:], y[n_train:], rng.seed, threads))

    def finish(fitted: list[Trees]) -> dict:
        importance = np.stack([f.importance for f in fitted], 1)  # (codes, factors)
        return {
            "disentanglement": disentanglement(importance),
            "completeness": completeness(importance),
            "informativeness": float(np.mean([f.test_accuracy for f in fitted])),
            "informativeness_train": float(np.mean([f.train_accuracy for f in fitted])),
        }

    return Plan([factor_fit(k) for k in factors], finish)
