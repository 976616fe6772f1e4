"""Export a model as `model.safetensors` (fp32) + `config.json`, loadable without pickle.

    python -m betavae_dist.export RUN_DIR OUT_DIR [--checkpoint RUN_DIR/checkpoints/step_N]

takes the newest checkpoint of a run that verifies (or the one named) and the run's resolved
`config.yaml`. Training calls `write_export` itself at the end. Load with
`BetaVAE.from_pretrained(OUT_DIR)`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import checkpoint
from .config import Config, ConfigError, from_sources
from .models import BetaVAE, ExportError, check_state_dict

FORMAT = "betavae-dist/1"


def write_export(state_dict: dict[str, torch.Tensor], cfg: Config, out_dir: Path) -> None:
    """Write the export atomically: a half-written OUT_DIR never replaces a good one."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".tmp-{out_dir.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    try:
        tmp.mkdir(parents=True)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
    except (OSError, SafetensorError) as e:  # a full disk, permissions
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(checkpoint.write_failure(tmp / "model.safetensors", e, "the previous export is intact")) from None
    meta = {
        "format": FORMAT,
        "model": {"arch": cfg.model.arch, "latents": cfg.model.latents, "channels": cfg.model.channels},
        "likelihood": cfg.model.likelihood,
        "training_config": cfg.to_dict(),
    }
    (tmp / "config.json").write_text(json.dumps(meta, indent=2))
    old = out_dir.with_name(f".old-{out_dir.name}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


DEEPSPEED_TAG = "pytorch_model"  # where Accelerate's save_state puts a DeepSpeed engine's shards


def checkpoint_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The fp32 model weights inside an Accelerate checkpoint directory (plain or DeepSpeed ZeRO)."""
    path = ckpt / "model.safetensors"
    if (ckpt / DEEPSPEED_TAG).is_dir():
        # ZeRO shards (torch pickles, our own files) consolidated into fp32 master weights.
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        try:
            state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=DEEPSPEED_TAG)
        except (OSError, ValueError, RuntimeError) as e:
            raise ExportError(f"{ckpt / DEEPSPEED_TAG}: unreadable DeepSpeed checkpoint ({e})") from None
        return {k: v.float() for k, v in state.items()}
    if not path.is_file():
        raise ExportError(f"no model weights in checkpoint {ckpt} (expected {path.name} or {DEEPSPEED_TAG}/)")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise ExportError(f"{path}: unreadable safetensors file ({e})") from None


def export_run(run_dir: Path, out_dir: Path, ckpt: Path | None = None) -> Path:
    """Export the newest (or the given) checkpoint of a run; returns the checkpoint used."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ExportError(f"not a run directory (no config.yaml): {run_dir}")
    cfg = from_sources(str(config_path), [])
    ckpt = checkpoint.usable(run_dir / "checkpoints", ckpt, say=lambda line: print(line, file=sys.stderr))
    state = checkpoint_weights(ckpt)
    check_state_dict(BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels), state, ckpt)
    write_export(state, cfg, out_dir)
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
