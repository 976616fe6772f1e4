"""Disentanglement metrics, by the names `eval.metrics` uses: one file each, one line in METRICS.

A metric is a function `(dataset, represent, factors, settings, rng) -> Plan` of a factor dataset, a
representation function (factor vectors -> codes), the indices of the factors it scores, its own
settings (a dataclass in its module, disentanglement_lib's defaults; `eval.<metric>.<key>`) and its
random streams (`codes.Streams`, derived from its name). It computes its points on every rank and
returns the classifier fits that remain, which `fits.run_plans` runs once each, spread over the
ranks. Each reproduces disentanglement_lib's (see its module).

Result keys follow one pattern, `<metric>.<score>` (`beta_vae.eval_accuracy`, `mig.score`,
`dci.completeness`): the metric returns its scores and `score` adds the prefix and
`<metric>.seconds` (the metric's own work: its points, and its fits wherever they ran);
`encode.seconds` is the time spent encoding images, which the metrics share, and `fits` records
which rank ran each fit and for how long. `Metric.headline` is the score the sweep report shows.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, make_dataclass
from typing import TYPE_CHECKING, Callable

from ..config import MAX_SEED, ConfigError, comma_list, section, setting
from ..registry import Registry
from .beta_vae import BetaVAESettings, beta_vae_score
from .codes import FACTOR_SETS, REPRESENTATIONS, CodeTable, Represent, Streams, factor_set, model_representation
from .dci import DCISettings, dci
from .downstream_task import DownstreamSettings, downstream_task
from .factor_vae import FactorVAESettings, factor_vae_score
from .fits import Failure, Plan, attempt, done, run_plans
from .irs import IRSSettings, irs
from .mig import MIGSettings, mig
from .modularity import ModularitySettings, modularity_explicitness
from .sap import SAPSettings, sap
from .unsupervised import UnsupervisedSettings, unsupervised

from rich.progress import Progress

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..data.dataset import FactorDataset


@dataclass(frozen=True)
class Metric:
    compute: Callable[..., Plan]
    headline: str  # the score that sums the metric up
    settings: type  # its settings dataclass: `eval.<name>` in the config


METRICS = Registry("metric", {
    "beta_vae": Metric(beta_vae_score, "eval_accuracy", BetaVAESettings),  # Higgins et al. 2017
    "factor_vae": Metric(factor_vae_score, "eval_accuracy", FactorVAESettings),  # Kim & Mnih 2018
    "mig": Metric(mig, "score", MIGSettings),  # Chen et al. 2018
    "dci": Metric(dci, "disentanglement", DCISettings),  # Eastwood & Williams 2018
    "sap": Metric(sap, "score", SAPSettings),  # Kumar et al. 2018
    "modularity": Metric(modularity_explicitness, "score", ModularitySettings),  # Ridgeway & Mozer 2018
    "unsupervised": Metric(unsupervised, "gaussian_total_correlation", UnsupervisedSettings),  # dlib's unsupervised scores
    "irs": Metric(irs, "score", IRSSettings),  # Suter et al. 2019
    "downstream_task": Metric(downstream_task, "logistic_regression.mean_test_accuracy",
                              DownstreamSettings),  # Locatello et al. 2019's downstream performance
})


@dataclass
class EvalSettings:
    every: int = setting(0, "evaluate every N training steps and at the end; 0 = not during training", low=0,
                         allowed=">= 0 (0 = off)")
    metrics: str = setting("beta_vae", "comma-separated metric names (metrics/)", names=lambda: METRICS)
    factors: str = setting("all", "\"all\" (every varying factor; dSprites: all but colour) or \"no_shape\"",
                           choices=FACTOR_SETS)
    seed: int = setting(0, "the metrics' random draws (and the sampled codes')", low=0, high=MAX_SEED)
    representation: str = setting("mean", "the codes scored, comma-separated: \"mean\" (the encoder's mean) and/or "
                                  "\"sampled\" (a draw of q(z|x), fixed per image by eval.seed; its scores are "
                                  "sampled.<metric>.<score>)", names=REPRESENTATIONS)
    batch_size: int = setting(64, "images per forward pass (64 was fastest on CPU, see docs/benchmarks.md)",
                              positive=True)

    @property
    def metric_names(self) -> list[str]:
        return comma_list(self.metrics)

    @property
    def representations(self) -> list[str]:
        return comma_list(self.representation)

    def check(self) -> None:
        for name in self.metric_names:
            METRICS.choose(name, "eval.metrics")
        for name in self.representations or [""]:
            if name not in REPRESENTATIONS:
                raise ConfigError(f"eval.representation: {name!r} is not one of {', '.join(REPRESENTATIONS)}")


# The `eval` section: the settings above, then each metric's own (`eval.dci.n_train=2000`; a key
# without the metric's name sets it for every metric that has it: `eval.n_train=2000`).
EvalConfig = make_dataclass("EvalConfig", [(name, metric.settings, section(metric.settings, f"metric {name}"))
                                           for name, metric in METRICS.items()], bases=(EvalSettings,))
EvalConfig.__module__ = __name__  # make_dataclass has no `module` before Python 3.12


def headline_keys() -> list[str]:
    return [f"{name}.{metric.headline}" for name, metric in METRICS.items()]


def run_metric(name: str, dataset: FactorDataset, represent: Represent, factors: list[int], cfg: EvalConfig) -> dict:
    """One metric's scores, `<name>.<score>`, in this process."""
    plan = plan_metric(name, dataset, represent, factors, cfg)
    (scores,), _ = run_plans([plan])
    return named_scores(name, scores, True)


