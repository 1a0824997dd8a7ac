"""Training and evaluation data loaders on `mindspore.dataset`, for every job.

All loaders read TFRecord or MindRecord files (a directory, or a list of files),
shard the rows across devices, optionally shuffle, cast integer columns to
int32 (the model's input type), and batch. Before that, every file is read
once in full (`src.record_check`): TFRecord checksums verified, every column's
length and value range summarised, so that a damaged file, another task's data
or an id the model cannot embed stops the job in one line before the first
step (`check_task_data` compares the ranges with the task and model). A schema
file, when given, is checked against the files too.

Sharding: when the number of files is a multiple of `device_num`, each device
reads whole files and every row is read exactly once. Otherwise rows are split
(`shard_equal_rows`) so that every device gets the same number of rows, which
repeats up to `device_num - 1` rows: unequal shards would leave one device
waiting for the others at the end of an epoch.

Dynamic padding (`bucket_list`): rows are batched as they come (shuffled,
so every batch is a random sample), then each batch's token columns are cut
to the shortest bucket length that holds its longest row (`cut_batches`):
attention over padding is wasted work, and a compiled model builds one graph
per bucket length. Evaluation sorts rows by length instead (src.finetune.predict).

Shapes: every new input shape is another graph compilation, which on Ascend
costs far more than on CPU or GPU. Where `fixed_shapes` says so (Ascend),
`bucket_list` is ignored (every batch is padded to seq_length) and the
evaluation loops pad the last, partial batch to the batch size (`pad_rows`),
dropping the padding rows' results, so one graph serves every batch.
"""

import bisect
import dataclasses
import glob
import os
from collections.abc import Sequence

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore.dataset import transforms

from src.bert_model import BertConfig
from src.columns import POSITION_COLUMNS, column_names, column_types
from src.files import read_json
from src.record_check import DatasetError, Expect, check_columns, summarize

EXTENSIONS = {"tfrecord": (".tfrecord", ".tf_record", ".record"), "mindrecord": (".mindrecord",)}
# Where the data is: a directory of shards, a list of files, or a comma-separated string of files.
DataDir = str | Sequence[str]
# Parallel map workers: a few, never more than the machine has.
DEFAULT_PARALLEL_WORKERS = min(4, os.cpu_count() or 1)
# Targets where each new input shape costs a slow graph compilation: batches keep one shape there.
FIXED_SHAPE_TARGETS = ("Ascend",)


def data_files(data_dir: DataDir, dataset_format: str) -> list[str]:
    """The data files of a directory (sorted), or a list/comma-separated string of files."""
    if not data_dir:
        raise DatasetError("data_dir: no data given (a directory of shards, or a list of files)")
    if isinstance(data_dir, str) and os.path.isdir(data_dir):
        files = sorted(path for path in glob.glob(os.path.join(data_dir, "*"))
                       if path.endswith(EXTENSIONS[dataset_format]))
        if not files:
            raise DatasetError(f"data_dir {data_dir}: no {dataset_format} files "
                               f"(names ending in {', '.join(EXTENSIONS[dataset_format])})")
        return refuse_empty_files(files)
    files = data_dir.split(",") if isinstance(data_dir, str) else list(data_dir)
    missing = [path for path in files if not os.path.isfile(path)]
    if missing:
        raise DatasetError(f"data_dir: no such file {missing[0]}")
    return refuse_empty_files(files)


def refuse_empty_files(files: list[str]) -> list[str]:
    """`files`, unless one is empty (0 bytes): it holds no rows, and MindSpore's reader fails on it with a
    traceback."""
    empty = [path for path in files if os.path.getsize(path) == 0]
    if empty:
        raise DatasetError(f"{empty[0]}: empty file (0 bytes, no rows); regenerate the data, or remove the file")
    return files


