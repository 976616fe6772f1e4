"""Packed sweeps (pack/): K points in one process, each equal to its solo run, failing alone,
resuming after a kill, and reported like solo points."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.utils import set_seed

from betavae_dist import checkpoint
from betavae_dist.experiment import from_sources
from betavae_dist.models import BetaVAE
from betavae_dist.objectives import build_objective
from betavae_dist.pack.model import PackedVAE
from betavae_dist.pack.train import split_packs
from betavae_dist.rundir import RunDir
from betavae_dist.sweep_file import Sweep
from betavae_dist.evaluate import main as evaluate_main
from betavae_dist.sweep import main as sweep_main
from helpers import HUNG, ROOT, TINY, adam_drift_bound, in_process, train_here, weights, write_sweep

BETAS, SEEDS = [1, 16], [0, 1]  # 4 points; in packs of 3: (1, 0), (1, 1), (16, 0) together, then (16, 1)
TRAIN = [*TINY, "train.steps=20", "train.ckpt_every=10"]
EVAL = ["eval.metrics=beta_vae,mig", "eval.n_train=200", "eval.n_eval=100", "eval.pairs=8", "eval.n_samples=200"]


# In-process: the pack against K solo models on the same images and noise. The pack sums in
# another order (one grouped convolution for K plain ones; other oneDNN kernels on other CPUs), so
# they agree to float32 rounding: a sum of n terms moves by about sqrt(n) * 2^-24 of its size, ~1e-5
# for these layers; ROUNDING allows 10x that. Plain SGD steps keep that agreement; Adam steps keep
# only Adam's own bound (helpers.adam_drift_bound), checked by the sweep tests further down.
ROUNDING = 1e-4
POINTS = ((1, 0), (16, 1), (4, 2))  # (β, seed)


def pack_and_solo_models():
    cfgs = [from_sources("configs/dsprites_beta4.yaml", [f"loss.beta={b}", f"seed={s}"]) for b, s in POINTS]
    solos = []
    for cfg in cfgs:
        set_seed(cfg.seed)  # as train.py builds its model
        model = BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels)
        solos.append(model.to(memory_format=model.memory_format))
    return cfgs, PackedVAE(cfgs, torch.device("cpu")), solos


def dsprites_steps(dsprites, steps, k, batch=16):
    """Each point's own dSprites images (steps, k, batch, 1, 64, 64) and noise (steps, k, batch, 10)."""
    rng = np.random.default_rng(0)
    images = dsprites.images(dsprites.sample_factors(steps * k * batch, rng)).reshape(steps, k, batch, 1, 64, 64)
    return torch.from_numpy(images), torch.from_numpy(rng.standard_normal((steps, k, batch, 10), dtype=np.float32))


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.numerics
def test_pack_forward_gradients_and_sgd_steps_equal_each_solo_model(dsprites):
    cfgs, pack, solos = pack_and_solo_models()
    images, noise = dsprites_steps(dsprites, steps=4, k=len(cfgs))
    start = [{n: p.detach().clone() for n, p in m.named_parameters()} for m in solos]
    assert all(torch.equal(pack.params[n][k], start[k][n]) for k in range(len(cfgs)) for n in start[k])
    pack_sgd = torch.optim.SGD(list(pack.params.values()), lr=1e-4)
    solo_sgd = [torch.optim.SGD(m.parameters(), lr=1e-4) for m in solos]
    objectives = [build_objective(c.loss, c.model) for c in cfgs]
    x = pack.images(images.shape[2])
    for step in range(len(images)):
        x.copy_(images[step])
        pack_sgd.zero_grad()
        terms = pack.loss_terms(x, noise[step], {})
        terms[:, 0].sum().backward()
        for k, (model, objective) in enumerate(zip(solos, objectives)):
            solo_sgd[k].zero_grad()
            output, mean, logvar, z = model(images[step, k].contiguous(memory_format=model.memory_format), noise[step, k])
            values = objective(output, images[step, k], mean, logvar, z, {})
            values["loss"].backward()
            solo_terms = torch.stack([values[t] for t in objective.terms]).detach()
            assert relative(terms[k, 1:].detach(), solo_terms) < ROUNDING, (step, k, terms[k], solo_terms)
            for name, p in model.named_parameters():
                assert relative(pack.params[name].grad[k], p.grad) < ROUNDING, (step, k, name)
        pack_sgd.step()
        for opt in solo_sgd:
            opt.step()
    for k, model in enumerate(solos):  # the steps moved the weights, and the same way
        moved = torch.cat([(p.detach() - start[k][n]).flatten() for n, p in model.named_parameters()])
        pack_moved = torch.cat([(pack.params[n][k].detach() - start[k][n]).flatten() for n, _ in model.named_parameters()])
        assert moved.abs().max() > 1e-4 and relative(pack_moved, moved) < ROUNDING


