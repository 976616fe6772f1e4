"""End-to-end training through real processes: `python -m` and `accelerate launch` on gloo."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from betavae_dist import checkpoint
from betavae_dist.data.dsprites import DSprites
from betavae_dist.models import BetaVAE
from betavae_dist.evaluate import main as evaluate_main
from betavae_dist.export.__main__ import main as export_main
from helpers import HUNG, ROOT, TINY, accelerate_cmd, in_process, max_abs_diff, run, train, train_here, weights


@pytest.mark.distributed
def test_two_ranks_match_one_rank_with_the_same_global_batch(tmp_path):
    one = train(tmp_path / "one", "train.steps=6")
    two = train(tmp_path / "two", "train.steps=6", nproc=2)
    train(tmp_path / "accum", "train.steps=6", "train.grad_accum=2")
    assert "1 process(es)" in one.stdout
    assert "2 process(es) on cpu" in two.stdout and "MULTI_CPU" in two.stdout
    w1, w2, wa = (weights(tmp_path / r / "export") for r in ("one", "two", "accum"))
    assert max_abs_diff(w1, w2) < 1e-5
    assert max_abs_diff(w1, wa) < 1e-5
    # ...and training moved the weights at all, so the comparison means something.
    from betavae_dist.export.layout import to_export
    init = to_export(BetaVAE().state_dict(), BetaVAE())  # the export's layer names (format 2)
    assert max_abs_diff({k: init[k] for k in w1}, w1) > 1e-3


def test_run_directory_has_everything_and_the_process_is_left_as_it_was(tmp_run):
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    threads = threading.active_count()
    train_here(tmp_run, "train.steps=4", "train.ckpt_every=2", "train.keep_checkpoints=1", "train.report_to=tensorboard")
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert threading.active_count() == threads and not list((tmp_run / ".ranks").iterdir())  # the heartbeat stopped
    for name in ("config.yaml", "metrics.jsonl", "traversal.png", "reconstruction.png",
                 "export/model.safetensors", "export/config.json"):
        assert (tmp_run / name).is_file(), name
    assert sorted(p.name for p in (tmp_run / "checkpoints").iterdir()) == ["step_4"]
    lines = [json.loads(line) for line in (tmp_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [2, 4]
    assert {"loss", "recon", "kl", "img_per_s", "grad_norm"} <= lines[0].keys()
    events = list((tmp_run / tmp_run.name).rglob("events.out.tfevents.*"))  # TensorBoard, under the run's name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = EventAccumulator(str(events[0].parent)).Reload().Tags()
    assert {"train/loss", "train/recon", "train/kl"} <= set(tags["scalars"]), tags  # namespaced, as eval/ is
    assert {"reconstruction", "traversal"} <= set(tags["images"]), tags  # the figures too
    assert "steps: 4" in (tmp_run / "config.yaml").read_text()
    BetaVAE.from_pretrained(tmp_run / "export")


def test_tensorboard_gets_figures_at_each_evaluation_metric_columns_and_each_latents_kl(tmp_run):
    proc = train_here(tmp_run, "train.steps=4", "train.log_every=2", "train.report_to=tensorboard", "eval.every=2",
                      "eval.metrics=mig", "eval.n_samples=200", "train.progress=true")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata
    events = EventAccumulator(str(tmp_run / tmp_run.name), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert [e.step for e in events.Images("traversal")] == [2, 4] == [e.step for e in events.Images("reconstruction")]
    scalars = set(events.Tags()["scalars"])
    assert {f"train/kl_latents/{k:02d}" for k in range(10)} | {"train/active_latents", "eval/mig.score"} <= scalars
    experiment = metadata.parse_experiment_plugin_data(events.PluginTagToContent("hparams")["_hparams_/experiment"])
    assert [m.name.tag for m in experiment.metric_infos] == ["train/loss", "train/recon", "train/kl", "eval/mig.score"]
    line = json.loads((tmp_run / "metrics.jsonl").read_text().splitlines()[0])
    assert len(line["kl_latents"]) == 10 and line["active_latents"] == sum(v > 0.01 for v in line["kl_latents"])
    assert re.search(r"KL \d+\.\d+  active \d+/10 ", proc.stdout), proc.stdout


def test_the_traversal_has_a_row_per_latent_by_kl_each_labelled():
    from betavae_dist import visualize
    torch.manual_seed(0)
    model, x = BetaVAE().eval(), torch.rand(2, 1, 64, 64)
    kl = [0.1 * k for k in range(10)]
    rows = visualize.traversal(model, x, "bernoulli", [9, 8, 7])
    assert torch.allclose(rows[0], visualize.traversal(model, x, "bernoulli", [9])[0], atol=1e-6)  # row 0 moves latent 9
    figure, plain = visualize.traversal_figure(model, x, "bernoulli", kl), visualize.tile(visualize.traversal(
        model, x, "bernoulli", sorted(range(10), key=lambda k: -kl[k])))
    assert (figure[:, -plain.shape[1]:] == plain).all() and figure.shape[1] > plain.shape[1]  # labels on the left
    assert (figure[:, : figure.shape[1] - plain.shape[1]] < 255).any()  # ... written there


def test_a_log_file_gets_a_plain_line_per_log_step(tmp_run):
    """stdout that is not a terminal (SLURM's slurm-*.out, nohup) gets lines, not a live bar."""
    proc = train_here(tmp_run, "train.steps=4", "train.progress=true")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"], proc.stdout
    assert "loss " in lines[0] and "img/s" in lines[0] and "ETA " in lines[0] and "done in " in lines[1]


@pytest.mark.integration
def test_a_batch_job_log_shows_progress_as_it_goes(tmp_path):
    """`python -m betavae_dist.train > log`, as SLURM or nohup run it: lines, not a live bar."""
    log = tmp_path / "log"
    with open(log, "w") as out:
        subprocess.run([sys.executable, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml",
                        f"run_dir={tmp_path / 'run'}", "train.batch_size=16", "train.steps=4", "train.log_every=2"],
                       cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=HUNG)
    lines = [line for line in log.read_text().splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"] and "ETA" in lines[0], log.read_text()


def test_export_cli_matches_end_of_training_export(tmp_run, tmp_path):
    train_here(tmp_run, "train.steps=3")
    out = tmp_path / "exported"
    in_process(export_main, [str(tmp_run), str(out)])
    assert max_abs_diff(weights(out), weights(tmp_run / "export")) == 0
    bad = in_process(export_main, [str(tmp_path / "nowhere"), str(out)])
    assert bad.returncode == 1 and f"not a run directory (no config.yaml): {tmp_path / 'nowhere'}" in bad.stderr


@pytest.mark.integration
@pytest.mark.parametrize("objective, steps", [("beta", 40), ("annealed", 16), ("dip_i", 16), ("dip_ii", 16),
                                              ("beta_tcvae", 16), ("factor_vae", 16)])
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, objective, steps):
    """Every objective: a run killed after a checkpoint resumes to the bit (FactorVAE's discriminator,
    its Adam group and its shuffles included), and its export is scored by the evaluator."""
    steps = [f"train.steps={steps}", "train.ckpt_every=4", "train.batch_size=32", f"loss.objective={objective}"]
    train(tmp_path / "straight", *steps)

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml",
           f"run_dir={killed}", "train.progress=false", "train.log_every=2", *steps]  # logs as train() does
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + HUNG
    while not (killed / "checkpoints" / "step_8").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "export").exists()

    resumed = train(killed, *steps, "train.resume=auto")
    assert "resuming from" in resumed.stdout
    assert max_abs_diff(weights(tmp_path / "straight" / "export"), weights(killed / "export")) < 1e-6
    logged = lambda run: [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged(killed) == logged(tmp_path / "straight")  # each step once: what the kill cut off is written again
    proc = in_process(evaluate_main, ["--model", str(killed / "export"), "eval.metrics=mig", "eval.n_samples=200"])
    assert proc.returncode == 0 and 0 <= json.loads((killed / "export" / "evaluation.json").read_text())["mig.score"] <= 1


def test_a_resumed_log_drops_the_lines_after_its_checkpoint(tmp_path):
    from betavae_dist.rundir import open_metrics_log
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (2, 4, 6, 8)) + '{"step": 10, "lo')
    with open_metrics_log(log, 4) as f:  # resumed from step 4's checkpoint, after a kill mid-line
        f.write(json.dumps({"step": 6, "loss": 2.0}) + "\n")
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        {"step": 2, "loss": 1.0}, {"step": 4, "loss": 1.0}, {"step": 6, "loss": 2.0}]


