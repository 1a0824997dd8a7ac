"""Writing rows of fixed-length integer/float columns as TFRecord or MindRecord files.

A row is {column name: 1-D NumPy array}; int64 arrays become Int64List
features, float32 arrays FloatList features. Every data-making command
(pretraining, fine-tuning) writes through these functions, and
`schema_json` describes the result in the model zoo's schema format, which
`src.dataset` checks before reading. A writer that fails (e.g. a full disk)
raises OSError with the writer's one-line reason, whatever library raised it.
"""

import os
from collections.abc import Iterable

import numpy as np

# MindRecord pads each file to whole pages (32 MiB by default); small pages keep
# small files small. A row (a few KiB) must fit in one page.
MINDRECORD_PAGE_SIZE = 1 << 20


def write_tfrecord(path: str, rows: Iterable[dict[str, np.ndarray]]) -> None:
    """Write `rows` (an iterable of {column: array}) to the TFRecord file `path`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # (and its oneDNN notice; no TF maths runs here)
    import tensorflow as tf  # imported only where records are written: it is slow to import

    def feature(values):
        if values.dtype == np.float32:
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    try:
        with tf.io.TFRecordWriter(path) as writer:
            for row in rows:
                example = tf.train.Example(features=tf.train.Features(
                    feature={name: feature(values) for name, values in row.items()}))
                writer.write(example.SerializeToString())
    except tf.errors.OpError as error:
        # TensorFlow's message is "<path>; <reason>", e.g. "...; No space left on device".
        raise OSError(error.message.rsplit("; ", 1)[-1]) from None


def write_mindrecord(path: str, rows: list[dict[str, np.ndarray]], column_types: dict[str, tuple[str, int]],
                     schema_name: str = "bert") -> None:
    """Write `rows` to the MindRecord file `path` (+ `path`.db).

    Args:
        column_types (dict): column -> (dtype name, length), as for `schema_json`.
    """
    from mindspore.mindrecord import FileWriter

    try:
        writer = FileWriter(path, shard_num=1, overwrite=True)
        writer.set_page_size(MINDRECORD_PAGE_SIZE)
        writer.add_schema({name: {"type": dtype, "shape": [-1]} for name, (dtype, _) in column_types.items()},
                          schema_name)
        if rows:
            writer.write_raw_data(rows)
        writer.commit()
    except RuntimeError as error:
        raise OSError(mindspore_reason(str(error))) from None


def mindspore_reason(message: str) -> str:
    """The "[ERROR] ..." line of a MindSpore data error (the rest is framing and a C++ stack)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    reasons = [line.removeprefix("[ERROR]").strip() for line in lines if line.startswith("[ERROR]")]
    return (reasons or lines or ["MindRecord writer failed"])[0]


def schema_json(column_types: dict[str, tuple[str, int]], num_rows: int) -> dict:
    """The model zoo's TFRecord schema (mindspore.dataset.Schema format) for `column_types`."""
    return {"datasetType": "TF", "numRows": num_rows,
            "columns": {name: {"type": dtype, "rank": 1, "shape": [length]}
                        for name, (dtype, length) in column_types.items()}}
