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


def cpu_threads() -> tuple[int, str]:
    """How many intra-op threads the CLI gives torch, and why: ``RGBT_THREADS``, else ``OMP_NUM_THREADS``, else
    the CPUs this process may run on (``os.sched_getaffinity``, which respects taskset and container cpusets;
    torch's default counts every core of the machine, and too many threads on a loaded machine made the metric
    suite up to 10x slower than one)."""
    for var in ("RGBT_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v:
            try:
                n = int(v)
            except ValueError:
                n = 0
            if n >= 1:
                return n, var
    try:
        return max(1, len(os.sched_getaffinity(0))), "affinity"
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1), "cpu_count"


def set_threads() -> int:
    """Apply :func:`cpu_threads` to torch (the ``rgbt`` command does this at start); returns the count."""
    import torch

    n, _ = cpu_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
