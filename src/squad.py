"""SQuAD v1.1 for BERT: reading the JSON, cutting features, turning logits back into answers.

The behaviour is Google BERT's `run_squad.py` (v1.1 path), step for step:

Reading (`read_squad_examples`). Each context is split into "doc tokens" on
whitespace (space, tab, CR, LF, U+202F), remembering for every character the
word it falls in. For training, the first answer's character span becomes a
start and end word; the answer text (whitespace-normalised) must then be found
in those words, otherwise the question is a data error.

Features (`iter_features`). The question is WordPiece-tokenized and cut to
`max_query_length`; every doc token is WordPiece-tokenized, keeping the maps
between the two. A document longer than one window is cut into windows of
`max_seq_length - len(query) - 3` tokens, each starting `doc_stride` tokens
after the previous one. A row is `[CLS] query [SEP] window [SEP]`, zero-padded.
A token seen in several windows is scored in each by min(left, right context)
+ 0.01 * window length; only its best window may start an answer at it. For
training, the answer's token span is narrowed to the tokenized answer text when
it occurs inside the word span ("(1895-1943)." -> "1895"), and a window that
does not hold the whole answer points start and end at [CLS] (position 0).

Post-processing (`make_predictions`). For each question, over all its
windows, the `n_best_size` best start and end positions are paired; pairs
outside the window's document part, not starting in the start token's best
window, ending before they start or longer than `max_answer_length` tokens are
dropped; the rest are ranked by start + end logit. Each candidate's text is
the original words projected onto the WordPiece prediction (`get_final_text`),
so case, accents and punctuation come back; duplicate texts are dropped, and
a softmax over the kept candidates gives their probabilities.
"""

import collections
import dataclasses
import math
import os
from collections.abc import Iterable, Iterator

import numpy as np

from src.errors import UserError
from src.files import finite_json, read_json, write_text_atomic
from src.tokenization import FullTokenizer, basic_tokenize

# Google's defaults.
MAX_SEQ_LENGTH = 384
DOC_STRIDE = 128
MAX_QUERY_LENGTH = 64
N_BEST_SIZE = 20
MAX_ANSWER_LENGTH = 30

# Google numbers features from here, so a unique id never looks like an index.
FIRST_UNIQUE_ID = 1000000000

# Google's `read_squad_examples` whitespace: Python's `str.isspace` would also
# split on no-break spaces, which changes the words and the answer alignment.
DOC_WHITESPACE = frozenset(" \t\r\n\u202f")

# Text shown for a question whose windows allow no valid span (Google's nonce prediction).
EMPTY_PREDICTION = "empty"

PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest_predictions.json"

ON_ERROR_CHOICES = ("fail", "skip")

TYPE_NAMES = {list: "a list", str: "a string", int: "an integer"}  # for messages about the JSON's fields


class SquadSettingsError(UserError):
    """Window settings that cannot make a feature (a stride below 1, a query that fills the window)."""


class SquadDataError(UserError):
    """The SQuAD file is not SQuAD-shaped, or an answer does not match its context (an unreadable or
    non-JSON file is `src.files.FileFormatError`)."""


@dataclasses.dataclass
class SquadExample:
    """One question with its (whitespace-split) context."""
    qas_id: str
    question_text: str
    doc_tokens: list                # the context's words; one list shared by all questions on a paragraph
    answer_texts: list              # every annotated answer (evaluation compares against all of them)
    orig_answer_text: str = None    # training only: the first answer, which is the label
    start_position: int = None      # training only: index in `doc_tokens` of the answer's first word
    end_position: int = None        # training only: index in `doc_tokens` of the answer's last word


