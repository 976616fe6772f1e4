"""Disentanglement metrics of a trained model, sharded across ranks.

    accelerate launch [--config_file launch/cpu_ddp.yaml] -m betavae_dist.evaluate \
        --model PATH [--out results.json] [eval.metrics=beta_vae,mig,dci ...]

PATH is an export directory (config.json + model.safetensors), a run directory (its newest
complete checkpoint) or one checkpoint directory; a baseline that needs no training: `pixels`,
`pca:N`, `ica:N` (baselines.py); or anyone's encoder (encoders.py): `module:name` or a TorchScript
file. Settings come from the model's training config (the others' from the defaults), then
`key=value` overrides (`eval.*` and `data.*`, listed by --help); one line says which. Every rank
encodes its share of the images, then fits its share of the classifiers (metrics/fits.py); the
scores are the same whatever the number of ranks. Rank 0 prints a table and writes the JSON
(default: PATH/evaluation.json; a baseline's: runs/baselines/NAME/, an encoder's: runs/encoders/NAME/).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from . import checkpoint
from .baselines import build_baseline, is_baseline
from .config import ConfigError
from .config_files import keys_text, mapping_items, override_items, read_yaml
from .data import FactorDataset, build_dataset
from .experiment import Config, from_items
from .distributed import make_accelerator, shutdown
from .encoders import is_encoder_spec, load_encoder
from .errors import BetaVAEError
from .export import EVALUATION, ExportError, check_state_dict, vae_state
from .metrics import evaluate_model
from .models import IMAGE_SIZE, BetaVAE
from .progress import evaluation_progress
from .results import write_results
from .rundir import RunDir
from .runtime import keep_heap


def load_model(path: Path, overrides: list[str] = ()) -> tuple[BetaVAE, Config]:
    """A model from an export, a run or a checkpoint directory, and its training config with `overrides`."""
    if (path / "config.json").is_file():
        model = BetaVAE.from_pretrained(path)
        recorded = json.loads((path / "config.json").read_text()).get("training_config", {})
        return model, from_items(mapping_items(recorded, f"in {path / 'config.json'}") + override_items(overrides))
    run_dir = RunDir(path.parent.parent if (path / checkpoint.STATE_FILE).is_file() else path)
    if not run_dir.config.is_file():
        raise ExportError(f"not an export, run or checkpoint directory: {path}")
    recorded = read_yaml(run_dir.config)
    cfg = from_items(mapping_items(recorded, f"in {run_dir.config}") + override_items(overrides))
    ckpt = checkpoint.usable(run_dir.checkpoints, None if run_dir.path == path else path,
                             say=lambda line: print(line, file=sys.stderr))
    model = BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels)
    state = vae_state(checkpoint.weights(ckpt))
    check_state_dict(model, state, ckpt)
    model.load_state_dict(state)
    return model.eval(), cfg


def check_input_shape(model: BetaVAE, dataset: FactorDataset, cfg: Config) -> None:
    """The metrics feed the dataset's images to the model: their shapes must agree."""
    takes = (model.channels, IMAGE_SIZE, IMAGE_SIZE)
    if tuple(dataset.image_shape) != takes:
        shape = "x".join(map(str, dataset.image_shape))
        raise ConfigError(f"the model takes {'x'.join(map(str, takes))} images but data.name={cfg.data.name} has {shape}: "
                          "the metrics need a factor dataset of the model's images (data.name=...)")


def print_table(results: dict, source: Path) -> None:
    table = Table(title=f"disentanglement metrics: {source}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in results.items():
        if not key.endswith(("seconds", "sha256")) and not isinstance(value, list):  # not the fits' record
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="betavae_dist.evaluate", description=__doc__.split("\n")[0],
                                     epilog=keys_text(Config, ("eval.", "data.")),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True,
                        help="export, run or checkpoint directory; a baseline: pixels, pca:N, ica:N; or anyone's "
                             "encoder: module:name or a TorchScript file")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: MODEL/evaluation.json)")
    parser.add_argument("overrides", nargs="*", help="key=value settings, e.g. eval.metrics=beta_vae,mig")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    baseline = is_baseline(str(args.model)) and not args.model.exists()
    ours = not baseline and not is_encoder_spec(str(args.model))
    try:
        model, cfg = load_model(args.model, args.overrides) if ours else (None, from_items(override_items(args.overrides)))
        dataset = build_dataset(cfg.data)
        if baseline:
            model = build_baseline(str(args.model), dataset, cfg.eval.seed)
        elif not ours:
            model = load_encoder(str(args.model))
        else:
            check_input_shape(model, dataset, cfg)
    except BetaVAEError as e:
        print(f"betavae_dist.evaluate: {'config error' if isinstance(e, ConfigError) else 'error'}: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    keep_heap()
    try:
        accelerator = make_accelerator()
        if accelerator.is_main_process:  # the sizes decide the scores: say where they came from
            where = "the model's training config, then" if ours else "the defaults, then"
            print(f"settings: {where} the command line ({len(args.overrides)} key(s)); data.name={cfg.data.name}, "
                  f"eval.metrics={cfg.eval.metrics}")
        model = model.to(accelerator.device, memory_format=model.memory_format)
        with evaluation_progress(disable=not accelerator.is_main_process) as bars:
            results = evaluate_model(model, dataset, cfg.eval, accelerator, bars)
    except BetaVAEError as e:
        print(f"betavae_dist.evaluate: error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    if accelerator.is_main_process:
        print_table(results, args.model)
        name = re.sub(r"[^\w.-]", "_", str(args.model))
        default = args.model if ours else Path("runs/baselines" if baseline else "runs/encoders") / name
        write_results(args.out or default / EVALUATION, args.model, accelerator.num_processes, cfg, results)
    shutdown(accelerator, model)


if __name__ == "__main__":
    main()
