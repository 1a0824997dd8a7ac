"""The quick start: pretrain a tiny BERT on the bundled Chinese corpus, on CPU, and show that it learned.

    bash scripts/quick_start.sh [--bert_network=bert|nezha] [--output_dir=DIR]

Steps, each printed as the command a user would type:
  1. split data/corpus/zh_sample.txt into training text and held-out documents;
  2. python -m src.create_pretraining_data, once for each part;
  3. python run_pretrain.py (the `tiny` preset, sequences of 64 tokens, 2500 steps);
  4. python pretrain_eval.py on the held-out instances;
then writes quick_start.png (loss curve, accuracies) and prints a summary.
`--bert_network=nezha` trains the same model with NEZHA's relative positions.

Why `tiny` (2 layers, hidden 64) and not `small` (4 layers, hidden 256): on a
2-core CPU the small model runs ~1.5 steps/s at this size, and in the 400 steps
that fit the time budget it does not get past predicting token frequencies
(held-out accuracy equal to the majority baseline); tiny runs ~9 steps/s and
in 2500 steps learns to use its input (and, as NEZHA, its context).
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from src.plotting import plot_training, read_metrics  # noqa: E402

CORPUS = "data/corpus/zh_sample.txt"
VOCAB = "data/vocab/bert-base-chinese-vocab.txt"
HELD_OUT_DOCUMENTS = 200
SEQ_LENGTH = 64
MAX_PREDICTIONS = 10
# The training run: what makes the quick start quick. Everything else comes
# from pretrain_config.yaml.
# Copies of each document with different masks: enough training instances that
# the run does not repeat one (2500 steps x 32); a few more held-out ones.
TRAIN_DUPE_FACTOR = 5
EVAL_DUPE_FACTOR = 2
TRAIN_STEPS = 2500
TRAINING_FLAGS = ["--bert_network=tiny", f"--model.seq_length={SEQ_LENGTH}", "--batch_size=32",
                  f"--train_steps={TRAIN_STEPS}", "--log_every_steps=25", "--save_checkpoint_steps=500",
                  "--optimizer=AdamWeightDecay", "--AdamWeightDecay.learning_rate=1e-3",
                  "--AdamWeightDecay.warmup_steps=250", "--AdamWeightDecay.power=1.0",
                  "--AdamWeightDecay.weight_decay=0.01"]
NEZHA_FLAGS = ["--model.use_relative_positions=true"]
# "It learned": masked-LM accuracy at least this many times that of always
# predicting the most frequent masked token.
LEARNED_FACTOR = 2.0


def run(command: list[str]) -> None:
    print("+ " + " ".join(shlex.quote(part) for part in command), flush=True)
    result = subprocess.run(command, cwd=REPO)
    if result.returncode:
        sys.exit(f"error: the step above failed (exit status {result.returncode}); see its output")


def split_corpus(corpus: str, train_path: str, held_out_path: str) -> tuple[int, int]:
    """The last HELD_OUT_DOCUMENTS documents (blank-line separated) go to `held_out_path`."""
    with open(os.path.join(REPO, corpus), encoding="utf-8") as f:
        documents = [doc for doc in f.read().split("\n\n") if doc.strip()]
    for path, part in ((train_path, documents[:-HELD_OUT_DOCUMENTS]), (held_out_path, documents[-HELD_OUT_DOCUMENTS:])):
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n\n".join(part) + "\n")
    return len(documents) - HELD_OUT_DOCUMENTS, HELD_OUT_DOCUMENTS


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bert_network", choices=["bert", "nezha"], default="bert",
                        help="bert: absolute positions; nezha: relative positions (same small size)")
    parser.add_argument("--output_dir", default="quick_start_output", help="where everything is written")
    args = parser.parse_args()
    started = time.time()
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    python = sys.executable

    train_text, held_out_text = os.path.join(out, "train.txt"), os.path.join(out, "held_out.txt")
    train_docs, held_docs = split_corpus(CORPUS, train_text, held_out_text)
    print(f"corpus: {train_docs} training documents, {held_docs} held out")
    for text, data, dupe in ((train_text, "train_data", TRAIN_DUPE_FACTOR), (held_out_text, "eval_data", EVAL_DUPE_FACTOR)):
        run([python, "-m", "src.create_pretraining_data", f"--input_file={text}",
             f"--output_dir={os.path.join(out, data)}", f"--vocab_file={VOCAB}", f"--max_seq_length={SEQ_LENGTH}",
             f"--max_predictions_per_seq={MAX_PREDICTIONS}", f"--dupe_factor={dupe}", "--num_workers=2",
             "--num_output_shards=2", "--overwrite=true"])

    model_flags = TRAINING_FLAGS + (NEZHA_FLAGS if args.bert_network == "nezha" else [])
    run_dir = os.path.join(out, "pretrain")
    shutil.rmtree(run_dir, ignore_errors=True)  # a rerun starts afresh (run_pretrain keeps other runs' checkpoints)
    run([python, "run_pretrain.py", f"--data_dir={os.path.join(out, 'train_data')}", f"--output_dir={run_dir}",
         *model_flags])
    checkpoint = os.path.join(run_dir, "checkpoints", f"checkpoint_bert_step_{TRAIN_STEPS}.ckpt")
    run([python, "pretrain_eval.py", f"--data_dir={os.path.join(out, 'eval_data')}", f"--output_dir={run_dir}",
         f"--load_checkpoint_path={checkpoint}", *model_flags])

    with open(os.path.join(run_dir, "eval_results.json"), encoding="utf-8") as f:
        results = json.load(f)
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    plot_path = os.path.join(out, "quick_start.png")
    plot_training(metrics_path, plot_path, f"tiny {args.bert_network.upper()} pretraining", results)
    records = read_metrics(metrics_path)
    rates = [r["samples_per_s"] for r in records[1:]] or [records[-1]["samples_per_s"]]
    print(f"""
quick start ({args.bert_network}) finished in {time.time() - started:.0f} s
  training loss      {records[0]['loss']:.3f} at step {records[0]['step']} -> {records[-1]['loss']:.3f} at step {records[-1]['step']}
  held-out MLM loss  {results['mlm_loss']:.3f} (perplexity {results['mlm_perplexity']:.1f})
  MLM accuracy       {results['mlm_accuracy']:.3f}  (always predicting the most frequent masked token: {results['mlm_majority_accuracy']:.3f})
    at replaced tokens {results['mlm_accuracy_replaced']:.3f}  ([MASK] or random: the answer must come from the context)
  NSP accuracy       {results['nsp_accuracy']:.3f}  (always predicting the more frequent label: {results['nsp_majority_accuracy']:.3f})
  speed              {sum(rates) / len(rates):.1f} samples/s
  checkpoint         {checkpoint}
  plot               {plot_path}""")
    if results["mlm_accuracy"] < LEARNED_FACTOR * results["mlm_majority_accuracy"]:
        sys.exit(f"error: the model did not learn: MLM accuracy {results['mlm_accuracy']:.3f} is below "
                 f"{LEARNED_FACTOR} x the majority baseline {results['mlm_majority_accuracy']:.3f}")


if __name__ == "__main__":
    main()