def create_dataset(data_dir: DataDir, columns: Sequence[str], batch_size: int, device_num: int = 1, rank: int = 0,
                   do_shuffle: bool = False, schema_dir: str = "", dataset_format: str = "tfrecord",
                   seq_length: int | None = None, drop_remainder: bool = True,
                   num_parallel_workers: int = DEFAULT_PARALLEL_WORKERS, bucket_list: Sequence[int] = ()) -> ds.Dataset:
    """A batched dataset of `columns` read from `data_dir`.

    Args:
        data_dir: a directory of shards, or a list (or comma-separated string) of files.
        columns (tuple of str): the columns to read, in output order.
        batch_size (int): rows per batch.
        device_num, rank (int): shard the rows across `device_num` readers; this is reader `rank`.
        do_shuffle (bool): shuffle files and rows.
        schema_dir (str): optional TFRecord schema JSON (the generator's `schema.json`).
        dataset_format (str): "tfrecord" or "mindrecord".
        seq_length (int): if given, `input_ids` must have this length (the model's `seq_length`).
        drop_remainder (bool): drop a last, smaller batch (training) or keep it (evaluation).
        bucket_list (sequence of int): if given, cut each batch to the shortest of these lengths
            (seq_length always added) that holds its rows (`cut_batches`); ignored, with a note,
            where MindSpore's target wants fixed shapes (`fixed_shapes`).
    Returns:
        mindspore.dataset.Dataset yielding `columns`, int32 except float columns.
    """
    files = data_files(data_dir, dataset_format)
    summaries = summarize(files, dataset_format)
    check_columns(summaries, {column: Expect() for column in columns})
    _, first_file = summaries[files[0]]
    lengths = {column: first_file[column].length for column in columns}
    num_rows = check_schema(schema_dir, columns, lengths, files[0]) if schema_dir else None
    if num_rows:
        print(f"{schema_dir}: numRows {num_rows}: at most {num_rows} rows are read"
              + (" per reader" if device_num > 1 else ""))
    if seq_length is not None and "input_ids" in lengths and lengths["input_ids"] != seq_length:
        raise DatasetError(f"{files[0]}: input_ids has length {lengths['input_ids']}, but the model's "
                           f"seq_length is {seq_length}; regenerate the data or set model.seq_length")
    # num_samples (numRows) counts the rows of each reader, as MindSpore's readers do with a schema.
    reading = dict(num_samples=num_rows, **(dict(num_shards=device_num, shard_id=rank) if device_num > 1 else {}))
    if dataset_format == "tfrecord":
        # The reader itself turns the files' int64 values into the model's int32 when its schema says
        # int32: about 3x the batches/s of a TypeCast map per column, and no map threads competing
        # with the training step for the cores.
        schema = ds.Schema()
        for column in columns:
            schema.add_column(column, de_type=ms.float32 if first_file[column].is_float else ms.int32,
                              shape=[lengths[column]])
        dataset = ds.TFRecordDataset(files, schema=schema, shuffle=ds.Shuffle.GLOBAL if do_shuffle else False,
                                     shard_equal_rows=len(files) % device_num != 0, **reading)
    else:
        dataset = ds.MindDataset(files, columns_list=list(columns), shuffle=do_shuffle, **reading)
        to_int32 = transforms.TypeCast(ms.int32)
        for column in columns:
            if not first_file[column].is_float:  # int64 on disk -> int32 for the model
                dataset = dataset.map(operations=to_int32, input_columns=column,
                                      num_parallel_workers=num_parallel_workers)
    if dataset.get_dataset_size() == 0:
        raise DatasetError(f"data_dir {data_dir}: no rows for reader {rank} of {device_num}")
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if not bucket_list:
        return dataset
    if fixed_shapes(ms.get_context("device_target")):
        print(f"note: bucket_list {list(bucket_list)} ignored on {ms.get_context('device_target')}: every batch "
              f"is padded to seq_length {lengths['input_ids']}, so one compiled graph serves them all")
        return dataset
    return cut_batches(dataset, lengths, bucket_list)


def fixed_shapes(device_target: str) -> bool:
    """Whether batches should keep one shape on `device_target`: on Ascend, where every new input
    shape is another graph compilation (far slower than on CPU or GPU). CPU and GPU cut batches to
    bucket lengths and keep a smaller last evaluation batch."""
    return device_target in FIXED_SHAPE_TARGETS


