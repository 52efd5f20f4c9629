"""Named models: one resolver for paths, saved names and presets; download and cache.

:func:`resolve_model` turns whatever a user passes as ``--model`` /
``Restorer(...)`` / ``MAXIM.from_preset(...)`` into a ``.keras`` file:

1. an existing ``.keras`` path;
2. ``<name>.keras`` in ``$MAXIM_TF_MODEL_DIR`` or ``saved_models/`` (the shipped
   ``denoise`` and ``deblur``);
3. a preset of :mod:`maxim_tf.presets` (an official released checkpoint): the
   cached conversion, downloaded and converted on first use.

Download, like a package manager: the checkpoint comes from
``$MAXIM_TF_OFFICIAL_URL/<Task>/<Dataset>/checkpoint.npz`` (default: the public
HTTPS endpoint of ``gs://gresearch/maxim/ckpt``; ``https://``, ``http://``,
``file://``, a plain folder and ``gs://`` through ``tf.io.gfile`` work) with a
progress bar, a timeout per read, a total deadline and retries. Everything is built
in a temporary folder of the cache and renamed into place when complete: the
checkpoint is checked (a zip archive, an npz without pickled objects, the
converter's strict name/shape check against the preset's variant), converted once,
and a ``manifest.json`` records the sha256 of both files, which is verified on
every use (a corrupted model is re-converted, a corrupted checkpoint re-fetched).
After any failure nothing is left in the cache. Every path the cache creates,
writes or removes is checked to lie inside it (:func:`in_cache`).

Cache: ``$MAXIM_TF_HOME`` if set, else ``$XDG_CACHE_HOME/maxim_tf``, else
``~/.cache/maxim_tf``; one folder per preset under ``presets/``.

This module imports TensorFlow only to convert or load a model.
"""

import contextlib
import http.client
import json
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from maxim_tf import fileio
from maxim_tf import presets as presets_lib
from maxim_tf._utils import env_number
from maxim_tf.errors import DownloadError, ModelNotFoundError, UsageError
from maxim_tf.fileio import sha256_file

MODEL_DIR_ENV = "MAXIM_TF_MODEL_DIR"
HOME_ENV = "MAXIM_TF_HOME"
TIMEOUT_ENV = "MAXIM_TF_DOWNLOAD_TIMEOUT"
RETRIES_ENV = "MAXIM_TF_DOWNLOAD_RETRIES"
DEADLINE_ENV = "MAXIM_TF_DOWNLOAD_DEADLINE"
# 0 turns off the fast-start twin that a preset's cache entry gets for restoring
# (maxim_tf.export.faststart); 1 (default) builds it once.
FASTSTART_ENV = "MAXIM_TF_FASTSTART"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 3
# The whole download (every try and the waits between them) must end within this many
# seconds, however steadily the data trickles in (the timeout above is per read).
DEFAULT_DEADLINE_S = 1800.0
# The first bytes of a download are gathered before its signature is checked (a server
# sending a byte at a time must not fail the check on the first byte).
_HEAD_BYTES = 256
# Seconds before retry k (1-based): _BACKOFF_S * 2 ** (k - 1).
_BACKOFF_S = 1.0
_CHUNK = 1 << 20
CHECKPOINT_FILE = "checkpoint.npz"
MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
_ZIP_MAGIC = b"PK\x03\x04"
# HTTP statuses worth another try; any other error status is final.
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


# ----------------------------------------------------------------------------------------
# Where things are
# ----------------------------------------------------------------------------------------

