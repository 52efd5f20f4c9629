#!/usr/bin/env bash
# Set up ./.venv and run the default test suite (slow checks: add `-m slow`).
EXTRAS=${EXTRAS:-cpu,test,export,train,bench}
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec .venv/bin/python -m pytest "$@"
