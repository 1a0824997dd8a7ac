"""Token-length histograms of the CoLA, TNEWS and CLUENER training sets -> bench/lengths.json.

    python bench/make_lengths.py --cola DIR/cola/train.tsv --tnews DIR/tnews/train.json \\
        --cluener DIR/cluener/train.json [--output bench/lengths.json]

Run once by hand; the suite reads only the committed lengths.json (the data
sets are not part of this repository). Each length is what
`src.create_finetune_data` makes of a record before truncation, [CLS] and
[SEP] included: WordPiece tokens of the sentence for CoLA (English
vocabulary) and TNEWS (Chinese vocabulary), one token per character for
CLUENER (Chinese vocabulary). The records are read by that module's own
readers, so a record the converter would refuse is left out here too.
"""

import argparse
import collections
import hashlib
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench.common import CHINESE_VOCAB, ENGLISH_VOCAB, LENGTHS_FILE  # noqa: E402
from src.featurization import READERS, SPECIAL_TOKENS_PER_TEXT, Problems, character_token_ids  # noqa: E402
from src.tokenization import FullTokenizer  # noqa: E402

# Task -> (vocabulary, whether a token per character as for NER).
TASKS = {"cola": (ENGLISH_VOCAB, False), "tnews": (CHINESE_VOCAB, False), "cluener": (CHINESE_VOCAB, True)}


def token_lengths(task: str, path: str) -> list[int]:
    """Tokens per record of `path` ([CLS] and [SEP] included), in file order."""
    vocab, per_character = TASKS[task]
    tokenizer = FullTokenizer(os.path.join(REPO, vocab), do_lower_case=True)
    examples = READERS[task](path, Problems("fail"))
    count = (lambda text: len(character_token_ids(tokenizer, text))) if per_character else (
        lambda text: len(tokenizer.tokenize(text)))
    return [count(example.text) + SPECIAL_TOKENS_PER_TEXT for example in examples]


def describe(task: str, path: str) -> dict:
    """The JSON entry of one data set: its histogram {length: records} and where it came from."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    lengths = token_lengths(task, path)
    histogram = collections.Counter(lengths)
    return {"source": os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path), "sha256": digest,
            "vocab": TASKS[task][0], "records": len(lengths), "mean": round(sum(lengths) / len(lengths), 2),
            "histogram": {str(length): histogram[length] for length in sorted(histogram)}}


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for task in TASKS:
        parser.add_argument(f"--{task}", required=True, help=f"the {task} training file, as distributed")
    parser.add_argument("--output", default=os.path.join(REPO, LENGTHS_FILE), help="the JSON file to write")
    args = parser.parse_args()
    for task in TASKS:
        if not os.path.isfile(getattr(args, task)):
            parser.error(f"--{task} {getattr(args, task)}: no such file")
    result = {"note": "token lengths ([CLS] and [SEP] included) of each training set, made by "
                      "bench/make_lengths.py; see its docstring",
              **{task: describe(task, getattr(args, task)) for task in TASKS}}
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    for task in TASKS:
        print(f"{task}: {result[task]['records']} records, mean {result[task]['mean']} tokens")


if __name__ == "__main__":
    main()
