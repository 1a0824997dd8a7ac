#!/usr/bin/env bash
# Data-parallel pretraining with MindSpore's msrun, in the background (called by
# run_distributed_pretrain_{gpu,cpu}.sh and the zoo's name run_distributed_pretrain_for_gpu.sh, which pass
# their target and their own path for the usage line).
#
#   bash scripts/run_distributed_pretrain.sh TARGET CALLER WORKER_NUM EPOCH_SIZE DATA_DIR [SCHEMA_DIR] [--key=value ...]
#
# WORKER_NUM processes start on this machine (one per device on GPU). Several
# machines: run the same command on each with NODE_NUM (machines), NODE_RANK
# (0 on the master) and MASTER_ADDR / MASTER_PORT (the master's address).
# The run directory (RUN_DIR, default ./pretrain_distributed_<target>_<date>)
# receives msrun.log, logs/worker_<rank>.log, the metrics (from rank 0) and the
# checkpoints (from each machine's first worker, into that machine's RUN_DIR, so
# a resume with the same relative --load_checkpoint_path, run from the same
# directory, reads each machine's own copy). PYTHON picks the interpreter
# (default: the repo's .venv).
set -euo pipefail
target=$1 caller=$2
shift 2
usage() {
  echo "usage: bash $caller WORKER_NUM EPOCH_SIZE DATA_DIR [SCHEMA_DIR] [--key=value ...]" >&2
  echo "       (multi-node: NODE_NUM, NODE_RANK, MASTER_ADDR, MASTER_PORT in the environment)" >&2
  exit 2
}
fail() { echo "error: $1" >&2; usage; }

[ $# -ge 3 ] || usage
worker_num=$1 epoch_size=$2 data_dir=$3
shift 3
schema_dir=""
if [ $# -ge 1 ] && [[ "$1" != --* ]]; then schema_dir=$1; shift; fi
node_num=${NODE_NUM:-1} node_rank=${NODE_RANK:-0}
master_addr=${MASTER_ADDR:-127.0.0.1} master_port=${MASTER_PORT:-8118}
[[ "$worker_num" =~ ^[1-9][0-9]*$ ]] || fail "WORKER_NUM must be a positive integer, got '$worker_num'"
[[ "$epoch_size" =~ ^[1-9][0-9]*$ ]] || fail "EPOCH_SIZE must be a positive integer, got '$epoch_size'"
[[ "$node_num" =~ ^[1-9][0-9]*$ ]] || fail "NODE_NUM must be a positive integer, got '$node_num'"
[[ "$node_rank" =~ ^[0-9]+$ ]] && [ "$node_rank" -lt "$node_num" ] || fail "NODE_RANK must be in [0, NODE_NUM), got '$node_rank'"
[[ "$master_port" =~ ^[0-9]+$ ]] || fail "MASTER_PORT must be a port number, got '$master_port'"
if [ "$target" = GPU ] && command -v nvidia-smi > /dev/null; then
  gpus=$(nvidia-smi --list-gpus | wc -l)
  [ "$worker_num" -le "$gpus" ] || fail "WORKER_NUM $worker_num exceeds the $gpus GPUs of this machine"
elif [ "$target" = CPU ]; then
  cores=$(getconf _NPROCESSORS_ONLN)
  [ "$worker_num" -le "$cores" ] || fail "WORKER_NUM $worker_num exceeds the $cores CPU cores of this machine"
fi
[ -d "$data_dir" ] || fail "DATA_DIR '$data_dir' is not a directory"
[ -z "$schema_dir" ] || [ -f "$schema_dir" ] || fail "SCHEMA_DIR '$schema_dir' is not a file"

repo=$(cd "$(dirname "$0")/.." && pwd)
# msrun starts each worker with the `python` found on PATH: put the venv first.
if [ -z "${PYTHON:-}" ] && [ -x "$repo/.venv/bin/python" ]; then export PATH="$repo/.venv/bin:$PATH"; fi
python=${PYTHON:-python}
msrun=$(dirname "$(command -v "$python")")/msrun
[ -x "$msrun" ] || msrun=msrun
# SO_REUSEADDR: only a listening socket counts as "in use", not a finished run's TIME_WAIT.
port_free="import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('', $master_port))"
if [ "$node_rank" = 0 ] && ! "$python" -c "$port_free" 2>/dev/null; then
  fail "MASTER_PORT $master_port is in use on this machine (the master); choose another"
fi
run_dir=$(realpath -m "${RUN_DIR:-pretrain_distributed_${target,,}_$(date +%Y%m%d_%H%M%S)}")
mkdir -p "$run_dir"
nohup "$msrun" --worker_num=$((worker_num * node_num)) --local_worker_num="$worker_num" \
  --node_rank="$node_rank" --master_addr="$master_addr" --master_port="$master_port" \
  --log_dir="$run_dir/logs" --join=True \
  "$repo/run_pretrain.py" --distribute=true --device_target="$target" --epoch_size="$epoch_size" \
  --data_dir="$data_dir" --schema_dir="$schema_dir" --output_dir="$run_dir" "$@" \
  > "$run_dir/msrun.log" 2>&1 &
echo "distributed pretraining started in the background (msrun pid $!); logs: $run_dir/logs/worker_<rank>.log"
