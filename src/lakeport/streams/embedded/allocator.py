"""Keep freed heap memory for reuse instead of handing it back to the OS at once.

A producer at a million messages a second allocates and frees megabytes per batch. glibc
returns freed memory at the top of the heap to the OS after every batch, so each new batch
page-faults it back in: about a third of the producer's time in ``bench/topics.py``.
Raising the trim threshold, the top pad and the mmap threshold (what
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` and ``MALLOC_MMAP_THRESHOLD_`` do) keeps
batch-sized buffers on the heap for the next batch. The process
keeps at most its peak heap; nothing changes on other C libraries. Set
``LAKEPORT_MALLOC_TUNING=0`` to leave the allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 128 << 20
TOP_PAD = 64 << 20
MMAP_THRESHOLD = 32 << 20

_applied = False


def keep_freed_memory() -> bool:
    """Apply the glibc settings once per process; return whether they are in effect."""
    global _applied
    if _applied:
        return True
    if os.environ.get("LAKEPORT_MALLOC_TUNING", "1") == "0":
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False  # the user chose their own settings
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    _applied = all(
        mallopt(option, value)
        for option, value in (
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_TOP_PAD, TOP_PAD),
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        )
    )
    return _applied
