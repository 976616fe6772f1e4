import json
import pickle

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import save_file

from betavae_dist.experiment import Config
from betavae_dist.export import ExportError
from betavae_dist.models import BetaVAE, write_export


@pytest.mark.parametrize("arch, channels, latents", [("fc", 1, 10), ("conv64", 1, 10), ("conv64_deep", 3, 32),
                                                     ("dlib_conv", 3, 10)])
def test_shapes(arch, channels, latents):
    model = BetaVAE(arch, latents, channels)
    x = torch.rand(5, channels, 64, 64)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (5, latents)
    out, m2, _, _ = model(x, torch.zeros(5, latents))
    assert out.shape == x.shape
    torch.testing.assert_close(m2, mean)
    # With zero noise the sample is the mean; with noise it moves by exp(logvar/2) * noise.
    torch.testing.assert_close(out, model.decode(mean))


def test_paper_architectures():
    fc = BetaVAE("fc")
    assert [m.out_features for m in fc.encoder if isinstance(m, torch.nn.Linear)] == [1200, 1200, 20]
    assert [m.out_features for m in fc.decoder if isinstance(m, torch.nn.Linear)] == [1200, 1200, 1200, 4096]
    conv = BetaVAE("conv64")
    convs = [m for m in conv.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (4, 4), (2, 2))] * 4
    assert [m.out_features for m in conv.encoder if isinstance(m, torch.nn.Linear)] == [256, 256, 20]


def test_disentanglement_libs_network_layer_for_layer():
    """methods/shared/architectures.py: conv_encoder and deconv_decoder, 3 channels, 10 latents."""
    model = BetaVAE("dlib_conv", 10, 3)
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (4, 4), (2, 2)), (32, (4, 4), (2, 2)),
                                                                         (64, (2, 2), (2, 2)), (64, (2, 2), (2, 2))]
    shapes, x = [], torch.rand(1, 3, 64, 64)
    for layer in model.encoder:
        x = layer(x)
        shapes += [tuple(x.shape[1:])] if isinstance(layer, torch.nn.Conv2d) else []
    assert shapes == [(32, 32, 32), (32, 16, 16), (64, 8, 8), (64, 4, 4)]  # TensorFlow's "same" padding
    deconvs = [m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(d.out_channels, d.kernel_size, d.stride) for d in deconvs] == [(64, (4, 4), (2, 2)), (32, (4, 4), (2, 2)),
                                                                           (32, (4, 4), (2, 2)), (3, (4, 4), (2, 2))]
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [256, 1024]
    # its parameters, counted from its layers: convolutions (k*k*in + 1) * out, dense (in + 1) * out
    conv = lambda k, a, b: (k * k * a + 1) * b
    dense = lambda a, b: (a + 1) * b
    encoder = conv(4, 3, 32) + conv(4, 32, 32) + conv(2, 32, 64) + conv(2, 64, 64) + dense(1024, 256) + 2 * dense(256, 10)
    decoder = dense(10, 256) + dense(256, 1024) + conv(4, 64, 64) + conv(4, 64, 32) + conv(4, 32, 32) + conv(4, 32, 3)
    assert sum(p.numel() for p in model.parameters()) == encoder + decoder


def _exported(tmp_path, arch="conv64", latents=10):
    cfg = Config()
    cfg.model.arch, cfg.model.latents = arch, latents
    torch.manual_seed(0)
    model = BetaVAE(arch, latents).eval()
    write_export(model.state_dict(), cfg, tmp_path / "export")
    return model, tmp_path / "export"


def test_export_round_trip_without_pickle(tmp_path, monkeypatch):
    model, export = _exported(tmp_path)
    def no_pickle(*a, **k):
        raise AssertionError("pickle used")
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = BetaVAE.from_pretrained(export)
    x = torch.rand(3, 1, 64, 64)
    torch.testing.assert_close(loaded.encode(x), model.encode(x), rtol=0, atol=0)
    assert not loaded.training


def test_export_replaces_an_old_one(tmp_path):
    _exported(tmp_path, latents=10)
    _exported(tmp_path, latents=6)
    assert BetaVAE.from_pretrained(tmp_path / "export").latents == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_truncated_weights_are_named(tmp_path):
    _, export = _exported(tmp_path)
    weights = export / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ExportError, match=f"{weights}: unreadable safetensors"):
        BetaVAE.from_pretrained(export)


def test_mismatched_weights_are_named(tmp_path):
    _, export = _exported(tmp_path, latents=10)
    config = export / "config.json"
    config.write_text(config.read_text().replace('"latents": 10', '"latents": 6', 1))
    with pytest.raises(ExportError, match="has shape .* the model needs"):
        BetaVAE.from_pretrained(export)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ExportError, match=f"missing {tmp_path / 'config.json'}"):
        BetaVAE.from_pretrained(tmp_path)
    _, export = _exported(tmp_path, latents=10)
    weights = export / "model.safetensors"
    weights.unlink()
    weights.mkdir()
    with pytest.raises(ExportError, match=f"^{weights} is a directory, not the export's file$"):
        BetaVAE.from_pretrained(export)
    weights.rmdir()
    weights.symlink_to("/dev/zero")
    with pytest.raises(ExportError, match=f"^{weights} is not a regular file \\(a link to /dev/zero\\), not the export's file$"):
        BetaVAE.from_pretrained(export)


