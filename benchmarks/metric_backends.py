"""DCI's and SAP's compiled classifiers (eval.<metric>.backend=fast) against scikit-learn's (sklearn):
equal within the spread of seeds?

For each representation, disentanglement_lib's reference codes (the oracle, a rotation of it, the
oracle plus noise) and trained exports named on the command line, each metric's scores with both
backends at seeds 0, 1, 2 (other points each time; both backends see the same points at a seed).
A row's verdict: the largest difference between the backends at a seed is within the reference's
spread over seeds (its sd; at least 0.01).

    python benchmarks/metric_backends.py [--metrics dci,sap] [--n-train 2000 --n-eval 1000] [EXPORT ...]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from betavae_dist.data.dsprites import DSprites
from betavae_dist.evaluate import load_model
from betavae_dist.metrics import EvalConfig, METRICS, run_metric
from betavae_dist.metrics.codes import CodeTable, factor_set, model_representation

SEEDS = (0, 1, 2)
SCORES = {"dci": ("disentanglement", "completeness", "informativeness"), "sap": ("score",)}


def oracle(factors):  # disentanglement_lib's test codes: the five varying factors, scaled to [0, 1]
    return factors[:, 1:] / (np.array([3, 6, 40, 32, 32]) - 1)


def rotated(factors):
    return oracle(factors) @ np.linalg.qr(np.random.RandomState(0).randn(5, 5))[0]


def noisy(factors):  # noise that is a function of the factors, so that both backends see the same codes
    return oracle(factors) + 0.05 * np.sin(factors @ np.random.RandomState(1).randn(6, 5) * 37)


def scores(name: str, dataset, table, backend: str, seed: int, n_train: int, n_eval: int) -> dict:
    cfg = EvalConfig(metrics=name, seed=seed, **{name: METRICS[name].settings(n_train, n_eval, backend)})
    return run_metric(name, dataset, table, factor_set(dataset, "all"), cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("exports", nargs="*", type=Path, help="trained exports to compare on")
    parser.add_argument("--metrics", default="dci,sap", help="comma-separated: dci, sap")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-eval", type=int, default=1000)
    args = parser.parse_args()
    dataset = DSprites()
    representations = {"oracle": oracle, "rotated oracle": rotated, "noisy oracle": noisy}
    for export in args.exports:
        model, cfg = load_model(export)
        name = f"{export.parent.name} (β = {cfg.loss.beta:g})"
        representations[name] = model_representation(model.eval(), dataset, "cpu")
    table = Table(title=f"compiled classifiers against scikit-learn's, seeds {SEEDS}, "
                        f"{args.n_train:,} / {args.n_eval:,} points (mean ± sd over seeds)")
    for column in ("codes", "score", "scikit-learn", "compiled", "largest |Δ| at a seed", "verdict"):
        table.add_column(column, justify="left" if column in ("codes", "score", "verdict") else "right")
    for name, represent in representations.items():
        codes = CodeTable(represent, dataset.factor_sizes)  # both backends read the same codes
        for metric in args.metrics.split(","):
            runs = {backend: [scores(metric, dataset, codes, backend, seed, args.n_train, args.n_eval) for seed in SEEDS]
                    for backend in ("sklearn", "fast")}
            for score in SCORES[metric]:
                ref, fast = ([r[f"{metric}.{score}"] for r in runs[b]] for b in ("sklearn", "fast"))
                spread = max(statistics.stdev(ref), 0.01)
                delta = max(abs(a - b) for a, b in zip(ref, fast))
                table.add_row(name, f"{metric}.{score}", f"{statistics.mean(ref):.4f} ± {statistics.stdev(ref):.4f}",
                              f"{statistics.mean(fast):.4f} ± {statistics.stdev(fast):.4f}", f"{delta:.4f}",
                              "within the spread" if delta <= spread else "OUTSIDE the spread")
        Console().print(f"done: {name}")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
