"""The sampled representation (eval.representation=sampled): a draw of q(z|x) per image, fixed by
eval.seed and the image alone, so that its scores are the same on any number of ranks."""

import json

import numpy as np
import pytest
import torch

from betavae_dist.data.dataset import grid_index
from betavae_dist.metrics.codes import image_noise
from helpers import accelerate_cmd, eval_config, run

ARGS = ["eval.metrics=mig,unsupervised", "eval.n_samples=400", "eval.n_train=400"]


def test_the_noise_is_a_standard_normal_fixed_by_the_seed_and_the_image():
    flat = np.arange(20_000)
    eps = image_noise(flat, 10, seed=0)
    assert eps.shape == (20_000, 10) and eps.dtype == np.float32
    assert abs(eps.mean()) < 0.02 and abs(eps.std() - 1) < 0.02 and abs(np.corrcoef(eps[:, 0], eps[:, 1])[0, 1]) < 0.03
    assert (image_noise(flat[[5, 3]], 10, seed=0) == eps[[5, 3]]).all()  # per image, whatever else is drawn with it
    assert not np.allclose(image_noise(flat[:5], 10, seed=1), eps[:5])


def test_sampled_codes_are_the_mean_plus_the_posterior_spread(small_run):
    from betavae_dist.data.dsprites import DSprites
    from betavae_dist.metrics import evaluate_model
    from betavae_dist.metrics.codes import model_representation
    from betavae_dist.models import BetaVAE
    model, dataset = BetaVAE.from_pretrained(small_run / "export"), DSprites()
    factors = dataset.sample_factors(16, np.random.default_rng(0))
    mean = model_representation(model, dataset, "cpu")(factors)
    sampled = model_representation(model, dataset, "cpu", "sampled", seed=3)(factors)
    _, logvar = model.encode(torch.from_numpy(dataset.images(factors)))
    eps = (sampled - mean) / np.exp(0.5 * logvar.detach().numpy())
    assert np.allclose(eps, image_noise(grid_index(factors, dataset.factor_sizes), 10, 3), atol=1e-4)
    cfg = eval_config(metrics="mig", representation="mean,sampled", n_samples=400)
    results = evaluate_model(model, dataset, cfg, None)
    assert {"mig.score", "sampled.mig.score", "sampled.encode.seconds"} <= results.keys()


def test_an_encoder_without_a_log_variance_cannot_be_sampled():
    from betavae_dist.config import ConfigError
    from betavae_dist.encoders import score_encoder
    with pytest.raises(ConfigError, match="eval.representation=sampled: this encoder gives no log-variance"):
        score_encoder(torch.nn.Flatten(), "dsprites", {"eval.representation": "sampled", "eval.metrics": "mig"})


@pytest.mark.distributed
def test_one_and_two_ranks_score_the_sampled_codes_alike(small_run, tmp_path):
    scores = []
    for ranks in (1, 2):
        out = tmp_path / f"{ranks}.json"
        run(accelerate_cmd(ranks, "-m", "betavae_dist.evaluate", "--model", str(small_run / "export"), "--out", str(out),
                           "eval.representation=mean,sampled", *ARGS))
        result = json.loads(out.read_text())
        scores.append({k: v for k, v in result.items() if "." in k and "seconds" not in k and k != "fits"})
    assert scores[0] == scores[1] and "sampled.unsupervised.gaussian_total_correlation" in scores[0]
    assert scores[0]["sampled.mig.score"] != scores[0]["mig.score"]


def test_a_pack_samples_each_point_as_its_solo_evaluation_does(small_run, tmp_path):
    import shutil

    from betavae_dist.data import build_dataset
    from betavae_dist.experiment import from_sources
    from betavae_dist.metrics import evaluate_model
    from betavae_dist.models import BetaVAE
    from betavae_dist.pack.evaluate import evaluate_pack
    exports = [shutil.copytree(small_run / "export", tmp_path / name / "export") for name in ("a", "b")]
    cfgs = [from_sources(None, [f"run_dir={e.parent}", "eval.representation=mean,sampled", *ARGS]) for e in exports]
    packed = evaluate_pack(cfgs, exports, torch.device("cpu"))
    solo = evaluate_model(BetaVAE.from_pretrained(exports[0]), build_dataset(cfgs[0].data), cfgs[0].eval, None)
    for key in ("sampled.mig.score", "sampled.unsupervised.gaussian_total_correlation", "mig.score"):
        assert packed[0][key] == pytest.approx(solo[key], abs=1e-6) and packed[1][key] == packed[0][key], key
