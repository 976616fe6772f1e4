"""dSprites rendering speed on ONE CPU core: batched rendering against one image per call.

Target: at least 20,000 images/s on one core. Prints a table of medians.

    python benchmarks/render_throughput.py [--images 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from betavae_dist.data.dsprites import DSprites, render


def images_per_s(factors: np.ndarray, chunk: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(factors), chunk):
        render(factors[i : i + chunk])
    return len(factors) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    factors = DSprites().sample_factors(args.images, np.random.default_rng(0))
    cases = {"one image per call (reference)": (1, factors[:2000]), "batches of 64": (64, factors),
             "batches of 1024": (1024, factors)}
    results = {name: [images_per_s(f, chunk) for _ in range(args.repeats)] for name, (chunk, f) in cases.items()}
    reference = statistics.median(results["one image per call (reference)"])
    table = Table(title=f"dSprites rendering on one core, median of {args.repeats}")
    for column in ("rendering", "images/s", "× reference", "≥ 20,000/s"):
        table.add_column(column, justify="left" if column == "rendering" else "right")
    for name, values in results.items():
        median = statistics.median(values)
        table.add_row(name, f"{median:,.0f}", f"{median / reference:.1f}", "yes" if median >= 20_000 else "no")
    Console().print(table)


if __name__ == "__main__":
    main()
