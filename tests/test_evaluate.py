"""The distributed evaluator through real processes: 1, 2 and 3 gloo ranks agree exactly."""

import json
import math

import pytest
import torch

from betavae_dist.evaluate import main as evaluate_main
from helpers import ROOT, accelerate_cmd, in_process, run, train

TINY_EVAL = ["eval.metrics=beta_vae,factor_vae,mig,dci,sap", "eval.n_train=300", "eval.n_eval=200",
             "eval.pairs=16", "eval.n_samples=400", "eval.batch_size=64"]
QUICK_EVAL = ["eval.metrics=beta_vae,mig", "eval.n_train=100", "eval.n_eval=50", "eval.pairs=4"]  # in-process checks


def evaluate(model, out, nproc=1, extra=(), check=True):
    return run(accelerate_cmd(nproc, "-m", "betavae_dist.evaluate", "--model", str(model), "--out", str(out),
                              *TINY_EVAL, *extra), check=check)


def evaluate_here(model, out, extra=()):
    """`evaluate` in this process: the evaluator's `main`, with its exit code and output."""
    return in_process(evaluate_main, ["--model", str(model), "--out", str(out), *TINY_EVAL, *extra])


def scores(path):
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in ("ranks", "model", "fits") and "seconds" not in k}


@pytest.mark.distributed
def test_one_two_three_ranks_give_identical_points_and_scores_and_share_the_fits(small_run, tmp_path):
    results, fits = [], []
    for n in (1, 2, 3):
        evaluate(small_run / "export", tmp_path / f"{n}.json", nproc=n)
        result = json.loads((tmp_path / f"{n}.json").read_text())
        assert result["ranks"] == n
        results.append(scores(tmp_path / f"{n}.json"))
        fits.append(result["fits"])
    assert results[0] == results[1] == results[2]
    headline = {"beta_vae.eval_accuracy", "factor_vae.eval_accuracy", "mig.score", "dci.disentanglement", "sap.score"}
    assert headline <= results[0].keys()
    # Each fit (the β-VAE metric's classifier, DCI's trees and SAP's SVMs of each of 5 factors) ran
    # once, on the rank recorded; every rank had a share.
    names = [name for name, _, _ in fits[0]]
    assert len(set(names)) == len(names) == 11 and "dci/orientation" in names
    for n, record in zip((1, 2, 3), fits):
        assert [name for name, _, _ in record] == names
        assert {rank for _, rank, _ in record} == set(range(n))


def test_export_run_dir_and_checkpoint_evaluate_the_same_weights(small_run, tmp_path):
    proc = evaluate_here(small_run / "export", tmp_path / "export.json", QUICK_EVAL)  # the weights are in question
    assert "beta_vae.eval_accuracy" in proc.stdout  # the rich table
    evaluate_here(small_run, tmp_path / "run.json", QUICK_EVAL)
    evaluate_here(small_run / "checkpoints" / "step_4", tmp_path / "ckpt.json", QUICK_EVAL)
    assert scores(tmp_path / "export.json") == scores(tmp_path / "run.json") == scores(tmp_path / "ckpt.json")


def test_bad_inputs_are_named(tmp_path):
    proc = evaluate_here(tmp_path / "nothing", tmp_path / "x.json")
    assert proc.returncode == 1 and f"not an export, run or checkpoint directory: {tmp_path / 'nothing'}" in proc.stderr


def test_bad_metric_name_exits_2(small_run, tmp_path):
    proc = evaluate_here(small_run / "export", tmp_path / "x.json", extra=["eval.metrics=beta_vae,betta"])
    assert proc.returncode == 2 and "eval.metrics: unknown metric 'betta'" in proc.stderr


@pytest.mark.distributed
def test_periodic_evaluation_is_logged_with_training_metrics(tmp_run):
    proc = train(tmp_run, "train.steps=4", "eval.every=2", *TINY_EVAL, "train.progress=true", nproc=2)
    lines = [json.loads(line) for line in (tmp_run / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in lines if "eval/beta_vae.eval_accuracy" in line]
    assert [line["step"] for line in evals] == [2, 4]
    assert 0 <= evals[-1]["eval/mig.score"] <= 1
    printed = [line for line in (proc.stdout + proc.stderr).splitlines() if "eval/beta_vae.eval_accuracy" in line]
    assert [line.split(":")[0] for line in printed] == ["step 2", "step 4"]  # rank 0 alone prints them


def test_a_model_for_other_images_is_refused_in_one_line(tmp_path):
    from betavae_dist.experiment import from_sources
    from betavae_dist.models import write_export
    from betavae_dist.models import BetaVAE
    cfg = from_sources(str(ROOT / "configs" / "celeba_beta.yaml"), ["data.shards=unused"])  # 3 channels, trained from shards
    write_export(BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels).state_dict(), cfg, tmp_path / "celeba")
    proc = evaluate_here(tmp_path / "celeba", tmp_path / "x.json")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "betavae_dist.evaluate: config error: the model takes 3x64x64 images but data.name=dsprites has 1x64x64: "
        "the metrics need a factor dataset of the model's images (data.name=...)")


