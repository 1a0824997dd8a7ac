"""The pretraining-data generator, checked through TensorFlow's own TFRecord parser."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from src import create_pretraining_data as generator
from src.create_pretraining_data import main as generate_main, word_starts
from src.dataset import create_bert_dataset
from src.tokenization import FullTokenizer

UNCASED = "data/vocab/bert-base-uncased-vocab.txt"
CHINESE = "data/vocab/bert-base-chinese-vocab.txt"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ, PREDICTIONS = 64, 10
CLS, SEP, MASK = 101, 102, 103
WORDS = ("the quick brown fox jumps over lazy dogs while tokenization of unaffable "
         "strawberries remains surprisingly difficult for researchers studying language").split()


def write_corpus(path, documents=40, sentences=25, seed=0):
    """Synthetic English: long documents (so that next-sentence pairs are rarely forced random)."""
    rng = np.random.RandomState(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(documents):
            for _ in range(sentences):
                f.write(" ".join(rng.choice(WORDS, rng.randint(4, 12))) + ".\n")
            f.write("\n")
    return str(path)


def generate(tmp_path, name, *extra, corpus=None):
    output = tmp_path / name
    corpus = corpus or write_corpus(tmp_path / "corpus.txt")
    generate_main([f"--input_file={corpus}", f"--output_dir={output}", f"--vocab_file={UNCASED}",
                   f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}", "--dupe_factor=5",
                   "--num_output_shards=2", *extra])
    return output


def parse_with_tensorflow(output_dir):
    """Every record of every shard, parsed by tf.io.parse_single_example with the schema's shapes."""
    schema = json.loads((output_dir / "schema.json").read_text())["columns"]
    spec = {name: tf.io.FixedLenFeature(column["shape"], tf.float32 if column["type"] == "float32" else tf.int64)
            for name, column in schema.items()}
    rows = []
    for path in sorted(glob.glob(str(output_dir / "*.tfrecord"))):
        for record in tf.data.TFRecordDataset(path):
            rows.append({k: v.numpy() for k, v in tf.io.parse_single_example(record, spec).items()})
    return schema, rows


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("english")
    # short_seq_prob 0: with Google's recipe a short target length makes one-sentence
    # chunks, whose segment B is always random, pushing the NSP balance above 50%.
    output = generate(tmp_path, "out", "--short_seq_prob=0")
    schema, rows = parse_with_tensorflow(output)
    return tmp_path, output, schema, rows


def test_schema_lists_the_seven_columns_with_their_shapes(english):
    _, output, schema, rows = english
    assert schema == {"input_ids": {"type": "int64", "rank": 1, "shape": [SEQ]},
                      "input_mask": {"type": "int64", "rank": 1, "shape": [SEQ]},
                      "segment_ids": {"type": "int64", "rank": 1, "shape": [SEQ]},
                      "next_sentence_labels": {"type": "int64", "rank": 1, "shape": [1]},
                      "masked_lm_positions": {"type": "int64", "rank": 1, "shape": [PREDICTIONS]},
                      "masked_lm_ids": {"type": "int64", "rank": 1, "shape": [PREDICTIONS]},
                      "masked_lm_weights": {"type": "float32", "rank": 1, "shape": [PREDICTIONS]}}
    assert json.loads((output / "schema.json").read_text())["numRows"] == len(rows)


def test_records_are_well_formed(english):
    _, _, _, rows = english
    assert len(rows) >= 1000
    for row in rows:
        length = int(row["input_mask"].sum())
        assert 5 <= length <= SEQ
        assert (row["input_mask"][:length] == 1).all() and (row["input_ids"][length:] == 0).all()
        ids = restore(row)  # a random replacement may itself be [SEP] or [CLS]
        seps = np.flatnonzero(ids[:length] == SEP)
        # [CLS] A [SEP] B [SEP]; a [SEP] in the text itself is impossible (it is not a word).
        assert ids[0] == CLS and len(seps) == 2 and seps[1] == length - 1
        expected_segments = np.r_[np.zeros(seps[0] + 1), np.ones(length - seps[0] - 1), np.zeros(SEQ - length)]
        np.testing.assert_array_equal(row["segment_ids"], expected_segments)
        count = int(row["masked_lm_weights"].sum())
        positions = row["masked_lm_positions"][:count]
        assert count >= 1 and (row["masked_lm_weights"][count:] == 0).all()
        assert (np.diff(positions) > 0).all() and (positions < length).all()
        assert not set(positions) & {0, seps[0], seps[1]}  # never [CLS] or [SEP]


