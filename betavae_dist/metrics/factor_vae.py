"""The FactorVAE disentanglement metric (Kim & Mnih 2018, section 4), as in disentanglement_lib.

Codes are scaled by their standard deviation over `n_samples` random samples; dimensions whose
std is below 0.05 are pruned as collapsed. One point: choose a factor k, draw L = 64 factor vectors
sharing k's value, and vote for the active dimension with the least variance. A majority-vote
classifier (each dimension predicts the factor it got most votes for) is fitted on `n_train`
points; the score is its accuracy on `n_eval` points. 0 when every dimension collapsed.
"""

from __future__ import annotations

import numpy as np

from .codes import Represent, point_rng

STREAM = 2
VARIANCE_STREAM = 12  # the samples that estimate each code's global variance


def factor_vae_score(dataset, represent: Represent, factors: list[int], seed: int = 0, pairs: int = 64,
                     n_train: int = 10_000, n_eval: int = 5_000, n_samples: int = 10_000, **_) -> dict[str, float]:
    global_var = represent(dataset.sample_factors(n_samples, point_rng(seed, VARIANCE_STREAM, 0))).var(0, ddof=1)
    active = np.sqrt(global_var) >= 0.05
    if not active.any():
        return {"factor_vae.train_accuracy": 0.0, "factor_vae.eval_accuracy": 0.0, "factor_vae.active_dims": 0}
    n = n_train + n_eval
    labels = np.empty(n, np.int64)
    batches = np.empty((n, pairs, len(dataset.factor_sizes)), np.int64)
    for i in range(n):
        rng = point_rng(seed, STREAM, i)
        labels[i] = rng.integers(len(factors))
        batches[i] = dataset.sample_factors(pairs, rng)
        batches[i, :, factors[labels[i]]] = batches[i, 0, factors[labels[i]]]
    codes = represent(batches.reshape(n * pairs, -1)).reshape(n, pairs, -1)
    local_var = codes.var(1, ddof=1) / np.where(active, global_var, 1.0)
    dims = np.where(active, local_var, np.inf).argmin(1)
    votes = np.zeros((len(global_var), len(factors)), np.int64)
    np.add.at(votes, (dims[:n_train], labels[:n_train]), 1)
    predicted = votes.argmax(1)
    return {
        "factor_vae.train_accuracy": float(votes.max(1).sum() / n_train),
        "factor_vae.eval_accuracy": float((predicted[dims[n_train:]] == labels[n_train:]).mean()),
        "factor_vae.active_dims": int(active.sum()),
    }
