"""Evaluation metrics against values worked out by hand (the arithmetic is in the comments).

SQuAD expectations follow the official evaluate-v1.1.py definitions; the
CLUENER label format is checked by rebuilding every label of the shared train
file from its spans.
"""

import json
import math
import os

import numpy as np
import pytest

from src.assessment_method import (
    MetricError, accuracy, average_ranks, classification_f1, cluener_label, entity_f1, exact_match_score,
    format_accuracy, format_f1, format_mcc, format_spearman, matthews_corrcoef, normalize_answer,
    spearman_correlation, squad_evaluate, squad_f1_score, write_cluener_submission)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUENER_TRAIN = os.path.join(REPO_ROOT, "..", "shared", "data", "cluener", "train.json")


def assert_plain_json(result):
    """Every value is a Python int/float (or a list of them), so json.dump takes it as is."""
    for value in result.values():
        for item in value if isinstance(value, list) else [value]:
            assert type(item) in (int, float), (value, type(item))
    json.dumps(result)


# ---------------------------------------------------------------- accuracy

def test_accuracy():
    result = accuracy(np.array([0, 1, 2, 1]), [0, 2, 2, 1])   # positions 0, 2, 3 agree
    assert result == {"acc_num": 3, "total_num": 4, "accuracy": 0.75}
    assert format_accuracy(result) == "acc_num 3, total_num 4, accuracy 0.750000"
    assert_plain_json(result)
    assert accuracy([], [])["accuracy"] == 0.0
    with pytest.raises(MetricError, match="3 labels but 2 predictions"):
        accuracy([0, 1, 2], [0, 1])


# ---------------------------------------------------------------- macro F1

def test_classification_f1_by_hand():
    # labels      0 0 1 1 1 2    num_class 4: class 2 is never predicted,
    # predictions 0 1 1 1 0 0    class 3 occurs nowhere and is not averaged.
    # class 0: 1 correct of 3 predicted, 2 labelled: P 1/3, R 1/2, F1 = 2(1/6)/(5/6) = 2/5
    # class 1: 2 correct of 3 predicted, 3 labelled: P 2/3, R 2/3, F1 2/3
    # class 2: 0 correct, 0 predicted, 1 labelled:  P 0, R 0, F1 0
    # macro over {0, 1, 2}: P = (1/3 + 2/3 + 0)/3 = 1/3, R = (1/2 + 2/3 + 0)/3 = 7/18,
    #                       F1 = (2/5 + 2/3 + 0)/3 = 16/45
    result = classification_f1([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 0], num_class=4)
    assert result["per_class_precision"] == pytest.approx([1 / 3, 2 / 3, 0.0, 0.0])
    assert result["per_class_recall"] == pytest.approx([1 / 2, 2 / 3, 0.0, 0.0])
    assert result["per_class_f1"] == pytest.approx([2 / 5, 2 / 3, 0.0, 0.0])
    assert result["classes_averaged"] == [0, 1, 2]
    assert result["precision"] == pytest.approx(1 / 3)
    assert result["recall"] == pytest.approx(7 / 18)
    assert result["f1"] == pytest.approx(16 / 45)
    assert format_f1(result) == "Precision 0.333333\nRecall 0.388889\nF1 0.355556"
    assert_plain_json(result)


