"""The training loop shared by pretraining and fine-tuning.

`train` runs a train cell (see `BertTrainOneStepCell`) over a dataset for a
number of optimizer steps, and around it:

* logs every `log_every_steps` steps in the model zoo's format plus learning
  rate, samples/s and ETA, and appends the same record to `metrics.jsonl`;
* saves a checkpoint every `save_checkpoint_steps` steps (atomically; the
  newest `save_checkpoint_num` are kept) holding everything needed to resume:
  weights, optimizer state, loss-scale state and the position in the data;
* resumes from such a checkpoint: the data pipeline is replayed up to the
  saved position, so the resumed run sees the same batches in the same order;
* stops with an error if the gradients stay non-finite at the smallest loss
  scale, keeping the last good checkpoint.

Only rank 0 writes metrics and checkpoints; every rank logs.
"""

import dataclasses
import glob
import json
import math
import os
import time

import mindspore as ms
import numpy as np

from src.checkpoint import read_checkpoint, save_checkpoint_atomic
from src.errors import UserError

CHECKPOINT_PREFIX = "checkpoint_bert"
METRICS_FILE = "metrics.jsonl"
# Keys stored next to the parameters in a training checkpoint.
# ("global_step" itself is taken: the optimizer's own step counter.)
STATE_KEYS = ("trained_steps", "micro_batches_done")
# Names of the encoder's parameters in every task model (heads have other prefixes).
ENCODER_PREFIX = "bert."
# The dynamic loss scale never goes below this (MindSpore's update cell floor).
MIN_LOSS_SCALE = 1.0


class TrainingError(UserError):
    """Training cannot go on; the message says why and what was kept."""


@dataclasses.dataclass
class TrainingPlan:
    """How long to train and how often to log and save."""
    total_steps: int               # optimizer steps to reach (a resumed run continues up to it)
    micro_batches_per_step: int    # accumulation_steps
    samples_per_micro_batch: int   # per-device batch size x devices
    steps_per_epoch: int
    log_every_steps: int
    save_checkpoint_steps: int     # 0: save only at the end
    save_checkpoint_num: int
    checkpoint_dir: str            # "" disables checkpoints
    output_dir: str                # metrics.jsonl goes here; "" disables it
    max_overflow_steps_at_floor: int
    is_main_rank: bool = True


def checkpoint_paths(checkpoint_dir):
    """Training checkpoints in `checkpoint_dir`, oldest first (by step)."""
    paths = glob.glob(os.path.join(checkpoint_dir, f"{CHECKPOINT_PREFIX}_step_*.ckpt"))
    return sorted(paths, key=checkpoint_step)


def checkpoint_step(path):
    return int(path.rsplit("_", 1)[1].split(".")[0])


def save_training_checkpoint(train_cell, plan, global_step, micro_batches_done):
    """Write the step's checkpoint, then delete all but the newest `save_checkpoint_num` up to this step."""
    path = os.path.join(plan.checkpoint_dir, f"{CHECKPOINT_PREFIX}_step_{global_step}.ckpt")
    save_checkpoint_atomic(train_cell, path, append_dict={"trained_steps": global_step,
                                                          "micro_batches_done": micro_batches_done})
    earlier = [p for p in checkpoint_paths(plan.checkpoint_dir) if checkpoint_step(p) <= global_step]
    for old in earlier[:-plan.save_checkpoint_num]:
        os.remove(old)
    return path


def learning_rate(optimizer, step):
    """The optimizer's learning rate at `step` (a float), for logging."""
    lr = optimizer.learning_rate
    if isinstance(lr, ms.nn.learning_rate_schedule.LearningRateSchedule):
        return float(lr(ms.Tensor(step, ms.int32)).asnumpy())
    return float(np.asarray(lr.asnumpy()).reshape(-1)[0])


