"""The fine-tuning job shared by run_classifier.py, run_ner.py and run_squad.py.

    setup, check_job_inputs  the job's switches, paths and input files, checked before any work
    train_task     pretrained encoder -> trained task model -> `<task>.ckpt` + `<task>.yaml`
    predict        run a task model over a dataset, collecting inputs and outputs

Training reuses pretraining's pieces unchanged: the one train cell (loss
scale, clipping, accumulation), the optimizers and learning-rate schedule
(warmup over `warmup_proportion` of the steps, then polynomial decay) and the
training loop (progress lines, metrics.jsonl). What each task trains, and the
files of the model it leaves (a weights-only checkpoint and a YAML file with
the task's settings and the `model:` section, so that `--model_config=<task>.yaml`
rebuilds the same model for evaluation or export), are src/tasks.py's.
"""

import contextlib
import os
import sys

from collections.abc import Iterator, Sequence

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore import nn

from src.bert_model import BertConfig
from src.checkpoint import load_encoder
from src.columns import MODEL_INPUTS
from src.config import Config, ConfigError
from src.dataset import (bucket_length, bucket_lengths, check_task_data, create_dataset, fixed_shapes,
                         pad_rows)
from src.device import init_device, job_target
from src.files import finite_json, read_json, write_text_atomic
from src.optimizers import build_optimizer
from src.plotting import plot_training
from src.run_directory import check_not_replacing, hold_directories
from src.tasks import TASKS, loss_network, read_task_file, save_task_model, task_yaml_path
from src.tokenization import load_vocab
from src.training import METRICS_FILE, TrainingPlan, build_train_cell, train

RESULTS_FILE = "eval_results.json"
LOSS_PLOT = "loss.png"


@contextlib.contextmanager
def setup(cfg: Config, config: BertConfig, task_name: str) -> Iterator[None]:
    """Check the job's switches and paths, set the device (for `config`, the job's BertConfig) and seeds,
    then hold the job's output directories while the block runs (src/run_directory.py: writable, locked,
    no previous results replaced without --overwrite); all before any data is read, so that an unwritable
    save_finetune_checkpoint_path is found before training, not after it."""
    if not (cfg.do_train or cfg.do_eval):
        raise ConfigError("nothing to do: set --do_train=true and/or --do_eval=true")
    if not cfg.output_dir:
        raise ConfigError("--output_dir: required (the metrics, the results and by default the model go there)")
    if cfg.do_train and not cfg.train_data_file_path:
        raise ConfigError("--train_data_file_path: required with --do_train=true")
    if cfg.do_eval and not cfg.eval_data_file_path:
        raise ConfigError("--eval_data_file_path: required with --do_eval=true")
    if cfg.do_eval and not cfg.do_train and not cfg.load_finetune_checkpoint_path:
        raise ConfigError("--load_finetune_checkpoint_path: required to evaluate without training")
    for key in ("train_batch_size", "eval_batch_size", "epoch_num", "accumulation_steps", "log_every_steps",
                "max_overflow_steps_at_floor"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key} must be at least 1, got {getattr(cfg, key)}")
    if not 0.0 <= cfg.warmup_proportion <= 1.0:
        raise ConfigError(f"warmup_proportion: expected a fraction in [0, 1], got {cfg.warmup_proportion}")
    bucket_lengths(cfg.bucket_list, config.seq_length)   # a bad bucket_list stops the job here, not after training
    init_device(cfg, config.compute_type, training=cfg.do_train)
    ms.set_seed(cfg.random_seed)
    ds.config.set_seed(cfg.random_seed)
    directories = [(cfg.output_dir, "output_dir")] + ([model_directory(cfg)] if cfg.do_train else [])
    with hold_directories(directories):
        check_not_replacing(previous_outputs(cfg, task_name), cfg.overwrite)
        yield


def model_directory(cfg: Config) -> tuple[str, str]:
    """(directory, flag) where training saves `<task>.ckpt` and `<task>.yaml`."""
    if cfg.save_finetune_checkpoint_path:
        return cfg.save_finetune_checkpoint_path, "save_finetune_checkpoint_path"
    return cfg.output_dir, "output_dir"


def previous_outputs(cfg: Config, task_name: str) -> list[tuple[str, str]]:
    """(path, flag) of the results this run writes that a previous run may have left: the training's
    metrics and model, the evaluation's results."""
    outputs = []
    if cfg.do_train:
        directory, flag = model_directory(cfg)
        outputs += [(os.path.join(cfg.output_dir, METRICS_FILE), "output_dir"),
                    (os.path.join(directory, f"{task_name}.ckpt"), flag)]
    if cfg.do_eval:
        outputs.append((os.path.join(cfg.output_dir, RESULTS_FILE), "output_dir"))
    return outputs


