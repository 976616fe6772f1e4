"""Kill-and-resume drill: SIGKILL a training run at random moments (during a save too), resume it,
and compare its export with an uninterrupted run's.

    python benchmarks/drills.py [--runs 10] [--ranks 1|2] [--seed 0]
    python benchmarks/drills.py --failures      # the failure cases, as one table

Prints one row per drill and "resumes equal: K / N"; exits 1 when any resumed run differs from the
uninterrupted one by more than 1e-6 or fails to finish. tests/test_drills.py runs two drills.
`--failures` runs each failure case of the reliability review for real (a damaged checkpoint, a
killed and a frozen rank, a full disk, diverged weights, a file in the way, a stop signal), two
ranks through `python -m betavae_dist.launch`, and prints a table: case, exit code, the line it
ended with, and how many lines the job wrote to stderr in all (README, "Reliability").
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = ["train.steps=40", "train.ckpt_every=4", "train.batch_size=32", "train.log_every=4", "train.progress=false"]


def command(run_dir: Path, ranks: int, launcher: str = "accelerate.commands.launch", launch_one: bool = False) -> list[str]:
    """The drill's training command: `ranks` through `launcher`; one process alone, or (`launch_one`)
    through the launcher too."""
    config = "launch/cpu_ddp.yaml" if ranks > 1 else "launch/single.yaml"
    launch = [sys.executable, "-m", launcher, "--config_file", str(ROOT / config),
              "--num_processes", str(ranks)] if ranks > 1 or launch_one else [sys.executable]
    return [*launch, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml", f"run_dir={run_dir}",
            *SCHEDULE]


def max_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "export" / "model.safetensors"), load_file(b / "export" / "model.safetensors")
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def drill(run_dir: Path, ranks: int, kill_after: float) -> tuple[str, float]:
    """Kill a run `kill_after` seconds in, resume it to the end; (what the kill hit, max |Δ| to straight)."""
    proc = subprocess.Popen(command(run_dir, ranks), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=kill_after)
        hit = "finished first"
    except subprocess.TimeoutExpired:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)])  # the launcher and every rank
        proc.wait()
        saving = list((run_dir / "checkpoints").glob(".tmp-*")) if (run_dir / "checkpoints").exists() else []
        done = sorted((run_dir / "checkpoints").glob("step_*")) if (run_dir / "checkpoints").exists() else []
        hit = f"killed {'during a save' if saving else 'between saves'}, {len(done)} checkpoint(s)"
    resumed = subprocess.run(command(run_dir, ranks), cwd=ROOT, capture_output=True, text=True, timeout=600)
    if resumed.returncode != 0:
        return hit + f"; resume failed: {resumed.stderr.strip().splitlines()[-1:]}", float("inf")
    return hit, max_diff(run_dir.parent / "straight", run_dir)


def last_line(run_dir: Path, *overrides: str, ranks: int = 1, act=None, limit=None, launch_one=False,
              launch_args=()) -> tuple[int, str, int]:
    """Train with `overrides` (after the drill schedule); `act(proc, workers)` once step_4 exists.
    (exit code, the run's last error, stop or skipped-checkpoint line, the job's lines on stderr)."""
    cmd = command(run_dir, ranks, "betavae_dist.launch", launch_one)
    cmd = [*cmd[:3], *launch_args, *cmd[3:], *overrides]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=limit)
    if act:
        while not (run_dir / "checkpoints" / "step_4").exists() and proc.poll() is None:
            time.sleep(0.05)
        workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                      text=True).stdout.split()]
        act(proc, workers)
    out, err = proc.communicate(timeout=900)
    said = [line for line in (out + err).splitlines() if line.startswith(SAID) or "betavae_dist.train: " in line]
    line = (said[-1] if said else (out + err).strip().splitlines()[-1]).replace(str(run_dir), "RUN")
    return proc.returncode, line, len([line for line in err.splitlines() if line.strip()])


SAID = ("stop signal", "skipping checkpoint")  # with the error lines, what a case's row quotes


def failures(root: Path) -> list[tuple[str, int, str, int]]:
    """Each failure case for real: (case, exit code, the line it ended with, its lines on stderr)."""
    import resource
    import shutil

    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    rows = []
    base = root / "base"
    subprocess.run(command(base, 1) + ["train.steps=8"], cwd=ROOT, check=True, capture_output=True)
    for case, steps in (("newest checkpoint damaged (resumes from step_4)", (8,)), ("every checkpoint damaged", (4, 8))):
        damaged = shutil.copytree(base, root / f"damaged_{len(steps)}")
        for step in steps:
            flip(damaged / "checkpoints" / f"step_{step}" / "model.safetensors")
        rows.append((case, *last_line(damaged, "train.steps=12")))
    kill_one = lambda proc, workers: os.kill(workers[-1], signal.SIGKILL)
    rows.append(("a rank killed (2 ranks)", *last_line(root / "killed", "train.steps=100000", ranks=2, act=kill_one)))
    freeze_one = lambda proc, workers: os.kill(workers[-1], signal.SIGSTOP)
    rows.append(("a rank frozen (2 ranks)", *last_line(root / "frozen", "train.steps=100000", "train.collective_timeout=10",
                                                       ranks=2, act=freeze_one)))
    full = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # a disk that takes 1 MiB a file
    rows.append(("disk full at a save (2 ranks)", *last_line(root / "full", ranks=2, limit=full)))
    rows.append(("weights diverged (optim.lr=1e30)", *last_line(root / "diverged", "optim.lr=1e30", "train.ckpt_every=1")))
    rows.append(("weights diverged (2 ranks)", *last_line(root / "diverged2", "optim.lr=1e30", "train.ckpt_every=1",
                                                          ranks=2)))
    (root / "junk" / "checkpoints").mkdir(parents=True)
    (root / "junk" / "checkpoints" / "step_8").write_text("someone's notes")
    rows.append(("a file named step_8 in checkpoints/", *last_line(root / "junk")))
    stop = lambda proc, workers: os.killpg(proc.pid, signal.SIGUSR1)
    rows.append(("SIGUSR1, log step 100,000 away", *last_line(root / "stop", "train.steps=100000", "train.log_every=100000",
                                                              act=stop)))
    term = lambda proc, workers: proc.send_signal(signal.SIGTERM)  # the launch alone, as `kill` would
    for ranks in (1, 2):
        rows.append((f"SIGTERM to the launch ({ranks} process{'es' * (ranks > 1)})",
                     *last_line(root / f"term{ranks}", "train.steps=100000", "train.log_every=100000", ranks=ranks,
                                act=term, launch_one=True)))
    rows.append(("the launch's --config_file missing", *last_line(root / "noconfig", launch_args=["--config_file",
                                                                                                  "launch/missing.yaml"],
                                                                  launch_one=True)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--ranks", type=int, default=1, choices=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--failures", action="store_true", help="run the failure cases instead, print their table")
    args = parser.parse_args(argv)
    if args.failures:
        with tempfile.TemporaryDirectory() as tmp:
            rows = failures(Path(tmp))
        print("| case | exit | its line | stderr lines |\n|---|---|---|---|")
        for case, code, line, lines in rows:
            print(f"| {case} | {code} | {line.replace('|', '/')} | {lines} |")
        return 0
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        subprocess.run(command(root / "straight", args.ranks), cwd=ROOT, check=True, capture_output=True)
        duration = time.perf_counter() - start
        equal = 0
        for i in range(args.runs):
            kill_after = rng.uniform(0.55, 1.0) * duration  # the first half is mostly start-up
            hit, diff = drill(root / f"drill_{i}", args.ranks, kill_after)
            equal += diff < 1e-6
            print(f"drill {i}: kill at {kill_after:.1f} s of {duration:.1f}: {hit}; max |Δ| to straight {diff:.2g}", flush=True)
    print(f"resumes equal: {equal} / {args.runs}")
    return 0 if equal == args.runs else 1


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
