#!/usr/bin/env bash
# The test command: install what the tests need (once), then run the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/run_tests.sh -k config`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure_venv.sh --test
exec .venv/bin/python -m pytest "$@"