def hostile(tmp_path, model=None, tensors=None):
    """A good export, then its config's model entry or its tensors replaced."""
    out = tmp_path / "export"
    write_export(BetaVAE().state_dict(), Config(), out)
    if model is not None:
        meta = json.loads((out / "config.json").read_text())
        meta["model"] = model
        (out / "config.json").write_text(json.dumps(meta) if not isinstance(model, str) else model)
    if tensors is not None:
        save_file(tensors(BetaVAE().state_dict()), str(out / "model.safetensors"))
    return out


@pytest.mark.parametrize("model,words", [
    ({"arch": "conv64", "latents": 1_000_000, "channels": 1}, "out of bounds"),
    ({"arch": "conv64", "latents": 10**9, "channels": 1}, "out of bounds"),
    ({"arch": "conv64", "latents": -4, "channels": 1}, "out of bounds"),
    ({"arch": "conv64", "latents": 1e400, "channels": 1}, "not a betavae-dist export config"),
    ({"arch": "resnet", "latents": 10, "channels": 1}, "out of bounds"),
    ('{"model": ' * 100_000 + "1" + "}" * 100_000, "not a betavae-dist export config"),
])
def test_hostile_configs_are_refused_before_allocating(tmp_path, model, words):
    # The bounds are checked before anything is allocated: a million latents would take 3 GB.
    with pytest.raises(ExportError, match=words):
        BetaVAE.from_pretrained(hostile(tmp_path, model=model))


@pytest.mark.parametrize("tensors,words", [
    (lambda s: {k: v.half() for k, v in s.items()}, "is F16, exports are float32"),
    (lambda s: {k: v.long() for k, v in s.items()}, "is I64, exports are float32"),
    (lambda s: {k: v.fill_(float("nan")) if k.endswith("bias") else v for k, v in s.items()}, "non-finite values"),
])
def test_non_float32_or_non_finite_weights_are_refused(tmp_path, tensors, words):
    with pytest.raises(ExportError, match=words):
        BetaVAE.from_pretrained(hostile(tmp_path, tensors=tensors))


def test_hub_mixin_round_trip_writes_the_export_format(tmp_path):
    model = BetaVAE("fc", 6).eval()
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["model"] == {"arch": "fc", "latents": 6, "channels": 1}
    loaded = BetaVAE.from_pretrained(tmp_path / "saved")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    # A trained export keeps its training config through a save.
    cfg = Config()
    cfg.model.arch, cfg.model.latents = "fc", 6
    write_export(model.state_dict(), cfg, tmp_path / "export")
    BetaVAE.from_pretrained(tmp_path / "export").save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["training_config"] == cfg.to_dict()


def test_a_repo_id_loads_from_the_hub_cache_and_a_missing_one_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing leaves this machine
    snapshot = tmp_path / "hub" / "models--someone--betavae" / "snapshots" / ("0" * 40)
    BetaVAE("fc", 4).save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    assert BetaVAE.from_pretrained("someone/betavae", cache_dir=tmp_path / "hub").latents == 4
    with pytest.raises(ExportError, match="someone/other: not an export directory, and not a Hub repository"):
        BetaVAE.from_pretrained("someone/other", cache_dir=tmp_path / "hub")


def test_from_pretrained_takes_the_hub_mixins_arguments(tmp_path):
    model = BetaVAE("fc", 4).eval()
    model.save_pretrained(tmp_path / "saved")
    loaded = BetaVAE.from_pretrained(tmp_path / "saved", map_location="cpu", strict=True, force_download=False,
                                     revision=None, cache_dir=None, token=None, local_files_only=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    state = {**model.state_dict(), "extra.weight": torch.zeros(2)}  # a tensor the model does not have
    save_file(state, str(tmp_path / "saved" / "model.safetensors"))
    with pytest.raises(ExportError, match="weights do not match the model"):
        BetaVAE.from_pretrained(tmp_path / "saved")
    assert BetaVAE.from_pretrained(tmp_path / "saved", strict=False).latents == 4  # the shared tensors still checked


def test_the_model_card_has_the_training_config_and_the_scores(tmp_path):
    cfg = Config()
    cfg.model.arch, cfg.model.latents, cfg.loss.beta, cfg.train.steps = "fc", 6, 16.0, 1234
    write_export(BetaVAE("fc", 6).state_dict(), cfg, tmp_path / "export")
    (tmp_path / "export" / "evaluation.json").write_text(json.dumps(
        {"model": "x", "beta_vae.eval_accuracy": 0.875, "beta_vae.seconds": 3.0, "encode.seconds": 9.0, "mig.score": 0.25}))
    BetaVAE.from_pretrained(tmp_path / "export").save_pretrained(tmp_path / "card")
    card = ModelCard.load(tmp_path / "card" / "README.md")
    assert card.data.library_name == "betavae-dist" and "beta-vae" in card.data.tags
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"beta_vae.eval_accuracy": 0.875, "mig.score": 0.25}  # timings are not scores
    assert all(r.dataset_type == "dsprites" for r in card.data.eval_results)
    for row in ("| loss.beta | 16.0 |", "| loss.objective | beta |", "| steps | 1234 |", "| data set | dsprites |"):
        assert row in card.text, card.text
