"""The training loop shared by pretraining and fine-tuning.

`train` runs a train cell (see `BertTrainOneStepCell`) over a dataset for a
number of optimizer steps, and around it:

* logs every `log_every_steps` steps in the model zoo's format plus learning
  rate, samples/s and ETA, and appends the same record to `metrics.jsonl`;
* reads nothing from the device between those points: the train cell counts
  overflowing steps itself and the logged learning rate is computed on the
  host, so a device runs ahead without waiting for the host each step;
* with data sinking (`steps_per_sink`), lets MindSpore feed the steps of a
  sink from a device queue (`mindspore.data_sink`, Ascend and GPU); logs and
  checkpoints then fall on sink boundaries;
* saves a checkpoint every `save_checkpoint_steps` steps (atomically; the
  newest `save_checkpoint_num` are kept) holding everything needed to resume:
  weights, optimizer state, loss-scale state and the position in the data;
* resumes from such a checkpoint: the data pipeline skips to the saved
  position (reading and dropping the batches before it, with the same
  shuffles), so the resumed run sees the same batches in the same order;
* stops with an error if the gradients stay non-finite at the smallest loss
  scale, keeping the last good checkpoint. The rule is checked where the host
  reads (log and checkpoint steps), so it fires up to `log_every_steps` - 1
  steps after the streak reaches `max_overflow_steps_at_floor`, and not at all
  if a finite step ended the streak before that read;
* stops with an error, at the same read points, when the loss is not finite
  (a smaller loss scale cannot help: it acts on the gradients only), and
  before a save and at the end when a weight or optimizer state is not finite:
  no checkpoint holds inf or NaN, so rotation never deletes the last finite
  one, which the error names.

Rank 0 writes the metrics; the first rank of each server writes the checkpoints
(`TrainingPlan.saves_checkpoints`), so that every server can resume from its own
disk; every rank logs.
"""

import contextlib
import dataclasses
import functools
import glob
import json
import math
import os
import time
from collections.abc import Callable

import mindspore as ms
import numpy as np
from mindspore import nn
from mindspore.dataset import Dataset

from src.bert_model import ENCODER_PREFIX
from src.checkpoint import first_non_finite, read_checkpoint, save_checkpoint_atomic
from src.config import Config
from src.errors import UserError
from src.files import write_text_atomic
from src.optimizers import BertLearningRate
from src.train_cell import BertTrainOneStepCell

CHECKPOINT_PREFIX = "checkpoint_bert"
METRICS_FILE = "metrics.jsonl"
# Keys stored next to the parameters in a training checkpoint.
# ("global_step" itself is taken: the optimizer's own step counter.)
STATE_KEYS = ("trained_steps", "micro_batches_done")
# Targets where MindSpore sinks data (mindspore.data_sink raises on others).
SINK_TARGETS = ("Ascend", "GPU")
# train_steps meaning "epoch_size passes over the data".
TRAIN_STEPS_FROM_EPOCHS = -1


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
    is_main_rank: bool = True      # writes metrics.jsonl
    saves_checkpoints: bool = True  # writes into checkpoint_dir (each server's first rank)
    steps_per_sink: int = 0        # data sinking: optimizer steps per sink (see align_to_sinks); 0: none


def checkpoint_paths(checkpoint_dir: str) -> list[str]:
    """Training checkpoints in `checkpoint_dir`, oldest first (by step)."""
    paths = glob.glob(os.path.join(checkpoint_dir, f"{CHECKPOINT_PREFIX}_step_*.ckpt"))
    return sorted(paths, key=checkpoint_step)


def checkpoint_step(path: str) -> int:
    return int(path.rsplit("_", 1)[1].split(".")[0])


def save_training_checkpoint(train_cell: BertTrainOneStepCell, plan: TrainingPlan, global_step: int,
                             micro_batches_done: int) -> str:
    """Write the step's checkpoint, then delete all but the newest `save_checkpoint_num` up to this step."""
    path = os.path.join(plan.checkpoint_dir, f"{CHECKPOINT_PREFIX}_step_{global_step}.ckpt")
    save_checkpoint_atomic(train_cell, path, append_dict={"trained_steps": global_step,
                                                          "micro_batches_done": micro_batches_done})
    earlier = [p for p in checkpoint_paths(plan.checkpoint_dir) if checkpoint_step(p) <= global_step]
    for old in earlier[:-plan.save_checkpoint_num]:
        with contextlib.suppress(FileNotFoundError):  # servers sharing one directory rotate the same files
            os.remove(old)
    return path


