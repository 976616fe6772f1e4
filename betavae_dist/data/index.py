"""Index WebDataset shards written by anything else (webdataset's `ShardWriter`, plain tar): count
and check their samples and write the manifest that the stream reads, as our shard writer does.

    python -m betavae_dist.data.index SHARDS [--out PATH] [--any-size]

SHARDS is a directory of `.tar` files or brace-expanded paths (`/data/celeba-{000000..000009}.tar`),
all in one directory. Every sample must hold one image (png, jpg, jpeg, npy or webp), read as the
stream reads it (upright, alpha dropped: data/images.py); all of one square size and one number of
channels, unless `--any-size` (then train with `data.resize=crop`). The manifest (default:
`manifest.json` beside the shards) records each shard's samples, bytes and sha256, the total and
the images' size and channels (null where they differ, with up to five sizes as examples). Each
shard indexed is remembered in `PATH.partial`, so an interrupted run goes on where it stopped (a
shard whose size changed is read again); a refusal removes it. Then `data.shards=DIR` (or the brace
URLs) trains on the set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import webdataset as wds

from .images import IMAGE_KEYS, decode
from .manifest import FORMAT, MANIFEST, StreamError
from .tars import regular_files


class _Hashing:
    """A file read once for both its tar members and its sha256."""

    def __init__(self, path: Path):
        self.file, self.digest, self.bytes = open(path, "rb"), hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.file.read(n)
        self.digest.update(data)
        self.bytes += len(data)
        return data

    def rest(self) -> None:
        while self.read(1 << 20):
            pass


MAX_SIZES = 5  # distinct image sizes a manifest names as examples
ANY_SIZE = "--any-size indexes images of any size and mode; train on them with data.resize=crop"


def index_shard(path: Path, shape: tuple[int, ...] | None, any_size: bool) -> tuple[dict, dict, str]:
    """(manifest entry, the images' "sizes" (up to MAX_SIZES, width x height) and "channels", image
    key) of one shard; `shape`: what every image must have, unless `any_size`."""
    reader, count, key, kind, sizes, channels = _Hashing(path), 0, None, None, [], set()
    try:
        files = ({"fname": name, "data": data, "__url__": str(path)} for name, data in regular_files(reader))
        for sample in wds.tariterators.group_by_keys(files):
            key = sample["__key__"]
            kind = kind or next((k for k in IMAGE_KEYS if k in sample), None)
            image = decode(sample, None)  # upright, without alpha: as the stream will read it
            if not any_size and shape and image.shape != shape:
                raise ValueError(f"image of shape {image.shape}, the samples before it have {shape} ({ANY_SIZE})")
            shape = shape or image.shape
            size = f"{image.shape[2]}x{image.shape[1]}"
            if size not in sizes and len(sizes) < MAX_SIZES:
                sizes.append(size)
            channels.add(image.shape[0])
            count += 1
        reader.rest()
    except (OSError, ValueError) as e:
        where = f"sample {key}" if key else "its start"
        raise StreamError(f"shard {path}, at {where}: {e}") from None
    finally:
        reader.file.close()
    if count == 0:
        raise StreamError(f"shard {path} holds no samples")
    entry = {"name": path.name, "samples": count, "bytes": reader.bytes, "sha256": reader.digest.hexdigest()}
    return entry, {"sizes": sizes, "channels": sorted(channels)}, kind


def shard_paths(spec: str) -> list[Path]:
    directory = Path(spec)
    paths = sorted(directory.glob("*.tar")) if directory.is_dir() else [Path(u) for u in wds.shardlists.expand_urls(spec)]
    if not paths:
        raise StreamError(f"no .tar shards in {spec}")
    missing = next((p for p in paths if not p.is_file()), None)
    if missing:
        raise StreamError(f"shard {missing} does not exist")
    if len({p.parent for p in paths}) > 1:
        raise StreamError(f"{spec}: the shards must be in one directory (the manifest names them by file name)")
    return paths


def index(spec: str, out: Path | None = None, say=print, any_size: bool = False) -> dict:
    """Index the shards of `spec` and write their manifest (to `out`, or beside them); returns it.
    A refusal (a bad sample, another size) removes the record of progress; an interruption keeps it."""
    paths = shard_paths(spec)
    out = out or paths[0].parent / MANIFEST
    partial = out.with_name(out.name + ".partial")
    try:
        manifest = _index(spec, paths, partial, say, any_size)
    except StreamError:
        partial.unlink(missing_ok=True)
        raise
    tmp = out.with_name(f".tmp-{out.name}")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out)
    partial.unlink()
    return manifest


def _index(spec: str, paths: list[Path], partial: Path, say, any_size: bool) -> dict:
    done = {}
    if partial.is_file():
        for line in partial.read_text().splitlines():
            record = json.loads(line)
            done[record["entry"]["name"]] = record
    sizes, channels, kind, entries = [], [], None, []  # sizes as "WxH"
    with open(partial, "a") as log:
        for path in paths:
            record = done.get(path.name)
            if not (record and record["entry"]["bytes"] == path.stat().st_size and "images" in record):
                shape = None if any_size or not sizes else (channels[0], *reversed([int(n) for n in sizes[0].split("x")]))
                entry, images, found_kind = index_shard(path, shape, any_size)
                record = {"entry": entry, "images": images, "kind": found_kind}
                log.write(json.dumps(record) + "\n")
                log.flush()
            images = record["images"]
            if not any_size and sizes and (images["sizes"], images["channels"]) != (sizes, channels):
                raise StreamError(f"shard {path}: {_held(images['sizes'], images['channels'])}, the shards before hold "
                                  f"{_held(sizes, channels)} ({ANY_SIZE})")
            sizes += [size for size in images["sizes"] if size not in sizes][: MAX_SIZES - len(sizes)]
            channels = sorted({*channels, *images["channels"]})
            kind = kind or record["kind"]
            entries.append(record["entry"])
            say(f"{path.name}: {record['entry']['samples']} samples")
    width, height = (int(n) for n in sizes[0].split("x"))
    if not any_size and width != height:
        raise StreamError(f"{spec}: images are {sizes[0]} (width x height); the stream reads square images ({ANY_SIZE})")
    image = {"size": width if sizes == [f"{width}x{width}"] else None,
             "channels": channels[0] if len(channels) == 1 else None, "extension": kind}
    if image["size"] is None:
        image["sizes"] = sizes
    return {"format": FORMAT, "total": sum(e["samples"] for e in entries), "shards": entries, "image": image,
            "source": f"indexed: {spec}"}


def _held(sizes: list[str], channels: list[int]) -> str:
    return f"{'/'.join(map(str, channels))}-channel images of {', '.join(sizes)} (width x height)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m betavae_dist.data.index", description=__doc__.split("\n")[0])
    parser.add_argument("shards", help="a directory of .tar shards, or brace-expanded shard paths")
    parser.add_argument("--out", type=Path, default=None, help=f"the manifest (default: {MANIFEST} beside the shards)")
    parser.add_argument("--any-size", action="store_true",
                        help="accept images of any size (not square, not all alike) and mode; train with data.resize=crop")
    args = parser.parse_args(argv)
    try:
        manifest = index(args.shards, args.out, any_size=args.any_size)
    except StreamError as e:
        print(f"index: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    image = manifest["image"]
    size, channels = image["size"], image["channels"]
    held = f"{channels}x{size}x{size} {image['extension']} images" if size and channels else (
        f"{image['extension']}, {_held(image.get('sizes', [f'{size}x{size}']), [channels] if channels else [1, 3])}")
    print(f"{manifest['total']} samples in {len(manifest['shards'])} shards, {held}: manifest written")


if __name__ == "__main__":
    main()
