"""Process-level settings that make CPU training faster: glibc's heap (`keep_heap`) and torch's
thread count (`cpu_threads`).

glibc's malloc hands the top of its heap back to the kernel whenever enough is free, and serves
big blocks with mmap/munmap. A training step frees and reallocates megabytes of activations, so by
default each conv64 step re-faulted ~20,000 pages (tests/test_runtime.py: ~97,000 minor faults in 5
steps; 0 with this setting). On a quiet machine the kernel serves them quickly and the step is
barely faster (benchmarks/train_throughput.py: 1.00-1.06x); on a loaded one, where half of a
trainer's time went to `brk` and page faults (strace), keeping the heap made it ~1.5x faster
(docs/benchmarks.md). The memory stays with the process instead, which a training job reuses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from contextlib import contextmanager
from typing import Iterator

import torch

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_heap() -> bool:
    """Stop glibc's heap trimming and large-block mmap for this process; False without glibc.

    There is no way back: setting the thresholds turns glibc's dynamic ones off for good."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    settings = {_M_MMAP_THRESHOLD: 1 << 30, _M_TRIM_THRESHOLD: 1 << 30, _M_TOP_PAD: 64 << 20}
    return all(mallopt(option, value) == 1 for option, value in settings.items())


@contextmanager
def cpu_threads(data_workers: int) -> Iterator[int]:
    """One torch thread per core this process may use (its CPU set: SLURM's allocation, taskset)
    that no data worker of ours needs, then the count as it was. A process started alone keeps
    torch's default, every core, which next to its own DataLoader workers (or other jobs) ran 4-20x
    slower than one thread (measured on a loaded host). Launchers choose per rank already
    (`accelerate launch`: cores / ranks), and OMP_NUM_THREADS is the user's choice: both are kept."""
    before = torch.get_num_threads()
    chosen = "OMP_NUM_THREADS" in os.environ or "LOCAL_RANK" in os.environ
    threads = before if chosen else max(1, len(os.sched_getaffinity(0)) - data_workers)
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