def learning_rate(optimizer: nn.Optimizer, step: int) -> float:
    """The optimizer's learning rate at `step` (a float), for logging.

    A `BertLearningRate` is evaluated on the host from its attributes: running
    the schedule Cell would compile a second graph and run it on the device at
    every log line. Otherwise the rate is constant.
    """
    lr = optimizer.learning_rate
    if isinstance(lr, BertLearningRate):
        return bert_learning_rate_at(lr, step)
    return float(np.asarray(lr.asnumpy()).reshape(-1)[0])


def bert_learning_rate_at(schedule: BertLearningRate, step: int) -> float:
    """`BertLearningRate.construct` in float32 NumPy, from the schedule's own attributes (its formula and
    argument checks live there; tests/test_pretraining.py holds the two equal)."""
    step, decay_steps = np.float32(step), np.float32(schedule.decay_steps)
    if step < schedule.warmup_steps:
        return float(np.float32(schedule.learning_rate) * step / np.float32(schedule.warmup_steps))
    remaining = np.float32(1.0) - min(step, decay_steps) / decay_steps
    return float(np.float32(schedule.learning_rate - schedule.end_learning_rate)
                 * remaining ** np.float32(schedule.power) + np.float32(schedule.end_learning_rate))


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Log:
    """Step lines on stdout and JSON records in metrics.jsonl (main rank).

    A fresh run starts the file anew; a resumed run keeps the records up to its
    starting step (dropping those of the interrupted run after it). The kept
    records are rewritten atomically, then each record is appended as one whole
    line, so a crash leaves at most a torn last line, which a resume drops.
    """

    def __init__(self, plan: TrainingPlan, start_step: int):
        self.plan = plan
        self.metrics = None
        if plan.output_dir and plan.is_main_rank:
            self.path = os.path.join(plan.output_dir, METRICS_FILE)
            kept = records_up_to(self.path, start_step) if start_step else []
            write_text_atomic("".join(kept), self.path)
            self.metrics = open(self.path, "a", encoding="utf-8")

    def step(self, record: dict) -> None:
        fraction, epoch = math.modf(record["step"] / self.plan.steps_per_epoch)
        print(f"epoch: {int(epoch)}, current epoch percent: {fraction:.3f}, step: {record['step']}, "
              f"outputs are ({record['loss']:.6f}, {record['overflow']}, {record['loss_scale']:g}), "
              f"lr: {record['lr']:.6g}, samples/s: {record['samples_per_s']:.1f}, "
              f"ETA: {format_duration(record['eta_s'])}", flush=True)
        if self.metrics:
            try:
                self.metrics.write(json.dumps(record) + "\n")
                self.metrics.flush()
            except OSError as error:
                raise TrainingError(f"{self.path}: cannot write ({error.strerror})") from None

    def close(self) -> None:
        if self.metrics:
            with contextlib.suppress(OSError):  # a failed write was reported already
                self.metrics.close()


def records_up_to(path: str, step: int) -> list[str]:
    """The lines of metrics.jsonl at `path` whose step is at most `step`, for a resumed run.

    A last line without its newline is a record torn by a crash while it was
    written: it is dropped, with a note.
    """
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    if lines and not lines[-1].endswith("\n"):
        print(f"note: {path}: dropping its torn last line, written when the run stopped")
        lines.pop()
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            raise TrainingError(f"{path} line {number}: not a metrics record; move the file away to resume "
                                "without the previous records") from None
        if record_step <= step:
            kept.append(line)
    return kept