def train_task(cfg: Config, config: BertConfig, task_name: str, task_settings: dict) -> str:
    """Fine-tune `task_name`'s loss network (src.tasks.loss_network, its head sized by `task_settings`)
    on the training data, starting from the encoder of --load_pretrain_checkpoint_path.

    `task_settings` (src.tasks.recorded_settings: num_class, labels, ...) are saved with the model
    for prediction. Returns the path of the saved task-model checkpoint.
    """
    network = loss_network(task_name, config, task_settings)
    dataset = create_dataset(cfg.train_data_file_path, TASKS[task_name].training_columns, cfg.train_batch_size,
                             do_shuffle=cfg.train_data_shuffle, schema_dir=cfg.schema_file_path,
                             dataset_format=cfg.dataset_format, seq_length=config.seq_length,
                             bucket_list=cfg.bucket_list)
    steps_per_epoch = dataset.get_dataset_size() // cfg.accumulation_steps
    if steps_per_epoch < 1:
        raise ConfigError(f"train_data_file_path: {dataset.get_dataset_size()} batches of {cfg.train_batch_size} "
                          f"do not make one step of {cfg.accumulation_steps} micro-batches")
    total_steps = cfg.epoch_num * steps_per_epoch
    if cfg.load_pretrain_checkpoint_path:
        # The task head keeps its random initialisation.
        load_encoder(network, cfg.load_pretrain_checkpoint_path, "--load_pretrain_checkpoint_path")
    else:
        print("warning: no --load_pretrain_checkpoint_path: the encoder starts from random weights")
    optimizer = build_optimizer(cfg, network.trainable_params(), total_steps, job_target(cfg),
                                warmup_steps=int(cfg.warmup_proportion * total_steps))
    train_cell = build_train_cell(network, optimizer, cfg)
    plan = TrainingPlan(total_steps=total_steps, micro_batches_per_step=cfg.accumulation_steps,
                        samples_per_micro_batch=cfg.train_batch_size, steps_per_epoch=steps_per_epoch,
                        log_every_steps=cfg.log_every_steps, save_checkpoint_steps=0, save_checkpoint_num=1,
                        checkpoint_dir="", output_dir=cfg.output_dir,
                        max_overflow_steps_at_floor=cfg.max_overflow_steps_at_floor)
    train(train_cell, dataset, plan)
    plot_training(os.path.join(cfg.output_dir, METRICS_FILE), os.path.join(cfg.output_dir, LOSS_PLOT),
                  f"{task_name} fine-tuning")
    path = os.path.join(model_directory(cfg)[0], f"{task_name}.ckpt")
    # The model section as the user described it: `compute_type: auto` stays auto, so that the device that
    # loads it picks its precision (a model fine-tuned in float16 on a GPU predicts in float32 on a CPU).
    save_task_model(network, path, task_name, task_settings, cfg.model.to_dict(), "fine-tuned")
    print(f"saved the fine-tuned model to {path}")
    return path


def check_fine_tuned(checkpoint: str, task: str, label_map: dict | None = None, label_file: str = "") -> None:
    """Before evaluating the fine-tuned `checkpoint`: the `<task>.yaml` saved with it must describe `task`,
    and `label_map` ({label: id}, read from `label_file`) must give every id the label the model learnt,
    or its predictions would be scored and written under other names. Without the YAML nothing is checked."""
    path = task_yaml_path(checkpoint)
    if not os.path.isfile(path):
        print(f"note: no {path} next to the checkpoint: its task and labels are not checked")
        return
    saved = read_task_file(path)
    if saved.task not in (None, task):  # None: a file that does not say (a converted encoder)
        raise ConfigError(f"--load_finetune_checkpoint_path {checkpoint}: {path} describes a "
                          f"{saved.task!r} model, not {task!r}")
    if label_map is not None and saved.values.get("labels") is not None:
        check_saved_labels(sorted(label_map, key=label_map.get), saved.values["labels"],
                           f"--label2id_file_path {label_file} disagrees with the labels saved in {path}")


def unnamed_labels(count: int) -> tuple[list[str], list[str]]:
    """The label lists that name no class: the ids as strings (a classifier fine-tuned without
    label2id_file_path) and Hugging Face's defaults (an imported model whose config.json names none)."""
    return [str(index) for index in range(count)], [f"LABEL_{index}" for index in range(count)]


