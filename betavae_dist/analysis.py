"""The study's analysis (Locatello et al. 2019), each a function of the study's table alone
(table.py: a row per model, a column per score), so that the same code draws a 12-model smoke
study and a 10,000-model one:

- `spread_figure`: per score, every method on one shared axis, the spread over seeds and settings
  (box plots), chance drawn where the score has one;
- `rank_correlations` / `correlation_figure`: Spearman's rank correlation between all scores;
- `seed_share` / `seed_share_figure`: how much of a score's variance within a method is due to the
  random seed rather than the setting (the mean variance over seeds of each setting over the
  total variance);
- `selection` / `selection_figure`: for each unsupervised score (and UDR), the supervised score of
  the model it picks per method (the best by it) against the best there is, and each model's
  scores without labels against those with them: does selecting by one pick the other?
- `analyse`: all of them into a directory, as figures and analysis.md.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np

SETTINGS = ("method", "seed", "data", "steps", "run_dir", "status", "status_detail")  # the table's non-score columns
UNSUPERVISED = {  # scores that need no labels: whether lower is better
    "unsupervised.gaussian_total_correlation": True, "unsupervised.gaussian_wasserstein_correlation_norm": True,
    "unsupervised.mutual_info_score": True, "udr.lasso": False, "udr.spearman": False}
CHANCE = ("beta_vae.eval_accuracy", "factor_vae.eval_accuracy")  # guessing the fixed factor: 1 / factors


def number(value) -> float:
    """A table cell as a number: NaN where it is blank (not evaluated) or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


DETAILS = (":", "train_accuracy", "_train", "active_dims", "encode.")  # parts of keys that are not scores to analyse


def score_columns(rows: list[dict]) -> list[str]:
    """The columns holding scores (`metric.score`) that some row has a number for, without the
    details (per size or factor, training-set accuracies, counts)."""
    columns = dict.fromkeys(key for row in rows for key in row)
    return [c for c in columns if "." in c and not c.startswith("loss.") and c not in SETTINGS
            and not any(part in c for part in DETAILS) and any(math.isfinite(number(row.get(c))) for row in rows)]


def setting_of(row: dict) -> str:
    """The method's swept setting of a row, "key=value" (the swept `loss.*` keys it has)."""
    return ", ".join(f"{k.split('.', 1)[1]}={row[k]}" for k in row if k.startswith("loss.") and row[k] not in ("", None))


def rank_correlations(rows: list[dict], columns: list[str]) -> np.ndarray:
    """Spearman's rank correlation between each pair of score columns, over the rows that have both."""
    from scipy.stats import spearmanr  # scipy comes with scikit-learn

    out = np.full((len(columns), len(columns)), np.nan)
    for i, a in enumerate(columns):
        for j, b in enumerate(columns):
            pairs = [(number(r.get(a)), number(r.get(b))) for r in rows]
            pairs = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
            if len(pairs) > 2 and len({x for x, _ in pairs}) > 1 and len({y for _, y in pairs}) > 1:
                out[i, j] = spearmanr(*zip(*pairs)).statistic
    return out


def seed_share(rows: list[dict], column: str) -> dict[str, float]:
    """Per method: the share of the score's variance that is the seed's, the mean variance within a
    setting (over its seeds) over the variance of all the method's models (0: the setting decides
    everything; 1: the seed does). NaN with fewer than two seeds of a setting or no variance."""
    shares = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        groups: dict[str, list[float]] = {}
        for r in rows:
            if r["method"] == method and math.isfinite(number(r.get(column))):
                groups.setdefault(setting_of(r), []).append(number(r.get(column)))
        values = [v for g in groups.values() for v in g]
        within = [statistics.pvariance(g) for g in groups.values() if len(g) > 1]
        total = statistics.pvariance(values) if len(values) > 1 else 0.0
        shares[method] = statistics.mean(within) / total if within and total > 0 else math.nan
    return shares


