"""Predict with a fine-tuned model: text in, JSON lines out.

    python predict.py --task=classifier --config=OUT/classifier.yaml --checkpoint=OUT/classifier.ckpt \\
        --vocab_file=VOCAB [--input_file=FILE] [--output_file=FILE]

`--config` is the `<task>.yaml` that fine-tuning wrote next to `<task>.ckpt`
(the model, the labels and the tokenization settings). Input (a file, or
standard input): one text per line for `classifier` and `ner`; for `squad`,
JSON lines {"question", "context"[, "id"]}. Output, one JSON line per input
line, in order:

    classifier  {"line", "text", "label", "probability"}
    ner         {"line", "text", "entities": [{"type", "text", "start", "end"}]}
                (character offsets, end inclusive, as CLUENER writes them)
    squad       {"line", "id", "answer", "probability"}

Inputs run sorted by length, each batch cut to the shortest of `--bucket_list`
(by default the task YAML's, as in evaluation) that holds it; the results are
those of a run at full length, in input order.

Empty lines give {"line", "skipped": "empty line"}. Inputs longer than the
model's sequence are truncated (classifier, ner; a warning counts them) or
split into windows (squad), exactly as in training and evaluation: the
tokenization and the post-processing are those of the run scripts.

Checked before any work: the output file is none of the input files and can be
written (it is written whole, or left as it was); the vocabulary fits the
model's embedding rows; the labels match the model's classes.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import yaml

from src import squad
from src.bert_model import BertConfig
from src.config import Config, bool_flag, command_parser, read_yaml
from src.dataset import bucket_lengths
from src.device import AUTO, TARGETS, init_device, job_target
from src.errors import UserError, exit_on_user_error
from src.featurization import SPECIAL_TOKENS_PER_TEXT, Example, RowBuilder
from src.files import finite_json, write_text_atomic
from src.finetune import check_vocabulary, predict, rows_dataset, warn_truncated
from src.ner_tagging import tags_to_spans
from src.tasks import TASKS, load_predictor, read_task_file
from src.tokenization import FullTokenizer

INPUT_FLAGS = ("input_file", "config", "checkpoint", "vocab_file")
STANDARD_STREAM = "-"
REPO_DIR = os.path.dirname(os.path.abspath(__file__))


class PredictError(UserError):
    """Bad input or options for prediction."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = command_parser(__doc__.split("\n")[0])
    parser.add_argument("--task", required=True, choices=tuple(TASKS), help="what the model was fine-tuned for")
    parser.add_argument("--config", required=True, help="the <task>.yaml written with the fine-tuned checkpoint")
    parser.add_argument("--checkpoint", required=True, help="the fine-tuned <task>.ckpt")
    parser.add_argument("--vocab_file", required=True, help="the vocabulary the model was trained with")
    parser.add_argument("--input_file", default="-", help="input text; - is standard input")
    parser.add_argument("--output_file", default="-", help="JSON lines output; - is standard output")
    parser.add_argument("--batch_size", type=int, default=32, help="inputs per forward pass")
    parser.add_argument("--bucket_list", type=length_list, default=None,
                        help="batches are cut to the shortest of these lengths (seq_length added) that holds "
                             "them, e.g. [32,64,128]; [] for none (default: bucket_list of task_<task>_config.yaml)")
    parser.add_argument("--device_target", choices=(AUTO, *TARGETS), default=AUTO,
                        help="device; auto: Ascend, else GPU, else CPU, as this machine can use")
    parser.add_argument("--device_id", type=int, default=0, help="device to use; a launcher's DEVICE_ID wins")
    parser.add_argument("--graph_mode", type=bool_flag, default=True, help="compile the model (fast) or not")
    args = parser.parse_args(argv)
    if args.bucket_list is None:
        args.bucket_list = read_yaml(os.path.join(REPO_DIR, f"task_{args.task}_config.yaml"))["bucket_list"]
    return args


