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

from typing import TYPE_CHECKING

import numpy as np

from ..data.dataset import FactorDataset
from .classifiers import accuracy, fit
from .codes import Represent, Streams

if TYPE_CHECKING:
    from ..config import EvalConfig


def sap(dataset: FactorDataset, represent: Represent, factors: list[int], cfg: EvalConfig, rng: Streams) -> dict[str, float]:
    n_train = cfg.n_train
    samples = dataset.sample_factors(n_train + cfg.n_eval, rng())
    codes = represent(samples)
    from sklearn.svm import LinearSVC  # here, not at import (classifiers.py)

    scores = np.zeros((codes.shape[1], len(factors)))
    for i in range(codes.shape[1]):
        x = codes[:, i : i + 1]
        for j, k in enumerate(factors):
            y = samples[:, k]
            model = fit(LinearSVC(C=0.01, class_weight="balanced", dual=True, random_state=rng.seed), x[:n_train], y[:n_train])
            scores[i, j] = accuracy(model, x[n_train:], y[n_train:])
    return {"score": gap_score(scores)}


def gap_score(scores: np.ndarray) -> float:
    """From the (codes, factors) accuracies: the mean over factors of the gap between the two best codes."""
    top = np.sort(scores, axis=0)[::-1]
    gaps = top[0] - (top[1] if len(top) > 1 else 0.0)
    return float(gaps.mean())
