#!/usr/bin/env bash
# The model zoo's name for data-parallel pretraining on GPU with msrun, in the background (same as
# run_distributed_pretrain_gpu.sh; RANK_SIZE processes on this machine, one per GPU).
# usage: bash scripts/run_distributed_pretrain_for_gpu.sh RANK_SIZE EPOCH_SIZE DATA_DIR [SCHEMA_DIR] [--key=value ...]
# (several machines: NODE_NUM, NODE_RANK, MASTER_ADDR, MASTER_PORT; see run_distributed_pretrain.sh)
exec bash "$(dirname "$0")/run_distributed_pretrain.sh" GPU "$0" "$@"
