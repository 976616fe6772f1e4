"""Separated Attribute Predictability (Kumar et al. 2018, section 3), for discrete factors.

Reproduces disentanglement_lib's `compute_sap` with `continuous_factors=False`
(evaluation/metrics/sap_score.py): S[i, k] is the accuracy on `n_eval` held-out samples of a linear
SVM (scikit-learn's `LinearSVC(C=0.01, class_weight="balanced")`) that predicts factor k from code
i alone, fitted on `n_train` samples; SAP is the mean over factors of the gap between the two best
codes. Defaults 10,000 / 5,000, as there. Differences: the SVM solves the dual problem as the
scikit-learn of disentanglement_lib's time did by default (newer ones pick the primal for one
feature), with `random_state=seed` where disentanglement_lib leaves it unseeded; the samples come
from the metric's own stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.dataset import FactorDataset
from .classifiers import accuracy, fit
from .codes import Represent, Streams
from .fits import Fit, Plan


@dataclass
class SAPSettings:  # disentanglement_lib's defaults
    n_train: int = 10_000  # training points of each code's SVM
    n_eval: int = 5_000  # held-out points


def sap(dataset: FactorDataset, represent: Represent, factors: list[int], settings: SAPSettings, rng: Streams) -> Plan:
    n_train = settings.n_train
    samples = dataset.sample_factors(n_train + settings.n_eval, rng())
    codes = represent(samples)

    def accuracies(k: int) -> np.ndarray:
        """Each code's held-out accuracy at predicting factor k alone."""
        from sklearn.svm import LinearSVC  # here, not at import (classifiers.py)

        y, out = samples[:, k], np.zeros(codes.shape[1])
        for i in range(codes.shape[1]):
            x = codes[:, i : i + 1]
            model = fit(LinearSVC(C=0.01, class_weight="balanced", dual=True, random_state=rng.seed), x[:n_train], y[:n_train])
            out[i] = accuracy(model, x[n_train:], y[n_train:])
        return out

    fits = [Fit(f"sap/{dataset.factor_names[k]}", codes.shape[1] * n_train, lambda threads, k=k: accuracies(k))
            for k in factors]  # each SVM on one thread: the same result anywhere
    return Plan(fits, lambda results: {"score": gap_score(np.stack(results, 1))})


def gap_score(scores: np.ndarray) -> float:
    """From the (codes, factors) accuracies: the mean over factors of the gap between the two best codes."""
    top = np.sort(scores, axis=0)[::-1]
    gaps = top[0] - (top[1] if len(top) > 1 else 0.0)
    return float(gaps.mean())
