"""How a node's long-running processes use malloc (glibc), so that sessions stay small.

glibc gives threads their own malloc arenas, up to eight per core. A node's
threads (the event loop's executor, gRPC's, the process pool's manager) each
allocate a session's large buffers in turn, and what one arena frees the
others cannot reuse: measured on a 200,000 x 200,000 session, the initiator's
peak held about 25 MB more than it used. Two arenas keep the cost of that
small without threads queueing for one lock. Blocks of 64 KiB and up — a
session's arrays, and the 128 KiB chunks of points it sends, receives and
multiplies — are always mapped on their own, so they go back to the system when
freed instead of staying in an arena, whichever thread frees them (glibc would
otherwise raise that threshold to the size of the largest block freed so far,
up to 32 MiB). Mapping a chunk costs microseconds; multiplying it, milliseconds.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_malloc"]

# <malloc.h>
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 1 << 16


def tune_malloc() -> bool:
    """Caps glibc's malloc arenas and fixes its mmap threshold for this process (and children
    forked from it); call it before starting threads. Returns whether it applied (glibc only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to ask, or one without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; musl's accepts and ignores every option.
    return bool(mallopt(_M_ARENA_MAX, ARENAS)) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
