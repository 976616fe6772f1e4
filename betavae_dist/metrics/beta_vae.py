"""The β-VAE disentanglement metric (Higgins et al. 2017, section 3 and appendix).

One point: choose a factor y uniformly from the factor set; draw L pairs of factor vectors that
share y's value, all other factors random; encode both images with the encoder mean; the point
is the mean over pairs of |z1 - z2|, labelled y. A linear classifier is trained on `n_train`
points; the score is its accuracy on `n_eval` held-out points.

Reproduces disentanglement_lib's `compute_beta_vae_sklearn` (evaluation/metrics/beta_vae.py): its
classifier, scikit-learn's `LogisticRegression()` with its defaults (L2, C = 1, lbfgs), on the raw
features, and its default sizes (L = 64, 10,000 training and 5,000 evaluation points). The raw
features matter: standardising them would blow the tiny |z1 - z2| of a collapsed model up into
separable signal. Remaining difference: point i draws everything from its own stream `rng(i)`
instead of one sequential stream, so the points do not depend on how the work is split across
ranks; scores agree with disentanglement_lib's within its seed-to-seed spread
(tests/test_metric_beta_vae.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..config import setting
from ..data.dataset import FactorDataset
from .classifiers import accuracy, fit
from .codes import Represent, Streams, point_codes
from .fits import Fit, Plan


@dataclass
class BetaVAESettings:  # disentanglement_lib's defaults
    pairs: int = setting(64, "L: image pairs averaged into one point", positive=True)
    n_train: int = setting(10_000, "classifier training points", positive=True)
    n_eval: int = setting(5_000, "held-out points", positive=True)


def beta_vae_points(dataset: FactorDataset, represent: Represent, factors: list[int], rng: Streams, pairs: int, n: int):
    """(points (n, d), labels (n,) indexing `factors`)."""
    labels = np.empty(n, np.int64)
    images = np.empty((n, 2, pairs, len(dataset.factor_sizes)), np.int64)  # point i: pairs (images[i, 0, j], images[i, 1, j])
    for i in range(n):
        point = rng(i)
        labels[i] = point.integers(len(factors))
        y = factors[labels[i]]
        images[i, 0], images[i, 1] = dataset.sample_factors(pairs, point), dataset.sample_factors(pairs, point)
        images[i, 1, :, y] = images[i, 0, :, y]
    return point_codes(represent, images, lambda z: np.abs(z[:, 0] - z[:, 1]).mean(1)), labels


def beta_vae_score(dataset: FactorDataset, represent: Represent, factors: list[int], settings: BetaVAESettings,
                   rng: Streams) -> Plan:
    n_train = settings.n_train
    points, labels = beta_vae_points(dataset, represent, factors, rng, settings.pairs, n_train + settings.n_eval)

    def classify(threads: int) -> tuple[float, float]:  # on one thread whatever it may use: the same result anywhere
        from sklearn.linear_model import LogisticRegression  # here, not at import (classifiers.py)

        model = fit(LogisticRegression(), points[:n_train], labels[:n_train])
        return accuracy(model, points[:n_train], labels[:n_train]), accuracy(model, points[n_train:], labels[n_train:])

    def finish(results: list) -> dict:
        (train, held_out), = results
        return {"train_accuracy": train, "eval_accuracy": held_out,
                "points_sha256": hashlib.sha256(points.astype(np.float32).tobytes()).hexdigest()}

    return Plan([Fit("beta_vae", len(factors) * n_train, classify)], finish)
