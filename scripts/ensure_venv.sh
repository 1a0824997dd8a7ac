#!/usr/bin/env bash
# Make sure .venv exists and holds the pinned requirements; cheap when it already does.
#
#   bash scripts/ensure_venv.sh            # runtime requirements
#   bash scripts/ensure_venv.sh --test     # plus the test requirements and fixtures
#
# Installs again only when a requirements file has changed since the last install
# (a hash of the files is kept in .venv). PYTHON picks the interpreter (3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

files=(requirements.txt)
if [ "${1:-}" = "--test" ]; then
  files+=(requirements-test.txt tests/requirements-fixtures.txt)
fi
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.installed-$(cat "${files[@]}" | sha256sum | cut -c1-16)

if [ -f "$stamp" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $python ($("$python" --version))"
  "$python" -m venv .venv
fi
echo "installing ${files[*]} into .venv (first run: a few minutes)"
.venv/bin/python -m pip install --quiet -r requirements.txt
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install --quiet -r requirements-test.txt
  .venv/bin/python -m pip install --quiet --no-deps -r tests/requirements-fixtures.txt
fi
touch "$stamp"
