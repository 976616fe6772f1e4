"""Reading checkpoints: verify a manifest, choose the checkpoint to resume from (rank 0 decides,
every rank follows), load it, and the model weights inside one."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from safetensors import SafetensorError
from safetensors.torch import load_file

from .files import _NAME, MANIFEST, STATE_FILE, CheckpointError, _sha256, checkpoints


def read_step(checkpoint: Path) -> int:
    """The global step a checkpoint was taken at; errors name the path."""
    state = checkpoint / STATE_FILE
    try:
        return int(json.loads(state.read_text())["step"])
    except FileNotFoundError:
        raise CheckpointError(f"not a complete checkpoint (no {STATE_FILE}): {checkpoint}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{state}: unreadable trainer state ({e})") from None


def verify(checkpoint: Path) -> str | None:
    """None when the checkpoint is whole, else one line naming the file at fault."""
    manifest_path = checkpoint / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files, step = manifest["files"], int(manifest["step"])
    except FileNotFoundError:
        return f"{manifest_path} is missing (not a complete checkpoint)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{manifest_path} is unreadable ({e})"
    for name, entry in files.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != entry["size"]:
            return f"{path} has {path.stat().st_size} bytes, the manifest says {entry['size']}"
        if _sha256(path) != entry["sha256"]:
            return f"{path} is damaged (its sha256 differs from the manifest's)"
    named = _NAME.match(checkpoint.name)
    if named and int(named.group(1)) != step:
        return f"{manifest_path} is for step {step}, not {named.group(1)}"
    try:
        recorded = read_step(checkpoint)
    except CheckpointError as e:
        return str(e)
    if recorded != step:
        return f"{checkpoint / STATE_FILE} says step {recorded}, the manifest {step}"
    return None


def verifies(checkpoint: Path, say=print) -> bool:
    """Whether a checkpoint verifies; if not, `say` names it and why."""
    problem = verify(checkpoint)
    if problem:
        say(f"skipping checkpoint {checkpoint}: {problem}")
    return problem is None


def latest_verified(ckpt_dir: Path, say=print) -> Path | None:
    """The newest checkpoint that verifies; each newer one that fails is named by `say`."""
    return next((path for _, path in reversed(checkpoints(ckpt_dir)) if verifies(path, say)), None)


def usable(ckpt_dir: Path, named: Path | None = None, say=print) -> Path:
    """`named` if it verifies, else (none named) the newest checkpoint under `ckpt_dir` that does."""
    if named is not None:
        if problem := verify(named):
            raise CheckpointError(f"cannot use checkpoint {named}: {problem}")
        return named
    found = latest_verified(ckpt_dir, say)
    if found is None:
        raise CheckpointError(f"no complete, verified checkpoint under {ckpt_dir}")
    return found


def resolve_resume(resume: str, ckpt_dir: Path) -> Path | None:
    """The checkpoint to start from: `auto` (or `force`) = newest that verifies (none: start afresh,
    unless every checkpoint there fails), `none`, or a path, which must verify."""
    if resume == "none":
        return None
    if resume in ("auto", "force"):
        chosen = latest_verified(ckpt_dir)
        if chosen is None and checkpoints(ckpt_dir):
            raise CheckpointError(f"no checkpoint under {ckpt_dir} verifies (see above); train.resume=PATH "
                                  "or train.resume=none to start afresh")
        return chosen
    path = Path(resume)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint to resume from does not exist: {path} (train.resume)")
    if problem := verify(path):
        raise CheckpointError(f"cannot resume from {path} (train.resume): {problem}")
    return path


def choose_resume(resume: str, ckpt_dir: Path, accelerator: Accelerator) -> Path | None:
    """`resolve_resume` decided on rank 0 and followed by every rank (the same checkpoint, or the same error)."""
    decision = [None]
    if accelerator.is_main_process:
        try:
            chosen = resolve_resume(resume, ckpt_dir)
            decision = [("ok", str(chosen) if chosen else None)]
        except CheckpointError as e:
            decision = [("error", str(e))]
    if accelerator.num_processes > 1:
        broadcast_object_list(decision)
    outcome, value = decision[0]
    if outcome == "error":
        raise CheckpointError(value)
    return Path(value) if value else None


def load(accelerator: Accelerator, checkpoint: Path) -> int:
    """Restore model, optimiser and RNG states; returns the step to continue from."""
    step = read_step(checkpoint)
    try:
        accelerator.load_state(str(checkpoint))
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"cannot load checkpoint {checkpoint}: {str(e).splitlines()[0]}") from None
    return step


DEEPSPEED_TAG = "pytorch_model"  # where Accelerate's save_state puts a DeepSpeed engine's shards


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The fp32 model weights inside a checkpoint directory (plain or DeepSpeed ZeRO)."""
    path = ckpt / "model.safetensors"
    if (ckpt / DEEPSPEED_TAG).is_dir():
        # ZeRO shards (torch pickles, our own files) consolidated into fp32 master weights.
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        try:
            state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=DEEPSPEED_TAG)
        except (OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt / DEEPSPEED_TAG}: unreadable DeepSpeed checkpoint ({e})") from None
        return {k: v.float() for k, v in state.items()}
    if not path.is_file():
        raise CheckpointError(f"no model weights in checkpoint {ckpt} (expected {path.name} or {DEEPSPEED_TAG}/)")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
