"""Raw text -> BERT pretraining instances (masked LM + next sentence), Google BERT's recipe.

    python -m src.create_pretraining_data --input_file=data/corpus/en_sample.txt \\
        --output_dir=/tmp/pretrain_data --vocab_file=data/vocab/bert-base-uncased-vocab.txt

Input: text files (comma-separated, globs allowed), one sentence per line, a
blank line between documents. Output in `--output_dir`:

    part-00000-of-0000N.tfrecord   shards (or .mindrecord + .mindrecord.db)
    schema.json                    column types and shapes, the model zoo's format
    stats.json                     documents, instances, tokens, masked fractions, NSP balance

The recipe is Google's `create_pretraining_data.py`: the documents are shuffled;
each is cut `dupe_factor` times into pairs of segments filling up to
`max_seq_length` (`short_seq_prob` of them shorter); segment B is the true
continuation or, half the time, text from a random other document; the longer
segment is trimmed from a random end; then ~`masked_lm_prob` of the tokens
(at most `max_predictions_per_seq`) are chosen for prediction, 80% replaced by
[MASK], 10% by a random token, 10% left unchanged. With `--do_whole_word_mask`
a word's pieces are chosen together: `##` continuations in English, and in
Chinese the characters of one word as segmented by jieba (as Chinese-BERT-wwm).

Determinism: every (copy, document) pair draws from its own random generator
seeded by (`random_seed`, copy, document), so the output is byte-identical for
any `--num_workers`. Instances are kept in memory until the global shuffle, as
in Google's script: split very large corpora into several runs.

Outputs are written whole or not at all (`src.staging`): a failed or killed
run leaves the previous shards, schema and stats byte-identical. No shard is
ever empty: with fewer instances than `--num_output_shards`, one shard per
instance is written (with a note). Input files that the run would replace
are refused before any work.
"""

import argparse
import contextlib
import dataclasses
import glob
import json
import logging
import multiprocessing
import multiprocessing.pool
import os
import random
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

from src.columns import column_types
from src.config import bool_flag, command_parser
from src.errors import DataError, exit_on_user_error
from src.records import schema_json, write_mindrecord, write_tfrecord
from src.staging import check_inputs_are_not_outputs, staged_outputs
from src.tokenization import FullTokenizer, is_cjk