def train(train_cell: BertTrainOneStepCell, dataset: Dataset, plan: TrainingPlan,
          start: dict | None = None) -> tuple[int, str | None]:
    """Run `train_cell` on `dataset` until `plan.total_steps` optimizer steps are done.

    Args:
        train_cell (BertTrainOneStepCell): returns (loss, overflow, scale) per micro-batch.
        dataset: a batched `mindspore.dataset` whose columns are the cell's inputs.
        plan (TrainingPlan): length, logging, checkpointing and sinking.
        start (dict): `trained_steps` and `micro_batches_done` of a resumed checkpoint, and
            optionally its `path` (named as the last good checkpoint until this run saves one).
    Returns:
        (global_step, path of the last checkpoint written or None).
    """
    global_step = start["trained_steps"] if start else 0
    micro_done = start["micro_batches_done"] if start else 0
    steps_per_call = plan.steps_per_sink or 1
    if global_step % steps_per_call:
        raise TrainingError(f"load_checkpoint_path: its step {global_step} is not a sink boundary of "
                            f"data_sink_steps={steps_per_call}; resume with a data_sink_steps that divides it")
    run_steps = step_runner(train_cell, dataset, plan, micro_done)

    train_cell.set_train(True)
    log, last_checkpoint = _Log(plan, global_step), (start or {}).get("path")
    window_start, window_steps = time.time(), 0
    try:
        while global_step < plan.total_steps:
            outputs = run_steps()
            global_step += steps_per_call
            micro_done += steps_per_call * plan.micro_batches_per_step
            window_steps += steps_per_call
            logs = global_step % plan.log_every_steps == 0 or global_step == plan.total_steps
            saves = plan.checkpoint_dir and (global_step == plan.total_steps or (
                plan.save_checkpoint_steps and global_step % plan.save_checkpoint_steps == 0))
            if not (logs or saves):
                continue  # nothing is read from the device between these points: it runs ahead
            # The same read points on every rank (whether or not it saves), so all ranks stop together.
            check_overflow_streak(train_cell, plan, global_step, last_checkpoint)
            check_finite_loss(outputs[0], global_step, last_checkpoint)
            if saves or global_step == plan.total_steps:  # the end: the caller may save the model (fine-tuning)
                check_finite_weights(train_cell, global_step, last_checkpoint)
            if logs:
                log.step(step_record(train_cell, plan, global_step, outputs, window_start, window_steps))
                window_start, window_steps = time.time(), 0
            if saves and plan.saves_checkpoints:
                last_checkpoint = save_training_checkpoint(train_cell, plan, global_step, micro_done)
    finally:
        log.close()
    return global_step, last_checkpoint


def check_overflow_streak(train_cell: BertTrainOneStepCell, plan: TrainingPlan, global_step: int,
                          last_checkpoint: str | None) -> None:
    """Stop the run once the cell has counted `max_overflow_steps_at_floor` consecutive steps whose
    gradients were not finite at the minimum loss scale: a smaller scale cannot help them."""
    streak = int(train_cell.overflow_steps_at_floor.asnumpy())
    if streak >= plan.max_overflow_steps_at_floor:
        raise TrainingError(f"gradients were not finite for {streak} consecutive steps at the minimum loss scale "
                            f"(step {global_step}); {kept(last_checkpoint)}")


def check_finite_loss(loss: ms.Tensor, global_step: int, last_checkpoint: str | None) -> None:
    """Stop the run when the loss read at a read point is inf or NaN: the weights have diverged (or the
    data is bad), and the loss scale, which acts on the gradients only, cannot bring it back."""
    value = float(loss.asnumpy())
    if not math.isfinite(value):
        raise TrainingError(f"the loss is {value} at step {global_step}: training diverged (a learning rate "
                            f"too high?); {kept(last_checkpoint)}")


def check_finite_weights(train_cell: BertTrainOneStepCell, global_step: int, last_checkpoint: str | None) -> None:
    """Before a save: every parameter of `train_cell` (weights, optimizer state) must be finite, so that no
    checkpoint holds inf or NaN and rotation never deletes the last finite one."""
    bad = first_non_finite((param.name, param) for param in train_cell.get_parameters())
    if bad:
        raise TrainingError(f"{bad} holds inf or NaN at step {global_step}: training diverged, no checkpoint "
                            f"saved; {kept(last_checkpoint)}")


def kept(last_checkpoint: str | None) -> str:
    """The end of a stop message: what the user can resume from."""
    return f"last good checkpoint: {last_checkpoint or 'none written'}"


