"""Fault injection (issue 17, cases 6, 14, 15, 16): what the loaders read. Damaged, truncated and mismatched
data files on tiny models (vocabulary 50, sequence 8) and tiny records written with TensorFlow. Each refusal
is one line naming the file (and record or column), exit status 2, no traceback, before any step, the
previous outputs byte-identical and nothing new left (no temporary files, no MindSpore `rank_0/`).
The checksum code is checked against a bitwise CRC32C, the standard check value and TensorFlow's writer."""

import os
import struct

import mindspore.dataset as ds
import numpy as np
import pytest

import pretrain_eval
import run_classifier
import run_pretrain
import run_squad
from src.columns import column_names
from src.dataset import task_columns
from src import record_check
from src.record_check import (ColumnSummary, DatasetError, check_columns, masked_crc32c, summarize,
                              verify_tfrecord)
from src.records import write_mindrecord, write_tfrecord
from tests.helpers import tiny_config

SEQ, VOCAB, PREDICTIONS, CLASSES = 8, 50, 2, 3
TOKEN = 37  # every input id of the records: one varint byte (0x25), easy to find and flip
TINY_MODEL = ["--bert_network=tiny", f"--model.vocab_size={VOCAB}", f"--model.seq_length={SEQ}",
              "--model.max_position_embeddings=16", "--model.type_vocab_size=2"]
PREVIOUS = {"eval_results.json": b'{"accuracy": 0.5}\n', "metrics.jsonl": b'{"step": 1, "loss": 2.0}\n'}


# ---------------------------------------------------------------- records

def token_row():
    return {"input_ids": np.full(SEQ, TOKEN, np.int64), "input_mask": np.ones(SEQ, np.int64),
            "segment_ids": np.zeros(SEQ, np.int64)}


def classifier_rows(count):
    return [{**token_row(), "label_ids": np.array([i % CLASSES], np.int64)} for i in range(count)]


def ner_rows(count):
    return [{**token_row(), "label_ids": np.full(SEQ, i % CLASSES, np.int64)} for i in range(count)]


def pretraining_rows(count):
    return [{**token_row(), "next_sentence_labels": np.array([i % 2], np.int64),
             "masked_lm_positions": np.array([1, 2], np.int64), "masked_lm_ids": np.array([5, 6], np.int64),
             "masked_lm_weights": np.ones(PREDICTIONS, np.float32)} for i in range(count)]


def write(path, rows):
    write_tfrecord(str(path), rows)
    return path


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    return {"classifier": write(root / "classifier.tfrecord", classifier_rows(12)),
            "ner": write(root / "ner.tfrecord", ner_rows(12)),
            "pretraining": write(root / "pretraining.tfrecord", pretraining_rows(12)),
            "first_4": write(root / "first_4.tfrecord", classifier_rows(4)), "root": root}


def damaged_copy(source, destination, change):
    """`source`'s bytes changed by `change(bytearray)`, written to `destination`."""
    data = bytearray(source.read_bytes())
    change(data)
    destination.write_bytes(bytes(data))
    return destination


def flip_a_token(data, record_offset):
    """Turn the first token (id 37) of the record at `record_offset` into id 38: still a valid Example."""
    position = data.index(bytes([TOKEN]) * SEQ, record_offset)
    data[position] = TOKEN + 1


# ---------------------------------------------------------------- running the jobs

def refused(main, argv, capsys):
    """Run an entry point that must refuse its input: exit 2, no traceback; returns its one stderr line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def snapshot(directory):
    """{relative path: bytes} of every file under `directory`."""
    return {os.path.relpath(os.path.join(root, name), directory): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(directory) for name in names}


@pytest.fixture
def previous_run(tmp_path, monkeypatch):
    """An output directory holding a previous run's results; the working directory is a fresh one."""
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    for name, content in PREVIOUS.items():
        (output_dir / name).write_bytes(content)
    monkeypatch.chdir(tmp_path / "out")
    return output_dir


def assert_untouched(output_dir):
    """The previous results byte-identical, nothing new (no temporary file, no MindSpore rank_0/)."""
    assert snapshot(output_dir) == PREVIOUS


