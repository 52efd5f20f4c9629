"""maxim_tf.allocator: glibc malloc tuning of the maxim-tf command (issue 18)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.environ.get("LD_PRELOAD"),
    reason="glibc malloc tuning is Linux-only and is skipped under a preloaded allocator")

# In a fresh interpreter: is a 64 MiB malloc served by mmap (glibc's default: the
# threshold starts at 128 KiB and never exceeds 32 MiB) or from the heap (no mmap)?
_PROBE = r"""
import ctypes, sys
from maxim_tf import allocator
if sys.argv[1] == "tune":
    print(allocator.tune_malloc())
else:
    print("untouched")
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
before = libc.mallinfo2().hblkhd
p = libc.malloc(64 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(ctypes.c_void_p(p))
"""


def _probe(mode, **env):
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True, timeout=60).stdout.split()
    return out[0] if len(out) == 2 else " ".join(out[:-1]), int(out[-1])


def test_tuned_malloc_serves_large_buffers_from_the_heap():
    done, mmapped = _probe("keep")
    assert done == "untouched" and mmapped >= 64 << 20  # glibc's default: a fresh mapping
    done, mmapped = _probe("tune")
    assert done == "glibc mallopt"
    assert mmapped == 0


def test_opt_out_and_preloaded_allocators_are_left_alone():
    done, mmapped = _probe("tune", MAXIM_TF_MALLOC="default")
    assert done == "skipped: MAXIM_TF_MALLOC=default" and mmapped >= 64 << 20
    # A path that does not exist: ld.so warns and loads nothing, the name alone decides.
    done, mmapped = _probe("tune", LD_PRELOAD="/nonexistent/libtcmalloc_minimal.so.4")
    assert done == "skipped: another allocator is preloaded" and mmapped >= 64 << 20


def test_the_command_tunes_before_anything_else():
    from maxim_tf import cli

    source = open(cli.__file__).read()
    body = source[source.index("def console_main"):]
    assert body.index("allocator.tune_malloc()") < body.index("main(argv)")
