"""Kill-and-resume drill: SIGKILL a training run at random moments (during a save too), resume it,
and compare its export with an uninterrupted run's.

    python benchmarks/drills.py [--runs 10] [--ranks 1|2] [--seed 0]

Prints one row per drill and "resumes equal: K / N"; exits 1 when any resumed run differs from the
uninterrupted one by more than 1e-6 or fails to finish. tests/test_drills.py runs two drills.
"""

from __future__ import annotations

import argparse
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


def command(run_dir: Path, ranks: int) -> list[str]:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "launch/cpu_ddp.yaml"),
              "--num_processes", str(ranks)] if ranks > 1 else [sys.executable]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--ranks", type=int, default=1, choices=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
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