# Seconds between progress lines.
PROGRESS_INTERVAL = 5.0
# Documents per task handed to a worker process.
DOCUMENTS_PER_TASK = 64
# Tries to draw a random document other than the current one (Google's value).
RANDOM_DOCUMENT_TRIES = 10
# Google BERT's proportions: half the B segments from another document; of the
# tokens chosen for prediction, 80% become [MASK], and of the rest half a random
# token and half stay unchanged (10% / 10% overall).
RANDOM_NEXT_PROB = 0.5
MASK_TOKEN_PROB = 0.8
RANDOM_TOKEN_SHARE_OF_REST = 0.5
# Smallest sequence: [CLS] a [SEP] b [SEP].
MIN_SEQ_LENGTH = 5
SHARD_NAME = "part-{index:05d}-of-{count:05d}.{extension}"
SHARD_PATTERN = "part-*"
OTHER_OUTPUTS = ("schema.json", "stats.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = command_parser(__doc__.split("\n")[0])
    parser.add_argument("--input_file", required=True,
                        help="input text files: comma-separated paths or globs")
    parser.add_argument("--output_dir", required=True, help="directory for the shards, schema.json, stats.json")
    parser.add_argument("--vocab_file", required=True, help="WordPiece vocabulary, one token per line")
    parser.add_argument("--do_lower_case", type=bool_flag, default=True,
                        help="lower-case and strip accents (true for uncased and Chinese vocabularies)")
    parser.add_argument("--do_whole_word_mask", type=bool_flag, default=False,
                        help="mask whole words: ## pieces with their word; Chinese words by jieba")
    parser.add_argument("--max_seq_length", type=int, default=128, help="tokens per instance")
    parser.add_argument("--max_predictions_per_seq", type=int, default=20, help="masked positions per instance")
    parser.add_argument("--masked_lm_prob", type=float, default=0.15, help="fraction of tokens to mask")
    parser.add_argument("--dupe_factor", type=int, default=10,
                        help="times each document is used, with different masks")
    parser.add_argument("--short_seq_prob", type=float, default=0.1,
                        help="probability of a shorter target length")
    parser.add_argument("--random_seed", type=int, default=12345, help="seed of every random choice")
    parser.add_argument("--num_workers", type=int, default=1, help="worker processes")
    parser.add_argument("--num_output_shards", type=int, default=1,
                        help="output files (at least the number of devices that will read them)")
    parser.add_argument("--output_format", choices=["tfrecord", "mindrecord"], default="tfrecord",
                        help="shard file format")
    parser.add_argument("--on_decode_error", choices=["fail", "skip"], default="fail",
                        help="a line that is not UTF-8: stop, or skip it with a warning")
    parser.add_argument("--overwrite", type=bool_flag, default=False,
                        help="replace shards already in --output_dir")
    return parser.parse_args(argv)


@dataclasses.dataclass(frozen=True)
class MaskingOptions:
    """What `create_instances` needs, picklable for the worker processes."""
    max_seq_length: int
    max_predictions_per_seq: int
    masked_lm_prob: float
    short_seq_prob: float
    do_whole_word_mask: bool
    random_seed: int
    vocab_size: int
    cls_id: int
    sep_id: int
    mask_id: int


@dataclasses.dataclass
class Instance:
    """One training example before padding.

    `token_ids` is [CLS] A [SEP] B [SEP] with masking applied; segment A spans
    the first `segment_a_length` + 2 tokens.
    """
    token_ids: list
    segment_a_length: int
    masked_positions: list
    masked_labels: list
    is_random_next: bool


# A tokenized sentence: (token ids, for each token whether it starts a word; None without whole-word masking).
Segment = tuple[list[int], list[bool] | None]
# A tokenized document: its sentences.
Document = list[Segment]


# ---------------------------------------------------------------- reading

def expand_input_files(spec: str) -> list[str]:
    """The files of a comma-separated list of paths and globs, in order; a pattern matching nothing is a
    DataError."""
    files = []
    for pattern in [p for p in spec.split(",") if p.strip()]:
        matches = sorted(glob.glob(pattern.strip()))
        if not matches:
            raise DataError(f"--input_file: {pattern.strip()!r} matches no file")
        files.extend(matches)
    return files


def read_documents(files: list[str], on_decode_error: str) -> tuple[list[list[str]], int]:
    """Lines of each document, in file order; returns (documents, lines skipped as non-UTF-8)."""
    documents, skipped = [[]], 0
    for path in files:
        for number, raw in numbered_lines(path):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as error:
                if on_decode_error == "fail":
                    raise DataError(f"{path}: line {number}: not valid UTF-8 ({error.reason} at byte "
                                    f"{error.start}); pass --on_decode_error=skip to skip such lines") from None
                skipped += 1
                continue
            if line:
                documents[-1].append(line)
            elif documents[-1]:
                documents.append([])
        if documents[-1]:
            documents.append([])  # a new file starts a new document
    return [doc for doc in documents if doc], skipped


def numbered_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each line of `path`; an unreadable file is a DataError."""
    try:
        with open(path, "rb") as f:
            yield from enumerate(f, start=1)
    except OSError as error:
        raise DataError(f"--input_file {path}: cannot read ({error.strerror})") from None


# ------------------------------------------------- worker-process state
# Worker processes are forked; what they need is put here before the fork.
_STATE = {}


def _tokenize_documents(documents):
    """Lines -> segments (token ids, word-start flags or None); drops lines with no tokens."""
    tokenizer = _STATE["tokenizer"]
    whole_word = _STATE["do_whole_word_mask"]
    tokenized = []
    for lines in documents:
        segments = []
        for line in lines:
            tokens = tokenizer.tokenize(line)
            if tokens:
                starts = word_starts(tokens, line) if whole_word else None
                segments.append((tokenizer.convert_tokens_to_ids(tokens), starts))
        if segments:
            tokenized.append(segments)
    return tokenized


def word_starts(tokens: list[str], line: str) -> list[bool]:
    """For each token, whether it starts a word (a whole-word-masking unit).

    `##` pieces continue the previous word. A CJK character continues the word
    of the previous token when jieba puts both characters in one word.
    """
    starts = [not token.startswith("##") for token in tokens]
    if not any(is_cjk(char) for char in line):
        return starts
    word_of_char = []
    for index, word in enumerate(_jieba().cut(line)):
        word_of_char.extend([index] * len(word))
    position, previous_word = 0, None
    for k, token in enumerate(tokens):
        found = line.find(token, position) if len(token) == 1 and is_cjk(token) else -1
        if found < 0:
            previous_word = None
            continue
        starts[k] = word_of_char[found] != previous_word
        previous_word, position = word_of_char[found], found + 1
    return starts


def _jieba():
    if "jieba" not in _STATE:
        import jieba  # imported only for Chinese whole-word masking (loads a dictionary)
        jieba.setLogLevel(logging.WARNING)
        _STATE["jieba"] = jieba
    return _STATE["jieba"]


def _instances_for_documents(task):
    """Instances of every (copy, document) in `task`, each from its own seeded generator."""
    copy, first, last = task
    documents, options = _STATE["documents"], _STATE["options"]
    instances = []
    for index in range(first, last):
        rng = random.Random(f"{options.random_seed}-{copy}-{index}")
        instances.extend(create_instances(documents, index, options, rng))
    return instances


# ----------------------------------------------------------- instances

def create_instances(documents: list[Document], document_index: int, options: MaskingOptions,
                     rng: random.Random) -> list[Instance]:
    """Google BERT's `create_instances_from_document`: segment pairs from one document."""
    document = documents[document_index]
    max_num_tokens = options.max_seq_length - 3  # room for [CLS], [SEP], [SEP]
    target_length = max_num_tokens
    if rng.random() < options.short_seq_prob:
        target_length = rng.randint(2, max_num_tokens)

    instances, chunk, chunk_length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i][0])
        if i == len(document) - 1 or chunk_length >= target_length:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            segment_a = join_segments(chunk[:a_end])
            is_random_next = len(chunk) == 1 or rng.random() < RANDOM_NEXT_PROB
            if is_random_next:
                segment_b = random_continuation(documents, document_index, target_length - len(segment_a[0]), rng)
                i -= len(chunk) - a_end  # the unused sentences are used again
            else:
                segment_b = join_segments(chunk[a_end:])
            truncate_pair(segment_a, segment_b, max_num_tokens, rng)
            instances.append(masked_instance(segment_a, segment_b, is_random_next, options, rng))
            chunk, chunk_length = [], 0
        i += 1
    return instances


