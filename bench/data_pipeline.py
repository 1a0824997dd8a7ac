"""Speed of the data pipeline: tokenizer, pretraining-data generator, loader.

    python bench/data_pipeline.py [--output_dir /tmp/bench_data]

Measures on the bundled corpora (data/corpus):
  * tokenizer MB/s of `src.tokenization.FullTokenizer` (a fresh tokenizer, so
    its word cache starts empty), and of MindSpore's C++ `text.BertTokenizer`
    on the first 3000 lines, with the share of those lines where the two agree;
  * generator instances/s with 1 and 2 worker processes (wall time of the
    whole command, Chinese corpus, dupe_factor 2, TFRecord);
  * loader batches/s of `create_bert_dataset` (batch 32, seq 128) over the
    generated shards, to compare with a training step rate.
Prints a Markdown table.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from src.dataset import create_bert_dataset  # noqa: E402
from src.tokenization import FullTokenizer  # noqa: E402

# MindSpore's tokenizer is slow when called line by line: time it on a sample.
MS_TOKENIZER_LINES = 3000
CORPORA = {"zh": ("data/corpus/zh_sample.txt", "data/vocab/bert-base-chinese-vocab.txt"),
           "en": ("data/corpus/en_sample.txt", "data/vocab/bert-base-uncased-vocab.txt")}


def tokenizer_speed(corpus, vocab):
    with open(os.path.join(REPO, corpus), encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    megabytes = sum(len(line.encode("utf-8")) for line in lines) / 1e6
    tokenizer = FullTokenizer(os.path.join(REPO, vocab), do_lower_case=True)
    start = time.perf_counter()
    ours = [tokenizer.tokenize(line) for line in lines]
    ours_speed = megabytes / (time.perf_counter() - start)

    from mindspore.dataset import text
    ms_tokenizer = text.BertTokenizer(text.Vocab.from_file(os.path.join(REPO, vocab)), lower_case=True)
    sample = lines[:MS_TOKENIZER_LINES]
    start = time.perf_counter()
    theirs = [ms_tokenizer(line).tolist() for line in sample]
    ms_speed = sum(len(line.encode("utf-8")) for line in sample) / 1e6 / (time.perf_counter() - start)
    agree = sum(a == b for a, b in zip(ours, theirs)) / len(sample)
    return megabytes, ours_speed, ms_speed, agree


def generator_speed(output_dir, workers):
    corpus, vocab = CORPORA["zh"]
    # `import mindspore` (done above) sets PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python,
    # which makes TensorFlow's protobuf in a child process ~4x slower; a user
    # running the generator from a shell does not have it.
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "src.create_pretraining_data", f"--input_file={corpus}",
                    f"--output_dir={output_dir}", f"--vocab_file={vocab}", "--dupe_factor=2",
                    "--num_output_shards=2", f"--num_workers={workers}", "--overwrite=true"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    with open(os.path.join(output_dir, "stats.json"), encoding="utf-8") as f:
        instances = json.load(f)["instances"]
    return instances, seconds


def loader_speed(data_dir):
    dataset = create_bert_dataset(data_dir=data_dir, batch_size=32, do_shuffle=True, seq_length=128)
    start, batches = time.perf_counter(), 0
    for _ in dataset.create_tuple_iterator(num_epochs=1):
        batches += 1
    return batches / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default="/tmp/bench_data", help="where the generated shards go")
    args = parser.parse_args()
    print("| measurement | value |")
    print("|---|---|")
    for workers in (1, 2):
        instances, seconds = generator_speed(args.output_dir, workers)
        print(f"| generator, zh corpus, dupe_factor 2, {workers} worker(s) | {instances / seconds:.0f} instances/s "
              f"({instances} in {seconds:.1f} s) |")
    print(f"| loader, batch 32, seq 128 | {loader_speed(args.output_dir):.0f} batches/s |")

    for language, (corpus, vocab) in CORPORA.items():
        megabytes, ours, theirs, agree = tokenizer_speed(corpus, vocab)
        print(f"| tokenizer, {language} corpus ({megabytes:.2f} MB): FullTokenizer | {ours:.2f} MB/s |")
        print(f"| tokenizer, {language} corpus: mindspore text.BertTokenizer | {theirs:.2f} MB/s, "
              f"identical on {agree:.1%} of lines |")


if __name__ == "__main__":
    main()
