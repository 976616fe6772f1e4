"""`python -m betavae_dist.launch`: its own checks before anything starts, its exit codes, and stop
signals, whichever accelerate is installed. CI runs this file again under the lowest accelerate the
project admits (constraints/accelerate-lowest.txt; BETAVAE_ACCELERATE names the version expected)."""

import os
import re
import signal
import subprocess
import sys
import time

import accelerate
import pytest
from packaging.version import Version

from betavae_dist import checkpoint
from betavae_dist.launch import main as launch_main
from helpers import CPU_DDP, HUNG, ROOT, TINY, accelerate_cmd, free_port, in_process, run


def test_the_accelerate_under_test_is_admitted_and_the_one_asked_for():
    lowest = re.search(r'"accelerate>=([\d.]+)', (ROOT / "pyproject.toml").read_text()).group(1)
    assert Version(accelerate.__version__) >= Version(lowest)
    if os.environ.get("BETAVAE_ACCELERATE"):
        assert accelerate.__version__ == os.environ["BETAVAE_ACCELERATE"]
        launched = run([sys.executable, "-c", "import accelerate; print(accelerate.__version__)"]).stdout.strip()
        assert launched == os.environ["BETAVAE_ACCELERATE"]  # the processes the tests start too


@pytest.mark.parametrize("content, why", [
    (None, "No such file or directory"),
    ("num_processes: [2\n", "while parsing a flow sequence"),
    ("- a list\n", "not a YAML mapping of accelerate's launch settings"),
])
def test_a_missing_or_bad_launch_config_file_is_one_line_and_exit_2(tmp_path, content, why):
    path = tmp_path / "launch.yaml"
    if content is not None:
        path.write_text(content)
    for args in (["-m", "betavae_dist.train"], ["--num_processes", "2", "-m", "some.other_module"]):
        proc = in_process(launch_main, ["--config_file", str(path), *args, f"run_dir={tmp_path / 'r'}"])
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"betavae_dist.launch: error: --config_file {path}: ") and why in proc.stderr


@pytest.mark.integration
def test_launch_help_says_what_it_adds_before_accelerates_usage():
    proc = run([sys.executable, "-m", "betavae_dist.launch", "--help"])
    assert proc.stdout.startswith("`accelerate launch`, with the trainer's config checked before any process starts.")
    assert "accelerate launch's options follow." in proc.stdout and "--num_processes" in proc.stdout


@pytest.mark.distributed
@pytest.mark.parametrize("override, message", [
    ("train.batch_size=15", "train.batch_size=15 is not divisible by 2 ranks x train.grad_accum=1"),
    ("train.steps=0", "train.steps: must be positive, got 0"),
    ("model.arch=resnet", "model.arch: 'resnet' is not one of"),
])
def test_a_two_rank_launch_through_betavae_dist_launch_is_one_line_and_exit_2(tmp_path, override, message):
    """Plain `accelerate launch` ends such a run with exit 1 and torch elastic's ChildFailedError
    report after each rank's line; `python -m betavae_dist.launch` checks first and starts nothing."""
    proc = run([sys.executable, "-m", "betavae_dist.launch", "--config_file", str(CPU_DDP), "--num_processes", "2",
                "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml", f"run_dir={tmp_path / 'r'}", override],
               check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("betavae_dist.train: config error:") and message in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("failures, status, line", [
    ([(0, 3, 11), (1, -15, 12)], 3, None),  # preempted; the launcher then stopped rank 1 (SIGTERM)
    ([(1, 1, 12), (0, -15, 11)], 1, None),  # rank 1 told its error in a line of its own
    ([(0, 2, None)], 2, None),  # one process, through accelerate's simple launcher
    ([(0, 120, None)], 1, None),  # a status the README does not name is a run-time failure
    ([(1, -9, 12), (0, -15, 11)], 1, None),  # rank 0 was alive when rank 1 died: it named rank 1 itself
    ([(1, -9, 12), (0, -9, 11)], 1, "rank 1 (pid 12) was ended by SIGKILL without a word"),
    ([(0, -6, None)], 1, "rank 0 was ended by SIGABRT without a word"),
    ([(0, -2, 11), (1, -2, 12)], 130, None),  # Ctrl-C, passed on to the workers
])
def test_a_launch_exits_as_its_first_failing_worker_meant(failures, status, line):
    from betavae_dist.launch import exit_status

    got_status, got_line = exit_status(failures)
    assert got_status == status and (got_line is None if line is None else line in got_line)


@pytest.mark.parametrize("ranks", [pytest.param(1, marks=pytest.mark.integration),
                                   pytest.param(2, marks=pytest.mark.distributed)])
def test_a_stop_signal_to_the_launch_checkpoints_and_exits_3(tmp_path, ranks):
    """The launch handles SIGTERM itself (accelerate 1.16's one-process launcher would exit 143 and
    kill the worker 5 s later): the workers write their stop checkpoint, and the launch exits 3."""
    run_dir, log = tmp_path / "run", tmp_path / "log"
    cmd = [sys.executable, "-m", "betavae_dist.launch", "--num_processes", str(ranks), "--main_process_port",
           str(free_port()), *(["--config_file", str(CPU_DDP)] if ranks > 1 else []), "-m", "betavae_dist.train",
           "--config", "configs/dsprites_beta4.yaml", f"run_dir={run_dir}", *TINY, "train.steps=100000",
           "train.log_every=100000", "train.ckpt_every=100000"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + HUNG
    while not all((run_dir / ".ranks" / f"rank_{r}").exists() for r in range(ranks)):  # they listen for signals
        assert time.time() < deadline and proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=HUNG)
    text = log.read_text()
    assert proc.returncode == 3 and "Traceback" not in text, text[-3000:]
    stopped_at = int(re.search(r"stop signal: checkpoint at step (\d+) written", text).group(1))
    newest = checkpoint.latest(run_dir / "checkpoints")
    assert newest.name == f"step_{stopped_at}" and checkpoint.verify(newest) is None


@pytest.mark.distributed
def test_a_divergence_on_two_ranks_is_one_line(tmp_path):
    cmd = accelerate_cmd(2, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml",
                         f"run_dir={tmp_path / 'r'}", *TINY, "optim.lr=1e30", "train.ckpt_every=1", "train.steps=4",
                         launcher="betavae_dist.launch")
    proc = run(cmd, check=False)
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("betavae_dist.train: error: the weights after step 1 give a non-finite loss")
