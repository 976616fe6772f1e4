"""FactorVAE against disentanglement_lib's `FactorVAE.model_fn` (methods/unsupervised/vae.py:
`shuffle_codes`, its tc_loss and discr_loss; methods/shared/architectures.py: `fc_discriminator`,
`make_discriminator`), transcribed in NumPy below; its discriminator learns to tell correlated codes
from shuffled ones; a run keeps the discriminator in its checkpoints and out of its export (packs:
test_objectives.py; resume: test_train.py)."""

import json

import numpy as np
import pytest
import torch

from betavae_dist.export.layout import to_export
from betavae_dist.models import BetaVAE, ModelConfig
from betavae_dist.objectives import OBJECTIVES
from betavae_dist.optim import parameter_groups
from helpers import max_abs_diff, train_here, weights


def dlib_fc_discriminator(x, layers):
    """Six dense layers of 1,000 with tf.nn.leaky_relu (alpha 0.2), then 2 logits; softmax probs."""
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = np.where(x > 0, x, 0.2 * x)
    probs = np.exp(x - x.max(1, keepdims=True))
    return x, probs / probs.sum(1, keepdims=True)


def dlib_losses(z, z_shuffle, layers, kl_loss, gamma):
    logits_z, probs_z = dlib_fc_discriminator(z, layers)
    _, probs_z_shuffle = dlib_fc_discriminator(z_shuffle, layers)
    probs_z, probs_z_shuffle = np.clip(probs_z, 1e-6, 1 - 1e-6), np.clip(probs_z_shuffle, 1e-6, 1 - 1e-6)  # make_discriminator
    tc_loss = np.mean(logits_z[:, 0] - logits_z[:, 1], axis=0)
    regularizer = kl_loss + gamma * tc_loss
    discr_loss = 0.5 * np.mean(np.log(probs_z[:, 0])) + 0.5 * np.mean(np.log(probs_z_shuffle[:, 1]))
    return regularizer, tc_loss, -discr_loss  # the discriminator minimises -discr_loss


def factor_vae(latents, gamma=20.0):
    torch.manual_seed(0)
    objective = OBJECTIVES["factor_vae"](OBJECTIVES["factor_vae"].Settings(objective="factor_vae", gamma=gamma),
                                         ModelConfig(latents=latents))
    critic = OBJECTIVES["factor_vae"].critic(latents).double()
    objective.bind(critic)
    return objective, critic


def test_the_losses_equal_disentanglement_libs_on_fixed_inputs():
    rng = np.random.default_rng(0)
    mean, logvar = rng.normal(0, 1.5, (32, 6)), rng.normal(-1, 0.5, (32, 6))
    z, keys = mean + np.exp(logvar / 2) * rng.normal(size=mean.shape), rng.normal(size=mean.shape)
    objective, critic = factor_vae(6)
    penalty, extra = objective.regulariser(*(torch.from_numpy(a) for a in (mean, logvar, z)),
                                           torch.tensor(3.25, dtype=torch.float64), {"noise": torch.from_numpy(keys)})
    permutation = np.argsort(keys, axis=0, kind="stable")  # each column its own shuffle
    z_shuffle = np.take_along_axis(z, permutation, 0)
    assert sorted(z_shuffle[:, 2]) == sorted(z[:, 2]) and not np.array_equal(z_shuffle, z)
    layers = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in critic if isinstance(m, torch.nn.Linear)]
    assert len(layers) == 7 and layers[0][0].shape == (1000, 6) and layers[-1][0].shape == (2, 1000)
    regularizer, tc, discriminator = dlib_losses(z, z_shuffle, layers, 3.25, 20.0)
    assert penalty.item() == pytest.approx(regularizer, rel=1e-9)
    assert extra["tc"].item() == pytest.approx(tc, rel=1e-9, abs=1e-12)
    assert extra["discriminator"].item() == pytest.approx(discriminator, rel=1e-9)


def test_the_vae_does_not_train_the_discriminator_nor_the_discriminator_the_codes():
    objective, critic = factor_vae(4)
    z = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    penalty, extra = objective.regulariser(z, torch.zeros_like(z), z, torch.tensor(0.0, dtype=torch.float64),
                                           {"noise": torch.randn(16, 4, dtype=torch.float64)})
    assert all(g is None for g in torch.autograd.grad(penalty, list(critic.parameters()), allow_unused=True))
    assert torch.autograd.grad(extra["discriminator"], z, allow_unused=True)[0] is None


def test_its_discriminator_learns_to_tell_correlated_codes_from_shuffled_ones():
    """Codes whose six latents share one factor: with its own Adam group (lr 1e-4, betas 0.5/0.9),
    the discriminator's loss falls from log 2 and its TC estimate rises (it sees the dependence)."""
    torch.manual_seed(0)  # its own draws, whatever the tests before it left in torch's generator
    objective, critic = factor_vae(6)
    no_vae, group = parameter_groups([(f"critic.{n}", p) for n, p in critic.named_parameters()], objective.critic_group())
    assert no_vae == {"params": []}
    optimizer = torch.optim.Adam([group])
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.9) and optimizer.param_groups[0]["lr"] == 1e-4
    losses, tcs = [], []
    for _ in range(150):
        z = (torch.randn(64, 1) * 2 + 0.1 * torch.randn(64, 6)).double()
        _, extra = objective.regulariser(z, torch.zeros_like(z), z, torch.tensor(0.0, dtype=torch.float64),
                                         {"noise": torch.randn(64, 6, dtype=torch.float64)})
        optimizer.zero_grad()
        objective.minimised({"loss": torch.tensor(0.0), **extra}).backward()
        optimizer.step()
        losses.append(extra["discriminator"].item())
        tcs.append(extra["tc"].item())
    assert losses[0] == pytest.approx(np.log(2), abs=0.05) and np.mean(losses[-10:]) < 0.4, (losses[0], losses[-10:])
    assert np.mean(tcs[-10:]) > 1.0, tcs[-10:]


def test_a_run_checkpoints_the_discriminator_and_exports_the_vae_alone(tmp_path):
    run = tmp_path / "run"
    train_here(run, "loss.objective=factor_vae", "loss.gamma=20", "train.steps=20", "train.log_every=10")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"tc", "discriminator"} <= lines[0].keys()
    assert all(line["loss"] - line["recon"] == pytest.approx(line["kl"] + 20 * line["tc"], rel=1e-4, abs=1e-3)
               for line in lines)
    from safetensors.torch import load_file
    saved = load_file(run / "checkpoints" / "step_20" / "model.safetensors")
    assert {"critic.0.weight", "critic.12.bias"} <= saved.keys()
    assert not any(name.startswith("critic.") for name in weights(run / "export"))
    vae = to_export({k: v for k, v in saved.items() if not k.startswith("critic.")}, BetaVAE())  # format 2's names
    assert max_abs_diff(weights(run / "export"), vae) == 0
