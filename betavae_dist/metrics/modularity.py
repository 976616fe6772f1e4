"""Modularity and explicitness (Ridgeway & Mozer 2018, section 3), as disentanglement_lib has them.

Reproduces `compute_modularity_explicitness` (evaluation/metrics/modularity_explicitness.py) on
`n_train` samples and `n_eval` held-out ones, 10,000 / 5,000 as in its study:
- modularity: with I(z_i; v_k) the mutual information of code i, binned into 20 equal-width bins
  (as MIG), and factor k, code i's modularity is 1 - (sum_k I^2 - max_k I^2) / (max_k I^2 (K - 1)),
  0 where the code tells nothing; the score is its mean over codes;
- explicitness: factor k's is the ROC-AUC (each class against the rest, averaged over classes) of
  scikit-learn's `LogisticRegression()` predicting it from all codes, standardised by the training
  points' mean and sd; the mean over factors, on held-out points (`explicitness`) and on the
  training points (`explicitness_train`). Each factor's classifier is one fit (fits.py).
A code that never varies is standardised to 0 here; disentanglement_lib divides by its sd of 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import setting
from ..data.dataset import FactorDataset
from .classifiers import fit
from .codes import Represent, Streams
from .fits import Fit, Plan
from .mig import discretize, mutual_information


@dataclass
class ModularitySettings:  # disentanglement_lib's unsupervised study
    n_train: int = setting(10_000, "samples binned for modularity, and fitting explicitness' classifiers",
                           positive=True)
    n_eval: int = setting(5_000, "held-out samples of explicitness", positive=True)


def modularity(information: np.ndarray) -> float:
    """From the (codes, factors) mutual information: the mean over codes of each one's modularity."""
    squared = np.square(information)
    top = squared.max(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_code = 1.0 - (squared.sum(1) - top) / (top * (squared.shape[1] - 1.0))
    return float(np.where(top == 0, 0.0, per_code).mean())


def roc_auc(classes: np.ndarray, probabilities: np.ndarray, y: np.ndarray) -> float:
    """scikit-learn's ROC-AUC of `probabilities` (columns: `classes`) for labels y, each class
    against the rest and averaged over them, as disentanglement_lib scores (MultiLabelBinarizer)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y[:, None] == classes[None, :], probabilities))


def modularity_explicitness(dataset: FactorDataset, represent: Represent, factors: list[int],
                            settings: ModularitySettings, rng: Streams) -> Plan:
    n_train = settings.n_train
    samples = dataset.sample_factors(n_train + settings.n_eval, rng())
    codes = represent(samples)
    train, test = codes[:n_train], codes[n_train:]
    binned = discretize(train)
    information = np.array([[mutual_information(binned[:, i], samples[:n_train, k]) for k in factors]
                            for i in range(codes.shape[1])])
    sd = train.std(0)
    mean, sd = train.mean(0), np.where(sd > 0, sd, 1.0)
    train, test = (train - mean) / sd, (test - mean) / sd

    def explicitness(k: int) -> tuple[float, float]:
        from sklearn.linear_model import LogisticRegression  # here, not at import (classifiers.py)

        y_train, y_test = samples[:n_train, k], samples[n_train:, k]
        model = fit(LogisticRegression(), train, y_train)
        return (roc_auc(model.classes_, model.predict_proba(train), y_train),
                roc_auc(model.classes_, model.predict_proba(test), y_test))

    fits = [Fit(f"modularity/{dataset.factor_names[k]}", dataset.factor_sizes[k] * n_train // 10,
                lambda threads, k=k: explicitness(k)) for k in factors]
    return Plan(fits, lambda results: {"score": modularity(information),
                                       "explicitness": float(np.mean([test for _, test in results])),
                                       "explicitness_train": float(np.mean([train for train, _ in results]))})
