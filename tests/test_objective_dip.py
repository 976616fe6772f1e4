"""DIP-VAE-I and -II against disentanglement_lib's `DIPVAE.regularizer` (methods/unsupervised/vae.py),
transcribed in NumPy below; a short run lowers the penalty (packs: test_objectives.py)."""

import json

import numpy as np
import pytest
import torch

from betavae_dist.models import ModelConfig
from betavae_dist.objectives import OBJECTIVES
from helpers import train_here


def dlib_dip_regularizer(kl_loss, z_mean, z_logvar, lambda_od, lambda_d_factor, dip_type):
    """vae.py: compute_covariance_z_mean, regularize_diag_off_diag_dip, DIPVAE.regularizer."""
    expectation_z_mean_z_mean_t = np.mean(np.expand_dims(z_mean, 2) * np.expand_dims(z_mean, 1), axis=0)
    expectation_z_mean = np.mean(z_mean, axis=0)
    cov_z_mean = expectation_z_mean_z_mean_t - np.expand_dims(expectation_z_mean, 1) * np.expand_dims(expectation_z_mean, 0)
    lambda_d = lambda_d_factor * lambda_od
    cov = cov_z_mean if dip_type == "i" else np.mean(np.stack([np.diag(v) for v in np.exp(z_logvar)]), axis=0) + cov_z_mean
    diagonal = np.diag(cov)
    off_diagonal = cov - np.diag(diagonal)
    return kl_loss + lambda_od * np.sum(off_diagonal**2) + lambda_d * np.sum((diagonal - 1) ** 2)


@pytest.mark.parametrize("name, dip_type, lambda_d_factor", [("dip_i", "i", 10.0), ("dip_ii", "ii", 1.0)])
def test_the_penalty_equals_disentanglement_libs_on_fixed_inputs(name, dip_type, lambda_d_factor):
    rng = np.random.default_rng(0)
    mean, logvar = rng.normal(0, 1.5, (32, 6)), rng.normal(-1, 0.5, (32, 6))
    z = mean + np.exp(logvar / 2) * rng.normal(size=mean.shape)
    objective = OBJECTIVES[name](OBJECTIVES[name].Settings(objective=name, lambda_od=5.0, lambda_d_factor=lambda_d_factor),
                                 ModelConfig())
    kl = torch.tensor(3.25, dtype=torch.float64)
    penalty, extra = objective.regulariser(*(torch.from_numpy(a) for a in (mean, logvar, z)), kl, {})
    expected = dlib_dip_regularizer(3.25, mean, logvar, 5.0, lambda_d_factor, dip_type)
    assert penalty.item() == pytest.approx(expected, rel=1e-12)
    assert extra["dip"].item() == pytest.approx(expected - 3.25, rel=1e-12)


def test_an_uncorrelated_unit_covariance_costs_nothing():
    mean = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # covariance: the identity
    objective = OBJECTIVES["dip_i"](OBJECTIVES["dip_i"].Settings(objective="dip_i"), ModelConfig())
    assert objective.regulariser(mean, torch.zeros_like(mean), mean, torch.tensor(0.0), {})[1]["dip"].item() == 0


def test_a_short_run_lowers_the_penalty_and_logs_it(tmp_path):
    train_here(tmp_path / "run", "loss.objective=dip_i", "loss.lambda_od=10", "train.steps=60", "train.log_every=10",
               "train.batch_size=64")
    dip = [json.loads(line)["dip"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(dip) == 6 and dip[-1] < dip[0] / 2, dip  # measured: 1000 -> 284 (means that barely vary: C_ii ~ 0)