def test_classification_f1_class_only_predicted_counts():
    # Class 1 is predicted once but never a label: P 0, R 0 (no labels), F1 0, and it is averaged.
    # Class 0: 1 correct of 1 predicted, 2 labelled -> P 1, R 1/2, F1 2/3.
    result = classification_f1([0, 0], [0, 1], num_class=2)
    assert result["classes_averaged"] == [0, 1]
    assert result["f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_classification_f1_errors():
    with pytest.raises(MetricError, match=r"label 3 is not a class id in \[0, 3\)"):
        classification_f1([0, 3], [0, 1], num_class=3)
    with pytest.raises(MetricError, match=r"prediction -1 is not a class id"):
        classification_f1([0, 1], [0, -1], num_class=3)
    with pytest.raises(MetricError, match="integer class ids"):
        classification_f1([0.0, 1.5], [0, 1], num_class=3)


# ---------------------------------------------------------------- MCC

def test_mcc_binary_by_hand():
    # TP 6, FN 2, FP 1, TN 3 (positive class 1):
    # binary formula: (6*3 - 1*2) / sqrt((6+1)(6+2)(3+1)(3+2)) = 16 / sqrt(1120) = 4 / sqrt(70)
    # Gorodkin: s 12, c 9, labels per class t = (4, 8), predictions p = (5, 7):
    #   (9*12 - (4*5 + 8*7)) / sqrt((144 - 25 - 49)(144 - 16 - 64)) = 32 / sqrt(70 * 64) = 4 / sqrt(70)
    labels = [1] * 6 + [1] * 2 + [0] * 1 + [0] * 3
    predictions = [1] * 6 + [0] * 2 + [1] * 1 + [0] * 3
    result = matthews_corrcoef(labels, predictions)
    assert result["mcc"] == pytest.approx(4 / math.sqrt(70))   # 0.478091
    assert format_mcc(result) == "MCC 0.478091"
    assert_plain_json(result)


def _from_confusion(matrix):
    """(labels, predictions) with matrix[i][j] samples labelled i and predicted j."""
    pairs = [(i, j) for i, row in enumerate(matrix) for j, n in enumerate(row) for _ in range(n)]
    return [i for i, _ in pairs], [j for _, j in pairs]


@pytest.mark.parametrize("matrix, expected", [
    # s 12, c 8, t = p = (4, 4, 4): (8*12 - 48) / sqrt((144 - 48)(144 - 48)) = 48/96
    ([[3, 1, 0], [1, 2, 1], [0, 1, 3]], 0.5),
    # s 10, c 7, t = (5, 4, 1), p = (6, 3, 1): (70 - (30 + 12 + 1)) / sqrt((100 - 46)(100 - 42))
    ([[4, 1, 0], [2, 2, 0], [0, 0, 1]], 27 / math.sqrt(54 * 58)),
])
def test_mcc_three_classes_by_hand(matrix, expected):
    assert matthews_corrcoef(*_from_confusion(matrix))["mcc"] == pytest.approx(expected)


def test_mcc_class_names_and_edge_cases():
    assert matthews_corrcoef(["a", "b", "c"], ["a", "b", "c"])["mcc"] == pytest.approx(1.0)
    assert matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0])["mcc"] == pytest.approx(-1.0)
    assert matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1])["mcc"] == 0.0   # one class predicted: 0/0
    assert matthews_corrcoef([1, 1], [1, 1])["mcc"] == 0.0


def test_mcc_two_classes_equals_the_binary_formula():
    rng = np.random.RandomState(5)
    for _ in range(20):
        labels, predictions = rng.randint(0, 2, 50), rng.randint(0, 2, 50)
        tp = np.sum((labels == 1) & (predictions == 1))
        tn = np.sum((labels == 0) & (predictions == 0))
        fp = np.sum((labels == 0) & (predictions == 1))
        fn = np.sum((labels == 1) & (predictions == 0))
        binary = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        assert matthews_corrcoef(labels, predictions)["mcc"] == pytest.approx(binary)


# ---------------------------------------------------------------- Spearman

def test_average_ranks():
    assert average_ranks([10, 20, 20, 30, 40]).tolist() == [1, 2.5, 2.5, 4, 5]   # 20s share ranks 2, 3
    assert average_ranks([5, 5, 5, 1]).tolist() == [3, 3, 3, 1]                 # 5s share ranks 2, 3, 4
    assert average_ranks([0.3, -1.0, 0.3]).tolist() == [2.5, 1, 2.5]


def test_spearman_with_ties_by_hand():
    # x ranks (1, 2.5, 2.5, 4, 5), y ranks (1, 3, 2, 5, 4), both with mean 3.
    # deviations dx (-2, -.5, -.5, 1, 2), dy (-2, 0, -1, 2, 1):
    # sum dx*dy = 4 + 0 + .5 + 2 + 2 = 8.5, sum dx^2 = 9.5, sum dy^2 = 10 -> 8.5 / sqrt(95)
    result = spearman_correlation([10, 20, 20, 30, 40], [1, 3, 2, 5, 4])
    assert result["spearman_correlation"] == pytest.approx(8.5 / math.sqrt(95))   # 0.872082
    assert format_spearman(result) == "Spearman Correlation is 0.872082"
    assert_plain_json(result)


def test_spearman_edge_cases():
    x = [0.1, 0.5, 2.0, 7.0]
    assert spearman_correlation(x, np.exp(x))["spearman_correlation"] == pytest.approx(1.0)   # monotone
    assert spearman_correlation(x, [4, 3, 2, 1])["spearman_correlation"] == pytest.approx(-1.0)
    assert math.isnan(spearman_correlation(x, [1, 1, 1, 1])["spearman_correlation"])         # no spread
    with pytest.raises(MetricError):
        spearman_correlation([1, 2], [1, 2, 3])


# ---------------------------------------------------------------- entity F1

