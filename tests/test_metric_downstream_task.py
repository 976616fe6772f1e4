"""The downstream task equals disentanglement_lib's compute_downstream_task (transcribed below from
evaluation/metrics/downstream_task.py, with the study's two predictor configs) on the same codes."""

import numpy as np
import pytest

from betavae_dist.metrics.codes import Streams, factor_set
from betavae_dist.metrics.downstream_task import summary
from helpers import dlib_rotated, metric, oracle


def dlib_compute_loss(x_train, y_train, x_test, y_test, predictor_fn):
    """disentanglement_lib's _compute_loss: x (points, dims), y (factors, points)."""
    num_factors = y_train.shape[0]
    train_loss, test_loss = [], []
    for i in range(num_factors):
        model = predictor_fn()
        model.fit(x_train, y_train[i, :])
        train_loss.append(np.mean(model.predict(x_train) == y_train[i, :]))
        test_loss.append(np.mean(model.predict(x_test) == y_test[i, :]))
    return train_loss, test_loss


def dlib_downstream(samples, codes, predictor_fn) -> dict:
    """compute_downstream_task's loop over sizes, given each size's (train, test) factors and codes."""
    scores = {}
    for (size, (y_train, y_test)), (mus_train, mus_test) in zip(samples, zip(*codes)):
        train_err, test_err = dlib_compute_loss(mus_train, y_train.T, mus_test, y_test.T, predictor_fn)
        size_string = str(size)
        scores[size_string + ":mean_train_accuracy"] = np.mean(train_err)
        scores[size_string + ":mean_test_accuracy"] = np.mean(test_err)
        scores[size_string + ":min_train_accuracy"] = np.min(train_err)
        scores[size_string + ":min_test_accuracy"] = np.min(test_err)
        for i in range(len(train_err)):
            scores[size_string + ":train_accuracy_factor_{}".format(i)] = train_err[i]
            scores[size_string + ":test_accuracy_factor_{}".format(i)] = test_err[i]
    return scores


@pytest.mark.slow  # scikit-learn's boosted trees for 40 orientation classes, twice: over a minute
def test_equals_disentanglement_libs_computation_on_the_same_codes(dsprites):
    from sklearn import ensemble, linear_model, model_selection
    sizes, n_eval, seed = [20, 50], 100, 0
    represent = dlib_rotated  # a function of the factors alone: the codes do not depend on the order asked
    ours = metric("downstream_task", dsprites, represent, seed=seed,
                  downstream_task={"n_train": "20,50", "n_eval": n_eval, "backend": "sklearn"})
    # The same points: each size's from the metric's streams.
    rng, factors = Streams(seed, "downstream_task"), factor_set(dsprites, "all")
    samples = [(dsprites.sample_factors(size, rng(i, "train")), dsprites.sample_factors(n_eval, rng(i, "test")))
               for i, size in enumerate(sizes)]
    codes = [[represent(x).astype(np.float32) for x, _ in samples],  # as the evaluator keeps codes
             [represent(x).astype(np.float32) for _, x in samples]]
    labels = [(train[:, factors], test[:, factors]) for train, test in samples]
    predictors = {
        "logistic_regression": lambda: linear_model.LogisticRegressionCV(Cs=10, cv=model_selection.KFold(n_splits=5)),
        "boosted_trees": lambda: ensemble.GradientBoostingClassifier(random_state=seed),
    }
    for name, predictor_fn in predictors.items():
        expected = dlib_downstream(zip(sizes, labels), codes, predictor_fn)
        got = {k.split(".", 2)[2]: v for k, v in ours.items() if k.startswith(f"downstream_task.{name}.")
               and ":" in k}
        assert got.keys() == expected.keys()
        assert all(got[k] == pytest.approx(expected[k], abs=1e-12) for k in expected), (name, got, expected)
    assert ours["downstream_task.logistic_regression.mean_test_accuracy"] == \
        ours["downstream_task.logistic_regression.50:mean_test_accuracy"]


def test_an_oracle_code_is_learnt_and_sample_efficiency_is_a_ratio(dsprites):
    result = metric("downstream_task", dsprites, oracle,
                    downstream_task={"n_train": "100,1000", "n_eval": 500, "predictors": "boosted_trees"})
    assert result["downstream_task.boosted_trees.1000:mean_test_accuracy"] > 0.9
    assert "downstream_task.logistic_regression.mean_test_accuracy" not in result
    accuracies = {("lr", 100): [(1.0, 0.5), (1.0, 0.7)], ("lr", 10_000): [(1.0, 0.8), (1.0, 0.8)]}
    scores = summary(accuracies, [100, 10_000])
    assert scores["lr.sample_efficiency"] == pytest.approx(0.6 / 0.8) and scores["lr.100:min_test_accuracy"] == 0.5
    assert scores["lr.mean_test_accuracy"] == 0.8


def test_its_sizes_are_checked():
    from betavae_dist.config import ConfigError
    from helpers import eval_config
    with pytest.raises(ConfigError, match="eval.downstream_task.n_train: positive sizes"):
        eval_config(downstream_task={"n_train": "10,ten"})
    assert eval_config(n_train=300).downstream_task.sizes == [300]  # eval.n_train sets every metric's
