"""Fine-tuning examples and rows: the public formats read, labels mapped, texts tokenized and padded.

The library behind `src.create_finetune_data` (which writes the rows to
files), `predict.py` (which builds them from the user's text) and `run_ner.py`
(which builds them from CLUENER's distributed files): all three tokenize,
truncate and pad exactly alike.

`READERS` read TNEWS, CoLA and CLUENER2020 files as distributed (the formats
are listed in src/create_finetune_data.py, the command users run). A row
(`RowBuilder`) is {column: int64 array [S]}: input_ids, input_mask,
segment_ids of `[CLS] text [SEP]`, zero-padded, and label_ids: one class id
([1]), or (NER) one tag id per token ([S]), the tokens then being one per
character, so each tag stays on its character. The columns are src.columns'
"classifier" and "ner". No MindSpore import here.
"""

import dataclasses
import json
from collections.abc import Iterator, Sequence

import numpy as np

from src.errors import DataError
from src.files import read_json, read_text
from src.ner_tagging import TaggingError, label_list, spans_to_tags
from src.tokenization import FullTokenizer

COLA_TEST_HEADER = ("index", "sentence")
COLA_LABELS = ("0", "1")
COLA_COLUMNS = 4
# [CLS] and [SEP] around a single text.
SPECIAL_TOKENS_PER_TEXT = 2
OUTSIDE_TAG = "O"
# A record row: {column: int64 array}, each [S] or [1] (src.columns).
Row = dict[str, np.ndarray]


@dataclasses.dataclass
class Example:
    """One input record: its text, its label (class name, or CLUENER spans), and where it came from."""
    text: str
    label: object          # class label string; NER: list of (type, start, end_inclusive); None if unlabelled
    line: int
    raw: str               # the record as read, written back into split files


# ---------------------------------------------------------------- reading

