#!/usr/bin/env bash
# The main job: pretrain a tiny BERT on the corpus in data/ on CPU, evaluate it on
# held-out text, plot, and print a summary (about 3 minutes on 2 cores, after the
# one-time install). Options: --bert_network=bert|nezha, --output_dir=DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure_venv.sh
exec .venv/bin/python scripts/quick_start.py "$@"
