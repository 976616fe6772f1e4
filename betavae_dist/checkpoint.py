"""Atomic, self-verifying training checkpoints under RUN/checkpoints/step_N.

A checkpoint is written by `Accelerator.save_state` into a hidden `.tmp-step_N` directory; then
`trainer_state.json` (the step) and, last, `manifest.json` (every file's size and sha256, and the
step) are added, the files are fsynced, and only then is the directory renamed to `step_N`. Old
checkpoints are renamed to a hidden `.old-step_N` before they are deleted. So a directory named
`step_N` is always complete: a crash or kill at any moment leaves the previous one loadable, and
stray hidden directories are ignored and cleaned up by the next save.

Resuming verifies the manifest (damaged bytes, missing or truncated files, a step that does not
match); `resume=auto` falls back from a checkpoint that fails to the newest one that verifies,
saying why in one line. Rank 0 decides and every rank follows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .peers import lost_peer

STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the path and the cause. `quiet`: every
    rank raised it, and another rank tells it (one line per job)."""

    def __init__(self, message: str, quiet: bool = False):
        super().__init__(message)
        self.quiet = quiet


def checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first: directories named step_N (not links, not files)."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir()
             if (m := _NAME.match(p.name)) and p.is_dir() and not p.is_symlink()]
    return sorted(found)


def refuse_intruders(ckpt_dir: Path) -> None:
    """Name anything called step_N that is not a checkpoint directory (a file, a link): we would
    have to replace it at that step, and it is not ours to delete."""
    if not ckpt_dir.is_dir():
        return
    mine = {path for _, path in checkpoints(ckpt_dir)}
    for path in sorted(ckpt_dir.iterdir()):
        if _NAME.match(path.name) and path not in mine:
            kind = ("a link" if path.exists() else "a dangling link") if path.is_symlink() else "a file"
            raise CheckpointError(f"{path} is {kind}, not a checkpoint directory, where a checkpoint will be "
                                  "written; move it out of the checkpoints directory")


def latest(ckpt_dir: Path) -> Path | None:
    found = checkpoints(ckpt_dir)
    return found[-1][1] if found else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_tree(directory: Path) -> None:
    for path in [*directory.rglob("*"), directory]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_manifest(directory: Path, step: int) -> None:
    files = {str(p.relative_to(directory)): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(directory.rglob("*")) if p.is_file()}
    (directory / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=1))


def _remove(path: Path) -> None:
    """Delete a checkpoint directory so that no `step_N` is ever left half-deleted."""
    hidden = path.with_name(f".old-{path.name}")
    os.replace(path, hidden)
    _delete(hidden)


def _delete(path: Path) -> None:
    """A directory with its contents, or a file or link (a stale hidden entry may be any of them)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def save(accelerator: Accelerator, ckpt_dir: Path, step: int, keep: int) -> Path:
    """Save the full training state at `step` (call on every rank). A write that fails on one rank
    is told to every rank before any raises, so none waits for it in the next collective."""
    final, tmp = ckpt_dir / f"step_{step}", ckpt_dir / f".tmp-step_{step}"
    if accelerator.is_main_process:
        _clean(ckpt_dir)
    accelerator.wait_for_everyone()
    _agree(accelerator, _attempt(lambda: accelerator.save_state(str(tmp)), tmp, ckpt_dir), tmp)
    failure = None
    if accelerator.is_main_process:  # rank 0 commits; the others learn how that went
        failure = _attempt(lambda: (_commit(tmp, final, step), prune(ckpt_dir, keep)), tmp, ckpt_dir)
    _agree(accelerator, failure, tmp)
    return final


def _attempt(write: Callable[[], object], tmp: Path, ckpt_dir: Path) -> str | None:
    """Run `write`; None, or the line that says why it failed (a full disk, permissions, a quota)."""
    try:
        write()
        return None
    except (OSError, RuntimeError, SafetensorError) as e:
        if lost_peer(e):  # not the disk: another rank went away during the save's collectives
            raise
        return write_failure(tmp, e, kept(ckpt_dir))


def _agree(accelerator: Accelerator, failure: str | None, tmp: Path) -> None:
    """Every rank learns whether any rank's write failed; then all raise, or none does. The first
    rank that failed tells why, naming itself; the others raise quietly."""
    teller = accelerator.process_index
    if accelerator.num_processes > 1:
        failures = [None] * accelerator.num_processes
        torch.distributed.all_gather_object(failures, failure)
        teller, failure = next(((rank, f"rank {rank}: {f}") for rank, f in enumerate(failures) if f), (None, None))
    if failure:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(failure, quiet=teller != accelerator.process_index)


def kept(ckpt_dir: Path) -> str:
    """What a failed write left, for its error line."""
    previous = latest(ckpt_dir)
    return f"the previous checkpoint {previous} is intact" if previous else "no checkpoint was written before"


def write(ckpt_dir: Path, step: int, write_files: Callable[[Path], None]) -> Path:
    """A checkpoint written by one process: `write_files(directory)` fills a hidden directory,
    which is then committed as `save` does. Older checkpoints are left for `prune`."""
    final, tmp = ckpt_dir / f"step_{step}", ckpt_dir / f".tmp-step_{step}"
    try:
        _clean(ckpt_dir)
        tmp.mkdir()
        write_files(tmp)
        _commit(tmp, final, step)
    except (OSError, RuntimeError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(write_failure(tmp, e, kept(ckpt_dir))) from None
    return final


def _clean(ckpt_dir: Path) -> None:
    """Create the directory; remove what an interrupted save or removal left behind."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*ckpt_dir.glob(".tmp-*"), *ckpt_dir.glob(".old-*")]:
        _delete(stale)


def _commit(tmp: Path, final: Path, step: int) -> None:
    """The trainer state, then the manifest, fsync, and the rename that makes `final` exist."""
    (tmp / STATE_FILE).write_text(json.dumps({"step": step}))
    _write_manifest(tmp, step)
    _fsync_tree(tmp)
    if final.exists():  # re-saving the same step after a resume
        _remove(final)
    os.replace(tmp, final)


def prune(ckpt_dir: Path, keep: int) -> None:
    """Remove all but the newest `keep` checkpoints."""
    for _, old in checkpoints(ckpt_dir)[:-keep]:
        _remove(old)


FULL = 1 << 20  # bytes free under which a write that failed without an OS error failed for space


def write_failure(path: Path, error: Exception, kept: str) -> str:
    """One line for a failed write: the path, the cause, the space left on its disk, what was kept.
    torch's writer reports a full disk as "[enforce fail at inline_container.cc:...] unexpected pos",
    without the OS's error, so a full disk is named from the space left."""
    os_error = isinstance(error, OSError) and error.strerror
    cause = error.strerror if os_error else str(error).strip().splitlines()[0]
    try:
        left = shutil.disk_usage(path.parent).free
        free = f"{left / 2**20:,.0f} MiB free there"
        if not os_error and left < FULL:
            cause = f"No space left on device ({cause})"
    except OSError:
        free = "free space unknown"
    return f"cannot write {path}: {cause} ({free}); {kept}"


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
