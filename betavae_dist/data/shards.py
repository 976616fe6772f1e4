"""Convert an image set into WebDataset tar shards once, for streaming to every rank.

    python -m betavae_dist.data.shards folder SRC_DIR OUT_DIR [options]
    python -m betavae_dist.data.shards celeba CELEBA_ROOT OUT_DIR [options]   # OUT_DIR/{train,valid,test}
    python -m betavae_dist.data.shards dsprites OUT_DIR [--limit N] [options]

Each sample is `KEY.png` (or `.jpg`, `.npy` for raw uint8) plus `KEY.json` (source file, CelebA
attributes, dSprites factors). Images are centre-cropped (`--crop`, CelebA: 148) and resized
(`--size`, 64) with Pillow at write time. Shards close at `--maxcount` samples or `--maxsize`
bytes. OUT_DIR/manifest.json lists every shard with its sample count and sha256, the total, the
image shape and the preprocessing; the streaming loader reads it. Workers preprocess in parallel
and the results are written in input order with fixed tar metadata, so re-running on the same
input gives byte-identical shards.

Shards are written into a hidden directory first; only a finished run replaces what OUT_DIR held,
the manifest last. Two files that would give the same sample key are refused, naming both; files
that are not images are listed; `--on-error skip` leaves unreadable images out and lists them, with
the reason, in OUT_DIR/skipped.json (`raise`, the default, stops at the first).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import dsprites
from .dsprites import DSprites
from .images import prepare
from .manifest import FORMAT, MANIFEST

SKIPPED = "skipped.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}  # what Pillow reads
EXTENSIONS = {"png": "png", "jpeg": "jpg", "raw": "npy"}
SPLITS = {"0": "train", "1": "valid", "2": "test"}


class ShardError(ValueError):
    """Bad input for the shard writer; the message names the file (and line)."""


@dataclass(frozen=True)
class Preprocessing:
    size: int = 64
    crop: int = 0  # centre crop to crop x crop before resizing; 0 = the largest centred square
    mode: str = "RGB"  # "RGB" or "L"
    format: str = "png"  # png, jpeg or raw (uint8 .npy)
    quality: int = 95  # jpeg only


def encode(image: np.ndarray, prep: Preprocessing) -> bytes:
    if prep.format == "raw":
        buffer = io.BytesIO()
        np.save(buffer, image, allow_pickle=False)
        return buffer.getvalue()
    buffer = io.BytesIO()
    pil = Image.fromarray(image)
    if prep.format == "jpeg":
        pil.save(buffer, format="JPEG", quality=prep.quality)
    else:
        pil.save(buffer, format="PNG")
    return buffer.getvalue()


def preprocess_file(path: Path, prep: Preprocessing) -> np.ndarray:
    """Open one image and bring it to `prep` (images.py: upright, its mode, centre square); errors name the file."""
    try:
        with Image.open(path) as img:
            return prepare(img, prep.mode, prep.size, prep.crop)
    except (OSError, ValueError) as e:
        raise ShardError(f"cannot read image {path}: {e}") from None


def _file_sample(job: tuple[str, Path, dict, Preprocessing]) -> dict | str:
    """The sample, or why the file cannot be one (the writer decides what a bad file does)."""
    key, path, meta, prep = job
    try:
        image = preprocess_file(path, prep)
    except ShardError as e:
        return str(e)
    return {"__key__": key, EXTENSIONS[prep.format]: encode(image, prep), "json": json.dumps(meta, sort_keys=True).encode()}


def _dsprites_sample(job: tuple[int, Preprocessing]) -> dict:
    index, prep = job
    factors = DSprites.index_to_factors(np.array([index]))[0]
    image = dsprites.render(factors[None])[0] * np.uint8(255)  # 0/255 so the PNG looks like the sprite
    meta = {"index": int(index), "factors": {n: int(v) for n, v in zip(dsprites.FACTOR_NAMES, factors)}}
    return {"__key__": f"{index:06d}", EXTENSIONS[prep.format]: encode(image, prep), "json": json.dumps(meta).encode()}


def write_shards(jobs: list, make_sample, out_dir: Path, prep: Preprocessing, maxcount: int, maxsize: int,
                 workers: int, source: str, channels: int, on_error: str = "raise") -> dict:
    """Preprocess `jobs` with `make_sample` in worker processes, write them in order, return the
    manifest. The shards go to a hidden directory and replace OUT_DIR's only once all is written."""
    tmp = out_dir / ".tmp-shards"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest, skipped = _write(jobs, make_sample, tmp, prep, maxcount, maxsize, workers, on_error)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest.update(source=source, image={"size": prep.size, "channels": channels, "extension": EXTENSIONS[prep.format]})
    (tmp / MANIFEST).write_text(json.dumps(dict(sorted(manifest.items())), indent=2))
    new = {shard["name"] for shard in manifest["shards"]}
    for name in sorted(new):
        os.replace(tmp / name, out_dir / name)
    for old in out_dir.glob("shard-*.tar"):
        if old.name not in new:
            old.unlink()
    (out_dir / SKIPPED).unlink(missing_ok=True)
    if skipped:
        (out_dir / SKIPPED).write_text(json.dumps(skipped, indent=2))
    os.replace(tmp / MANIFEST, out_dir / MANIFEST)  # last: the manifest names only shards that exist
    tmp.rmdir()
    return manifest