def format_duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Log:
    """Step lines on stdout and JSON records in metrics.jsonl (main rank).

    A fresh run starts the file anew; a resumed run keeps the records up to its
    starting step (dropping those of the interrupted run after it).
    """

    def __init__(self, plan, start_step):
        self.plan = plan
        self.metrics = None
        if plan.output_dir and plan.is_main_rank:
            path = os.path.join(plan.output_dir, METRICS_FILE)
            kept = []
            if start_step and os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    kept = [line for line in f if line.strip() and json.loads(line)["step"] <= start_step]
            self.metrics = open(path, "w", encoding="utf-8")
            self.metrics.writelines(kept)

    def step(self, record):
        fraction, epoch = math.modf(record["step"] / self.plan.steps_per_epoch)
        print(f"epoch: {int(epoch)}, current epoch percent: {fraction:.3f}, step: {record['step']}, "
              f"outputs are ({record['loss']:.6f}, {record['overflow']}, {record['loss_scale']:g}), "
              f"lr: {record['lr']:.6g}, samples/s: {record['samples_per_s']:.1f}, "
              f"ETA: {format_duration(record['eta_s'])}", flush=True)
        if self.metrics:
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()

    def close(self):
        if self.metrics:
            self.metrics.close()


def train(train_cell, dataset, plan, start=None):
    """Run `train_cell` on `dataset` until `plan.total_steps` optimizer steps are done.

    Args:
        train_cell (nn.Cell): returns (loss, overflow, scale) per micro-batch.
        dataset: a batched `mindspore.dataset` whose columns are the cell's inputs.
        plan (TrainingPlan): length, logging and checkpointing.
        start (dict): `trained_steps` and `micro_batches_done` of a resumed checkpoint.
    Returns:
        (global_step, path of the last checkpoint written or None).
    """
    global_step = start["trained_steps"] if start else 0
    micro_done = start["micro_batches_done"] if start else 0
    micro_total = plan.total_steps * plan.micro_batches_per_step
    batches = epoch_batches(dataset, math.ceil(micro_total / dataset.get_dataset_size()))
    for _ in range(micro_done):  # replay the pipeline to the saved position (same shuffles)
        next(batches)

    train_cell.set_train(True)
    log, last_checkpoint = _Log(plan, global_step), None
    overflows_at_floor = 0
    window_start, window_steps = time.time(), 0
    try:
        while global_step < plan.total_steps:
            for _ in range(plan.micro_batches_per_step):
                loss, overflow, scale = train_cell(*next(batches))
                micro_done += 1
            global_step += 1
            window_steps += 1
            overflow, scale = bool(overflow.asnumpy()), float(scale.asnumpy())
            overflows_at_floor = overflows_at_floor + 1 if overflow and scale <= MIN_LOSS_SCALE else 0
            if overflows_at_floor >= plan.max_overflow_steps_at_floor:
                raise TrainingError(f"gradients were not finite for {overflows_at_floor} consecutive steps at the "
                                    f"minimum loss scale (step {global_step}); last good checkpoint: "
                                    f"{last_checkpoint or 'none written'}")
            if global_step % plan.log_every_steps == 0 or global_step == plan.total_steps:
                elapsed = time.time() - window_start
                rate = window_steps * plan.micro_batches_per_step * plan.samples_per_micro_batch / elapsed
                seconds_per_step = elapsed / window_steps
                # The schedule follows the optimizer's own counter, which skipped steps do not advance.
                optimizer_step = int(train_cell.optimizer.global_step.asnumpy().reshape(-1)[0]) - 1
                log.step({"step": global_step, "loss": float(loss.asnumpy()), "overflow": overflow,
                          "loss_scale": scale, "lr": learning_rate(train_cell.optimizer, max(optimizer_step, 0)),
                          "samples_per_s": rate, "eta_s": seconds_per_step * (plan.total_steps - global_step),
                          "time": time.time()})
                window_start, window_steps = time.time(), 0
            if plan.checkpoint_dir and plan.is_main_rank and (
                    (plan.save_checkpoint_steps and global_step % plan.save_checkpoint_steps == 0)
                    or global_step == plan.total_steps):
                last_checkpoint = save_training_checkpoint(train_cell, plan, global_step, micro_done)
    finally:
        log.close()
    return global_step, last_checkpoint


