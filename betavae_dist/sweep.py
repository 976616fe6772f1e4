"""Sweeps over any settings (β, seeds, objectives, ...): grid expansion for SLURM job arrays, packs, and the report.

    python -m betavae_dist.sweep run SWEEP.yaml [--pack K] [--index I] [key=value ...]   # train, evaluate, report
    python -m betavae_dist.sweep count SWEEP.yaml [--pack K] # number of array tasks (points, or packs)
    python -m betavae_dist.sweep point SWEEP.yaml INDEX      # what point INDEX is
    python -m betavae_dist.sweep point SWEEP.yaml INDEX --shell   # the same, as bash variables
    python -m betavae_dist.sweep report SWEEP_DIR            # table (terminal, Markdown, CSV) + plot
    python -m betavae_dist.sweep study SWEEP_DIR ... --out DIR   # several methods side by side
    python -m betavae_dist.sweep udr SWEEP_DIR [--points N]  # UDR of each setting's seeds, into evaluation.json

The sweep file (its format: sweep_file.py) gives the base config, the grid and the overrides.

`run` trains the points in packs of K (pack/: one process, torch.func; a point alone, K = 1, with
the solo trainer, as slurm/sweep.sh without PACK does), evaluates them together
and writes the report; with `--index I` only pack I (points I·K .. I·K+K-1), as array task I of
slurm/sweep.sh does with PACK=K. Points already evaluated are skipped, and so are points that
failed before (RUN/failed.json; delete it to retry); a killed pack resumes from its checkpoints.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from .config import ConfigError
from .errors import BetaVAEError
from .experiment import Config
from .pack.evaluate import evaluate_pack
from .pack.train import split_packs, train_pack
from .progress import evaluation_progress
from .report import print_report, report, study_report
from .rundir import RunDir, TrainingError
from .solo import train
from .stopping import Preempted
from .sweep_file import Sweep
from .udr import score_sweep


def run(sweep: Sweep, pack: int, index: int | None = None) -> int:
    """Train and evaluate the chosen points in packs of `pack`, then report; the exit status."""
    sweep.copy_into_out_dir()
    todo, failed = [], []
    for point in sweep.pack_points(pack, index):
        run_dir, name = RunDir(sweep.run_dir(point)), sweep.name(point)
        if run_dir.evaluation.is_file():
            print(f"{name}: already evaluated")
        elif record := run_dir.failure():
            print(f"{name}: failed before ({record['problem']}; {run_dir.failed}): skipped, delete that file to retry")
            failed.append(name)
        else:
            todo.append(point)
    configs = {str(sweep.run_dir(p)): (sweep.config(p), sweep.config(p, evaluation=True)) for p in todo}
    for group in split_packs([training for training, _ in configs.values()]):
        for start in range(0, len(group), pack):
            cfgs = group[start:start + pack]
            lost = train_points(cfgs)
            failed += [Path(c.run_dir).name for c in lost]
            done = [c for c in cfgs if c not in lost]
            if done:
                print(f"evaluating {', '.join(Path(c.run_dir).name for c in done)}", flush=True)
                with evaluation_progress() as bars:
                    evaluate_pack([configs[c.run_dir][1] for c in done], [RunDir(c.run_dir).export for c in done],
                                  progress=bars)
    print_report(report(sweep), sweep.out_dir)
    if failed:
        print(f"sweep: {len(failed)} point(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def train_points(cfgs: list[Config]) -> list[Config]:
    """Train a pack (pack/), or one point alone with the solo trainer, as `slurm/sweep.sh` without
    PACK does (no vmap for one point); returns the points that failed, each with RUN/failed.json."""
    if len(cfgs) > 1:
        return train_pack(cfgs)
    try:
        train(cfgs[0])
    except TrainingError as e:
        RunDir(cfgs[0].run_dir).record_failure(str(e), None)
        print(f"point {cfgs[0].run_dir} failed: {e}")
        return cfgs
    return []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m betavae_dist.sweep", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("count")
    p.add_argument("sweep")
    p.add_argument("--pack", type=int, default=None, help="points per array task (default: the file's pack)")
    p.add_argument("--pack-size", action="store_true", help="print the pack size instead")
    p = sub.add_parser("run")
    p.add_argument("sweep")
    p.add_argument("--pack", type=int, default=None, help="points per process (default: the file's pack, else 1)")
    p.add_argument("--index", type=int, default=None, help="run pack INDEX only (a job array's task)")
    p.epilog = ("key=value settings after the arguments apply to every point: eval.* ones after the file's eval "
                "list, the others after its train list")
    p = sub.add_parser("point")
    p.add_argument("sweep")
    p.add_argument("index", type=int)
    p.add_argument("--shell", action="store_true", help="print bash assignments for slurm/sweep.sh")
    sub.add_parser("report").add_argument("sweep", help="the sweep directory (or its sweep file)")
    p = sub.add_parser("udr", help="UDR (unsupervised model selection) of each setting's seeds, into evaluation.json")
    p.add_argument("sweep", help="the sweep directory (or its sweep file)")
    p.add_argument("--points", type=int, default=1000, help="images the models' codes are compared on")
    p = sub.add_parser("study", help="several sweeps (one method each) side by side: study.md, study.png")
    p.add_argument("sweeps", nargs="+", help="sweep directories (or their sweep files)")
    p.add_argument("--out", type=Path, required=True, help="where study.md and study.png go")
    args, overrides = parser.parse_known_args(argv)
    if overrides and (args.command != "run" or any(o.startswith("-") or "=" not in o for o in overrides)):
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    try:
        if args.command == "study":
            print(f"wrote {study_report([Sweep.load(path) for path in args.sweeps], args.out)}, study.png")
            return
        sweep = Sweep.load(args.sweep)
        pack = sweep.pack if getattr(args, "pack", None) is None else args.pack
        if pack < 1:
            raise ConfigError(f"--pack: expected a positive number of points per process, got {pack}")
        if args.command == "udr":
            score_sweep(sweep, args.points)
        elif args.command == "count":
            print(pack if args.pack_size else math.ceil(len(sweep.points) / pack))
        elif args.command == "run":
            sweep.eval += [o for o in overrides if o.startswith("eval.")]
            sweep.train += [o for o in overrides if not o.startswith("eval.")]
            raise SystemExit(run(sweep, pack, args.index))
        elif args.command == "point":
            point = sweep.point(args.index)
            run_dir = sweep.run_dir(point)
            if args.shell:
                sweep.copy_into_out_dir()
                train_args = (["--config", sweep.base] if sweep.base else []) + sweep.train_overrides(point)
                print(f"RUN_DIR={shlex.quote(str(run_dir))}")
                print(f"TRAIN_ARGS=({' '.join(map(shlex.quote, train_args))})")
                print(f"EVAL_ARGS=({' '.join(map(shlex.quote, sweep.eval))})")
            else:
                print(f"point {args.index} of {len(sweep.points)}: {sweep.name(point)} -> {run_dir}")
                print("  " + " ".join(sweep.train_overrides(point)))
        else:
            print_report(report(sweep), sweep.out_dir)
    except Preempted as e:
        print(e, flush=True)
        raise SystemExit(e.exit_code) from None
    except BetaVAEError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None


if __name__ == "__main__":
    main()