def join_segments(segments: list[Segment]) -> Segment:
    """Concatenate (ids, starts) sentences into one (ids, starts) pair of lists."""
    ids = [token for sentence_ids, _ in segments for token in sentence_ids]
    if segments[0][1] is None:
        return ids, None
    return ids, [start for _, sentence_starts in segments for start in sentence_starts]


def random_continuation(documents: list[Document], document_index: int, target_length: int,
                        rng: random.Random) -> list[Segment]:
    """Sentences from a random other document, from a random start, up to `target_length` tokens."""
    for _ in range(RANDOM_DOCUMENT_TRIES):
        random_index = rng.randint(0, len(documents) - 1)
        if random_index != document_index:
            break
    document = documents[random_index]
    start = rng.randint(0, len(document) - 1)
    picked, length = [], 0
    for sentence in document[start:]:
        picked.append(sentence)
        length += len(sentence[0])
        if length >= target_length:
            break
    return join_segments(picked)


def truncate_pair(segment_a: Segment, segment_b: Segment, max_num_tokens: int, rng: random.Random) -> None:
    """Trim the longer segment, from the front or the back at random, until the pair fits."""
    while len(segment_a[0]) + len(segment_b[0]) > max_num_tokens:
        ids, starts = segment_a if len(segment_a[0]) > len(segment_b[0]) else segment_b
        index = 0 if rng.random() < 0.5 else -1
        del ids[index]
        if starts is not None:
            del starts[index]