@dataclasses.dataclass
class SquadFeature:
    """One window of one example, as the model sees it.

    Positions below are indices into `tokens` (= into the model's sequence).
    """
    unique_id: int
    example_index: int              # index into the examples list
    doc_span_index: int             # which window of the example, from 0
    tokens: list                    # [CLS] query [SEP] window [SEP], unpadded
    token_to_orig_map: dict         # position of a window token -> index of its word in `doc_tokens`
    token_is_max_context: dict      # position of a window token -> is this its best-context window
    input_ids: np.ndarray           # int64 [max_seq_length], zero-padded
    input_mask: np.ndarray          # int64 [max_seq_length], 1 for real tokens
    segment_ids: np.ndarray         # int64 [max_seq_length], 0 for [CLS] query [SEP], 1 for window [SEP]
    start_position: int = None      # training only: answer's first token, 0 ([CLS]) if not in this window
    end_position: int = None        # training only: answer's last token, 0 ([CLS]) if not in this window


@dataclasses.dataclass
class RawResult:
    """The model's output for one feature: one start and one end logit per sequence position."""
    unique_id: int
    start_logits: list
    end_logits: list


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

def split_doc_tokens(context: str) -> tuple[list[str], list[int]]:
    """Context -> (words, char_to_word_offset): words split on `DOC_WHITESPACE`, and for each
    character the index of the word it is in (a whitespace character counts for the word before it)."""
    doc_tokens, char_to_word_offset = [], []
    previous_is_whitespace = True
    for char in context:
        if char in DOC_WHITESPACE:
            previous_is_whitespace = True
        else:
            if previous_is_whitespace:
                doc_tokens.append(char)
            else:
                doc_tokens[-1] += char
            previous_is_whitespace = False
        char_to_word_offset.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word_offset


def read_squad_examples(input_file: str, is_training: bool, on_error: str = "fail") -> tuple[list[SquadExample], int]:
    """Read a SQuAD v1.1 JSON file.

    Args:
        input_file (str): the JSON file.
        is_training (bool): also locate the first answer of each question in its context.
        on_error (str): for an answer that cannot be located, "fail" raises `SquadDataError`,
            "skip" leaves the question out (Google skips it with a warning).

    Returns:
        (list of SquadExample, int): the examples, and how many questions were skipped.
    Raises:
        FileFormatError if the file cannot be read or is not JSON; SquadDataError if it is not SQuAD-shaped.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, not {on_error!r}")
    dataset = read_json(input_file)
    examples, skipped = [], 0
    for article_index, article in enumerate(_field(dataset, "data", input_file, "top level", list)):
        where = f"data[{article_index}]"
        for paragraph_index, paragraph in enumerate(_field(article, "paragraphs", input_file, where, list)):
            where = f"data[{article_index}].paragraphs[{paragraph_index}]"
            context = _field(paragraph, "context", input_file, where, str)
            doc_tokens, char_to_word_offset = split_doc_tokens(context)
            for qa_index, qa in enumerate(_field(paragraph, "qas", input_file, where, list)):
                qa_where = f"{where}.qas[{qa_index}]"
                qas_id = _field(qa, "id", input_file, qa_where, str)  # the key of predictions.json
                qa_where = f"question {qas_id}"
                # Unlabelled questions can still be predicted: answers are needed for training only.
                answers = _field(qa, "answers", input_file, qa_where, list) if is_training or "answers" in qa else []
                example = SquadExample(
                    qas_id=qas_id,
                    question_text=_field(qa, "question", input_file, qa_where, str),
                    doc_tokens=doc_tokens,
                    answer_texts=[_field(answer, "text", input_file, qa_where, str) for answer in answers])
                if is_training:
                    try:
                        _locate_answer(example, answers, context, char_to_word_offset, input_file)
                    except SquadDataError:
                        if on_error == "fail":
                            raise
                        skipped += 1
                        continue
                examples.append(example)
    return examples, skipped


def _field(record, key, input_file, where, expected_type):
    """`record[key]`, or a `SquadDataError` saying what was expected where."""
    if not isinstance(record, dict) or key not in record:
        raise SquadDataError(f"{input_file}: {where}: expected an object with a {key!r} field")
    value = record[key]
    if not isinstance(value, expected_type) or isinstance(value, bool):
        raise SquadDataError(f"{input_file}: {where}: {key!r} has type {type(value).__name__}, "
                             f"expected {TYPE_NAMES[expected_type]}")
    return value


def _locate_answer(example, answers, context, char_to_word_offset, input_file):
    """Set the example's label from its first answer: its text and first/last word."""
    where = f"{input_file}: question {example.qas_id}"
    if not answers:
        raise SquadDataError(f"{where}: no answer (training needs one)")
    answer_text = example.answer_texts[0]
    answer_start = _field(answers[0], "answer_start", input_file, f"question {example.qas_id}", int)
    answer_end = answer_start + len(answer_text) - 1
    if not answer_text or answer_start < 0 or answer_end >= len(context):
        raise SquadDataError(f"{where}: answer {answer_text!r} at character {answer_start} does not fit in "
                             f"the {len(context)}-character context")
    # Google's start word is -1 for an answer starting in the context's leading whitespace; 0 is meant.
    start_word = max(char_to_word_offset[answer_start], 0)
    end_word = char_to_word_offset[answer_end]
    # The words must contain the answer (a substring test: the words may be longer, as
    # "Japanese" for the answer "Japan"). Annotations made on differently normalised
    # Unicode text can fail this.
    found_text = " ".join(example.doc_tokens[start_word:end_word + 1])
    cleaned_answer = " ".join(answer_text.split())
    if cleaned_answer not in found_text:
        raise SquadDataError(f"{where}: expected the answer {cleaned_answer!r} in the words at character "
                             f"{answer_start}, found {found_text[:100]!r}")
    example.orig_answer_text = answer_text
    example.start_position = start_word
    example.end_position = end_word


