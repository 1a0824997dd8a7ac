"""This project's side of the benchmark: MindSpore measurements and the project's own commands.

Everything is built as the jobs build it: configs through `src.config.load_config`
on the jobs' YAML files, train cells through `src.training.build_train_cell`,
fine-tuning data through `src.dataset.create_dataset` with the job's keys, and
the commands (`predict.py`, `src.create_pretraining_data`) run as users run them,
in a subprocess with start-up included. MindSpore is imported inside the
functions, after the Hugging Face child has finished (see bench/run.py).
"""

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.common import (CHINESE_VOCAB, CLEAN_ENV, ENGLISH_VOCAB, GEMM_REPEATS, MASKED_POSITIONS, PASS_WARMUP,
                          REPO, LengthCase, ModelCase, Shapes, length_rows, median_seconds, megabytes, model_inputs,
                          our_tokenizer, package_version, pass_rate, token_ids, vocab_size_of)
from src.columns import MODEL_INPUTS, column_names
from src.featurization import encode, pad
from src.records import write_tfrecord

if TYPE_CHECKING:  # MindSpore is imported inside the functions (see above)
    from mindspore import nn

    from src.config import Config

DEVICE_TARGET = "CPU"
CLASSIFIER_CLASSES = 15        # CLUE TNEWS
# The real-length rows' data sets: name -> (task, job YAML, vocabulary, classes or tags). 21 tags:
# CLUENER's 10 entity types in BIO.
LENGTH_DATASETS = {"cola": ("classifier", "task_classifier_config.yaml", ENGLISH_VOCAB, 2),
                   "tnews": ("classifier", "task_classifier_config.yaml", CHINESE_VOCAB, CLASSIFIER_CLASSES),
                   "cluener": ("ner", "task_ner_config.yaml", CHINESE_VOCAB, 21)}
# The real-length rows: (key, data set, our flags over the YAML defaults). CoLA once more padded to
# seq_length (dynamic padding off), the cost a user pays without it.
LENGTH_ROWS = (("cola", "cola", ()), ("cola_padded", "cola", ("--bucket_list=[]",)),
               ("tnews", "tnews", ()), ("cluener", "cluener", ()))
GENERATOR_DUPE_FACTOR = 2
LOADER_BATCH_SIZE = 32
LOADER_SEQ_LENGTH = 128        # the generator's default max_seq_length
# predict.py's row: a `tiny` classifier fine-tuned for one epoch on the repository's CoLA fixture, then
# asked about CoLA sentences (the English corpus is CoLA's training sentences).
PREDICT_PRESET = "tiny"
PREDICT_TRAIN_FILE = "tests/data/finetune/cola.tsv"
PREDICT_SENTENCES = "data/corpus/en_sample.txt"
PREDICT_CLASSES = 2
# Optimizer steps the learning-rate schedule decays over (any number above the steps run).
SCHEDULE_STEPS = 1000
# Inputs of each case's project Cell in its `construct` order: the loaders' columns (src.columns).
MS_COLUMNS = {"pretrain": column_names("pretraining"), "classifier": column_names("classifier"),
              "squad": column_names("squad training"), "classifier_forward": MODEL_INPUTS}


# ---------------------------------------------------------------------------------------------------
# Set-up and cases


def ms_setup() -> dict:
    """Graph mode on CPU with one kernel thread per core; returns what was set."""
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE, device_target=DEVICE_TARGET)
    threads = os.cpu_count()
    ms.device_context.cpu.op_tuning.threads_num(threads)
    ms.set_seed(0)
    return {"mindspore_kernel_threads": threads, "mindspore_mode": "GRAPH_MODE"}


def project_config(yaml_name: str, flags: Sequence[str]) -> tuple["Config", dict]:
    """(job config, BertConfig fields) through the project's loader, as the run scripts build them."""
    from src.config import bert_config, load_config
    cfg = load_config(os.path.join(REPO, yaml_name), [f"--device_target={DEVICE_TARGET}", *flags])
    return cfg, dataclasses.asdict(bert_config(cfg))