def masked_instance(segment_a: Segment, segment_b: Segment, is_random_next: bool, options: MaskingOptions,
                    rng: random.Random) -> Instance:
    """[CLS] A [SEP] B [SEP] with Google's masked-LM choices applied."""
    ids = [options.cls_id] + segment_a[0] + [options.sep_id] + segment_b[0] + [options.sep_id]
    if options.do_whole_word_mask:
        # A segment's first token always starts a word, even if trimmed mid-word.
        starts = [True] + [True] + segment_a[1][1:] + [True] + [True] + segment_b[1][1:] + [True]
    else:
        starts = [True] * len(ids)
    special = {0, len(segment_a[0]) + 1, len(ids) - 1}
    words = []
    for position in range(len(ids)):
        if position in special:
            continue
        if starts[position] or not words:
            words.append([position])
        else:
            words[-1].append(position)
    rng.shuffle(words)

    num_to_predict = min(options.max_predictions_per_seq,
                         max(1, int(round(len(ids) * options.masked_lm_prob))))
    labels = {}
    for word in words:
        if len(labels) >= num_to_predict:
            break
        if len(labels) + len(word) > num_to_predict:
            continue  # a whole word does not fit: try a shorter one
        for position in word:
            labels[position] = ids[position]
            if rng.random() < MASK_TOKEN_PROB:
                ids[position] = options.mask_id
            elif rng.random() < RANDOM_TOKEN_SHARE_OF_REST:
                pass  # keep the original token
            else:
                ids[position] = rng.randint(0, options.vocab_size - 1)
    positions = sorted(labels)
    return Instance(ids, len(segment_a[0]), positions, [labels[p] for p in positions], is_random_next)


# -------------------------------------------------------------- output

def features(instance: Instance, max_seq_length: int, max_predictions_per_seq: int) -> dict[str, np.ndarray]:
    """An instance as padded NumPy columns (src.columns' "pretraining" columns)."""
    length = len(instance.token_ids)
    input_ids = np.zeros(max_seq_length, np.int64)
    input_ids[:length] = instance.token_ids
    input_mask = (np.arange(max_seq_length) < length).astype(np.int64)
    segment_ids = ((np.arange(max_seq_length) >= instance.segment_a_length + 2) & (input_mask == 1)).astype(np.int64)
    count = len(instance.masked_positions)
    positions = np.zeros(max_predictions_per_seq, np.int64)
    positions[:count] = instance.masked_positions
    labels = np.zeros(max_predictions_per_seq, np.int64)
    labels[:count] = instance.masked_labels
    weights = (np.arange(max_predictions_per_seq) < count).astype(np.float32)
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids,
            "next_sentence_labels": np.array([int(instance.is_random_next)], np.int64),
            "masked_lm_positions": positions, "masked_lm_ids": labels, "masked_lm_weights": weights}


def written_columns(options: MaskingOptions) -> dict[str, tuple[str, int]]:
    """{name: (dtype, length)} of the rows written with MaskingOptions `options`."""
    return column_types("pretraining", options.max_seq_length, options.max_predictions_per_seq)


def _write_shard(task):
    """Write shard `index` of `count` (every `count`-th instance) into `directory`."""
    index, count, directory = task
    options, output_format = _STATE["options"], _STATE["output_format"]
    rows = [features(instance, options.max_seq_length, options.max_predictions_per_seq)
            for instance in _STATE["instances"][index::count]]
    name = SHARD_NAME.format(index=index, count=count, extension=output_format)
    path = os.path.join(directory, name)
    if output_format == "tfrecord":
        write_tfrecord(path, rows)
    else:
        write_mindrecord(path, rows, written_columns(options), "bert_pretraining")


