"""The study's analysis on a synthetic table whose correlations and variance shares are known."""

import math

import pytest

from betavae_dist.analysis import analyse, rank_correlations, score_columns, seed_share, selection


def synthetic_table() -> list[dict]:
    """Two methods x 3 settings x 3 seeds: `by_setting` is the setting alone, `by_seed` the seed
    alone, `opposite` is -by_setting, and the Gaussian TC is lowest where by_setting is highest."""
    rows = []
    for method, key in (("beta", "loss.beta"), ("dip_i", "loss.lambda_od")):
        for setting in (1, 2, 4):
            for seed in (0, 1, 2):
                rows.append({"method": method, key: setting, "seed": seed, "data": "dsprites", "steps": 300,
                             "run_dir": f"runs/{method}_{setting}_{seed}", "status": "evaluated",
                             "x.by_setting": setting, "x.by_seed": seed, "x.opposite": -setting,
                             "unsupervised.gaussian_total_correlation": 10 - setting})
    rows.append({"method": "beta", "loss.beta": 8, "seed": 0, "data": "dsprites", "steps": 300, "run_dir": "runs/x",
                 "status": "failed", "x.by_setting": ""})  # no scores: left out of every figure
    return rows


def test_known_correlations_and_variance_shares():
    rows = synthetic_table()
    columns = score_columns(rows)
    assert columns == ["x.by_setting", "x.by_seed", "x.opposite", "unsupervised.gaussian_total_correlation"]
    rho = rank_correlations(rows, columns)
    assert rho[0, 0] == pytest.approx(1) and rho[0, 2] == pytest.approx(-1) and rho[0, 3] == pytest.approx(-1)
    assert abs(rho[0, 1]) < 1e-12  # the seed and the setting vary independently
    assert seed_share(rows, "x.by_setting") == {"beta": pytest.approx(0), "dip_i": pytest.approx(0)}
    assert seed_share(rows, "x.by_seed") == {"beta": pytest.approx(1), "dip_i": pytest.approx(1)}
    mixed = [dict(r, **{"x.mixed": number + 3 * r["x.by_setting"]}) for r, number in
             zip(rows[:9], [0, 1, 2] * 3)]  # within-setting variance 2/3, total 2/3 + 9 * 14/9 = 14.67
    assert seed_share(mixed, "x.mixed")["beta"] == pytest.approx((2 / 3) / (2 / 3 + 9 * (14 / 9)))
    picked = selection(rows, "unsupervised.gaussian_total_correlation", "x.by_setting")
    assert picked == {"beta": (4.0, 4.0), "dip_i": (4.0, 4.0)}  # the lowest TC picks the best model


def test_analyse_writes_every_figure_and_its_tables(tmp_path):
    md = analyse(synthetic_table(), tmp_path, factors=5).read_text()
    for figure in ("scores.png", "rank_correlation.png", "seed_share.png", "selection.png"):
        assert (tmp_path / figure).stat().st_size > 5000, figure
    assert "dsprites, 300 steps, n = 19 models" in md
    assert "| x.by_seed | 1.00 | 1.00 |" in md and "| x.by_setting | 0.00 | 0.00 |" in md
    assert "| x.by_setting | 4 of 4 | 4 of 4 |" in md
    assert not math.isnan(rank_correlations(synthetic_table(), ["x.by_setting"])[0, 0])