def model_flags(preset: str, seq_length: int, vocab: str, compute_type: str) -> list[str]:
    """The model overrides of a case: preset, sequence length, the vocabulary's size, precision."""
    return [f"--bert_network={preset}", f"--model.seq_length={seq_length}",
            f"--model.vocab_size={vocab_size_of(vocab)}", f"--model.compute_type={compute_type}"]


def model_cases(shapes: Shapes, compute_type: str) -> tuple[list[ModelCase], dict[str, "Config"]]:
    """The fixed-batch model rows, each with the project config that both frameworks build."""
    specs = [(f"pretrain_{preset}", "pretrain", f"pretraining step, `{preset}`", "pretrain_config.yaml", preset,
              batch, shapes.seq_length, CHINESE_VOCAB, 0) for preset, batch in shapes.pretrain]
    preset = shapes.finetune_preset
    specs += [(f"classifier_{preset}", "classifier", f"fine-tuning step, classifier, `{preset}`",
               "task_classifier_config.yaml", preset, shapes.classifier_batch_size, shapes.seq_length,
               CHINESE_VOCAB, CLASSIFIER_CLASSES),
              (f"classifier_forward_{preset}", "classifier_forward",
               f"inference, classifier forward (eval mode), `{preset}`", "task_classifier_config.yaml", preset,
               shapes.classifier_batch_size, shapes.seq_length, CHINESE_VOCAB, CLASSIFIER_CLASSES),
              (f"squad_{preset}", "squad", f"fine-tuning step, SQuAD, `{preset}`", "task_squad_config.yaml", preset,
               shapes.squad_batch_size, shapes.squad_seq_length, ENGLISH_VOCAB, 0)]
    cases, configs = [], {}
    for key, task, title, yaml_name, preset, batch, seq, vocab, labels in specs:
        # The optimizer of the fine-tuning YAMLs, also for pretraining (Lamb has no CPU kernel).
        cfg, model = project_config(yaml_name, [*model_flags(preset, seq, vocab, compute_type),
                                                "--optimizer=AdamWeightDecay"])
        cases.append(ModelCase(key, task, title, batch, model, labels))
        configs[key] = cfg
    return cases, configs


def length_cases(shapes: Shapes, compute_type: str, work_dir: str) -> tuple[list[LengthCase], dict[str, "Config"]]:
    """The real-length fine-tuning rows: each data set at the job's YAML defaults (preset, sequence
    length and vocabulary set as the other fine-tuning rows), CoLA once more padded to seq_length.
    Returns (cases, {key: job config}); each config's training file is the case's rows in work_dir."""
    cases, configs = [], {}
    for key, dataset, flags in LENGTH_ROWS:
        task, yaml_name, vocab, labels = LENGTH_DATASETS[dataset]
        train_file = os.path.join(work_dir, f"{key}.tfrecord")
        cfg, model = project_config(yaml_name, [*model_flags(shapes.finetune_preset, shapes.seq_length, vocab,
                                                             compute_type),
                                                f"--num_class={labels}", f"--train_data_file_path={train_file}",
                                                *flags])
        title = (f"fine-tuning, {dataset.upper()} lengths, `{shapes.finetune_preset}` "
                 f"(ours: {' '.join(flags) or 'YAML defaults'}; HF: dynamic padding)")
        cases.append(LengthCase(key, dataset, task, title, cfg.train_batch_size, model, labels, shapes.length_rows,
                                flags))
        configs[key] = cfg
    return cases, configs


def predict_model_flags() -> list[str]:
    """run_classifier.py's model flags for the `tiny` classifier of the predict.py row."""
    return [f"--bert_network={PREDICT_PRESET}", f"--model.vocab_size={vocab_size_of(ENGLISH_VOCAB)}"]


def predict_model() -> dict:
    """BertConfig fields of the predict.py row's classifier, as its fine-tuning builds it."""
    return project_config("task_classifier_config.yaml", predict_model_flags())[1]


# ---------------------------------------------------------------------------------------------------
# Model measurements