def beta_seed_sweep(path, out_dir, betas, seeds, train_args=TRAIN, pack=None, eval_args=EVAL):
    """A sweep over loss.beta x seed with this file's training and evaluation settings."""
    return write_sweep(path, out_dir, {"loss.beta": betas, "seed": seeds}, train_args, eval_args, pack)


def sweep_run(sweep_file, *args, check=True):
    """`python -m betavae_dist.sweep run` in this process (a killed pack needs a process of its own)."""
    proc = in_process(sweep_main, ["run", str(sweep_file), *args])
    assert not check or proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# Loss curves of a packed and a solo run: Adam's drift (above) moved the logged loss by up to 1.2e-4
# of its size over 20 steps (an AVX-512 CPU without AMX; 1e-7 on others); CURVE allows 8x that, while
# another seed's batches move it by 0.7 % or more (measured), so a wrong batch or noise still fails.
CURVE = 1e-3


def assert_close_weights(a: dict, b: dict, steps: int, lr: float = 5e-4):
    """Equal up to what Adam makes of float rounding (see ROUNDING): within Adam's bound everywhere."""
    assert a.keys() == b.keys()
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert diffs.max() <= adam_drift_bound(steps, lr), (diffs.max(), adam_drift_bound(steps, lr))


@pytest.fixture(scope="module")
def packed_and_solo(tmp_path_factory):
    """The sweep run in packs of 3 (`sweep run`), and each point solo: the trainer, then the
    evaluator on its export, as slurm/sweep.sh runs them."""
    root = tmp_path_factory.mktemp("pack")
    packed, solo = root / "packed", root / "solo"
    # The command line's eval.* settings win over the file's eval list (n_train 150 -> 200, as solo).
    out = sweep_run(beta_seed_sweep(root / "packed.yaml", packed, BETAS, SEEDS, pack=3, eval_args=[*EVAL, "eval.n_train=150"]),
                    "eval.n_train=200")
    sweep = Sweep.load(beta_seed_sweep(root / "solo.yaml", solo, BETAS, SEEDS))
    sweep.copy_into_out_dir()
    for point in sweep.points:
        run_dir = sweep.run_dir(point)
        train_here(run_dir, *TRAIN[len(TINY):], f"loss.beta={point['loss.beta']}", f"seed={point['seed']}")
        assert in_process(evaluate_main, ["--model", str(run_dir / "export"), "--out", str(run_dir / "evaluation.json"),
                                          *EVAL]).returncode == 0
    return packed, solo, [sweep.name(p) for p in sweep.points], out.stdout


def test_sweep_run_tells_its_evaluation_as_it_goes(packed_and_solo):
    """Not silent for minutes: which points it evaluates, the images encoded, each metric, the fits
    (plain lines here, where stdout is not a terminal; bars on one)."""
    stdout = packed_and_solo[3]
    lines = stdout.splitlines()
    assert sum(line.startswith("evaluating ") for line in lines) == 2, stdout[-3000:]  # the pack of 3, the point alone
    assert any(line.startswith("images encoded (3 models) ") and "done in" in line for line in lines), stdout[-3000:]
    assert any(line.startswith("metric beta_vae: points 1/1") for line in lines)
    assert any(line.startswith("fits (") for line in lines)


@pytest.mark.numerics
def test_packs_of_three_each_point_equal_to_its_solo_run(packed_and_solo):
    packed, solo, names, stdout = packed_and_solo
    # three points packed, the fourth alone through the solo trainer (no vmap for one point)
    assert stdout.count("pack of 3 on cpu") == 1 and stdout.count("1 process(es) on cpu") == 1
    for name in names:
        assert_close_weights(weights(packed / name / "export"), weights(solo / name / "export"), steps=20)
        mine, theirs = ([json.loads(line) for line in (d / name / "metrics.jsonl").read_text().splitlines()]
                        for d in (packed, solo))
        assert [m["step"] for m in mine] == [t["step"] for t in theirs]
        for m, t in zip(mine, theirs):  # the same curve, step by step
            assert m.keys() == t.keys()
            assert m["loss"] == pytest.approx(t["loss"], rel=CURVE) and m["kl"] == pytest.approx(t["kl"], rel=1e-2, abs=1e-3)


