# Sourced by quickstart.sh and test.sh: create ./.venv (Python 3.10+) and
# install maxim-tf into it, editable (the developer path), with the extras in $EXTRAS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[maxim-tf] creating .venv with $($PY --version 2>&1)"
  "$PY" -m venv .venv
fi
# A recent pip/setuptools is needed for the editable install of the
# conversion/, export/ and training/ folders as maxim_tf subpackages.
.venv/bin/python -m pip install -q --disable-pip-version-check -U "pip>=24" "setuptools>=70" wheel
echo "[maxim-tf] installing maxim-tf[$EXTRAS] (tensorflow-cpu; for GPUs use the [gpu] extra)"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
case ",$EXTRAS," in
  *,test,*)
    # Only for tests/test_warmup.py, which checks our warm-up records against TF Serving's
    # own protos (maxim-tf needs no tensorflow-serving-api). --no-deps: it requires the
    # `tensorflow` name, which tensorflow-cpu provides under another name.
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "tensorflow-serving-api==2.21.*" ;;
esac
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
