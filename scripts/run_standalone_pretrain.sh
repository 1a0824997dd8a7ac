#!/usr/bin/env bash
# Start single-device pretraining in the background (called by run_standalone_pretrain_{ascend,gpu,cpu}.sh
# and the zoo's name run_standalone_pretrain_for_gpu.sh, which pass their target and their own path for the usage line).
#
#   bash scripts/run_standalone_pretrain.sh TARGET CALLER DEVICE_ID EPOCH_SIZE DATA_DIR [SCHEMA_DIR] [--key=value ...]
#
# The run directory (RUN_DIR, default ./pretrain_<target>_<date>) receives
# pretraining_log.txt, metrics and checkpoints. The command runs in the current
# directory, so relative paths in the extra flags mean what they say.
# PYTHON picks the interpreter (default: the repo's .venv if present, else python3).
set -euo pipefail
target=$1 caller=$2
shift 2
usage() {
  echo "usage: bash $caller DEVICE_ID EPOCH_SIZE DATA_DIR [SCHEMA_DIR] [--key=value ...]" >&2
  exit 2
}
fail() { echo "error: $1" >&2; usage; }

[ $# -ge 3 ] || usage
device_id=$1 epoch_size=$2 data_dir=$3
shift 3
schema_dir=""
if [ $# -ge 1 ] && [[ "$1" != --* ]]; then schema_dir=$1; shift; fi
[[ "$device_id" =~ ^[0-9]+$ ]] || fail "DEVICE_ID must be a non-negative integer, got '$device_id'"
[[ "$epoch_size" =~ ^[1-9][0-9]*$ ]] || fail "EPOCH_SIZE must be a positive integer, got '$epoch_size'"
[ -d "$data_dir" ] || fail "DATA_DIR '$data_dir' is not a directory"
[ -z "$schema_dir" ] || [ -f "$schema_dir" ] || fail "SCHEMA_DIR '$schema_dir' is not a file"

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$([ -x "$repo/.venv/bin/python" ] && echo "$repo/.venv/bin/python" || echo python3)}
run_dir=$(realpath -m "${RUN_DIR:-pretrain_${target,,}_$(date +%Y%m%d_%H%M%S)}")
mkdir -p "$run_dir"
nohup "$python" "$repo/run_pretrain.py" --device_target="$target" --device_id="$device_id" \
  --epoch_size="$epoch_size" --data_dir="$data_dir" --schema_dir="$schema_dir" --output_dir="$run_dir" \
  "$@" > "$run_dir/pretraining_log.txt" 2>&1 &
echo "pretraining started in the background (pid $!); log: $run_dir/pretraining_log.txt"
