"""Memory-allocator settings for the ``maxim-tf`` command (glibc ``mallopt``).

TensorFlow on CPU takes every tensor's buffer from the C library's ``malloc``.
With glibc's defaults, buffers above the (adaptive) mmap threshold are fresh
``mmap`` mappings and freed memory at the top of the heap is handed back to the
kernel, so the next step touches new pages again: a MAXIM forward pass at 512²
costs ~200 000 page faults, and on some virtual machines the kernel time of those
faults is as large as the compute (measured in issue 18, ``docs/benchmarks.md``:
half the training process's CPU time was system time, 5.0 s per step against 2.1 s
with tcmalloc).

:func:`tune_malloc` makes glibc serve every buffer from one heap that it keeps:
no ``mmap`` per large buffer (``M_MMAP_MAX=0``; raising the mmap threshold to its
32 MiB maximum was not enough, as a 1024² image has many larger tensors), one
arena for all threads (``M_ARENA_MAX=1``: the per-thread arenas of TensorFlow's
thread pool are mmapped heaps of 64 MiB at most, which glibc shrinks and
re-grows), no trimming of the heap (``M_TRIM_THRESHOLD=-1``: freed memory stays
in the process for the next image), grown 64 MiB at a time. Measured on the
shipped denoiser at 1024² (``docs/benchmarks.md``): 4.5 million page faults and
13 s of system time per image with the first, milder tuning, 43 000 and 0.1 s
with no mmap, one arena and a 2 GiB trim threshold; 19.6 s -> 11.0 s, as fast
as a preloaded tcmalloc. The cost is memory: the
process keeps its peak heap (it does not shrink between images). It changes
nothing when another allocator (tcmalloc, jemalloc, mimalloc) is preloaded, when
the C library is not glibc, or when ``MAXIM_TF_MALLOC=default`` is set. Only the
``maxim-tf`` command (and the test suite) calls it; the library never changes a
host program's allocator. On many-core servers a preloaded tcmalloc
(``LD_PRELOAD=libtcmalloc_minimal.so.4``) avoids the single arena's lock; see
the docs.
"""

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

MMAP_MAX = 0  # no mmap-ed chunks: every buffer comes from the heap
ARENA_MAX = 1
TRIM_THRESHOLD = -1  # glibc: -1 disables trimming (freed memory stays in the process)
TOP_PAD = 64 * 1024 * 1024

_OTHER_ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc", "tbbmalloc")

_state = {"done": None}


def _glibc():
    """The C library when it is glibc (it has ``gnu_get_libc_version`` and ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return None
    return libc


def tune_malloc():
    """Apply the settings above once per process; returns what was done, as a short string.

    One of ``"glibc mallopt"``, ``"skipped: <why>"``; never raises.
    """
    if _state["done"] is not None:
        return _state["done"]
    preload = os.environ.get("LD_PRELOAD", "")
    if os.environ.get("MAXIM_TF_MALLOC", "").strip().lower() == "default":
        done = "skipped: MAXIM_TF_MALLOC=default"
    elif any(name in preload for name in _OTHER_ALLOCATORS):
        done = "skipped: another allocator is preloaded"
    else:
        libc = _glibc()
        if libc is None:
            done = "skipped: not glibc"
        else:
            ok = all(libc.mallopt(param, value) == 1 for param, value in (
                (_M_MMAP_MAX, MMAP_MAX), (_M_ARENA_MAX, ARENA_MAX),
                (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
            done = "glibc mallopt" if ok else "skipped: mallopt refused a setting"
    _state["done"] = done
    return done