def check_saved_labels(labels: list[str], saved_labels: object, where: str) -> None:
    """`labels` (in id order) must be the `saved_labels` of a fine-tuned model; `where` opens the error."""
    if not isinstance(saved_labels, list):
        raise ConfigError(f"{where}: the saved labels are not a list")
    if saved_labels in unnamed_labels(len(saved_labels)):
        return
    if len(labels) != len(saved_labels):
        raise ConfigError(f"{where}: {len(labels)} labels in the label map, {len(saved_labels)} in the model")
    for index, (label, saved_label) in enumerate(zip(labels, saved_labels)):
        if label != saved_label:
            raise ConfigError(f"{where}: id {index} is {label!r} in the label map, {saved_label!r} in the model")


# Embedding tables may hold a few unused rows past the vocabulary, padded for speed (the zoo's 21136 rows
# hold Google's 21128 Chinese tokens); this many more suggests a different vocabulary.
EMBEDDING_PADDING_ROWS = 128


def check_vocabulary(vocab: dict[str, int], vocab_file: str, vocab_size: int, flag: str) -> None:
    """A vocabulary ({token: id}, its specials checked by `load_vocab`) must fit the model's `vocab_size`
    embedding rows: a larger one is another vocabulary, whose ids name other tokens or no row at all.
    A much smaller one is a warning (padding rows are normal)."""
    if len(vocab) > vocab_size:
        raise ConfigError(f"{flag} {vocab_file}: {len(vocab)} tokens, more than the model's {vocab_size} "
                          "embedding rows (vocab_size): not the vocabulary the model was trained with")
    if vocab_size - len(vocab) >= EMBEDDING_PADDING_ROWS:
        print(f"warning: {flag} {vocab_file}: {len(vocab)} tokens for a model of {vocab_size} embedding rows "
              "(vocab_size): is it the vocabulary the model was trained with?", file=sys.stderr)


def warn_truncated(count: int, max_tokens: int) -> None:
    """The one warning for inputs cut to the model's sequence, on stderr (stdout may carry results)."""
    if count:
        print(f"warning: {count} inputs longer than {max_tokens} tokens were truncated", file=sys.stderr)


