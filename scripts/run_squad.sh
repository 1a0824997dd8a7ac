#!/usr/bin/env bash
# Fine-tune and evaluate SQuAD v1.1 question answering (run_squad.py) in the background.
#
#   bash scripts/run_squad.sh [DEVICE_ID] [--key=value ...]
#
# Edit the settings below (or set them in the environment); extra --key=value
# flags go to run_squad.py and win over these. The log is written to
# $OUTPUT_DIR/squad_log.txt. Data: python -m src.create_finetune_data --task=squad.
set -euo pipefail
# The zoo's form: a first argument that is not a --flag is the device id.
if [ $# -ge 1 ] && [[ "$1" != --* ]]; then DEVICE_ID=$1; shift; fi
DEVICE_TARGET=${DEVICE_TARGET:-auto}                # auto (Ascend, else GPU, else CPU) | Ascend | GPU | CPU
DEVICE_ID=${DEVICE_ID:-0}
DO_TRAIN=${DO_TRAIN:-true}
DO_EVAL=${DO_EVAL:-true}
EPOCH_NUM=${EPOCH_NUM:-2}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-32}
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-32}
DATA_DIR=${DATA_DIR:-}                              # output of src.create_finetune_data (train/dev.tfrecord, dev.json)
EVAL_JSON_PATH=${EVAL_JSON_PATH:-${DATA_DIR:+$DATA_DIR/dev.json}}
VOCAB_FILE_PATH=${VOCAB_FILE_PATH:-}                # the vocabulary the data was made with
LOAD_PRETRAIN_CHECKPOINT_PATH=${LOAD_PRETRAIN_CHECKPOINT_PATH:-}
LOAD_FINETUNE_CHECKPOINT_PATH=${LOAD_FINETUNE_CHECKPOINT_PATH:-}
MODEL_CONFIG=${MODEL_CONFIG:-}
OUTPUT_DIR=${OUTPUT_DIR:-squad_output}

source "$(dirname "$0")/start_finetune.sh"
start_finetune run_squad.py squad_log.txt "SQuAD fine-tuning" \
  --device_target="$DEVICE_TARGET" --device_id="$DEVICE_ID" --do_train="$DO_TRAIN" \
  --do_eval="$DO_EVAL" --epoch_num="$EPOCH_NUM" --train_batch_size="$TRAIN_BATCH_SIZE" \
  --eval_batch_size="$EVAL_BATCH_SIZE" --train_data_file_path="${DATA_DIR:+$DATA_DIR/train.tfrecord}" \
  --eval_data_file_path="${DATA_DIR:+$DATA_DIR/dev.tfrecord}" --eval_json_path="$EVAL_JSON_PATH" \
  --schema_file_path="${DATA_DIR:+$DATA_DIR/train_schema.json}" --vocab_file_path="$VOCAB_FILE_PATH" \
  --load_pretrain_checkpoint_path="$LOAD_PRETRAIN_CHECKPOINT_PATH" \
  --load_finetune_checkpoint_path="$LOAD_FINETUNE_CHECKPOINT_PATH" \
  --model_config="$MODEL_CONFIG" --output_dir="$OUTPUT_DIR" "$@"
