"""Time of the β-VAE metric with the conv64 model: ours against a serial reference, and 1 vs 2 ranks.

The reference computes the metric the way disentanglement_lib does: one random stream, one point
after another, rendering and encoding both batches of L images of every point (1.92 million
encodes at default sizes). Ours deduplicates the images of the finite dSprites grid and encodes
them in fixed chunks, sharded across ranks. Both use the same renderer, model and classifier.
Ranks are real `accelerate launch` processes of `betavae_dist.evaluate`.

    python benchmarks/metric_throughput.py [--scale 1.0]     # scale < 1 shrinks N_train and N_eval
    python benchmarks/metric_throughput.py --suite runs/dsprites_beta4/export   # all five metrics, their shares
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from betavae_dist.config import Config, EvalConfig
from betavae_dist.metrics.beta_vae import BetaVAESettings
from betavae_dist.data.dsprites import DSprites
from betavae_dist.export import write_export
from sklearn.linear_model import LogisticRegression

from betavae_dist.metrics import METRICS, run_metric
from betavae_dist.metrics.codes import CodeTable, factor_set, model_representation
from betavae_dist.metrics.classifiers import accuracy, fit
from betavae_dist.models import BetaVAE
from betavae_dist.runtime import keep_heap
from isolated import run_isolated

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def reference_seconds(model, dataset, factors, n_train, n_eval, pairs, seed=0) -> tuple[float, float]:
    start = time.perf_counter()
    rng = np.random.RandomState(seed)
    points, labels = [], []
    for _ in range(n_train + n_eval):
        k = rng.randint(len(factors))
        first = rng.randint(0, dataset.factor_sizes, size=(pairs, len(dataset.factor_sizes)))
        second = rng.randint(0, dataset.factor_sizes, size=(pairs, len(dataset.factor_sizes)))
        second[:, factors[k]] = first[:, factors[k]]
        z1 = model.encode(torch.from_numpy(dataset.images(first)).contiguous(memory_format=model.memory_format))[0]
        z2 = model.encode(torch.from_numpy(dataset.images(second)).contiguous(memory_format=model.memory_format))[0]
        points.append((z1 - z2).abs().mean(0).numpy())
        labels.append(k)
    points, labels = np.stack(points), np.array(labels)
    model = fit(LogisticRegression(), points[:n_train], labels[:n_train])
    return time.perf_counter() - start, accuracy(model, points[n_train:], labels[n_train:])


def ours_seconds(model, dataset, factors, n_train, n_eval, pairs) -> tuple[float, float]:
    keep_heap()  # as `betavae_dist.evaluate` does
    start = time.perf_counter()
    with torch.no_grad():
        table = CodeTable(model_representation(model, dataset, "cpu"), dataset.factor_sizes)
        result = run_metric("beta_vae", dataset, table, factors, EvalConfig(beta_vae=BetaVAESettings(pairs, n_train, n_eval)))
    return time.perf_counter() - start, result["beta_vae.eval_accuracy"]


def ranks_seconds(export: Path, nproc: int, n_train: int, n_eval: int, pairs: int) -> tuple[float, float]:
    out = export.parent / f"ranks{nproc}.json"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "launch/cpu_ddp.yaml"),
              "--num_processes", str(nproc), "--main_process_port", str(29400 + nproc)]
    cmd = [*(launch if nproc > 1 else [sys.executable]), "-m", "betavae_dist.evaluate", "--model", str(export),
           "--out", str(out), "eval.metrics=beta_vae", f"eval.n_train={n_train}", f"eval.n_eval={n_eval}",
           f"eval.pairs={pairs}"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    result = json.loads(out.read_text())
    return result["beta_vae.seconds"] + result["encode.seconds"], result["beta_vae.eval_accuracy"]


def suite(export: Path) -> None:
    """All five metrics at default sizes through `betavae_dist.evaluate` on one process: seconds and share of each."""
    out = Path(tempfile.mkdtemp()) / "suite.json"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "betavae_dist.evaluate", "--model", str(export), "--out", str(out),
                    "eval.metrics=" + ",".join(METRICS)], cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    result = json.loads(out.read_text())
    table = Table(title=f"the metric suite at default sizes, one process, {export}")
    for column in ("metric", "seconds", "share"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name in ("encode", *METRICS):
        table.add_row(name, f"{result[name + '.seconds']:.1f}", f"{result[name + '.seconds'] / wall:.0%}")
    table.add_row("whole command (start-up, model, dataset included)", f"{wall:.1f}", "100%")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--suite", metavar="EXPORT", type=Path, default=None,
                        help="instead: time all five metrics on this export (a trained one: an untrained "
                             "model has no active dimension, and FactorVAE then stops early)")
    args = parser.parse_args()
    if args.suite:
        return suite(args.suite)
    n_train, n_eval = int(10_000 * args.scale), int(5_000 * args.scale)
    torch.manual_seed(0)
    model = BetaVAE("conv64").eval()
    model = model.to(memory_format=model.memory_format)  # both loops get the faster layout
    dataset = DSprites()
    factors = factor_set(dataset, "all")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        write_export(model.state_dict(), Config(), export)
        # Fresh processes (isolated.py): the reference keeps glibc's defaults, ours gets keep_heap().
        common = (model, dataset, factors, n_train, n_eval, args.pairs)
        rows["reference: serial, one stream, 1 process"] = run_isolated(reference_seconds, *common)
        rows["ours: deduplicated chunks, 1 process"] = run_isolated(ours_seconds, *common)
        rows["ours: evaluate, 1 rank"] = ranks_seconds(export, 1, n_train, n_eval, args.pairs)
        rows["ours: evaluate, 2 ranks"] = ranks_seconds(export, 2, n_train, n_eval, args.pairs)
    reference = rows["reference: serial, one stream, 1 process"][0]
    one_rank = rows["ours: evaluate, 1 rank"][0]
    table = Table(title=f"β-VAE metric, conv64, N_train={n_train}, N_eval={n_eval}, L={args.pairs}, "
                        f"{torch.get_num_threads()} cores")
    for column in ("computation", "seconds", "× reference", "× 1 rank", "eval accuracy"):
        table.add_column(column, justify="left" if column == "computation" else "right")
    for name, (seconds, acc) in rows.items():
        table.add_row(name, f"{seconds:.1f}", f"{reference / seconds:.2f}",
                      f"{one_rank / seconds:.2f}" if "rank" in name else "", f"{acc:.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()
