#!/usr/bin/env bash
# Data-parallel pretraining on Ascend from an HCCL rank table: one background
# process per device of this server. Run the same command on every server of the table.
#
#   bash scripts/run_distributed_pretrain_ascend.sh DATA_DIR RANK_TABLE_FILE [--flag=value ...]
#
# The flags go to scripts/ascend_distributed_launcher/get_distribute_pretrain_cmd.py
# (e.g. --server_id=IP, --hccl_time_out=SECONDS (exported as HCCL_CONNECT_TIMEOUT,
# default 600), --bind_cores=false, --hyper_parameter_config_dir=FILE,
# --cmd_file=FILE, --dry_run=true to print the commands without running them).
# It writes the commands to distributed_cmd.sh (--cmd_file) in the current
# directory, which this script then runs. Rank N runs in ./LOG<N>/ (where MindSpore
# writes its per-process files; GLOG_log_dir=./LOG<N>/ms_log) and logs to
# ./LOG<N>/pretraining_log.txt; rank 0 writes the metrics into ./LOG0/ and each
# server's first rank the checkpoints into ./checkpoints/ (save_checkpoint_path).
# Training settings come from scripts/ascend_distributed_launcher/hyper_parameter_config.ini.
# A rank table for one server: scripts/ascend_distributed_launcher/hccl_tools.py.
set -euo pipefail
usage() {
  echo "usage: bash scripts/run_distributed_pretrain_ascend.sh DATA_DIR RANK_TABLE_FILE [--flag=value ...]" >&2
  exit 2
}
fail() { echo "error: $1" >&2; usage; }

[ $# -ge 2 ] || usage
data_dir=$1 rank_table=$2
shift 2
[ -d "$data_dir" ] || fail "DATA_DIR '$data_dir' is not a directory"
[ -f "$rank_table" ] || fail "RANK_TABLE_FILE '$rank_table' is not a file"

# The generator's --cmd_file and --dry_run decide what this script runs afterwards.
cmd_file=distributed_cmd.sh dry_run=false previous=""
for arg in "$@"; do
  case "$previous" in --cmd_file) cmd_file=$arg ;; --dry_run) dry_run=$arg ;; esac
  case "$arg" in --cmd_file=*) cmd_file=${arg#*=} ;; --dry_run=*) dry_run=${arg#*=} ;; esac
  previous=$arg
done

repo=$(cd "$(dirname "$0")/.." && pwd)
python=$([ -x "$repo/.venv/bin/python" ] && echo "$repo/.venv/bin/python" || echo python3)
"$python" "$repo/scripts/ascend_distributed_launcher/get_distribute_pretrain_cmd.py" \
  --data_dir="$data_dir" --hccl_config_dir="$rank_table" "$@"
[ "${dry_run,,}" = true ] || bash "$cmd_file"
