"""Telling a collective that failed because another rank went away from any other failure: gloo
and NCCL raise plain RuntimeErrors, and a save that fails this way is not the disk's fault.
(Its own module: the checkpoint code needs it without the process-group set-up's imports.)"""

from __future__ import annotations

LOST_PEER = ("connection reset by peer", "connection closed by peer", "broken pipe", "connection refused")


def lost_peer(error: BaseException) -> bool:
    """Whether `error` says another rank's connection went away."""
    return isinstance(error, RuntimeError) and any(words in str(error).lower() for words in LOST_PEER)
