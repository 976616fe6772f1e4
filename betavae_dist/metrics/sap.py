"""Separated Attribute Predictability (Kumar et al. 2018, section 3), for discrete factors.

Reproduces disentanglement_lib's `compute_sap` with `continuous_factors=False`
(evaluation/metrics/sap_score.py): S[i, k] is the accuracy on `n_eval` held-out samples of a linear
SVM (scikit-learn's `LinearSVC(C=0.01, class_weight="balanced")`) that predicts factor k from code
i alone, fitted on `n_train` samples; SAP is the mean over factors of the gap between the two best
codes. Defaults 10,000 / 5,000, as there; the samples come from the metric's own stream. The SVMs:
`eval.sap.backend=fast` (the default) finds the minimum of LinearSVC's problem itself, compiled
(linear_svm.py: 13-18x less time, held-out accuracies equal or one or two of 5,000 points apart);
`sklearn` fits LinearSVC, the reference: it solves the dual problem as the scikit-learn of
disentanglement_lib's time did by default (newer ones pick the primal for one feature), with
`random_state=seed` where disentanglement_lib leaves it unseeded.
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
class SAPSettings:  # disentanglement_lib's defaults
    n_train: int = setting(10_000, "training points of each code's SVM", positive=True)
    n_eval: int = setting(5_000, "held-out points", positive=True)
    backend: str = setting("fast", "the SVMs: \"fast\" (LinearSVC's minimum, compiled) or \"sklearn\" (the reference)",
                           choices=BACKENDS)


def _sklearn_svm(x_train, y_train, x_test, y_test, seed: int) -> float:
    from sklearn.svm import LinearSVC  # here, not at import (classifiers.py)

    model = fit(LinearSVC(C=0.01, class_weight="balanced", dual=True, random_state=seed), x_train[:, None], y_train)
    return accuracy(model, x_test[:, None], y_test)


def _fast_svm(x_train, y_train, x_test, y_test, seed: int) -> float:
    from . import linear_svm  # here, not at import: numba's start-up, and a trainer never needs it

    return linear_svm.accuracy(x_train, y_train, x_test, y_test, c=0.01)  # no seed: it finds the minimum itself


SVMS = {"fast": _fast_svm, "sklearn": _sklearn_svm}


def sap(dataset: FactorDataset, represent: Represent, factors: list[int], settings: SAPSettings, rng: Streams) -> Plan:
    n_train = settings.n_train
    samples = dataset.sample_factors(n_train + settings.n_eval, rng())
    codes = represent(samples)
    svm = SVMS[settings.backend]

    def accuracies(k: int) -> np.ndarray:
        """Each code's held-out accuracy at predicting factor k alone."""
        y = samples[:, k]
        return np.array([svm(x[:n_train], y[:n_train], x[n_train:], y[n_train:], rng.seed) for x in codes.T])

    # Costs on the scale of DCI's (classes x samples): on a β = 4 model a factor's compiled trees
    # took ~2 s, its scikit-learn SVMs ~0.4 s and its compiled SVMs ~0.02 s (docs/benchmarks.md).
    cost = codes.shape[1] * n_train // (100 if settings.backend == "fast" else 1)
    fits = [Fit(f"sap/{dataset.factor_names[k]}", cost, lambda threads, k=k: accuracies(k))
            for k in factors]  # each SVM on one thread: the same result anywhere
    return Plan(fits, lambda results: {"score": gap_score(np.stack(results, 1))})


def gap_score(scores: np.ndarray) -> float:
    """From the (codes, factors) accuracies: the mean over factors of the gap between the two best codes."""
    top = np.sort(scores, axis=0)[::-1]
    gaps = top[0] - (top[1] if len(top) > 1 else 0.0)
    return float(gaps.mean())