def statistics(documents: list[Document], instances: list[Instance], mask_id: int, skipped_lines: int) -> dict:
    """stats.json: documents, instances, tokens, the masked fractions and the next-sentence balance."""
    tokens = sum(len(instance.token_ids) for instance in instances)
    masked = sum(len(instance.masked_positions) for instance in instances)
    replaced_by_mask = replaced_randomly = unchanged = 0
    for instance in instances:
        for position, label in zip(instance.masked_positions, instance.masked_labels):
            token = instance.token_ids[position]
            if token == mask_id:
                replaced_by_mask += 1
            elif token == label:
                unchanged += 1
            else:
                replaced_randomly += 1
    ratio = lambda part, whole: round(part / whole, 6) if whole else 0.0  # noqa: E731
    return {"documents": len(documents), "sentences": sum(len(doc) for doc in documents),
            "instances": len(instances), "tokens": tokens,
            "mean_tokens_per_instance": ratio(tokens, len(instances)),
            "masked_tokens": masked, "masked_fraction": ratio(masked, tokens),
            "masked_as_mask_token": ratio(replaced_by_mask, masked),
            "masked_as_random_token": ratio(replaced_randomly, masked),
            "masked_unchanged": ratio(unchanged, masked),
            "next_sentence_random_fraction": ratio(sum(i.is_random_next for i in instances), len(instances)),
            "skipped_non_utf8_lines": skipped_lines}


# ---------------------------------------------------------------- main