def length_list(text: str) -> list[int]:
    """argparse `type` of --bucket_list: a list of whole numbers such as [32,64,128]."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not (isinstance(value, list) and all(type(item) is int for item in value)):
        raise argparse.ArgumentTypeError(f"expected a list of lengths such as [32,64,128], got {text!r}")
    return value


def read_task_config(path: str, task: str, device_target: str) -> tuple[BertConfig, dict]:
    """(BertConfig for `device_target`, {setting: value}) of a fine-tuned model's `<task>.yaml`, whose task
    must be `task` and whose labels, for a labelled task, must name its num_class outputs."""
    record = read_task_file(path, "--config")
    if record.task != task:
        raise PredictError(f"--config {path} describes a {record.task!r} model, not --task={task}")
    settings = record.values
    if TASKS[task].labelled:
        labels, num_class = settings.get("labels"), settings.get("num_class")
        if not (isinstance(labels, list) and len(labels) == num_class):
            raise PredictError(f"--config {path}: expected labels: a list of num_class ({num_class}) names")
    return record.bert_config(device_target), settings


def same_file(path: str, other: str) -> bool:
    """Whether two paths name one existing file, through links and however spelled."""
    return os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other)


def check_output_file(args: argparse.Namespace) -> None:
    """Before any work: --output_file must be none of the input files (writing it would destroy one,
    however the two paths are spelled) and must be writable as a file."""
    output = args.output_file
    if output == STANDARD_STREAM:
        return
    for flag in INPUT_FLAGS:
        source = getattr(args, flag)
        if source != STANDARD_STREAM and same_file(source, output):
            raise PredictError(f"--output_file {output} is --{flag} {source}: give another output file")
    if os.path.isdir(output):
        raise PredictError(f"--output_file {output}: is a directory, expected a file name")
    directory = os.path.dirname(os.path.abspath(output))
    while not os.path.isdir(directory):   # directories still to be made are made in the first existing one
        directory = os.path.dirname(directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PredictError(f"--output_file {output}: cannot write in {directory}")


def read_inputs(path: str) -> list[tuple[int, str]]:
    """(line number, text) of every input line; the input must be UTF-8."""
    stream = sys.stdin.buffer if path == STANDARD_STREAM else open(path, "rb")
    try:
        lines = []
        for number, raw in enumerate(stream, 1):
            try:
                lines.append((number, raw.decode("utf-8").rstrip("\r\n")))
            except UnicodeDecodeError as error:
                raise PredictError(f"{'stdin' if path == STANDARD_STREAM else path}:{number}: not UTF-8 "
                                   f"({error.reason} at byte {error.start})") from None
        return lines
    except OSError as error:
        raise PredictError(f"--input_file {path}: cannot read ({error.strerror})") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def predict_rows(task: str, config: BertConfig, settings: dict, rows: list[dict], args: argparse.Namespace,
                 token_outputs: bool = False) -> list[np.ndarray]:
    """The fine-tuned predictor's outputs for `task`'s in-memory evaluation rows, in order: run sorted by
    length, in batches of --batch_size cut to --bucket_list (src.finetune.predict); `token_outputs`: one
    output per token."""
    model = load_predictor(task, config, settings, args.checkpoint)
    dataset = rows_dataset(rows, TASKS[task].evaluation_columns, args.batch_size)
    _, outputs = predict(model, dataset, bucket_list=args.bucket_list, token_outputs=token_outputs)
    return outputs


# Each task's prediction: (line number, text) of the non-empty input lines -> (a result per line, in order,
# the number of inputs truncated to the model's sequence).

def classify(lines: list[tuple[int, str]], config: BertConfig, settings: dict, args: argparse.Namespace,
             tokenizer: FullTokenizer) -> tuple[list[dict], int]:
    labels = settings["labels"]
    builder = RowBuilder(tokenizer, {label: index for index, label in enumerate(labels)}, config.seq_length,
                         args.input_file)
    rows = [builder.row(Example(text, None, number, text)) for number, text in lines]
    (probabilities,) = predict_rows("classifier", config, settings, rows, args)
    results = [{"line": number, "text": text, "label": labels[int(p.argmax())], "probability": float(p.max())}
               for (number, text), p in zip(lines, probabilities)]
    return results, builder.truncated


def tag(lines: list[tuple[int, str]], config: BertConfig, settings: dict, args: argparse.Namespace,
        tokenizer: FullTokenizer) -> tuple[list[dict], int]:
    labels = settings["labels"]
    builder = RowBuilder(tokenizer, {label: index for index, label in enumerate(labels)}, config.seq_length,
                         args.input_file, settings["tag_scheme"])
    rows = [builder.row(Example(text, None, number, text)) for number, text in lines]
    (tag_ids,) = predict_rows("ner", config, settings, rows, args, token_outputs=True)
    results = []
    for (number, text), ids in zip(lines, tag_ids):
        length = min(len(text), config.seq_length - SPECIAL_TOKENS_PER_TEXT)
        spans = tags_to_spans([labels[i] for i in ids[1:1 + length]], settings["tag_scheme"])
        entities = [{"type": kind, "text": text[start:end + 1], "start": start, "end": end}
                    for kind, start, end in sorted(spans, key=lambda span: span[1])]
        results.append({"line": number, "text": text, "entities": entities})
    return results, builder.truncated


def answer(lines: list[tuple[int, str]], config: BertConfig, settings: dict, args: argparse.Namespace,
           tokenizer: FullTokenizer) -> tuple[list[dict], int]:
    examples = [question_example(number, text, args.input_file) for number, text in lines]
    features = list(squad.iter_features(examples, tokenizer, False, config.seq_length, settings["doc_stride"],
                                        settings["max_query_length"]))
    rows = [squad.feature_row(feature, is_training=False) for feature in features]
    outputs = predict_rows("squad", config, settings, rows, args, token_outputs=True)
    raw = [squad.RawResult(feature.unique_id, start.tolist(), end.tolist())
           for feature, start, end in zip(features, *outputs)]
    answers, nbest = squad.make_predictions(examples, features, raw, settings["n_best_size"],
                                            settings["max_answer_length"], settings["do_lower_case"])
    results = [{"line": number, "id": example.qas_id, "answer": answers[example.qas_id],
                "probability": nbest[example.qas_id][0]["probability"]}
               for (number, _), example in zip(lines, examples)]
    return results, 0


def question_example(number: int, text: str, source: str) -> squad.SquadExample:
    """A SQuAD example from one JSON line {"question", "context"[, "id"]}."""
    try:
        record = json.loads(text)
        question, context = record["question"], record["context"]
        if not (isinstance(question, str) and isinstance(context, str)):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise PredictError(f"{source}:{number}: expected a JSON object with \"question\" and \"context\" "
                           "strings") from None
    return squad.SquadExample(qas_id=str(record.get("id", number)), question_text=question,
                              doc_tokens=squad.split_doc_tokens(context)[0], answer_texts=[])


PREDICTORS = {"classifier": classify, "ner": tag, "squad": answer}


def write_outputs(path: str, results: list[dict]) -> None:
    """JSON lines to standard output, or to the file `path` whole (a failure leaves the old file);
    through a symbolic link to its target, and in place into a device or pipe (/dev/stdout)."""
    text = "".join(finite_json(result, f"--output_file {path} (input line {result['line']})", ensure_ascii=False)
                   + "\n" for result in results)
    if path == STANDARD_STREAM:
        sys.stdout.write(text)
    elif os.path.exists(path) and not os.path.isfile(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        write_text_atomic(text, os.path.realpath(path))


@exit_on_user_error
def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.batch_size < 1:
        raise PredictError(f"--batch_size must be at least 1, got {args.batch_size}")
    check_output_file(args)
    device = Config({"device_target": args.device_target, "device_id": args.device_id,
                     "mode": "GRAPH" if args.graph_mode else "PYNATIVE"})
    config, settings = read_task_config(args.config, args.task, job_target(device))
    bucket_lengths(args.bucket_list, config.seq_length)   # a bad --bucket_list stops here, before any work
    tokenizer = FullTokenizer(args.vocab_file, settings.get("do_lower_case", True))
    check_vocabulary(tokenizer.vocab, args.vocab_file, config.vocab_size, "--vocab_file")
    lines = read_inputs(args.input_file)
    # After the inputs are checked (a bad one is the only line); on stderr, as stdout may be the results.
    init_device(device, config.compute_type, training=False, file=sys.stderr)
    texts = [(number, text) for number, text in lines if text.strip()]
    start = time.time()
    results, truncated = PREDICTORS[args.task](texts, config, settings, args, tokenizer) if texts else ([], 0)
    elapsed = time.time() - start
    by_line = {result["line"]: result for result in results}
    write_outputs(args.output_file, [by_line.get(number, {"line": number, "skipped": "empty line"})
                                     for number, _ in lines])
    warn_truncated(truncated, config.seq_length - SPECIAL_TOKENS_PER_TEXT)
    print(f"predicted {len(texts)} inputs in {elapsed:.1f} s ({len(texts) / max(elapsed, 1e-9):.1f}/s)",
          file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
