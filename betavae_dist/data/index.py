"""Index WebDataset shards written by anything else (webdataset's `ShardWriter`, plain tar): count
and check their samples and write the manifest that the stream reads, as our shard writer does.

    python -m betavae_dist.data.index SHARDS [--out PATH]

SHARDS is a directory of `.tar` files or brace-expanded paths (`/data/celeba-{000000..000009}.tar`),
all in one directory. Every sample must hold one image (png, jpg, jpeg, npy or webp) of the same
square shape; the manifest (default: `manifest.json` beside the shards) records each shard's
samples, bytes and sha256, the total and the image shape. Each shard indexed is remembered in
`PATH.partial`, so an interrupted run goes on where it stopped (a shard whose size changed is read
again). Then `data.shards=DIR` (or the brace URLs) trains on the set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import webdataset as wds

from .shards import FORMAT, MANIFEST
from .stream import IMAGE_KEYS, StreamError, decode
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


def index_shard(path: Path, shape: tuple[int, ...] | None) -> tuple[dict, tuple[int, ...], str]:
    """(manifest entry, image shape, image key) of one shard; `shape`: what every image must have."""
    reader, count, key, kind = _Hashing(path), 0, None, None
    try:
        files = ({"fname": name, "data": data, "__url__": str(path)} for name, data in regular_files(reader))
        for sample in wds.tariterators.group_by_keys(files):
            key = sample["__key__"]
            kind = kind or next((k for k in IMAGE_KEYS if k in sample), None)
            image = decode(sample, None)
            if shape and image.shape != shape:
                raise ValueError(f"image of shape {image.shape}, the samples before it have {shape}")
            shape = image.shape
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
    return entry, shape, kind


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


def index(spec: str, out: Path | None = None, say=print) -> dict:
    """Index the shards of `spec` and write their manifest (to `out`, or beside them); returns it."""
    paths = shard_paths(spec)
    out = out or paths[0].parent / MANIFEST
    partial = out.with_name(out.name + ".partial")
    done = {}
    if partial.is_file():
        for line in partial.read_text().splitlines():
            record = json.loads(line)
            done[record["entry"]["name"]] = record
    shape, kind, entries = None, None, []
    with open(partial, "a") as log:
        for path in paths:
            record = done.get(path.name)
            if record and record["entry"]["bytes"] == path.stat().st_size:
                entry, found, found_kind = record["entry"], tuple(record["shape"]), record["kind"]
                if shape and found != shape:
                    raise StreamError(f"shard {path}: images of shape {found}, the shards before hold {shape}")
            else:
                entry, found, found_kind = index_shard(path, shape)
                log.write(json.dumps({"entry": entry, "shape": list(found), "kind": found_kind}) + "\n")
                log.flush()
            shape, kind = shape or found, kind or found_kind
            entries.append(entry)
            say(f"{path.name}: {entry['samples']} samples")
    channels, height, width = shape
    if height != width:
        raise StreamError(f"{spec}: images are {height}x{width}; the stream reads square images")
    manifest = {"format": FORMAT, "total": sum(e["samples"] for e in entries), "shards": entries,
                "image": {"size": height, "channels": channels, "extension": kind}, "source": f"indexed: {spec}"}
    tmp = out.with_name(f".tmp-{out.name}")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out)
    partial.unlink()
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m betavae_dist.data.index", description=__doc__.split("\n")[0])
    parser.add_argument("shards", help="a directory of .tar shards, or brace-expanded shard paths")
    parser.add_argument("--out", type=Path, default=None, help=f"the manifest (default: {MANIFEST} beside the shards)")
    args = parser.parse_args(argv)
    try:
        manifest = index(args.shards, args.out)
    except StreamError as e:
        print(f"index: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    image = manifest["image"]
    print(f"{manifest['total']} samples in {len(manifest['shards'])} shards, {image['channels']}x{image['size']}x"
          f"{image['size']} {image['extension']} images: manifest written")


if __name__ == "__main__":
    main()
