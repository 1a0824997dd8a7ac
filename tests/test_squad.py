"""SQuAD v1.1 reading, features and post-processing against hand-worked expectations.

The small cases use a vocabulary written by the test, where every word is one
token, so positions can be counted by hand. The last test builds training
features for the shared SQuAD dev file and checks that the labelled token
spans give the annotated answers back.
"""

import json
import math
import os
import re
import string
import time
import unicodedata

import numpy as np
import pytest

from src import squad
from src.columns import column_types
from src.files import FileFormatError
from src.squad import RawResult, SquadDataError
from src.tokenization import FullTokenizer, basic_tokenize

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SQUAD_DEV_PART = os.path.join(REPO_ROOT, "..", "shared", "data", "squad", "dev-v1.1-part-a.json")
UNCASED = os.path.join(REPO_ROOT, "data", "vocab", "bert-base-uncased-vocab.txt")

VOCAB = ("[PAD] [UNK] [CLS] [SEP] [MASK] what when where did he buy was born the man went to store and bought a "
         "gallon of milk leader john smith ( 1895 - 1943 ) . japanese electronics industry cafe royal , "
         "in paris").split()
CLS_ID, SEP_ID = 2, 3

# Google's own example: 12 words, each one token.
MILK = "the man went to the store and bought a gallon of milk"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return FullTokenizer(str(path), do_lower_case=True)


