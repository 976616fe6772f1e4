"""Disentanglement metrics, by the names `eval.metrics` uses: one file each, one line in METRICS.

A metric is a function `(dataset, represent, factors, cfg, rng) -> {score: value}` of a factor
dataset, a representation function (factor vectors -> codes), the indices of the factors it
scores, the `eval.*` settings and its random streams (`codes.Streams`, derived from its name).
Each reproduces disentanglement_lib's (see its module).

Result keys follow one pattern, `<metric>.<score>` (`beta_vae.eval_accuracy`, `mig.score`,
`dci.completeness`): the metric returns its scores and `run_metric` adds the prefix; the
evaluator adds `<metric>.seconds` (the metric's own work) and `encode.seconds` (encoding the images,
which the metrics share). `Metric.headline` is the score the sweep report shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..registry import Registry
from .beta_vae import beta_vae_score
from .codes import CodeTable, Represent, Streams, factor_set, model_representation
from .dci import dci
from .factor_vae import factor_vae_score
from .mig import mig
from .sap import sap

from rich.progress import Progress

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..config import Config, EvalConfig
    from ..data.dataset import FactorDataset


@dataclass(frozen=True)
class Metric:
    compute: Callable[..., dict]
    headline: str  # the score that sums the metric up


METRICS = Registry("metric", {
    "beta_vae": Metric(beta_vae_score, "eval_accuracy"),  # Higgins et al. 2017
    "factor_vae": Metric(factor_vae_score, "eval_accuracy"),  # Kim & Mnih 2018
    "mig": Metric(mig, "score"),  # Chen et al. 2018
    "dci": Metric(dci, "disentanglement"),  # Eastwood & Williams 2018
    "sap": Metric(sap, "score"),  # Kumar et al. 2018
})


def headline_keys() -> list[str]:
    return [f"{name}.{metric.headline}" for name, metric in METRICS.items()]


def run_metric(name: str, dataset: FactorDataset, represent: Represent, factors: list[int], cfg: EvalConfig) -> dict:
    scores = METRICS.choose(name, "eval.metrics").compute(dataset, represent, factors, cfg, Streams(cfg.seed, name))
    return {f"{name}.{score}": value for score, value in scores.items()}


def evaluate_model(model, dataset: FactorDataset, cfg: Config, accelerator: Accelerator | None,
                   progress: Progress | None = None) -> dict:
    """The metrics of `eval.metrics` for a model on a factor dataset; every rank must call this (each
    runs its share of forward passes). Each distinct image is encoded once for all the metrics.
    `progress` gets a line for the images encoded and one per metric."""
    progress = progress or Progress(disable=True)
    device = accelerator.device if accelerator else next(model.parameters()).device
    codes = CodeTable(model_representation(model, dataset, device), dataset.factor_sizes, accelerator,
                      cfg.eval.batch_size, **track_encoding(progress))
    results = score(codes, dataset, cfg.eval, progress)
    return {**results, "encode.seconds": round(codes.seconds, 2)}


def track_encoding(progress: Progress, description: str = "images encoded") -> dict:
    """A CodeTable's callbacks for a progress task whose total grows with each request (the metrics
    ask for their images as they go, so no total is known at the start)."""
    task, requested = progress.add_task(description, total=0), [0]

    def more(n: int) -> None:
        requested[0] += n
        progress.update(task, total=requested[0])

    return {"on_requested": more, "on_encoded": lambda n: progress.advance(task, n)}


def score(codes: CodeTable, dataset: FactorDataset, cfg: EvalConfig, progress: Progress, columns: slice | None = None) -> dict:
    """Every metric of `eval.metrics` for the representation `codes` (or its `columns`: one model of
    a pack), with the seconds of each apart from the time `codes` spent encoding images for it."""
    represent = codes if columns is None else codes.columns(columns)
    factors = factor_set(dataset, cfg.factors)
    results: dict = {}
    for name in cfg.metric_names:
        task = progress.add_task(f"metric {name}", total=1)
        start, encoding = time.perf_counter(), codes.seconds
        results.update(run_metric(name, dataset, represent, factors, cfg))
        results[f"{name}.seconds"] = round(time.perf_counter() - start - (codes.seconds - encoding), 2)
        progress.update(task, completed=1)
    return results
