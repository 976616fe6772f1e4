"""Adding an objective (with settings of its own) or a dataset is one file (tests/extensions/),
registered from the user's own module: trained solo and packed, and evaluated, through the normal
entry points, no file of the package touched."""

import json
import sys

import pytest

from betavae_dist.data import DATASETS
from helpers import ROOT, TINY, adam_drift_bound, run, weights, write_sweep

pytestmark = pytest.mark.integration  # launches real processes


EXTENSIONS = ROOT / "tests" / "extensions"
# A user's launcher: import the new parts, then run the entry point. Here it also wraps the encoder
# to record the range of the pixels that reach the model.
LAUNCH = """
import atexit, sys
import bars, free_bits
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


PLAIN = "import sys\nimport bars, free_bits\nfrom betavae_dist.{module} import main\nmain(sys.argv[1:])"


def launch(module: str, *args: str, record: bool = True):
    """`module`'s main under the user's launcher; `record`: with the pixel recorder (not for packs:
    under vmap a tensor has no .item())."""
    script = (LAUNCH if record else PLAIN).format(module=module)
    return run([sys.executable, "-c", script, *args], env={"PYTHONPATH": str(EXTENSIONS)})


def pixel_range(stdout: str) -> tuple[float, float, bool]:
    line = next(line for line in stdout.splitlines() if line.startswith("PIXELS"))
    lo, hi, between = line.split()[1:]
    return float(lo), float(hi), between == "True"


def test_new_objective_and_dataset_train_and_evaluate(tmp_run):
    proc = launch("train", "--config", "configs/dsprites_beta4.yaml", f"run_dir={tmp_run}", *TINY, "train.steps=20",
                  "loss.objective=free_bits", "loss.free_bits=0.3", "data.name=bars", "eval.every=20", *SMALL_EVAL)
    assert pixel_range(proc.stdout) == (0.0, 1.0, True)  # 0..255 pixels reach the model in [0, 1], greys between
    lines = [json.loads(line) for line in (tmp_run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "recon", "kl", "kl_floored", "grad_norm"} <= lines[0].keys()  # the objective's own term is logged
    assert "free_bits: 0.3" in (tmp_run / "config.yaml").read_text()
    assert "eval/beta_vae.eval_accuracy" in lines[-1]

    launch("evaluate", "--model", str(tmp_run / "export"), *SMALL_EVAL)
    result = json.loads((tmp_run / "export" / "evaluation.json").read_text())
    assert 0 <= result["beta_vae.eval_accuracy"] <= 1 and 0 <= result["dci.disentanglement"] <= 1


def test_the_new_objectives_own_setting_is_per_point_in_a_pack_equal_to_its_solo_runs(tmp_path):
    train = [*TINY, "train.steps=12", "train.ckpt_every=6", "loss.objective=free_bits"]
    sweep = write_sweep(tmp_path / "sweep.yaml", tmp_path / "sweep", {"loss.free_bits": [0.1, 2.0], "seed": [0]}, train,
                        ["eval.metrics=mig", "eval.n_samples=200"], pack=2)
    launch("sweep", "run", str(sweep), record=False)
    for value in (0.1, 2.0):
        solo = tmp_path / f"solo_{value}"
        launch("train", "--config", "configs/dsprites_beta4.yaml", f"run_dir={solo}", *train, f"loss.free_bits={value}",
               record=False)
        packed = next((tmp_path / "sweep").glob(f"free_bits{value}*"))
        assert f"free_bits: {value}" in (packed / "config.yaml").read_text()
        a, b = weights(packed / "export"), weights(solo / "export")
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= adam_drift_bound(12, 5e-4)
    floored = [json.loads((tmp_path / "sweep" / p / "metrics.jsonl").read_text().splitlines()[0])["kl_floored"]
               for p in sorted(q.name for q in (tmp_path / "sweep").glob("free_bits*"))]
    assert floored[0] < floored[1]  # each point its own floor: 2 nats x 10 latents at least for the second


def test_an_unregistered_name_is_one_line_listing_the_choices(tmp_path):
    proc = run([sys.executable, "-m", "betavae_dist.train", f"run_dir={tmp_path / 'r'}", "data.name=bars"], check=False)
    assert proc.returncode == 2
    names = ", ".join(name for name in DATASETS if name != "bars")  # the built-in ones
    assert f"data.name: 'bars' is not one of {names} (on the command line)" in proc.stderr
