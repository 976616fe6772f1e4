"""Adding an objective or a dataset is one file (tests/extensions/), registered from the user's
own module: trained and evaluated through the normal entry points, no file of the package touched."""

import json
import sys

import pytest

from betavae_dist.data import DATASETS
from helpers import ROOT, TINY, run

pytestmark = pytest.mark.integration  # launches real processes


EXTENSIONS = ROOT / "tests" / "extensions"
# A user's launcher: import the new parts, then run the entry point. Here it also wraps the encoder
# to record the range of the pixels that reach the model.
LAUNCH = """
import atexit, sys
import bars, beta_tcvae
from betavae_dist import models
seen, encode = [], models.BetaVAE.encode
def recording(self, x):
    seen.append((x.min().item(), x.max().item(), ((x > 0) & (x < 1)).any().item()))
    return encode(self, x)
models.BetaVAE.encode = recording
atexit.register(lambda: print("PIXELS", min(s[0] for s in seen), max(s[1] for s in seen), any(s[2] for s in seen)))
from betavae_dist.{module} import main
main(sys.argv[1:])
"""
SMALL_EVAL = ["eval.metrics=beta_vae,mig,dci", "eval.n_train=200", "eval.n_eval=100", "eval.pairs=8",
              "eval.n_samples=200"]


def launch(module: str, *args: str):
    return run([sys.executable, "-c", LAUNCH.format(module=module), *args], env={"PYTHONPATH": str(EXTENSIONS)})


def pixel_range(stdout: str) -> tuple[float, float, bool]:
    line = next(line for line in stdout.splitlines() if line.startswith("PIXELS"))
    lo, hi, between = line.split()[1:]
    return float(lo), float(hi), between == "True"


def test_new_objective_and_dataset_train_and_evaluate(tmp_run):
    proc = launch("train", "--config", "configs/dsprites_beta4.yaml", f"run_dir={tmp_run}", *TINY, "train.steps=20",
                  "loss.objective=beta_tc", "loss.beta=6", "data.name=bars", "eval.every=20", *SMALL_EVAL)
    assert pixel_range(proc.stdout) == (0.0, 1.0, True)  # 0..255 pixels reach the model in [0, 1], greys between
    lines = [json.loads(line) for line in (tmp_run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "recon", "kl", "tc", "grad_norm"} <= lines[0].keys()  # the objective's own term is logged
    assert "eval/beta_vae.eval_accuracy" in lines[-1]

    launch("evaluate", "--model", str(tmp_run / "export"), *SMALL_EVAL)
    result = json.loads((tmp_run / "export" / "evaluation.json").read_text())
    assert 0 <= result["beta_vae.eval_accuracy"] <= 1 and 0 <= result["dci.disentanglement"] <= 1


def test_an_unregistered_name_is_one_line_listing_the_choices(tmp_path):
    proc = run([sys.executable, "-m", "betavae_dist.train", f"run_dir={tmp_path / 'r'}", "data.name=bars"], check=False)
    assert proc.returncode == 2
    names = ", ".join(name for name in DATASETS if name != "bars")  # the built-in ones
    assert f"data.name: 'bars' is not one of {names} (on the command line)" in proc.stderr
