"""Evaluation metrics for the fine-tuning tasks, as small pure functions.

Each metric takes plain lists or NumPy arrays and returns a dict of Python
floats and ints (lists of them for per-class values), so a caller can print
it or `json.dump` it. The `format_*` helpers give the model zoo's print lines.

- Classification: `accuracy`, `classification_f1` (macro over classes),
  `matthews_corrcoef` (CoLA), `spearman_correlation` (STS-B).
- NER: `entity_f1`, micro-averaged over exact entities decoded with the
  strict rules of `src.ner_tagging`, and the CLUENER2020 submission format.
- SQuAD v1.1: the official `evaluate-v1.1.py` scoring, answer normalisation
  included, so numbers compare with published ones.

`resolve_method` reads a job's `assessment_method` in any case, the model
zoo's spellings (Accuracy, MCC, BF1, ...) included.
"""

import collections
import json
import math
import re
import string
import sys
from collections.abc import Iterable, Sequence

import numpy as np

from src.config import ConfigError
from src.errors import UserError
from src.files import write_text_atomic
from src.ner_tagging import tags_to_spans

SCORE_FORMAT = "{:.6f}"

# SQuAD normalisation (official evaluate-v1.1.py): ASCII punctuation is deleted
# (not replaced by a space), then the articles a/an/the as whole words.
SQUAD_PUNCTUATION = frozenset(string.punctuation)
SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")
SQUAD_PERCENT = 100.0


class MetricError(UserError):
    """Labels and predictions that cannot be compared (lengths, class ids, empty data)."""


def _paired_arrays(labels, predictions):
    labels, predictions = np.asarray(labels).ravel(), np.asarray(predictions).ravel()
    if labels.shape != predictions.shape:
        raise MetricError(f"{labels.size} labels but {predictions.size} predictions")
    return labels, predictions


