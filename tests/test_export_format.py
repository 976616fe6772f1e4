"""The export as anyone can use it (format 2): named layers, a config.json that rebuilds the encoder
with plain torch, `model(images)`, `model.config`, files readable as the umask says; and format 1
exports (tests/data/export_v1, written by the previous version) still load."""

import json
import os
import stat

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from betavae_dist.data.dsprites import DSprites
from betavae_dist.experiment import Config
from betavae_dist.models import BetaVAE, write_export
from helpers import ROOT

V1 = ROOT / "tests" / "data" / "export_v1"


def images(n=32):
    dataset = DSprites()
    return torch.from_numpy(dataset.images(dataset.sample_factors(n, np.random.default_rng(0))))


@pytest.fixture(params=["conv64", "fc", "conv64_deep", "dlib_conv"])
def export(request, tmp_path):
    cfg = Config()
    cfg.model.arch, cfg.model.latents = request.param, 6
    torch.manual_seed(0)
    write_export(BetaVAE(request.param, 6).state_dict(), cfg, tmp_path / "export")
    return tmp_path / "export"


def plain_encoder(export) -> nn.Sequential:
    """The encoder rebuilt from config.json's layout with torch.nn alone, its weights read with safetensors."""
    layout = json.loads((export / "config.json").read_text())["layout"]
    tensors = load_file(str(export / "model.safetensors"))
    layers = []
    for entry in layout["encoder"]["layers"]:
        layer = getattr(nn, entry["type"])(**entry["args"])
        if "tensors" in entry:
            layer.weight.data, layer.bias.data = tensors[f"{entry['tensors']}.weight"], tensors[f"{entry['tensors']}.bias"]
        layers.append(layer)
    return nn.Sequential(*layers).eval()


def test_plain_torch_and_safetensors_read_an_export_as_from_pretrained_does(export):
    x = images()
    mean, logvar = BetaVAE.from_pretrained(export).encode(x)
    config = json.loads((export / "config.json").read_text())
    latents = config["model"]["latents"]
    with torch.no_grad():
        out = plain_encoder(export)(x)
    assert torch.equal(out[:, :latents], mean) and torch.equal(out[:, latents:], logvar)
    assert config["format"] == "betavae-dist/2" and "log-variance" in config["layout"]["encoder"]["output"]
    assert config["layout"]["input"]["range"] == [0.0, 1.0] and "logits" in config["layout"]["decoder"]["output"]
    with safe_open(str(export / "model.safetensors"), "pt") as f:
        names, meta = set(f.keys()), f.metadata()
    assert "encoder.mean_logvar.weight" in names and not any(k.split(".")[1].isdigit() for k in names)
    assert meta["format"] == "betavae-dist/2" and "log-variance" in meta["encoder.mean_logvar"]


def test_a_format_1_export_still_loads():
    model = BetaVAE.from_pretrained(V1)
    reference = BetaVAE("conv64", 2, 1).eval()
    reference.load_state_dict(load_file(str(V1 / "model.safetensors")))  # its keys are the module's
    x = images()
    assert torch.equal(model.encode(x)[0], reference.encode(x)[0])
    assert model.config["format"] == "betavae-dist/1"


def test_the_model_takes_images_alone_and_has_its_config(tmp_path):
    cfg = Config()
    torch.manual_seed(0)
    write_export(BetaVAE().state_dict(), cfg, tmp_path / "export")
    model = BetaVAE.from_pretrained(tmp_path / "export")
    x = images(8)
    with torch.no_grad():
        reconstruction = model(x)  # eval mode: the reconstruction of the mean code, an image
        logits, mean, _, z = model(x, torch.zeros(8, 10))  # training's call keeps its noise
    assert reconstruction.shape == x.shape and 0 <= reconstruction.min() and reconstruction.max() <= 1
    assert torch.equal(reconstruction, torch.sigmoid(logits)) and torch.equal(z, mean)
    assert model.config["model"] == {"arch": "conv64", "latents": 10, "channels": 1}
    model.save_pretrained(tmp_path / "again")  # format 2 again, from a loaded model
    assert json.loads((tmp_path / "again" / "config.json").read_text())["format"] == "betavae-dist/2"
    assert torch.equal(BetaVAE.from_pretrained(tmp_path / "again").encode(x)[0], model.encode(x)[0])


def test_export_files_are_as_readable_as_the_umask_says(tmp_path):
    before = os.umask(0o022)
    try:
        write_export(BetaVAE().state_dict(), Config(), tmp_path / "export")
        BetaVAE().save_pretrained(tmp_path / "saved")
    finally:
        os.umask(before)
    for directory in (tmp_path / "export", tmp_path / "saved"):
        for file in directory.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o644, file


def test_push_without_network_and_a_cuda_map_location_without_a_gpu_are_one_line(tmp_path, monkeypatch):
    from betavae_dist.export import ExportError
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: no network, quickly
    with pytest.raises(ExportError, match=r"^push_to_hub someone/beta: the Hugging Face Hub cannot be reached or refused "
                                          r"the upload \(.+\); check the network \(HF_ENDPOINT\) and the token"):
        BetaVAE().push_to_hub("someone/beta", token="hf_not_a_token")
    write_export(BetaVAE().state_dict(), Config(), tmp_path / "export")
    if not torch.cuda.is_available():
        with pytest.raises(ExportError, match=r"^map_location='cuda': no CUDA device is visible here"):
            BetaVAE.from_pretrained(tmp_path / "export", map_location="cuda")


def card(export) -> str:
    return (export / "README.md").read_text()


def test_the_card_of_a_dsprites_run_says_what_was_trained_and_how_it_scored(tmp_path):
    from helpers import train_here
    run = tmp_path / "run"
    train_here(run, "train.steps=2", "loss.beta=6", "eval.every=2", "eval.metrics=beta_vae,mig", "eval.n_train=100",
               "eval.n_eval=50", "eval.pairs=4", "eval.seed=3")
    text, evaluation = card(run / "export"), json.loads((run / "export" / "evaluation.json").read_text())
    for row in ("| data set | dsprites |", "| loss.objective | beta |", "| loss.beta | 6.0 |", "| steps | 2 |",
                "| eval.seed | 3 |", "| eval.beta_vae | pairs 4, n_train 100, n_eval 50", "Scores on dsprites"):
        assert row in text, text
    assert f"| beta_vae.eval_accuracy | {evaluation['beta_vae.eval_accuracy']:.4g} |" in text
    assert "- type: mig.score" in text  # the Hub's model-index
    # The export command's card is the run's, scores included.
    from betavae_dist.export.__main__ import export_run
    export_run(run, tmp_path / "again")
    assert card(tmp_path / "again") == text and (tmp_path / "again" / "evaluation.json").is_file()


def test_the_card_of_a_shards_run_names_the_shards(tmp_path):
    from helpers import plain_webdataset, run as run_cmd, train_here
    import sys
    shards = plain_webdataset(tmp_path / "plain")
    run_cmd([sys.executable, "-m", "betavae_dist.data.index", str(shards)])
    train_here(tmp_path / "run", f"data.shards={shards}", "train.batch_size=4", "train.steps=2", "data.workers=0",
               "data.shuffle_buffer=4", config="configs/celeba_beta.yaml")
    text = card(tmp_path / "run" / "export")
    assert f"| data set | WebDataset shards {shards} |" in text and "dsprites" not in text, text