def selection(rows: list[dict], unsupervised: str, supervised: str) -> dict[str, tuple[float, float]]:
    """Per method: (the supervised score of the model the unsupervised score picks, the best
    supervised score of the method). Which unsupervised scores are better: UNSUPERVISED."""
    sign = 1 if UNSUPERVISED.get(unsupervised, True) else -1
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        both = [(sign * number(r.get(unsupervised)), number(r.get(supervised))) for r in rows if r["method"] == method]
        both = [(u, s) for u, s in both if math.isfinite(u) and math.isfinite(s)]
        if both:
            out[method] = (min(both)[1], max(s for _, s in both))
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path, dpi: int) -> Path:
    """Write a figure, trimmed to what it draws, and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def describe(rows: list[dict]) -> str:
    """What every figure states: the data set(s), the steps and the number of models."""
    data = ", ".join(sorted({str(r.get("data")) for r in rows}))
    steps = ", ".join(sorted({str(r.get("steps")) for r in rows}, key=lambda s: number(s)))
    return f"{data}, {steps} steps, n = {len(rows)} models"


def spread_figure(rows: list[dict], columns: list[str], path: Path, factors: int | None = None) -> Path:
    """Per score, every method on one shared axis: box plots over seeds and settings."""
    plt = _pyplot()
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cols = min(len(columns), 4)
    fig, axes = plt.subplots(math.ceil(len(columns) / cols), cols, figsize=(3.6 * cols, 3 * math.ceil(len(columns) / cols)),
                             squeeze=False)
    for ax, column in zip(axes.flat, columns):
        data = [[v for r in rows if r["method"] == m and math.isfinite(v := number(r.get(column)))] for m in methods]
        ax.boxplot([d or [math.nan] for d in data], showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(column, fontsize=9)
        ax.set_ylabel("score")
        if column in CHANCE and factors:
            ax.axhline(1 / factors, color="grey", linestyle="--", linewidth=1, label="chance")
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.suptitle(f"Each score per method, over seeds and settings ({describe(rows)})", fontsize=10)
    return save(fig, path, dpi=90)


def _heatmap(matrix: np.ndarray, rows: list[str], columns: list[str], vmin: float, vmax: float, cmap: str, label: str,
             title: str, path: Path) -> Path:
    """A matrix as a coloured grid, each cell written in it."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(7.0, 3.0 + 0.55 * len(columns)), max(5.0, 2.5 + 0.5 * len(rows))))
    image = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    middle = (vmin + vmax) / 2
    for (i, j), value in np.ndenumerate(matrix):
        if math.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if abs(value - middle) > (vmax - vmin) / 4 else "black")
    fig.colorbar(image, label=label)
    ax.set_title(title, fontsize=9)
    return save(fig, path, dpi=90)


def correlation_figure(rows: list[dict], columns: list[str], path: Path) -> Path:
    return _heatmap(rank_correlations(rows, columns), columns, columns, -1, 1, "RdBu_r", "Spearman's rank correlation",
                    f"Rank correlation between scores\n({describe(rows)})", path)


def seed_share_figure(rows: list[dict], columns: list[str], path: Path) -> Path:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    shares = np.array([[seed_share(rows, c)[m] for c in columns] for m in methods])
    return _heatmap(shares, methods, columns, 0, 1, "viridis", "share of the variance due to the seed",
                    f"Seed or setting? The share of each score's variance due to the seed\n({describe(rows)})", path)


def selection_figure(rows: list[dict], columns: list[str], path: Path) -> Path | None:
    """Each unsupervised score (and UDR) against each supervised score, a point per model, a colour
    per method: does a model that looks good without labels look good with them?"""
    unsupervised = [c for c in UNSUPERVISED if c in columns]
    supervised = [c for c in columns if c not in UNSUPERVISED and not c.startswith(("unsupervised.", "sampled."))]
    if not unsupervised or not supervised:
        return None
    plt = _pyplot()
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(len(unsupervised), len(supervised), squeeze=False,
                             figsize=(2.6 * len(supervised), 2.4 * len(unsupervised)))
    for i, u in enumerate(unsupervised):
        for j, s in enumerate(supervised):
            ax = axes[i][j]
            for method in methods:
                points = [(number(r.get(u)), number(r.get(s))) for r in rows if r["method"] == method]
                if points:
                    ax.scatter(*zip(*points), s=8, label=method)
            ax.set_xlabel(f"{u} ({'lower' if UNSUPERVISED[u] else 'higher'} is better)", fontsize=6)
            ax.set_ylabel(s, fontsize=6)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"Scores without labels against scores with them ({describe(rows)})", fontsize=10)
    return save(fig, path, dpi=80)


def analyse(rows: list[dict], out: Path, factors: int | None = None) -> Path:
    """Every figure of the module docstring into `out`, and analysis.md with their tables."""
    out.mkdir(parents=True, exist_ok=True)
    columns = score_columns(rows)
    spread_figure(rows, columns, out / "scores.png", factors)
    correlation_figure(rows, columns, out / "rank_correlation.png")
    seed_share_figure(rows, columns, out / "seed_share.png")
    selected = selection_figure(rows, columns, out / "selection.png")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["# The study's analysis", "", f"{describe(rows)}; every figure is drawn from table.csv alone.", "",
             "![scores](scores.png)", "", "![rank correlation](rank_correlation.png)", "", "![seed share](seed_share.png)",
             "", "## Share of each score's variance due to the seed (within a method)", "",
             "| score | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for column in columns:
        shares = seed_share(rows, column)
        lines.append(f"| {column} | " + " | ".join(f"{shares[m]:.2f}" for m in methods) + " |")
    supervised = [c for c in columns if c not in UNSUPERVISED and not c.startswith("unsupervised.")]
    if selected:
        lines += ["", "![selection](selection.png)"]
    for unsupervised in (u for u in UNSUPERVISED if u in columns):
        best = "lowest" if UNSUPERVISED[unsupervised] else "highest"
        lines += ["", f"## Selecting by {unsupervised} (the {best}) against the best by each supervised score", "",
                  "| score | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for column in supervised:
            picked = selection(rows, unsupervised, column)
            lines.append(f"| {column} | " + " | ".join(f"{picked[m][0]:.3g} of {picked[m][1]:.3g}" if m in picked else "–"
                                                       for m in methods) + " |")
    (out / "analysis.md").write_text("\n".join(lines) + "\n")
    return out / "analysis.md"