def _entity_counts(true_tags, pred_tags, scheme="BIO"):
    result = entity_f1(true_tags, pred_tags, scheme)
    return result["true_entities"], result["pred_entities"], result["correct_entities"]


def test_entity_f1_edge_cases():
    # Partial overlap is wrong: PER 0-2 against PER 0-1.
    assert _entity_counts([["B-PER", "I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O", "O"]]) == (1, 1, 0)
    # Right span, wrong type.
    assert _entity_counts([["B-LOC", "I-LOC"]], [["B-PER", "I-PER"]]) == (1, 1, 0)
    # I- without B- is no entity under strict rules, so nothing is predicted.
    assert _entity_counts([["O", "B-PER", "I-PER", "O"]], [["O", "I-PER", "I-PER", "O"]]) == (1, 0, 0)
    # B- at the last position is a one-character entity.
    assert _entity_counts([["O", "O", "B-PER"]], [["O", "O", "B-PER"]]) == (1, 1, 1)
    # Adjacent entities of one type: two true (0-1, 2-2), one predicted (0-2), none right.
    assert _entity_counts([["B-PER", "I-PER", "B-PER"]], [["B-PER", "I-PER", "I-PER"]]) == (2, 1, 0)
    # BIOES: B without E is not an entity, so the prediction has none.
    assert _entity_counts([["B-PER", "E-PER"]], [["B-PER", "I-PER"]], "BIOES") == (1, 0, 0)
    # Same span in different sentences does not match across them.
    assert _entity_counts([["B-PER", "I-PER"], ["O", "O"]], [["O", "O"], ["B-PER", "I-PER"]]) == (1, 1, 0)


def test_entity_f1_micro_average_by_hand():
    # Sentence 1: true {name 0-1, game 3-3}, predicted {name 0-1}.
    # Sentence 2: true {game 0-2}, predicted {game 0-2, name 4-4}.
    # correct 2, predicted 3, true 3 -> P = R = F1 = 2/3.
    true_tags = [["B_name", "E_name", "O", "S_game"], ["B_game", "M_game", "E_game", "O", "O"]]
    pred_tags = [["B_name", "E_name", "O", "O"], ["B_game", "M_game", "E_game", "O", "S_name"]]
    result = entity_f1(true_tags, pred_tags, "BMES")
    assert result == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3,
                                    "true_entities": 3, "pred_entities": 3, "correct_entities": 2})
    assert format_f1(result) == "Precision 0.666667\nRecall 0.666667\nF1 0.666667"
    assert_plain_json(result)