def _write(jobs: list, make_sample, tmp: Path, prep: Preprocessing, maxcount: int, maxsize: int, workers: int,
           on_error: str) -> tuple[dict, list[dict]]:
    counts: dict[str, int] = {}
    skipped = []
    progress = Progress(TextColumn(f"[bold]{tmp.parent.name}"), MofNCompleteColumn(), BarColumn(), TimeRemainingColumn())
    # mtime fixed so that the tar headers, and so the shards, are byte-identical on every run; an
    # int, since tarfile stores a float mtime in an extra PAX header that readers must parse.
    with progress, multiprocessing.get_context("fork").Pool(workers) as pool, \
            wds.ShardWriter(str(tmp / "shard-%06d.tar"), maxcount=maxcount, maxsize=maxsize, mtime=0,
                            verbose=0) as sink:
        task = progress.add_task("write", total=len(jobs))
        for job, sample in zip(jobs, pool.imap(make_sample, jobs, chunksize=16)):
            progress.advance(task)
            if isinstance(sample, str):  # a file that cannot be read
                if on_error == "raise":
                    raise ShardError(f"{sample} (--on-error skip leaves such files out and lists them)")
                skipped.append({"file": str(job[1]), "reason": sample})
                continue
            sink.write(sample)
            name = Path(sink.fname).name
            counts[name] = counts.get(name, 0) + 1
    if skipped:
        print(f"warning: left out {len(skipped)} unreadable image(s), listed in {SKIPPED}; first: "
              f"{skipped[0]['reason']}", file=sys.stderr)
    shards = []
    for name in sorted(counts):
        data = (tmp / name).read_bytes()
        shards.append({"name": name, "samples": counts[name], "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"format": FORMAT, "total": sum(counts.values()), "preprocessing": asdict(prep), "shards": shards,
                "skipped": len(skipped)}
    return manifest, skipped


def check_unique_keys(jobs: list) -> None:
    """Two files that would be stored under one sample key make a tar the stream cannot read."""
    first: dict[str, Path] = {}
    for key, path, *_ in jobs:
        if key in first:
            raise ShardError(f"{first[key]} and {path} would both be sample {key!r} (keys drop the extension and "
                             "turn dots into underscores); rename one")
        first[key] = path


def folder_jobs(src: Path, prep: Preprocessing) -> list:
    everything = sorted(p for p in src.rglob("*") if p.is_file())
    files = [p for p in everything if p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p for p in everything if p.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        by_suffix = sorted(Counter(p.suffix.lower() or "no suffix" for p in others).items())
        kinds = ", ".join(f"{suffix}: {n}" for suffix, n in by_suffix)
        print(f"warning: skipped {len(others)} file(s) that are not images ({kinds}), e.g. {others[0]}", file=sys.stderr)
    if not files:
        raise ShardError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {src}")
    jobs = []
    for path in files:
        rel = path.relative_to(src)
        key = str(rel.with_suffix("")).replace(".", "_")  # webdataset splits keys at the first dot
        jobs.append((key, path, {"file": str(rel)}, prep))
    check_unique_keys(jobs)
    return jobs


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError as e:
        raise ShardError(f"cannot read {path}: {e.strerror}") from None


def read_celeba_attributes(path: Path) -> dict[str, dict[str, int]]:
    """list_attr_celeba.txt: a count line, a line of 40 names, then `file v1 ... v40` with v = ±1."""
    lines = _lines(path)
    if len(lines) < 2:
        raise ShardError(f"{path}: expected a count line and a line of attribute names")
    names = lines[1].split()
    attributes = {}
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1 or any(v not in ("1", "-1") for v in fields[1:]):
            raise ShardError(f"{path}:{number}: expected a file name and {len(names)} values of 1 or -1")
        attributes[fields[0]] = {n: int(v) for n, v in zip(names, fields[1:])}
    if lines[0].strip().isdigit() and int(lines[0]) != len(attributes):
        raise ShardError(f"{path}: header says {int(lines[0])} images, found {len(attributes)}")
    return attributes


def read_celeba_partition(path: Path) -> dict[str, str]:
    """list_eval_partition.txt: `file 0|1|2` for train/valid/test."""
    lines = _lines(path)
    split = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in SPLITS:
            raise ShardError(f"{path}:{number}: expected a file name and 0, 1 or 2")
        split[fields[0]] = SPLITS[fields[1]]
    return split


def celeba_jobs(root: Path, prep: Preprocessing) -> dict[str, list]:
    attributes = read_celeba_attributes(root / "list_attr_celeba.txt")
    partition = read_celeba_partition(root / "list_eval_partition.txt")
    images = root / "img_align_celeba"
    jobs: dict[str, list] = {name: [] for name in SPLITS.values()}
    for file in sorted(partition):
        if file not in attributes:
            raise ShardError(f"{root / 'list_attr_celeba.txt'}: no attributes for {file}")
        meta = {"file": file, "split": partition[file], "attributes": attributes[file]}
        jobs[partition[file]].append((Path(file).stem.replace(".", "_"), images / file, meta, prep))
    for split_jobs in jobs.values():
        check_unique_keys(split_jobs)
    return jobs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m betavae_dist.data.shards", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["folder", "celeba", "dsprites"])
    parser.add_argument("paths", nargs="+", help="SRC OUT (folder, celeba) or OUT (dsprites)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--crop", type=int, default=None, help="centre crop side before resizing (celeba: 148)")
    parser.add_argument("--format", choices=list(EXTENSIONS), default="png")
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--mode", choices=["RGB", "L"], default=None, help="default: L for dsprites, else RGB")
    parser.add_argument("--maxcount", type=int, default=10_000, help="samples per shard")
    parser.add_argument("--maxsize", type=int, default=1 << 30, help="bytes per shard")
    parser.add_argument("--workers", type=int, default=max(1, multiprocessing.cpu_count()))
    parser.add_argument("--limit", type=int, default=dsprites.NUM_IMAGES, help="dsprites: first N images")
    parser.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                        help="an unreadable image stops the run (raise) or is left out and listed in skipped.json")
    args = parser.parse_args(argv)
    expected = 1 if args.kind == "dsprites" else 2
    if len(args.paths) != expected:
        parser.error(f"{args.kind} takes {'OUT' if expected == 1 else 'SRC OUT'}")
    if args.kind == "dsprites" and (args.size != 64 or args.crop):
        parser.error("dsprites images are 64x64: --size 64 and no --crop")
    mode = args.mode or ("L" if args.kind == "dsprites" else "RGB")
    crop = args.crop if args.crop is not None else (148 if args.kind == "celeba" else 0)
    prep = Preprocessing(size=args.size, crop=crop, mode=mode, format=args.format, quality=args.quality)
    channels = 1 if mode == "L" else 3
    common = dict(prep=prep, maxcount=args.maxcount, maxsize=args.maxsize, workers=args.workers, channels=channels,
                  on_error=args.on_error)
    try:
        if args.kind == "dsprites":
            out = Path(args.paths[0])
            jobs = [(i, prep) for i in range(min(args.limit, dsprites.NUM_IMAGES))]
            manifests = {out: write_shards(jobs, _dsprites_sample, out, source="dsprites", **common)}
        elif args.kind == "folder":
            src, out = map(Path, args.paths)
            manifests = {out: write_shards(folder_jobs(src, prep), _file_sample, out, source=str(src), **common)}
        else:
            src, out = map(Path, args.paths)
            manifests = {out / split: write_shards(jobs, _file_sample, out / split, source=f"{src} ({split})", **common)
                         for split, jobs in celeba_jobs(src, prep).items() if jobs}
    except ShardError as e:
        print(f"shards: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    for out, manifest in manifests.items():
        print(f"{out}: {manifest['total']} samples in {len(manifest['shards'])} shards")


if __name__ == "__main__":
    main()
