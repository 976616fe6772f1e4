"""Every command in the README's code blocks runs here as written (with small data and short
schedules added), is what .ci/run runs, or is covered by another test that says so below, so the
README cannot drift from the code."""

import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from helpers import ROOT, free_port, make_celeba, plain_webdataset, run

# Commands this test does not run, and where they are run instead.
ELSEWHERE = {
    "python -m pytest -q": ".ci/run (checked below)",
    "accelerate launch [--config_file": "a template of the commands below",
    "python -m betavae_dist.train --config configs/<x>.yaml": "a template of the commands below",
    "sbatch slurm/sweep.sh": "tests/test_slurm.py (a smaller sweep file)",
    "python -m betavae_dist.sweep report": "tests/test_slurm.py",
    "PACK=18 sbatch": "tests/test_slurm.py (PACK=2, a smaller sweep file)",
    "python -m betavae_dist.sweep run": "tests/test_pack.py (smaller sweep files)",
    "python -m betavae_dist.sweep study": "tests/test_study.py (the study report of small sweeps)",
    "python -m betavae_dist.launch [": "a template; tests/test_config.py launches 2 ranks through it",
    "sbatch --nodes=4": "tests/test_slurm.py (2 emulated nodes)",
    "CONFIG=configs/celeba_beta.yaml LAUNCH_CONFIG=launch/zero2.yaml sbatch": "tests/test_slurm.py, tests/test_deepspeed.py",
}
# Appended to shorten a command: later settings win.
SHORTER = {
    "betavae_dist.train": ["train.steps=4", "train.batch_size=16", "train.log_every=2", "train.progress=false",
                           "data.workers=1", "data.shuffle_buffer=4"],
    "betavae_dist.evaluate": ["eval.n_train=100", "eval.n_eval=50", "eval.pairs=4", "eval.n_samples=200",
                              "eval.metrics=beta_vae,mig"],
    "shards dsprites": ["--limit", "40", "--workers", "1"],
    "shards celeba": ["--workers", "1"],
    "shards folder": ["--workers", "1"],
}


def readme_commands() -> list[str]:
    """Each command of the README's bash blocks (continuations joined, comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [re.sub(r"\s+#\s.*$", "", line).strip() for line in lines if line.strip() and not line.startswith("#")]


def runnable(command: str, paths: dict[str, str], runs: Path) -> list[str]:
    for written, here in paths.items():
        command = command.replace(written, here)
    args = shlex.split(command)
    if args[:2] == ["accelerate", "launch"]:
        args = [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", str(free_port()), *args[2:]]
    elif args[0] == "python":
        args = [sys.executable, *args[1:]]
    for key, extra in SHORTER.items():
        if key in " ".join(args):
            args += extra
    if "betavae_dist.train" in args:  # the config's own run directory, under `runs`
        args.append(f"run_dir={runs / Path(args[args.index('--config') + 1]).stem}")
    return args


@pytest.mark.distributed
def test_readme_commands_run_as_written(tmp_path):
    celeba = make_celeba(tmp_path / "celeba", 20, 2, 2)
    images = tmp_path / "my_images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (40 + i, 30), (i * 80, 0, 0)).save(images / f"img{i}.png")
    theirs = plain_webdataset(tmp_path / "their_shards", shards=2, per_shard=4)  # for the indexer
    photos = tmp_path / "photos"  # CelebA-sized JPEGs, for the indexer's --any-size
    photos.mkdir()
    with wds.ShardWriter(str(photos / "photos-%06d.tar"), maxcount=4, verbose=0) as sink:
        for i in range(4):
            sink.write({"__key__": f"p{i}", "jpg": np.full((218, 178, 3), 40 * i, np.uint8)})
    # The README's data sets and run directories, here.
    paths = {"/data/celeba": str(celeba), "/data/my_images": str(images), "/data/their_shards": str(theirs),
             "/data/photos": str(photos),              "data/": f"{tmp_path}/data/", "runs/": f"{tmp_path}/runs/"}
    ran = []
    for command in readme_commands():
        command = command.split(" && ")[-1]  # the quick start's venv and install are .ci/run's
        if command.startswith(tuple(ELSEWHERE)):
            continue
        run(runnable(command, paths, tmp_path / "runs"))
        ran.append(command.split()[:5])
    assert len(ran) == 8, ran  # dSprites training, three shard writers, the indexer twice, CelebA training, evaluation
    assert (theirs / "manifest.json").is_file() and (photos / "manifest.json").is_file()
    assert (tmp_path / "runs" / "dsprites_beta4" / "export" / "evaluation.json").is_file()
    assert (tmp_path / "runs" / "celeba_beta" / "export" / "model.safetensors").is_file()


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    install, tests = readme_commands()[:2]
    assert install.split(" && ")[2].startswith("pip install") and install.split(" && ")[2] in ci
    assert tests.split(" && ")[-1] in ci
