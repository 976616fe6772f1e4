"""One table of a study: a row per model (its method, each swept setting, seed, data set, steps,
run directory and status) and a column per score of its evaluation.json, every point of every
sweep, failed and unfinished ones with their status and no scores; as disentanglement_lib's
`aggregate_results` makes. CSV: `pandas.read_csv(path)` reads it in one call."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .export import WEIGHTS
from .export.card import scores
from .metrics import headline_keys
from .rundir import RunDir

if TYPE_CHECKING:
    from .sweep_file import Sweep

TABLE = "table.csv"


def point_status(path: Path) -> tuple[str, dict]:
    """('evaluated' | 'trained' | 'unfinished', results) for one run directory."""
    results: dict = {}
    run_dir = RunDir(path)
    if run_dir.metrics.is_file():
        train_lines = [json.loads(line) for line in run_dir.metrics.read_text().splitlines() if '"recon"' in line]
        if train_lines:
            results["recon"] = train_lines[-1]["recon"]
            results["kl"] = train_lines[-1]["kl"]
    if run_dir.evaluation.is_file():
        results.update({k: v for k, v in json.loads(run_dir.evaluation.read_text()).items() if k in headline_keys()})
        return "evaluated", results
    if (run_dir.export / WEIGHTS).is_file():
        return "trained", results
    if failed := run_dir.failure():
        return f"failed ({failed['problem']})", results
    last = run_dir.last_checkpoint()
    return f"unfinished (last checkpoint: {last.name if last else 'none'})", results


def model_row(sweep: Sweep, point: dict) -> dict:
    cfg, run_dir = sweep.config(point), sweep.run_dir(point)
    status, _ = point_status(run_dir)
    row = {"method": cfg.loss.objective, **point, "seed": cfg.seed,
           "data": cfg.data.name if cfg.data.source == "dataset" else cfg.data.shards, "steps": cfg.train.steps,
           "run_dir": str(run_dir), "status": status.split(" (")[0], "status_detail": status}
    evaluation = RunDir(run_dir).evaluation
    if evaluation.is_file():
        row.update(scores(json.loads(evaluation.read_text())))
    return row


def study_table(sweeps: list[Sweep]) -> list[dict]:
    return [model_row(sweep, point) for sweep in sweeps for point in sweep.points]


def write_table(rows: list[dict], path: Path) -> Path:
    """The rows as CSV, a column for every key any row has (in the order first seen); blank where a
    row has none (a setting another method sweeps, a score of a point not evaluated)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path
