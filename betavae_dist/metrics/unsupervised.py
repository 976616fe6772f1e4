"""Unsupervised scores of a representation, as disentanglement_lib's `unsupervised_metrics`.

Reproduces evaluation/metrics/unsupervised_metrics.py on the codes of `n_train` samples (10,000, as
in its study); they use no factor, only the codes' covariance C and the codes binned into 20
equal-width bins (as MIG):
- gaussian_total_correlation: KL between N(0, C) and N(0, diag C), 0.5 (sum log diag C - log det C);
- gaussian_wasserstein_correlation: the squared 2-Wasserstein distance between the same two,
  2 tr C - 2 tr sqrt(C diag C), and `_norm`: that over tr C;
- mutual_info_score: the mean mutual information between two different binned codes.
Lower is more factorised. As there, a code that never varies makes the first ones infinite or NaN
(numpy's division: codes that never vary at all give 0/0, NaN, for the normalised one).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..config import setting
from ..data.dataset import FactorDataset
from .codes import Represent, Streams
from .fits import Plan, done
from .mig import discretize, mutual_information


@dataclass
class UnsupervisedSettings:  # disentanglement_lib's unsupervised study
    n_train: int = setting(10_000, "samples whose codes give the covariance and the binned codes", positive=True)


def gaussian_total_correlation(cov: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(0.5 * (np.log(np.diag(cov)).sum() - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    from scipy.linalg import LinAlgWarning, sqrtm  # scipy comes with scikit-learn

    with warnings.catch_warnings():  # a singular C (a code that never varies): said once, by the evaluator
        warnings.simplefilter("ignore", LinAlgWarning)
        return float(2 * np.trace(cov) - 2 * np.trace(sqrtm(cov * np.diag(cov)[:, None])).real)


def _divide(a: float, b: float) -> float:
    """a / b as numpy (and disentanglement_lib) divides: inf or NaN where b is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / b)


def unsupervised(dataset: FactorDataset, represent: Represent, factors: list[int], settings: UnsupervisedSettings,
                 rng: Streams) -> Plan:
    codes = represent(dataset.sample_factors(settings.n_train, rng()))
    cov = np.atleast_2d(np.cov(codes.T))
    binned = discretize(codes)
    d = codes.shape[1]
    information = sum(mutual_information(binned[:, i], binned[:, j]) for i in range(d) for j in range(d) if i != j)
    wasserstein = gaussian_wasserstein_correlation(cov)
    return done({
        "gaussian_total_correlation": gaussian_total_correlation(cov),
        "gaussian_wasserstein_correlation": wasserstein,
        "gaussian_wasserstein_correlation_norm": _divide(wasserstein, np.trace(cov)),
        "mutual_info_score": information / (d * d - d) if d > 1 else 0.0,
    })