def epoch_batches(dataset, epochs):
    """All batches of `epochs` passes, as one stream (MindSpore's iterator stops at each epoch end)."""
    iterator = dataset.create_tuple_iterator(num_epochs=epochs)
    for _ in range(epochs):
        yield from iterator


def read_training_state(path):
    """(parameter dict, start dict or None) of a checkpoint; start is None for weights-only files."""
    params = read_checkpoint(path)
    if not all(key in params for key in STATE_KEYS):
        return params, None
    start = {key: int(params.pop(key).asnumpy()) for key in STATE_KEYS}
    return params, start


def check_no_foreign_checkpoints(checkpoint_dir, load_checkpoint_path):
    """A fresh run must not mix its checkpoints with another run's (rotation would delete them)."""
    existing = checkpoint_paths(checkpoint_dir)
    if existing and not load_checkpoint_path:
        raise TrainingError(f"save_checkpoint_path {checkpoint_dir} already holds checkpoints "
                            f"({os.path.basename(existing[-1])}); resume with --load_checkpoint_path or choose "
                            "another --output_dir / --save_checkpoint_path")


def check_writable(directory, what):
    """Create `directory` and prove a file can be written there, before any training step."""
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, ".write-test")
        with open(probe, "w", encoding="utf-8") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise TrainingError(f"{what} {directory}: not writable ({error.strerror})") from None


def check_training_config(cfg):
    """Counts that must be positive, checked before any data is read."""
    for key in ("batch_size", "accumulation_steps", "save_checkpoint_num", "log_every_steps", "epoch_size",
                "max_overflow_steps_at_floor"):
        if getattr(cfg, key) < 1:
            raise TrainingError(f"{key} must be at least 1, got {getattr(cfg, key)}")
    if cfg.save_checkpoint_steps < 0:
        raise TrainingError(f"save_checkpoint_steps must be >= 0 (0: only at the end), got {cfg.save_checkpoint_steps}")


def build_train_cell(network, optimizer, cfg):
    """`BertTrainOneStepCell` with the loss-scale, clipping and accumulation settings of `cfg`."""
    from src.bert_for_pre_training import BertTrainOneStepCell
    scale_update_cell = None
    if cfg.enable_lossscale:
        scale_update_cell = ms.nn.DynamicLossScaleUpdateCell(float(cfg.loss_scale_value), cfg.scale_factor,
                                                             cfg.scale_window)
    return BertTrainOneStepCell(network, optimizer, scale_update_cell, cfg.accumulation_steps,
                                cfg.gradient_clip_norm, cfg.enable_global_norm)


def restore(train_cell, network, path):
    """Load `path` into the run: a training checkpoint resumes everything (returns its
    start position); a weights-only checkpoint initialises `network` (returns None).

    A weights-only checkpoint must hold the whole encoder (`bert.*`); heads it
    lacks (e.g. converted from a Hugging Face BertModel) keep their random
    initialisation, and a line says so.
    """
    from src.checkpoint import load_params_into
    params, start = read_training_state(path)
    if start:
        load_params_into(train_cell, params, path)
        return start
    missing_heads = [p.name for p in network.get_parameters()
                     if p.name not in params and not p.name.startswith(ENCODER_PREFIX)]
    if missing_heads:
        print(f"note: {path} has no {', '.join(sorted({n.split('.')[0] for n in missing_heads}))} weights; "
              "they start from random initialisation")
        params = {**params, **{p.name: p for p in network.get_parameters() if p.name in missing_heads}}
    load_params_into(network, params, path)
    return None