def test_entity_f1_zero_denominators_and_errors():
    nothing = entity_f1([["O", "O"]], [["O", "O"]], "BIO")
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (0.0, 0.0, 0.0)
    # P = 1/1, R = 1/2 -> F1 = 2(1/2)/(3/2) = 2/3
    half = entity_f1([["S-A", "S-B"]], [["S-A", "O"]], "BIOES")
    assert (half["precision"], half["recall"], half["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    with pytest.raises(MetricError, match="2 true tag sequences but 1 predicted"):
        entity_f1([["O"], ["O"]], [["O"]], "BIO")
    with pytest.raises(MetricError, match="sentence 1: 1 true tags but 2 predicted"):
        entity_f1([["O"], ["O"]], [["O"], ["O", "O"]], "BIO")


# ---------------------------------------------------------------- CLUENER output

TEXT = "叶老桂在浙商银行见到叶老桂"   # 叶老桂 at 0-2 and 10-12, 浙商银行 at 4-7


def test_cluener_label():
    spans = [("name", 10, 12), ("company", 4, 7), ("name", 0, 2)]
    assert cluener_label(TEXT, spans) == {"name": {"叶老桂": [[0, 2], [10, 12]]},
                                          "company": {"浙商银行": [[4, 7]]}}
    assert cluener_label(TEXT, []) == {}
    with pytest.raises(MetricError, match="not within a text of length 13"):
        cluener_label(TEXT, [("name", 12, 13)])


def test_cluener_label_rebuilds_the_train_file_labels():
    if not os.path.isfile(CLUENER_TRAIN):
        pytest.fail(f"{CLUENER_TRAIN} is missing: the shared data must sit beside the repository")

    def positions_sorted(label):   # the file lists repeated entities' positions in no fixed order
        return {entity_type: {text: sorted(positions) for text, positions in entities.items()}
                for entity_type, entities in label.items()}

    with open(CLUENER_TRAIN, encoding="utf-8") as f:
        for line in f:
            example = json.loads(line)
            spans = [(entity_type, start, end) for entity_type, entities in example["label"].items()
                     for positions in entities.values() for start, end in positions]
            assert cluener_label(example["text"], spans) == positions_sorted(example["label"])


def test_write_cluener_submission(tmp_path):
    path = tmp_path / "cluener_predict.json"
    path.write_text("old contents\n", encoding="utf-8")
    write_cluener_submission(str(path), [(0, TEXT, [("company", 4, 7)]), (1, "没有实体", [])])
    raw = path.read_text(encoding="utf-8")
    assert "浙商银行" in raw                     # ensure_ascii=False: characters, not \u escapes
    assert [json.loads(line) for line in raw.splitlines()] == [
        {"id": 0, "label": {"company": {"浙商银行": [[4, 7]]}}},
        {"id": 1, "label": {}}]
    assert raw.endswith("}\n")
    assert os.listdir(tmp_path) == ["cluener_predict.json"]   # no temporary file left behind


# ---------------------------------------------------------------- SQuAD v1.1

@pytest.mark.parametrize("answer, normalized", [
    ("The Eiffel Tower", "eiffel tower"),
    ("  An   apple\ta day\n", "apple day"),
    ("the", ""),                          # only an article
    ("A", ""),                            # lower-cased first, then dropped
    ("Theory of the Atheist", "theory of atheist"),   # articles only as whole words
    ("a.b", "ab"),                        # punctuation is deleted, not replaced by a space
    ("the-end", "theend"),                # ... so this is no longer an article
    ("U.S.A.!", "usa"),
    ("rock 'n' roll", "rock n roll"),
    ("“quoted” — text", "“quoted” — text"),   # non-ASCII punctuation is kept
])
def test_normalize_answer(answer, normalized):
    assert normalize_answer(answer) == normalized


def test_exact_match_score():
    assert exact_match_score("The Cat!", "cat") == 1.0
    assert exact_match_score("cats", "cat") == 0.0
    assert exact_match_score("the", "a") == 1.0       # both normalise to ""


def test_squad_f1_score_by_hand():
    # "big red dog" vs "red dog barked": 2 common of 3 and 3 -> P = R = 2/3, F1 2/3
    assert squad_f1_score("the big red dog", "a red dog barked") == pytest.approx(2 / 3)
    # [red red dog] vs [red dog dog cat]: common red x1, dog x1 = 2; P 2/3, R 2/4
    # F1 = 2 (2/3)(1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
    assert squad_f1_score("red red dog", "red dog dog cat") == pytest.approx(4 / 7)
    assert squad_f1_score("Denver", "Denver.") == 1.0
    assert squad_f1_score("apple", "orange") == 0.0
    assert squad_f1_score("the", "the") == 0.0          # v1.1: no tokens, no common token -> 0


def test_squad_evaluate_by_hand(capsys):
    dataset = [
        {"title": "Super_Bowl", "paragraphs": [{"context": "...", "qas": [
            {"id": "q1", "answers": [{"text": "Denver Broncos"}, {"text": "The Denver Broncos"}]},
            {"id": "q2", "answers": [{"text": "Santa Clara, California"}, {"text": "Levi's Stadium"}]},
        ]}]},
        {"title": "Other", "paragraphs": [{"context": "...", "qas": [
            {"id": "q3", "answers": [{"text": "anything"}]},
        ]}]},
    ]
    predictions = {"q1": "denver broncos", "q2": "Levi's Stadium in Santa Clara"}
    # q1: exact match 1, F1 1.
    # q2: prediction tokens [levis stadium in santa clara] (5).
    #     vs [santa clara california]: 2 common, P 2/5, R 2/3 -> F1 (8/15)/(16/15) = 1/2
    #     vs [levis stadium]:          2 common, P 2/5, R 1   -> F1 (4/5)/(7/5)   = 4/7 (the max)
    #     exact match 0.
    # q3: unanswered, 0.
    # exact_match = 100 * 1/3, f1 = 100 * (1 + 4/7)/3 = 1100/21
    result = squad_evaluate(dataset, predictions)
    assert result == pytest.approx({"exact_match": 100 / 3, "f1": 1100 / 21})
    assert capsys.readouterr().err == "Unanswered question q3 will receive score 0.\n"
    assert_plain_json(result)


def test_squad_evaluate_errors():
    with pytest.raises(MetricError, match="no questions"):
        squad_evaluate([], {})
    with pytest.raises(MetricError, match="question q1 has no answers"):
        squad_evaluate([{"paragraphs": [{"qas": [{"id": "q1", "answers": []}]}]}], {"q1": "x"})
