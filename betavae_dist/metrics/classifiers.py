"""Fitting the scikit-learn classifiers of disentanglement_lib's metrics reproducibly.

Each fit runs with one BLAS/OpenMP thread, so a score is bit-identical whatever the machine's
cores or the number of ranks (every rank fits the same models on the same codes). The models keep
disentanglement_lib's settings, iteration limits included, so their convergence warnings (which it
shows too) are silenced here.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits


def fit(model, x: np.ndarray, y: np.ndarray):
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    with threadpool_limits(1):
        return float((model.predict(x) == y).mean())
