#!/usr/bin/env bash
# The model zoo's name for single-device pretraining on GPU, in the background (same as run_standalone_pretrain_gpu.sh).
# usage: bash scripts/run_standalone_pretrain_for_gpu.sh DEVICE_ID EPOCH_SIZE DATA_DIR [SCHEMA_DIR] [--key=value ...]
exec bash "$(dirname "$0")/run_standalone_pretrain.sh" GPU "$0" "$@"
