"""The manifest of a shard set: which shards, how many samples each, their bytes and images.

Our shard writer (shards.py) and the index of other tools' shards (index.py) write it; webdataset's
own wids index (`widsindex create`) is read as one. `load_manifest` resolves `data.shards` to shard
URLs and checks, before training starts, that each local shard exists and has the recorded size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import webdataset as wds

from ..registry import ConfigError
from .dataset import DataError

if TYPE_CHECKING:
    from .settings import DataConfig

MANIFEST = "manifest.json"  # beside the shards
FORMAT = "betavae-dist-shards/1"  # ours (shards.py, index.py write it)
WIDS = "wids-shard-index-v1"  # webdataset's own index of shards


class StreamError(DataError):
    """Unreadable shard data; the message names the shard and, where known, the sample key."""


def load_manifest(data: DataConfig) -> tuple[list[str], list[int], dict]:
    """Shard URLs with their sample counts from the manifest. `data.shards` is a shard directory or
    its manifest.json (every shard it lists), or brace-expanded URLs (those shards only). Shards
    written by anything else get their manifest from `python -m betavae_dist.data.index`, or bring
    webdataset's wids index (`widsindex create`) as theirs."""
    spec = Path(data.shards)
    listed = spec.is_dir() or (spec.suffix == ".json" and spec.is_file())
    if listed:
        path = Path(data.manifest) if data.manifest else spec / MANIFEST if spec.is_dir() else spec
    else:
        urls = wds.shardlists.expand_urls(data.shards)
        if not urls:
            raise ConfigError("data.shards is empty; give a shard directory, its manifest.json or shard URLs")
        path = Path(data.manifest) if data.manifest else Path(urls[0]).parent / MANIFEST
        check_exist(urls)
    manifest, counts = read_manifest(path)
    if listed:
        where = spec if spec.is_dir() else spec.parent
        urls = [manifest.get("urls", {}).get(name) or str(where / name) for name in counts]
        check_exist(urls)
    unlisted = next((u for u in urls if Path(u).name not in counts), None)
    if unlisted:
        raise StreamError(f"shard {unlisted} is not listed in the manifest {path}")
    check_sizes(urls, manifest, path)
    return urls, [counts[Path(u).name] for u in urls], manifest


def read_manifest(path: Path) -> tuple[dict, dict[str, int]]:
    """Our manifest (shards.py, index.py), or a wids index taken as one (its URLs under "urls"), and
    each shard's sample count by file name."""
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("__kind__") == WIDS:
            manifest = from_wids(manifest, path)
        return manifest, {shard["name"]: shard["samples"] for shard in manifest["shards"]}
    except KeyError as e:
        problem = f"it has no {e.args[0]!r} entry (neither our manifest nor a wids index)"
    except (OSError, json.JSONDecodeError, TypeError, AttributeError) as e:
        problem = str(e)
    raise StreamError(f"cannot read the shard manifest {path} (data.manifest): {problem}; shards written by other tools "
                      "get one from python -m betavae_dist.data.index")


def from_wids(index: dict, path: Path) -> dict:
    """webdataset's wids index ({"__kind__": "wids-shard-index-v1", "shardlist": [{"url", "nsamples",
    "filesize"?}]}) as a manifest; relative URLs are relative to the index, as wids reads them."""
    shards, urls = [], {}
    for entry in index["shardlist"]:
        url = entry["url"]
        if local(url) and not os.path.isabs(url):
            url = str(path.parent / url)
        shards.append({"name": Path(url).name, "samples": entry["nsamples"], "bytes": entry.get("filesize")})
        urls[Path(url).name] = url
    return {"format": WIDS, "total": sum(s["samples"] for s in shards), "shards": shards, "urls": urls,
            "source": f"wids index {path}"}


def check_exist(urls: list[str]) -> None:
    absent = next((u for u in urls if local(u) and not os.path.isfile(u)), None)
    if absent:
        raise StreamError(f"shard {absent} does not exist")


def local(url: str) -> bool:
    """Whether a shard URL is a file of this machine (not http://..., pipe:...)."""
    return "://" not in url and not url.startswith("pipe:")


def check_sizes(urls: list[str], manifest: dict, path: Path) -> None:
    """A local shard must have the size its manifest records: a copy cut short is named before
    training starts, not when an epoch reaches it. (URLs that are not files are checked as read.)"""
    recorded = {shard["name"]: shard.get("bytes") for shard in manifest["shards"]}
    for url in urls:
        expected, size = recorded[Path(url).name], os.path.getsize(url) if local(url) else None
        if None not in (expected, size) and size != expected:
            raise StreamError(f"shard {url} has {size:,} bytes, the manifest {path} says {expected:,} "
                              "(cut short or replaced: copy it again, or index the shards again)")
