"""Downstream task: how well simple predictors learn each factor from the codes, from few and many
points (Locatello et al. 2019's "downstream performance" and "sample efficiency").

Reproduces disentanglement_lib's `compute_downstream_task` (evaluation/metrics/downstream_task.py)
with its study's two predictor configs (unsupervised_study_v1/metric_configs/downstream_task_*.gin):
for each training size of `n_train` (10, 100, 1,000 and 10,000), codes of that many samples and of
`n_eval` (5,000) test samples; one predictor per factor, fitted on the training codes; its accuracy
on both. Predictors: `logistic_regression` (`LogisticRegressionCV(Cs=10, cv=KFold(5))`) and
`boosted_trees` (`GradientBoostingClassifier()`; `eval.downstream_task.backend=fast` grows the same
trees compiled, as DCI does, `sklearn` fits scikit-learn's with `random_state=seed`).

Keys, as disentanglement_lib's with the predictor in front: `<predictor>.<size>:mean_test_accuracy`,
`:mean_train_accuracy`, `:min_test_accuracy`, `:min_train_accuracy`,
`:test_accuracy_factor_<i>`, `:train_accuracy_factor_<i>` (i: the i-th scored factor); and
`<predictor>.mean_test_accuracy` (at the largest size, the headline) and
`<predictor>.sample_efficiency` (mean test accuracy at 100 points over that at 10,000, Locatello et
al.'s definition, where both sizes are run). Each (predictor, size, factor) is one fit, dealt to
the ranks; each size's points come from the metric's own streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, comma_list, setting
from ..data.dataset import FactorDataset
from .classifiers import BACKENDS, accuracy, fit
from .codes import Represent, Streams
from .dci import TREES
from .fits import Fit, Plan

EFFICIENCY = (100, 10_000)  # sample efficiency: accuracy with the first size over that with the second


def logistic_regression(x_train, y_train, x_test, y_test, seed: int, threads: int, backend: str) -> tuple[float, float]:
    from sklearn import linear_model, model_selection  # here, not at import (classifiers.py)

    model = fit(linear_model.LogisticRegressionCV(Cs=10, cv=model_selection.KFold(n_splits=5)), x_train, y_train)
    return accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)


def boosted_trees(x_train, y_train, x_test, y_test, seed: int, threads: int, backend: str) -> tuple[float, float]:
    trees = TREES[backend](x_train, y_train, x_test, y_test, seed, threads)
    return trees.train_accuracy, trees.test_accuracy


PREDICTORS = {"logistic_regression": logistic_regression, "boosted_trees": boosted_trees}


@dataclass
class DownstreamSettings:  # disentanglement_lib's unsupervised study
    n_train: str = setting("10,100,1000,10000", "training sizes, comma-separated: one fit per size and factor")
    n_eval: int = setting(5_000, "test points of each size", positive=True)
    predictors: str = setting("logistic_regression,boosted_trees", "the predictors, comma-separated",
                              names=PREDICTORS)
    backend: str = setting("fast", "the boosted trees: \"fast\" (compiled, as DCI's) or \"sklearn\"", choices=BACKENDS)

    @property
    def sizes(self) -> list[int]:
        return [int(size) for size in comma_list(self.n_train)]

    def check(self) -> None:
        if not all(size.isdigit() and int(size) > 0 for size in comma_list(self.n_train)) or not self.sizes:
            raise ConfigError(f"eval.downstream_task.n_train: positive sizes, comma-separated, got {self.n_train!r}")
        for name in comma_list(self.predictors):
            if name not in PREDICTORS:
                raise ConfigError(f"eval.downstream_task.predictors: {name!r} is not one of {', '.join(PREDICTORS)}")


def summary(accuracies: dict[tuple[str, int], list[tuple[float, float]]], sizes: list[int]) -> dict:
    """disentanglement_lib's keys from each (predictor, size)'s per-factor (train, test) accuracies."""
    scores = {}
    for (predictor, size), per_factor in accuracies.items():
        train, test = np.array(per_factor).T
        prefix = f"{predictor}.{size}:"
        scores.update({f"{prefix}mean_train_accuracy": float(np.mean(train)), f"{prefix}mean_test_accuracy": float(np.mean(test)),
                       f"{prefix}min_train_accuracy": float(np.min(train)), f"{prefix}min_test_accuracy": float(np.min(test))})
        for i, (a_train, a_test) in enumerate(per_factor):
            scores[f"{prefix}train_accuracy_factor_{i}"] = float(a_train)
            scores[f"{prefix}test_accuracy_factor_{i}"] = float(a_test)
    for predictor in dict.fromkeys(p for p, _ in accuracies):
        scores[f"{predictor}.mean_test_accuracy"] = scores[f"{predictor}.{max(sizes)}:mean_test_accuracy"]
        few, many = EFFICIENCY
        if few in sizes and many in sizes:
            scores[f"{predictor}.sample_efficiency"] = (scores[f"{predictor}.{few}:mean_test_accuracy"]
                                                        / scores[f"{predictor}.{many}:mean_test_accuracy"])
    return scores


def downstream_task(dataset: FactorDataset, represent: Represent, factors: list[int], settings: DownstreamSettings,
                    rng: Streams) -> Plan:
    sizes, fits, keys = settings.sizes, [], []
    for i, size in enumerate(sizes):
        train, test = dataset.sample_factors(size, rng(i, "train")), dataset.sample_factors(settings.n_eval, rng(i, "test"))
        x_train, x_test = represent(train), represent(test)
        for predictor in comma_list(settings.predictors):
            for k in factors:
                run = lambda threads, p=predictor, k=k, x_train=x_train, x_test=x_test, train=train, test=test: (
                    PREDICTORS[p](x_train, train[:, k], x_test, test[:, k], rng.seed, threads, settings.backend))
                fits.append(Fit(f"downstream_task/{predictor}/{size}/{dataset.factor_names[k]}",
                                dataset.factor_sizes[k] * (size + settings.n_eval) * (10 if predictor == "logistic_regression"
                                                                                      else 1), run))
                keys.append((predictor, size))

    def finish(results: list[tuple[float, float]]) -> dict:
        accuracies: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for key, result in zip(keys, results):
            accuracies.setdefault(key, []).append(result)
        return summary(accuracies, sizes)

    return Plan(fits, finish)
