"""The base of every error a command line tells in one line (no traceback) and exits on."""

from __future__ import annotations


class BetaVAEError(Exception):
    """Bad input or a run that cannot go on; the message names the thing at fault (config key and
    file, shard and sample, checkpoint path). `exit_code`: what a command line exits with.
    `quiet`: every rank raised it and another rank tells it (one line per job)."""

    exit_code = 1

    def __init__(self, message: str = "", quiet: bool = False):
        super().__init__(message)
        self.quiet = quiet
