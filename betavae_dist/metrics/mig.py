"""Mutual Information Gap (Chen et al. 2018, section 4.1), as in disentanglement_lib.

On `n_samples` random samples, each code dimension is discretised into 20 equal-width bins; with
I(z_i; v_k) the mutual information between code i and factor k and H(v_k) the factor's entropy,
MIG = mean over factors of (largest - second largest I(z_i; v_k)) / H(v_k).
Note: 20 bins cannot separate a factor with more values (dSprites orientation has 40, positions
32), so even a perfect representation scores about 0.9, not 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import setting
from ..data.dataset import FactorDataset
from .codes import Represent, Streams
from .fits import Plan, done


@dataclass
class MIGSettings:  # disentanglement_lib's defaults
    n_samples: int = setting(10_000, "random samples whose codes are binned", positive=True)


def discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    out = np.empty(codes.shape, np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], bins)[1]
        out[:, i] = np.digitize(codes[:, i], edges[:-1])
    return out


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats for two discrete samples of the same length."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())


def entropy(a: np.ndarray) -> float:
    p = np.unique(a, return_counts=True)[1] / len(a)
    return float(-(p * np.log(p)).sum())


def mig(dataset: FactorDataset, represent: Represent, factors: list[int], settings: MIGSettings, rng: Streams) -> Plan:
    samples = dataset.sample_factors(settings.n_samples, rng())
    codes = discretize(represent(samples))
    gaps = []
    for k in factors:
        mi = sorted((mutual_information(codes[:, i], samples[:, k]) for i in range(codes.shape[1])), reverse=True)
        gaps.append((mi[0] - (mi[1] if len(mi) > 1 else 0.0)) / entropy(samples[:, k]))
    return done({"score": float(np.mean(gaps))})
