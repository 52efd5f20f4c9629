"""Atomic file writing shared by the converter, image writer and exporters.

A file appears complete under its final name or not at all: content goes to a
temporary file in the destination folder, then ``os.replace`` renames it.
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