def test_half_written_checkpoint_is_ignored(tmp_run):
    train_here(tmp_run, "train.steps=2", "train.ckpt_every=2")
    # What a kill during save leaves behind: a temp directory, never a step_N directory.
    (tmp_run / "checkpoints" / ".tmp-step_4").mkdir()
    (tmp_run / "checkpoints" / ".tmp-step_4" / "model.safetensors").write_bytes(b"garbage")
    resumed = train_here(tmp_run, "train.steps=4", "train.ckpt_every=2")
    assert "checkpoints/step_2 at step 2" in resumed.stdout
    assert sorted(p.name for p in (tmp_run / "checkpoints").iterdir()) == ["step_2", "step_4"]


def test_diverged_weights_are_never_the_last_good_checkpoint(tmp_run):
    """optim.lr=1e30 leaves finite weights of ~1e30 after one step: finite, but no model. The
    checkpoint named as last good (and every one on disk) reconstructs finite images."""
    proc = train_here(tmp_run, "train.steps=50", "train.ckpt_every=1", "optim.lr=1e30", "train.keep_checkpoints=50",
                      check=False)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert "non-finite loss" in line and "last good checkpoint: " in line, line
    named = line.split("last good checkpoint: ")[1]
    saved = [path for _, path in checkpoint.checkpoints(tmp_run / "checkpoints")]
    assert named == (str(saved[-1]) if saved else "none yet")
    images = torch.from_numpy(DSprites().images(np.zeros((4, 6), np.int64)))
    for path in saved:
        model = BetaVAE()
        model.load_state_dict(load_file(path / "model.safetensors"))
        assert torch.isfinite(model.decode(model.encode(images)[0])).all(), path


