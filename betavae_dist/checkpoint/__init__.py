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

from .files import (MANIFEST, STATE_FILE, CheckpointError, checkpoints, kept, latest, prune, refuse_intruders, save,
                    step_dir, write, write_failure)
from .resume import (DEEPSPEED_TAG, choose_resume, latest_verified, load, read_step, resolve_resume, usable, verifies,
                     verify, weights)

__all__ = ["MANIFEST", "STATE_FILE", "CheckpointError", "checkpoints", "kept", "latest", "prune", "refuse_intruders",
           "save", "step_dir", "write", "write_failure", "DEEPSPEED_TAG", "choose_resume", "latest_verified", "load", "read_step",
           "resolve_resume", "usable", "verifies", "verify", "weights"]