def write_squad(path, context, questions):
    """A one-paragraph SQuAD file; `questions` are (id, question, answer text, answer_start)."""
    qas = [{"id": qid, "question": question, "answers": [{"text": text, "answer_start": start}]}
           for qid, question, text, start in questions]
    path.write_text(json.dumps({"version": "1.1", "data": [
        {"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}), encoding="utf-8")
    return str(path)


def read_one(tmp_path, context, answer, question="what", is_training=True, answer_start=None):
    if answer_start is None:
        answer_start = context.index(answer)
    path = write_squad(tmp_path / "squad.json", context, [("q1", question, answer, answer_start)])
    examples, skipped = squad.read_squad_examples(path, is_training)
    assert skipped == 0
    return examples


def make_features(examples, tokenizer, is_training, max_seq_length, doc_stride=128, max_query_length=5):
    """Features with a short query limit (the default 64 needs max_seq_length over 67)."""
    return squad.convert_examples_to_features(examples, tokenizer, is_training, max_seq_length, doc_stride,
                                              max_query_length)


def best_windows(features):
    """{word index: windows in which that word's token has max context}."""
    best = {}
    for feature in features:
        for position, is_max in feature.token_is_max_context.items():
            if is_max:
                best.setdefault(feature.token_to_orig_map[position], []).append(feature.doc_span_index)
    return best


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

def test_doc_tokens_split_on_googles_whitespace_only():
    words, char_to_word = squad.split_doc_tokens(" a\u202fb  c\u00a0d\n")
    assert words == ["a", "b", "c\u00a0d"]          # U+202F splits, a no-break space does not
    assert char_to_word == [-1, 0, 0, 1, 1, 1, 2, 2, 2, 2]


def test_training_answer_words(tmp_path):
    [example] = read_one(tmp_path, MILK, "gallon of milk")
    assert (example.start_position, example.end_position) == (9, 11)
    assert example.orig_answer_text == "gallon of milk"
    assert example.doc_tokens == MILK.split()


def test_answer_not_in_context_fails_or_is_skipped(tmp_path):
    path = write_squad(tmp_path / "bad.json", MILK, [("good", "what", "milk", MILK.index("milk")),
                                                     ("bad", "what", "milk", MILK.index("store"))])
    with pytest.raises(SquadDataError, match=r"bad\.json: question bad: expected the answer 'milk' in the "
                                             r"words at character 20, found 'store'"):
        squad.read_squad_examples(path, is_training=True)
    examples, skipped = squad.read_squad_examples(path, is_training=True, on_error="skip")
    assert [example.qas_id for example in examples] == ["good"] and skipped == 1
    # Evaluation does not locate answers, so nothing is wrong with the file.
    examples, skipped = squad.read_squad_examples(path, is_training=False)
    assert len(examples) == 2 and skipped == 0


def test_answer_past_the_context_is_a_data_error(tmp_path):
    path = write_squad(tmp_path / "far.json", "short text", [("q9", "what", "text", 40)])
    with pytest.raises(SquadDataError, match="far.json: question q9: answer 'text' at character 40 does not fit"):
        squad.read_squad_examples(path, is_training=True)


def test_malformed_files_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [\n  {"title": "x",}\n]}', encoding="utf-8")
    with pytest.raises(FileFormatError, match=r"broken\.json:2:17: not valid JSON"):
        squad.read_squad_examples(str(broken), is_training=False)
    wrong_shape = tmp_path / "shape.json"
    wrong_shape.write_text('{"data": [{"title": "x", "paragraphs": [{"qas": []}]}]}', encoding="utf-8")
    with pytest.raises(SquadDataError, match=r"shape\.json: data\[0\]\.paragraphs\[0\]: expected an object "
                                             r"with a 'context' field"):
        squad.read_squad_examples(str(wrong_shape), is_training=False)
    numbered = tmp_path / "numbered.json"
    numbered.write_text('{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": 7}]}]}]}', encoding="utf-8")
    with pytest.raises(SquadDataError, match=r"numbered\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]: 'id' has "
                                             r"type int, expected a string"):
        squad.read_squad_examples(str(numbered), is_training=False)
    with pytest.raises(FileFormatError, match="missing.json: cannot read"):
        squad.read_squad_examples(str(tmp_path / "missing.json"), is_training=False)
    with pytest.raises(ValueError, match="on_error must be one of fail, skip"):
        squad.read_squad_examples(str(broken), is_training=True, on_error="ignore")


# ---------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------

def test_windows_and_max_context(tmp_path, tokenizer):
    # Query "what" is one token, so a window holds 9 - 1 - 3 = 5 document tokens,
    # starting at positions 0, 3, 6, 9: A = words 0-4, B = 3-7, C = 6-10, D = 9-11.
    [example] = read_one(tmp_path, MILK, "milk")
    features = make_features([example], tokenizer, is_training=False, max_seq_length=9,
                                                  doc_stride=3)
    assert [feature.doc_span_index for feature in features] == [0, 1, 2, 3]
    assert [feature.unique_id for feature in features] == [1000000000, 1000000001, 1000000002, 1000000003]
    assert [[feature.token_to_orig_map[p] for p in sorted(feature.token_to_orig_map)] for feature in features] \
        == [[0, 1, 2, 3, 4], [3, 4, 5, 6, 7], [6, 7, 8, 9, 10], [9, 10, 11]]
    # Score = min(left, right context) + 0.01 * window length:
    #   word 3 "to":     A: min(3, 1) + 0.05 = 1.05   B: min(0, 4) + 0.05 = 0.05   -> A
    #   word 4 "the":    A: min(4, 0) + 0.05 = 0.05   B: min(1, 3) + 0.05 = 1.05   -> B
    #   word 7 "bought": B: min(4, 0) + 0.05 = 0.05   C: min(1, 3) + 0.05 = 1.05   -> C
    #   word 9 "gallon": C: min(3, 1) + 0.05 = 1.05   D: min(0, 2) + 0.03 = 0.03   -> C
    #   word 10 "of":    C: min(4, 0) + 0.05 = 0.05   D: min(1, 1) + 0.03 = 1.03   -> D
    best = best_windows(features)
    assert {word: best[word] for word in (3, 4, 7, 9, 10)} == {3: [0], 4: [1], 7: [2], 9: [2], 10: [3]}
    assert sorted(best) == list(range(12)) and all(len(windows) == 1 for windows in best.values())

    # Stride 2: windows 0-4, 2-6, 4-8, 6-10, 8-11 (the last one 4 long).
    #   word 9: 6-10: min(3, 1) + 0.05 = 1.05   8-11: min(1, 2) + 0.04 = 1.04   -> window 3 (longer wins)
    #   word 3: 0-4: min(3, 1) + 0.05 = 1.05    2-6: min(1, 3) + 0.05 = 1.05    -> window 0 (first on a tie)
    features = make_features([example], tokenizer, is_training=False, max_seq_length=9,
                                                  doc_stride=2)
    best = best_windows(features)
    assert len(features) == 5 and best[9] == [3] and best[3] == [0]


def test_feature_layout(tmp_path, tokenizer):
    [example] = read_one(tmp_path, MILK, "milk", question="what did he buy")
    # The query is cut to 2 tokens; 16 - 2 - 3 = 11 tokens per window: 0-10, then 4-11.
    [first, second] = squad.convert_examples_to_features([example], tokenizer, is_training=False,
                                                         max_seq_length=16, doc_stride=4, max_query_length=2)
    assert first.tokens == ["[CLS]", "what", "did", "[SEP]"] + MILK.split()[:11] + ["[SEP]"]
    assert second.tokens == ["[CLS]", "what", "did", "[SEP]"] + MILK.split()[4:] + ["[SEP]"]
    assert first.input_ids.tolist()[:5] == [CLS_ID, VOCAB.index("what"), VOCAB.index("did"), SEP_ID,
                                            VOCAB.index("the")]
    assert second.input_ids.tolist()[-5:] == [VOCAB.index("milk"), SEP_ID, 0, 0, 0]
    assert second.segment_ids.tolist() == [0] * 4 + [1] * 9 + [0] * 3
    assert second.input_mask.tolist() == [1] * 13 + [0] * 3
    assert first.input_ids.dtype == np.int64 and first.input_ids.shape == (16,)
    assert second.start_position is None  # evaluation features carry no label


def test_training_labels_per_window(tmp_path, tokenizer):
    [example] = read_one(tmp_path, MILK, "gallon of milk")  # words 9-11
    features = make_features([example], tokenizer, is_training=True, max_seq_length=9,
                                                  doc_stride=3)
    # Windows A (0-4) and B (3-7) miss the answer; C (6-10) holds "gallon of" but not "milk",
    # so it is labelled [CLS] too; D (9-11) holds it at positions 3-5 (after [CLS] what [SEP]).
    assert [(feature.start_position, feature.end_position) for feature in features] == \
        [(0, 0), (0, 0), (0, 0), (3, 5)]


def test_answer_span_narrowed_to_the_tokenized_answer(tmp_path, tokenizer):
    context = "The leader was John Smith (1895-1943)."
    [example] = read_one(tmp_path, context, "1895", question="when was john smith born")
    assert (example.start_position, example.end_position) == (5, 5)  # the word "(1895-1943)."
    [feature] = make_features([example], tokenizer, is_training=True, max_seq_length=32)
    # [CLS] when was john smith born [SEP] the leader was john smith ( 1895 - 1943 ) . [SEP]
    #   0     1    2    3     4     5    6    7     8     9   10    11  12  13  14  15  16 17
    assert (feature.start_position, feature.end_position) == (13, 13)
    assert feature.tokens[13] == "1895"


def test_answer_inside_a_word_keeps_the_word(tmp_path, tokenizer):
    # "Japan" is part of the token "japanese" (and not in the vocabulary): the whole word is the label.
    [example] = read_one(tmp_path, "The Japanese electronics industry", "Japan")
    [feature] = make_features([example], tokenizer, is_training=True, max_seq_length=16)
    assert (feature.start_position, feature.end_position) == (4, 4)
    assert feature.tokens[4] == "japanese"


def test_rows_match_their_columns(tmp_path, tokenizer):
    [example] = read_one(tmp_path, MILK, "milk")
    [feature] = make_features([example], tokenizer, is_training=True, max_seq_length=20)
    for is_training, columns in ((True, column_types("squad training", 20)), (False, column_types("squad evaluation", 20))):
        row = squad.feature_row(feature, is_training)
        assert list(row) == list(columns)
        for name, (dtype, length) in columns.items():
            assert row[name].dtype == np.dtype(dtype) and row[name].shape == (length,), name
    assert squad.feature_row(feature, True)["start_positions"].tolist() == [14]   # "milk": 3 + 11
    assert squad.feature_row(feature, False)["unique_ids"].tolist() == [1000000000]
    with pytest.raises(squad.SquadSettingsError, match=r"--max_seq_length \(67\) must exceed --max_query_length \(64\) \+ 3"):
        squad.convert_examples_to_features([example], tokenizer, is_training=True, max_seq_length=67)


# ---------------------------------------------------------------------------
# Post-processing
# ---------------------------------------------------------------------------

CAFE = "The Café-Royal, in Paris."
# [CLS] where [SEP] the cafe  -  royal  ,  in paris  .  [SEP]
#   0     1     2    3    4   5    6    7   8    9   10   11
# words: 0 "The", 1 "Café-Royal,", 2 "in", 3 "Paris."


def cafe_features(tmp_path, tokenizer):
    examples = read_one(tmp_path, CAFE, "Paris", question="where", is_training=False)
    features = make_features(examples, tokenizer, is_training=False, max_seq_length=14)
    return examples, features


def logits(length, values):
    row = [0.0] * length
    for position, value in values.items():
        row[position] = value
    return row


def test_best_valid_span_with_original_text(tmp_path, tokenizer):
    examples, [feature] = cafe_features(tmp_path, tokenizer)
    assert feature.tokens[3:11] == ["the", "cafe", "-", "royal", ",", "in", "paris", "."]
    start = logits(14, {1: 20.0, 9: 8.0, 4: 6.0, 3: 1.0})
    end = logits(14, {0: 20.0, 8: 9.0, 6: 7.0, 4: 3.0})
    results = [RawResult(feature.unique_id, start, end)]
    # With the 4 best starts (1, 9, 4, 3) and ends (0, 8, 6, 4), max_answer_length 4:
    #   1 or 0: question / [CLS], not document      (9, 8) 17, (9, 6) 15, (9, 4) 11: end before start
    #   (4, 8) 15 and (3, 8) 10: 5 and 6 tokens, too long
    #   kept: (4, 6) 13 "Café-Royal", (4, 4) 9 "Café", (3, 6) 8 "The Café-Royal", (3, 4) 4 "The Café"
    predictions, nbest = squad.make_predictions(examples, [feature], results, n_best_size=4, max_answer_length=4)
    assert predictions == {"q1": "Café-Royal"}
    assert [(entry["text"], entry["start_logit"], entry["end_logit"]) for entry in nbest["q1"]] == [
        ("Café-Royal", 6.0, 7.0), ("Café", 6.0, 3.0), ("The Café-Royal", 1.0, 7.0), ("The Café", 1.0, 3.0)]
    total = sum(math.exp(score) for score in (13, 9, 8, 4))
    assert [entry["probability"] for entry in nbest["q1"]] == pytest.approx(
        [math.exp(score) / total for score in (13, 9, 8, 4)])
    # One more token allowed: (4, 8) "cafe - royal , in" is now best, and keeps the comma.
    predictions, _ = squad.make_predictions(examples, [feature], results, n_best_size=4, max_answer_length=5)
    assert predictions == {"q1": "Café-Royal, in"}


def test_duplicate_texts_and_empty_fallback(tmp_path, tokenizer):
    examples = read_one(tmp_path, "Paris, in Paris.", "Paris", question="where", is_training=False)
    [feature] = make_features(examples, tokenizer, is_training=False, max_seq_length=12)
    # [CLS] where [SEP] paris , in paris . [SEP]: both "paris" tokens give the text "Paris".
    start = logits(12, {3: 5.0, 6: 4.0, 5: 1.0})
    end = logits(12, {3: 5.0, 6: 4.0})
    _, nbest = squad.make_predictions(examples, [feature], [RawResult(feature.unique_id, start, end)],
                                      n_best_size=3)
    texts = [entry["text"] for entry in nbest["q1"]]
    assert texts[0] == "Paris" and nbest["q1"][0]["start_logit"] == 5.0 and len(texts) == len(set(texts))
    assert ("in Paris", 1.0, 4.0) in [(e["text"], e["start_logit"], e["end_logit"]) for e in nbest["q1"]]
    # Only the best start is tried, and it is [CLS]: nothing is valid.
    start = logits(12, {0: 9.0})
    predictions, nbest = squad.make_predictions(examples, [feature], [RawResult(feature.unique_id, start, end)],
                                                n_best_size=1)
    assert predictions == {"q1": "empty"}
    assert nbest == {"q1": [{"text": "empty", "probability": 1.0, "start_logit": 0.0, "end_logit": 0.0}]}


def test_start_only_in_its_max_context_window(tmp_path, tokenizer):
    examples = read_one(tmp_path, MILK, "milk", is_training=False)
    features = make_features(examples, tokenizer, is_training=False, max_seq_length=9,
                                                  doc_stride=3)
    # In window B (words 3-7) "bought" sits at position 3 + 4 = 7, but its max-context window is C.
    # In window C "gallon" (word 9) sits at position 3 + 3 = 6.
    results = [RawResult(feature.unique_id, [0.0] * 9, [0.0] * 9) for feature in features]
    results[1].start_logits[7] = 10.0  # "bought" alone would score 10 + 0 if window B could start it
    results[2].start_logits[6] = results[2].end_logits[6] = 3.0
    predictions, nbest = squad.make_predictions(examples, features, results)
    assert predictions == {"q1": "gallon"}
    assert all(entry["start_logit"] != 10.0 for entry in nbest["q1"])


def test_get_final_text():
    assert squad.get_final_text("cafe - royal", "Café-Royal,", do_lower_case=True) == "Café-Royal"
    assert squad.get_final_text("steve smith", "Steve Smith's", do_lower_case=True) == "Steve Smith"
    assert squad.get_final_text("Smith", "Steve Smith's", do_lower_case=False) == "Smith"
    # Not found after basic tokenization: the original words come back whole.
    assert squad.get_final_text("smith", "Steve Smith's", do_lower_case=False) == "Steve Smith's"
    # Found, but basic tokenization dropped a zero-width space, so characters no longer align.
    assert squad.get_final_text("zero", "Zero\u200bWidth,", do_lower_case=True) == "Zero\u200bWidth,"


def test_basic_tokenize():
    assert basic_tokenize("Héllo, World!") == ["hello", ",", "world", "!"]
    assert basic_tokenize("Héllo, World!", do_lower_case=False) == ["Héllo", ",", "World", "!"]
    assert basic_tokenize("a\u200bb中国") == ["ab", "中", "国"]


def test_write_predictions(tmp_path):
    predictions = {"q1": "Café-Royal"}
    nbest = {"q1": [{"text": "Café-Royal", "probability": 1.0, "start_logit": 1.5, "end_logit": 2.0}]}
    paths = squad.write_predictions(str(tmp_path / "out"), predictions, nbest)
    assert [os.path.basename(path) for path in paths] == ["predictions.json", "nbest_predictions.json"]
    assert json.loads(open(paths[0], encoding="utf-8").read()) == predictions
    assert json.loads(open(paths[1], encoding="utf-8").read()) == nbest
    assert sorted(os.listdir(tmp_path / "out")) == ["nbest_predictions.json", "predictions.json"]  # no temp files


# ---------------------------------------------------------------------------
# The shared SQuAD dev file
# ---------------------------------------------------------------------------

def normalize_answer(text):
    """The official SQuAD v1.1 normalisation: lower-case, no punctuation, no articles, single spaces."""
    text = "".join(char for char in text.lower() if char not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def comparable(text):
    """SQuAD-normalised, then accents and spaces removed: the uncased vocabulary strips accents, and
    WordPiece splits off punctuation ("levi ' s" for "Levi's"), so spacing is not comparable."""
    text = unicodedata.normalize("NFD", normalize_answer(text))
    return "".join(char for char in text if unicodedata.category(char) != "Mn" and not char.isspace())


def test_labels_give_the_answers_back_on_squad_dev():
    if not os.path.exists(SQUAD_DEV_PART):
        pytest.fail(f"{SQUAD_DEV_PART} is missing: the shared data must sit beside the repository")
    tokenizer = FullTokenizer(UNCASED, do_lower_case=True)
    began = time.perf_counter()
    examples, skipped = squad.read_squad_examples(SQUAD_DEV_PART, is_training=True)
    features = squad.convert_examples_to_features(examples, tokenizer, is_training=True)
    seconds = time.perf_counter() - began
    assert len(examples) == 5696 and skipped == 0
    labelled = [feature for feature in features if feature.start_position != 0]
    matches = 0
    for feature in labelled:
        wordpieces = " ".join(feature.tokens[feature.start_position:feature.end_position + 1])
        text = wordpieces.replace(" ##", "").replace("##", "")
        matches += comparable(text) == comparable(examples[feature.example_index].orig_answer_text)
    share = matches / len(labelled)
    print(f"\n{len(examples)} questions -> {len(features)} features ({len(labelled)} with the answer) "
          f"in {seconds:.1f} s; re-extracted answers matching: {matches}/{len(labelled)} = {share:.2%}")
    # The rest are annotations of part of a token ("8" in "20-18", "Japan" in "Japanese"),
    # and normalisation artefacts ("a . m ." loses "a" as an article, "a.m." does not).
    assert share >= 0.99
    # Every question has at least one window with its answer.
    assert {feature.example_index for feature in labelled} == set(range(len(examples)))
    # The count for the default settings (384 / 128 / 64), which matched a line-by-line
    # transliteration of Google's run_squad.py when this code was written.
    assert len(features) == 5915
