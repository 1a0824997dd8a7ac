"""src.create_finetune_data: rows checked with TensorFlow's own TFRecord parser, label maps, splits, bad input."""

import json
import os

import numpy as np
import pytest

from src.create_finetune_data import main
from src.errors import DataError, UserError
from src.featurization import read_cluener_rows
from src.ner_tagging import label_list, tags_to_spans
from src.tokenization import FullTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "data", "finetune")
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")
CHINESE = os.path.join(REPO, "data", "vocab", "bert-base-chinese-vocab.txt")
UNCASED = os.path.join(REPO, "data", "vocab", "bert-base-uncased-vocab.txt")
SEQ = 32


def parse_tfrecord(path):
    """Every row of a TFRecord file as {column: int64 array}, parsed by TensorFlow itself."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    rows = []
    for record in tf.data.TFRecordDataset(path):
        example = tf.train.Example.FromString(record.numpy())
        rows.append({name: np.array(feature.int64_list.value) for name, feature in example.features.feature.items()})
    return rows


def convert(tmp_path, *flags):
    """The converter's main without the exit-on-error wrapper, so tests see the exceptions."""
    return main.__wrapped__([f"--output_dir={tmp_path}", *flags])


def read_json_lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_tnews_rows_are_cls_tokens_sep_with_label_file_ids(tmp_path):
    source = os.path.join(FIXTURES, "tnews.json")
    stats = convert(tmp_path, "--task=tnews", f"--input_file={source}", f"--vocab_file={CHINESE}",
                    f"--label_file={os.path.join(FIXTURES, 'tnews_labels.json')}", f"--max_seq_length={SEQ}",
                    "--dev_fraction=0.25")
    label_order = [record["label"] for record in read_json_lines(os.path.join(FIXTURES, "tnews_labels.json"))]
    with open(tmp_path / "label2id.json", encoding="utf-8") as f:
        assert json.load(f) == {label: index for index, label in enumerate(label_order)}
    tokenizer = FullTokenizer(CHINESE)
    rows = {split: parse_tfrecord(str(tmp_path / f"{split}.tfrecord")) for split in ("train", "dev")}
    assert (len(rows["train"]), len(rows["dev"])) == (72, 24) == (stats["splits"]["train"]["rows"],
                                                                   stats["splits"]["dev"]["rows"])
    for split in ("train", "dev"):
        records = read_json_lines(tmp_path / f"{split}.json")   # the split's own records, same order
        assert len(records) == len(rows[split])
        for record, row in zip(records, rows[split]):
            tokens = ["[CLS]"] + tokenizer.tokenize(record["sentence"])[:SEQ - 2] + ["[SEP]"]
            expected = tokenizer.convert_tokens_to_ids(tokens)
            assert row["input_ids"].tolist() == expected + [0] * (SEQ - len(expected))
            assert row["input_mask"].tolist() == [1] * len(expected) + [0] * (SEQ - len(expected))
            assert row["segment_ids"].tolist() == [0] * SEQ
            assert row["label_ids"].tolist() == [label_order.index(record["label"])]
    all_records = read_json_lines(os.path.join(FIXTURES, "tnews.json"))
    split_records = read_json_lines(tmp_path / "train.json") + read_json_lines(tmp_path / "dev.json")
    assert sorted(map(json.dumps, split_records)) == sorted(map(json.dumps, all_records))
    with open(tmp_path / "train_schema.json", encoding="utf-8") as f:
        schema = json.load(f)
    assert schema["numRows"] == 72 and schema["columns"]["label_ids"]["shape"] == [1]


def test_cola_train_and_test_formats(tmp_path):
    source = os.path.join(FIXTURES, "cola.tsv")
    convert(tmp_path, "--task=cola", f"--input_file={source}", f"--vocab_file={UNCASED}", f"--max_seq_length={SEQ}")
    rows = parse_tfrecord(str(tmp_path / "train.tfrecord"))
    with open(source, encoding="utf-8") as f:
        labels = [int(line.split("\t")[1]) for line in f]
    assert [row["label_ids"][0] for row in rows] == labels
    test_file = tmp_path / "test.tsv"
    test_file.write_text("index\tsentence\n0\tThe book was read.\n1\tBook the read was.\n", encoding="utf-8")
    convert(tmp_path / "test", "--task=cola", f"--input_file={test_file}", f"--vocab_file={UNCASED}",
            f"--max_seq_length={SEQ}", "--split=dev")
    test_rows = parse_tfrecord(str(tmp_path / "test" / "dev.tfrecord"))
    tokenizer = FullTokenizer(UNCASED)
    assert len(test_rows) == 2
    assert test_rows[0]["input_ids"][:7].tolist() == tokenizer.convert_tokens_to_ids(
        ["[CLS]", "the", "book", "was", "read", ".", "[SEP]"])


def test_cluener_tags_round_trip_to_the_spans_of_the_shared_train_file():
    """Spans -> per-character tags (the converter's rows) -> spans equals the input, for every record,
    except the one nested entity the file holds (kept: the outer one)."""
    path = os.path.join(SHARED_DATA, "cluener", "train.json")
    with open(os.path.join(SHARED_DATA, "cluener", "labels.json"), encoding="utf-8") as f:
        types = json.load(f)
    for scheme in ("BIO", "BMES"):
        tags = label_list(types, scheme)
        id_to_tag = dict(enumerate(tags))
        examples, rows = read_cluener_rows(path, CHINESE, {tag: i for i, tag in enumerate(tags)}, 128, scheme)
        records = read_json_lines(path)
        assert len(examples) == len(rows) == len(records) == 10748
        differing = []
        for number, (record, row) in enumerate(zip(records, rows), 1):
            text = record["text"]
            assert row["input_mask"].sum() == len(text) + 2  # one token per character (no text exceeds 126)
            decoded = tags_to_spans([id_to_tag[i] for i in row["label_ids"][1:len(text) + 1]], scheme)
            given = sorted((kind, start, end) for kind, entities in record["label"].items()
                           for positions in entities.values() for start, end in positions)
            if sorted(decoded) != given:
                differing.append(number)
        assert differing == [1507]  # a company nested in a book title: the outer entity is kept


