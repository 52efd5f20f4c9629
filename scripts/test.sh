#!/usr/bin/env bash
# Set up ./.venv and run the default test suite. Arguments go to pytest:
#   bash scripts/test.sh -m packaging   # wheel + fresh virtualenvs (a few minutes)
#   bash scripts/test.sh -m slow        # long checks
#   EXTRAS=cpu,test,beam bash scripts/test.sh -m beam   # the Apache Beam pipeline (beam extra)
EXTRAS=${EXTRAS:-cpu,test,export,train,bench,lint}
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec .venv/bin/python -m pytest "$@"
