"""Public fine-tuning data -> TFRecord (or MindRecord) files with the model zoo's columns.

    python -m src.create_finetune_data --task=tnews --input_file=tnews/train.json \\
        --label_file=tnews/labels.json --vocab_file=data/vocab/bert-base-chinese-vocab.txt \\
        --output_dir=/tmp/tnews --dev_fraction=0.1

Tasks and their input formats (as distributed):

    tnews    CLUE JSON lines {"sentence", "label", "label_desc", ...}; labels.json
             (JSON lines {"label", "label_desc"}) fixes the label ids
    cola     GLUE TSV without header: source, label, original label, sentence
             (the test file: a header "index<TAB>sentence", no labels)
    cluener  CLUENER2020 JSON lines {"text", "label": {type: {entity: [[start, end]]}}},
             end inclusive; labels.json (a JSON list of types) fixes the tag ids
    squad    SQuAD v1.1 JSON; features as Google BERT's run_squad.py builds them

Written to `--output_dir`, for each split (`train`, and `dev` with
`--dev_fraction`; or the one named by `--split`):

    {split}.tfrecord        rows: input_ids, input_mask, segment_ids and
                            label_ids (classification: [1]; NER: one tag per token),
                            or SQuAD's start/end positions (train) / unique_ids (dev)
    {split}_schema.json     the columns' types and lengths (model zoo format)
    {split}.json / .tsv     with --dev_fraction: the split's input records, in
                            the input's own format (what evaluation and
                            CLUENER submissions read)
    label2id.json           label (or tag) -> id
    stats.json              counts: examples, rows, skipped, truncated

Classification inputs are `[CLS] sentence [SEP]` (WordPiece). NER inputs are
`[CLS]` + one token per character + `[SEP]`, so each tag stays on its
character: a character missing from the vocabulary (or a space) is `[UNK]`.
Texts longer than `max_seq_length` - 2 are truncated (counted and reported).
Data errors name file:line; `--on_error=skip` skips such records and counts
them instead of stopping.

All outputs of a run are written whole or not at all (`src.staging`): a run
that fails leaves the previous files of `--output_dir` byte-identical and
nothing new. An input file that the run would replace is refused before any
work, and no split is ever written empty.
"""

import argparse
import json
import os
import random
import sys
from collections.abc import Iterable

from src.columns import column_types
from src.config import bool_flag, command_parser
from src.errors import DataError, exit_on_user_error
from src.featurization import READERS, SPECIAL_TOKENS_PER_TEXT, Example, Problems, Row, RowBuilder, build_label_map
from src.files import read_json
from src.ner_tagging import SCHEMES
from src.records import schema_json, write_mindrecord, write_tfrecord
from src.staging import check_inputs_are_not_outputs, staged_outputs
from src.tokenization import FullTokenizer

TASKS = ("tnews", "cola", "cluener", "squad")
EXTENSIONS = {"tfrecord": "tfrecord", "mindrecord": "mindrecord"}
LABEL_MAP_NAME = "label2id.json"
STATS_NAME = "stats.json"
# Skipped records and warnings printed (all are in stats.json).
MESSAGES_SHOWN = 10


# ---------------------------------------------------------------- splitting and writing