def classifier_argv(output_dir, train, *extra):
    return [*TINY_MODEL, "--do_train=true", f"--num_class={CLASSES}", f"--train_data_file_path={train}",
            f"--output_dir={output_dir}", "--overwrite=true", "--train_batch_size=2", *extra]


def pretrain_argv(output_dir, data, *extra):
    return [*TINY_MODEL, f"--data_dir={data}", f"--output_dir={output_dir}", "--overwrite=true", "--batch_size=2",
            "--do_shuffle=false", "--train_steps=2", "--enable_save_ckpt=false", *extra]


# ---------------------------------------------------------------- case 6: checksums

def test_a_flipped_token_byte_is_silent_to_mindspore_but_refused_in_training_and_evaluation(records, previous_run,
                                                                                           tmp_path, capsys):
    record_3 = records["first_4"].stat().st_size - len(write(tmp_path / "one.tfrecord", classifier_rows(1))
                                                       .read_bytes())
    damaged = damaged_copy(records["first_4"], tmp_path / "damaged.tfrecord", lambda data: flip_a_token(data, record_3))
    # MindSpore's reader verifies no checksum: the damaged token (38) is read as if it were data.
    rows = list(ds.TFRecordDataset([str(damaged)], shuffle=False).create_dict_iterator(output_numpy=True))
    assert rows[3]["input_ids"][0] == TOKEN + 1
    # Record 4 (from 1) starts where three records end.
    three_records = write(tmp_path / "three.tfrecord", classifier_rows(3)).stat().st_size
    expected = f"{damaged}: record 4 (byte {three_records}): its data fails its checksum"
    assert expected in refused(run_classifier.main, classifier_argv(previous_run, damaged), capsys)
    assert expected in refused(run_classifier.main, classifier_argv(
        previous_run, records["classifier"], "--do_eval=true", f"--eval_data_file_path={damaged}"), capsys)
    assert_untouched(previous_run)


# ---------------------------------------------------------------- case 14: truncated and bit-flipped shards

def test_a_truncated_shard_is_named_with_its_record(records, previous_run, tmp_path, capsys):
    three_records = write(tmp_path / "three.tfrecord", pretraining_rows(3)).stat().st_size
    shards = tmp_path / "shards"
    shards.mkdir()
    write(shards / "part-0.tfrecord", pretraining_rows(12))
    damaged_copy(records["pretraining"], shards / "part-1.tfrecord", lambda data: data.__delitem__(
        slice(three_records + 20, None)))
    line = refused(run_pretrain.main, pretrain_argv(previous_run, shards), capsys)
    assert f"{shards / 'part-1.tfrecord'}: truncated: record 4 (byte {three_records}) needs" in line
    assert_untouched(previous_run)


def test_a_flipped_length_field_is_named_not_read_as_a_huge_record(records, previous_run, tmp_path, capsys):
    one_record = write(tmp_path / "one.tfrecord", pretraining_rows(1)).stat().st_size
    damaged = damaged_copy(records["pretraining"], tmp_path / "flipped.tfrecord",
                           lambda data: data.__setitem__(one_record + 7, 0x80))   # record 2's length: + 2^63
    line = refused(run_pretrain.main, pretrain_argv(previous_run, damaged), capsys)
    assert f"{damaged}: record 2 (byte {one_record}): its length field fails its checksum" in line
    assert_untouched(previous_run)


# ---------------------------------------------------------------- case 15: token ids past the first batches

def test_a_token_id_beyond_the_vocabulary_in_the_last_batch_stops_before_step_1(previous_run, tmp_path, capsys):
    rows = pretraining_rows(45)     # batch 23 of 2 rows: the old check read 20 batches
    rows[44]["input_ids"][3] = VOCAB
    data = write(tmp_path / "late.tfrecord", rows)
    line = refused(run_pretrain.main, pretrain_argv(previous_run, data), capsys)
    assert line == (f"error: {data}: column input_ids holds {VOCAB}, which does not fit model.vocab_size {VOCAB} "
                    f"(expected 0..{VOCAB - 1})")
    assert_untouched(previous_run)