# ---------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------

def iter_features(examples: list[SquadExample], tokenizer: FullTokenizer, is_training: bool,
                  max_seq_length: int = MAX_SEQ_LENGTH, doc_stride: int = DOC_STRIDE,
                  max_query_length: int = MAX_QUERY_LENGTH) -> Iterator[SquadFeature]:
    """Yield the `SquadFeature`s of `examples`, one per window, unique ids counting from 1000000000.

    A generator, so that a large training set can be written without holding every feature.
    """
    if max_seq_length <= max_query_length + 3:
        raise SquadSettingsError(f"--max_seq_length ({max_seq_length}) must exceed --max_query_length "
                                 f"({max_query_length}) + 3 ([CLS] and two [SEP])")
    if doc_stride <= 0:
        raise SquadSettingsError(f"--doc_stride must be positive, got {doc_stride}")
    unique_id = FIRST_UNIQUE_ID
    doc_tokens = None
    for example_index, example in enumerate(examples):
        query_tokens = tokenizer.tokenize(example.question_text)[:max_query_length]
        # The questions on one paragraph share its word list: tokenize it once.
        if example.doc_tokens is not doc_tokens:
            doc_tokens = example.doc_tokens
            all_doc_tokens, tok_to_orig_index, orig_to_tok_index = _tokenize_words(doc_tokens, tokenizer)

        if is_training:
            tok_start = orig_to_tok_index[example.start_position]
            if example.end_position < len(doc_tokens) - 1:
                tok_end = orig_to_tok_index[example.end_position + 1] - 1
            else:
                tok_end = len(all_doc_tokens) - 1
            tok_start, tok_end = _improve_answer_span(all_doc_tokens, tok_start, tok_end, tokenizer,
                                                      example.orig_answer_text)

        max_tokens_for_doc = max_seq_length - len(query_tokens) - 3  # [CLS], [SEP], [SEP]
        doc_spans = _doc_spans(len(all_doc_tokens), max_tokens_for_doc, doc_stride)
        best_span = _max_context_spans(doc_spans, len(all_doc_tokens))
        doc_offset = len(query_tokens) + 2  # position of the window's first token: after [CLS] query [SEP]

        for doc_span_index, (span_start, span_length) in enumerate(doc_spans):
            tokens = ["[CLS]", *query_tokens, "[SEP]", *all_doc_tokens[span_start:span_start + span_length],
                      "[SEP]"]
            token_to_orig_map, token_is_max_context = {}, {}
            for i in range(span_length):
                token_to_orig_map[doc_offset + i] = tok_to_orig_index[span_start + i]
                token_is_max_context[doc_offset + i] = best_span[span_start + i] == doc_span_index

            input_ids = np.zeros(max_seq_length, np.int64)
            input_ids[:len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
            input_mask = np.zeros(max_seq_length, np.int64)
            input_mask[:len(tokens)] = 1
            segment_ids = np.zeros(max_seq_length, np.int64)
            segment_ids[doc_offset:len(tokens)] = 1

            start_position = end_position = None
            if is_training:
                if span_start <= tok_start and tok_end < span_start + span_length:
                    start_position = tok_start - span_start + doc_offset
                    end_position = tok_end - span_start + doc_offset
                else:
                    start_position = end_position = 0  # [CLS]: the answer is not (wholly) in this window

            yield SquadFeature(unique_id=unique_id, example_index=example_index, doc_span_index=doc_span_index,
                               tokens=tokens, token_to_orig_map=token_to_orig_map,
                               token_is_max_context=token_is_max_context, input_ids=input_ids,
                               input_mask=input_mask, segment_ids=segment_ids,
                               start_position=start_position, end_position=end_position)
            unique_id += 1


def convert_examples_to_features(examples: list[SquadExample], tokenizer: FullTokenizer, is_training: bool,
                                 max_seq_length: int = MAX_SEQ_LENGTH, doc_stride: int = DOC_STRIDE,
                                 max_query_length: int = MAX_QUERY_LENGTH) -> list[SquadFeature]:
    """`iter_features` as a list."""
    return list(iter_features(examples, tokenizer, is_training, max_seq_length, doc_stride, max_query_length))


def _tokenize_words(words, tokenizer):
    """WordPiece tokens of `words`, with each token's word index and each word's first token index.

    A word with no tokens (only control characters) gets the index of the next word's first token.
    """
    all_tokens, tok_to_orig_index, orig_to_tok_index = [], [], []
    for word_index, word in enumerate(words):
        orig_to_tok_index.append(len(all_tokens))
        pieces = tokenizer.tokenize(word)
        all_tokens.extend(pieces)
        tok_to_orig_index.extend([word_index] * len(pieces))
    return all_tokens, tok_to_orig_index, orig_to_tok_index


def _improve_answer_span(doc_tokens, start, end, tokenizer, answer_text):
    """The first, then longest, sub-span of tokens start..end equal to the tokenized answer, else start..end.

    Annotations are character spans, projected onto whole words; after WordPiece the
    answer often matches fewer tokens: in "(1895-1943)." the answer "1895" is one of
    the tokens "( 1895 - 1943 ) .". An answer inside a token ("Japan" in "Japanese")
    keeps the whole word span.
    """
    answer_tokens = tokenizer.tokenize(answer_text)
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if doc_tokens[new_start:new_end + 1] == answer_tokens:
                return new_start, new_end
    return start, end


def _doc_spans(num_tokens, max_tokens_for_doc, doc_stride):
    """(start, length) windows over `num_tokens` document tokens, each starting `doc_stride` tokens
    (at most one window length) after the previous one, until one reaches the end. An empty
    document gets no window, hence no feature, as in Google's code."""
    spans, start = [], 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans


def _max_context_spans(doc_spans, num_tokens):
    """For each document token, the index of its best-context window.

    A token's score in a window is min(tokens left of it, tokens right of it) +
    0.01 * window length: the window where it sits most centrally, the longer
    window on a tie of the first term; the first such window on a full tie.
    """
    best_span, best_score = [None] * num_tokens, [None] * num_tokens
    for span_index, (span_start, span_length) in enumerate(doc_spans):
        span_end = span_start + span_length - 1
        for position in range(span_start, span_end + 1):
            score = min(position - span_start, span_end - position) + 0.01 * span_length
            if best_score[position] is None or score > best_score[position]:
                best_score[position] = score
                best_span[position] = span_index
    return best_span


def feature_row(feature: SquadFeature, is_training: bool) -> dict[str, np.ndarray]:
    """A feature as a record row {column: int64 array}: src.columns' "squad training" or "squad evaluation"
    columns."""
    row = {"input_ids": feature.input_ids, "input_mask": feature.input_mask, "segment_ids": feature.segment_ids}
    if is_training:
        row["start_positions"] = np.array([feature.start_position], np.int64)
        row["end_positions"] = np.array([feature.end_position], np.int64)
    else:
        row["unique_ids"] = np.array([feature.unique_id], np.int64)
    return row


# ---------------------------------------------------------------------------
# Post-processing
# ---------------------------------------------------------------------------

def make_predictions(examples: list[SquadExample], features: list[SquadFeature], results: Iterable[RawResult],
                     n_best_size: int = N_BEST_SIZE, max_answer_length: int = MAX_ANSWER_LENGTH,
                     do_lower_case: bool = True) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """Answer texts from the model's logits.

    Args:
        examples (list of SquadExample): as read with is_training=False.
        features (list of SquadFeature): their features, in any order.
        results (iterable of RawResult): one per feature (extra ones are ignored); the logits
            are sequences of floats of the sequence length.
        n_best_size (int): start and end positions tried per feature, and candidates kept per question.
        max_answer_length (int): longest answer, in WordPiece tokens.
        do_lower_case (bool): as the tokenizer was built (for `get_final_text`).

    Returns:
        (dict, dict): {question id: answer text}, and {question id: candidates, best first,
        each {"text", "probability", "start_logit", "end_logit"}}.
    """
    features_by_example = collections.defaultdict(list)
    for feature in features:
        features_by_example[feature.example_index].append(feature)
    result_by_id = {result.unique_id: result for result in results}

    predictions, nbest = {}, {}
    for example_index, example in enumerate(examples):
        candidates = []  # (start_logit, end_logit, feature, start_index, end_index)
        for feature in features_by_example[example_index]:
            result = result_by_id.get(feature.unique_id)
            if result is None:
                raise ValueError(f"no result for feature {feature.unique_id} (question {example.qas_id})")
            start_logits = [float(logit) for logit in result.start_logits]
            end_logits = [float(logit) for logit in result.end_logits]
            for start_index in _best_indexes(start_logits, n_best_size):
                for end_index in _best_indexes(end_logits, n_best_size):
                    if _is_valid_span(feature, start_index, end_index, max_answer_length):
                        candidates.append((start_logits[start_index], end_logits[end_index], feature,
                                           start_index, end_index))
        # Stable sort: equal scores keep the order they were found in, as in Google's code.
        candidates.sort(key=lambda candidate: candidate[0] + candidate[1], reverse=True)

        entries, seen_texts = [], set()
        for start_logit, end_logit, feature, start_index, end_index in candidates:
            if len(entries) >= n_best_size:
                break
            text = _candidate_text(example, feature, start_index, end_index, do_lower_case)
            if text in seen_texts:
                continue
            seen_texts.add(text)
            entries.append({"text": text, "start_logit": start_logit, "end_logit": end_logit})
        if not entries:  # no valid span in any window (very rare)
            entries.append({"text": EMPTY_PREDICTION, "start_logit": 0.0, "end_logit": 0.0})

        probabilities = _softmax([entry["start_logit"] + entry["end_logit"] for entry in entries])
        nbest[example.qas_id] = [{"text": entry["text"], "probability": probability,
                                  "start_logit": entry["start_logit"], "end_logit": entry["end_logit"]}
                                 for entry, probability in zip(entries, probabilities)]
        predictions[example.qas_id] = entries[0]["text"]
    return predictions, nbest


def _best_indexes(logits, n_best_size):
    """Indices of the `n_best_size` largest logits, largest first (the lower index first on a tie)."""
    return sorted(range(len(logits)), key=logits.__getitem__, reverse=True)[:n_best_size]


def _is_valid_span(feature, start_index, end_index, max_answer_length):
    """A span the answer may be: inside the window's document tokens, starting in the start token's
    best-context window, not ending before it starts, and at most `max_answer_length` tokens long."""
    return (start_index in feature.token_to_orig_map and end_index in feature.token_to_orig_map
            and feature.token_is_max_context.get(start_index, False)
            and start_index <= end_index < start_index + max_answer_length)


def _candidate_text(example, feature, start_index, end_index, do_lower_case):
    """The original-text answer for tokens start_index..end_index of `feature`."""
    wordpiece_text = " ".join(feature.tokens[start_index:end_index + 1])
    wordpiece_text = wordpiece_text.replace(" ##", "").replace("##", "")  # re-join split words
    wordpiece_text = " ".join(wordpiece_text.split())
    first_word = feature.token_to_orig_map[start_index]
    last_word = feature.token_to_orig_map[end_index]
    orig_text = " ".join(example.doc_tokens[first_word:last_word + 1])
    return get_final_text(wordpiece_text, orig_text, do_lower_case)


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool) -> str:
    """The part of `orig_text` (original words) that the normalised prediction `pred_text` covers.

    The predicted tokens are lower-cased, accent-stripped and punctuation-split, and
    the original words may hold more than the answer ("Smith's" for "smith"). The
    original words are basic-tokenized the same way; with spaces removed, both
    texts have the same length when basic tokenization only changed case, accents
    or spacing, and then characters align one to one, giving the prediction's
    start and end in `orig_text`. When any step fails, all of `orig_text` is returned.
    """
    tokenized_text = " ".join(basic_tokenize(orig_text, do_lower_case))
    start = tokenized_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1

    orig_compact, orig_compact_to_full = _strip_spaces(orig_text)
    tokenized_compact, tokenized_compact_to_full = _strip_spaces(tokenized_text)
    if len(orig_compact) != len(tokenized_compact):
        return orig_text  # basic tokenization changed more than case, accents and spacing
    tokenized_full_to_compact = {full: compact for compact, full in enumerate(tokenized_compact_to_full)}

    # `start` and `end` are never spaces (`pred_text` has no outer spaces), so the maps hold them.
    if start not in tokenized_full_to_compact or end not in tokenized_full_to_compact:
        return orig_text
    orig_start = orig_compact_to_full[tokenized_full_to_compact[start]]
    orig_end = orig_compact_to_full[tokenized_full_to_compact[end]]
    return orig_text[orig_start:orig_end + 1]


def _strip_spaces(text):
    """(text without " ", position in `text` of each of its characters)."""
    kept = [index for index, char in enumerate(text) if char != " "]
    return "".join(text[index] for index in kept), kept


def _softmax(scores):
    largest = max(scores)
    exps = [math.exp(score - largest) for score in scores]
    total = sum(exps)
    return [value / total for value in exps]


def write_predictions(output_dir: str, predictions: dict[str, str], nbest: dict[str, list[dict]]) -> tuple[str, str]:
    """Write `predictions.json` and `nbest_predictions.json` into `output_dir`, each atomically.

    Returns the two paths.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = os.path.join(output_dir, PREDICTIONS_FILE), os.path.join(output_dir, NBEST_FILE)
    texts = [finite_json(content, path, indent=4) + "\n" for path, content in zip(paths, (predictions, nbest))]
    for path, text in zip(paths, texts):  # both checked before either is written
        write_text_atomic(text, path)
    return paths
