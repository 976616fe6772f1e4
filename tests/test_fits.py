"""The fits phase of an evaluation (metrics/fits.py): the deal, and results whatever the threads."""

import threading

import numpy as np
import pytest
import torch

from betavae_dist.metrics import boosting
from betavae_dist.metrics.fits import Fit, Plan, deal, run_plans
from helpers import dlib_rotated, metric


def test_the_costliest_fits_go_first_to_the_least_loaded_rank():
    # DCI's five dSprites factors by classes: orientation 40 and a position 32 start the two ranks,
    # the other position joins the lighter rank, then scale and shape the other.
    assert deal([40, 3, 32, 6, 32], 2) == [0, 0, 1, 0, 1]
    assert deal([5.0] * 7, 3) == [0, 1, 2, 0, 1, 2, 0]  # equal costs: round-robin, the same on every rank
    assert deal([1.0], 4) == [0]


@pytest.mark.parametrize("threads", [1, 2])
def test_each_fit_runs_once_and_the_results_come_back_in_order(threads):
    calls, lock = [], threading.Lock()

    def fit(i):
        def run(threads):
            with lock:
                calls.append(i)
            return i * i
        return Fit(f"fit {i}", cost=i % 3, run=run)

    plans = [Plan([fit(0), fit(1), fit(2)], lambda results: {"sum": sum(results), "first": results[0]}),
             Plan([], lambda results: {"none": 0}), Plan([fit(3), fit(4)], lambda results: {"list": results})]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        scores, record = run_plans(plans)
    finally:
        torch.set_num_threads(before)
    assert sorted(calls) == [0, 1, 2, 3, 4]
    assert scores == [{"sum": 5, "first": 0}, {"none": 0}, {"list": [9, 16]}]
    assert [name for name, rank, _ in record] == [f"fit {i}" for i in range(5)] and {r for _, r, _ in record} == {0}


def test_the_trees_do_not_depend_on_the_threads():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 1500)
    x = (rng.normal(size=(1500, 6)) + y[:, None] * [0.7, 0, 0, 0.3, 0, 0]).astype(np.float32)
    one = boosting.fit(x[:1000], y[:1000], x[1000:], y[1000:], threads=1, stages=20)
    two = boosting.fit(x[:1000], y[:1000], x[1000:], y[1000:], threads=2, stages=20)
    np.testing.assert_array_equal(one[0], two[0])
    assert one[1:] == two[1:]


def test_a_metric_scores_the_same_on_one_thread_and_on_a_pool(dsprites):
    before = torch.get_num_threads()
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            results.append(metric("dci", dsprites, dlib_rotated, n_train=400, n_eval=200))
        finally:
            torch.set_num_threads(before)
    assert results[0] == results[1]


def test_a_packs_fits_dealt_together_give_each_model_its_solo_scores(dsprites):
    from betavae_dist.metrics import score
    from betavae_dist.metrics.codes import CodeTable
    from helpers import dlib_oracle, eval_config
    from rich.progress import Progress

    def two_models(factors):  # model 0: the rotated oracle; model 1: the oracle with a fixed noise
        noise = 0.05 * np.sin(factors @ np.random.RandomState(1).randn(6, 5) * 37)
        return np.hstack([dlib_rotated(factors), dlib_oracle(factors) + noise])

    cfg = eval_config(metrics="beta_vae,dci,sap", n_train=300, n_eval=150, pairs=8)
    codes = CodeTable(two_models, dsprites.factor_sizes)
    columns = [slice(0, 5), slice(5, 10)]
    packed = score(codes, dsprites, [cfg, cfg], Progress(disable=True), columns=columns)
    for model, cols in enumerate(columns):
        solo, = score(codes, dsprites, [cfg], Progress(disable=True), columns=[cols])
        scores = lambda result: {k: v for k, v in result.items() if k != "fits" and not k.endswith(".seconds")}
        assert scores(packed[model]) == scores(solo)
        assert [name for name, _, _ in packed[model]["fits"]] == [name for name, _, _ in solo["fits"]]
