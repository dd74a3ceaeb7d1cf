"""How the daemon's C allocator gives memory back, and what its garbage collector scans.

glibc keeps a freed block in the arena of the thread that freed it, and large blocks
below its (growing) mmap threshold are never returned to the system. The argon2id
hash of every API key check or creation allocates 19 MiB (keys/api_key.py), each in
whatever pool thread ran it, so each such thread kept about 19 MiB for good: a 3-minute
soak (bench/soak.py) grew the daemon from 128 to 189 MB RSS, and standalone, 6 threads
hashing took a process from 15 to 132 MB. With the mmap threshold fixed at 1 MiB,
such blocks are mapped and unmapped per use: the same standalone run stayed at 15 MB.
A 19 MiB mmap and munmap cost microseconds against argon2's 20 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # <malloc.h>
LARGE_BLOCK_BYTES = 1 << 20


def return_large_blocks(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Have malloc serve blocks of `threshold` bytes and more by mmap, so that freeing
    them returns the memory at once. False (logged) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        log.info("mallopt is not available (%s): large blocks stay in malloc's arenas", exc)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive after start-up (modules, classes, the
    store, the routes: ~68,000 tracked objects) out of the collector's generations, so
    a full collection scans only what came after. How many were frozen.

    Measured in the daemon under wrk (gc.callbacks, load average 11-12): 350,000 calls
    at 1 and 32 connections took 31 young collections (0.3-0.6 ms each), 2 middle ones
    and no full one, so the collector is not in the calls' tail; but a full collection
    of the start-up heap took 24-83 ms (load 4-12), and one that a deploy or an admin
    request triggers while calls flow would stall every call for that long. Frozen,
    a full collection took 0.3-0.5 ms (load 4). docs/performance.md has the runs."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