def step_record(train_cell: BertTrainOneStepCell, plan: TrainingPlan, global_step: int,
                outputs: tuple[ms.Tensor, ms.Tensor, ms.Tensor], window_start: float, window_steps: int) -> dict:
    """The log record of `global_step` from the cell's last outputs; speed over the steps since `window_start`."""
    loss, overflow, scale = (output.asnumpy() for output in outputs)  # waits for the device
    elapsed = time.time() - window_start
    # The schedule follows the optimizer's own counter, which skipped steps do not advance.
    optimizer_step = int(train_cell.optimizer.global_step.asnumpy().reshape(-1)[0]) - 1
    return {"step": global_step, "loss": float(loss), "overflow": bool(overflow), "loss_scale": float(scale),
            "lr": learning_rate(train_cell.optimizer, max(optimizer_step, 0)),
            "samples_per_s": window_steps * plan.micro_batches_per_step * plan.samples_per_micro_batch / elapsed,
            "eta_s": elapsed / window_steps * (plan.total_steps - global_step), "time": time.time()}


def step_runner(train_cell: BertTrainOneStepCell, dataset: Dataset, plan: TrainingPlan,
                micro_done: int) -> Callable[[], tuple[ms.Tensor, ...]]:
    """A function that runs the next optimizer step (or sink of `plan.steps_per_sink` steps) and returns
    the cell's outputs of its last micro-batch.

    The data is one stream over all the epochs the run needs, started at
    micro-batch `micro_done`: `skip` replays the pipeline up to there, so a
    resumed run sees the same shuffles (a stream of repeats yields the same
    batches as iterating epoch by epoch). MindSpore sinks it to the device on
    Ascend and GPU; elsewhere, and without sinking, the host feeds each batch.
    """
    micro_total = plan.total_steps * plan.micro_batches_per_step
    stream = dataset.repeat(math.ceil(micro_total / dataset.get_dataset_size())).skip(micro_done)
    sink = host_sink
    if plan.steps_per_sink and ms.get_context("device_target") in SINK_TARGETS:
        # One compiled graph takes the batch from the device queue and runs the step.
        sink = functools.partial(ms.data_sink, jit_config=ms.JitConfig())
    return sink(train_cell, stream, sink_size=(plan.steps_per_sink or 1) * plan.micro_batches_per_step)


def host_sink(fn: Callable, dataset: Dataset, sink_size: int = 1) -> Callable[[], tuple[ms.Tensor, ...]]:
    """`mindspore.data_sink` fed from the host: each call runs `fn` on the next `sink_size` batches of
    `dataset` and returns its last outputs."""
    batches = dataset.create_tuple_iterator(num_epochs=1)

    def run() -> tuple[ms.Tensor, ...]:
        for _ in range(sink_size):
            outputs = fn(*next(batches))
        return outputs
    return run


def data_sink_steps(enable_data_sink: str | bool, steps: int, device_target: str) -> int:
    """Optimizer steps per sink (0: no sinking) for the job's `enable_data_sink` and `data_sink_steps`.

    `auto` sinks where MindSpore can (SINK_TARGETS); `true` elsewhere (CPU)
    keeps the sink boundaries while the host feeds the batches.
    """
    choice = {"auto": device_target in SINK_TARGETS, "true": True, "false": False}.get(str(enable_data_sink).lower())
    if choice is None:
        raise TrainingError(f"enable_data_sink: expected auto, true or false, got {enable_data_sink!r}")
    return steps if choice else 0


def align_to_sinks(plan: TrainingPlan) -> TrainingPlan:
    """With sinking, the host acts between sinks only: the run's length is rounded down and the log and
    checkpoint intervals up to whole sinks (a note says so), as the zoo trains train_steps // data_sink_steps
    sinks."""
    sink = plan.steps_per_sink
    if not sink:
        return plan
    if plan.total_steps < sink:
        raise TrainingError(f"data_sink_steps ({sink}) exceeds the run's {plan.total_steps} steps; "
                            "lower --data_sink_steps or train longer")
    aligned = {"total_steps": plan.total_steps // sink * sink,
               "log_every_steps": math.ceil(plan.log_every_steps / sink) * sink,
               "save_checkpoint_steps": math.ceil(plan.save_checkpoint_steps / sink) * sink}
    for key, value in aligned.items():
        if value != getattr(plan, key) and plan.is_main_rank:
            print(f"note: {key} {getattr(plan, key)} -> {value}: a whole number of sinks of "
                  f"data_sink_steps={sink} steps")
    return dataclasses.replace(plan, **aligned)