def plan_metric(name: str, dataset: FactorDataset, represent: Represent, factors: list[int], cfg: EvalConfig) -> Plan:
    """The metric's points and remaining fits; a metric that degenerate codes make fail before its
    fits gives a plan of that Failure."""
    metric = METRICS.choose(name, "eval.metrics")
    plan = attempt(metric.compute, dataset, represent, factors, getattr(cfg, name), Streams(cfg.seed, name))
    return done(plan) if isinstance(plan, Failure) else plan


def named_scores(name: str, scores: dict | Failure, tell: bool) -> dict:
    """`<name>.<score>` for each score; for a metric that failed, its headline NaN and `<name>.error`
    saying why, and (`tell`) one line on stderr."""
    if not isinstance(scores, Failure):
        odd = [f"{score} {value}" for score, value in scores.items() if isinstance(value, float) and not math.isfinite(value)]
        if odd and tell:
            print(f"warning: metric {name} gives {', '.join(odd)} on these codes (degenerate codes: one that never "
                  "varies, say)", file=sys.stderr, flush=True)
        return {f"{name}.{score}": value for score, value in scores.items()}
    if tell:
        print(f"warning: metric {name} cannot be computed on these codes ({scores.why}); its scores are NaN, "
              "the other metrics are kept", file=sys.stderr, flush=True)
    return {f"{name}.{METRICS[name].headline}": float("nan"), f"{name}.error": scores.why}


def evaluate_model(model, dataset: FactorDataset, settings: EvalConfig, accelerator: Accelerator | None,
                   progress: Progress | None = None) -> dict:
    """The metrics of `eval.metrics` for a model on a factor dataset; every rank must call this (each
    runs its share of forward passes and of fits). Each distinct image is encoded once for all the
    metrics. `settings`: the `eval.*` section. `progress` gets a line for the images encoded, one
    per metric's points and one for the fits."""
    import torch  # here, not at import: the metrics' settings are imported with the config

    progress = progress or Progress(disable=True)
    device = accelerator.device if accelerator else next((p.device for p in model.parameters()), torch.device("cpu"))
    results = {}
    for representation in settings.representations:
        if representation == "sampled" and model.encode(torch.zeros(1, *dataset.image_shape, device=device))[1] is None:
            raise ConfigError("eval.representation=sampled: this encoder gives no log-variance to sample with")
        named = "images encoded" + ("" if representation == "mean" else f" ({representation})")
        codes = CodeTable(model_representation(model, dataset, device, representation, settings.seed), dataset.factor_sizes,
                          accelerator, settings.batch_size, **track_encoding(progress, named))
        scored, = score(codes, dataset, [settings], progress, accelerator)
        prefix = "" if representation == "mean" else f"{representation}."
        results.update({f"{prefix}{k}": v for k, v in {**scored, "encode.seconds": round(codes.seconds, 2)}.items()})
    return results


def track_encoding(progress: Progress, description: str = "images encoded") -> dict:
    """A CodeTable's callbacks for a progress task whose total grows with each request (the metrics
    ask for their images as they go, so no total is known at the start)."""
    task, requested = progress.add_task(description, total=0), [0]

    def more(n: int) -> None:
        requested[0] += n
        progress.update(task, total=requested[0])

    return {"on_requested": more, "on_encoded": lambda n: progress.advance(task, n)}


def score(codes: CodeTable, dataset: FactorDataset, cfgs: list[EvalConfig], progress: Progress,
          accelerator: Accelerator | None = None, columns: list[slice] | None = None) -> list[dict]:
    """Every metric of `eval.metrics` for each of the models whose codes `codes` holds (model m: its
    `columns[m]`, one model of a pack; all columns when there is one model), each with the seconds
    of its own work apart from the time `codes` spent encoding images for it. First every metric's
    points, then all their fits together, so that the ranks share the fits of every model."""
    columns = columns or [None] * len(cfgs)
    plans: list[list[tuple[str, Plan]]] = []
    for cfg, cols in zip(cfgs, columns):
        represent = codes if cols is None else codes.columns(cols)
        factors, plans_of_model = factor_set(dataset, cfg.factors), []
        for name in cfg.metric_names:
            task = progress.add_task(f"metric {name}: points", total=1)
            start, encoding = time.perf_counter(), codes.seconds
            plan = plan_metric(name, dataset, represent, factors, cfg)
            plan.seconds = time.perf_counter() - start - (codes.seconds - encoding)
            plans_of_model.append((name, plan))
            progress.update(task, completed=1)
        plans.append(plans_of_model)
    scores, record = run_plans([plan for model in plans for _, plan in model], accelerator, progress)
    results, i = [], 0
    for model in plans:
        result, fits = {}, 0
        for name, plan in model:
            result.update(named_scores(name, scores[i], accelerator is None or accelerator.is_main_process))
            result[f"{name}.seconds"] = round(plan.seconds + sum(plan.fit_seconds), 2)
            i += 1
            fits += len(plan.fits)
        result["fits"], record = record[:fits], record[fits:]
        results.append(result)
    return results