def ms_gemm_gflops(size: int) -> dict:
    """fp32 [size, size] @ [size, size] GFLOP/s: `ops.matmul` compiled by `ms.jit`."""
    import mindspore as ms
    import numpy as np
    from mindspore import ops

    matmul = ms.jit(ops.matmul)
    rng = np.random.RandomState(0)
    a, b = (ms.Tensor(rng.standard_normal((size, size)).astype(np.float32)) for _ in range(2))
    seconds, times = median_seconds(lambda _: matmul(a, b).asnumpy(), GEMM_REPEATS)
    return {"gflops": 2 * size ** 3 / seconds / 1e9, "seconds": seconds, "times": times}


def ms_network(task: str, model: dict, num_labels: int) -> "nn.Cell":
    """The project's Cell: a loss network for train steps, the task model for inference."""
    from src.bert_for_pre_training import BertNetworkWithLoss
    from src.bert_model import BertConfig
    from src.tasks import TASKS, loss_network, task_model
    config = BertConfig(**model)
    if task == "pretrain":
        return BertNetworkWithLoss(config, is_training=True)
    if task in TASKS:
        return loss_network(task, config, {"num_class": num_labels})
    return task_model("classifier", config, {"num_class": num_labels})


def ms_train_cell(network: "nn.Cell", cfg: "Config") -> "nn.Cell":
    """The train cell `build_train_cell` makes from `cfg`, in training mode. No warmup: the learning
    rate is not zero, so every timed step really updates the weights."""
    from src.optimizers import build_optimizer
    from src.training import build_train_cell
    optimizer = build_optimizer(cfg, network.trainable_params(), SCHEDULE_STEPS, DEVICE_TARGET, warmup_steps=0)
    train_cell = build_train_cell(network, optimizer, cfg)
    train_cell.set_train(True)
    return train_cell


def ms_model_step(case: ModelCase, cfg: "Config", repeats: int) -> dict:
    """Median step time of the project's train cell (or forward) on one random batch."""
    import mindspore as ms

    network = ms_network(case.task, case.model, case.num_labels)
    batch = [ms.Tensor(array) for array in (model_inputs(case)[name] for name in MS_COLUMNS[case.task])]
    overflows = []
    if case.task == "classifier_forward":
        network.set_train(False)
        run = lambda _: network(*batch).asnumpy()  # noqa: E731
    else:
        train_cell = ms_train_cell(network, cfg)

        def run(_):
            loss, overflow, _scale = train_cell(*batch)
            loss.asnumpy()  # waits for the step, optimizer update included (the loss depends on it)
            overflows.append(bool(overflow.asnumpy()))
    seconds, times = median_seconds(run, repeats)
    # An overflowing step skips the optimizer and would look faster: count them (warm-up included).
    return {"seconds": seconds, "times": times, "skipped_steps": sum(overflows)}


def write_length_rows(case: LengthCase, rows: list, path: str) -> None:
    """`rows` (common.length_rows) as src.create_finetune_data writes them (src.featurization's padding):
    int64 columns padded to seq_length, label_ids [1] (classifier) or one per token (ner)."""
    def row(ids, labels):
        label_ids = pad(labels, case.seq_length) if case.task == "ner" else pad([labels], 1)
        return {**encode(ids, case.seq_length), "label_ids": label_ids}

    write_tfrecord(path, (row(ids, labels) for ids, labels in rows))


def ms_length_passes(case: LengthCase, cfg: "Config", repeats: int) -> dict:
    """Samples/s of fine-tuning passes over the case's rows, read by the job's loader: the
    `create_dataset` call of `src.finetune.train_task` with the job's keys (shuffle, batch size,
    bucket_list, ...) and its train cell; loader and steps timed."""
    from src.dataset import create_dataset
    rows = length_rows(case)
    write_length_rows(case, rows, cfg.train_data_file_path)
    dataset = create_dataset(cfg.train_data_file_path, column_names(case.task), cfg.train_batch_size,
                             do_shuffle=cfg.train_data_shuffle, schema_dir=cfg.schema_file_path,
                             dataset_format=cfg.dataset_format, seq_length=case.seq_length,
                             bucket_list=cfg.bucket_list)
    train_cell = ms_train_cell(ms_network(case.task, case.model, case.num_labels), cfg)
    compiled = compile_bucket_lengths(train_cell, case, cfg.bucket_list)

    def one_pass():
        count = 0
        for batch in dataset.create_tuple_iterator(num_epochs=1):
            loss, _overflow, _scale = train_cell(*batch)
            count += batch[0].shape[0]
        loss.asnumpy()  # waits for the last step
        return count
    return {**pass_rate(one_pass, repeats), **compiled,
            "mean_length": sum(len(ids) for ids, _ in rows) / len(rows)}


