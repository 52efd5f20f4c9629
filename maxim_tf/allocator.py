"""Memory-allocator settings for the ``maxim-tf`` command (glibc ``mallopt``).

TensorFlow on CPU takes every tensor's buffer from the C library's ``malloc``.
With glibc's defaults, buffers above the (adaptive) mmap threshold are fresh
``mmap`` mappings and freed memory at the top of the heap is handed back to the
kernel, so the next step touches new pages again: a MAXIM forward pass at 512²
costs ~200 000 page faults, and on some virtual machines the kernel time of those
faults is as large as the compute (measured in issue 18, ``docs/benchmarks.md``:
half the training process's CPU time was system time, 5.0 s per step against 2.1 s
with tcmalloc).

:func:`tune_malloc` raises glibc's mmap threshold to its maximum (32 MiB), keeps
up to 1 GiB of freed memory in the process instead of returning it, and grows
the heap 64 MiB at a time. The cost is memory: the process keeps its peak heap
(it does not shrink between images). It changes nothing when another allocator
(tcmalloc, jemalloc, mimalloc) is preloaded, when the C library is not glibc, or
when ``MAXIM_TF_MALLOC=default`` is set. Only the ``maxim-tf`` command calls it;
the library never changes a host program's allocator. A preloaded tcmalloc
(``LD_PRELOAD=libtcmalloc_minimal.so.4``) is faster still; see the docs.
"""

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit systems
TRIM_THRESHOLD = 1024 * 1024 * 1024
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
                (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                (_M_TOP_PAD, TOP_PAD)))
            done = "glibc mallopt" if ok else "skipped: mallopt refused a setting"
    _state["done"] = done
    return done