def test_progress_shows_the_encoding_each_metric_and_the_fits(small_run, tmp_path):
    proc = evaluate_here(small_run / "export", tmp_path / "p.json", QUICK_EVAL)
    lines = proc.stdout.splitlines()  # not a terminal: plain lines (progress.py)
    encoded = [line.split()[2].split("/") for line in lines if line.startswith("images encoded ")]
    assert encoded and all(done == requested for done, requested in encoded), proc.stdout  # with their totals
    assert any(line.startswith("metric beta_vae: points 1/1  done in ") for line in lines)
    assert any(line.startswith("metric mig: points 1/1  done in ") for line in lines)
    assert any(line.startswith("fits (1 of 1 on this rank) 1/1  done in ") for line in lines)  # β-VAE's classifier


def test_baselines_need_no_training_and_pca_is_well_above_chance(tmp_path):
    evaluate_here("pca:10", tmp_path / "pca.json", extra=["eval.metrics=beta_vae", "eval.n_train=600", "eval.n_eval=300"])
    result = json.loads((tmp_path / "pca.json").read_text())
    # chance: 0.2 (measured 0.62 at 1,000 / 500 points)
    assert result["model"] == "pca:10" and result["beta_vae.eval_accuracy"] > 0.4, result
    proc = evaluate_here("pixels:3", tmp_path / "x.json")
    assert proc.returncode == 2 and "--model pixels:3: raw pixels take no number of components" in proc.stderr


def test_a_constant_code_scores_every_metric_and_a_metric_that_fails_is_nan_alone(tmp_path, monkeypatch):
    """disentanglement_lib gives NaN where a code never varies (unsupervised's 0/0); a metric that
    cannot be computed at all (a classifier refusing its data) is NaN with its reason, the rest kept."""
    from betavae_dist.experiment import from_sources
    from betavae_dist.models import write_export
    from betavae_dist.metrics import METRICS, headline_keys
    from betavae_dist.metrics.sap import SVMS
    from betavae_dist.models import BetaVAE
    cfg = from_sources(str(ROOT / "configs" / "dsprites_beta4.yaml"), [])
    weights = BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels).state_dict()
    write_export({k: torch.zeros_like(v) for k, v in weights.items()}, cfg, tmp_path / "constant")  # codes all 0
    every = [f"eval.metrics={','.join(METRICS)}", "eval.n_train=300", "eval.n_eval=200", "eval.pairs=8",
             "eval.n_samples=400"]
    proc = evaluate_here(tmp_path / "constant", tmp_path / "c.json", every)
    result = json.loads((tmp_path / "c.json").read_text())
    assert proc.returncode == 0 and set(headline_keys()) <= set(result), proc.stderr[-2000:]
    assert math.isnan(result["unsupervised.gaussian_wasserstein_correlation_norm"]) and result["mig.score"] == 0
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: metric")]
    assert warnings == ["warning: metric unsupervised gives gaussian_total_correlation nan, "
                        "gaussian_wasserstein_correlation_norm nan on these codes (degenerate codes: one that never "
                        "varies, say)"], proc.stderr[-2000:]

    def refuses(*args):
        raise ValueError("This solver needs samples of at least 2 classes in the data, but the data contains only one")
    monkeypatch.setitem(SVMS, "fast", refuses)
    proc = evaluate_here(tmp_path / "constant", tmp_path / "s.json", every)
    failed = json.loads((tmp_path / "s.json").read_text())
    assert proc.returncode == 0 and math.isnan(failed["sap.score"]) and failed["sap.error"].startswith(
        "ValueError: This solver needs samples of at least 2 classes")
    assert [line for line in proc.stderr.splitlines() if line.startswith("warning: metric sap")] == [
        f"warning: metric sap cannot be computed on these codes ({failed['sap.error']}); its scores are NaN, the other "
        "metrics are kept"]
    assert failed["dci.disentanglement"] == result["dci.disentanglement"] and failed["mig.score"] == 0
