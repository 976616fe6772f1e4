"""Time of the β-VAE metric with the conv64 model: ours against a serial reference, and 1 vs 2 ranks.

The reference computes the metric the way disentanglement_lib does: one random stream, one point
after another, rendering and encoding both batches of L images of every point (1.92 million
encodes at default sizes). Ours deduplicates the images of the finite dSprites grid and encodes
them in fixed chunks, sharded across ranks. Both use the same renderer, model and classifier.
Ranks are real `accelerate launch` processes of `betavae_dist.evaluate`.

    python benchmarks/metric_throughput.py [--scale 1.0]     # scale < 1 shrinks N_train and N_eval
    python benchmarks/metric_throughput.py --suite runs/dsprites_beta4/export [--pack 9]   # every metric
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from betavae_dist.config import fanned_keys
from betavae_dist.experiment import Config, from_sources
from betavae_dist.metrics.beta_vae import BetaVAESettings
from betavae_dist.data.dsprites import DSprites
from betavae_dist.models import write_export
from sklearn.linear_model import LogisticRegression

from betavae_dist.evaluate import load_model
from betavae_dist.metrics import METRICS, EvalConfig, run_metric, score
from betavae_dist.pack.evaluate import evaluate_pack
from betavae_dist.metrics.codes import CodeTable, factor_set, model_representation
from betavae_dist.metrics.classifiers import accuracy, fit
from betavae_dist.models import BetaVAE
from betavae_dist.runtime import keep_heap
from isolated import run_isolated

ROOT = Path(__file__).resolve().parents[1]
FITTED = [key.split(".")[1] for key in fanned_keys(Config(), "eval.backend")]  # metrics with a compiled backend: dci, sap


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


def timed(codes, dataset, cfg: EvalConfig) -> tuple[dict, float]:
    """The scores of `cfg` on `codes` in this process, and the CPU seconds they took (all threads)."""
    cpu = time.process_time()
    result, = score(codes, dataset, [cfg], Progress(disable=True))
    return result, time.process_time() - cpu


def suite(export: Path, pack: int) -> None:
    """Every metric (METRICS) at disentanglement_lib's sizes on one model, in this process: each metric's
    seconds once the codes exist, DCI and SAP both with scikit-learn's classifiers (the reference) and
    the compiled ones; then the same model `pack` times over as one pack (evaluate_pack, encoding
    included), against `pack` solo evaluations."""
    keep_heap()
    model, train_cfg = load_model(export)
    dataset = DSprites()
    cfg = EvalConfig(metrics=",".join(METRICS))  # disentanglement_lib's sizes, the compiled classifiers
    reference_cfg = dataclasses.replace(from_sources(None, ["eval.backend=sklearn"]).eval, metrics=cfg.metrics)
    codes = CodeTable(model_representation(model.eval(), dataset, "cpu"), dataset.factor_sizes, batch_size=cfg.batch_size)
    ours, reference = {}, {}  # metric -> (results, CPU seconds), one metric at a time
    for name in METRICS:
        ours[name] = timed(codes, dataset, dataclasses.replace(cfg, metrics=name))
        reference[name] = (timed(codes, dataset, dataclasses.replace(reference_cfg, metrics=name))
                           if name in FITTED else ours[name])
    threads = torch.get_num_threads()
    table = Table(title=f"the metric suite at disentanglement_lib's sizes, one process, {threads} threads, {export}")
    for column in ("metric", "reference: scikit-learn's classifiers (s)", "ours: compiled (s)", "× reference"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    before = after = 0.0
    for name in METRICS:
        theirs, mine = reference[name][0][f"{name}.seconds"], ours[name][0][f"{name}.seconds"]
        before, after = before + theirs, after + mine
        table.add_row(name, f"{theirs:.1f}", f"{mine:.1f}", f"{theirs / mine:.1f}" if name in FITTED else "same path")
    for name in FITTED:
        table.add_row(f"{name}, CPU seconds (all threads)", f"{reference[name][1]:.1f}", f"{ours[name][1]:.1f}",
                      f"{reference[name][1] / ours[name][1]:.1f}")
    table.add_row(f"the {len(METRICS)} metrics, once the codes exist", f"{before:.1f}", f"{after:.1f}", f"{before / after:.1f}")
    table.add_row("encoding the images (shared)", f"{codes.seconds:.1f}", f"{codes.seconds:.1f}", "")
    Console(width=200).print(table)
    scores = Table(title="DCI and SAP of this model, both ways (the same points)")
    for column in ("score", "scikit-learn's classifiers", "compiled"):
        scores.add_column(column)
    for key in ("dci.disentanglement", "dci.completeness", "dci.informativeness", "sap.score"):
        name = key.split(".")[0]
        scores.add_row(key, f"{reference[name][0][key]:.4f}", f"{ours[name][0][key]:.4f}")
    Console(width=200).print(scores)
    if pack > 1:
        pack_suite(export, train_cfg, cfg, pack, solo=codes.seconds + after, solo_before=codes.seconds + before)


def pack_suite(export: Path, train_cfg: Config, cfg: EvalConfig, pack: int, solo: float, solo_before: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        exports = [Path(shutil.copytree(export, Path(tmp) / f"point{k}" / "export")) for k in range(pack)]
        start = time.perf_counter()
        evaluate_pack([dataclasses.replace(train_cfg, eval=cfg) for _ in exports], exports, torch.device("cpu"))
        seconds = time.perf_counter() - start
    table = Table(title=f"a pack of {pack} models, all {len(METRICS)} metrics, one process (encoding included)")
    for column in ("evaluation", "seconds", "per model"):
        table.add_column(column, justify="left" if column == "evaluation" else "right")
    table.add_row(f"{pack} solo evaluations, scikit-learn's classifiers (before; {pack} × the solo one above)",
                  f"{pack * solo_before:.0f}", f"{solo_before:.1f}")
    table.add_row(f"{pack} solo evaluations, compiled classifiers ({pack} × the solo one above)",
                  f"{pack * solo:.0f}", f"{solo:.1f}")
    table.add_row(f"one pack of {pack} (evaluate_pack), compiled classifiers: measured",
                  f"{seconds:.0f}", f"{seconds / pack:.1f}")
    Console(width=200).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--suite", metavar="EXPORT", type=Path, default=None,
                        help="instead: time every metric on this export (a trained one: an untrained "
                             "model has no active dimension, and FactorVAE then stops early)")
    parser.add_argument("--pack", type=int, default=9, help="with --suite: also a pack of this many copies (1: none)")
    args = parser.parse_args()
    if args.suite:
        return suite(args.suite, args.pack)
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
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
