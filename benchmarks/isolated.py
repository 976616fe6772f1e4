"""Run one benchmark case in a fresh process.

Process-wide state must not leak between cases: the trainer's malloc setting (which cannot be
undone: glibc's dynamic thresholds stay off once set), torch's threads, Accelerate's singleton
state. Each case gets a new interpreter (spawn), so a reference runs exactly as it would alone.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def _with_start_method(method: str, fn, *args):
    # A spawned child's default start method is "spawn": its DataLoader workers would then start a
    # fresh interpreter each (~1 s of imports per epoch, paid by both readers of the stream
    # benchmark) where a launched trainer forks them.
    multiprocessing.set_start_method(method, force=True)
    return fn(*args)


def run_isolated(fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_with_start_method, multiprocessing.get_start_method(), fn, *args).result()
