"""Export a run's checkpoint as `model.safetensors` (fp32) + `config.json`, loadable without pickle.

    python -m betavae_dist.export RUN_DIR OUT_DIR [--checkpoint RUN_DIR/checkpoints/step_N]

takes the newest checkpoint of a run that verifies (or the one named) and the run's resolved
`config.yaml`. Training writes its export itself at the end. Load with
`BetaVAE.from_pretrained(OUT_DIR)`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import checkpoint
from ..config import ConfigError
from ..experiment import from_sources
from ..models import BetaVAE, read_evaluation, write_export
from ..rundir import RunDir
from . import ExportError, check_state_dict


def export_run(run_dir: Path, out_dir: Path, ckpt: Path | None = None) -> Path:
    """Export the newest (or the given) checkpoint of a run; returns the checkpoint used."""
    files = RunDir(run_dir)
    if not files.config.is_file():
        raise ExportError(f"not a run directory (no config.yaml): {run_dir}")
    cfg = from_sources(str(files.config), [])
    ckpt = checkpoint.usable(files.checkpoints, ckpt, say=lambda line: print(line, file=sys.stderr))
    state = checkpoint.weights(ckpt)
    check_state_dict(BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels), state, ckpt)
    write_export(state, cfg, out_dir, read_evaluation(files.export))  # the run's scores, where it has some
    return ckpt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m betavae_dist.export", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the newest one that verifies")
    args = parser.parse_args(argv)
    try:
        used = export_run(args.run_dir, args.out_dir, args.checkpoint)
    except (ExportError, ConfigError, OSError, checkpoint.CheckpointError) as e:
        print(f"export: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"exported {used} -> {args.out_dir}")


if __name__ == "__main__":
    main()
