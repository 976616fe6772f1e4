"""Train a β-VAE: the command line.

    accelerate launch --config_file launch/cpu_ddp.yaml -m betavae_dist.train \
        --config configs/dsprites_beta4.yaml loss.beta=8 train.steps=2000
    python -m betavae_dist.train --config configs/dsprites_beta4.yaml      # one process

What it trains: solo.py (the model, its step and checkpoints) driven by loop.py (the cadence). Exit
status: 0 trained, 1 a training error (one line), 2 a config error, PREEMPTED_EXIT_CODE (3; 0
under SLURM) stopped by a signal after a checkpoint. The run directory's files: rundir.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import checkpoint
from .config import ConfigError
from .errors import BetaVAEError
from .distributed import first_to_tell, silent_ranks
from .experiment import load_or_exit
from .peers import lost_peer
from .solo import train
from .stopping import Preempted


def say(line: str) -> None:
    """One line on stderr in one write: the ranks share the launcher's stderr, and print's separate
    write of the newline let two ranks' lines run together."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    cfg = load_or_exit(sys.argv[1:] if argv is None else argv, "betavae_dist.train")
    try:
        train(cfg)
    except Preempted as e:
        if os.environ.get("RANK", "0") == "0":
            print(e, flush=True)
        raise SystemExit(e.exit_code) from None
    except BetaVAEError as e:
        if not e.quiet:  # one line per job where every rank raised the same
            say(f"betavae_dist.train: {'config error' if isinstance(e, ConfigError) else 'error'}: {e}")
            if not isinstance(e, ConfigError):
                first_to_tell(Path(cfg.run_dir))  # this line is the cause: ranks that now lose this one stay quiet
        raise SystemExit(e.exit_code) from None
    except RuntimeError as e:  # a collective that timed out or lost a peer: gloo and NCCL raise RuntimeErrors
        timed_out = "timed out" in str(e).lower() or "timeout" in str(e).lower()
        if not (timed_out or lost_peer(e)):
            raise
        rank = os.environ.get("RANK", "0")
        silent = silent_ranks(Path(cfg.run_dir), int(os.environ.get("WORLD_SIZE", "1")), end_frozen=timed_out)
        what = (f"waited train.collective_timeout={cfg.train.collective_timeout} s for another rank (frozen, killed or "
                f"unreachable): {silent or 'every rank still beats (the network?)'}" if timed_out else
                f"lost its connection to another rank: {silent or 'none on this host has ended (another node?)'}")
        if first_to_tell(Path(cfg.run_dir)):
            say(f"betavae_dist.train: error: rank {rank} {what}; stopping. Last good checkpoint: "
                f"{checkpoint.latest(Path(cfg.run_dir) / 'checkpoints') or 'none yet'}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
