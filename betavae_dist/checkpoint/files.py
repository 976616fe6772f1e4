"""Writing checkpoints: atomic and verified by their manifest (see the package's docstring)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from accelerate import Accelerator
import torch
from safetensors import SafetensorError

from ..errors import BetaVAEError
from ..peers import lost_peer

STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^step_(\d+)$")


class CheckpointError(BetaVAEError, RuntimeError):
    """A checkpoint that cannot be used; the message names the path and the cause."""


def step_dir(ckpt_dir: Path, step: int) -> Path:
    """Where the checkpoint of step `step` is (or will be)."""
    return ckpt_dir / f"step_{step}"


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
    final, tmp = step_dir(ckpt_dir, step), ckpt_dir / f".tmp-step_{step}"
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
    final, tmp = step_dir(ckpt_dir, step), ckpt_dir / f".tmp-step_{step}"
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
    torch's writer reports a full disk as "[enforce fail at inline_container.cc:...] . unexpected pos
    ...", without the OS's error, so a full disk is named from the space left (on the nearest folder
    that still exists: a failed write may have removed its own)."""
    os_error = isinstance(error, OSError) and error.strerror
    cause = error.strerror if os_error else re.sub(r"^\[enforce fail at [^]]*\][ .]*", "", str(error).strip().splitlines()[0])
    try:
        left = shutil.disk_usage(next(p for p in path.parents if p.exists())).free
        free = f"{left / 2**20:,.0f} MiB free there"
        if not os_error and left < FULL:
            cause = "No space left on device"
    except (OSError, StopIteration):
        free = "free space unknown"
    return f"cannot write {path}: {cause} ({free}); {kept}"
