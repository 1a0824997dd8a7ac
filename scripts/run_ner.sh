#!/usr/bin/env bash
# Fine-tune and evaluate named-entity recognition (run_ner.py) in the background.
#
#   bash scripts/run_ner.sh [DEVICE_ID] [--key=value ...]
#
# Edit the settings below (or set them in the environment); extra --key=value
# flags go to run_ner.py and win over these. The log is written to
# $OUTPUT_DIR/ner_log.txt. Data: python -m src.create_finetune_data --task=cluener.
set -euo pipefail
# The zoo's form: a first argument that is not a --flag is the device id.
if [ $# -ge 1 ] && [[ "$1" != --* ]]; then DEVICE_ID=$1; shift; fi
DEVICE_TARGET=${DEVICE_TARGET:-auto}                # auto (Ascend, else GPU, else CPU) | Ascend | GPU | CPU
DEVICE_ID=${DEVICE_ID:-0}
DO_TRAIN=${DO_TRAIN:-true}
DO_EVAL=${DO_EVAL:-true}
ASSESSMENT_METHOD=${ASSESSMENT_METHOD:-f1}          # f1 | clue_benchmark (needs EVAL_DATA_FILE_PATH = a CLUENER .json)
USE_CRF=${USE_CRF:-false}
NUM_CLASS=${NUM_CLASS:-21}                          # CLUENER: 21 tags in BIO, 41 in BIOES/BMES
EPOCH_NUM=${EPOCH_NUM:-3}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-32}
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-32}
DATA_DIR=${DATA_DIR:-}                              # output of src.create_finetune_data (train/dev.tfrecord, label2id.json)
EVAL_DATA_FILE_PATH=${EVAL_DATA_FILE_PATH:-${DATA_DIR:+$DATA_DIR/dev.tfrecord}}
VOCAB_FILE_PATH=${VOCAB_FILE_PATH:-}                # to read a CLUENER .json eval file
LOAD_PRETRAIN_CHECKPOINT_PATH=${LOAD_PRETRAIN_CHECKPOINT_PATH:-}
LOAD_FINETUNE_CHECKPOINT_PATH=${LOAD_FINETUNE_CHECKPOINT_PATH:-}
MODEL_CONFIG=${MODEL_CONFIG:-}
OUTPUT_DIR=${OUTPUT_DIR:-ner_output}

source "$(dirname "$0")/start_finetune.sh"
start_finetune run_ner.py ner_log.txt "NER fine-tuning" \
  --device_target="$DEVICE_TARGET" --device_id="$DEVICE_ID" --do_train="$DO_TRAIN" \
  --do_eval="$DO_EVAL" --assessment_method="$ASSESSMENT_METHOD" --use_crf="$USE_CRF" \
  --num_class="$NUM_CLASS" --epoch_num="$EPOCH_NUM" --train_batch_size="$TRAIN_BATCH_SIZE" \
  --eval_batch_size="$EVAL_BATCH_SIZE" --train_data_file_path="${DATA_DIR:+$DATA_DIR/train.tfrecord}" \
  --eval_data_file_path="$EVAL_DATA_FILE_PATH" --schema_file_path="${DATA_DIR:+$DATA_DIR/train_schema.json}" \
  --label2id_file_path="${DATA_DIR:+$DATA_DIR/label2id.json}" --vocab_file_path="$VOCAB_FILE_PATH" \
  --load_pretrain_checkpoint_path="$LOAD_PRETRAIN_CHECKPOINT_PATH" \
  --load_finetune_checkpoint_path="$LOAD_FINETUNE_CHECKPOINT_PATH" \
  --model_config="$MODEL_CONFIG" --output_dir="$OUTPUT_DIR" "$@"
