"""Process-wide runtime tuning, applied once by every RTPM process (server, worker, CLI).

glibc serves allocations over 128 KiB with fresh mmap()ed pages and gives freed memory back at
once, so every numpy temporary of a query (a few MiB each, dozens per query) costs page faults
and zeroing: about a third of a PromQL evaluation's time on the bench data. Keeping blocks up to
32 MiB on the heap and trimming only past 128 MiB free lets those temporaries reuse memory; RSS
may stay up to that much higher after a large query. A MALLOC_*_ variable set by the operator wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 128 * 1024 * 1024

_done = False


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds (see the module doc). Returns whether it did."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
