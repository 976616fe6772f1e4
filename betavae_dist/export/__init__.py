"""The export format: `model.safetensors` (fp32) + `config.json`, loadable without pickle.

`models.write_export` writes one atomically (training calls it at the end; `python -m
betavae_dist.export` exports any checkpoint; `BetaVAE.save_pretrained` too), with `write_files`
below; `BetaVAE.from_pretrained` reads one, from a directory or a Hugging Face Hub repository, with
the checks below. Format 2 names the layers and describes the network (layout.py); format 1 exports
(Sequential indices) still load.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..checkpoint import write_failure
from ..errors import BetaVAEError
from ..objectives.base import CRITIC  # the critic is in checkpoints, not in exports

if TYPE_CHECKING:
    from ..model_config import ModelConfig

FORMAT = "betavae-dist/2"  # what is written; versions 1 and 2 are read
VERSIONS = {"betavae-dist/1": 1, "betavae-dist/2": 2}


class ExportError(BetaVAEError, ValueError):
    """An exported model directory that cannot be written or loaded; the message names the file."""


CONFIG, WEIGHTS, EVALUATION = "config.json", "model.safetensors", "evaluation.json"  # EVALUATION: evaluate.py writes it


def export_config(model: ModelConfig, training_config: dict) -> dict:
    """What config.json holds: the architecture and likelihood (`model.*`) and the whole training config."""
    return {
        "model": {"arch": model.arch, "latents": model.latents, "channels": model.channels},
        "likelihood": model.likelihood,
        "training_config": training_config,
    }


def vae_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The VAE's tensors of a model's state dict: all but its critic's."""
    return {k: v for k, v in state_dict.items() if not k.startswith(CRITIC)}


def write_files(state_dict: dict[str, torch.Tensor], config: dict, out_dir: Path,
                metadata: dict[str, str] | None = None, texts: dict[str, str] | None = None) -> None:
    """Write the export atomically, with `texts` (file name -> content: its card, evaluation.json):
    a half-written OUT_DIR never replaces a good one. Its files are readable as the umask allows
    (safetensors writes 0600 by itself)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".tmp-{out_dir.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    try:
        tmp.mkdir(parents=True)
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT, **(metadata or {})})
        os.chmod(tmp / WEIGHTS, 0o666 & ~current_umask())
    except (OSError, SafetensorError) as e:  # a full disk, permissions
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(write_failure(tmp / WEIGHTS, e, "the previous export is intact")) from None
    (tmp / CONFIG).write_text(json.dumps({"format": FORMAT, **config}, indent=2))
    for name, text in (texts or {}).items():
        (tmp / name).write_text(text)
    old = out_dir.with_name(f".old-{out_dir.name}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def format_version(config: dict, config_path: Path) -> int:
    """An export's format version, from its config.json (1 or 2)."""
    version = VERSIONS.get(config.get("format", "betavae-dist/1"))
    if version is None:
        raise ExportError(f"{config_path}: format {config.get('format')!r} is not one this betavae-dist reads "
                          f"({', '.join(VERSIONS)}): a newer version wrote it?")
    return version


def read_export_config(directory: Path) -> tuple[dict, str, int, int]:
    """(config.json, arch, latents, channels) of an export; both files must exist."""
    config_path, weights_path = directory / CONFIG, directory / WEIGHTS
    for path in (config_path, weights_path):
        if path.is_file():
            continue
        if not path.exists():
            raise ExportError(f"missing {path}" + (f" (a link to {os.readlink(path)}, which does not exist)"
                                                   if path.is_symlink() else ""))
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise ExportError(f"{path} is {kind}" + (f" (a link to {os.readlink(path)})" if path.is_symlink() else "")
                          + ", not the export's file")
    try:
        config = json.loads(config_path.read_text())
        arch = config["model"]
        return config, arch["arch"], int(arch["latents"]), int(arch["channels"])
    except (json.JSONDecodeError, RecursionError, KeyError, TypeError, ValueError, OverflowError) as e:
        raise ExportError(f"{config_path}: not a betavae-dist export config ({type(e).__name__}: {e})") from None


def check_header(model: nn.Module, weights_path: Path, strict: bool = True, module_key=lambda key: key) -> None:
    """The safetensors header must list the model's float32 tensors with its shapes (exactly those
    tensors if `strict`); `module_key`: the module's key of a tensor's name in the file."""
    try:
        with safe_open(weights_path, "pt") as f:
            header = {module_key(k): (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ExportError(f"{weights_path}: unreadable safetensors file ({e})") from None
    check_state_dict(model, {k: torch.empty(shape, device="meta") for k, (shape, _) in header.items()}, weights_path, strict)
    wrong = next((k for k, (_, dtype) in header.items() if dtype != "F32"), None)
    if wrong:
        raise ExportError(f"{weights_path}: tensor {wrong} is {header[wrong][1]}, exports are float32")


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: Path | str, strict: bool = True) -> None:
    """Raise ExportError naming `source` unless `state` has the model's shapes for the keys they share,
    and (if `strict`) exactly the model's keys."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    if strict and (missing or unexpected):
        raise ExportError(f"{source}: weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    wrong = [k for k in expected if k in got and expected[k] != got[k]]
    if wrong:
        k = wrong[0]
        raise ExportError(f"{source}: tensor {k} has shape {got[k]}, the model needs {expected[k]}")