def read_lines(path: str, flag: str = "") -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line of a UTF-8 file."""
    lines = read_text(path, flag).split("\n")
    return [(number, line) for number, line in enumerate(lines, 1) if line.strip()]


class Problems:
    """Records that cannot be used: raise at the first (`fail`) or count them (`skip`)."""

    def __init__(self, on_error: str):
        self.on_error = on_error
        self.skipped = []
        self.warnings = []   # records used, but changed (e.g. an overlapping entity dropped)

    def report(self, message: str) -> None:
        if self.on_error == "fail":
            raise DataError(message + " (--on_error=skip skips such records)")
        self.skipped.append(message)


def json_records(path: str, text_key: str, problems: Problems) -> Iterator[tuple[int, str, dict]]:
    """(line number, line, record) of each JSON-lines record that is an object with a string `text_key`."""
    for number, line in read_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.report(f"{path}:{number}: not a JSON object ({error.msg})")
            continue
        if not isinstance(record, dict) or not isinstance(record.get(text_key), str):
            problems.report(f"{path}:{number}: not a JSON object with a \"{text_key}\" string")
            continue
        yield number, line, record


def read_tnews(path: str, problems: Problems) -> list[Example]:
    examples = []
    for number, line, record in json_records(path, "sentence", problems):
        label = record.get("label")
        examples.append(Example(record["sentence"], None if label is None else str(label), number, line))
    return examples


def read_cola(path: str, problems: Problems) -> list[Example]:
    examples = []
    lines = read_lines(path)
    if lines and tuple(lines[0][1].split("\t")) == COLA_TEST_HEADER:  # the test file: index, sentence
        return [Example(line.split("\t", 1)[1], None, number, line) for number, line in lines[1:]]
    for number, line in lines:
        fields = line.split("\t")
        if len(fields) != COLA_COLUMNS:
            problems.report(f"{path}:{number}: expected {COLA_COLUMNS} tab-separated fields "
                            f"(source, label, original label, sentence), got {len(fields)}")
            continue
        examples.append(Example(fields[3], fields[1], number, line))
    return examples


def read_cluener(path: str, problems: Problems) -> list[Example]:
    examples = []
    for number, line, record in json_records(path, "text", problems):
        spans = cluener_spans(path, number, record["text"], record.get("label"), problems)
        if spans is not False:
            examples.append(Example(record["text"], spans, number, line))
    return examples


def cluener_spans(path: str, number: int, text: str, label: object,
                  problems: Problems) -> list[tuple[str, int, int]] | None | bool:
    """[(type, start, end_inclusive)] of a CLUENER label dict; None if unlabelled, False if invalid."""
    if label is None:
        return None
    try:
        located = [(entity_type, entity, int(start), int(end)) for entity_type, entities in label.items()
                   for entity, positions in entities.items() for start, end in positions]
    except (AttributeError, TypeError, ValueError):
        problems.report(f"{path}:{number}: \"label\" is not {{type: {{entity: [[start, end], ...]}}}}")
        return False
    for entity_type, entity, start, end in located:
        if not (0 <= start <= end < len(text)) or text[start:end + 1] != entity:
            problems.report(f"{path}:{number}: {entity_type} span [{start}, {end}] does not hold {entity!r} "
                            "in the text")
            return False
    return outermost_spans([(entity_type, start, end) for entity_type, _, start, end in located], problems,
                           f"{path}:{number}")


def outermost_spans(spans: list[tuple[str, int, int]], problems: Problems,
                    where: str) -> list[tuple[str, int, int]]:
    """Drop spans that overlap a longer one (one tag per character holds one entity): CLUENER's train
    file nests a company inside a book title once. Each drop is noted as a warning."""
    kept = []
    for span in sorted(spans, key=lambda span: (span[1] - span[2], span[1])):  # longest first
        if any(span[1] <= other[2] and other[1] <= span[2] for other in kept):
            problems.warnings.append(f"{where}: dropped {span}, which overlaps a longer entity")
        else:
            kept.append(span)
    return sorted(kept, key=lambda span: span[1])


READERS = {"tnews": read_tnews, "cola": read_cola, "cluener": read_cluener}


# ---------------------------------------------------------------- labels

def read_label_file(path: str, task: str) -> list:
    """Labels in id order from a TNEWS labels.json (JSON lines) or a CLUENER labels.json (a JSON list)."""
    if task == "cluener":
        labels = read_json(path, "--label_file", expected=list)
    else:
        try:
            labels = [str(json.loads(line)["label"]) for _, line in read_lines(path, "--label_file")]
        except (ValueError, KeyError, TypeError):
            raise DataError(f'--label_file {path}: expected JSON lines with a "label"') from None
    if len(set(labels)) != len(labels) or not labels:
        raise DataError(f"--label_file {path}: expected a non-empty list of distinct labels")
    return labels


def build_label_map(task: str, examples: list[Example], label_file: str, tag_scheme: str) -> dict[str, int]:
    """{label: id}: from the label file when given, else from the data (sorted, so it is reproducible)."""
    if task == "cola":
        return {label: index for index, label in enumerate(COLA_LABELS)}
    if task == "cluener":
        types = (read_label_file(label_file, task) if label_file else
                 sorted({span[0] for example in examples if example.label for span in example.label}))
        return {tag: index for index, tag in enumerate(label_list(types, tag_scheme))}
    labels = (read_label_file(label_file, task) if label_file else
              sorted({example.label for example in examples if example.label is not None}))
    return {label: index for index, label in enumerate(labels)}


# ---------------------------------------------------------------- rows

def pad(ids: Sequence[int], length: int) -> np.ndarray:
    """int64 [length]: `ids` followed by zeros."""
    values = np.zeros(length, np.int64)
    values[:len(ids)] = ids
    return values


def encode(token_ids: Sequence[int], max_seq_length: int) -> Row:
    """input_ids, input_mask, segment_ids of one `[CLS] ... [SEP]` sequence (already with its specials)."""
    return {"input_ids": pad(token_ids, max_seq_length),
            "input_mask": pad([1] * len(token_ids), max_seq_length),
            "segment_ids": np.zeros(max_seq_length, np.int64)}


class RowBuilder:
    """Examples -> rows: a class label per text, or (with `tag_scheme`) a tag per character;
    counts truncated texts."""

    def __init__(self, tokenizer: FullTokenizer, label_map: dict[str, int], max_seq_length: int, source: str,
                 tag_scheme: str | None = None):
        self.tokenizer, self.label_map, self.max_seq_length = tokenizer, label_map, max_seq_length
        self.source, self.tag_scheme = source, tag_scheme
        self.max_tokens = max_seq_length - SPECIAL_TOKENS_PER_TEXT
        self.truncated = 0

    def wrap(self, token_ids: list[int]) -> list[int]:
        return ([self.tokenizer.vocab["[CLS]"]] + token_ids[:self.max_tokens] + [self.tokenizer.vocab["[SEP]"]])

    def row(self, example: Example) -> Row:
        if self.tag_scheme:
            return self.tagging_row(example)
        tokens = self.tokenizer.tokenize(example.text)
        self.truncated += len(tokens) > self.max_tokens
        row = encode(self.wrap(self.tokenizer.convert_tokens_to_ids(tokens)), self.max_seq_length)
        row["label_ids"] = np.array([self.label_id(example, example.label)], np.int64)
        return row

    def tagging_row(self, example: Example) -> Row:
        self.truncated += len(example.text) > self.max_tokens
        row = encode(self.wrap(character_token_ids(self.tokenizer, example.text)), self.max_seq_length)
        try:
            tags = spans_to_tags(len(example.text), example.label or [], self.tag_scheme)
        except TaggingError as error:
            raise DataError(f"{self.source}:{example.line}: {error}") from None
        tag_ids = [self.label_id(example, tag) for tag in tags[:self.max_tokens]]
        outside = self.label_map[OUTSIDE_TAG]
        row["label_ids"] = pad([outside] + tag_ids + [outside], self.max_seq_length)
        row["label_ids"][len(tag_ids) + SPECIAL_TOKENS_PER_TEXT:] = outside
        return row

    def label_id(self, example: Example, label: str | None) -> int:
        if label is None:  # an unlabelled (test) record
            return 0
        if label not in self.label_map:
            raise DataError(f"{self.source}:{example.line}: label {label!r} is not in the label map "
                            f"({', '.join(list(self.label_map)[:20])}); check --label_file")
        return self.label_map[label]


def character_token_ids(tokenizer: FullTokenizer, text: str) -> list[int]:
    """One token id per character of `text` (NER): the character's own token, else [UNK]."""
    unk = tokenizer.vocab["[UNK]"]
    ids = []
    for char in text:
        tokens = tokenizer.tokenize(char)
        ids.append(tokenizer.vocab.get(tokens[0], unk) if len(tokens) == 1 else unk)
    return ids


def read_cluener_rows(path: str, vocab_file: str, label_map: dict[str, int], max_seq_length: int, tag_scheme: str,
                      do_lower_case: bool = True, on_error: str = "fail") -> tuple[list[Example], list[Row]]:
    """(examples, rows) of a CLUENER JSON file, as the converter would write them (for evaluation
    and CLUENER submissions straight from the distributed file; unlabelled records get all-O tags)."""
    examples = read_cluener(path, Problems(on_error))
    if not examples:
        raise DataError(f"{path}: no usable records")
    builder = RowBuilder(FullTokenizer(vocab_file, do_lower_case), label_map, max_seq_length, path, tag_scheme)
    return examples, [builder.row(example) for example in examples]

