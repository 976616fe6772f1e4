import math
from pathlib import Path

import pytest
import torch

from betavae_dist.model_config import LIKELIHOODS
from betavae_dist.models import ModelConfig
from betavae_dist.objectives import OBJECTIVES
from betavae_dist.objectives.annealed import Annealed
from betavae_dist.objectives.base import kl_to_standard_normal
from betavae_dist.objectives.beta import Beta


def reconstruction_nll(output, x, likelihood, std):
    return LIKELIHOODS[likelihood].nll(output, x, std).flatten(1).sum(1)


def loss(objective, logits, x, mean, logvar, step=0):
    return objective(logits, x, mean, logvar, mean, objective.schedule(step))


def test_bernoulli_nll_by_hand():
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    logits = torch.tensor([[0.0, 0.0, 2.0, -1.0]])
    # -log sigmoid(0) - log(1 - sigmoid(0)) - log sigmoid(2) - log(1 - sigmoid(-1))
    expected = 2 * math.log(2) + math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))
    assert reconstruction_nll(logits, x, "bernoulli", 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_gaussian_nll_by_hand():
    x = torch.tensor([[0.5, 0.25]])
    mean = torch.tensor([[0.0, 0.75]])
    # (0.25 + 0.25) / (2 * 0.5^2)
    assert reconstruction_nll(mean, x, "gaussian", 0.5).item() == pytest.approx(1.0)


def test_kl_by_hand():
    mean = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    logvar = torch.tensor([[0.0, 0.0], [0.0, math.log(2.0)]])
    # 0.5*(mu^2 + var - 1 - logvar) per latent, summed
    expected = [0.5, 0.5 * 4 + 0.5 * (2 - 1 - math.log(2))]
    torch.testing.assert_close(kl_to_standard_normal(mean, logvar), torch.tensor(expected))


def test_objective_beta_sums_over_pixels_and_latents_and_averages_over_batch():
    x = torch.zeros(4, 1, 2, 2)
    logits = torch.zeros(4, 1, 2, 2)
    mean, logvar = torch.ones(4, 3), torch.zeros(4, 3)
    parts = loss(Beta(Beta.Settings(beta=4.0), ModelConfig()), logits, x, mean, logvar)
    assert parts["recon"].item() == pytest.approx(4 * math.log(2))
    assert parts["kl"].item() == pytest.approx(1.5)
    assert parts["loss"].item() == pytest.approx(4 * math.log(2) + 4 * 1.5)
    vae = loss(Beta(Beta.Settings(beta=1.0), ModelConfig()), logits, x, mean, logvar)
    assert vae["loss"].item() == pytest.approx(4 * math.log(2) + 1.5)


def test_capacity_rises_linearly_then_holds():
    cfg = Annealed.Settings(objective="annealed", capacity_max=20.0, capacity_steps=100)
    annealed = Annealed(cfg, ModelConfig())
    assert [annealed.schedule(s)["capacity"] for s in (0, 50, 100, 1000)] == [0.0, 10.0, 20.0, 20.0]


def test_annealed_equals_disentanglement_libs_annealed_vae():
    """methods/unsupervised/vae.py: anneal() and AnnealedVAE.regularizer, transcribed; its study's
    settings (gamma 1000, iteration_threshold 100,000) are our defaults, c_max is loss.capacity_max."""
    def dlib_regularizer(kl_loss, step, gamma=1000.0, c_max=25.0, iteration_threshold=100_000):
        c = min(c_max * 1.0, c_max * 1.0 * float(step) / iteration_threshold)
        return gamma * abs(kl_loss - c)

    annealed = Annealed(Annealed.Settings(objective="annealed"), ModelConfig())
    mean = torch.zeros(4, 3)
    for step, kl in [(0, 3.0), (40_000, 7.5), (100_000, 20.0), (250_000, 31.0)]:
        penalty, _ = annealed.regulariser(mean, mean, mean, torch.tensor(kl), annealed.schedule(step))
        assert penalty.item() == pytest.approx(dlib_regularizer(kl, step), rel=1e-6)


def test_objective_annealed_penalises_distance_to_capacity():
    x, logits = torch.zeros(2, 1, 1, 1), torch.zeros(2, 1, 1, 1)
    mean, logvar = torch.full((2, 1), 2.0), torch.zeros(2, 1)  # KL = 2 nats
    cfg = Annealed.Settings(objective="annealed", gamma=10.0, capacity_max=4.0, capacity_steps=10)
    at = lambda step: loss(Annealed(cfg, ModelConfig()), logits, x, mean, logvar, step)["loss"].item()
    assert at(0) == pytest.approx(math.log(2) + 10 * 2)  # C = 0
    assert at(5) == pytest.approx(math.log(2))  # C = 2 = KL
    assert at(10) == pytest.approx(math.log(2) + 10 * 2)  # C = 4


def test_loss_is_fp32_under_bf16_autocast():
    x = torch.randint(0, 2, (3, 1, 8, 8)).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.nn.Linear(8, 8)(torch.randn(3, 1, 8, 8))
        assert logits.dtype == torch.bfloat16
        mean, logvar = torch.randn(3, 4).bfloat16(), torch.randn(3, 4).bfloat16()
        parts = loss(OBJECTIVES["beta"](Beta.Settings(), ModelConfig()), logits, x, mean, logvar)
    assert all(v.dtype == torch.float32 for v in parts.values())


@pytest.mark.parametrize("objective, setting, values", [("dip_i", "lambda_od", ("2", "20")), ("dip_ii", "lambda_od", ("2", "20")),
                                                        ("beta_tcvae", "beta", ("1", "8")),
                                                        ("annealed", "capacity_max", ("5", "50")),
                                                        ("factor_vae", "gamma", ("10", "40"))])
def test_a_pack_of_two_settings_equals_its_solo_runs(tmp_path, objective, setting, values):
    from betavae_dist.experiment import from_sources
    from betavae_dist.pack.evaluate import evaluate_pack
    from betavae_dist.pack.train import train_pack
    from betavae_dist.solo import train as train_solo
    from helpers import TINY, weights
    from test_pack import assert_close_weights

    def cfg(where, value, *more):
        return from_sources("configs/dsprites_beta4.yaml", [*TINY, "train.steps=20", f"loss.objective={objective}",
                                                            f"loss.{setting}={value}", f"run_dir={tmp_path / where / value}",
                                                            *more])

    assert train_pack([cfg("pack", value) for value in values]) == []
    evaluation = [cfg("pack", value, "eval.metrics=mig", "eval.n_samples=200") for value in values]
    scores = evaluate_pack(evaluation, [Path(c.run_dir) / "export" for c in evaluation])  # as `sweep run` does
    assert all(0 <= s["mig.score"] <= 1 for s in scores)
    for value in values:
        train_solo(cfg("solo", value))
        assert_close_weights(weights(tmp_path / "pack" / value / "export"), weights(tmp_path / "solo" / value / "export"),
                             steps=20)


def test_what_settings_py_declares_of_each_objective_is_the_objectives_own():
    """The config reads an objective's Settings (and whether it trains a critic) before the
    objective is imported: settings.py's declarations must be the objective's own."""
    import subprocess
    import sys
    code = ("from betavae_dist.objectives.settings import OBJECTIVES as O; "
            "declared = {name: O.about(name).Settings for name in O}; "
            "print(len(declared), all(O[n].Settings is s and s.trains_critic == (O[n].critic is not None) "
            "for n, s in declared.items()))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == \
        ["6", "True"]