def test_pretrain_eval_refuses_a_token_id_beyond_the_vocabulary_before_reading_the_checkpoint(previous_run, tmp_path,
                                                                                             capsys):
    rows = pretraining_rows(45)
    rows[44]["masked_lm_ids"][1] = VOCAB + 7
    data = write(tmp_path / "late.tfrecord", rows)
    line = refused(pretrain_eval.main, [*TINY_MODEL, f"--data_dir={data}", f"--output_dir={previous_run}",
                                        "--overwrite=true", "--load_checkpoint_path=never_read.ckpt"], capsys)
    assert line.startswith(f"error: {data}: column masked_lm_ids holds {VOCAB + 7}, which does not fit model.vocab_size")
    assert_untouched(previous_run)


def test_non_finite_masked_lm_weights_are_refused(previous_run, tmp_path, capsys):
    rows = pretraining_rows(6)
    rows[5]["masked_lm_weights"][1] = np.nan
    data = write(tmp_path / "nan.tfrecord", rows)
    line = refused(run_pretrain.main, pretrain_argv(previous_run, data), capsys)
    assert line == f"error: {data}: column masked_lm_weights holds NaN or infinite values"
    assert_untouched(previous_run)


# ---------------------------------------------------------------- case 16: another task's data

def test_ner_data_given_to_the_classifier_is_refused_naming_the_column(records, previous_run, capsys):
    line = refused(run_classifier.main, classifier_argv(previous_run, records["ner"]), capsys)
    assert line.startswith(f"error: {records['ner']}: column label_ids has {SEQ} values per row, the classifier "
                           "task reads 1")
    assert_untouched(previous_run)


def test_classifier_data_given_to_squad_is_refused_naming_the_columns(records, previous_run, capsys):
    argv = [*TINY_MODEL, "--do_train=true", f"--train_data_file_path={records['classifier']}",
            f"--output_dir={previous_run}", "--overwrite=true"]
    line = refused(run_squad.main, argv, capsys)
    assert line.startswith(f"error: {records['classifier']}: no columns start_positions, end_positions; the squad "
                           "training task reads input_ids")
    assert_untouched(previous_run)


def test_labels_beyond_num_class_in_the_evaluation_data_are_refused(records, previous_run, capsys):
    line = refused(run_classifier.main, classifier_argv(previous_run, records["classifier"], "--do_eval=true",
                                                        f"--eval_data_file_path={records['classifier']}",
                                                        "--num_class=2"), capsys)
    assert line == (f"error: {records['classifier']}: column label_ids holds 2, which does not fit --num_class=2 "
                    "(expected 0..1)")


# ---------------------------------------------------------------- the checks themselves

def bitwise_crc32c(data):
    """CRC32C bit by bit (no table): the reference for the NumPy version."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tfrecord_mask(crc):
    """TFRecord's masking of a CRC (tensorflow/core/lib/hash/crc32c.h): rotate right by 15, add a constant."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_the_checksums_match_a_bitwise_crc32c_for_many_lengths_at_once():
    rng = np.random.RandomState(0)
    lengths = np.array([0, 1, 2, 7, 8, 9, 31, 200, 1000] + list(rng.randint(0, 300, 40)))
    data = rng.randint(0, 256, int(lengths.sum()) + 5).astype(np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) + 5
    expected = [tfrecord_mask(bitwise_crc32c(bytes(data[s:s + n]))) for s, n in zip(starts, lengths)]
    assert masked_crc32c(data, starts, lengths).tolist() == expected
    check = np.frombuffer(b"123456789", np.uint8)
    assert masked_crc32c(check, [0], [9])[0] == tfrecord_mask(0xE3069283)  # the standard CRC-32C check value


def test_files_written_by_tensorflow_pass_and_count_their_records(records):
    assert verify_tfrecord(str(records["classifier"])) == 12
    assert verify_tfrecord(str(records["pretraining"])) == 12
    header = records["classifier"].read_bytes()[:12]
    assert masked_crc32c(np.frombuffer(header, np.uint8), [0], [8])[0] == struct.unpack("<I", header[8:])[0]


def test_summaries_hold_every_rows_lengths_and_ranges(records):
    rows, columns = summarize([str(records["pretraining"])], "tfrecord")[str(records["pretraining"])]
    assert rows == 12 and sorted(columns) == sorted(column_names("pretraining"))
    assert columns["input_ids"] == ColumnSummary(SEQ, False, TOKEN, TOKEN)
    assert columns["next_sentence_labels"] == ColumnSummary(1, False, 0, 1)
    assert columns["masked_lm_weights"] == ColumnSummary(PREDICTIONS, True, 1.0, 1.0)


