"""Streaming-loader throughput: our WebDataset stream against a per-file reader, in one run.

Both read the same 64x64 RGB PNG images (smooth random images, CelebA-sized after our crop and
resize): ours from tar shards written by `betavae_dist.data.shards`, the reference as a folder of PNG
files through a plain per-file `Dataset` (Pillow) + `DataLoader`, each with 1 and 2 workers and
batches of 64. Two regimes: "cached", every file already in the page cache (a data set that fits in
memory, after the first epoch), and "from disk", the page cache dropped before each case (a data set
larger than memory, every epoch; needs root, else skipped). Also times PNG decoding alone (Pillow,
libspng) and the conv64_deep training step (the CelebA model), to show whether the loader keeps up
with what training consumes. Prints medians and ratios.

    python benchmarks/stream_throughput.py [--images 8000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyspng
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from betavae_dist.experiment import from_sources
from betavae_dist.models import BetaVAE
from betavae_dist.objectives import build_objective
from betavae_dist.runtime import keep_heap
from betavae_dist.data.shards import Preprocessing, _file_sample, write_shards
from betavae_dist.data.batches import Batching
from betavae_dist.data.stream import ShardStream
from isolated import run_isolated

BATCH = 64
# Pillow's arrays are read-only; the reference copies them into a float tensor straight away.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


class PngFiles(Dataset):
    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with Image.open(self.files[i]) as img:
            return torch.from_numpy(np.asarray(img.convert("RGB"))).permute(2, 0, 1).float() / 255


def make_images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir()
    grid = np.linspace(0, 1, 64)
    files = []
    for i in range(n):
        a, b, c = rng.uniform(0, 255, 3)
        base = (a * grid[:, None] + b * grid[None, :] + c) % 256
        rgb = np.stack([base, 0.7 * base + 30, 255 - base], axis=-1) + rng.normal(0, 8, (64, 64, 3))
        files.append(folder / f"{i:06d}.png")
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(files[-1])
    return files


def drop_page_cache() -> bool:
    """Empty the kernel's page cache, as for a data set larger than memory; False unless root."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def set_page_cache(paths, cold: bool) -> None:
    """Cold: nothing cached; else every file read once, so it is (the previous case may have dropped it)."""
    if cold:
        drop_page_cache()
    else:
        for path in paths:
            path.read_bytes()


def per_file_images_per_s(files, workers: int, cold: bool) -> float:
    loader = DataLoader(PngFiles(files), batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True)
    set_page_cache(files, cold)
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch)
    return n / (time.perf_counter() - start)


def stream_images_per_s(shard_dir: Path, shards: int, workers: int, cold: bool) -> float:
    keep_heap()  # as the trainer sets it before its loader's workers fork
    cfg = from_sources(None, ["data.source=webdataset", f"data.shards={shard_dir}/shard-{{000000..{shards - 1:06d}}}.tar",
                              f"data.workers={workers}", f"train.batch_size={BATCH}", "model.channels=3"])
    stream = ShardStream(cfg.data, cfg.seed, cfg.model.channels, Batching.of(cfg.train))
    set_page_cache(shard_dir.glob("*.tar"), cold)
    start, n = time.perf_counter(), 0
    for _, (images, _) in zip(range(stream.batches_per_epoch), stream.micro_batches(0)):
        n += len(images)
    return n / (time.perf_counter() - start)


def decode_us_per_image(files, decoder: str) -> float:
    """PNG decoding alone, from bytes in memory, in one process."""
    data = [f.read_bytes() for f in files[:2000]]
    start = time.perf_counter()
    for png in data:
        if decoder == "libspng":
            pyspng.load(png)
        else:
            with Image.open(io.BytesIO(png), formats=["PNG"]) as img:
                np.asarray(img)
    return (time.perf_counter() - start) / len(data) * 1e6


def training_images_per_s(steps: int = 15) -> float:
    keep_heap()  # as the trainer does
    cfg = from_sources("configs/celeba_beta.yaml", ["data.shards=unused"])
    torch.manual_seed(0)
    model = BetaVAE("conv64_deep", 32, 3).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.rand(BATCH, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    objective = build_objective(cfg.loss, cfg.model)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        output, mean, logvar, z = model(x, torch.randn(BATCH, 32))
        objective(output, x, mean, logvar, z, {})["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    regimes = {"cached": False, "from disk": True} if drop_page_cache() else {"cached": False}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_images(Path(tmp) / "pngs", args.images)
        prep = Preprocessing(size=64, crop=0, mode="RGB", format="png")
        jobs = [(f.stem, f, {"file": f.name}, prep) for f in files]
        manifest = write_shards(jobs, _file_sample, Path(tmp) / "shards", prep, maxcount=1000, maxsize=1 << 30,
                                workers=2, source="benchmark", channels=3)
        shards = len(manifest["shards"])
        cases = {}
        for regime, cold in regimes.items():
            for w in (1, 2):
                label = f"{regime}, {w} worker{'s' if w > 1 else ''}"
                cases[("per-file PNG reader (reference)", label)] = (per_file_images_per_s, files, w, cold)
                cases[("ours: WebDataset stream", label)] = (stream_images_per_s, Path(tmp) / "shards", shards, w, cold)
        results = {case: [] for case in cases}
        decode = {"Pillow": [], "libspng": []}
        for _ in range(args.repeats):
            for case, (fn, *fn_args) in cases.items():
                results[case].append(run_isolated(fn, *fn_args))  # a fresh process per case
            for decoder in decode:
                decode[decoder].append(decode_us_per_image(files, decoder))
        training = run_isolated(training_images_per_s)
    table = Table(title=f"{args.images} 64x64 RGB PNGs, batch {BATCH}, median of {args.repeats}")
    for column in ("reader", "regime", "images/s", "× per-file (same regime, workers)"):
        table.add_column(column, justify="left" if column in ("reader", "regime") else "right")
    for (reader, label), values in results.items():
        reference = statistics.median(results[("per-file PNG reader (reference)", label)])
        table.add_row(reader, label, f"{statistics.median(values):,.0f}", f"{statistics.median(values) / reference:.2f}")
    table.add_row("conv64_deep training step consumes", "", f"{training:,.0f}", "")
    Console().print(table)
    if len(regimes) == 1:
        Console().print("(not root: the page cache cannot be dropped, so the from-disk regime was skipped)")
    pillow = statistics.median(decode["Pillow"])
    for decoder, values in decode.items():
        Console().print(f"PNG decode alone, {decoder}: {statistics.median(values):.1f} µs/image "
                        f"({pillow / statistics.median(values):.2f}× Pillow)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
