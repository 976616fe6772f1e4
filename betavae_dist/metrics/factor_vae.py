"""The FactorVAE disentanglement metric (Kim & Mnih 2018, section 4), as in disentanglement_lib.

Codes are scaled by their standard deviation over `n_samples` random samples; dimensions whose
std is below 0.05 are pruned as collapsed. One point: choose a factor k, draw L = 64 factor vectors
sharing k's value, and vote for the active dimension with the least variance. A majority-vote
classifier (each dimension predicts the factor it got most votes for) is fitted on `n_train`
points; the score is its accuracy on `n_eval` points. 0 when every dimension collapsed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import setting
from ..data.dataset import FactorDataset
from .codes import Represent, Streams, point_codes
from .fits import Plan, done


@dataclass
class FactorVAESettings:  # disentanglement_lib's defaults
    pairs: int = setting(64, "L: images that share a factor's value in one vote", positive=True)
    n_train: int = setting(10_000, "votes that fit the majority-vote classifier", positive=True)
    n_eval: int = setting(5_000, "held-out votes", positive=True)
    n_samples: int = setting(10_000, "random samples of the codes' variance (the active dimensions)", positive=True)


def factor_vae_score(dataset: FactorDataset, represent: Represent, factors: list[int], settings: FactorVAESettings,
                     rng: Streams) -> Plan:
    global_var = represent(dataset.sample_factors(settings.n_samples, rng(part="variance"))).var(0, ddof=1)
    active = np.sqrt(global_var) >= 0.05
    if not active.any():
        return done({"train_accuracy": 0.0, "eval_accuracy": 0.0, "active_dims": 0})
    n_train, pairs = settings.n_train, settings.pairs
    n = n_train + settings.n_eval
    labels = np.empty(n, np.int64)
    batches = np.empty((n, pairs, len(dataset.factor_sizes)), np.int64)
    for i in range(n):
        point = rng(i)
        labels[i] = point.integers(len(factors))
        batches[i] = dataset.sample_factors(pairs, point)
        batches[i, :, factors[labels[i]]] = batches[i, 0, factors[labels[i]]]

    def quietest_active_dim(codes):  # (points, pairs, d) -> (points,)
        local_var = codes.var(1, ddof=1) / np.where(active, global_var, 1.0)
        return np.where(active, local_var, np.inf).argmin(1)

    dims = point_codes(represent, batches, quietest_active_dim)
    votes = np.zeros((len(global_var), len(factors)), np.int64)
    np.add.at(votes, (dims[:n_train], labels[:n_train]), 1)
    predicted = votes.argmax(1)
    return done({  # the majority vote is a count: no fit to share out
        "train_accuracy": float(votes.max(1).sum() / n_train),
        "eval_accuracy": float((predicted[dims[n_train:]] == labels[n_train:]).mean()),
        "active_dims": int(active.sum()),
    })