def test_each_packed_point_directory_passes_a_solo_runs_checks(packed_and_solo, tmp_path):
    packed, solo, names, _ = packed_and_solo
    for name in names:
        run_dir = packed / name
        assert (run_dir / "config.yaml").read_text() == (solo / name / "config.yaml").read_text().replace(str(solo), str(packed))
        steps = [step for step, _ in checkpoint.checkpoints(run_dir / "checkpoints")]
        assert steps == [10, 20] and all(checkpoint.verify(p) is None for _, p in checkpoint.checkpoints(run_dir / "checkpoints"))
        assert BetaVAE.from_pretrained(run_dir / "export").latents == 10
        assert (run_dir / "reconstruction.png").is_file() and (run_dir / "traversal.png").is_file()
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
        assert evaluation["model"] == str(run_dir / "export") and evaluation["eval"]["beta_vae"]["n_train"] == 200
        alone = json.loads((solo / name / "evaluation.json").read_text())
        assert alone["encode.seconds"] > 0 and "encode.models" not in alone
    # Each pack's images were encoded once for all its models, and its points say so (packs of 3, then 1).
    shared = [{k: v for k, v in json.loads((packed / name / "evaluation.json").read_text()).items() if k.startswith("encode.")}
              for name in names]
    assert [e["encode.models"] for e in shared] == [3, 3, 3, 1] and shared[0] == shared[1] == shared[2] != shared[3]
    # The solo trainer resumes a packed point's checkpoint: its files are Accelerate's.
    assert names[0] == "beta1_seed0"
    copy = shutil.copytree(packed / names[0], tmp_path / names[0])
    proc = train_here(copy, *TRAIN[len(TINY):], "train.steps=22", "seed=0", "loss.beta=1")
    assert f"resuming from {copy / 'checkpoints' / 'step_20'} at step 20" in proc.stdout


@pytest.mark.numerics
def test_sweep_report_of_packed_points_equals_the_solo_ones(packed_and_solo):
    packed, solo, names, _ = packed_and_solo
    rows = {}
    for directory in (packed, solo):
        assert in_process(sweep_main, ["report", str(directory)]).returncode == 0
        rows[directory] = list(csv_rows(directory / "report.csv"))
    assert len(rows[packed]) == 2 and [r["loss.beta"] for r in rows[packed]] == [r["loss.beta"] for r in rows[solo]]
    for mine, theirs in zip(rows[packed], rows[solo]):
        assert mine["n"] == theirs["n"] == "2"
        for column in mine:
            if column.endswith("mean") and "recon" in column:
                assert float(mine[column]) == pytest.approx(float(theirs[column]), rel=CURVE)
            elif column.endswith("mean"):  # scores: the same points and codes, up to float rounding in the codes
                assert float(mine[column]) == pytest.approx(float(theirs[column]), abs=0.03)


def csv_rows(path):
    import csv

    with open(path) as f:
        yield from csv.DictReader(f)


def test_points_that_differ_in_shapes_or_optimiser_are_split_into_packs():
    def cfg(*overrides):
        return from_sources("configs/dsprites_beta4.yaml", list(overrides))

    points = [cfg("loss.beta=1"), cfg("optim.lr=1e-3"), cfg("loss.beta=8", "seed=3"), cfg("model.latents=6"),
              cfg("loss.objective=annealed"), cfg("optim.lr=1e-3", "seed=2")]
    packs = split_packs(points)
    assert [len(p) for p in packs] == [2, 2, 1, 1]
    assert packs[0] == [points[0], points[2]] and packs[1] == [points[1], points[5]]


