"""Presets that download, check, convert and cache: against a local HTTP server on 127.0.0.1.

Nothing real is fetched: a test server started here serves official-format
checkpoints (the committed fixtures) in the bucket layout, and a test-only
preset is registered through ``$MAXIM_TF_PRESETS``.
"""

import http.server
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from conftest import FIXTURES

from maxim_tf import fileio, hub
from maxim_tf.errors import DownloadError

OFFICIAL = FIXTURES / "official"
TINY1S = OFFICIAL / "tiny1s_single_scale"
TINY2S = OFFICIAL / "tiny2s"
PRESET = "test-tiny1s"
PATH = "Denoising/Tiny1s/checkpoint.npz"


class Server:
    """A threaded HTTP server whose behaviour depends on the first path segment.

    ``/ok/<path>``: the file; ``/html/``: an HTML error page with status 200;
    ``/truncated/``: half the body with the full Content-Length; ``/stall/``:
    headers, then silence; ``/pickled/``, ``/other/``: other checkpoints.
    Anything else is a 404. ``requests`` lists the paths asked for.
    """

    def __init__(self, files):
        self.files = files
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                mode, _, rest = self.path.lstrip("/").partition("/")
                body = server.files.get((mode, rest))
                if mode == "html":
                    page = b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"
                    self._send(200, page, "text/html; charset=utf-8")
                elif body is None:
                    self._send(404, b"Not Found", "text/plain")
                elif mode == "truncated":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                elif mode == "stall":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:100])
                    self.wfile.flush()
                    time.sleep(3)
                else:
                    self._send(200, body, "application/octet-stream")

            def _send(self, code, body, ctype):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, mode):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{mode}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _pickled_npz():
    buffer = io.BytesIO()
    np.savez(buffer, **{"opt/target/stage_0_input_conv_0/kernel": np.zeros((3, 3, 3, 8)),
                        "opt/target/evil": np.array([{"x": 1}], dtype=object)})
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server():
    good = (TINY1S / "checkpoint.npz").read_bytes()
    files = {("ok", PATH): good, ("truncated", PATH): good, ("stall", PATH): good,
             ("pickled", PATH): _pickled_npz(),
             ("other", PATH): (TINY2S / "checkpoint.npz").read_bytes()}
    s = Server(files)
    yield s
    s.close()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    """A cache in tmp, the test preset registered, the mirror pointing at the server."""
    presets_file = tmp_path / "presets.json"
    config = json.loads((TINY1S / "config.json").read_text())
    presets_file.write_text(json.dumps({PRESET: {
        "task": "Denoising", "dataset": "Tiny1s", "config": config, "path": PATH,
        "description": "official-format tiny fixture (tests only)"}}))
    monkeypatch.setenv("MAXIM_TF_PRESETS", str(presets_file))
    monkeypatch.setenv("MAXIM_TF_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MAXIM_TF_OFFICIAL_URL", server.url("ok"))
    monkeypatch.setenv("MAXIM_TF_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.setenv("MAXIM_TF_DOWNLOAD_RETRIES", "1")
    monkeypatch.setattr(hub, "_BACKOFF_S", 0.0)
    server.requests.clear()
    return tmp_path / "cache"


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _weight_sums(arrays):
    return np.sort([float(np.sum(a, dtype=np.float64)) for a in arrays])


def test_download_convert_restore_then_cache(env, server, tmp_path, capsys):
    import maxim_tf
    from maxim_tf.cli import main
    from maxim_tf.conversion import load_official_params

    model = maxim_tf.MAXIM.from_preset(PRESET)
    assert server.requests == [f"/ok/{PATH}"]
    # The cached model holds exactly the checkpoint's tensors (sums are layout-free).
    params, _ = load_official_params(TINY1S / "checkpoint.npz")
    np.testing.assert_allclose(_weight_sums(model.get_weights()), _weight_sums(params.values()),
                               rtol=1e-6, atol=1e-6)
    entry = env / "presets" / PRESET
    assert _files(env) == ["presets", f"presets/{PRESET}", f"presets/{PRESET}/checkpoint.npz",
                           f"presets/{PRESET}/manifest.json", f"presets/{PRESET}/model.keras"]
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["url"] == f"{server.url('ok')}/{PATH}"
    assert manifest["checkpoint"]["sha256"] == fileio.sha256_file(TINY1S / "checkpoint.npz")

    # Second use, from the command line: the cache, verified, and not a single request.
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "noisy.png")
    capsys.readouterr()
    rc = main(["restore", str(tmp_path / "noisy.png"), "-o", str(tmp_path / "out"),
               "--model", PRESET, "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert server.requests == [f"/ok/{PATH}"]
    restored = np.asarray(Image.open(tmp_path / "out" / "noisy.png"))
    expected = maxim_tf.Restorer(model)(image)
    assert restored.shape == image.shape and np.abs(restored.astype(int) - expected).max() <= 1

    # The exporter, the benchmark and training resolve names through the same function,
    # the one loader hub.load_model.
    from maxim_tf.tools.benchmark import check_model_spec

    check_model_spec(PRESET)
    assert hub.load_model(PRESET, progress=False, require_maxim=True).size_multiple == model.size_multiple
    assert server.requests == [f"/ok/{PATH}"]

    capsys.readouterr()
    assert main(["models"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(PRESET)]
    assert line and line[0].split()[-1] == "cached"
    assert main(["models", "--clear", PRESET]) == 0
    assert not entry.exists() and hub.status(hub.presets_lib.get_preset(PRESET)) == "not downloaded"


def test_corrupted_cache_entry_is_detected_and_rebuilt(env, server):
    preset = hub.presets_lib.get_preset(PRESET)
    path = hub.fetch_preset(preset, progress=False)
    assert len(server.requests) == 1
    good = path.read_bytes()
    # A damaged model: converted again from the cached (verified) checkpoint, no request.
    path.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    assert hub.fetch_preset(preset, progress=False) == path
    manifest = hub.read_manifest(PRESET)
    assert len(server.requests) == 1 and fileio.sha256_file(path) == manifest["model"]["sha256"]
    # A damaged checkpoint and model: fetched again.
    checkpoint = path.with_name("checkpoint.npz")
    checkpoint.write_bytes(checkpoint.read_bytes()[:-10])
    path.write_bytes(b"garbage")
    hub.fetch_preset(preset, progress=False)
    assert len(server.requests) == 2
    assert fileio.sha256_file(checkpoint) == fileio.sha256_file(TINY1S / "checkpoint.npz")
    assert not [p for p in (env / "presets").iterdir() if p.name.startswith(".")]


def _refused_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/ckpt"


@pytest.mark.parametrize("mode, reason, tries", [
    ("missing", "HTTP 404", 1),
    ("refused", "cannot connect", 2),
    ("truncated", "closed", 2),
    ("html", "web page", 1),
    ("pickled", "pickled Python object", 1),
    ("other", "failed the check against its configuration", 1),
    ("stall", "timed out", 2),
])
def test_failures_are_one_clear_error_and_leave_nothing(env, server, monkeypatch, mode, reason,
                                                        tries):
    url = _refused_url() if mode == "refused" else server.url(mode)
    monkeypatch.setenv("MAXIM_TF_OFFICIAL_URL", url)
    start = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        hub.resolve_model(PRESET, progress=False)
    message = str(info.value)
    assert reason in message and f"{url}/{PATH}" in message, message
    assert "\n" not in message
    if mode in ("pickled", "other"):  # the file itself is wrong: say so
        assert "Nothing was cached" in message
    else:  # the transport failed: say what to do offline
        assert "maxim-tf convert checkpoint.npz --config" in message
    assert info.value.exit_code != 0
    if mode != "refused":
        assert len(server.requests) == tries, server.requests
    assert _files(env) == []  # nothing left in the cache, not even its folders
    assert time.perf_counter() - start < 30


def test_cli_reports_a_failed_download_in_one_line(env, server, monkeypatch, tmp_path, capsys):
    from PIL import Image

    from maxim_tf.cli import main

    monkeypatch.setenv("MAXIM_TF_OFFICIAL_URL", server.url("missing"))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    rc = main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", PRESET,
               "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "HTTP 404" in err[0] and PRESET in err[0]
    assert main(["models", "--download", PRESET, "-q"]) == 2
    assert _files(env) == []


def test_file_url_and_expected_sha256(env, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / PATH).parent.mkdir(parents=True)
    (mirror / PATH).write_bytes((TINY1S / "checkpoint.npz").read_bytes())
    monkeypatch.setenv("MAXIM_TF_OFFICIAL_URL", mirror.as_uri())
    preset = hub.presets_lib.get_preset(PRESET)
    import dataclasses

    wrong = dataclasses.replace(preset, sha256="0" * 64)
    with pytest.raises(DownloadError, match="expected 0000"):
        hub.fetch_preset(wrong, progress=False)
    assert _files(env) == []
    with pytest.raises(DownloadError, match="no such file"):
        hub.fetch_preset(dataclasses.replace(preset, path="Nope/x/checkpoint.npz"),
                         progress=False)
    assert _files(env) == []
