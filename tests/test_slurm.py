"""slurm/ scripts on a real SLURM (2 emulated nodes on this machine): sweeps, multi-node, requeue."""

import json
import re
import subprocess
import time

import pytest

from betavae_dist import checkpoint
from helpers import HUNG, ROOT, write_sweep

pytestmark = pytest.mark.slurm

TINY = "train.batch_size=16 train.progress=false train.log_every=2"


def sbatch(env, *args, wait=True, **extra_env):
    cmd = ["sbatch", "--parsable", *(["--wait"] if wait else []), *args]
    return subprocess.run(cmd, cwd=ROOT, env={**env, **extra_env}, capture_output=True, text=True, timeout=HUNG)


def test_sweep_array_trains_evaluates_exports_and_reports(slurm, tmp_path):
    sweep = write_sweep(tmp_path / "sweep.yaml", tmp_path / "sweep", {"loss.beta": [1, 4]},
                        ["train.steps=4", "train.batch_size=16", "train.progress=false"],
                        ["eval.metrics=beta_vae,mig", "eval.n_train=100", "eval.n_eval=50", "eval.pairs=8",
                         "eval.n_samples=200"])
    # Each array task spans both nodes: 2 ranks per point.
    proc = sbatch(slurm, "--array=0-1", "--nodes=2", f"--output={tmp_path}/slurm-%A_%a.out", "slurm/sweep.sh",
                  SWEEP=str(sweep))
    logs = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert proc.returncode == 0, proc.stderr + logs[-4000:]
    assert logs.count("2 node(s) x 1 process(es)") == 2 and "2 process(es) on cpu" in logs
    for point in ("beta1", "beta4"):
        run_dir = tmp_path / "sweep" / point
        assert (run_dir / "export" / "model.safetensors").is_file()
        assert 0 <= json.loads((run_dir / "evaluation.json").read_text())["beta_vae.eval_accuracy"] <= 1
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "| 1 | 1 |" in report and "| 4 | 1 |" in report and "Not in the table" not in report
    assert (tmp_path / "sweep" / "report.csv").is_file() and (tmp_path / "sweep" / "report.png").is_file()

    # A finished point is not redone.
    again = sbatch(slurm, "--array=1", f"--output={tmp_path}/again-%A_%a.out", "slurm/sweep.sh", SWEEP=str(sweep))
    assert again.returncode == 0
    assert "already trained and evaluated" in "".join(p.read_text() for p in tmp_path.glob("again-*.out"))


def test_default_sweep_script_is_accepted_as_is(slurm):
    proc = subprocess.run(["sbatch", "--test-only", "slurm/sweep.sh"], cwd=ROOT, env=slurm, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    count = subprocess.run(["python", "-m", "betavae_dist.sweep", "count", "configs/sweeps/dsprites_beta.yaml"],
                           cwd=ROOT, env=slurm, capture_output=True, text=True).stdout.strip()
    assert "--array=0-%d" % (int(count) - 1) in (ROOT / "slurm" / "sweep.sh").read_text()


def test_two_node_training_has_two_ranks(slurm, tmp_path):
    log = tmp_path / "train.out"
    proc = sbatch(slurm, "--nodes=2", f"--output={log}", "slurm/train.sh",
                  OVERRIDES=f"run_dir={tmp_path / 'run'} train.steps=4 {TINY}")
    text = log.read_text()
    assert proc.returncode == 0, proc.stderr + text[-4000:]
    assert "2 node(s) x 1 process(es)" in text
    assert "2 process(es) on cpu" in text and "MULTI_CPU" in text
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()


def queued(slurm, job) -> bool:
    """Whether the job is pending, running or completing."""
    return bool(subprocess.run(["squeue", "-h", "-j", job], env=slurm, capture_output=True, text=True).stdout.strip())


def tail(log) -> str:
    return log.read_text()[-3000:] if log.exists() else "no log"


def wait_for(done, slurm, job, log, what: str) -> None:
    """Wait until `done()`; fail when job `job` has left the queue without it, or hangs (helpers.HUNG).
    The job's state ends the wait, however loaded the machine."""
    hung = time.monotonic() + HUNG
    while not done():
        if not queued(slurm, job) and not done():
            raise AssertionError(f"job {job} ended before {what}:\n{tail(log)}")
        assert time.monotonic() < hung, f"job {job}: no {what} after {HUNG} s\n{tail(log)}"
        time.sleep(0.5)


def start_long_job(slurm, tmp_path, nodes=1):
    """A 600-step training job, once it has written its step-50 checkpoint: (job, log, run dir)."""
    log, run_dir = tmp_path / "train.out", tmp_path / "run"
    job = sbatch(slurm, f"--output={log}", f"--nodes={nodes}", "slurm/train.sh", wait=False,
                 OVERRIDES=f"run_dir={run_dir} train.steps=600 train.ckpt_every=50 {TINY}").stdout.strip()
    wait_for((run_dir / "checkpoints" / "step_50").exists, slurm, job, log, "the step-50 checkpoint")
    return job, log, run_dir


def preempt_and_finish(slurm, job, log, done) -> str:
    """What SLURM does before a time limit or preemption with --signal=B:USR1@120; then wait for
    the requeued job to write `done`. Returns the job's log."""
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], env=slurm, check=True)
    wait_for(lambda: "requeueing job" in log.read_text(), slurm, job, log, "the requeue")
    # SLURM delays a requeued job's start by minutes; that wait is the scheduler's, not ours.
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm, capture_output=True)
    wait_for(done.exists, slurm, job, log, f"{done.name} after the requeue")
    return log.read_text()


