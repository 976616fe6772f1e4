"""Anyone's encoder through the evaluator: a plain torch.nn.Sequential scored through the library
call and the command line (module:name, a TorchScript file), equal to scoring its codes through
run_metric, and the same on 1 and 2 ranks."""

import json
import math
import os
import sys

import numpy as np
import pytest
import torch

from betavae_dist.data.dsprites import DSprites
from betavae_dist.encoders import EncoderError, score_encoder
from betavae_dist.evaluate import main as evaluate_main
from betavae_dist.metrics import run_metric
from betavae_dist.metrics.codes import CodeTable, factor_set
from helpers import ROOT, accelerate_cmd, eval_config, in_process, run

EXTENSIONS = ROOT / "tests" / "extensions"
SETTINGS = {"eval.metrics": "beta_vae,mig,dci,sap,unsupervised", "eval.n_train": 300, "eval.n_eval": 200,
            "eval.pairs": 8, "eval.n_samples": 400}
ARGS = [f"{key}={value}" for key, value in SETTINGS.items()]


@pytest.fixture(scope="module", autouse=True)
def user_module_path():
    """The user's module importable here and in the processes the tests start."""
    sys.path.insert(0, str(EXTENSIONS))
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(EXTENSIONS), before) if p)
    yield
    sys.path.remove(str(EXTENSIONS))
    os.environ.pop("PYTHONPATH") if before is None else os.environ.update(PYTHONPATH=before)


def scores(results: dict) -> dict:
    return {k: v for k, v in results.items() if "." in k and "seconds" not in k}


@pytest.fixture(scope="module")
def reference():
    """Each metric through run_metric on the encoder's own codes, computed here by hand."""
    import plain_encoder  # tests/extensions, put on the path by the fixture above
    dataset = DSprites()
    represent = lambda factors: plain_encoder.encoder(torch.from_numpy(dataset.images(factors))).detach().numpy()
    cfg = eval_config(**{k.split(".", 1)[1]: v for k, v in SETTINGS.items()})
    out = {}
    for name in cfg.metric_names:
        out.update(run_metric(name, dataset, CodeTable(represent, dataset.factor_sizes), factor_set(dataset, "all"), cfg))
    return out


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
                                        for x, y in ((a[k], b[k]) for k in a))


def test_the_library_call_scores_a_plain_module_and_a_function_as_run_metric_does(reference):
    import plain_encoder
    for encoder in (plain_encoder.encoder, plain_encoder.codes):
        results = score_encoder(encoder, "dsprites", SETTINGS)
        assert same(scores(results), reference), (scores(results), reference)
    assert score_encoder(plain_encoder.encoder, "dsprites", ARGS)["mig.score"] == reference["mig.score"]


def test_the_command_line_takes_module_name_and_torchscript(reference, tmp_path):
    import plain_encoder
    proc = in_process(evaluate_main, ["--model", "plain_encoder:encoder", "--out", str(tmp_path / "a.json"), *ARGS])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "settings: the defaults, then the command line (5 key(s)); data.name=dsprites" in proc.stdout
    assert same(scores(json.loads((tmp_path / "a.json").read_text())), reference)
    scripted = tmp_path / "encoder.pt"
    torch.jit.script(plain_encoder.encoder).save(str(scripted))
    proc = in_process(evaluate_main, ["--model", str(scripted), "--out", str(tmp_path / "b.json"), *ARGS])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert same(scores(json.loads((tmp_path / "b.json").read_text())), reference)


@pytest.mark.parametrize("model, line", [
    ("plain_encoder:nothing", "--model plain_encoder:nothing: plain_encoder has no nothing"),
    ("no_such_module:encoder", "--model no_such_module:encoder: cannot import no_such_module"),
])
def test_an_encoder_that_cannot_be_had_is_one_line(tmp_path, model, line):
    proc = in_process(evaluate_main, ["--model", model, *ARGS])
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and line in proc.stderr, proc.stderr


def test_an_encoder_that_breaks_the_convention_is_named():
    with pytest.raises(EncoderError, match=r"^the encoder gave codes of shape \(64,\) for 64 images"):
        score_encoder(lambda x: np.zeros(len(x)), "dsprites", SETTINGS)
    with pytest.raises(EncoderError, match=r"^the encoder failed on images of shape \(64, 1, 64, 64\): RuntimeError: "):
        score_encoder(torch.nn.Linear(3, 2), "dsprites", SETTINGS)


@pytest.mark.distributed
def test_one_and_two_ranks_give_the_same_scores(reference, tmp_path):
    for ranks in (1, 2):
        out = tmp_path / f"{ranks}.json"
        run(accelerate_cmd(ranks, "-m", "betavae_dist.evaluate", "--model", "plain_encoder:encoder", "--out", str(out),
                           *ARGS))
        assert same(scores(json.loads(out.read_text())), reference)