def cache_dir():
    """The cache folder: ``$MAXIM_TF_HOME``, else ``$XDG_CACHE_HOME/maxim_tf``, else ``~/.cache/maxim_tf``."""
    if os.environ.get(HOME_ENV):
        return pathlib.Path(os.environ[HOME_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
    return base / "maxim_tf"


def entry_dir(name):
    """Cache folder of preset ``name`` (``<cache>/presets/<name>``).

    Raises:
        UsageError: ``name`` is not a valid preset name (it could name a place outside
            the cache, see :func:`maxim_tf.presets.name_problem`).
    """
    problem = presets_lib.name_problem(name)
    if problem:
        raise UsageError(f"preset name {name!r} refused: {problem}")
    return in_cache(cache_dir() / "presets" / name, "use")


def in_cache(path, action):
    """``path`` itself, after checking that it lies inside the cache folder.

    The one check of every path the cache creates, writes or removes: ``path`` is
    resolved (``..`` and symbolic links followed) and must be the cache folder or lie
    below it, so a hostile preset name or a planted symbolic link cannot make the cache
    touch anything else.

    Args:
        path: the path about to be created, written or removed.
        action: what is about to be done, for the message ("remove", "create", ...).

    Raises:
        UsageError: naming the path, the cache and ``$MAXIM_TF_HOME``.
    """
    path = pathlib.Path(path)
    root = cache_dir().resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise UsageError(f"refusing to {action} {path}: it resolves to {resolved}, outside the "
                         f"model cache {root} (${HOME_ENV})")
    return path


def base_url():
    """Base location of the official checkpoints (``$MAXIM_TF_OFFICIAL_URL`` or the public bucket)."""
    return (os.environ.get(presets_lib.OFFICIAL_URL_ENV) or presets_lib.OFFICIAL_URL).rstrip("/")


def preset_url(preset):
    """Where the checkpoint of ``preset`` is fetched from: ``<base>/<Task>/<Dataset>/checkpoint.npz``."""
    if "://" in preset.path:
        return preset.path
    return f"{base_url()}/{preset.path.lstrip('/')}"


def model_dirs():
    """Folders searched for named models: ``$MAXIM_TF_MODEL_DIR`` (if set), then ``saved_models/``.

    Returns:
        List of ``pathlib.Path`` (existing or not), in search order.
    """
    dirs = []
    if os.environ.get(MODEL_DIR_ENV):
        dirs.append(pathlib.Path(os.environ[MODEL_DIR_ENV]))
    # A source checkout (or editable install) keeps them in <repo>/saved_models; a wheel
    # installs the same files as the maxim_tf.saved_models package.
    here = pathlib.Path(__file__).resolve()
    for d in (here.parents[1] / "saved_models", here.parent / "saved_models"):
        if d not in dirs:
            dirs.append(d)
    return dirs


def available_models():
    """Names of the ``<name>.keras`` files in :func:`model_dirs`, sorted."""
    names = set()
    for d in model_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.keras"))
    return sorted(names)


def status(preset):
    """``"shipped"``, ``"cached"`` or ``"not downloaded"`` (no checksums: a quick look)."""
    if preset.shipped and any((d / preset.shipped).is_file() for d in model_dirs()):
        return "shipped"
    entry = entry_dir(preset.name)
    if (entry / MANIFEST_FILE).is_file() and (entry / MODEL_FILE).is_file():
        return "cached"
    return "not downloaded"


# ----------------------------------------------------------------------------------------
# The resolver
# ----------------------------------------------------------------------------------------

def resolve_model(name_or_path, progress=True, faststart=None):
    """Find (or download and convert) the ``.keras`` file for a path, saved name or preset.

    Args:
        name_or_path: a ``.keras`` path; a name looked up as ``<name>.keras`` in
            :func:`model_dirs` (e.g. ``"denoise"``); or a preset name of
            :func:`maxim_tf.presets.all_presets` (e.g. ``"maxim-s3-denoising-sidd"``),
            downloaded and converted on first use.
        progress: show download progress and what is being done on stderr.
        faststart: for a preset, also build its fast-start twin (see :func:`fetch_preset`).

    Returns:
        ``pathlib.Path`` of an existing ``.keras`` file.

    Raises:
        ModelNotFoundError: listing the names that are available.
        ModelFileError: a path that is not a ``.keras`` file.
        DownloadError: a preset that cannot be fetched or fails its checks.
    """
    text = os.fspath(name_or_path)
    path = pathlib.Path(text).expanduser()
    if path.exists():  # an explicit file or folder: the model-file checks say what is wrong
        from maxim_tf.modelfile import check_keras_path

        return check_keras_path(path)
    looks_like_path = path.suffix == ".keras" or os.sep in text or "/" in text
    if looks_like_path:
        raise ModelNotFoundError(f"{path}: no such model file")
    for d in model_dirs():
        candidate = d / f"{text}.keras"
        if candidate.is_file():
            return candidate
    preset = presets_lib.get_preset(text)
    if preset is not None and preset.path:
        return fetch_preset(preset, progress=progress, faststart=faststart)
    names = available_models() + [n for n, p in presets_lib.all_presets().items() if p.path]
    where = " or ".join(str(d) for d in model_dirs())
    raise ModelNotFoundError(
        f"Model {text!r} not found: not an existing .keras file, no {text}.keras in {where}, "
        f"and not a preset. Available names: {', '.join(names) or 'none'} "
        f"(see `maxim-tf models`).")


def load_model(model, progress=True, require_maxim=False, allow_untrained=False):
    """The one model loader of maxim_tf: a model object, a path, a saved name or a preset.

    Args:
        model: a Keras model or any other callable (returned as it is); a ``.keras``
            path, a saved name (``"denoise"``) or a preset (see :func:`resolve_model`;
            loaded in Keras safe mode); with ``allow_untrained``, also a variant name
            (``"S-3"``) or a ``.json`` file of ``maxim_tf.MAXIM`` constructor arguments,
            built with random weights (seeded: the same weights every time).
        progress: show download progress on stderr.
        require_maxim: refuse a model that is not a MAXIM (no ``size_multiple``).
        allow_untrained: accept variant names and JSON configs (benchmarks time an
            architecture; restoring with random weights makes no sense).

    Returns:
        The model (a Keras MAXIM has its ``size_multiple`` attribute).

    Raises:
        ModelNotFoundError, ModelFileError, DownloadError: see :func:`resolve_model`;
        ModelFileError also when the file does not load as a Keras model, or is not a
        MAXIM with ``require_maxim``. UsageError: a variant or JSON config without
        ``allow_untrained``.
    """
    if not isinstance(model, (str, os.PathLike)):
        if require_maxim and not hasattr(model, "size_multiple"):
            raise UsageError(f"Expected a maxim_tf.MAXIM, a .keras path, a saved name or a "
                             f"preset. Received: {type(model).__name__}")
        if not callable(model):
            raise UsageError(f"Expected a model (a callable), a .keras path, a saved name or "
                             f"a preset. Received: {type(model).__name__}")
        return model
    text = os.fspath(model)
    path = pathlib.Path(text).expanduser()
    if text in presets_lib.VARIANTS or (path.suffix == ".json" and path.is_file()):
        if not allow_untrained:
            kind = "a JSON config" if path.suffix == ".json" else "a variant"
            raise UsageError(f"{text!r} is an architecture ({kind}), not a trained model: it "
                             f"would restore with random weights. Give a .keras file, a saved name or a "
                             f"preset of `maxim-tf models`.")
        from maxim_tf.model import MAXIM

        return MAXIM.untrained(text)
    from maxim_tf.modelfile import load_keras_model

    # A Keras model is wanted here, not LiteRT: no fast-start twin is built for it.
    return load_keras_model(resolve_model(text, progress=progress, faststart=False),
                            require_maxim=require_maxim)


# ----------------------------------------------------------------------------------------
# Cache entries
# ----------------------------------------------------------------------------------------

def read_manifest(name):
    """The manifest of the cache entry of ``name`` (dict), or None if absent or unreadable."""
    try:
        with open(entry_dir(name) / MANIFEST_FILE, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _file_ok(folder, record):
    path = folder / record["file"]
    return path.is_file() and path.stat().st_size == record["size"] \
        and sha256_file(path) == record["sha256"]


def clear(name):
    """Remove the cache entry of preset ``name``; returns True if there was one.

    Raises:
        UsageError: ``name`` is not a valid preset name, or its entry resolves to a
            place outside the cache (a symbolic link): nothing is removed.
    """
    entry = entry_dir(name)
    if not entry.exists() and not entry.is_symlink():
        return False
    manifest = read_manifest(name) if not entry.is_symlink() else None
    _rmtree(entry)
    _remove_if_empty(entry.parent)
    digest = ((manifest or {}).get("model") or {}).get("sha256")
    if isinstance(digest, str) and len(digest) == 64 and digest.isalnum():  # its twin too
        from maxim_tf import litert

        twin = litert.faststart_folder(digest)
        if twin.exists():
            _rmtree(twin)
            _remove_if_empty(twin.parent)
    return True


def _rmtree(folder, ignore_errors=False):
    """``shutil.rmtree`` of a folder checked to lie inside the cache (:func:`in_cache`)."""
    in_cache(folder, "remove")
    folder = pathlib.Path(folder)
    if folder.resolve() == cache_dir().resolve():
        raise UsageError(f"refusing to remove the whole model cache {folder}")
    if folder.is_symlink():  # a link (to a place inside the cache): remove the link only
        folder.unlink()
        return
    shutil.rmtree(folder, ignore_errors=ignore_errors)


def fetch_preset(preset, progress=True, timeout=None, retries=None, deadline=None,
                 faststart=None):
    """The cached ``.keras`` of ``preset``: verified, or downloaded, checked and converted now.

    Args:
        preset: a :class:`maxim_tf.presets.Preset` with a ``path``.
        progress: progress bar and one line per step on stderr.
        timeout: seconds without data before a try is abandoned (default
            ``$MAXIM_TF_DOWNLOAD_TIMEOUT`` or 60).
        retries: further tries after a transient failure (default
            ``$MAXIM_TF_DOWNLOAD_RETRIES`` or 3).
        deadline: seconds the whole download may take (default
            ``$MAXIM_TF_DOWNLOAD_DEADLINE`` or 1800), see :func:`download`.
        faststart: also make sure the cached model has its verified fast-start twin
            (its fp32 LiteRT file, which :class:`maxim_tf.Restorer` runs instead of the
            Keras graph: a few minutes once for an official-size model, then about a
            second of start-up per run; :mod:`maxim_tf.export.faststart`). None: unless
            ``$MAXIM_TF_FASTSTART`` is 0. A twin that cannot be built is reported in
            one line and the model runs on Keras.

    Returns:
        ``pathlib.Path`` of the cached ``model.keras``.

    Raises:
        DownloadError: the checkpoint cannot be fetched or fails a check; nothing
            is left in the cache.
        UsageError: a bad preset name, or a download setting of the environment that
            is not a valid number (the message names the variable).
    """
    timeout, retries, deadline = download_settings(timeout, retries, deadline)
    entry = entry_dir(preset.name)
    manifest = read_manifest(preset.name)
    reuse_checkpoint = None
    if manifest is not None:
        try:
            model_ok = _file_ok(entry, manifest["model"])
            checkpoint_ok = model_ok or _file_ok(entry, manifest["checkpoint"])
        except (KeyError, TypeError, OSError):
            model_ok = checkpoint_ok = False
        if model_ok:
            return _with_twin(entry / MODEL_FILE, faststart, progress)
        if checkpoint_ok:
            _say(progress, f"maxim-tf: cached model of {preset.name} is corrupted (sha256 "
                           f"mismatch); converting it again from the cached checkpoint")
            reuse_checkpoint = entry / CHECKPOINT_FILE
        else:
            _say(progress, f"maxim-tf: cache entry of {preset.name} in {entry} is corrupted "
                           f"(sha256 mismatch); fetching it again")
    elif entry.exists():
        _say(progress, f"maxim-tf: incomplete cache entry {entry}; fetching it again")
    path = _build_entry(preset, reuse_checkpoint, progress, timeout, retries, deadline)
    return _with_twin(path, faststart, progress)


def faststart_wanted(faststart=None):
    """``faststart`` if given, else ``$MAXIM_TF_FASTSTART`` (1 or 0; default 1)."""
    if faststart is not None:
        return bool(faststart)
    value = os.environ.get(FASTSTART_ENV, "1").strip().lower()
    if value in ("", "1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise UsageError(f"environment variable {FASTSTART_ENV}={value!r} is not valid: expected "
                     f"1 (build the fast-start twin of a preset) or 0")


def _with_twin(model_path, faststart, progress):
    """``model_path``, after building its fast-start twin if wanted and missing."""
    if not faststart_wanted(faststart):
        return model_path
    # The second sanctioned step up of the core (tests/test_layering.py): the twin is an
    # export of the cached model, made once like its conversion.
    from maxim_tf.export.faststart import build_twin

    try:
        build_twin(model_path, say=lambda line: _say(progress, f"maxim-tf: {line}"))
    except Exception as e:  # noqa: BLE001 - the model itself is fine: it runs on Keras
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        _say(True, f"maxim-tf: no fast-start twin for {model_path} ({first}); it runs on Keras")
    return model_path


def download_settings(timeout=None, retries=None, deadline=None):
    """``(timeout, retries, deadline)``: the values given, else those of the environment
    (``$MAXIM_TF_DOWNLOAD_TIMEOUT``, ``$MAXIM_TF_DOWNLOAD_RETRIES``,
    ``$MAXIM_TF_DOWNLOAD_DEADLINE``), else the defaults (60 s, 3, 1800 s).

    Raises:
        UsageError: a variable that is not a valid number, named with its value.
    """
    if timeout is None:
        timeout = env_number(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, positive=True)
    if retries is None:
        retries = env_number(RETRIES_ENV, DEFAULT_RETRIES, kind=int, minimum=0)
    if deadline is None:
        deadline = env_number(DEADLINE_ENV, DEFAULT_DEADLINE_S, positive=True)
    return timeout, retries, deadline


def _build_entry(preset, reuse_checkpoint, progress, timeout, retries, deadline):
    entry = entry_dir(preset.name)
    created = _makedirs(entry.parent)
    url = preset_url(preset)
    stage = pathlib.Path(tempfile.mkdtemp(prefix=f".{preset.name}.", suffix=".tmp",
                                          dir=in_cache(entry.parent, "write in")))
    try:
        os.chmod(stage, 0o777 & ~fileio.current_umask())  # mkdtemp makes it private (0700)
        checkpoint = stage / CHECKPOINT_FILE
        start = time.perf_counter()
        if reuse_checkpoint is not None:
            shutil.copyfile(reuse_checkpoint, checkpoint)
        else:
            _say(progress, f"maxim-tf: downloading {preset.name} from {url}")
            download(url, checkpoint, progress=progress, timeout=timeout, retries=retries,
                     what=preset.name, manual=_manual_hint(preset, url), deadline=deadline)
            _say(progress, f"maxim-tf: downloaded {_megabytes(checkpoint)} in "
                           f"{time.perf_counter() - start:.1f} s")
        checkpoint_sha = sha256_file(checkpoint)
        if preset.sha256 and checkpoint_sha != preset.sha256.lower():
            raise DownloadError(
                f"Checkpoint of preset {preset.name!r} from {url} has sha256 {checkpoint_sha}, "
                f"expected {preset.sha256} (a different or damaged file); nothing was cached.")
        start = time.perf_counter()
        _say(progress, f"maxim-tf: checking and converting {preset.name} "
                       f"({preset.variant or 'custom config'})")
        model_path = stage / MODEL_FILE
        _convert(preset, checkpoint, model_path, url)
        _say(progress, f"maxim-tf: converted in {time.perf_counter() - start:.1f} s")
        manifest = {
            "name": preset.name,
            "url": url,
            "variant": preset.variant,
            "config": preset.model_config(),
            "checkpoint": {"file": CHECKPOINT_FILE, "size": checkpoint.stat().st_size,
                           "sha256": checkpoint_sha},
            "model": {"file": MODEL_FILE, "size": model_path.stat().st_size,
                      "sha256": sha256_file(model_path)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (stage / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=list) + "\n",
                                           encoding="utf-8")
        _install(stage, entry)
        _say(progress, f"maxim-tf: cached {preset.name} in {entry}")
        return entry / MODEL_FILE
    except BaseException:
        _rmtree(stage, ignore_errors=True)
        for folder in reversed(created):
            _remove_if_empty(folder)
        raise


def _convert(preset, checkpoint, output, url):
    """Strict conversion of a downloaded checkpoint against the preset's configuration."""
    from maxim_tf.conversion import ConversionError, convert_checkpoint

    try:
        convert_checkpoint(checkpoint, output, config=preset.model_config())
    except ConversionError as e:
        what = f"variant {preset.variant}" if preset.variant else "its configuration"
        first = str(e).replace(str(checkpoint), CHECKPOINT_FILE).splitlines()
        detail = "; ".join(line.strip() for line in first[:4])
        raise DownloadError(
            f"Checkpoint of preset {preset.name!r} from {url} failed the check against {what}: "
            f"{detail}. Nothing was cached.") from e


def _install(stage, entry):
    """Move a complete staged entry into place (replacing a corrupted one)."""
    in_cache(stage, "move")
    in_cache(entry, "replace")
    if entry.exists() or entry.is_symlink():
        trash = pathlib.Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".old",
                                              dir=in_cache(entry.parent, "write in")))
        os.replace(entry, trash / "old")
        try:
            os.replace(stage, entry)
        finally:
            _rmtree(trash, ignore_errors=True)
    else:
        try:
            os.replace(stage, entry)
        except OSError:
            # Another process installed it meanwhile: keep theirs if it is complete.
            if read_manifest(entry.name) is None:
                raise
            _rmtree(stage, ignore_errors=True)


def _makedirs(folder):
    """``mkdir -p`` returning the folders it created (outermost first)."""
    created = []
    folder = pathlib.Path(folder)
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    parents_of_cache = cache_dir().resolve().parents  # created too when missing
    for f in reversed(missing):
        if f.resolve() not in parents_of_cache:
            in_cache(f, "create")
        try:
            f.mkdir()
        except FileExistsError:
            continue
        created.append(f)
    return created


def _remove_if_empty(folder):
    """``rmdir`` of a folder of the cache (or of a parent of it that this run created)."""
    if pathlib.Path(folder).resolve() not in cache_dir().resolve().parents:
        in_cache(folder, "remove")
    with contextlib.suppress(OSError):
        folder.rmdir()


def _manual_hint(preset, url):
    config = f"--variant {preset.variant}" if preset.variant and not preset.config else \
        "--config CONFIG.json"
    return (f"Offline? Fetch {url} by other means and set {presets_lib.OFFICIAL_URL_ENV} to the "
            f"folder holding <Task>/<Dataset>/checkpoint.npz (file:///path, or a mirror), or "
            f"convert it by hand: maxim-tf convert checkpoint.npz {config} -o "
            f"{preset.name}.keras, then pass --model {preset.name}.keras")


def _say(progress, message):
    if progress:
        print(message, file=sys.stderr, flush=True)


def _megabytes(path):
    return f"{os.path.getsize(path) / 1e6:.1f} MB"


# ----------------------------------------------------------------------------------------
# Download
# ----------------------------------------------------------------------------------------

class _Transient(Exception):
    """A failure worth another try (connection, timeout, truncated body, 5xx)."""


class _Final(Exception):
    """A failure another try will not fix (404, an HTML page, a missing file)."""


def download(url, dest, progress=True, timeout=None, retries=None, what=None, manual="",
             deadline=None):
    """Fetch ``url`` to the file ``dest`` with a progress bar, timeouts and retries.

    Args:
        url: ``https://``, ``http://``, ``file://``, ``gs://`` or a local path.
        dest: output file (overwritten; removed on failure).
        progress: tqdm bar (size, speed, ETA) on stderr.
        timeout: seconds without data before a try is abandoned (default
            ``$MAXIM_TF_DOWNLOAD_TIMEOUT`` or 60).
        retries: further tries after a transient failure (connection error,
            timeout, cut-off body, HTTP 5xx/429), with exponential back-off (default
            ``$MAXIM_TF_DOWNLOAD_RETRIES`` or 3).
        what: name for messages (e.g. the preset).
        manual: what to do instead, appended to the error message.
        deadline: seconds the whole download may take, every try and wait included,
            however steadily data arrives (default ``$MAXIM_TF_DOWNLOAD_DEADLINE`` or
            1800); checked after every read, so it is overrun by at most ``timeout``.

    Raises:
        DownloadError: one line naming the URL, the reason and ``manual``.
        UsageError: one of the environment variables is not a valid number (the
            message names it).
    """
    timeout, retries, deadline = download_settings(timeout, retries, deadline)
    clock = _Deadline(deadline)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    fetch = {"http": _fetch_http, "https": _fetch_http, "gs": _fetch_gfile,
             "file": _fetch_file, "": _fetch_file}.get(scheme)
    label = what or os.path.basename(url)
    error, attempt = None, 0
    if fetch is None:
        error = _Final(f"unsupported URL scheme {scheme!r} (use https://, http://, file:// or gs://)")
    while fetch is not None:
        attempt += 1
        try:
            fetch(url, dest, timeout, progress, label, clock)
            return dest
        except _Final as e:
            error = e
            break
        except _Transient as e:
            error = e
            if attempt > retries:
                break
            wait = _BACKOFF_S * 2 ** (attempt - 1)
            if clock.left() < wait:
                error = clock.expired_error()
                break
            _say(progress, f"maxim-tf: download of {label} failed ({e}); retry {attempt} of "
                           f"{retries} in {wait:g} s")
            time.sleep(wait)
    with contextlib.suppress(OSError):
        os.remove(dest)
    tries = f" after {attempt} tries" if attempt > 1 else ""
    raise DownloadError(f"Cannot download {label} from {url}: {error}{tries}. {manual}".rstrip()) \
        from error


class _Deadline:
    """The total time a download may take (``$MAXIM_TF_DOWNLOAD_DEADLINE``)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()

    def expired_error(self, received=None):
        got = f"; {received} bytes received" if received is not None else ""
        return _Final(f"not finished within {self.seconds:g} s, the total time a download may "
                      f"take (${DEADLINE_ENV}){got}")

    def check(self, received=None):
        if self.left() <= 0:
            raise self.expired_error(received)


def _write_stream(read, dest, total, progress, label, content_type="", clock=None):
    """Copy chunks from ``read(n)`` to ``dest``; checks the zip signature, the length and
    (after every read) the total deadline ``clock``."""
    from tqdm import tqdm

    written, head = 0, b""  # head: the first bytes, held back until the signature is checked
    with open(dest, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=label, disable=not progress, file=sys.stderr,
                                     dynamic_ncols=True, leave=False) as bar:
        while True:
            if clock is not None:
                clock.check(written + len(head))
            chunk = read(_CHUNK)
            if not chunk:
                break
            bar.update(len(chunk))
            if written == 0:
                head += chunk
                if len(head) < _HEAD_BYTES:
                    continue
                _check_signature(head, content_type)
                chunk, head = head, b""
            f.write(chunk)
            written += len(chunk)
        if head:  # a file shorter than _HEAD_BYTES
            _check_signature(head, content_type)
            f.write(head)
            written += len(head)
        f.flush()
        os.fsync(f.fileno())
    if written == 0:
        raise _Final("the server sent an empty file")
    if total is not None and written != total:
        raise _Transient(f"the connection closed after {written} of {total} bytes")
    return written


def _check_signature(head, content_type):
    if head.startswith(_ZIP_MAGIC):
        return
    text = head[:200].lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")) or "html" in content_type:
        raise _Final(f"the server sent a web page (Content-Type {content_type or 'unknown'}), "
                     f"not checkpoint.npz - a login, proxy or error page?")
    raise _Final(f"not a checkpoint.npz (a zip archive starts with PK\\x03\\x04; this starts "
                 f"with {head[:8]!r})")


def _fetch_http(url, dest, timeout, progress, label, clock=None):
    from maxim_tf import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"maxim-tf/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            # read1: at most one read of the socket per call, so the deadline is checked
            # at least once per timeout however slowly the bytes trickle in.
            _write_stream(response.read1, dest, total, progress, label,
                          response.headers.get("Content-Type", ""), clock)
    except urllib.error.HTTPError as e:
        message = f"HTTP {e.code} {e.reason}"
        raise (_Transient if e.code in _TRANSIENT_STATUS else _Final)(message) from e
    except (_Final, _Transient):
        raise
    except (TimeoutError, socket.timeout) as e:
        raise _Transient(f"no data for {timeout:g} s (timed out)") from e
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise _Transient(f"no answer for {timeout:g} s (timed out)") from e
        raise _Transient(f"cannot connect ({getattr(reason, 'strerror', None) or reason})") from e
    except http.client.IncompleteRead as e:
        raise _Transient(f"the connection closed early ({len(e.partial)} bytes in the last "
                         f"read, {e.expected} more expected)") from e
    except (http.client.HTTPException, ConnectionError, OSError) as e:
        raise _Transient(f"{type(e).__name__}: {e}") from e


def _fetch_file(url, dest, timeout, progress, label, clock=None):
    parts = urllib.parse.urlsplit(url)
    path = urllib.request.url2pathname(parts.path) if parts.scheme else url
    try:
        with open(path, "rb") as f:
            _write_stream(f.read, dest, os.fstat(f.fileno()).st_size, progress, label, clock=clock)
    except FileNotFoundError as e:
        raise _Final(f"no such file {path}") from e
    except IsADirectoryError as e:
        raise _Final(f"{path} is a folder") from e
    except PermissionError as e:
        raise _Final(f"cannot read {path} ({e.strerror})") from e


def _fetch_gfile(url, dest, timeout, progress, label, clock=None):
    import tensorflow as tf

    try:
        total = tf.io.gfile.stat(url).length
        with tf.io.gfile.GFile(url, "rb") as f:
            _write_stream(f.read, dest, total, progress, label, clock=clock)
    except tf.errors.NotFoundError as e:
        raise _Final("no such object") from e
    except tf.errors.PermissionDeniedError as e:
        raise _Final(f"permission denied ({e.message})") from e
    except tf.errors.OpError as e:
        raise _Transient(f"{type(e).__name__}: {e.message}") from e