def restore(row):
    """input_ids with the masked positions put back to their labels."""
    ids = row["input_ids"].copy()
    count = int(row["masked_lm_weights"].sum())
    ids[row["masked_lm_positions"][:count]] = row["masked_lm_ids"][:count]
    return ids


def test_segments_are_contiguous_text_from_the_corpus(english):
    tmp_path, _, _, rows = english
    tokenizer = FullTokenizer(UNCASED)
    documents, current = [], []
    for line in (tmp_path / "corpus.txt").read_text().splitlines():
        if line:
            current += tokenizer.convert_tokens_to_ids(tokenizer.tokenize(line))
        else:
            documents.append(" " + " ".join(map(str, current)) + " ")
            current = []
    for row in rows[:300]:
        ids = restore(row)
        seps = np.flatnonzero(ids == SEP)
        a = " " + " ".join(map(str, ids[1:seps[0]])) + " "
        b = " " + " ".join(map(str, ids[seps[0] + 1:seps[1]])) + " "
        sources_a = [i for i, doc in enumerate(documents) if a in doc]
        assert sources_a
        if row["next_sentence_labels"][0] == 0:  # true continuation: B from A's document, after A
            assert any(b in documents[i] and documents[i].index(b) > documents[i].index(a) for i in sources_a)
        else:
            assert any(b in doc for doc in documents)


def test_masking_and_next_sentence_statistics(english):
    _, output, _, rows = english
    tokens = sum(row["input_mask"].sum() for row in rows)
    weights = np.concatenate([row["masked_lm_weights"] for row in rows]).astype(bool)
    inputs = np.concatenate([row["input_ids"][row["masked_lm_positions"]] for row in rows])[weights]
    labels = np.concatenate([row["masked_lm_ids"] for row in rows])[weights]
    masked_fraction = weights.sum() / tokens
    as_mask = np.mean(inputs == MASK)
    unchanged = np.mean(inputs == labels)
    random_token = 1.0 - as_mask - unchanged
    nsp_random = np.mean([row["next_sentence_labels"][0] for row in rows])
    assert abs(masked_fraction - 0.15) <= 0.01
    assert abs(as_mask - 0.8) <= 0.03 and abs(unchanged - 0.1) <= 0.03 and abs(random_token - 0.1) <= 0.03
    assert abs(nsp_random - 0.5) <= 0.05
    stats = json.loads((output / "stats.json").read_text())
    assert stats["instances"] == len(rows) and stats["tokens"] == tokens
    assert stats["masked_fraction"] == pytest.approx(masked_fraction, abs=1e-6)
    assert stats["next_sentence_random_fraction"] == pytest.approx(nsp_random, abs=1e-6)


def test_short_seq_prob_shortens_instances(tmp_path):
    _, rows = parse_with_tensorflow(generate(tmp_path, "short", "--short_seq_prob=1"))
    lengths = np.array([row["input_mask"].sum() for row in rows])
    assert lengths.mean() < 0.75 * SEQ and lengths.min() >= 5


def test_whole_word_masking_never_masks_part_of_a_word(tmp_path):
    output = generate(tmp_path, "wwm", "--do_whole_word_mask=true")
    _, rows = parse_with_tensorflow(output)
    tokenizer = FullTokenizer(UNCASED)
    split_words = 0
    for row in rows:
        ids = restore(row)
        tokens = tokenizer.convert_ids_to_tokens(ids[:int(row["input_mask"].sum())])
        count = int(row["masked_lm_weights"].sum())
        masked = set(row["masked_lm_positions"][:count].tolist())
        for position, token in enumerate(tokens):
            continues = token.startswith("##") and tokens[position - 1] not in ("[CLS]", "[SEP]")
            if continues:
                split_words += 1
                assert (position in masked) == (position - 1 in masked), tokens
    assert split_words > 1000  # the corpus has many multi-piece words ("unaffable", "strawberries")


def test_chinese_word_starts_follow_jieba():
    tokenizer = FullTokenizer(CHINESE)
    line = "我们在北京大学学习"  # jieba: 我们 / 在 / 北京大学 / 学习
    tokens = tokenizer.tokenize(line)
    assert word_starts(tokens, line) == [True, False, True, True, False, False, False, True, False]
    line = "BERT模型"  # 模型 is one word; "be ##rt" by pieces
    assert word_starts(tokenizer.tokenize(line), line) == [True, False, True, False]


