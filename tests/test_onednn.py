"""oneDNN on x86-64: the ``maxim-tf`` command asks TensorFlow for its oneDNN CPU kernels
(TensorFlow itself leaves them off on AVX2-only CPUs) through
:func:`maxim_tf.prefer_onednn`; a library import leaves the host's environment alone."""

import os
import platform
import subprocess
import sys

import pytest

X86 = platform.machine().lower() in ("x86_64", "amd64")
REPORT = ("from tensorflow.python.util import _pywrap_util_port as port\n"
          "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), port.IsMklEnabled())\n")


def _probe(code, **env):
    clean = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    clean.update(env, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", "import os\n" + code + REPORT], env=clean,
                         capture_output=True, text=True, check=True, timeout=300)
    return out.stdout.split()[-2:]


def test_import_leaves_the_environment_alone():
    assert _probe("import maxim_tf, maxim_tf.model\n")[0] == "None"


@pytest.mark.skipif(not X86, reason="oneDNN is requested on x86-64 CPUs only")
def test_prefer_onednn_turns_it_on():
    assert _probe("import maxim_tf\nassert maxim_tf.prefer_onednn()\n"
                  "import tensorflow\nassert not maxim_tf.prefer_onednn()  # too late now\n") \
        == ["1", "True"]


def test_users_setting_wins():
    code = "import maxim_tf\nassert not maxim_tf.prefer_onednn()\n"
    assert _probe(code, TF_ENABLE_ONEDNN_OPTS="0") == ["0", "False"]


@pytest.mark.skipif(not X86, reason="oneDNN is requested on x86-64 CPUs only")
def test_the_command_asks_for_it_in_its_own_process():
    code = ("import sys\nsys.argv = ['maxim-tf', '--version']\nfrom maxim_tf import cli\n"
            "try:\n    cli.console_main()\nexcept SystemExit:\n    pass\n")
    assert _probe(code) == ["1", "True"]