def test_cluener_characters_map_one_to_one_to_tokens(tmp_path):
    source = tmp_path / "ner.json"
    source.write_text(json.dumps({"text": "Hi 北京ABC", "label": {"address": {"北京": [[3, 4]]}}},
                                 ensure_ascii=False) + "\n", encoding="utf-8")
    convert(tmp_path / "out", "--task=cluener", f"--input_file={source}", f"--vocab_file={CHINESE}",
            f"--max_seq_length={SEQ}", "--tag_scheme=BIOES")
    row = parse_tfrecord(str(tmp_path / "out" / "train.tfrecord"))[0]
    tokenizer = FullTokenizer(CHINESE)
    expected = ["[CLS]", "h", "i", "[UNK]", "北", "京", "a", "b", "c", "[SEP]"]
    assert row["input_ids"][:10].tolist() == tokenizer.convert_tokens_to_ids(expected)
    with open(tmp_path / "out" / "label2id.json", encoding="utf-8") as f:
        label2id = json.load(f)
    assert list(label2id) == ["O", "B-address", "I-address", "E-address", "S-address"]
    assert row["label_ids"][:10].tolist() == [0, 0, 0, 0, 1, 3, 0, 0, 0, 0]


def test_squad_split_by_article_train_and_eval_rows(tmp_path):
    source = os.path.join(FIXTURES, "squad.json")
    stats = convert(tmp_path, "--task=squad", f"--input_file={source}", f"--vocab_file={UNCASED}",
                    "--max_seq_length=128", "--doc_stride=64", "--max_query_length=32", "--dev_fraction=0.5")
    with open(source, encoding="utf-8") as f:
        titles = [article["title"] for article in json.load(f)["data"]]
    split_titles = []
    for split in ("train", "dev"):
        with open(tmp_path / f"{split}.json", encoding="utf-8") as f:
            split_titles += [article["title"] for article in json.load(f)["data"]]
    assert sorted(split_titles) == sorted(titles)
    train_rows, dev_rows = parse_tfrecord(str(tmp_path / "train.tfrecord")), parse_tfrecord(str(tmp_path / "dev.tfrecord"))
    assert set(train_rows[0]) == {"input_ids", "input_mask", "segment_ids", "start_positions", "end_positions"}
    assert set(dev_rows[0]) == {"input_ids", "input_mask", "segment_ids", "unique_ids"}
    assert len(dev_rows) == stats["splits"]["dev"]["rows"]
    assert [row["unique_ids"][0] for row in dev_rows] == list(range(1000000000, 1000000000 + len(dev_rows)))
    assert all(0 <= row["start_positions"][0] <= row["end_positions"][0] < 128 for row in train_rows)


@pytest.mark.parametrize("content, message", [
    ('{"sentence": "a", "label": "100"}\n{"sentence": "b", "label": "999"}\n', "x.json:2: label '999' is not in"),
    ('{"sentence": "a", "label": "100"}\nnot json\n', "x.json:2: not a JSON object"),
    ('{"label": "100"}\n', 'x.json:1: not a JSON object with a "sentence" string'),
])
def test_tnews_bad_records_name_file_and_line(tmp_path, content, message):
    source = tmp_path / "x.json"
    source.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        convert(tmp_path / "out", "--task=tnews", f"--input_file={source}", f"--vocab_file={CHINESE}",
                f"--label_file={os.path.join(FIXTURES, 'tnews_labels.json')}")


def test_skip_counts_bad_records_instead_of_failing(tmp_path):
    source = tmp_path / "x.tsv"
    source.write_text("gj04\t1\t\tGood sentence.\nbroken line\ngj04\t0\t*\tSentence bad.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x.tsv:2: expected 4 tab-separated fields"):
        convert(tmp_path / "a", "--task=cola", f"--input_file={source}", f"--vocab_file={UNCASED}")
    stats = convert(tmp_path / "b", "--task=cola", f"--input_file={source}", f"--vocab_file={UNCASED}",
                    "--on_error=skip")
    assert stats["skipped"] == 1 and stats["splits"]["train"]["rows"] == 2


def test_cluener_span_that_does_not_hold_its_entity_fails(tmp_path):
    source = tmp_path / "x.json"
    source.write_text(json.dumps({"text": "我在北京", "label": {"address": {"北京": [[1, 2]]}}},
                                 ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x.json:1: address span \[1, 2\] does not hold '北京'"):
        convert(tmp_path / "out", "--task=cluener", f"--input_file={source}", f"--vocab_file={CHINESE}")


def test_squad_answer_not_in_context_fails_with_its_id(tmp_path):
    source = tmp_path / "squad.json"
    source.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "Paris is big.", "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "London", "answer_start": 0}]}]}]}]}),
        encoding="utf-8")
    with pytest.raises(UserError, match="q1"):
        convert(tmp_path / "out", "--task=squad", f"--input_file={source}", f"--vocab_file={UNCASED}")


def test_command_line_errors_exit_2_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([f"--output_dir={tmp_path}", "--task=tnews", f"--input_file={tmp_path / 'none.json'}",
              f"--vocab_file={CHINESE}"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: --input_file {tmp_path / 'none.json'}: no such file"]
