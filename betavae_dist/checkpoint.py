"""Atomic training checkpoints under RUN/checkpoints/step_N.

A checkpoint is written by `Accelerator.save_state` into a hidden `.tmp-step_N` directory, its
files are fsynced, and only then is it renamed to `step_N`. A directory named `step_N` is
therefore always complete: a crash or kill at any moment leaves the previous one loadable, and a
stray `.tmp-*` is ignored and cleaned up by the next save.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step_(\d+)$")


def checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def latest(ckpt_dir: Path) -> Path | None:
    found = checkpoints(ckpt_dir)
    return found[-1][1] if found else None


def _fsync_tree(directory: Path) -> None:
    for path in [*directory.rglob("*"), directory]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save(accelerator: Accelerator, ckpt_dir: Path, step: int, keep: int) -> Path:
    """Save the full training state at `step` (call on every rank)."""
    final, tmp = ckpt_dir / f"step_{step}", ckpt_dir / f".tmp-step_{step}"
    if accelerator.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        for stale in ckpt_dir.glob(".tmp-*"):
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps({"step": step}))
        _fsync_tree(tmp)
        if final.exists():  # re-saving the same step after a resume
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in checkpoints(ckpt_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def read_step(checkpoint: Path) -> int:
    """The global step a checkpoint was taken at; errors name the path."""
    state = checkpoint / STATE_FILE
    try:
        return int(json.loads(state.read_text())["step"])
    except FileNotFoundError:
        raise FileNotFoundError(f"not a complete checkpoint (no {STATE_FILE}): {checkpoint}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{state}: unreadable trainer state ({e})") from None


def resolve_resume(resume: str, ckpt_dir: Path) -> Path | None:
    """The checkpoint to start from: `auto` = newest complete one (if any), `none`, or a path."""
    if resume == "none":
        return None
    if resume == "auto":
        return latest(ckpt_dir)
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint to resume from does not exist: {path} (train.resume)")
    return path


def load(accelerator: Accelerator, checkpoint: Path) -> int:
    """Restore model, optimiser and RNG states; returns the step to continue from."""
    step = read_step(checkpoint)
    accelerator.load_state(str(checkpoint))
    return step