def predict(predictor: nn.Cell, dataset: ds.Dataset, bucket_list: Sequence[int] = (), token_outputs: bool = False,
            fixed_shape: bool | None = None) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Run `predictor` over every row of `dataset`; returns ({column: all rows}, [output arrays, all rows]),
    both in the dataset's row order.

    Dynamic padding: rows run sorted by length, in batches of the dataset's batch
    size, each cut to the shortest length of `bucket_list` (seq_length always
    added) that holds its rows (`batch_plan`), so short rows run short; the
    outputs then go back to the rows' order. With `token_outputs` (outputs of one
    value per token, [B, L, ...]) they are padded back to seq_length (`to_length`).

    With `fixed_shape` (by default where `fixed_shapes` says so for MindSpore's
    target: Ascend), every batch keeps seq_length and a last, smaller batch runs
    padded to the batch size, only its real rows' outputs kept, so the compiled
    predictor sees one shape.
    """
    if fixed_shape is None:
        fixed_shape = fixed_shapes(ms.get_context("device_target"))
    columns = read_rows(dataset)
    inputs = [columns[name] for name in MODEL_INPUTS]                   # each [N, S]
    seq_length = inputs[0].shape[1]
    buckets = [seq_length] if fixed_shape else bucket_lengths(bucket_list, seq_length)
    batch_size = dataset.get_batch_size()
    order, outputs = [], []
    for rows, length in batch_plan(columns["input_mask"], batch_size, buckets):
        batch, real_rows = [values[rows, :length] for values in inputs], len(rows)   # each [B, L]
        if fixed_shape:
            batch, real_rows = pad_rows(batch, batch_size)
        result = predictor(*[ms.Tensor(values) for values in batch])
        result = result if isinstance(result, tuple) else (result,)
        values = [value.asnumpy()[:real_rows] for value in result]
        outputs.append([to_length(value, seq_length) for value in values] if token_outputs else values)
        order.append(rows)
    order = np.concatenate(order)
    return columns, [in_order(np.concatenate(values), order) for values in zip(*outputs)]


def read_rows(dataset: ds.Dataset) -> dict[str, np.ndarray]:
    """{column: every row of the batched `dataset`, [N, ...]}, in its order."""
    batches = list(dataset.create_dict_iterator(num_epochs=1, output_numpy=True))
    if not batches:
        raise ConfigError("eval_data_file_path: no rows to evaluate")
    return {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}


def batch_plan(input_mask: np.ndarray, batch_size: int,
               buckets: Sequence[int]) -> list[tuple[np.ndarray, int]]:
    """[(row indices, length)]: the rows of `input_mask` (int [N, S]) sorted by real length, in batches of
    `batch_size`, each with the shortest of `buckets` (sorted, the last seq_length) that holds its rows."""
    order = np.argsort(input_mask.sum(axis=1), kind="stable")
    return [(rows, bucket_length(input_mask[rows], buckets))
            for rows in np.split(order, range(batch_size, len(order), batch_size))]


def to_length(values: np.ndarray, seq_length: int) -> np.ndarray:
    """Per-token values [B, L, ...] padded to [B, seq_length, ...]: integers (tags) with 0, what the task
    models give at padding; floats (SQuAD's logits) with the lowest float, so that a position the
    batch did not compute never ranks above a computed one."""
    fill = np.finfo(values.dtype).min if np.issubdtype(values.dtype, np.floating) else 0
    widths = [(0, 0), (0, seq_length - values.shape[1])] + [(0, 0)] * (values.ndim - 2)
    return np.pad(values, widths, constant_values=fill)


def in_order(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """`values` [N, ...] of rows `order` (a permutation), put back in row order."""
    restored = np.empty_like(values)
    restored[order] = values
    return restored


def eval_dataset(cfg: Config, config: BertConfig, task_name: str) -> ds.Dataset:
    """`task_name`'s evaluation data, in file order unless `eval_data_shuffle`, every row kept, padded to
    seq_length (`predict` sorts the rows by length and cuts its batches to `bucket_list`)."""
    return create_dataset(cfg.eval_data_file_path, TASKS[task_name].evaluation_columns, cfg.eval_batch_size,
                          do_shuffle=cfg.eval_data_shuffle, dataset_format=cfg.dataset_format,
                          seq_length=config.seq_length, drop_remainder=False)


def read_label_map(path: str, num_class: int) -> dict[str, int]:
    """{label: id} from a label2id.json; its size must equal `num_class`."""
    label_map = read_json(path, "--label2id_file_path")
    if sorted(label_map.values()) != list(range(len(label_map))):
        raise ConfigError(f"--label2id_file_path {path}: expected {{label: id}} with ids 0..N-1")
    if len(label_map) != num_class:
        raise ConfigError(f"--num_class={num_class} disagrees with the {len(label_map)} labels of {path}")
    return label_map


def check_job_inputs(cfg: Config, config: BertConfig, task_name: str, label_map: dict | None = None,
                     eval_records: bool = True) -> None:
    """A fine-tuning job's files against each other and the model, cheapest first: the vocabulary's size
    (`check_vocabulary`, when the job is given one), the fine-tuned model's task and labels when it only
    evaluates (`check_fine_tuned`), then every data row (`check_job_data`)."""
    if cfg.vocab_file_path:
        check_vocabulary(load_vocab(cfg.vocab_file_path), cfg.vocab_file_path, config.vocab_size,
                         "--vocab_file_path")
    if cfg.do_eval and not cfg.do_train:
        check_fine_tuned(cfg.load_finetune_checkpoint_path, task_name, label_map,
                         cfg.label2id_file_path if label_map is not None else "")
    check_job_data(cfg, config, task_name, eval_records)


def check_job_data(cfg: Config, config: BertConfig, task_name: str, eval_records: bool = True) -> None:
    """Every row of the job's training and (with `eval_records`) evaluation records must fit the task and
    the model (src.dataset.task_columns): damaged files, another task's data, ids beyond model.vocab_size
    or labels beyond --num_class stop the job in one line here, before any model is built."""
    task = TASKS[task_name]
    if cfg.do_train:
        check_task_data(cfg.train_data_file_path, cfg.dataset_format, task.training_data, config, cfg.num_class)
    if cfg.do_eval and eval_records:
        check_task_data(cfg.eval_data_file_path, cfg.dataset_format, task.evaluation_data, config, cfg.num_class)


def save_results(cfg: Config, results: dict) -> None:
    """`results` as <output_dir>/eval_results.json, written whole (finite numbers only)."""
    path = os.path.join(cfg.output_dir, RESULTS_FILE)
    write_text_atomic(finite_json(results, path, indent=2, ensure_ascii=False) + "\n", path)
    print(f"results written to {path}")


def rows_dataset(rows: list[dict[str, np.ndarray]], columns: Sequence[str], batch_size: int) -> ds.Dataset:
    """A batched dataset of in-memory rows ({column: array}), in order, every row kept."""
    data = {name: np.stack([row[name] for row in rows]).astype(np.int32) for name in columns}
    dataset = ds.NumpySlicesDataset(data, column_names=list(columns), shuffle=False)
    return dataset.batch(batch_size, drop_remainder=False)
