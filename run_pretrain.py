"""Pretrain BERT or NEZHA (masked LM + next sentence prediction).

    python run_pretrain.py --data_dir=DIR [--key=value ...]

DIR holds shards written by `python -m src.create_pretraining_data`. Every key
of pretrain_config.yaml can be overridden as --key=value; see README.md.
"""

import dataclasses
import os
import sys

import mindspore as ms
import mindspore.dataset as ds

from src.bert_for_pre_training import BertNetworkWithLoss
from src.bert_model import BertConfig
from src.checkpoint import weights_fingerprint
from src.config import Config, ConfigError, bert_config, load_config
from src.dataset import check_task_data, create_bert_dataset
from src.device import RunSetup, init_device, node_local_rank
from src.errors import exit_on_user_error
from src.optimizers import build_optimizer
from src.plotting import plot_training
from src.run_directory import check_not_replacing, check_writable, hold_directories
from src.training import (METRICS_FILE, TRAIN_STEPS_FROM_EPOCHS, TrainingPlan, align_to_sinks, build_train_cell,
                          check_no_foreign_checkpoints, check_training_config, restore, train)

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrain_config.yaml")
LOSS_PLOT = "loss.png"
def saves_checkpoints(device_num: int, rank: int, local_rank: int | None) -> bool:
    """Whether this process writes the checkpoints: in a distributed run each server's first process
    (`local_rank` 0), so every server holds its own copy to resume from without a shared filesystem;
    global rank 0 where the launcher exported no local rank; a single process always."""
    if device_num == 1:
        return True
    return rank == 0 if local_rank is None else local_rank == 0


def check_resume_file(path: str, rank: int) -> None:
    """Every rank reads `load_checkpoint_path` on its own server: fail before any work if it is not there."""
    if path and not os.path.isfile(path):
        raise ConfigError(f"load_checkpoint_path {path}: no such file on this server (rank {rank}); without a "
                          "shared filesystem each server resumes from the checkpoint its first rank saved")


def checkpoint_directory(cfg: Config) -> str:
    """Where the training checkpoints go; "" when they are off."""
    if not cfg.enable_save_ckpt:
        return ""
    return cfg.save_checkpoint_path or os.path.join(cfg.output_dir, "checkpoints")


def held_directories(cfg: Config, rank: int) -> list[tuple[str, str]]:
    """(directory, flag) that this process holds for the run (src/run_directory.py): rank 0, which alone
    writes the metrics, holds output_dir and the checkpoint directory. The other ranks hold none: where
    servers share a filesystem, their first processes save into the directory rank 0 holds."""
    if rank != 0:
        return []
    return [(cfg.output_dir, "output_dir"), (checkpoint_directory(cfg), "save_checkpoint_path")]


def plan_training(cfg: Config, dataset: ds.Dataset, device_num: int, rank: int, local_rank: int | None) -> TrainingPlan:
    micro_batches = dataset.get_dataset_size()
    steps_per_epoch = micro_batches // cfg.accumulation_steps
    if steps_per_epoch < 1:
        raise ConfigError(f"data_dir: {micro_batches} batches of {cfg.batch_size} per device do not make one "
                          f"step of {cfg.accumulation_steps} micro-batches; use more data or a smaller batch")
    total_steps = cfg.train_steps
    if cfg.train_steps == TRAIN_STEPS_FROM_EPOCHS:
        total_steps = cfg.epoch_size * steps_per_epoch
    checkpoint_dir = checkpoint_directory(cfg)
    return TrainingPlan(total_steps=total_steps, micro_batches_per_step=cfg.accumulation_steps,
                        samples_per_micro_batch=cfg.batch_size * device_num, steps_per_epoch=steps_per_epoch,
                        log_every_steps=cfg.log_every_steps, save_checkpoint_steps=cfg.save_checkpoint_steps,
                        save_checkpoint_num=cfg.save_checkpoint_num, checkpoint_dir=checkpoint_dir,
                        output_dir=cfg.output_dir, max_overflow_steps_at_floor=cfg.max_overflow_steps_at_floor,
                        is_main_rank=rank == 0, saves_checkpoints=saves_checkpoints(device_num, rank, local_rank))


@exit_on_user_error
def main(argv: list[str] | None = None) -> str | None:
    cfg = load_config(DEFAULT_CONFIG, sys.argv[1:] if argv is None else argv)
    config = bert_config(cfg)
    check_training_config(cfg)
    device = init_device(cfg, config.compute_type, training=True)
    rank = device.rank
    local_rank = node_local_rank(os.environ)
    check_resume_file(cfg.load_checkpoint_path, rank)
    if rank != 0 and checkpoint_directory(cfg) and saves_checkpoints(device.group_size, rank, local_rank):
        check_writable(checkpoint_directory(cfg), "save_checkpoint_path")  # rank 0 checks what it holds
    with hold_directories(held_directories(cfg, rank)):
        return pretrain(cfg, config, device, local_rank)


def pretrain(cfg: Config, config: BertConfig, device: RunSetup, local_rank: int | None) -> str | None:
    """The run, in the directories `main` holds; returns the last checkpoint written (or None)."""
    rank, device_num = device.rank, device.group_size
    ms.set_seed(cfg.random_seed)
    ds.config.set_seed(cfg.random_seed)

    dataset = create_bert_dataset(device_num, rank, cfg.do_shuffle, cfg.data_dir, cfg.schema_dir, cfg.batch_size,
                                  cfg.dataset_format, config.seq_length)
    check_task_data(cfg.data_dir, cfg.dataset_format, "pretraining", config)  # every row, before step 1
    plan = align_to_sinks(dataclasses.replace(plan_training(cfg, dataset, device_num, rank, local_rank),
                                              steps_per_sink=device.data_sink_steps))
    if plan.checkpoint_dir and plan.saves_checkpoints:
        check_no_foreign_checkpoints(plan.checkpoint_dir, cfg.load_checkpoint_path)

    network = BertNetworkWithLoss(config, is_training=True)
    optimizer = build_optimizer(cfg, network.trainable_params(), plan.total_steps, device.target)
    train_cell = build_train_cell(network, optimizer, cfg)
    start = restore(train_cell, network, cfg.load_checkpoint_path) if cfg.load_checkpoint_path else None
    if rank == 0 and cfg.output_dir and start is None:  # a resumed run keeps the records up to its step
        check_not_replacing([(os.path.join(cfg.output_dir, name), "output_dir") for name in (METRICS_FILE, LOSS_PLOT)],
                            cfg.overwrite, resume_hint="resume it with --load_checkpoint_path, ")
    steps, checkpoint = train(train_cell, dataset, plan, start)
    metrics_path = os.path.join(cfg.output_dir, METRICS_FILE)
    if rank == 0 and os.path.exists(metrics_path):
        plot_training(metrics_path, os.path.join(cfg.output_dir, LOSS_PLOT), f"{cfg.bert_network} pretraining")
    print(f"rank {rank}: finished at step {steps}; weights fingerprint: {weights_fingerprint(network)}"
          + (f"; checkpoint {checkpoint}" if checkpoint else ""))
    return checkpoint


if __name__ == "__main__":
    main()