def test_a_diverging_point_fails_alone_and_the_others_go_on(tmp_path):
    # β = 3e38 overflows the loss of that point; the other point is unaffected.
    sweep_file = beta_seed_sweep(tmp_path / "sweep.yaml", tmp_path / "sweep", [4, 3e38], [0], pack=2)
    proc = sweep_run(sweep_file, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    bad, good = tmp_path / "sweep" / "beta3e+38_seed0", tmp_path / "sweep" / "beta4_seed0"
    record = json.loads(RunDir(bad).failed.read_text())
    assert record["problem"].startswith("non-finite") and record["last_good_checkpoint"] is None, record
    assert "failed: non-finite" in proc.stdout and "1 point(s) failed: beta3e+38_seed0" in proc.stderr
    assert not (bad / "export").exists() and not (bad / "evaluation.json").exists()
    assert (good / "evaluation.json").is_file()
    alone = beta_seed_sweep(tmp_path / "alone.yaml", tmp_path / "alone", [4], [0])
    sweep_run(alone)
    assert_close_weights(weights(good / "export"), weights(tmp_path / "alone" / "beta4_seed0" / "export"), steps=20)
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "beta3e+38_seed0: failed (non-finite" in report
    again = sweep_run(sweep_file, check=False)  # not retried: its failure is on record
    assert again.returncode == 1 and "failed before" in again.stdout and "pack of" not in again.stdout


def test_diverged_points_are_failed_before_they_are_saved(tmp_path):
    """optim.lr=1e30: finite weights of ~1e30 after one step, which no checkpoint may hold."""
    from betavae_dist.pack.train import train_pack
    from betavae_dist.rundir import TrainingError

    cfgs = [from_sources("configs/dsprites_beta4.yaml", [*TRAIN, "train.ckpt_every=1", "optim.lr=1e30", f"seed={seed}",
                                                         f"run_dir={tmp_path / str(seed)}"]) for seed in (0, 1)]
    with pytest.raises(TrainingError, match="every point of the pack failed"):
        train_pack(cfgs)
    for cfg in cfgs:
        record = json.loads(RunDir(cfg.run_dir).failed.read_text())
        assert record == {"step": 1, "last_good_checkpoint": None,
                          "problem": "the weights after step 1 give a non-finite loss (they diverged: optim.lr?); not saved"}
        assert not checkpoint.checkpoints(Path(cfg.run_dir) / "checkpoints")


@pytest.mark.integration
def test_a_killed_pack_resumes_equal_to_an_uninterrupted_one(tmp_path):
    long = [*TINY, "train.steps=60", "train.ckpt_every=5", "train.keep_checkpoints=1"]
    whole = beta_seed_sweep(tmp_path / "whole.yaml", tmp_path / "whole", [1, 16], [0], long, pack=2)
    killed = beta_seed_sweep(tmp_path / "killed.yaml", tmp_path / "killed", [1, 16], [0], long, pack=2)
    sweep_run(whole)
    cmd = [sys.executable, "-m", "betavae_dist.sweep", "run", str(killed)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = tmp_path / "killed" / "beta16_seed0" / "checkpoints"
    deadline = time.monotonic() + HUNG
    while not checkpoint.checkpoints(first) or checkpoint.checkpoints(first)[-1][0] < 15:
        assert proc.poll() is None and time.monotonic() < deadline, "the pack ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = sweep_run(killed)
    assert "resuming at step" in resumed.stdout
    for name in ("beta1_seed0", "beta16_seed0"):
        a, b = weights(tmp_path / "whole" / name / "export"), weights(tmp_path / "killed" / name / "export")
        assert all(torch.equal(a[k], b[k]) for k in a), name
        steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / name / "metrics.jsonl").read_text().splitlines()]
        assert steps[-1] == 60


@pytest.mark.numerics
def test_per_point_schedule_clipping_and_accumulation_match_solo_runs(tmp_path):
    """Annealed capacity with each point's own γ and capacity steps, per-point clipping, two
    micro-batches per step: in-process pack against in-process solo runs."""
    from betavae_dist.pack.train import train_pack
    from betavae_dist.solo import train as train_solo

    common = [*TRAIN, "optim.grad_clip=50", "train.grad_accum=2", "loss.objective=annealed"]
    points = [("gamma=1", "capacity_steps=10", "seed=0"), ("gamma=4", "capacity_steps=30", "seed=1")]

    def cfg(where, point):
        return from_sources("configs/dsprites_beta4.yaml", [*common, *(f"loss.{p}" for p in point[:2]), point[2],
                                                            f"run_dir={tmp_path / where / point[0]}"])

    assert train_pack([cfg("pack", p) for p in points]) == []
    for p in points:
        train_solo(cfg("solo", p))
        assert_close_weights(weights(tmp_path / "pack" / p[0] / "export"), weights(tmp_path / "solo" / p[0] / "export"), steps=20)
        mine, theirs = ((tmp_path / d / p[0] / "metrics.jsonl").read_text().splitlines()[-1] for d in ("pack", "solo"))
        assert json.loads(mine)["capacity"] == json.loads(theirs)["capacity"] == 25 * min(1, 19 / int(p[1].split("=")[1]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (CUDA graphs)")
def test_pack_as_one_cuda_graph_equals_eager_steps_on_the_gpu(tmp_path):
    from betavae_dist.pack.train import train_pack

    def cfgs(where, graph):
        return [from_sources("configs/dsprites_beta4.yaml", [*TRAIN, f"loss.beta={b}", f"seed={s}",
                                                             f"train.cuda_graph={graph}", f"run_dir={tmp_path / where / str(b)}"])
                for b, s in ((1, 0), (16, 1))]

    graph, eager = cfgs("graph", "on"), cfgs("eager", "off")
    train_pack(graph)
    train_pack(eager)
    # cuDNN's backward is not deterministic and Adam turns rounding on near-zero gradients into
    # steps of up to lr (docs/benchmarks.md): the curves agree closely, the weights within 20 steps' worth.
    for g, e in zip(graph, eager):
        mine, theirs = (json.loads((Path(c.run_dir) / "metrics.jsonl").read_text().splitlines()[-1]) for c in (g, e))
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-3)
        a, b = weights(Path(g.run_dir) / "export"), weights(Path(e.run_dir) / "export")
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 20 * g.optim.lr
