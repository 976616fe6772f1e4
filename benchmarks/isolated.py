"""Run one benchmark case in a fresh process.

Process-wide state must not leak between cases: the trainer's malloc setting (which cannot be
undone: glibc's dynamic thresholds stay off once set), torch's threads, Accelerate's singleton
state. Each case gets a new interpreter (spawn), so a reference runs exactly as it would alone.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def run_isolated(fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()