def test_output_is_byte_identical_for_any_number_of_workers(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", documents=12, sentences=10)
    digests = []
    for workers in (1, 2):
        output = tmp_path / f"workers{workers}"
        subprocess.run([sys.executable, "-m", "src.create_pretraining_data", f"--input_file={corpus}",
                        f"--output_dir={output}", f"--vocab_file={UNCASED}", "--max_seq_length=32",
                        "--max_predictions_per_seq=5", "--dupe_factor=2", "--num_output_shards=3",
                        "--do_whole_word_mask=true", f"--num_workers={workers}"],
                       cwd=REPO, check=True, capture_output=True)
        digests.append({name: (output / name).read_bytes() for name in sorted(os.listdir(output))})
    assert list(digests[0]) == ["part-00000-of-00003.tfrecord", "part-00001-of-00003.tfrecord",
                                "part-00002-of-00003.tfrecord", "schema.json", "stats.json"]
    assert digests[0] == digests[1]


def test_mindrecord_output_holds_the_same_rows(tmp_path, english):
    _, tfrecord_dir, _, _ = english
    corpus = str(english[0] / "corpus.txt")
    mindrecord_dir = generate(tmp_path, "mr", "--short_seq_prob=0", "--output_format=mindrecord", corpus=corpus)
    batches = {}
    for name, directory, dataset_format in (("tf", tfrecord_dir, "tfrecord"), ("mr", mindrecord_dir, "mindrecord")):
        dataset = create_bert_dataset(data_dir=str(directory), batch_size=1, do_shuffle=False,
                                      dataset_format=dataset_format, seq_length=SEQ)
        batches[name] = sorted(tuple(row["input_ids"].ravel()) + tuple(row["masked_lm_ids"].ravel())
                               for row in dataset.create_dict_iterator(output_numpy=True, num_epochs=1))
    assert len(batches["tf"]) >= 1000 and batches["tf"] == batches["mr"]


def expect_error(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        generate_main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.startswith("error: ") and error.count("\n") == 1, error


def test_bad_input_is_reported_with_file_and_line(tmp_path, capsys):
    out = f"--output_dir={tmp_path / 'out'}"
    vocab = f"--vocab_file={UNCASED}"
    expect_error(capsys, [f"--input_file={tmp_path}/none*.txt", out, vocab], "none*.txt' matches no file")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    expect_error(capsys, [f"--input_file={empty}", out, vocab], "--input_file: no text in")
    broken = tmp_path / "broken.txt"
    broken.write_bytes("first line\nsecond \xff line\n".encode("latin-1"))
    expect_error(capsys, [f"--input_file={broken}", out, vocab], "broken.txt: line 2: not valid UTF-8")
    no_specials = tmp_path / "vocab.txt"
    no_specials.write_text("[PAD]\nhello\n")
    expect_error(capsys, [f"--input_file={broken}", out, f"--vocab_file={no_specials}"], "missing special tokens")
    expect_error(capsys, [f"--input_file={broken}", out, vocab, "--max_seq_length=4"], "at least 5")
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_non_utf8_lines_can_be_skipped(tmp_path, capsys):
    corpus = tmp_path / "mixed.txt"
    corpus.write_bytes(b"a good sentence here.\nanother good one.\n\xff\xfe bad\n\nthird fine line.\nand more.\n")
    output = generate(tmp_path, "out", "--on_decode_error=skip", corpus=str(corpus))
    assert "skipped 1 lines that are not valid UTF-8" in capsys.readouterr().err
    assert json.loads((output / "stats.json").read_text())["skipped_non_utf8_lines"] == 1


def test_existing_shards_are_kept_unless_overwrite(tmp_path, capsys):
    output = generate(tmp_path, "out")
    before = (output / "part-00000-of-00002.tfrecord").read_bytes()
    with pytest.raises(SystemExit):
        generate(tmp_path, "out", "--random_seed=1")
    assert "already holds shards" in capsys.readouterr().err
    assert (output / "part-00000-of-00002.tfrecord").read_bytes() == before
    generate(tmp_path, "out", "--random_seed=1", "--overwrite=true")
    assert (output / "part-00000-of-00002.tfrecord").read_bytes() != before


def test_a_crash_while_writing_leaves_no_partial_shard(tmp_path, monkeypatch):
    def crash(path, rows):
        with open(path, "wb") as f:
            f.write(b"half a shard")
        raise OSError("disk full")

    monkeypatch.setattr(generator, "write_tfrecord", crash)
    with pytest.raises(SystemExit) as exit_info:  # one line, exit 2 (tests/test_faults_data.py checks the line)
        generate(tmp_path, "out")
    assert exit_info.value.code == 2
    assert not (tmp_path / "out").exists()  # the run made the directory, and removes it again