def _ratio(numerator, denominator):
    """numerator / denominator as a float, 0.0 when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator else 0.0


def _f1(precision, recall):
    return _ratio(2.0 * precision * recall, precision + recall)


# ---------------------------------------------------------------- assessment_method names

# Each job's assessment_method values. The zoo lowercases its names (Accuracy, MCC,
# Spearman_correlation, F1, clue_benchmark), so most are ours in another case.
CLASSIFIER_METHODS = ("accuracy", "f1", "mcc", "spearman_correlation")
NER_METHODS = ("f1", "accuracy", "clue_benchmark")
# The zoo's NER names that are no metric of ours: {name: (the metric they are scored by, how they differ)}.
# Its BF1 and MF1 count tokens; the closest metric here is entity F1 (micro, exact type and span).
ZOO_NER_METHODS = {
    "bf1": ("f1", "scored as f1, entity-level (the zoo's BF1 is a token-level F1 of entity tags against O, "
                  "types ignored)"),
    "mf1": ("f1", "scored as f1, entity-level (the zoo's MF1 is a token-level micro F1 over the entity tags)"),
}


def resolve_method(name: str, methods: Sequence[str],
                   zoo_names: dict[str, tuple[str, str]] | None = None) -> tuple[str, str | None]:
    """(metric, note) for an assessment_method as written, in any case.

    `name` lowercased is one of `methods` (note None) or a key of `zoo_names`
    ({zoo name: (metric, note saying how the zoo's metric differs)}); anything
    else raises ConfigError listing what is accepted.
    """
    zoo_names = zoo_names or {}
    key = name.lower()
    if key in methods:
        return key, None
    if key in zoo_names:
        return zoo_names[key]
    accepted = ", ".join([*methods, *zoo_names])
    raise ConfigError(f"assessment_method: expected one of {accepted} (any case), got {name!r}")


# ---------------------------------------------------------------- classification

def accuracy(labels: np.ndarray, predictions: np.ndarray) -> dict:
    """Fraction of predictions equal to their label -> {"acc_num", "total_num", "accuracy"}."""
    labels, predictions = _paired_arrays(labels, predictions)
    acc_num = int(np.sum(labels == predictions))
    return {"acc_num": acc_num, "total_num": int(labels.size), "accuracy": _ratio(acc_num, labels.size)}


def format_accuracy(result: dict) -> str:
    return (f"acc_num {result['acc_num']}, total_num {result['total_num']}, "
            f"accuracy {SCORE_FORMAT.format(result['accuracy'])}")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_class: int) -> np.ndarray:
    """[num_class, num_class] counts: row = label, column = prediction."""
    labels, predictions = _paired_arrays(labels, predictions)
    for name, values in (("label", labels), ("prediction", predictions)):
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise MetricError(f"{name}s must be integer class ids, not {values.dtype}")
        outside = values[(values < 0) | (values >= num_class)]
        if outside.size:
            raise MetricError(f"{name} {outside[0]} is not a class id in [0, {num_class})")
    counts = np.zeros((num_class, num_class), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return counts


def classification_f1(labels: np.ndarray, predictions: np.ndarray, num_class: int) -> dict:
    """Macro-averaged precision, recall and F1 over classes, plus the per-class values.

    A class's precision (recall) is 0 when it is never predicted (never a label).
    The macro averages are over the classes that occur in the labels or the
    predictions; a class absent from both has no meaningful score and is left
    out ("classes_averaged" lists the ones kept). Macro F1 is the mean of the
    per-class F1s (as sklearn's average="macro"), not the F1 of the macro
    precision and recall.
    """
    counts = confusion_matrix(labels, predictions, num_class)
    correct, label_counts, predicted_counts = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    precision = [_ratio(correct[c], predicted_counts[c]) for c in range(num_class)]
    recall = [_ratio(correct[c], label_counts[c]) for c in range(num_class)]
    f1 = [_f1(p, r) for p, r in zip(precision, recall)]
    present = [c for c in range(num_class) if label_counts[c] + predicted_counts[c] > 0]

    def macro(values):
        return _ratio(sum(values[c] for c in present), len(present))

    return {"precision": macro(precision), "recall": macro(recall), "f1": macro(f1),
            "per_class_precision": precision, "per_class_recall": recall, "per_class_f1": f1,
            "classes_averaged": present}


def format_f1(result: dict) -> str:
    """The zoo's three lines, for `classification_f1` and `entity_f1` results."""
    return "\n".join(f"{name} {SCORE_FORMAT.format(result[key])}"
                     for name, key in (("Precision", "precision"), ("Recall", "recall"), ("F1", "f1")))


def matthews_corrcoef(labels: np.ndarray, predictions: np.ndarray) -> dict:
    """Matthews correlation coefficient, multi-class (Gorodkin's R_K) -> {"mcc"}.

    From the confusion matrix C over the classes seen (rows labels, columns
    predictions), with s samples, c = trace(C), t_k and p_k the row and column
    sums:  (c*s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) * (s^2 - sum_k t_k^2)).
    For two classes this is the binary (TP*TN - FP*FN) / sqrt(...) formula.
    0.0 when the denominator is 0 (e.g. one class predicted throughout), as sklearn.
    """
    labels, predictions = _paired_arrays(labels, predictions)
    classes, ids = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    counts = confusion_matrix(ids[:labels.size], ids[labels.size:], len(classes))
    # Python integers: s^2 overflows int64 beyond ~3e9 samples, and exact is free here.
    samples, correct = int(counts.sum()), int(np.trace(counts))
    label_counts = [int(n) for n in counts.sum(axis=1)]
    predicted_counts = [int(n) for n in counts.sum(axis=0)]
    covariance = correct * samples - sum(t * p for t, p in zip(label_counts, predicted_counts))
    predicted_spread = samples ** 2 - sum(p * p for p in predicted_counts)
    label_spread = samples ** 2 - sum(t * t for t in label_counts)
    denominator = math.sqrt(predicted_spread) * math.sqrt(label_spread)
    return {"mcc": covariance / denominator if denominator else 0.0}


def format_mcc(result: dict) -> str:
    return f"MCC {SCORE_FORMAT.format(result['mcc'])}"


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`; tied values share the mean of the ranks they span."""
    values = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Runs of equal values in sorted order: [run_starts[i], run_ends[i]) .
    run_starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    run_ends = np.r_[run_starts[1:], values.size]
    ranks = np.empty(values.size, dtype=np.float64)
    for start, end in zip(run_starts, run_ends):
        ranks[order[start:end]] = (start + 1 + end) / 2.0   # mean of ranks start+1 .. end
    return ranks


def spearman_correlation(x: np.ndarray, y: np.ndarray) -> dict:
    """Spearman's rho: the Pearson correlation of the average ranks -> {"spearman_correlation"}.

    NaN when either input is constant (its ranks have no spread), as scipy.
    """
    x_ranks, y_ranks = (average_ranks(values) for values in _paired_arrays(x, y))
    x_centred, y_centred = x_ranks - x_ranks.mean(), y_ranks - y_ranks.mean()
    denominator = math.sqrt(float(np.dot(x_centred, x_centred)) * float(np.dot(y_centred, y_centred)))
    rho = float(np.dot(x_centred, y_centred)) / denominator if denominator else math.nan
    return {"spearman_correlation": rho}


def format_spearman(result: dict) -> str:
    return f"Spearman Correlation is {SCORE_FORMAT.format(result['spearman_correlation'])}"


# ---------------------------------------------------------------- NER

def entity_f1(true_tag_sequences: Sequence[Sequence[str]], pred_tag_sequences: Sequence[Sequence[str]],
              scheme: str) -> dict:
    """Micro-averaged entity precision, recall and F1 over all sentences.

    Entities are decoded per sentence with `tags_to_spans` (strict rules); a
    predicted entity is correct only if its type, start and end all equal a
    true entity's in the same sentence. Scores are 0.0 when their denominator is.
    """
    if len(true_tag_sequences) != len(pred_tag_sequences):
        raise MetricError(f"{len(true_tag_sequences)} true tag sequences "
                          f"but {len(pred_tag_sequences)} predicted")
    true_entities = pred_entities = correct_entities = 0
    for index, (true_tags, pred_tags) in enumerate(zip(true_tag_sequences, pred_tag_sequences)):
        if len(true_tags) != len(pred_tags):
            raise MetricError(f"sentence {index}: {len(true_tags)} true tags but {len(pred_tags)} predicted")
        true_spans, pred_spans = set(tags_to_spans(true_tags, scheme)), set(tags_to_spans(pred_tags, scheme))
        true_entities += len(true_spans)
        pred_entities += len(pred_spans)
        correct_entities += len(true_spans & pred_spans)
    precision, recall = _ratio(correct_entities, pred_entities), _ratio(correct_entities, true_entities)
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall),
            "true_entities": true_entities, "pred_entities": pred_entities,
            "correct_entities": correct_entities}


def cluener_label(text: str, spans: Iterable[tuple[str, int, int]]) -> dict:
    """CLUENER2020's label dict for one text: {type: {entity_text: [[start, end_inclusive], ...]}}.

    Entities are listed in text order; entity_text is text[start:end + 1].
    """
    label = {}
    for entity_type, start, end in sorted(spans, key=lambda span: (span[1], span[2])):
        if not 0 <= start <= end < len(text):
            raise MetricError(f"span {(entity_type, start, end)} is not within a text of length {len(text)}")
        label.setdefault(entity_type, {}).setdefault(text[start:end + 1], []).append([int(start), int(end)])
    return label


def write_cluener_submission(path: str, ids_texts_spans: Iterable[tuple[object, str, list]]) -> None:
    """Write a CLUENER2020 submission: one line {"id": ..., "label": {...}} per (id, text, spans).

    Written atomically, so an interrupted run never leaves a partial file.
    """
    lines = [json.dumps({"id": example_id, "label": cluener_label(text, spans)}, ensure_ascii=False)
             for example_id, text, spans in ids_texts_spans]
    write_text_atomic("".join(line + "\n" for line in lines), path)


# ---------------------------------------------------------------- SQuAD v1.1

def normalize_answer(text: str) -> str:
    """Lower-case, delete punctuation, drop the articles a/an/the, collapse whitespace (in that order)."""
    text = "".join(char for char in text.lower() if char not in SQUAD_PUNCTUATION)
    text = SQUAD_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 if the normalised answers are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def squad_f1_score(prediction: str, ground_truth: str) -> float:
    """F1 of the normalised answers' whitespace tokens, common tokens counted with multiplicity."""
    prediction_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:   # also when either answer normalises to nothing
        return 0.0
    return _f1(num_same / len(prediction_tokens), num_same / len(truth_tokens))


def squad_evaluate(dataset: list, predictions: dict[str, str]) -> dict[str, float]:
    """Official SQuAD v1.1 scores, in percent -> {"exact_match", "f1"}.

    Args:
        dataset (list): the "data" list of a SQuAD JSON file.
        predictions (dict): question id -> predicted answer text.
    Each question scores its best match over its ground-truth answers; a
    question without a prediction scores 0 and is reported on stderr.
    The official script prints the result as `json.dumps(result)`.
    """
    exact_match = f1 = 0.0
    total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for question in paragraph["qas"]:
                total += 1
                if question["id"] not in predictions:
                    print(f"Unanswered question {question['id']} will receive score 0.", file=sys.stderr)
                    continue
                ground_truths = [answer["text"] for answer in question["answers"]]
                if not ground_truths:
                    raise MetricError(f"SQuAD question {question['id']} has no answers")
                prediction = predictions[question["id"]]
                exact_match += max(exact_match_score(prediction, truth) for truth in ground_truths)
                f1 += max(squad_f1_score(prediction, truth) for truth in ground_truths)
    if total == 0:
        raise MetricError("the SQuAD dataset has no questions")
    return {"exact_match": SQUAD_PERCENT * exact_match / total, "f1": SQUAD_PERCENT * f1 / total}
