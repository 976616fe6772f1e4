"""UDR (Duan et al. 2020): model selection without labels, by how alike the representations of
models trained with different seeds are.

Reproduces disentanglement_lib's `compute_udr_sklearn` (evaluation/udr/metrics/udr.py): the
models' mean codes of `n` images drawn from the factor dataset, standardised, latents with an
average KL below 0.01 zeroed; for every ordered pair of models (i, j) a correlation matrix between
their latents, |Spearman| (`spearman`) or |Lasso coefficients| (`lasso`, alpha 0.1), restricted to
both models' informative latents; its relative-strength disentanglement; and each model's score,
the median of the pair scores against it. `python -m betavae_dist.sweep udr SWEEP` scores each of
a sweep's settings across its seeds (the models UDR is meant to compare) and adds `udr.lasso` and
`udr.spearman` to each point's evaluation.json.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .sweep_file import Sweep

KL_THRESHOLD = 0.01  # nats: latents below it are not compared
KINDS = ("lasso", "spearman")


def relative_strength_disentanglement(corr: np.ndarray) -> float:
    """disentanglement_lib's: how much each row's and each column's largest entry dominates it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        score_x = np.nanmean(np.nan_to_num(np.power(np.max(corr, axis=0), 2) / np.sum(corr, axis=0), 0))
        score_y = np.nanmean(np.nan_to_num(np.power(np.max(corr, axis=1), 2) / np.sum(corr, axis=1), 0))
    return float((score_x + score_y) / 2)


def spearman_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|Spearman's correlation| between each latent of a (rows) and of b (columns); NaN for a
    constant latent, as scipy's spearmanr gives."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
    ra, rb = ra - ra.mean(0), rb - rb.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs((ra.T @ rb) / np.outer(np.sqrt((ra ** 2).sum(0)), np.sqrt((rb ** 2).sum(0))))


def lasso_matrix(a: np.ndarray, b: np.ndarray, seed: int = 0) -> np.ndarray:
    """|coefficients| of a Lasso regression (alpha 0.1) of b's latents on a's: (latents of a, of b)."""
    from sklearn import linear_model

    from .metrics.classifiers import fit

    return np.abs(fit(linear_model.Lasso(random_state=seed, alpha=0.1), a, b).coef_).T


def udr_scores(codes: list[np.ndarray], kls: list[np.ndarray], kind: str = "lasso", seed: int = 0,
               filter_low_kl: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(pair scores (models, models), each model's score: the median of the others' scores against it)."""
    masks, reps = [], []
    for c, kl in zip(codes, kls):
        std = c.std(0)
        standard = (c - c.mean(0)) / np.where(std > 0, std, 1.0)  # scikit-learn's StandardScaler
        reps.append(standard * (kl > KL_THRESHOLD))
        masks.append(kl > KL_THRESHOLD)
    m = len(codes)
    pairs = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            if i != j:
                corr = lasso_matrix(reps[i], reps[j], seed) if kind == "lasso" else spearman_matrix(reps[i], reps[j])
                if filter_low_kl:
                    corr = corr[masks[i]][:, masks[j]]
                pairs[i, j] = relative_strength_disentanglement(corr) if corr.size else np.nan  # no informative latent
    return pairs, np.array([np.median(np.delete(pairs[:, i], i)) for i in range(m)])


@torch.no_grad()
def representations(models: list, dataset, n: int, seed: int, batch_size: int = 64) -> tuple[list, list]:
    """Each model's mean codes of the same `n` images and its average KL per latent."""
    factors = dataset.sample_factors(n, np.random.default_rng([seed, 1905_12614]))  # the paper's arXiv number
    codes, kls = [[] for _ in models], [[] for _ in models]
    for start in range(0, n, batch_size):
        x = torch.from_numpy(dataset.images(factors[start:start + batch_size]))
        for k, model in enumerate(models):
            mean, logvar = (t.float() for t in model.encode(x.contiguous(memory_format=model.memory_format)))
            codes[k].append(mean.numpy())
            kls[k].append((0.5 * (mean.square() + logvar.exp() - logvar - 1)).sum(0).numpy())
    return [np.concatenate(c) for c in codes], [np.sum(kl, 0) / n for kl in kls]


def score_sweep(sweep: Sweep, n: int = 1000, seed: int = 0, say=print) -> dict[str, dict[str, float]]:
    """UDR of each evaluated point of `sweep` among the seeds of its setting, both kinds, added to
    its evaluation.json; returns {point name: {"udr.lasso": ..., "udr.spearman": ...}}."""
    from .data import build_dataset
    from .models import BetaVAE
    from .rundir import RunDir

    groups: dict[tuple, list[dict]] = {}
    for point in sweep.points:
        if RunDir(sweep.run_dir(point)).evaluation.is_file():
            groups.setdefault(tuple((k, v) for k, v in point.items() if k != "seed"), []).append(point)
    scored = {}
    for setting, points in groups.items():
        if len(points) < 2:
            say(f"udr: {dict(setting)}: {len(points)} evaluated seed(s), UDR compares two or more: skipped")
            continue
        models = [BetaVAE.from_pretrained(RunDir(sweep.run_dir(p)).export) for p in points]
        codes, kls = representations(models, build_dataset(sweep.config(points[0]).data), n, seed)
        for kind in KINDS:
            _, model_scores = udr_scores(codes, kls, kind, seed)
            for point, score in zip(points, model_scores):
                scored.setdefault(sweep.name(point), {})[f"udr.{kind}"] = float(score)
        for point in points:
            path = RunDir(sweep.run_dir(point)).evaluation
            path.write_text(json.dumps({**json.loads(path.read_text()), **scored[sweep.name(point)]}, indent=2))
        say(f"udr: {dict(setting)}: {len(points)} seeds, " + ", ".join(
            f"{sweep.name(p)} {scored[sweep.name(p)]['udr.lasso']:.3f}" for p in points) + " (lasso)")
    return scored