def split_examples(examples: list[Example], dev_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, dev): a seeded random `dev_fraction` of the examples, both in input order."""
    if not dev_fraction:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    dev_indices = set(order[:round(len(examples) * dev_fraction)])
    if not 0 < len(dev_indices) < len(examples):
        empty = "dev" if not dev_indices else "train"
        raise DataError(f"--dev_fraction {dev_fraction}: {len(examples)} examples leave the {empty} split empty")
    return ([e for i, e in enumerate(examples) if i not in dev_indices],
            [e for i, e in enumerate(examples) if i in dev_indices])


def records_name(split: str, output_format: str) -> str:
    return f"{split}.{EXTENSIONS[output_format]}"


def schema_name(split: str) -> str:
    return f"{split}_schema.json"


def raw_name(split: str, task: str) -> str:
    """The split's input records, in the input's own format."""
    return f"{split}.{'tsv' if task == 'cola' else 'json'}"


def output_names(args: argparse.Namespace) -> list[str]:
    """Names (fnmatch patterns) of every file a run with `args` writes into --output_dir."""
    splits = ("train", "dev") if args.dev_fraction else (args.split,)
    names = [STATS_NAME] + ([] if args.task == "squad" else [LABEL_MAP_NAME])
    for split in splits:
        names += [records_name(split, args.output_format) + "*", schema_name(split)]  # * : MindRecord's .db
        names += [raw_name(split, args.task)] if args.dev_fraction else []
    return names


def write_rows(output_dir: str, split: str, rows: Iterable[Row], columns: dict[str, tuple[str, int]],
               output_format: str, source: str) -> int:
    """Write `rows` (any iterable: TFRecords are written as they come) of `columns` ({name: (dtype, length)})
    and the split's schema; returns the number of rows. No rows: DataError naming `source` (an empty file
    would only fail later)."""
    path = os.path.join(output_dir, records_name(split, output_format))
    counted = CountingIterator(rows)
    if output_format == "tfrecord":
        write_tfrecord(path, counted)
    else:
        write_mindrecord(path, list(counted), columns, "bert_finetune")
    if not counted.count:
        raise DataError(f"{source}: no rows for the {split} split")
    write_json(schema_json(columns, counted.count), os.path.join(output_dir, schema_name(split)))
    return counted.count


class CountingIterator:
    """Iterates over `items`, counting them (a generator of rows has no len)."""

    def __init__(self, items: Iterable):
        self.items, self.count = iter(items), 0

    def __iter__(self):
        for item in self.items:
            self.count += 1
            yield item


def write_json(value: object, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_raw(output_dir: str, split: str, examples: list[Example], task: str) -> None:
    with open(os.path.join(output_dir, raw_name(split, task)), "w", encoding="utf-8") as f:
        f.writelines(example.raw + "\n" for example in examples)


def convert_labelled_task(args: argparse.Namespace, output_dir: str, problems: Problems) -> dict:
    """tnews, cola, cluener: read, split, label-map, write into `output_dir`; returns the stats dict."""
    examples = READERS[args.task](args.input_file, problems)
    if not examples:
        raise DataError(f"{args.input_file}: no usable records")
    label_map = build_label_map(args.task, examples, args.label_file, args.tag_scheme)
    tokenizer = FullTokenizer(args.vocab_file, args.do_lower_case)
    builder = RowBuilder(tokenizer, label_map, args.max_seq_length, args.input_file,
                         args.tag_scheme if args.task == "cluener" else None)
    splits = dict(zip(("train", "dev"), split_examples(examples, args.dev_fraction, args.split_seed)))
    if not args.dev_fraction:
        splits = {args.split: examples}
    columns = column_types("ner" if args.task == "cluener" else "classifier", args.max_seq_length)
    stats = {"task": args.task, "input_file": args.input_file, "examples": len(examples), "splits": {}}
    for split, split_examples_ in splits.items():
        rows = (builder.row(example) for example in split_examples_)
        count = write_rows(output_dir, split, rows, columns, args.output_format, args.input_file)
        if args.dev_fraction:
            write_raw(output_dir, split, split_examples_, args.task)
        stats["splits"][split] = {"rows": count, "file": records_name(split, args.output_format)}
    write_json(label_map, os.path.join(output_dir, LABEL_MAP_NAME))
    stats["num_labels"] = len(label_map)
    stats["truncated"] = builder.truncated
    return stats


def convert_squad_task(args: argparse.Namespace, output_dir: str, problems: Problems) -> dict:
    """squad: split by article (with --dev_fraction), then training features for `train`,
    evaluation features (with unique_ids) for `dev`, written into `output_dir`; returns the stats dict."""
    from src import squad
    splits = {args.split: args.input_file}
    if args.dev_fraction:
        splits = split_squad_file(args.input_file, output_dir, args.dev_fraction, args.split_seed)
    tokenizer = FullTokenizer(args.vocab_file, args.do_lower_case)
    stats = {"task": "squad", "input_file": args.input_file, "splits": {}}
    for split, path in splits.items():
        is_training = split == "train"
        examples, skipped = squad.read_squad_examples(path, is_training, args.on_error)
        problems.skipped += [f"{path}: question without a locatable answer"] * skipped
        rows = (squad.feature_row(feature, is_training) for feature in squad.iter_features(
            examples, tokenizer, is_training, args.max_seq_length, args.doc_stride, args.max_query_length))
        columns = column_types("squad training" if is_training else "squad evaluation", args.max_seq_length)
        count = write_rows(output_dir, split, rows, columns, args.output_format, args.input_file)
        stats["splits"][split] = {"questions": len(examples), "rows": count,
                                  "file": records_name(split, args.output_format)}
    return stats


def split_squad_file(path: str, output_dir: str, dev_fraction: float, seed: int) -> dict[str, str]:
    """Write train.json and dev.json (SQuAD format) holding a seeded random `dev_fraction` of the
    articles in dev.json (at least one); returns {split: path}."""
    dataset = read_json(path)
    articles = dataset.get("data")
    if not isinstance(articles, list):
        raise DataError(f"{path}: not a SQuAD JSON file (an object with a \"data\" list)")
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    dev_indices = set(order[:max(1, round(len(articles) * dev_fraction))])
    if len(dev_indices) == len(articles):
        raise DataError(f"{path}: {len(articles)} articles cannot be split into train and dev")
    paths = {}
    for split, keep in (("train", False), ("dev", True)):
        subset = [article for index, article in enumerate(articles) if (index in dev_indices) == keep]
        paths[split] = os.path.join(output_dir, raw_name(split, "squad"))
        write_json({"data": subset, "version": dataset.get("version", "1.1")}, paths[split])
    return paths


# ---------------------------------------------------------------- command line

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = command_parser(__doc__.split("\n")[0])
    parser.add_argument("--task", required=True, choices=TASKS, help="input format")
    parser.add_argument("--input_file", required=True, help="the task's data file, as distributed")
    parser.add_argument("--output_dir", required=True, help="where the records, schemas and label map go")
    parser.add_argument("--vocab_file", required=True, help="WordPiece vocabulary of the model to fine-tune")
    parser.add_argument("--label_file", default="",
                        help="tnews/cluener labels.json fixing the label ids; \"\": the data's labels, sorted")
    parser.add_argument("--do_lower_case", type=bool_flag, default=True,
                        help="lower-case and strip accents (true for uncased and Chinese vocabularies)")
    parser.add_argument("--max_seq_length", type=int, default=None,
                        help="tokens per row (default: 384 for squad, else 128)")
    parser.add_argument("--tag_scheme", choices=SCHEMES, default="BIO",
                        help="cluener: BIO, BIOES, or BMES (the model zoo's S_/B_/M_/E_)")
    parser.add_argument("--doc_stride", type=int, default=128, help="squad: tokens between window starts")
    parser.add_argument("--max_query_length", type=int, default=64, help="squad: question tokens kept")
    parser.add_argument("--dev_fraction", type=float, default=0.0,
                        help="hold out this fraction as a dev split (squad: of the articles)")
    parser.add_argument("--split_seed", type=int, default=12345, help="seed of the dev split")
    parser.add_argument("--split", choices=("train", "dev"), default="train",
                        help="without --dev_fraction: the name of the one split written "
                             "(squad: train = training features, dev = evaluation features)")
    parser.add_argument("--output_format", choices=tuple(EXTENSIONS), default="tfrecord", help="file format")
    parser.add_argument("--on_error", choices=("fail", "skip"), default="fail",
                        help="a malformed or inconsistent record: stop, or skip it and count it")
    args = parser.parse_args(argv)
    if args.max_seq_length is None:
        args.max_seq_length = 384 if args.task == "squad" else 128
    return args


def check_args(args: argparse.Namespace) -> None:
    if not 0.0 <= args.dev_fraction < 1.0:
        raise DataError(f"--dev_fraction: expected a fraction in [0, 1), got {args.dev_fraction}")
    if args.max_seq_length <= SPECIAL_TOKENS_PER_TEXT:
        raise DataError(f"--max_seq_length: expected more than {SPECIAL_TOKENS_PER_TEXT}, got {args.max_seq_length}")
    if not os.path.isfile(args.input_file):
        raise DataError(f"--input_file {args.input_file}: no such file")
    inputs = {"--input_file": [args.input_file], "--vocab_file": [args.vocab_file]}
    if args.label_file:
        inputs["--label_file"] = [args.label_file]
    check_inputs_are_not_outputs(inputs, args.output_dir, output_names(args))


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    check_args(args)
    problems = Problems(args.on_error)
    convert = convert_squad_task if args.task == "squad" else convert_labelled_task
    with staged_outputs(args.output_dir) as staging:
        stats = convert(args, staging, problems)
        stats["skipped"], stats["warnings"] = len(problems.skipped), problems.warnings
        write_json(stats, os.path.join(staging, STATS_NAME))
    report(args, stats, problems)
    return stats


def report(args: argparse.Namespace, stats: dict, problems: Problems) -> None:
    """What was written (printed once it is in place), skipped records, warnings and truncation."""
    for split, counts in stats["splits"].items():
        what = (f"{counts['questions']} questions, {counts['rows']} windows" if "questions" in counts
                else f"{counts['rows']} rows")
        print(f"{split}: {what} -> {os.path.join(args.output_dir, counts['file'])}")
    for message in problems.skipped[:MESSAGES_SHOWN] + problems.warnings[:MESSAGES_SHOWN]:
        print(f"warning: {message}", file=sys.stderr)
    if problems.skipped:
        print(f"warning: skipped {len(problems.skipped)} records", file=sys.stderr)
    if stats.get("truncated"):
        print(f"warning: {stats['truncated']} inputs longer than {args.max_seq_length - 2} tokens were truncated",
              file=sys.stderr)


if __name__ == "__main__":
    main()