def test_signal_checkpoints_requeues_and_resumes(slurm, tmp_path):
    job, log, run_dir = start_long_job(slurm, tmp_path)
    text = preempt_and_finish(slurm, job, log, run_dir / "export" / "model.safetensors")
    assert "stop signal: checkpoint at step" in text
    assert "requeueing job" in text and "resuming from" in text
    assert "Traceback" not in text and "srun: error" not in text, text[-3000:]  # a stop, not a failure
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["step"] == 600


def test_scancel_checkpoints_and_ends_the_job_without_requeue(slurm, tmp_path):
    # Two nodes, one rank each: both ranks write the stop checkpoint together, and it verifies.
    job, log, run_dir = start_long_job(slurm, tmp_path, nodes=2)
    subprocess.run(["scancel", job], env=slurm, check=True)  # TERM, as a user cancelling the job
    hung = time.monotonic() + HUNG
    while queued(slurm, job):
        assert time.monotonic() < hung, tail(log)
        time.sleep(0.5)
    time.sleep(3)  # a requeued job would be back in the queue by now
    text = log.read_text()
    assert not queued(slurm, job) and "requeueing job" not in text, text[-3000:]
    assert "cancelled: the trainers checkpoint if they can; no requeue" in text
    assert "Traceback" not in text, text[-3000:]
    assert "stop signal: checkpoint at step" in text
    stopped_at = int(re.search(r"stop signal: checkpoint at step (\d+)", text).group(1))
    newest = checkpoint.latest(run_dir / "checkpoints")
    assert newest.name == f"step_{stopped_at}" and checkpoint.verify(newest) is None
    assert not (run_dir / "export").exists()


def test_packed_sweep_task_checkpoints_on_preemption_requeues_and_finishes(slurm, tmp_path):
    sweep = write_sweep(tmp_path / "sweep.yaml", tmp_path / "sweep", {"loss.beta": [1, 4]},
                        ["train.steps=600", "train.ckpt_every=50", *TINY.split()],
                        ["eval.metrics=beta_vae", "eval.n_train=100", "eval.n_eval=50", "eval.pairs=8"])
    count = subprocess.run(["python", "-m", "betavae_dist.sweep", "count", str(sweep), "--pack", "2"],
                           cwd=ROOT, env=slurm, capture_output=True, text=True).stdout.strip()
    assert count == "1"  # one array task runs both points
    log = tmp_path / "pack.out"
    job = sbatch(slurm, "--array=0", f"--output={log}", "slurm/sweep.sh", wait=False, SWEEP=str(sweep), PACK="2").stdout.strip()
    wait_for((tmp_path / "sweep" / "beta4" / "checkpoints" / "step_50").exists, slurm, f"{job}_0", log,
             "the step-50 checkpoints")
    text = preempt_and_finish(slurm, f"{job}_0", log, tmp_path / "sweep" / "report.md")
    assert text.count("pack of 2 on cpu") == 2 and "stop signal: checkpoints at step" in text and "resuming at step" in text
    assert "Traceback" not in text and "srun: error" not in text, text[-3000:]
    for point in ("beta1", "beta4"):
        lines = [json.loads(line) for line in (tmp_path / "sweep" / point / "metrics.jsonl").read_text().splitlines()]
        assert lines[-1]["step"] == 600 and (tmp_path / "sweep" / point / "evaluation.json").is_file()