def pad_rows(columns: list[np.ndarray], batch_size: int) -> tuple[list[np.ndarray], int]:
    """A batch of fewer than `batch_size` rows topped up with copies of its last row.

    The copies are real inputs (an all-padding row could make a model or a CRF
    decode meet values it never sees in training); their results are dropped
    by the caller, who keeps the first `real_rows`.

    Args:
        columns (list of np.ndarray): the batch's columns, each [R, ...] with R <= batch_size.
        batch_size (int): rows wanted.
    Returns:
        (list of np.ndarray each [batch_size, ...], real_rows R)
    """
    real_rows = len(columns[0])
    extra = batch_size - real_rows
    padded = [np.concatenate([column, np.repeat(column[-1:], extra, axis=0)]) if extra > 0 else column
              for column in columns]
    return padded, real_rows


def bucket_lengths(bucket_list: Sequence[int], seq_length: int) -> list[int]:
    """The sorted bucket lengths: those of `bucket_list` below `seq_length`, then `seq_length`."""
    if any(type(length) is not int or length < 1 for length in bucket_list):
        raise DatasetError(f"bucket_list: expected positive whole lengths such as [32, 64], got {list(bucket_list)}")
    return sorted({length for length in bucket_list if length < seq_length} | {seq_length})


def bucket_length(input_mask: np.ndarray, buckets: list[int], positions: Sequence[np.ndarray] = ()) -> int:
    """The shortest of `buckets` (sorted, the last one seq_length) that holds every real token of
    `input_mask` (int [B, S]) and every index of `positions` (int arrays [B, 1]); seq_length if none does."""
    real = np.flatnonzero(input_mask.any(axis=0))
    needed = max([int(real[-1]) + 1 if real.size else 1] + [int(column.max()) + 1 for column in positions])
    return buckets[min(bisect.bisect_left(buckets, needed), len(buckets) - 1)]


def cut_batches(dataset: ds.Dataset, row_lengths: dict[str, int], bucket_list: Sequence[int]) -> ds.Dataset:
    """Batches whose token columns are cut to `bucket_length`: they lose only padding.

    The token columns are those as long as `input_ids` (the inputs, and NER's
    per-token labels); SQuAD's start/end positions index real tokens (or 0), so
    they stay below the cut, which `bucket_length` makes sure of. The model's
    outputs at real tokens do not depend on padding, so a batch's loss and
    update are those of the batch padded to seq_length.

    Args:
        dataset: batches of rows padded to seq_length, token columns [B, S].
        row_lengths (dict): {column: values per row}; `input_ids` gives seq_length S.
        bucket_list (sequence of int): bucket lengths; seq_length is always added.
    Returns:
        the dataset with token columns [B, L], L the batch's bucket length.
    """
    seq_length = row_lengths["input_ids"]
    buckets = bucket_lengths(bucket_list, seq_length)
    token_columns = [column for column, length in row_lengths.items() if length == seq_length]
    position_columns = [column for column in POSITION_COLUMNS if column in row_lengths]
    mask_index = token_columns.index("input_mask")

    def cut_to_bucket(*values):
        tokens, positions = values[:len(token_columns)], values[len(token_columns):]
        length = bucket_length(tokens[mask_index], buckets, positions)
        return tuple(value[:, :length] for value in tokens) + positions

    columns = token_columns + position_columns
    return dataset.map(operations=cut_to_bucket, input_columns=columns, output_columns=columns)


def check_schema(schema_path: str, columns: Sequence[str], lengths: dict[str, int], data_path: str) -> int | None:
    """The schema file must list `columns` with the lengths the data files have.

    Returns its `numRows` (None when absent or 0): like the model zoo, which hands
    the schema to MindSpore's reader, at most that many rows are read.
    """
    schema = read_json(schema_path, "schema_dir")
    schema_columns = schema.get("columns")
    if not isinstance(schema_columns, dict):
        raise DatasetError(f"schema_dir {schema_path}: not a schema JSON (an object with a 'columns' object)")
    num_rows = schema.get("numRows")
    if num_rows is not None and (type(num_rows) is not int or num_rows < 0):
        raise DatasetError(f"{schema_path}: numRows must be a whole number of rows >= 0 (0: all), got {num_rows!r}")
    for column in columns:
        if column not in schema_columns:
            raise DatasetError(f"{schema_path}: no column {column}")
        shape = schema_columns[column].get("shape", [])
        if [lengths[column]] != list(shape):
            raise DatasetError(f"{schema_path}: column {column} has shape {shape}, but {data_path} "
                               f"holds {lengths[column]} values")
    return num_rows or None


