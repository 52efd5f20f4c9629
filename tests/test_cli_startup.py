"""The command line starts fast and quietly: no TensorFlow for --help/--version/usage
errors, no TensorFlow C++ log lines on stderr unless -v, one-line errors."""

import re
import subprocess
import sys

import pytest

from maxim_tf import cli

LOG_LINE = re.compile(r"^(I0000|W0000|E0000|WARNING: All log messages)", re.M)
SAMPLE = "examples/images/life_noisy_sigma25.png"


def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["restore", "--help"],
                                  ["export", "--help"], ["restore-beam", "--help"], ["restore"], ["export", "x.keras"],
                                  ["no-such-command"]])
def test_no_tensorflow_for_help_version_and_usage_errors(argv):
    proc = _python("import sys\nfrom maxim_tf.cli import main\n"
                   f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
                   "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
                   "assert 'keras' not in sys.modules, 'keras imported'\n")
    assert proc.returncode == 0, proc.stderr


def test_restore_is_quiet_by_default_and_verbose_on_request(tmp_path):
    repo = cli.__file__.rsplit("/maxim_tf/", 1)[0]
    cmd = [sys.executable, "-m", "maxim_tf", "restore", f"{repo}/{SAMPLE}", "-q",
           "--backend", "keras"]
    quiet = subprocess.run(cmd + ["-o", str(tmp_path / "a")], capture_output=True, text=True,
                           timeout=600, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert quiet.returncode == 0, quiet.stderr
    assert not LOG_LINE.search(quiet.stderr), quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr
    assert "graph preparation" in quiet.stdout and "(keras)" in quiet.stdout
    verbose = subprocess.run(cmd + ["-o", str(tmp_path / "b"), "-v"], capture_output=True,
                             text=True, timeout=600, env={"PATH": "/usr/bin:/bin"})
    assert verbose.returncode == 0, verbose.stderr
    assert LOG_LINE.search(verbose.stderr), "with -v TensorFlow's log lines are shown"


def test_errors_are_one_line_with_the_documented_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "maxim_tf", "restore", SAMPLE, "-o",
                           str(tmp_path / "o"), "--model", str(tmp_path / "missing.keras")],
                          capture_output=True, text=True, timeout=300,
                          cwd=cli.__file__.rsplit("/maxim_tf/", 1)[0])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_log_filter_pattern():
    for line in ("I0000 00:00:1796177736.031968    4410 cpu_feature_guard.cc:227] This ...",
                 "WARNING: All log messages before absl::InitializeLog() is called are written",
                 "E0000 00:00:1.5 12 x.cc:1] boom",
                 "2026-12-02 02:12:00.123456: I tensorflow/core/util/port.cc:153] oneDNN ...",
                 "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."):
        assert cli._LOG_LINE.match(line), line
    for line in ("maxim-tf restore: photo.png: not an image", "Restored 1 image(s) into out",
                 " 50%|#####     | 1/2 [00:01<00:01,  1.00img/s]"):
        assert not cli._LOG_LINE.match(line), line


def test_stderr_filter_drops_cpp_log_lines_written_to_fd_2():
    code = ("import os, sys\nfrom maxim_tf.cli import _StderrFilter\nf = _StderrFilter()\n"
            "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called\\n')\n"
            "os.write(2, b'I0000 00:00:1796177736.031968    4410 cpu_feature_guard.cc:227] x\\n')\n"
            "print('kept line', file=sys.stderr)\n"
            "os.write(2, b'progress 50%\\r')\n"
            "f.close()\nprint('after close', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"kept line\nprogress 50%\rafter close\n", proc.stderr
