"""Loaders: sharding, casting, schema and sequence-length checks, on files written with TensorFlow."""

import json

import numpy as np
import pytest
import tensorflow as tf

from src.columns import column_names
from src.dataset import DatasetError, create_classification_dataset, create_dataset, create_squad_dataset

SEQ = 16
CLASSIFIER_COLUMNS = column_names("classifier")


def write_classifier_tfrecord(path, first_label, rows):
    """Rows with label_ids = first_label, first_label + 1, ... (a unique id per row)."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for label in range(first_label, first_label + rows):
            values = {"input_ids": [label % 50 + 1] * SEQ, "input_mask": [1] * SEQ, "segment_ids": [0] * SEQ,
                      "label_ids": [label]}
            feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=v)) for name, v in values.items()}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(path)


def labels_read(dataset):
    return [int(label) for batch in dataset.create_dict_iterator(output_numpy=True, num_epochs=1)
            for label in batch["label_ids"].ravel()]


@pytest.fixture
def two_files(tmp_path):
    return [write_classifier_tfrecord(tmp_path / "a.tfrecord", 0, 30),
            write_classifier_tfrecord(tmp_path / "b.tfrecord", 30, 30)]


def test_two_shards_read_every_record_exactly_once(two_files):
    seen = []
    for rank in range(2):
        dataset = create_dataset(two_files, CLASSIFIER_COLUMNS, batch_size=1, device_num=2, rank=rank)
        seen += labels_read(dataset)
    assert sorted(seen) == list(range(60))


def test_two_shards_of_one_file_split_rows(tmp_path):
    single = write_classifier_tfrecord(tmp_path / "one.tfrecord", 0, 40)
    per_rank = [labels_read(create_dataset([single], CLASSIFIER_COLUMNS, 1, device_num=2, rank=rank))
                for rank in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == 20
    assert sorted(per_rank[0] + per_rank[1]) == list(range(40))


def test_columns_are_cast_and_batched(two_files, tmp_path):
    dataset = create_classification_dataset(str(tmp_path), batch_size=8, do_shuffle=False, seq_length=SEQ)
    assert dataset.get_col_names() == list(CLASSIFIER_COLUMNS)
    assert [str(t) for t in dataset.output_types()] == ["int32"] * 4
    assert dataset.output_shapes() == [[8, SEQ], [8, SEQ], [8, SEQ], [8, 1]]
    assert dataset.get_dataset_size() == 60 // 8  # drop_remainder
    shuffled = create_classification_dataset(str(tmp_path), batch_size=60, do_shuffle=True)
    assert dataset.get_dataset_size() and sorted(labels_read(shuffled)) == list(range(60))


def test_schema_must_agree_with_the_files(two_files, tmp_path):
    schema = {"datasetType": "TF", "columns": {
        "input_ids": {"type": "int64", "rank": 1, "shape": [SEQ]}, "input_mask": {"type": "int64", "rank": 1, "shape": [SEQ]},
        "segment_ids": {"type": "int64", "rank": 1, "shape": [SEQ]}, "label_ids": {"type": "int64", "rank": 1, "shape": [1]}}}
    good = tmp_path / "schema.json"
    good.write_text(json.dumps(schema))
    assert create_dataset(two_files, CLASSIFIER_COLUMNS, 4, schema_dir=str(good)).get_dataset_size() == 15

    schema["columns"]["input_ids"]["shape"] = [128]
    wrong_shape = tmp_path / "wrong.json"
    wrong_shape.write_text(json.dumps(schema))
    with pytest.raises(DatasetError, match=r"wrong.json: column input_ids has shape \[128\], but .*a.tfrecord holds 16"):
        create_dataset(two_files, CLASSIFIER_COLUMNS, 4, schema_dir=str(wrong_shape))

    schema["columns"]["input_ids"]["shape"] = [SEQ]
    del schema["columns"]["label_ids"]
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps(schema))
    with pytest.raises(DatasetError, match="missing.json: no column label_ids"):
        create_dataset(two_files, CLASSIFIER_COLUMNS, 4, schema_dir=str(missing))


def test_missing_columns_and_wrong_seq_length_are_refused(two_files):
    with pytest.raises(DatasetError, match="a.tfrecord: no columns start_positions, end_positions; this job reads"):
        create_squad_dataset(two_files, batch_size=4)
    with pytest.raises(DatasetError, match="input_ids has length 16, but the model's seq_length is 128"):
        create_classification_dataset(two_files, batch_size=4, seq_length=128)


def test_missing_data_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="data_dir: no data given"):
        create_dataset("", CLASSIFIER_COLUMNS, 4)
    with pytest.raises(DatasetError, match="no tfrecord files"):
        create_dataset(str(tmp_path), CLASSIFIER_COLUMNS, 4)
    with pytest.raises(DatasetError, match="no such file"):
        create_dataset([str(tmp_path / "nope.tfrecord")], CLASSIFIER_COLUMNS, 4)
    garbage = tmp_path / "garbage.tfrecord"
    garbage.write_bytes(b"not a tfrecord at all")
    with pytest.raises(DatasetError, match=r"garbage.tfrecord: record 1 \(byte 0\): its length field fails its checksum"):
        create_dataset([str(garbage)], CLASSIFIER_COLUMNS, 4)


def test_evaluation_keeps_the_last_partial_batch(two_files):
    dataset = create_classification_dataset(two_files, batch_size=7, do_shuffle=False, drop_remainder=False)
    assert sorted(labels_read(dataset)) == list(range(60))
    assert np.ceil(60 / 7) == dataset.get_dataset_size()


def write_schema(path, num_rows):
    columns = {name: {"type": "int64", "rank": 1, "shape": [1 if name == "label_ids" else SEQ]}
               for name in CLASSIFIER_COLUMNS}
    path.write_text(json.dumps({"datasetType": "TF", "numRows": num_rows, "columns": columns}))
    return str(path)


@pytest.mark.parametrize("device_num", [1, 2])
def test_schema_num_rows_limits_the_rows_read(two_files, tmp_path, capsys, device_num):
    schema = write_schema(tmp_path / "schema.json", 25)
    read = [labels_read(create_dataset(two_files, CLASSIFIER_COLUMNS, 1, device_num, rank, schema_dir=schema))
            for rank in range(device_num)]
    # numRows counts each reader's rows, as in MindSpore's readers (and so the model zoo).
    assert [len(labels) for labels in read] == [25] * device_num
    assert len(set().union(*read)) == 25 * device_num and set().union(*read) <= set(range(60))
    per_reader = " per reader" if device_num > 1 else ""
    assert capsys.readouterr().out == f"{schema}: numRows 25: at most 25 rows are read{per_reader}\n" * device_num


def test_schema_num_rows_zero_or_above_the_data_reads_everything(two_files, tmp_path, capsys):
    for num_rows in (0, 1000):
        schema = write_schema(tmp_path / f"schema{num_rows}.json", num_rows)
        assert sorted(labels_read(create_dataset(two_files, CLASSIFIER_COLUMNS, 7, schema_dir=schema,
                                                 drop_remainder=False))) == list(range(60))
    assert capsys.readouterr().out.count("numRows") == 1  # 1000 is announced, 0 (no limit) is not


@pytest.mark.parametrize("num_rows", [-1, 2.5, "10"])
def test_bad_num_rows_are_refused(two_files, tmp_path, num_rows):
    schema = write_schema(tmp_path / "schema.json", num_rows)
    with pytest.raises(DatasetError, match=rf"schema.json: numRows must be a whole number of rows >= 0 \(0: all\), "
                                           rf"got {num_rows!r}$"):
        create_dataset(two_files, CLASSIFIER_COLUMNS, 4, schema_dir=schema)
