"""`accelerate launch`, with the trainer's config checked before any process starts.

    python -m betavae_dist.launch [accelerate launch options] -m betavae_dist.train --config FILE [key=value ...]

Under plain `accelerate launch`, a bad config makes every rank print the same line and exit 2,
and the launcher then exits 1 with torch elastic's ChildFailedError report. Here the config and
every check that needs no process group (`train.preflight`, with the world size the launch
options ask for) run first: a problem is one line and exit 2, and nothing is started. Otherwise
this process becomes `accelerate launch` with the same arguments (exec: the same signals and exit
status). Any other module or script is launched unchecked. slurm/ uses it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from .config import ConfigError, load_or_exit

CHECKED = "betavae_dist.train"


def world_size(launch_args: list[str]) -> int | None:
    """The number of processes the launch options ask for (--num_processes, else the
    --config_file's num_processes), or None when they do not say."""
    def option(name: str) -> str | None:
        for i, arg in enumerate(launch_args):
            if arg == name and i + 1 < len(launch_args):
                return launch_args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
        return None

    if (count := option("--num_processes")) is not None:
        return int(count)
    config_file = option("--config_file")
    if config_file and Path(config_file).is_file():
        count = (yaml.safe_load(Path(config_file).read_text()) or {}).get("num_processes")
        return int(count) if count is not None else None
    return None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):  # what this adds, then accelerate launch's own usage
        print(__doc__.strip() + "\n\naccelerate launch's options follow.\n", flush=True)
        argv = ["--help"]
    if "-m" in argv and argv.index("-m") + 1 < len(argv) and argv[argv.index("-m") + 1] == CHECKED:
        at = argv.index("-m")
        cfg = load_or_exit(argv[at + 2:], CHECKED)  # one line and exit 2 on a bad config
        from .train import preflight  # the trainer's imports only when it is the one launched

        try:
            preflight(cfg, world_size(argv[:at]) or 1)
        except ConfigError as e:
            print(f"{CHECKED}: config error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    os.execvp(sys.executable, [sys.executable, "-m", "accelerate.commands.launch", *argv])


if __name__ == "__main__":
    main()