def task_columns(task: str, config: BertConfig, num_class: int | None = None) -> dict[str, Expect]:
    """{column: Expect} of `task`'s data ("pretraining", "classifier", "ner", "squad training" or
    "squad evaluation") for a model of BertConfig `config` and `num_class` labels: the lengths of
    `src.columns` (masked-LM columns: any length, whatever masking the data was made with), and the
    values the model accepts (ids its embedding tables hold, positions inside its sequence)."""
    seq = config.seq_length
    token_ids = Expect(None, 0, config.vocab_size - 1, f"model.vocab_size {config.vocab_size}")
    position = Expect(None, 0, seq - 1, f"model.seq_length {seq}")
    values = {"input_ids": token_ids, "masked_lm_ids": token_ids,
              "input_mask": Expect(None, 0, 1, "an attention mask"),
              "segment_ids": Expect(None, 0, config.type_vocab_size - 1,
                                    f"model.type_vocab_size {config.type_vocab_size}"),
              "next_sentence_labels": Expect(None, 0, 1, "next-sentence labels"),
              "masked_lm_weights": Expect(None, 0, 1, "masked-LM weights"),
              "label_ids": Expect(None, 0, (num_class or 0) - 1, f"--num_class={num_class}"),
              **{name: position for name in POSITION_COLUMNS},
              "unique_ids": Expect()}
    return {name: dataclasses.replace(values[name], length=length)
            for name, (_, length) in column_types(task, seq).items()}


def check_task_data(data_dir: DataDir, dataset_format: str, task: str, config: BertConfig,
                    num_class: int | None = None) -> None:
    """Every row of `data_dir` must fit `task` and the model (`task_columns`): one line naming the file,
    column and what the task expects otherwise. Reads each file once (kept for the loaders)."""
    files = data_files(data_dir, dataset_format)
    check_columns(summarize(files, dataset_format), task_columns(task, config, num_class), f"the {task} task")


def create_bert_dataset(device_num: int = 1, rank: int = 0, do_shuffle: bool = True, data_dir: DataDir | None = None,
                        schema_dir: str = "", batch_size: int = 32, dataset_format: str = "tfrecord",
                        seq_length: int | None = None,
                        num_parallel_workers: int = DEFAULT_PARALLEL_WORKERS) -> ds.Dataset:
    """Pretraining batches: the seven masked-LM / next-sentence columns (model zoo signature)."""
    return create_dataset(data_dir, column_names("pretraining"), batch_size, device_num, rank, do_shuffle, schema_dir,
                          dataset_format, seq_length, drop_remainder=True,
                          num_parallel_workers=num_parallel_workers)


def create_classification_dataset(data_dir: DataDir, batch_size: int, do_shuffle: bool = True, schema_dir: str = "",
                                  dataset_format: str = "tfrecord", seq_length: int | None = None,
                                  drop_remainder: bool = True) -> ds.Dataset:
    """Classification or NER batches: input_ids, input_mask, segment_ids, label_ids."""
    return create_dataset(data_dir, column_names("classifier"), batch_size, do_shuffle=do_shuffle,
                          schema_dir=schema_dir, dataset_format=dataset_format, seq_length=seq_length,
                          drop_remainder=drop_remainder)


def create_squad_dataset(data_dir: DataDir, batch_size: int, is_training: bool = True, do_shuffle: bool = True,
                         schema_dir: str = "", dataset_format: str = "tfrecord",
                         seq_length: int | None = None) -> ds.Dataset:
    """SQuAD batches: with start/end positions for training, with unique_ids for evaluation."""
    columns = column_names("squad training" if is_training else "squad evaluation")
    return create_dataset(data_dir, columns, batch_size, do_shuffle=do_shuffle and is_training,
                          schema_dir=schema_dir, dataset_format=dataset_format, seq_length=seq_length,
                          drop_remainder=is_training)
