"""Sweep reports: a table (Markdown, CSV, terminal) and a plot of the headline metrics against the
swept setting, mean ± sd over seeds; and a study report that puts several sweeps (one per method)
side by side. Each writes the table of every model too (table.py).
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from .analysis import analyse
from .data import DATASETS
from .metrics import headline_keys
from .metrics.codes import factor_set
from .table import TABLE, point_status, study_table, write_table

if TYPE_CHECKING:
    from .sweep_file import Sweep


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4g} ± {std:.2g}"


def swept_key(sweep: Sweep) -> str:
    """The setting a report puts on its x axis: loss.beta if swept, else the grid's first key but seed."""
    if "loss.beta" in sweep.grid:
        return "loss.beta"
    return next((key for key in sweep.grid if key != "seed"), next(iter(sweep.grid)))


def gather(sweep: Sweep) -> tuple[dict, list]:
    """({value of the group key: [each evaluated point's results]}, [(point, status) not evaluated])."""
    rows, problems, key = {}, [], swept_key(sweep)
    for point in sweep.points:
        status, results = point_status(sweep.run_dir(point))
        if status != "evaluated":
            problems.append((sweep.name(point), status))
            continue
        rows.setdefault(point[key], []).append(results)
    return rows, problems


def report(sweep: Sweep) -> dict:
    """Write report.md, report.csv and report.png into the sweep directory; return the rows."""
    group_key = swept_key(sweep)
    rows, problems = gather(sweep)
    columns = [c for c in (*headline_keys(), "recon") if any(c in r for group in rows.values() for r in group)]
    table = [{group_key: key, "n": len(group),
              **{c: mean_std([r[c] for r in group if c in r]) for c in columns}} for key, group in sorted(rows.items())]
    out = sweep.out_dir
    out.mkdir(parents=True, exist_ok=True)
    header = [group_key, "n", *columns]
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*header[:2], *(f"{c} mean" for c in columns), *(f"{c} std" for c in columns)])
        for key, group in sorted(rows.items()):
            values = [[r[c] for r in group if c in r] for c in columns]
            writer.writerow([key, len(group), *(statistics.mean(v) if v else "" for v in values),
                             *(statistics.stdev(v) if len(v) > 1 else 0.0 for v in values)])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in table]
    if problems:
        lines += ["", "Not in the table:", *(f"- {name}: {status}" for name, status in problems)]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    cfg = sweep.config(sweep.points[0])
    n = sum(len(group) for group in rows.values())
    _plot(rows, group_key, columns, out / "report.png",
          f"{cfg.loss.objective} on {cfg.data.name}, {cfg.train.steps} steps: mean ± sd over seeds, n = {n} models")
    write_table(study_table([sweep]), out / TABLE)
    return {"group": group_key, "columns": columns, "rows": table, "problems": problems, "results": rows}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _errorbar(ax, rows: dict, group_key: str, column: str) -> None:
    """`column` against the swept setting: mean ± sd over each setting's points."""
    keys = sorted(rows)
    values = [[r[column] for r in rows[k] if column in r] for k in keys]
    means = [statistics.mean(v) if v else math.nan for v in values]
    stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
    ax.errorbar(keys, means, yerr=stds, marker="o", capsize=3)
    ax.set_xlabel(group_key)
    ax.set_ylabel(column)
    numeric = all(isinstance(k, (int, float)) for k in keys)
    if numeric and keys and min(keys) > 0 and max(keys) / min(keys) >= 8:  # a geometric grid: log axis
        ax.set_xscale("log")
    if numeric:  # ticks at the settings' own values (β = 1, 2, 4, not 2⁰, 2¹, 2²)
        ax.set_xticks(keys, [f"{k:g}" for k in keys])
        ax.minorticks_off()


def _plot(rows: dict, group_key: str, columns: list[str], path: Path, title: str) -> None:
    """Every headline metric and recon against the swept setting, mean ± sd over seeds."""
    plt = _pyplot()
    panels = columns or ["recon"]
    width = min(len(panels), 4)
    fig, axes = plt.subplots(math.ceil(len(panels) / width), width, figsize=(4 * width, 3.2 * math.ceil(len(panels) / width)),
                             squeeze=False)
    for ax, column in zip(axes.flat, panels):
        _errorbar(ax, rows, group_key, column)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def study_report(sweeps: list[Sweep], out: Path) -> Path:
    """Methods side by side (disentanglement_lib's study): a column per sweep (one method each),
    a row per headline metric, each against the sweep's setting, mean ± sd over seeds (study.png);
    study.md holds the figure and each sweep's own table (its report, written again)."""
    plt = _pyplot()
    reports = [report(sweep) for sweep in sweeps]  # each sweep's own table, written again
    metrics = [c for c in (*headline_keys(), "recon")
               if any(c in r for result in reports for group in result["results"].values() for r in group)]
    fig, axes = plt.subplots(max(len(metrics), 1), len(sweeps), figsize=(3.4 * len(sweeps), 2.6 * max(len(metrics), 1)),
                             squeeze=False, sharey="row")  # one axis per metric: the methods compare
    sections = []
    for j, (sweep, result) in enumerate(zip(sweeps, reports)):
        method = sweep.config(sweep.points[0]).loss.objective
        axes[0][j].set_title(method)
        for i, metric in enumerate(metrics):
            _errorbar(axes[i][j], result["results"], result["group"], metric)
        sections += [f"## {method} ({sweep.out_dir})", "", (sweep.out_dir / "report.md").read_text()]
    cfg = sweeps[0].config(sweeps[0].points[0], evaluation=True)
    models = sum(len(group) for result in reports for group in result["results"].values())
    fig.suptitle(f"Each headline metric against each method's setting, mean ± sd over seeds: {cfg.data.name}, "
                 f"{cfg.train.steps} steps, n = {models} evaluated models", fontsize=10)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "study.png", dpi=80)
    plt.close(fig)
    (out / "study.md").write_text("\n".join(["# Study: the methods side by side", "", "![study](study.png)", "",
                                             f"Every model and every score: [{TABLE}]({TABLE}); the analysis: "
                                             "[analysis.md](analysis.md).", "",
                                             *sections]))
    rows = study_table(sweeps)
    write_table(rows, out / TABLE)
    analyse(rows, out, len(factor_set(DATASETS[cfg.data.name], cfg.eval.factors)))
    return out / "study.md"


def print_report(result: dict, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep report: {out_dir}")
    for column in (result["group"], "n", *result["columns"]):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        table.add_row(*(str(row[c]) for c in (result["group"], "n", *result["columns"])))
    console = Console()
    console.print(table)
    for name, status in result["problems"]:
        console.print(f"[yellow]not in the table[/]: {name}: {status}")
    console.print(f"wrote {out_dir / 'report.md'}, report.csv, report.png")