def test_non_finite_loss_between_reads_names_its_first_bad_step(tmp_run):
    # The device records the first bad step; the host sees it at the next log/checkpoint step (10).
    proc = train_here(tmp_run, "train.steps=50", "train.log_every=10", "train.ckpt_every=10", "optim.lr=1e30",
                 check=False)
    assert proc.returncode == 1
    match = re.search(r"non-finite (loss|gradient norm) at step (\d+); stopped, last good checkpoint: none yet", proc.stderr)
    assert match and 0 < int(match.group(2)) < 9, proc.stderr
    assert not (tmp_run / "checkpoints").exists()


def test_missing_data_file_and_unwritable_run_dir_are_named(tmp_path):
    missing = tmp_path / "dsprites_ndarray.npz"
    proc = train_here(tmp_path / "r", "train.steps=1", f"data.dsprites_npz={missing}", check=False)
    assert proc.returncode == 1 and f"dSprites file not found: {missing}" in proc.stderr
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = train_here(blocker / "run", "train.steps=1", check=False)
    assert proc.returncode == 1 and f"cannot write the run directory {blocker / 'run'}" in proc.stderr


@pytest.mark.integration
def test_launcher_that_drops_ranks_is_refused(tmp_run):
    # `--cpu --num_processes 2` silently starts one process on a CPU-only host (accelerate 1.15).
    proc = run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                "-m", "betavae_dist.train", f"run_dir={tmp_run}", "train.steps=1"], check=False)
    assert proc.returncode != 0
    assert "asked for several processes but started only this one" in proc.stderr
    assert not (tmp_run / "checkpoints").exists()


def test_a_finished_run_is_not_re_exported_under_a_shorter_schedule(tmp_run):
    train_here(tmp_run, "train.steps=4", "train.ckpt_every=2")
    before = weights(tmp_run / "export")
    proc = train_here(tmp_run, "train.steps=2", "train.ckpt_every=2", check=False)
    assert proc.returncode == 1 and "is at step 4, past train.steps=2" in proc.stderr
    assert max_abs_diff(before, weights(tmp_run / "export")) == 0
    assert "steps: 4" in (tmp_run / "config.yaml").read_text()


def start_two_ranks(run_dir, *overrides, log=None, ranks=2):
    """A long 2-rank run in the background (through betavae_dist.launch), and its worker processes
    once step_20 is written."""
    cmd = accelerate_cmd(ranks, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml", f"run_dir={run_dir}",
                         *TINY, "train.steps=100000", "train.ckpt_every=20", *overrides, launcher="betavae_dist.launch")
    out = open(log or os.devnull, "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "DS_ACCELERATOR": "cpu"})
    deadline = time.time() + HUNG
    while not (run_dir / "checkpoints" / "step_20").exists():
        assert time.time() < deadline and proc.poll() is None, "the run did not reach step 20"
        time.sleep(0.1)
    workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()]
    assert len(workers) == ranks
    return proc, workers


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


@pytest.mark.distributed
def test_workers_end_when_their_launcher_dies(tmp_run):
    proc, workers = start_two_ranks(tmp_run)
    proc.kill()  # SIGKILL: the launcher cannot pass anything on
    proc.wait()
    deadline = time.time() + HUNG  # measured 1-3 s
    while any(alive(w) for w in workers):
        assert time.time() < deadline, "workers outlived their launcher"
        time.sleep(0.2)
    newest = checkpoint.latest(tmp_run / "checkpoints")
    assert checkpoint.verify(newest) is None  # they stopped as for SIGTERM: a complete checkpoint