def test_column_lengths_must_agree_across_files_where_the_task_leaves_them_open():
    config = tiny_config(vocab_size=VOCAB, seq_length=SEQ)
    columns = {name: ColumnSummary(SEQ, False, 0, 1) for name in ("input_ids", "input_mask", "segment_ids")}
    columns.update(next_sentence_labels=ColumnSummary(1, False, 0, 1),
                   masked_lm_positions=ColumnSummary(2, False, 0, 7), masked_lm_ids=ColumnSummary(2, False, 0, 49),
                   masked_lm_weights=ColumnSummary(2, True, 0.0, 1.0))
    other = {**columns, "masked_lm_ids": ColumnSummary(3, False, 0, 49)}
    expected = task_columns("pretraining", config)
    check_columns({"a": (4, columns), "b": (4, columns)}, expected)
    with pytest.raises(DatasetError, match="^b: column masked_lm_ids has 3 values per row, this job reads 2"):
        check_columns({"a": (4, columns), "b": (4, other)}, expected)
    with pytest.raises(DatasetError, match=r"^a: column masked_lm_positions holds 8, which does not fit "
                                           r"model.seq_length 8 \(expected 0..7\)$"):
        check_columns({"a": (4, {**columns, "masked_lm_positions": ColumnSummary(2, False, 0, 8)})}, expected)
    with pytest.raises(DatasetError, match=r"^a: column segment_ids holds -1, which does not fit"):
        check_columns({"a": (4, {**columns, "segment_ids": ColumnSummary(SEQ, False, -1, 0)})}, expected)


def test_a_damaged_mindrecord_file_is_one_line_even_where_mindspore_crashes(tmp_path):
    """MindRecord has no checksums; a damaged length in a data page kills MindSpore's reader (a segmentation
    fault), which the child process turns into one line; a truncated file is MindSpore's error, in one line."""
    columns = {"input_ids": ("int64", SEQ), "input_mask": ("int64", SEQ), "segment_ids": ("int64", SEQ),
               "label_ids": ("int64", 1)}
    good = tmp_path / "good" / "data.mindrecord"
    good.parent.mkdir()
    write_mindrecord(str(good), classifier_rows(20), columns)
    rows, summary = summarize([str(good)], "mindrecord")[str(good)]
    assert rows == 20 and summary["label_ids"] == ColumnSummary(1, False, 0, CLASSES - 1)
    data = good.read_bytes()
    gap = data.index(bytes(4096))                    # the header's zero padding, then the first data page
    page = len(data) - len(data[gap:].lstrip(b"\0"))
    damages = {"crashed on it": lambda d: d.__setitem__(page + 12, 0xFF),    # high byte of the first blob length
               "cannot read its rows": lambda d: d.__delitem__(slice(page + 100, None))}
    for expected, change in damages.items():
        damaged = tmp_path / expected.replace(" ", "_") / "data.mindrecord"
        damaged.parent.mkdir()
        damaged_copy(good, damaged, change)
        (damaged.parent / "data.mindrecord.db").write_bytes((good.parent / "data.mindrecord.db").read_bytes())
        with pytest.raises(DatasetError, match=f"^{damaged}: .*{expected}") as error:
            summarize([str(damaged)], "mindrecord")
        assert "\n" not in str(error.value)


def test_summaries_of_large_data_are_kept_across_runs_until_the_file_changes(records, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(record_check, "LARGE_DATA_BYTES", 0)   # every file counts as large here
    path = str(tmp_path / "data.tfrecord")
    write(path, pretraining_rows(5))
    first = summarize([path], "tfrecord")
    assert capsys.readouterr().out.startswith(f"checked data file 1 of 1, {path}: 5 rows")
    reads = []
    monkeypatch.setattr(record_check, "_SUMMARIES", {})     # a new process: only the cache file remains
    monkeypatch.setattr(record_check, "read_file", lambda *args: reads.append(args) or (0, {}))
    assert summarize([path], "tfrecord") == first and not reads
    os.utime(path, ns=(1, 1))                                # changed: read again
    summarize([path], "tfrecord")
    assert reads == [(path, "tfrecord")]
