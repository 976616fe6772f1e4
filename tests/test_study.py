"""disentanglement_lib's unsupervised study as sweep files (configs/study/) and the report that puts
the methods side by side (`sweep study`)."""

import json

import yaml

from betavae_dist.report import study_report
from betavae_dist.sweep_file import Sweep
from helpers import ROOT

STUDY = ROOT / "configs" / "study"
# config/unsupervised_study_v1/sweep.py: get_default_models()
DLIB_GRIDS = {
    "beta_vae": ("beta", "loss.beta", [1, 2, 4, 6, 8, 16]),
    "annealed_vae": ("annealed", "loss.capacity_max", [5, 10, 25, 50, 75, 100]),
    "factor_vae": ("factor_vae", "loss.gamma", [10, 20, 30, 40, 50, 100]),
    "dip_vae_i": ("dip_i", "loss.lambda_od", [1, 2, 5, 10, 20, 50]),
    "dip_vae_ii": ("dip_ii", "loss.lambda_od", [1, 2, 5, 10, 20, 50]),
    "beta_tc_vae": ("beta_tcvae", "loss.beta", [1, 2, 4, 6, 8, 10]),
}


def test_each_method_has_a_sweep_file_with_disentanglement_libs_grid_and_training():
    assert {p.stem for p in STUDY.glob("*.yaml")} == {"dlib", *DLIB_GRIDS}
    for name, (objective, key, grid) in DLIB_GRIDS.items():
        sweep = Sweep.load(STUDY / f"{name}.yaml")
        assert sweep.grid[key] == grid and "seed" in sweep.grid and sweep.pack == len(grid)
        cfgs = [sweep.config(point) for point in sweep.points]  # every point is a valid config
        cfg = cfgs[0]
        assert {c.loss.objective for c in cfgs} == {objective}
        assert (cfg.model.arch, cfg.model.latents, cfg.model.likelihood) == ("dlib_conv", 10, "bernoulli")
        assert (cfg.optim.name, cfg.optim.lr, cfg.train.batch_size, cfg.train.steps) == ("adam", 1e-4, 64, 300_000)
        assert sorted({getattr(c.loss, key.split(".")[1]) for c in cfgs}) == grid
    assert Sweep.load(STUDY / "annealed_vae.yaml").config(Sweep.load(STUDY / "annealed_vae.yaml").points[0]).loss.gamma == 1000
    assert Sweep.load(STUDY / "dip_vae_i.yaml").config({"seed": 0, "loss.lambda_od": 1}).loss.lambda_d_factor == 10
    assert Sweep.load(STUDY / "dip_vae_ii.yaml").config({"seed": 0, "loss.lambda_od": 1}).loss.lambda_d_factor == 1


def study_sweeps(tmp_path, names: list[str]) -> list[Sweep]:
    """Sweep files of these study methods, 2 seeds x their grid's first 2 settings, in tmp_path."""
    sweeps = []
    for name in names:
        objective, key, grid = DLIB_GRIDS[name]
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"base": str(STUDY / "dlib.yaml"), "out_dir": str(tmp_path / name),
                                        "grid": {"seed": [0, 1], key: grid[:2]}, "train": [f"loss.objective={objective}"]}))
        sweeps.append(Sweep.load(path))
    return sweeps


def test_the_study_report_puts_the_methods_side_by_side(tmp_path):
    sweeps = study_sweeps(tmp_path, ["beta_vae", "factor_vae"])
    for sweep, name in zip(sweeps, ["beta_vae", "factor_vae"]):
        _, key, grid = DLIB_GRIDS[name]
        for point in sweep.points:
            run_dir = sweep.run_dir(point)
            run_dir.mkdir(parents=True)
            score = 0.5 + 0.1 * point[key] / grid[1] + 0.01 * point["seed"]
            (run_dir / "evaluation.json").write_text(json.dumps({"mig.score": score, "dci.disentanglement": score / 2}))
    report = study_report(sweeps, tmp_path / "study")
    text = report.read_text()
    assert (tmp_path / "study" / "study.png").stat().st_size > 1000
    assert "## beta (" in text and "## factor_vae (" in text
    assert "| loss.gamma | n | mig.score | dci.disentanglement |" in text
    assert "| 10 | 2 | 0.555 ± 0.0071 | 0.2775 ± 0.0035 |" in text  # mean ± sd over the two seeds


def test_the_study_table_holds_every_model_and_every_score_failed_and_unfinished_too(tmp_path):
    import csv
    sweeps = study_sweeps(tmp_path, ["beta_vae", "dip_vae_i"])
    for sweep in sweeps:
        for i, point in enumerate(sweep.points):
            run_dir = sweep.run_dir(point)
            (run_dir / "checkpoints").mkdir(parents=True)
            if i < 2:  # evaluated
                (run_dir / "evaluation.json").write_text(json.dumps({"mig.score": 0.1 * i, "dci.disentanglement": 0.3,
                                                                     "mig.seconds": 2.0, "eval": {"seed": 0}}))
            elif i == 2:
                (run_dir / "failed.json").write_text(json.dumps({"problem": "non-finite loss at step 3", "step": 3}))
    study_report(sweeps, tmp_path / "study")
    with open(tmp_path / "study" / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and [r["method"] for r in rows] == ["beta"] * 4 + ["dip_i"] * 4
    assert [r["status"] for r in rows[:4]] == ["evaluated", "evaluated", "failed", "unfinished"]
    assert rows[2]["status_detail"] == "failed (non-finite loss at step 3)" and rows[2]["mig.score"] == ""
    assert rows[1]["mig.score"] == "0.1" and "mig.seconds" not in rows[0]  # scores, not timings
    assert rows[0]["loss.beta"] == "1" and rows[0]["loss.lambda_od"] == "" and rows[4]["loss.lambda_od"] == "1"
    assert {r["data"] for r in rows} == {"dsprites"} and {r["steps"] for r in rows} == {"300000"}
    assert rows[3]["run_dir"] == str(sweeps[0].run_dir(sweeps[0].points[3]))
    assert (tmp_path / "beta_vae" / "table.csv").is_file()  # each sweep's report writes its own


def test_report_axes_are_in_the_settings_own_values():
    from betavae_dist.report import _errorbar, _pyplot
    plt = _pyplot()
    fig, (geometric, linear) = plt.subplots(1, 2)
    _errorbar(geometric, {1: [{"m": 0.1}], 2: [{"m": 0.2}], 4: [{"m": 0.3}, {"m": 0.5}], 16: [{"m": 0.2}]}, "loss.beta", "m")
    _errorbar(linear, {10: [{"m": 0.1}], 20: [{"m": 0.2}], 30: [{"m": 0.3}]}, "loss.gamma", "m")
    assert [t.get_text() for t in geometric.get_xticklabels()] == ["1", "2", "4", "16"]  # not 2⁰, 2¹, ...
    assert geometric.get_xscale() == "log" and linear.get_xscale() == "linear"
    assert [t.get_text() for t in linear.get_xticklabels()] == ["10", "20", "30"]
    assert geometric.get_xlabel() == "loss.beta" and geometric.get_ylabel() == "m"
    plt.close(fig)