@pytest.mark.distributed
def test_a_killed_rank_is_named_by_the_other_in_one_line(tmp_run, tmp_path):
    log = tmp_path / "log"
    proc, workers = start_two_ranks(tmp_run, log=log)
    os.kill(workers[1], signal.SIGKILL)
    proc.wait(timeout=HUNG)
    lines = [line for line in log.read_text().splitlines() if "betavae_dist.train: error:" in line]
    assert len(lines) == 1 and re.fullmatch(
        r"betavae_dist\.train: error: rank 0 lost its connection to another rank: rank 1 \(pid \d+\) is gone; "
        r"stopping\. Last good checkpoint: .*step_\d+", lines[0]), log.read_text()[-3000:]
    assert proc.returncode == 1 and "Traceback" not in log.read_text()  # neither the survivor's nor the launcher's


@pytest.mark.distributed
def test_a_killed_rank_of_three_is_named_once_per_job(tmp_run, tmp_path):
    """Two ranks lose the third; they cannot agree through the process group any more, and the
    first of them to tell claims it in the run directory: one line for the job."""
    log = tmp_path / "log"
    proc, workers = start_two_ranks(tmp_run, "train.batch_size=12", log=log, ranks=3)
    os.kill(workers[2], signal.SIGKILL)
    proc.wait(timeout=HUNG)
    lines = [line for line in log.read_text().splitlines() if "betavae_dist.train: error:" in line]
    assert len(lines) == 1 and "lost its connection to another rank: rank 2 (pid" in lines[0], log.read_text()[-3000:]
    assert proc.returncode == 1 and "Traceback" not in log.read_text()


@pytest.mark.distributed
def test_a_frozen_rank_stops_the_other_within_the_collective_timeout(tmp_run, tmp_path):
    """...and ends it: the launcher would otherwise wait 30 s more for the stopped process before
    killing it (torch elastic's shutdown timeout), however soon the survivor gave up."""
    log = tmp_path / "log"
    proc, workers = start_two_ranks(tmp_run, "train.collective_timeout=10", log=log)
    os.kill(workers[1], signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        proc.wait(timeout=HUNG)  # the collective timeout is 10 s
    finally:
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)
    took = time.monotonic() - frozen
    assert proc.returncode == 1 and "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert re.search(r"waited train.collective_timeout=10 s for another rank \(frozen, killed or unreachable\): rank 1 "
                     rf"silent for \d+ s \(pid {workers[1]}, ended here\)", log.read_text()), log.read_text()[-3000:]
    assert took < 10 + 30, took  # before: the timeout and elastic's 30 s, always


def test_resume_into_a_run_with_another_config_is_refused_naming_the_keys(tmp_run):
    train_here(tmp_run, "train.steps=2", "train.ckpt_every=2")
    proc = train_here(tmp_run, "train.steps=4", "loss.beta=8", "model.latents=6", check=False)
    assert proc.returncode == 2
    assert (f"{tmp_run} holds a run with another config (model.latents: 10 -> 6; loss.beta: 4.0 -> 8.0); "
            "train.resume=force") in proc.stderr.strip().splitlines()[-1]
    assert "beta: 4.0" in (tmp_run / "config.yaml").read_text()
    # The schedule, logging and evaluation may change; force continues under the new config.
    train_here(tmp_run, "train.steps=4", "train.ckpt_every=4", "train.log_every=1", "eval.n_train=10")
    forced = train_here(tmp_run, "train.steps=6", "loss.beta=8", "train.resume=force")
    assert "resuming from" in forced.stdout and "beta: 8.0" in (tmp_run / "config.yaml").read_text()


