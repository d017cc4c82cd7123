"""Hands the C allocator's free pages back to the system between shards.

glibc keeps the pages that numpy, onnxruntime and the stage threads free inside its arenas, and a
long run's peaks each leave some behind: the real dlib audit's steady RSS rose 790 -> 950 MiB over
the first half of a 10^6 collection while the traced (Python and numpy) memory stayed flat
(tests/test_memory.py); at the end of a 2x10^4 audit ``malloc_trim(0)`` returned 69 MiB of such
pages at once. Trimming after each shard (every ~2 minutes at 120 images/s, a few milliseconds)
bounds what the allocator keeps to one shard's churn. Elsewhere than glibc (macOS, musl) it is a no-op.
"""

from __future__ import annotations

import ctypes


def _malloc_trim():
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; True where the allocator can (glibc)."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
