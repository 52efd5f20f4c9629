"""`import maxim_tf` asks TensorFlow for its oneDNN CPU kernels on x86-64 (see
maxim_tf._prefer_onednn): TensorFlow itself leaves them off on AVX2-only CPUs."""

import os
import platform
import subprocess
import sys

import pytest

X86 = platform.machine().lower() in ("x86_64", "amd64")
PROBE = ("import os, maxim_tf\n"
         "from tensorflow.python.util import _pywrap_util_port as port\n"
         "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), port.IsMklEnabled())\n")


def _probe(**env):
    clean = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    clean.update(env, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", PROBE], env=clean, capture_output=True,
                         text=True, check=True, timeout=300)
    return out.stdout.split()


@pytest.mark.skipif(not X86, reason="oneDNN is requested on x86-64 CPUs only")
def test_import_turns_onednn_on():
    assert _probe() == ["1", "True"]


def test_users_setting_wins():
    assert _probe(TF_ENABLE_ONEDNN_OPTS="0") == ["0", "False"]