@pytest.mark.integration
def test_plain_runs_do_not_import_deepspeed_and_a_missing_one_is_named(tmp_path):
    proc = run([sys.executable, "-m", "betavae_dist.train", f"run_dir={tmp_path / 'a'}", *TINY, "train.steps=1"],
               env={"DS_ACCELERATOR": None})
    assert "Setting accelerator" not in proc.stdout + proc.stderr  # DeepSpeed's import-time warning
    launcher = "import sys; sys.modules['deepspeed'] = None; from betavae_dist.train import main; main(sys.argv[1:])"
    proc = run([sys.executable, "-c", launcher, f"run_dir={tmp_path / 'b'}", "train.steps=1"],
               env={"ACCELERATE_USE_DEEPSPEED": "true"}, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == ("betavae_dist.train: error: the launch config asks for DeepSpeed but "
                                                   "deepspeed is not installed: pip install 'betavae-dist[deepspeed]'")


def test_a_stop_signal_is_acted_on_at_once_whatever_log_every(tmp_run):
    """SLURM warns --signal=B:USR1@120 before a time limit: the run must not wait for a log step
    that is hours away (here 100,000 steps)."""
    def signal_when_training():
        deadline = time.time() + HUNG
        while not (tmp_run / ".ranks" / "rank_0").exists() and time.time() < deadline:  # the stop handler is in place
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR1)

    thread = threading.Thread(target=signal_when_training)
    thread.start()
    proc = train_here(tmp_run, "train.steps=100000", "train.log_every=100000", "train.ckpt_every=100000", check=False)
    thread.join()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    stopped_at = int(re.search(r"stop signal: checkpoint at step (\d+) written", proc.stdout).group(1))
    newest = checkpoint.latest(tmp_run / "checkpoints")
    assert stopped_at < 100000 and newest.name == f"step_{stopped_at}" and checkpoint.verify(newest) is None


@pytest.mark.distributed
def test_a_stop_signal_to_one_rank_stops_both_at_one_checkpoint(tmp_run, tmp_path):
    """The ranks poll for a stop together between log steps: a signal that reaches one rank only
    (log_every 100,000 steps away) is one checkpoint, written by both, and both stop: the launch
    exits 3 (preempted), without the launcher's report of a failed worker."""
    log = tmp_path / "log"
    cmd = accelerate_cmd(2, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml", f"run_dir={tmp_run}",
                         *TINY, "train.steps=100000", "train.log_every=100000", "train.ckpt_every=100000",
                         launcher="betavae_dist.launch")
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + HUNG
    while not all((tmp_run / ".ranks" / f"rank_{r}").exists() for r in (0, 1)):  # both listen for signals
        assert time.time() < deadline and proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.1)
    workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()]
    os.kill(workers[-1], signal.SIGUSR1)
    proc.wait(timeout=HUNG)
    text = log.read_text()
    stopped_at = int(re.search(r"stop signal: checkpoint at step (\d+) written", text).group(1))
    newest = checkpoint.latest(tmp_run / "checkpoints")
    assert newest.name == f"step_{stopped_at}" and checkpoint.verify(newest) is None, text[-3000:]
    assert proc.returncode == 3 and "Traceback" not in text, text[-3000:]


@pytest.mark.integration
def test_the_same_stop_delivered_twice_still_checkpoints(tmp_run):
    """Under SLURM with several nodes, a cancel reaches each worker twice: from SLURM and forwarded
    by the elastic agent, some milliseconds apart. That is one stop, not a request to die at once."""
    cmd = [sys.executable, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml", f"run_dir={tmp_run}",
           *TINY, "train.steps=100000", "train.ckpt_every=20", "train.log_every=200"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + HUNG
    while not (tmp_run / "checkpoints" / "step_20").exists():
        assert time.time() < deadline and proc.poll() is None, "the run did not reach step 20"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)  # handled separately, not coalesced into one
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=HUNG)
    assert proc.returncode == 3 and "stop signal: checkpoint at step" in out, out[-2000:]
    assert checkpoint.verify(checkpoint.latest(tmp_run / "checkpoints")) is None


def test_a_run_whose_model_depends_on_the_split_says_so_once(tmp_path):
    annealed = train_here(tmp_path / "annealed", "train.steps=2", "train.grad_accum=2", "loss.objective=annealed")
    notes = [line for line in annealed.stdout.splitlines() if line.startswith("note: ")]
    assert notes == ["note: loss.objective=annealed is not a mean over samples: with 1 rank(s) x 2 micro-batch(es) its "
                     "gradient is not the whole batch's, so the model depends on them"]
    beta = train_here(tmp_path / "beta", "train.steps=2", "train.grad_accum=2")
    assert "note: " not in beta.stdout


def test_a_repeated_signal_does_not_cut_off_a_checkpoint_being_written(monkeypatch):
    """A signal that comes again later than the grace ends the process at once, except while a
    checkpoint is written (a launcher tearing a job down signals each rank again)."""
    from betavae_dist.stopping import StopSignal

    monkeypatch.setattr(StopSignal, "REPEAT_GRACE", 0.0)
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == "SIGTERM"
        time.sleep(0.01)
        with stop.writing():
            os.kill(os.getpid(), signal.SIGTERM)  # ignored: the checkpoint goes on
        with pytest.raises(SystemExit) as ended:
            os.kill(os.getpid(), signal.SIGTERM)
        assert ended.value.code == 128 + signal.SIGTERM
