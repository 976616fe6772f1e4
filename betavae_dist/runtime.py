"""Process-level settings that make CPU training faster.

glibc's malloc hands the top of its heap back to the kernel whenever enough is free, and serves
big blocks with mmap/munmap. A training step frees and reallocates megabytes of activations, so
by default every step paid for `brk` calls and page faults: half of a CPU training process's time
went to the kernel (measured with strace: ~290 µs per brk call), and keeping the heap made the
conv64 step ~1.5x faster here (docs/benchmarks.md). The memory stays with the process instead,
which a training job keeps using anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_heap(enabled: bool = True) -> bool:
    """Stop (or, with enabled=False, restore) glibc's heap trimming; False where there is no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if enabled:
        settings = {_M_MMAP_THRESHOLD: 1 << 30, _M_TRIM_THRESHOLD: 1 << 30, _M_TOP_PAD: 64 << 20}
    else:  # glibc's defaults
        settings = {_M_MMAP_THRESHOLD: 128 << 10, _M_TRIM_THRESHOLD: 128 << 10, _M_TOP_PAD: 0}
    return all(mallopt(option, value) == 1 for option, value in settings.items())
