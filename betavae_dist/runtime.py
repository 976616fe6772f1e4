"""Process-level settings that make CPU training faster.

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
