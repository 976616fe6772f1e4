"""The β-VAE disentanglement metric (Higgins et al. 2017, section 3 and appendix).

One point: choose a factor y uniformly from the factor set; draw L pairs of factor vectors that
share y's value, all other factors random; encode both images with the encoder mean; the point
is the mean over pairs of |z1 - z2|, labelled y. A linear softmax classifier is trained on
`n_train` points; the score is its accuracy on `n_eval` held-out points.
Defaults follow disentanglement_lib (L = 64, 10,000 training and 5,000 evaluation points).
Point i draws everything from `point_rng(seed, 1, i)`: the points do not depend on how the work
is split across ranks.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .codes import Represent, point_rng
from .linear import accuracy, fit_softmax

STREAM = 1


def beta_vae_points(dataset, represent: Represent, factors: list[int], seed: int, pairs: int, n: int):
    """(points (n, d), labels (n,) indexing `factors`)."""
    labels = np.empty(n, np.int64)
    first = np.empty((n, pairs, len(dataset.factor_sizes)), np.int64)
    second = np.empty_like(first)
    for i in range(n):
        rng = point_rng(seed, STREAM, i)
        labels[i] = rng.integers(len(factors))
        y = factors[labels[i]]
        first[i], second[i] = dataset.sample_factors(pairs, rng), dataset.sample_factors(pairs, rng)
        second[i, :, y] = first[i, :, y]
    codes = represent(np.concatenate([first.reshape(n * pairs, -1), second.reshape(n * pairs, -1)]))
    z1, z2 = codes[: n * pairs], codes[n * pairs :]
    return np.abs(z1 - z2).reshape(n, pairs, -1).mean(1), labels


def beta_vae_score(dataset, represent: Represent, factors: list[int], seed: int = 0, pairs: int = 64,
                   n_train: int = 10_000, n_eval: int = 5_000, **_) -> dict[str, float | str]:
    points, labels = beta_vae_points(dataset, represent, factors, seed, pairs, n_train + n_eval)
    predict, _ = fit_softmax(points[:n_train], labels[:n_train], len(factors))
    return {
        "beta_vae.train_accuracy": accuracy(predict, points[:n_train], labels[:n_train]),
        "beta_vae.eval_accuracy": accuracy(predict, points[n_train:], labels[n_train:]),
        "beta_vae.points_sha256": hashlib.sha256(points.astype(np.float32).tobytes()).hexdigest(),
    }
