"""glibc's allocator tuned for the zoo's work: tens of megabytes allocated and freed per batch, kept for reuse.

Every batch allocates buffers of 10-70 MB (the letterboxed batch, the network's outputs, NMS's overlap matrices of
a thousand kept boxes against a block of candidates). With glibc's defaults such a buffer is mapped fresh from the
kernel and its memory given back when freed, so every page is faulted in and zeroed again for the next batch:
measured, a third of the command's system time, and half of NMS's time on the random-weight demo (0.32 s per batch
of 8 against 0.16 s). The same settings that `MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` would give when
exported before starting Python are applied here at start, so the memory freed by one batch serves the next. The
cost is memory that stays mapped after a peak, up to `TRIM_BYTES` above what is in use.
"""
from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_BYTES = 32 * 1024 * 1024   # glibc's maximum threshold: blocks below it come from the heap, reused
TRIM_BYTES = 256 * 1024 * 1024  # freed memory at the heap's top kept for the next batch, up to this much
TOP_PAD_BYTES = 64 * 1024 * 1024  # the heap grows in steps this large, not page by page


def keep_freed_memory(libc=None) -> bool:
    """Apply the settings; False (and nothing changed) where the C library is not glibc or refuses one."""
    if libc is None:
        libc = _glibc()
        if libc is None:
            return False
    settings = ((M_MMAP_THRESHOLD, MMAP_BYTES), (M_TRIM_THRESHOLD, TRIM_BYTES), (M_TOP_PAD, TOP_PAD_BYTES))
    return all(libc.mallopt(param, value) == 1 for param, value in settings)  # mallopt: 1 on success


def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl, macOS: no such mallopt semantics)
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc
