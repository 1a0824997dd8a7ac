# Sourced by run_classifier.sh, run_ner.sh and run_squad.sh: check their settings, then start the job.

# start_finetune ENTRY LOG_NAME DESCRIPTION [--key=value ...]
#   Starts `python ENTRY --key=value ...` (ENTRY relative to the repo) in the background with nohup, logging
#   to $OUTPUT_DIR/LOG_NAME. Reads DEVICE_ID, DATA_DIR and OUTPUT_DIR; a --train_data_file_path= or
#   --eval_data_file_path= flag with a value may stand in for DATA_DIR. PYTHON picks the interpreter.
start_finetune() {
  local entry=$1 log_name=$2 description=$3
  shift 3
  if ! [[ "$DEVICE_ID" =~ ^[0-9]+$ ]]; then
    echo "error: DEVICE_ID must be a non-negative integer, got '$DEVICE_ID'" >&2
    exit 2
  fi
  if [ -z "$DATA_DIR" ] && ! printf '%s\n' "$@" | grep -Eq '^--(train|eval)_data_file_path=.'; then
    echo "error: set DATA_DIR (the directory python -m src.create_finetune_data wrote) in $0 or the environment" >&2
    exit 2
  fi
  local repo python log
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  python=${PYTHON:-$([ -x "$repo/.venv/bin/python" ] && echo "$repo/.venv/bin/python" || echo python3)}
  mkdir -p "$OUTPUT_DIR"
  log=$(realpath "$OUTPUT_DIR")/$log_name
  nohup "$python" "$repo/$entry" "$@" > "$log" 2>&1 &
  echo "$description started in the background (pid $!); log: $log"
}
