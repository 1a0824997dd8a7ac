"""The record columns of every task: one table for the data writers, the loaders, predict.py and bench/.

A row is a fixed-length 1-D array per column. The table gives each task's
columns in the order its model takes them (the loaders yield them in this
order, and the train cells pass them on as `*inputs`), with their type on disk
and their length: the sequence length, the masked positions per sequence
(pretraining data: `max_predictions_per_seq`), or one value.

    pretraining       input_ids, input_mask, segment_ids [S]; next_sentence_labels [1];
                      masked_lm_positions, masked_lm_ids, masked_lm_weights (float32) [P]
    classifier        input_ids, input_mask, segment_ids [S]; label_ids [1]
    ner               input_ids, input_mask, segment_ids [S]; label_ids [S] (one tag per token)
    squad training    input_ids, input_mask, segment_ids [S]; start_positions, end_positions [1]
    squad evaluation  input_ids, input_mask, segment_ids [S]; unique_ids [1]

Integers are int64 on disk (TFRecord's only integer type) and int32 in the
model. No MindSpore import here: the data converters read this table too.
"""

import dataclasses

SEQUENCE = "seq_length"
PREDICTIONS = "max_predictions_per_seq"


@dataclasses.dataclass(frozen=True)
class Column:
    """One record column: its name, its type on disk, and its length (SEQUENCE, PREDICTIONS or a number)."""
    name: str
    dtype: str
    length: str | int
    indexes_sequence: bool = False   # its values are positions in the sequence (a batch is never cut below them)


TOKEN_COLUMNS = (Column("input_ids", "int64", SEQUENCE), Column("input_mask", "int64", SEQUENCE),
                 Column("segment_ids", "int64", SEQUENCE))
TASK_COLUMNS = {
    "pretraining": TOKEN_COLUMNS + (
        Column("next_sentence_labels", "int64", 1),
        Column("masked_lm_positions", "int64", PREDICTIONS, indexes_sequence=True),
        Column("masked_lm_ids", "int64", PREDICTIONS), Column("masked_lm_weights", "float32", PREDICTIONS)),
    "classifier": TOKEN_COLUMNS + (Column("label_ids", "int64", 1),),
    "ner": TOKEN_COLUMNS + (Column("label_ids", "int64", SEQUENCE),),
    "squad training": TOKEN_COLUMNS + (Column("start_positions", "int64", 1, indexes_sequence=True),
                                       Column("end_positions", "int64", 1, indexes_sequence=True)),
    "squad evaluation": TOKEN_COLUMNS + (Column("unique_ids", "int64", 1),),
}
# What every model takes first (the task's other columns are its labels, or ids of its rows).
MODEL_INPUTS = tuple(column.name for column in TOKEN_COLUMNS)
# Columns whose values index the sequence, whatever the task.
POSITION_COLUMNS = tuple(dict.fromkeys(column.name for columns in TASK_COLUMNS.values() for column in columns
                                       if column.indexes_sequence))


def column_names(task: str) -> tuple[str, ...]:
    """The names of `task`'s columns ("pretraining", "classifier", "ner", "squad training" or
    "squad evaluation"), in the order its model takes them."""
    return tuple(column.name for column in TASK_COLUMNS[task])


def column_types(task: str, seq_length: int | None,
                 max_predictions_per_seq: int | None = None) -> dict[str, tuple[str, int | None]]:
    """{name: (dtype, length)} of `task`'s columns, in order, as `src.records` writes them; a length that
    is not given (None: e.g. the masked positions when checking data of any masking) stays None."""
    lengths = {SEQUENCE: seq_length, PREDICTIONS: max_predictions_per_seq}
    return {column.name: (column.dtype, lengths.get(column.length, column.length)) for column in TASK_COLUMNS[task]}
