"""Stopping on request: SLURM's (or a user's) SIGTERM/SIGUSR1 becomes a checkpoint at the next step
and the exit status that asks for a requeue."""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager

import torch

from .errors import BetaVAEError

# Stopped by SIGTERM/SIGUSR1 after writing a checkpoint: requeue and resume. slurm/common.sh makes
# it 0: the job script learns of the preemption from the signal, and srun logs any other as an error.
PREEMPTED_EXIT_CODE = int(os.environ.get("BETAVAE_PREEMPTED_EXIT_CODE", "3"))


class Preempted(BetaVAEError):
    """A stop signal came and the checkpoint of the step reached is written: the command line exits
    with PREEMPTED_EXIT_CODE, so that SLURM's requeue (or the user) runs the same command again."""

    exit_code = PREEMPTED_EXIT_CODE


class StopSignal:
    """Remembers SIGTERM/SIGUSR1 (what SLURM sends before a time limit or preemption) so the loop
    can checkpoint at the next step instead of dying mid-step. A signal that comes again later
    than REPEAT_GRACE seconds after the first exits at once (someone insisting, or a launcher
    tearing down a job whose other rank died). Within the grace it is the same stop: under SLURM
    with several nodes a cancel reaches each worker twice, from SLURM and forwarded by the elastic
    agent, milliseconds apart (the agent waits 30 s for its workers before it kills them). While a
    checkpoint is written (`writing`), no signal cuts it off: the stop it asks for comes after."""

    REPEAT_GRACE = 5.0
    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __enter__(self) -> StopSignal:
        """Listen; leaving the `with` puts the process's own handlers back (tests train in-process)."""
        self.received, self._first, self._writing = None, 0.0, False
        self._before = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.received is None:
            self.received, self._first = signal.Signals(signum).name, time.monotonic()
        elif time.monotonic() - self._first > self.REPEAT_GRACE and not self._writing:
            raise SystemExit(128 + signum)

    @contextmanager
    def writing(self):
        """A checkpoint is being written: a repeated signal does not end the process meanwhile."""
        self._writing = True
        try:
            yield
        finally:
            self._writing = False


class StopPoll:
    """Whether a stop signal came, asked at ordinary steps too, so that SLURM's warning (say
    --signal=B:USR1@120) is acted on within about BUDGET seconds of training whatever
    `train.log_every`: at every step in a process alone; with several ranks every k steps, in one
    small all-reduce (did any rank get one, and the slowest rank's seconds since the last poll),
    from which every rank derives the same next k."""

    BUDGET = 2.0

    def __init__(self, stop: StopSignal, ranks: int, device: torch.device):
        self.stop, self.ranks, self.device = stop, ranks, device
        self.every, self.steps, self.last = 1, 0, time.monotonic()

    def __call__(self) -> bool:
        if self.ranks == 1:
            return self.stop.received is not None
        self.steps += 1
        if self.steps < self.every:
            return False
        now = time.monotonic()
        asked = torch.tensor([float(self.stop.received is not None), now - self.last], device=self.device)
        torch.distributed.all_reduce(asked, op=torch.distributed.ReduceOp.MAX)
        stop, seconds = asked.tolist()
        self.every = max(1, min(1000, int(self.steps * self.BUDGET / max(seconds, 1e-6))))
        self.steps, self.last = 0, now
        return stop > 0
