"""Show what each rank reads from WebDataset shards, to check a sharding plan before training:

    accelerate launch -m betavae_dist.data.inspect_stream --config X [--epochs N] [--out DIR] key=value ...

writes DIR/rank_R.json with the sample keys of each batch, by epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import ConfigError
from ..experiment import from_sources
from ..distributed import make_accelerator, shutdown
from .batches import Batching
from .stream import ShardStream, StreamError


def main(argv: list[str] | None = None) -> None:
    """Show what each rank reads from the shards."""
    parser = argparse.ArgumentParser(prog="betavae_dist.data.inspect_stream", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("stream_keys"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        cfg = from_sources(args.config, ["data.source=webdataset", *args.overrides])
    except ConfigError as e:
        print(f"betavae_dist.data.inspect_stream: config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    accelerator = make_accelerator()
    try:
        stream = ShardStream(cfg.data, cfg.seed, cfg.model.channels,
                             Batching.of(cfg.train, accelerator.num_processes, accelerator.process_index))
        batches = stream.keyed_micro_batches(0)
        epochs = [[next(batches)[1] for _ in range(stream.batches_per_epoch)] for _ in range(args.epochs)]
    except (StreamError, ConfigError) as e:
        print(f"betavae_dist.data.inspect_stream: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank_{accelerator.process_index}.json").write_text(json.dumps({"epochs": epochs}))
    accelerator.print(f"{accelerator.num_processes} rank(s), {stream.batches_per_epoch} batches of "
                      f"{stream.batching.micro} per rank per epoch; keys in {args.out}")
    shutdown(accelerator)


if __name__ == "__main__":
    main()
