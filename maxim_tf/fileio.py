"""Atomic file writing shared by the converter, image writer and exporters.

A file appears complete under its final name or not at all: content goes to a
temporary file in the destination folder, then ``os.replace`` renames it.

Also: temporary folders named after their process (:func:`owned_temp_dir`), swept
by the next run once that process is gone (:func:`sweep_stale_temp_dirs`: what a
``kill -9`` leaves), and :func:`run_child`, which runs work that blocks in C++ (the
TFLite converter, tf2onnx) in a child process that a signal can stop at once.
"""

import contextlib
import os
import tempfile


def current_umask():
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On any exception the temporary file is removed and the exception re-raised,
    so nothing half-written is left. The file gets the usual 0666 & ~umask mode
    (``mkstemp`` creates 0600).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def make_dirs(path):
    """``os.makedirs(path, exist_ok=True)`` that returns the folders it created, deepest first.

    Pass the list to :func:`remove_empty_dirs` when the run that needed them fails,
    so a failed command leaves no empty folders behind.
    """
    path = os.path.abspath(os.fspath(path))
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    os.makedirs(missing[0] if missing else path, exist_ok=True)
    return missing


def remove_empty_dirs(created):
    """Remove the folders of ``created`` (from :func:`make_dirs`) that are empty, deepest first.

    Empty sub-folders the run made inside them are removed too; files are never touched.
    Returns the folders removed.
    """
    removed = []
    for top in sorted(set(created), key=len, reverse=True):
        if not os.path.isdir(top):
            continue
        for folder, _, _ in sorted(os.walk(top), key=lambda entry: len(entry[0]), reverse=True):
            try:
                os.rmdir(folder)  # only succeeds on an empty folder
                removed.append(folder)
            except OSError:
                pass
    return removed


def sha256_file(path, chunk=1 << 20):
    """Hex sha256 of a file, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------
# Temporary folders owned by a process, swept when their owner is gone (kill -9).
# ----------------------------------------------------------------------------------------

def _host_tag():
    import re
    import socket

    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64] or "host"


def owned_temp_dir(folder, prefix):
    """A ``tempfile.TemporaryDirectory`` in ``folder`` named ``<prefix><pid>@<host>@<random>``.

    It is removed on every exit path Python sees (return, exception, SIGTERM turned into
    an exception by ``maxim-tf``); after a ``kill -9`` the name tells
    :func:`sweep_stale_temp_dirs` that its owner is gone, and the next run removes it.
    """
    import tempfile

    return tempfile.TemporaryDirectory(prefix=owned_temp_prefix(prefix), dir=folder)


def owned_temp_prefix(prefix):
    """``<prefix><pid>@<host>@``: the name start of a temporary that
    :func:`sweep_stale_temp_dirs` can attribute to this process (for ``tempfile.mkdtemp``
    when the folder is renamed into place rather than removed)."""
    return f"{prefix}{os.getpid()}@{_host_tag()}@"


def sweep_stale_temp_dirs(folder, prefix):
    """Remove folders of :func:`owned_temp_dir` in ``folder`` whose owning process has ended.

    Only folders made on this host are considered (a shared network folder may hold
    another machine's live temporaries); a live or unknown owner keeps its folder.
    Returns the folders removed.
    """
    import shutil

    removed, host = [], _host_tag()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        parts = entry.name[len(prefix):].split("@")
        if len(parts) != 3 or parts[1] != host or not parts[0].isdigit():
            continue
        if int(parts[0]) == os.getpid() or _process_alive(int(parts[0])):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


# ----------------------------------------------------------------------------------------
# Work that blocks in C++ (the TFLite converter, tf2onnx) runs in a child process.
# ----------------------------------------------------------------------------------------

def run_child(target, *args):
    """Run ``target`` (``"package.module:function"``, called with the list of ``args`` as
    strings, returning an exit status) in a new Python process and wait; return its status.

    A converter that blocks in C++ never returns to Python, so a signal handler in this
    process would wait for it; the child is what blocks instead. Any exception here while
    waiting (SIGTERM turned into :class:`maxim_tf.errors.Terminated`, Ctrl-C's
    ``KeyboardInterrupt``) kills the child at once and is re-raised, so clean-up runs
    within a moment. The child dies with this process too, even on ``kill -9`` (see
    :func:`die_with_parent`, which runs before the child imports anything heavy).
    """
    import subprocess
    import sys

    # The child imports exactly the modules this process sees (a source checkout, too).
    path = os.pathsep.join(p for p in sys.path if isinstance(p, str) and p and os.path.isdir(p))
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.Popen([sys.executable, "-m", "maxim_tf.fileio", str(os.getpid()), target,
                             *map(str, args)],
                            stdin=subprocess.DEVNULL, env=env)
    try:
        return proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def die_with_parent(parent_pid):
    """In a child of :func:`run_child`: get SIGKILL when the parent dies (Linux), and exit
    now if it is already gone. Called first thing in the child, before heavy imports."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != int(parent_pid):
        sys.exit(1)


def _child_main(argv):
    """``python -m maxim_tf.fileio PARENT_PID module:function ARGS...`` (see :func:`run_child`)."""
    import importlib

    die_with_parent(argv[0])
    module, function = argv[1].split(":")
    return getattr(importlib.import_module(module), function)(argv[2:])


if __name__ == "__main__":
    import sys

    sys.exit(_child_main(sys.argv[1:]))