def compile_bucket_lengths(train_cell: "nn.Cell", case: LengthCase, bucket_list: Sequence[int]) -> dict:
    """One untimed step at every length a batch may be cut to (`src.dataset.bucket_lengths`), so that the
    timed passes measure the steady state: a fine-tuning run compiles each length once, in the first steps
    that meet it, while the passes here are short enough that a length first met in a timed pass would
    count its compilation against them. Returns the lengths and the seconds their compilation took."""
    import time
    import numpy as np
    import mindspore as ms
    from src.dataset import bucket_lengths
    rng = np.random.RandomState(0)
    lengths = bucket_lengths(bucket_list, case.seq_length)
    start = time.perf_counter()
    for length in lengths:
        labels = (case.batch_size, length) if case.task == "ner" else (case.batch_size, 1)
        batch = [rng.randint(1, case.model["vocab_size"], (case.batch_size, length)),
                 np.ones((case.batch_size, length)), np.zeros((case.batch_size, length)),
                 rng.randint(0, case.num_labels, labels)]
        train_cell(*[ms.Tensor(values.astype(np.int32)) for values in batch])[0].asnumpy()
    return {"compiled_lengths": lengths, "compile_seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------------------------------
# Commands


def run_command(command: Sequence[str], cwd: str = REPO) -> subprocess.CompletedProcess:
    """Run a project command as a user's shell would (no MindSpore environment); its output is kept
    and shown only if it fails."""
    completed = subprocess.run(command, cwd=cwd, env=CLEAN_ENV, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {completed.returncode}:\n{completed.stderr[-2000:]}")
    return completed


def command_seconds(command: Sequence[str], repeats: int, cwd: str = REPO) -> tuple[float, list[float]]:
    """Median wall time of a whole command (start-up included) after PASS_WARMUP untimed runs."""
    return median_seconds(lambda _: run_command(command, cwd), repeats, warmup=PASS_WARMUP)


def write_sentences(path: str, count: int) -> list[str]:
    """The first `count` CoLA sentences of the English corpus, one per line; returns them."""
    with open(os.path.join(REPO, PREDICT_SENTENCES), encoding="utf-8") as f:
        sentences = [line.strip() for line in f if line.strip()][:count]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(sentence + "\n" for sentence in sentences)
    return sentences


def fine_tune_tiny_classifier(work_dir: str) -> str:
    """classifier.ckpt/.yaml of a `tiny` model fine-tuned for one epoch on the CoLA fixture, made by the
    project's own commands; returns their directory."""
    data_dir, model_dir = os.path.join(work_dir, "cola_data"), os.path.join(work_dir, "cola_model")
    run_command([sys.executable, "-m", "src.create_finetune_data", "--task=cola",
                 f"--input_file={PREDICT_TRAIN_FILE}", f"--output_dir={data_dir}", f"--vocab_file={ENGLISH_VOCAB}"])
    run_command([sys.executable, "run_classifier.py", "--do_train=true", *predict_model_flags(),
                 f"--device_target={DEVICE_TARGET}", f"--num_class={PREDICT_CLASSES}", "--epoch_num=1",
                 f"--train_data_file_path={os.path.join(data_dir, 'train.tfrecord')}", f"--output_dir={model_dir}"])
    return model_dir


def predict_rate(sentences_file: str, sentences: int, work_dir: str, repeats: int) -> dict:
    """Sentences/s of `python predict.py --task=classifier` on the sentences file, start-up included."""
    model_dir = fine_tune_tiny_classifier(work_dir)
    command = [sys.executable, "predict.py", "--task=classifier",
               f"--config={os.path.join(model_dir, 'classifier.yaml')}",
               f"--checkpoint={os.path.join(model_dir, 'classifier.ckpt')}", f"--vocab_file={ENGLISH_VOCAB}",
               f"--input_file={sentences_file}", f"--output_file={os.path.join(work_dir, 'predictions.jsonl')}",
               f"--device_target={DEVICE_TARGET}"]
    seconds, times = command_seconds(command, repeats)
    return {"sentences_per_s": sentences / seconds, "seconds": seconds, "times": times}


def generator_rate(corpus_file: str, output_dir: str, workers: int, repeats: int) -> dict:
    """Wall time of `python -m src.create_pretraining_data` (start-up included) on the Chinese corpus."""
    command = [sys.executable, "-m", "src.create_pretraining_data", f"--input_file={corpus_file}",
               f"--output_dir={output_dir}", f"--vocab_file={CHINESE_VOCAB}",
               f"--dupe_factor={GENERATOR_DUPE_FACTOR}", f"--num_workers={workers}",
               f"--max_seq_length={LOADER_SEQ_LENGTH}", "--overwrite=true"]
    seconds, times = command_seconds(command, repeats)
    with open(os.path.join(output_dir, "stats.json"), encoding="utf-8") as f:
        instances = json.load(f)["instances"]
    return {"instances_per_s": instances / seconds, "instances": instances, "seconds": seconds, "times": times,
            "workers": workers}


def google_generator_rate(python: str, corpus_file: str, output_dir: str, repeats: int) -> dict:
    """Wall time of Google BERT's own `create_pretraining_data.py` (PyPI `bert-tensorflow`, one process)
    on the same corpus with the same settings as `generator_rate`; unavailable where not installed."""
    check = subprocess.run([python, "-c", "import bert.create_pretraining_data"], cwd=output_dir, env=CLEAN_ENV,
                           capture_output=True, text=True, check=False)
    if check.returncode != 0:
        return {"available": False, "reason": (check.stderr.strip().splitlines() or ["?"])[-1]}
    output_file = os.path.join(output_dir, "google.tfrecord")
    command = [python, "-m", "bert.create_pretraining_data", f"--input_file={corpus_file}",
               f"--output_file={output_file}", f"--vocab_file={os.path.join(REPO, CHINESE_VOCAB)}",
               "--do_lower_case=true", f"--dupe_factor={GENERATOR_DUPE_FACTOR}",
               f"--max_seq_length={LOADER_SEQ_LENGTH}", f"--max_predictions_per_seq={MASKED_POSITIONS}",
               "--masked_lm_prob=0.15", "--short_seq_prob=0.1", "--random_seed=12345"]
    seconds, times = command_seconds(command, repeats, cwd=output_dir)
    counter = [python, "-c", "import sys, tensorflow as tf; "
               "print(sum(1 for _ in tf.data.TFRecordDataset(sys.argv[1])))", output_file]
    instances = int(run_command(counter).stdout)
    return {"available": True, "instances_per_s": instances / seconds, "instances": instances, "seconds": seconds,
            "times": times, "bert_tensorflow": package_version("bert-tensorflow")}


# ---------------------------------------------------------------------------------------------------
# Data pipeline


def tokenizer_rate(lines: list[str], vocab: str, repeats: int) -> dict:
    # A fresh tokenizer for every repetition (built untimed): each one tokenizes the corpus
    # from an empty word cache, as a real first pass over a corpus does.
    seconds, times = median_seconds(lambda tokenizer: token_ids(tokenizer, lines), repeats,
                                    setup=lambda: our_tokenizer(vocab))
    return {"mb_per_s": megabytes(lines) / seconds, "megabytes": megabytes(lines), "seconds": seconds,
            "times": times}


def loader_rate(data_dir: str, repeats: int) -> dict:

    """Batches/s of one pass of `create_bert_dataset` over the generated shards."""
    from src.dataset import create_bert_dataset

    def one_pass(_):
        dataset = create_bert_dataset(data_dir=data_dir, batch_size=LOADER_BATCH_SIZE, do_shuffle=True,
                                      seq_length=LOADER_SEQ_LENGTH)
        return sum(1 for _ in dataset.create_tuple_iterator(num_epochs=1))

    batches = one_pass(None)
    seconds, times = median_seconds(one_pass, repeats, warmup=0)
    return {"batches_per_s": batches / seconds, "batches": batches, "seconds": seconds, "times": times}