class Progress:
    """Prints `stage: done/total, rate/s, ETA` at most every PROGRESS_INTERVAL seconds."""

    def __init__(self, stage: str, total: int, unit: str):
        self.stage, self.total, self.unit = stage, total, unit
        self.start = self.last = time.time()

    def update(self, done: int, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        print(f"{self.stage}: {done}/{self.total} {self.unit}, {rate:.0f} {self.unit}/s, ETA {eta:.0f}s",
              file=sys.stderr, flush=True)


def run_tasks(pool: multiprocessing.pool.Pool | None, function: Callable, tasks: list, progress: Progress,
              measure: Callable = len) -> list:
    """Map `function` over `tasks` in order (in `pool` when given), reporting progress."""
    results, done = [], 0
    mapped = pool.imap(function, tasks) if pool else map(function, tasks)
    for result in mapped:
        results.append(result)
        done += measure(result)
        progress.update(done)
    progress.update(done, force=True)
    return results


def generate(args: argparse.Namespace) -> list[Instance]:
    """Check the options and paths, then make the instances and write them; returns the instances."""
    check_options(args)
    tokenizer = FullTokenizer(args.vocab_file, args.do_lower_case)
    files = expand_input_files(args.input_file)
    check_output_dir(args, files)
    with staged_outputs(args.output_dir, replaced=(SHARD_PATTERN,)) as staging:
        instances, options, stats = create_all_instances(args, tokenizer, files)
        write_outputs(args, staging, options, instances, stats)
    print(f"wrote {len(instances)} instances in {stats['shards']} {args.output_format} shards to "
          f"{args.output_dir}: masked fraction {stats['masked_fraction']:.3f}, "
          f"random next sentence {stats['next_sentence_random_fraction']:.3f}", file=sys.stderr)
    return instances


def create_all_instances(args: argparse.Namespace, tokenizer: FullTokenizer,
                         files: list[str]) -> tuple[list[Instance], MaskingOptions, dict]:
    """Read, tokenize, shuffle, cut and mask: (instances in their final order, MaskingOptions, stats)."""
    text_documents, skipped = read_documents(files, args.on_decode_error)
    if skipped:
        print(f"warning: skipped {skipped} lines that are not valid UTF-8", file=sys.stderr)
    if not text_documents:
        raise DataError(f"--input_file: no text in {', '.join(files)}")
    print(f"read {len(files)} files: {len(text_documents)} documents", file=sys.stderr)

    _STATE.update(tokenizer=tokenizer, do_whole_word_mask=args.do_whole_word_mask)
    chunks = [text_documents[i:i + DOCUMENTS_PER_TASK] for i in range(0, len(text_documents), DOCUMENTS_PER_TASK)]
    with pool_of(args.num_workers) as pool:
        tokenized = run_tasks(pool, _tokenize_documents, chunks,
                              Progress("tokenizing", len(text_documents), "documents"))
    documents = [document for chunk in tokenized for document in chunk]
    if not documents:
        raise DataError(f"--input_file: no tokens in {', '.join(files)}")
    random.Random(args.random_seed).shuffle(documents)

    options = MaskingOptions(args.max_seq_length, args.max_predictions_per_seq, args.masked_lm_prob,
                             args.short_seq_prob, args.do_whole_word_mask, args.random_seed,
                             len(tokenizer.vocab), tokenizer.vocab["[CLS]"], tokenizer.vocab["[SEP]"],
                             tokenizer.vocab["[MASK]"])
    _STATE.update(documents=documents, options=options)
    tasks = [(copy, first, min(first + DOCUMENTS_PER_TASK, len(documents)))
             for copy in range(args.dupe_factor) for first in range(0, len(documents), DOCUMENTS_PER_TASK)]
    with pool_of(args.num_workers) as pool:
        per_task = run_tasks(pool, _instances_for_documents, tasks,
                             Progress("creating instances", len(tasks) * DOCUMENTS_PER_TASK, "documents"),
                             measure=lambda _: DOCUMENTS_PER_TASK)
    instances = [instance for task_instances in per_task for instance in task_instances]
    random.Random(args.random_seed).shuffle(instances)
    return instances, options, statistics(documents, instances, options.mask_id, skipped)


def check_options(args: argparse.Namespace) -> None:
    if args.max_seq_length < MIN_SEQ_LENGTH:
        raise DataError(f"--max_seq_length must be at least {MIN_SEQ_LENGTH}, got {args.max_seq_length}")
    if not 0.0 < args.masked_lm_prob < 1.0:
        raise DataError(f"--masked_lm_prob must be in (0, 1), got {args.masked_lm_prob}")
    if not 0.0 <= args.short_seq_prob <= 1.0:
        raise DataError(f"--short_seq_prob must be in [0, 1], got {args.short_seq_prob}")
    for flag in ("max_predictions_per_seq", "dupe_factor", "num_workers", "num_output_shards"):
        if getattr(args, flag) < 1:
            raise DataError(f"--{flag} must be at least 1, got {getattr(args, flag)}")


def check_output_dir(args: argparse.Namespace, input_files: list[str]) -> None:
    """Before any work: old shards need --overwrite, and no input may be one of the outputs."""
    existing = sorted(glob.glob(os.path.join(glob.escape(args.output_dir), SHARD_PATTERN)))
    if existing and not args.overwrite:
        raise DataError(f"--output_dir {args.output_dir} already holds shards ({os.path.basename(existing[0])}, "
                        "...); choose another directory or pass --overwrite=true")
    check_inputs_are_not_outputs({"--input_file": input_files, "--vocab_file": [args.vocab_file]},
                                 args.output_dir, (SHARD_PATTERN,) + OTHER_OUTPUTS)


def pool_of(num_workers: int) -> contextlib.AbstractContextManager:
    """A pool of forked workers (they inherit _STATE), or a stand-in context with no pool for one worker."""
    if num_workers == 1:
        return _NoPool()
    return multiprocessing.get_context("fork").Pool(num_workers)


class _NoPool:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def write_outputs(args: argparse.Namespace, staging: str, options: MaskingOptions, instances: list[Instance],
                  stats: dict) -> None:
    """Write the shards, schema.json and stats.json into `staging` (moved into place by `staged_outputs`)."""
    stats["shards"] = shard_count(args.num_output_shards, len(instances))
    _STATE.update(instances=instances, output_format=args.output_format)
    tasks = [(index, stats["shards"], staging) for index in range(stats["shards"])]
    with pool_of(min(args.num_workers, stats["shards"])) as pool:
        run_tasks(pool, _write_shard, tasks, Progress("writing", len(tasks), "shards"), measure=lambda _: 1)
    schema = schema_json(written_columns(options), len(instances))
    for name, value in zip(OTHER_OUTPUTS, (schema, stats)):
        with open(os.path.join(staging, name), "w", encoding="utf-8") as f:
            json.dump(value, f, indent=2)


def shard_count(requested: int, num_instances: int) -> int:
    """`requested`, or one shard per instance when there are fewer: an empty shard would only fail later."""
    if num_instances >= requested:
        return requested
    print(f"note: {num_instances} instances: writing {num_instances} shards instead of "
          f"--num_output_shards={requested}, so that none is empty", file=sys.stderr)
    return num_instances


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    generate(parse_args(argv))


if __name__ == "__main__":
    main()
