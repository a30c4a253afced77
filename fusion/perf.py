"""Process-wide settings that make CPU tensor code faster; the ``rgbt`` command line applies them.

Full-image tensor code allocates a new temporary of several MB for nearly every operation. glibc's malloc
hands blocks that large back to the kernel when they are freed (unmapping them, or trimming the heap) and
maps fresh pages for the next one, so each temporary pays page faults: on the 2-core reference machine
about 10-25% of the metric suite's time on a 640x480 pair (``scripts/bench_metrics.py`` prints both).
Raising malloc's mmap and trim thresholds keeps freed blocks in the heap for reuse, at the price of up to
``trim_threshold`` bytes of freed memory kept by the process. Set ``RGBT_MALLOC=default`` to opt out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Keep freed blocks below ``mmap_threshold`` bytes in the heap, and up to ``trim_threshold`` bytes of
    free heap, instead of returning them to the kernel. Returns whether the settings took effect (only on
    Linux with glibc, and not when ``RGBT_MALLOC=default``)."""
    if sys.platform != "linux" or os.environ.get("RGBT_MALLOC", "").lower() == "default":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl) or none found
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # Setting either turns off glibc's dynamic thresholds, so the mmap threshold goes first: left at its
    # 128 KiB default, every temporary would be mapped afresh (five times slower). A refused value changes
    # nothing.
    return mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