def read_training_state(path: str) -> tuple[dict[str, ms.Parameter], dict | None]:
    """(parameter dict, start dict or None) of a checkpoint; start is None for weights-only files."""
    params = read_checkpoint(path)
    if not all(key in params for key in STATE_KEYS):
        return params, None
    start = {key: int(params.pop(key).asnumpy()) for key in STATE_KEYS}
    return params, start


def check_no_foreign_checkpoints(checkpoint_dir: str, load_checkpoint_path: str) -> None:
    """A fresh run must not mix its checkpoints with another run's (rotation would delete them)."""
    existing = checkpoint_paths(checkpoint_dir)
    if existing and not load_checkpoint_path:
        raise TrainingError(f"save_checkpoint_path {checkpoint_dir} already holds checkpoints "
                            f"({os.path.basename(existing[-1])}); resume with --load_checkpoint_path or choose "
                            "another --output_dir / --save_checkpoint_path")


def check_training_config(cfg: Config) -> None:
    """Counts that must be positive, checked before any data is read."""
    for key in ("batch_size", "accumulation_steps", "save_checkpoint_num", "log_every_steps", "epoch_size",
                "max_overflow_steps_at_floor", "data_sink_steps"):
        if getattr(cfg, key) < 1:
            raise TrainingError(f"{key} must be at least 1, got {getattr(cfg, key)}")
    if cfg.train_steps < 1 and cfg.train_steps != TRAIN_STEPS_FROM_EPOCHS:
        raise TrainingError(f"train_steps must be at least 1, or {TRAIN_STEPS_FROM_EPOCHS} for epoch_size epochs, "
                            f"got {cfg.train_steps}")
    if cfg.save_checkpoint_steps < 0:
        raise TrainingError(f"save_checkpoint_steps must be >= 0 (0: only at the end), got {cfg.save_checkpoint_steps}")


def build_train_cell(network: nn.Cell, optimizer: nn.Optimizer, cfg: Config) -> BertTrainOneStepCell:
    """`BertTrainOneStepCell` with the loss-scale, clipping and accumulation settings of `cfg`."""
    scale_update_cell = None
    if cfg.enable_lossscale:
        scale_update_cell = ms.nn.DynamicLossScaleUpdateCell(float(cfg.loss_scale_value), cfg.scale_factor,
                                                             cfg.scale_window)
    return BertTrainOneStepCell(network, optimizer, scale_update_cell, cfg.accumulation_steps,
                                cfg.gradient_clip_norm, cfg.enable_global_norm)


def restore(train_cell: BertTrainOneStepCell, network: nn.Cell, path: str) -> dict | None:
    """Load `path` into the run: a training checkpoint resumes everything (returns its
    start position and `path`); a weights-only checkpoint initialises `network` (returns None).

    A weights-only checkpoint must hold the whole encoder (`bert.*`); heads it
    lacks (e.g. converted from a Hugging Face BertModel) keep their random
    initialisation, and a line says so. Unlike fine-tuning's start
    (`src.checkpoint.load_encoder`, which ignores every head), the heads it holds
    are loaded: pretraining continues them.
    """
    from src.checkpoint import load_params_into
    params, start = read_training_state(path)
    if start:
        load_params_into(train_cell, params, path)
        return dict(start, path=path)
    missing_heads = [p.name for p in network.get_parameters()
                     if p.name not in params and not p.name.startswith(ENCODER_PREFIX)]
    if missing_heads:
        print(f"note: {path} has no {', '.join(sorted({n.split('.')[0] for n in missing_heads}))} weights; "
              "they start from random initialisation")
        params = {**params, **{p.name: p for p in network.get_parameters() if p.name in missing_heads}}
    load_params_into(network, params, path)
    return None
