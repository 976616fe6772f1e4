"""Interventional Robustness Score (Suter et al. 2019), as disentanglement_lib's `compute_irs`.

Reproduces evaluation/metrics/irs.py on the codes of `n_train` samples (10,000, its sample
config): the factors binned into 20 equal-width bins (as MIG bins codes), codes that never vary
dropped. For code j and factor i, the mean over i's values of the `diff_quantile` quantile of
|z_j - E[z_j | v_i]| among the samples with that value, over code j's largest deviation from its
mean, is how much j moves while i stays put; IRS is the mean over codes of 1 - the least of those,
weighted by each code's largest deviation. 0 when no code varies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import setting
from ..data.dataset import FactorDataset
from .codes import Represent, Streams
from .fits import Plan, done
from .mig import discretize


@dataclass
class IRSSettings:  # disentanglement_lib's irs.gin
    n_train: int = setting(10_000, "samples", positive=True)
    diff_quantile: float = setting(0.99, "the quantile of the deviations that counts (1.0: the paper's maximum)",
                                   low=0, high=1)


def irs_score(factors: np.ndarray, codes: np.ndarray, diff_quantile: float) -> float:
    """disentanglement_lib's `scalable_disentanglement_score` of (samples, factors) discrete factors
    and (samples, codes) active codes: its `avg_score`."""
    max_deviations = np.abs(codes - codes.mean(0)).max(0)
    deviations = np.zeros((codes.shape[1], factors.shape[1]))
    for i in range(factors.shape[1]):
        values = np.unique(factors[:, i])
        for value in values:
            match = codes[factors[:, i] == value]
            deviations[:, i] += np.percentile(np.abs(match - match.mean(0)), diff_quantile * 100, axis=0)
        deviations[:, i] /= len(values)
    best = (1.0 - deviations / max_deviations[:, None]).max(1)
    return float(np.average(best, weights=max_deviations) if max_deviations.sum() > 0 else best.mean())


def irs(dataset: FactorDataset, represent: Represent, factors: list[int], settings: IRSSettings, rng: Streams) -> Plan:
    samples = dataset.sample_factors(settings.n_train, rng())
    codes = represent(samples)
    active = codes[:, codes.var(0) > 0]
    score = irs_score(discretize(samples[:, factors]), active, settings.diff_quantile) if active.shape[1] else 0.0
    return done({"score": score, "active_dims": int(active.shape[1])})
