"""Fitting the scikit-learn classifiers of disentanglement_lib's metrics reproducibly.

Each fit runs with one BLAS/OpenMP thread, so a score is bit-identical whatever the machine's
cores or the number of ranks (every rank fits the same models on the same codes). The models keep
disentanglement_lib's settings, iteration limits included, so their convergence warnings (which it
shows too) are silenced here. scikit-learn is imported where a metric fits, not when the package
is imported: it is the largest part of a launched trainer's start-up (~0.8 s of ~2 s).
"""

from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

# How DCI and SAP fit their classifiers: "fast" compiled (boosting.py, linear_svm.py), with
# scikit-learn's values; "sklearn" scikit-learn itself, the reference.
BACKENDS = ("fast", "sklearn")


def fit(model, x: np.ndarray, y: np.ndarray):
    from sklearn.exceptions import ConvergenceWarning

    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    with threadpool_limits(1):
        return float((model.predict(x) == y).mean())
