#!/usr/bin/env bash
# Data-parallel pretraining on GPU with msrun, in the background.
# usage: bash scripts/run_distributed_pretrain_gpu.sh WORKER_NUM EPOCH_SIZE DATA_DIR [SCHEMA_DIR] [--key=value ...]
# (several machines: NODE_NUM, NODE_RANK, MASTER_ADDR, MASTER_PORT; see run_distributed_pretrain.sh)
exec bash "$(dirname "$0")/run_distributed_pretrain.sh" GPU "$0" "$@"
