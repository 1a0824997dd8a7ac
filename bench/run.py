"""The benchmark suite: this project against Hugging Face `transformers` + `torch`, in one run.

    python bench/run.py --suite cpu [--quick] [--output_dir DIR] [--hf_python PATH]

Writes DIR/results.json (every timing) and DIR/results.md (the table, also
printed). Each rate is the median of `--repeats` (>= 3) timed repetitions after
`WARMUP_REPETITIONS` untimed ones (the first compiles MindSpore's graph and
allocates torch's optimizer state). Rows, in order:

  * fp32 GEMM GFLOP/s (MindSpore `ops.matmul` compiled with `ms.jit`; torch
    `torch.matmul`), the peak that MFU is measured against;
  * pretraining train step (MLM + NSP, backward, AdamWeightDecay, dynamic loss
    scale, global-norm clipping: `BertTrainOneStepCell` as `run_pretrain.py`
    builds it) for `small` and `base`: samples/s, tokens/s, MFU;
  * fine-tuning train steps (classifier, SQuAD) and classifier inference;
  * tokenizer MB/s, pretraining-data generator instances/s, loader batches/s.

The Hugging Face rows run in a child process (`--hf_worker`, the interpreter of
`--hf_python`, default this one) before MindSpore does any work, so neither
framework's thread pool competes with the other's. The child imports neither
MindSpore nor any `src` module that does; the model shapes come from the
parent, which builds them with the project's own config loader.
"""

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from src.tokenization import FullTokenizer  # noqa: E402  (pure Python: safe in the Hugging Face child)

# The environment before MindSpore is imported, for child processes. `import mindspore` sets
# LD_LIBRARY_PATH to its own plugin libraries (torch then starts with 1 thread instead of one
# per core) and PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python (TensorFlow's protobuf in the
# generator ~4x slower); a user's shell has neither.
CLEAN_ENV = dict(os.environ)

SUITES = ("cpu",)
MIN_REPEATS = 3
# Untimed calls before timing. MindSpore's step time settles only after about 5 calls (the
# first compiles; the next few run ~25% slower than the rest), torch's after 2.
WARMUP_REPETITIONS = 5
GEMM_REPEATS = 10
DEVICE_TARGET = "CPU"

# Shapes of the full run. The `--quick` smoke test swaps in QUICK_SHAPES.
CHINESE_VOCAB = "data/vocab/bert-base-chinese-vocab.txt"   # 21128 tokens
ENGLISH_VOCAB = "data/vocab/bert-base-uncased-vocab.txt"   # 30522 tokens
CORPORA = {"zh": ("data/corpus/zh_sample.txt", CHINESE_VOCAB),
           "en": ("data/corpus/en_sample.txt", ENGLISH_VOCAB)}
MASKED_POSITIONS = 20          # max_predictions_per_seq of the pretraining data
CLASSIFIER_CLASSES = 15        # CLUE TNEWS
# CoLA-length inputs: the token counts of the CoLA sentences in the test fixture (mean 11.5, 89% <= 16
# tokens with [CLS]/[SEP]; GLUE's CoLA train set: mean 11.3, 90% <= 16).
COLA_FIXTURE = "tests/data/finetune/cola.tsv"
COLA_CLASSES = 2
COLA_ROWS = 1024               # rows per timed pass (the fixture's lengths, repeated)
COLA_BUCKET_LIST = (16, 32, 64)   # ours: --bucket_list=[16,32,64]
GENERATOR_DUPE_FACTOR = 2
GENERATOR_WORKERS = min(2, os.cpu_count())   # ours; Google's reference is one process
LOADER_BATCH_SIZE = 32
LOADER_SEQ_LENGTH = 128        # the generator's default max_seq_length


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Sizes of one run; FULL_SHAPES is the benchmark, QUICK_SHAPES a seconds-long smoke test."""
    gemm_size: int
    pretrain: tuple            # ((preset, batch size), ...) at `seq_length`
    seq_length: int
    finetune_preset: str
    classifier_batch_size: int
    squad_batch_size: int
    squad_seq_length: int
    corpus_lines: int          # 0: the whole corpus


FULL_SHAPES = Shapes(gemm_size=2048, pretrain=(("small", 32), ("base", 8)), seq_length=128,
                     finetune_preset="small", classifier_batch_size=32, squad_batch_size=8,
                     squad_seq_length=384, corpus_lines=0)
QUICK_SHAPES = Shapes(gemm_size=256, pretrain=(("tiny", 4),), seq_length=32, finetune_preset="tiny",
                      classifier_batch_size=4, squad_batch_size=2, squad_seq_length=64, corpus_lines=400)


@dataclasses.dataclass
class ModelCase:
    """One model measurement, run by both frameworks on the same shapes.

    `model` holds every BertConfig field, resolved by the project's config
    loader (preset + overrides), so both sides build the same architecture.
    """
    key: str                   # row key in results.json
    task: str                  # "pretrain" | "classifier" | "squad" | "classifier_forward"
    title: str
    batch_size: int
    model: dict
    num_labels: int = 0
    bucket_list: tuple = ()    # ours batched by length (Hugging Face padded to seq_length)

    @property
    def seq_length(self):
        return self.model["seq_length"]


# ---------------------------------------------------------------------------------------------------
# Timing and FLOPs


def median_seconds(run, repeats, warmup=WARMUP_REPETITIONS, setup=None):
    """Median wall time of `run(setup())` over `repeats` calls, after `warmup` untimed ones.

    `setup` (untimed) makes each call's fresh input, e.g. a tokenizer with an empty cache.
    Returns (median seconds, [every timed seconds]).
    """
    setup = setup or (lambda: None)
    for _ in range(warmup):
        run(setup())
    times = []
    for _ in range(repeats):
        argument = setup()
        start = time.perf_counter()
        run(argument)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def encoder_matmul_weights(model):
    """N_enc: weights of the encoder's matrix multiplications (Q, K, V, output; two FFN layers)."""
    hidden, intermediate = model["hidden_size"], model["intermediate_size"]
    return model["num_hidden_layers"] * (4 * hidden * hidden + 2 * hidden * intermediate)


def forward_flops_per_sequence(case):
    """Matmul FLOPs of one sequence's forward pass (a multiply-add counts 2).

    Encoder weights 2·N_enc·S; attention scores QK^T and context PV 2·(2·S²·D)
    per layer; pretraining adds the MLM head at the P masked positions only:
    transform 2·P·D² and decoder 2·P·D·V. The pooler, NSP, classifier and
    span heads (O(D) or O(S·D) per sequence) are left out as negligible.
    """
    model, seq = case.model, case.seq_length
    hidden = model["hidden_size"]
    flops = 2 * encoder_matmul_weights(model) * seq + 2 * 2 * model["num_hidden_layers"] * seq * seq * hidden
    if case.task == "pretrain":
        flops += 2 * MASKED_POSITIONS * hidden * (hidden + model["vocab_size"])
    return flops


def model_flops_per_sample(case):
    """Forward only for inference; forward + backward (3x the forward) for a train step."""
    return forward_flops_per_sequence(case) * (1 if case.task == "classifier_forward" else 3)


# ---------------------------------------------------------------------------------------------------
# Inputs shared by both frameworks (NumPy only)


def model_inputs(case, seed=0):
    """Random batch of `case` as NumPy arrays, the same in both frameworks (same seed)."""
    import numpy as np
    rng = np.random.RandomState(seed)
    batch, seq, vocab = case.batch_size, case.seq_length, case.model["vocab_size"]
    arrays = {"input_ids": rng.randint(1, vocab, (batch, seq)).astype(np.int32),
              "input_mask": np.ones((batch, seq), np.int32),
              # segment A then segment B
              "token_type_ids": (np.arange(seq)[None] >= seq // 2).astype(np.int32).repeat(batch, 0)}
    if case.task == "pretrain":
        positions = np.sort(rng.rand(batch, seq).argsort(1)[:, :MASKED_POSITIONS], 1).astype(np.int32)
        arrays.update(next_sentence_labels=rng.randint(0, 2, (batch, 1)).astype(np.int32),
                      masked_lm_positions=positions,
                      masked_lm_ids=rng.randint(1, vocab, (batch, MASKED_POSITIONS)).astype(np.int32),
                      masked_lm_weights=np.ones((batch, MASKED_POSITIONS), np.float32))
    elif case.task in ("classifier", "classifier_forward"):
        arrays.update(label_ids=rng.randint(0, case.num_labels, (batch, 1)).astype(np.int32))
    elif case.task == "squad":
        arrays.update(start_positions=rng.randint(0, seq, (batch, 1)).astype(np.int32),
                      end_positions=rng.randint(0, seq, (batch, 1)).astype(np.int32))
    return arrays


def read_corpus_lines(corpus, limit):
    with open(os.path.join(REPO, corpus), encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[:limit] if limit else lines


def megabytes(lines):
    return sum(len(line.encode("utf-8")) for line in lines) / 1e6


def our_tokenizer(vocab):
    """The project's FullTokenizer; a fresh one has an empty word cache."""
    return FullTokenizer(os.path.join(REPO, vocab), do_lower_case=True)


def token_ids(tokenizer, lines):
    """Text -> WordPiece ids, line by line."""
    return [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(line)) for line in lines]


# ---------------------------------------------------------------------------------------------------
# Machine


def cpu_model():
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def package_version(name):
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------------
# MindSpore (this project)


def ms_setup():
    """Graph mode on CPU with one kernel thread per core; returns what was set."""
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE, device_target=DEVICE_TARGET)
    threads = os.cpu_count()
    ms.device_context.cpu.op_tuning.threads_num(threads)
    ms.set_seed(0)
    return {"mindspore_kernel_threads": threads, "mindspore_mode": "GRAPH_MODE"}


def ms_gemm_gflops(size):
    """fp32 [size, size] @ [size, size] GFLOP/s: `ops.matmul` compiled by `ms.jit`."""
    import mindspore as ms
    import numpy as np
    from mindspore import ops

    matmul = ms.jit(ops.matmul)
    rng = np.random.RandomState(0)
    a, b = (ms.Tensor(rng.standard_normal((size, size)).astype(np.float32)) for _ in range(2))
    seconds, times = median_seconds(lambda _: matmul(a, b).asnumpy(), GEMM_REPEATS)
    return {"gflops": 2 * size ** 3 / seconds / 1e9, "seconds": seconds, "times": times}


def project_config(yaml_name, preset, seq_length, vocab_size):
    """(job config, BertConfig) through the project's loader, as run_pretrain.py / run_classifier.py build them."""
    from src.config import bert_config, load_config
    cfg = load_config(os.path.join(REPO, yaml_name), [
        f"--bert_network={preset}", f"--model.seq_length={seq_length}", f"--model.vocab_size={vocab_size}",
        f"--device_target={DEVICE_TARGET}", "--optimizer=AdamWeightDecay"])
    return cfg, bert_config(cfg)


def vocab_size_of(vocab):
    with open(os.path.join(REPO, vocab), encoding="utf-8") as f:
        return sum(1 for _ in f)


def model_cases(shapes):
    """The model rows, each with the project config that both frameworks build."""
    chinese, english = vocab_size_of(CHINESE_VOCAB), vocab_size_of(ENGLISH_VOCAB)
    cases, configs = [], {}
    for preset, batch_size in shapes.pretrain:
        cfg, config = project_config("pretrain_config.yaml", preset, shapes.seq_length, chinese)
        cases.append(ModelCase(f"pretrain_{preset}", "pretrain",
                               f"pretraining step, `{preset}`", batch_size, dataclasses.asdict(config)))
        configs[cases[-1].key] = cfg
    preset = shapes.finetune_preset
    cfg, config = project_config("task_classifier_config.yaml", preset, shapes.seq_length, chinese)
    for task, title in (("classifier", "fine-tuning step, classifier"),
                        ("classifier_forward", "inference, classifier forward (eval mode)")):
        cases.append(ModelCase(f"{task}_{preset}", task, f"{title}, `{preset}`", shapes.classifier_batch_size,
                               dataclasses.asdict(config), CLASSIFIER_CLASSES))
        configs[cases[-1].key] = cfg
    cfg, config = project_config("task_classifier_config.yaml", preset, shapes.seq_length, english)
    cases.append(ModelCase(f"cola_{preset}", "classifier",
                           f"fine-tuning, CoLA-length inputs (ours: `bucket_list` {list(COLA_BUCKET_LIST)}; "
                           f"HF: padded to {shapes.seq_length}), `{preset}`",
                           shapes.classifier_batch_size, dataclasses.asdict(config), COLA_CLASSES, COLA_BUCKET_LIST))
    configs[cases[-1].key] = cfg
    cfg, config = project_config("task_squad_config.yaml", preset, shapes.squad_seq_length, english)
    cases.append(ModelCase(f"squad_{preset}", "squad", f"fine-tuning step, SQuAD, `{preset}`",
                           shapes.squad_batch_size, dataclasses.asdict(config)))
    configs[cases[-1].key] = cfg
    return cases, configs


def ms_network(case):
    """The project's Cell for `case`: a loss network for train steps, the task model for inference."""
    from src.bert_for_finetune import BertCLS, BertSquad
    from src.bert_for_pre_training import BertNetworkWithLoss
    from src.bert_model import BertConfig
    from src.finetune_eval_model import BertCLSModel
    config = BertConfig(**case.model)
    if case.task == "pretrain":
        return BertNetworkWithLoss(config, is_training=True)
    if case.task == "classifier":
        return BertCLS(config, is_training=True, num_labels=case.num_labels)
    if case.task == "squad":
        return BertSquad(config, is_training=True)
    return BertCLSModel(config, is_training=False, num_labels=case.num_labels)


# Inputs of each project Cell in its `construct` order (the loaders' column order), by model_inputs' names.
MS_COLUMNS = {
    "pretrain": ("input_ids", "input_mask", "token_type_ids", "next_sentence_labels", "masked_lm_positions",
                 "masked_lm_ids", "masked_lm_weights"),
    "classifier": ("input_ids", "input_mask", "token_type_ids", "label_ids"),
    "squad": ("input_ids", "input_mask", "token_type_ids", "start_positions", "end_positions"),
    "classifier_forward": ("input_ids", "input_mask", "token_type_ids"),
}
# Optimizer steps the learning-rate schedule decays over (any number above the steps run).
SCHEDULE_STEPS = 1000


def ms_train_cell(network, cfg):
    """The train cell `build_train_cell` makes from `cfg`, in training mode. No warmup: the learning
    rate is not zero, so every timed step really updates the weights."""
    from src.optimizers import build_optimizer
    from src.training import build_train_cell
    optimizer = build_optimizer(cfg, network.trainable_params(), SCHEDULE_STEPS, DEVICE_TARGET, warmup_steps=0)
    train_cell = build_train_cell(network, optimizer, cfg)
    train_cell.set_train(True)
    return train_cell


def ms_model_step(case, cfg, repeats):
    """Median step time of the project's train cell (or forward) on one random batch."""
    import mindspore as ms

    network = ms_network(case)
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


def cola_lengths():
    """Tokens ([CLS] sentence [SEP]) of each sentence of the CoLA fixture, with the English vocabulary."""
    tokenizer = our_tokenizer(ENGLISH_VOCAB)
    with open(os.path.join(REPO, COLA_FIXTURE), encoding="utf-8") as f:
        return [len(tokenizer.tokenize(line.rstrip("\n").split("\t")[3])) + 2 for line in f if line.strip()]


def ms_bucketed_pass(case, cfg, repeats, work_dir):
    """Samples/s of fine-tuning passes over COLA_ROWS rows of CoLA lengths, padded to seq_length on disk
    and batched by `create_dataset(bucket_list=...)` as run_classifier.py does: loader and steps timed."""
    import numpy as np
    from src.dataset import CLASSIFIER_COLUMNS, create_dataset
    from src.records import write_tfrecord

    rng = np.random.RandomState(0)
    seq, lengths = case.seq_length, cola_lengths()
    rows = []
    for index in range(COLA_ROWS):
        real = np.arange(seq) < min(lengths[index % len(lengths)], seq)
        rows.append({"input_ids": np.where(real, rng.randint(1, case.model["vocab_size"], seq), 0),
                     "input_mask": real.astype(np.int64), "segment_ids": np.zeros(seq, np.int64),
                     "label_ids": np.array([index % COLA_CLASSES])})
    path = os.path.join(work_dir, "cola_lengths.tfrecord")
    write_tfrecord(path, rows)
    dataset = create_dataset(path, CLASSIFIER_COLUMNS, case.batch_size, do_shuffle=True, seq_length=seq,
                             bucket_list=case.bucket_list)
    train_cell = ms_train_cell(ms_network(case), cfg)
    samples = []

    def one_pass(_):
        count = 0
        for batch in dataset.create_tuple_iterator(num_epochs=1):
            loss, _overflow, _scale = train_cell(*batch)
            count += batch[0].shape[0]
        loss.asnumpy()
        samples.append(count)

    # One untimed pass compiles a graph per bucket length; median_seconds adds its warm-up passes.
    seconds, times = median_seconds(one_pass, repeats, warmup=2)
    timed_samples = samples[-repeats:]
    rates = [count / t for count, t in zip(timed_samples, times)]
    return {"seconds": case.batch_size / statistics.median(rates), "times": times, "samples": timed_samples,
            "samples_per_s": statistics.median(rates),
            "mean_length": float(np.mean(lengths))}


def tokenizer_rate(lines, vocab, repeats):
    # A fresh tokenizer for every repetition (built untimed): each one tokenizes the corpus
    # from an empty word cache, as a real first pass over a corpus does.
    seconds, times = median_seconds(lambda tokenizer: token_ids(tokenizer, lines), repeats,
                                    setup=lambda: our_tokenizer(vocab))
    return {"mb_per_s": megabytes(lines) / seconds, "megabytes": megabytes(lines), "seconds": seconds,
            "times": times}


def generator_rate(corpus_file, output_dir, repeats):
    """Wall time of `python -m src.create_pretraining_data` (start-up included) on the Chinese corpus."""
    command = [sys.executable, "-m", "src.create_pretraining_data", f"--input_file={corpus_file}",
               f"--output_dir={output_dir}", f"--vocab_file={CHINESE_VOCAB}",
               f"--dupe_factor={GENERATOR_DUPE_FACTOR}", f"--num_workers={GENERATOR_WORKERS}",
               f"--max_seq_length={LOADER_SEQ_LENGTH}", "--overwrite=true"]
    run = lambda _: subprocess.run(command, cwd=REPO, env=CLEAN_ENV, check=True, capture_output=True)  # noqa: E731
    seconds, times = median_seconds(run, repeats, warmup=1)
    with open(os.path.join(output_dir, "stats.json"), encoding="utf-8") as f:
        instances = json.load(f)["instances"]
    return {"instances_per_s": instances / seconds, "instances": instances, "seconds": seconds, "times": times}


def google_generator_rate(python, corpus_file, output_dir, repeats):
    """Wall time of Google BERT's own `create_pretraining_data.py` (PyPI `bert-tensorflow`, one process)
    on the same corpus with the same settings as `generator_rate`; None where it is not installed."""
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
    run = lambda _: subprocess.run(command, cwd=output_dir, env=CLEAN_ENV, check=True,  # noqa: E731
                                   capture_output=True)
    seconds, times = median_seconds(run, repeats, warmup=1)
    counter = [python, "-c", "import sys, tensorflow as tf; "
               "print(sum(1 for _ in tf.data.TFRecordDataset(sys.argv[1])))", output_file]
    instances = int(subprocess.run(counter, env=CLEAN_ENV, check=True, capture_output=True, text=True).stdout)
    return {"available": True, "instances_per_s": instances / seconds, "instances": instances, "seconds": seconds,
            "times": times, "bert_tensorflow": package_version("bert-tensorflow")}


def loader_rate(data_dir, repeats):
    """Batches/s of one pass of `create_bert_dataset` over the generated shards."""
    from src.dataset import create_bert_dataset

    def one_pass(_):
        dataset = create_bert_dataset(data_dir=data_dir, batch_size=LOADER_BATCH_SIZE, do_shuffle=True,
                                      seq_length=LOADER_SEQ_LENGTH)
        return sum(1 for _ in dataset.create_tuple_iterator(num_epochs=1))

    batches = one_pass(None)
    seconds, times = median_seconds(one_pass, repeats, warmup=0)
    return {"batches_per_s": batches / seconds, "batches": batches, "seconds": seconds, "times": times}


# ---------------------------------------------------------------------------------------------------
# Hugging Face (child process: `--hf_worker`)


def hf_worker(plan_path, result_path):
    """Runs every Hugging Face measurement of the plan the parent wrote; writes the results as JSON."""
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    try:
        import torch
        import transformers
    except ImportError as error:
        result = {"available": False, "reason": f"{error.name} is not installed in {sys.executable}"}
    else:
        default_threads = torch.get_num_threads()
        torch.set_num_threads(os.cpu_count())
        torch.manual_seed(0)
        result = {"available": True, "python": sys.executable, "torch": torch.__version__,
                  "transformers": transformers.__version__, "tokenizers": package_version("tokenizers"),
                  "torch_default_threads": default_threads, "torch_threads": torch.get_num_threads(),
                  "torch_interop_threads": torch.get_num_interop_threads(),
                  "gemm": hf_gemm_gflops(plan["gemm_size"]), "models": {}, "tokenizer": {}}
        for fields in plan["cases"]:
            case = ModelCase(**fields)
            print(f"[hf] {case.title}", flush=True)
            result["models"][case.key] = hf_model_step(case, plan["repeats"])
        for language, lines_file in plan["corpora"].items():
            print(f"[hf] tokenizer, {language}", flush=True)
            result["tokenizer"][language] = hf_tokenizer_rate(lines_file, CORPORA[language][1], plan["repeats"])
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


def hf_gemm_gflops(size):
    import torch
    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds, times = median_seconds(lambda _: torch.matmul(a, b), GEMM_REPEATS)
    return {"gflops": 2 * size ** 3 / seconds / 1e9, "seconds": seconds, "times": times}


def hf_config(case):
    """transformers.BertConfig of the same architecture as the project's config."""
    import transformers
    model = case.model
    return transformers.BertConfig(
        vocab_size=model["vocab_size"], hidden_size=model["hidden_size"],
        num_hidden_layers=model["num_hidden_layers"], num_attention_heads=model["num_attention_heads"],
        intermediate_size=model["intermediate_size"], hidden_act="gelu",  # exact (erf) GELU, as ours
        hidden_dropout_prob=model["hidden_dropout_prob"],
        attention_probs_dropout_prob=model["attention_probs_dropout_prob"],
        max_position_embeddings=model["max_position_embeddings"], type_vocab_size=model["type_vocab_size"],
        initializer_range=model["initializer_range"], layer_norm_eps=model["layer_norm_eps"],
        num_labels=case.num_labels or 2)


def hf_batch(case):
    """The same random batch as the project's, in the arguments of the Hugging Face model."""
    import torch
    arrays = model_inputs(case)
    batch = {"input_ids": arrays["input_ids"], "attention_mask": arrays["input_mask"],
             "token_type_ids": arrays["token_type_ids"]}
    if case.task == "pretrain":
        # Hugging Face takes MLM labels per position: the original token at the masked ones, -100 elsewhere.
        labels = torch.full((case.batch_size, case.seq_length), -100, dtype=torch.long)
        positions = torch.from_numpy(arrays["masked_lm_positions"]).long()
        labels.scatter_(1, positions, torch.from_numpy(arrays["masked_lm_ids"]).long())
        batch.update(labels=labels, next_sentence_label=arrays["next_sentence_labels"].reshape(-1))
    elif case.task == "classifier":
        batch.update(labels=arrays["label_ids"].reshape(-1))
    elif case.task == "squad":
        batch.update(start_positions=arrays["start_positions"].reshape(-1),
                     end_positions=arrays["end_positions"].reshape(-1))
    return {name: value if isinstance(value, torch.Tensor) else torch.from_numpy(value).long()
            for name, value in batch.items()}


HF_CLASSES = {"pretrain": "BertForPreTraining", "classifier": "BertForSequenceClassification",
              "classifier_forward": "BertForSequenceClassification", "squad": "BertForQuestionAnswering"}
# Our AdamWeightDecay settings: the Hugging Face side uses the same.
HF_LEARNING_RATE = 3e-5
HF_WEIGHT_DECAY = 0.01
GRADIENT_CLIP_NORM = 1.0


def hf_model_step(case, repeats):
    """Median time of a torch train step (forward, backward, clipping, AdamW) or eval-mode forward."""
    import torch
    import transformers
    model = getattr(transformers, HF_CLASSES[case.task])(hf_config(case))
    batch = hf_batch(case)
    if case.task == "classifier_forward":
        model.eval()

        def run(_):
            with torch.inference_mode():
                model(**batch)
    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=HF_LEARNING_RATE, weight_decay=HF_WEIGHT_DECAY)

        def run(_):
            optimizer.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            # Google BERT and our train cell clip the global gradient norm: so does this step.
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP_NORM)
            optimizer.step()
    seconds, times = median_seconds(run, repeats)
    return {"seconds": seconds, "times": times, "class": HF_CLASSES[case.task],
            "attn_implementation": model.config._attn_implementation}


def hf_tokenizer_rate(lines_file, vocab, repeats):
    """MB/s of BertTokenizerFast built from our vocabulary: its Rust `tokenizers` backend alone
    (`encode_batch`) and the transformers call users write (`tokenizer(lines)`, which adds Python
    conversions); and the share of lines whose ids equal our FullTokenizer's."""
    import transformers
    with open(lines_file, encoding="utf-8") as f:
        lines = json.load(f)
    # transformers 5 takes the vocabulary file as `vocab` (and silently ignores 4.x's `vocab_file`).
    tokenizer = transformers.BertTokenizerFast(vocab=os.path.join(REPO, vocab), do_lower_case=True)
    if len(tokenizer) != vocab_size_of(vocab):
        raise RuntimeError(f"BertTokenizerFast loaded {len(tokenizer)} tokens from {vocab}")
    backend = tokenizer.backend_tokenizer
    encode = lambda _: [e.ids for e in backend.encode_batch(lines, add_special_tokens=False)]  # noqa: E731
    seconds, times = median_seconds(encode, repeats)
    call = lambda _: tokenizer(lines, add_special_tokens=False)["input_ids"]  # noqa: E731
    call_seconds, call_times = median_seconds(call, repeats)
    theirs = call(None)
    if theirs != encode(None):
        raise RuntimeError("BertTokenizerFast: its backend and its call disagree")
    ours = token_ids(our_tokenizer(vocab), lines)
    identical = sum(a == b for a, b in zip(ours, theirs)) / len(lines)
    return {"mb_per_s": megabytes(lines) / seconds, "seconds": seconds, "times": times,
            "transformers_call_mb_per_s": megabytes(lines) / call_seconds, "transformers_call_times": call_times,
            "identical_lines": identical}


def run_hf(hf_python, shapes_cases, gemm_size, corpora_lines, repeats, work_dir):
    """Start the Hugging Face child with `hf_python`; returns its results (or why there are none)."""
    plan = {"gemm_size": gemm_size, "repeats": repeats,
            "cases": [dataclasses.asdict(case) for case in shapes_cases], "corpora": {}}
    for language, lines in corpora_lines.items():
        path = os.path.join(work_dir, f"{language}_lines.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(lines, f, ensure_ascii=False)
        plan["corpora"][language] = path
    plan_path, result_path = os.path.join(work_dir, "hf_plan.json"), os.path.join(work_dir, "hf_results.json")
    with open(plan_path, "w", encoding="utf-8") as f:
        json.dump(plan, f)
    completed = subprocess.run([hf_python, os.path.abspath(__file__), "--hf_worker", plan_path, result_path],
                               cwd=REPO, env=CLEAN_ENV, check=False)
    if completed.returncode != 0 or not os.path.exists(result_path):
        return {"available": False, "reason": f"{hf_python} --hf_worker exited with {completed.returncode}"}
    with open(result_path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------------
# Report


@dataclasses.dataclass
class Row:
    measurement: str
    setting: str
    unit: str
    project: float = None
    hf: float = None
    digits: int = 1

    @property
    def ratio(self):
        return self.project / self.hf if self.project and self.hf else None

    def cells(self):
        number = lambda value: "—" if value is None else f"{value:,.{self.digits}f}"  # noqa: E731
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}"
        return [self.measurement, self.setting, self.unit, number(self.project), number(self.hf), ratio]


def model_rows(case, ms_result, hf_result, peak_gflops):
    """samples/s (+ tokens/s for pretraining) and MFU of one model case, both frameworks."""
    setting = f"batch {case.batch_size}, seq {case.seq_length}, vocab {case.model['vocab_size']}"
    if case.task == "pretrain":
        setting += f", {MASKED_POSITIONS} masked"
    elif case.num_labels:
        setting += f", {case.num_labels} classes"
    samples = [case.batch_size / result["seconds"] if result else None for result in (ms_result, hf_result)]
    rows = [Row(case.title, setting, "samples/s", *samples)]
    if case.task == "pretrain":
        rows.append(Row(case.title, setting, "tokens/s", *[s and s * case.seq_length for s in samples], digits=0))
    if case.bucket_list:  # the two sides do different work (bucketed vs padded): no common FLOPs
        return rows
    flops = model_flops_per_sample(case)
    mfu = [s and 100 * s * flops / (peak_gflops * 1e9) for s in samples]
    rows.append(Row(case.title, setting, "MFU %", *mfu, digits=2))
    return rows


def markdown(rows, notes, machine_line):
    header = ["measurement", "setting", "unit", "this project (MindSpore)", "reference: Hugging Face (torch)",
              "project / reference"]
    lines = [machine_line, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    lines += [""] + [f"{index}. {note}" for index, note in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def build_notes(shapes, repeats, peak, gemm_rows_source, hf, torch_threads, ms_threads, cola_mean, google):
    attention = ", ".join(sorted({f"`{model['attn_implementation']}`" for model in hf.get("models", {}).values()}))
    notes = [
        f"Each rate: median of {repeats} timed repetitions after {WARMUP_REPETITIONS} untimed warm-up ones "
        "(the first compiles MindSpore's graph / allocates torch's optimizer state; MindSpore's steps settle "
        "after about 5); the generator: after 1, "
        "start-up of the command included; the loader: a full pass over the generated shards.",
        f"GEMM: fp32 [{shapes.gemm_size}×{shapes.gemm_size}] @ [{shapes.gemm_size}×{shapes.gemm_size}], "
        f"2·n³ FLOPs; MindSpore `ops.matmul` compiled with `ms.jit` (graph mode), torch `torch.matmul` (eager); "
        f"median of {GEMM_REPEATS}.",
        f"MFU = model FLOPs/s ÷ {peak:.1f} GFLOP/s, the higher of the two GEMM rates ({gemm_rows_source}): "
        "both frameworks are measured against the same machine peak. Model FLOPs per sequence of a train step "
        "= 3 × forward (backward = 2 × forward), forward = 2·N_enc·S + 4·L·S²·D [+ 2·P·D² + 2·P·D·V for "
        "pretraining], i.e. train = 6·N_enc·S + 12·L·S²·D + 6·P·D² + 6·P·D·V, where N_enc = L·(4·D² + 2·D·I) "
        "encoder matmul weights (Q, K, V, attention output, two FFN layers; embeddings excluded), "
        "L layers, S sequence length, D hidden, I intermediate, V vocabulary, "
        f"4·L·S²·D the attention scores QKᵀ and context PV, P = {MASKED_POSITIONS} masked positions, 6·P·D² the MLM "
        "transform and 6·P·D·V the tied decoder at the masked positions only. Pooler, NSP, classifier and "
        "span heads are left out (under 0.1% of the total). Inference = the forward alone. Hugging Face's "
        "`BertForPreTraining` runs its decoder on all S positions (more work than counted), which lowers "
        "its MFU by design of that implementation.",
        "Pretraining: `BertNetworkWithLoss` + `BertTrainOneStepCell` as `run_pretrain.py` builds them "
        "(`src.training.build_train_cell`: dynamic loss scale from 2^32, finiteness check, global-norm "
        "clipping at 1.0, `nn.AdamWeightDecay` via `src.optimizers.build_optimizer`), dropout 0.1 on, "
        "fp32, random token ids; skipped (overflowing) steps are counted in results.json. Hugging Face: "
        f"`BertForPreTraining` with MLM labels at the same {MASKED_POSITIONS} positions (-100 elsewhere) and "
        f"NSP labels, `loss.backward()`, `clip_grad_norm_({GRADIENT_CLIP_NORM})`, `torch.optim.AdamW` "
        f"(lr {HF_LEARNING_RATE}, weight decay {HF_WEIGHT_DECAY}); no loss scaling (fp32); attention "
        f"implementation {attention or '—'} (transformers' default).",
        "Fine-tuning: `BertCLS` / `BertSquad` (src/bert_for_finetune.py) through the same train cell, "
        "against `BertForSequenceClassification` / `BertForQuestionAnswering` with the same torch step; "
        "SQuAD with the English vocabulary (30522). Inference: `BertCLSModel` with is_training=False "
        "against the Hugging Face model in `eval()` under `torch.inference_mode()`.",
        f"CoLA-length inputs: {COLA_ROWS} rows whose real lengths are those of the CoLA sentences in "
        f"`{COLA_FIXTURE}` (mean {cola_mean:.1f} tokens), stored padded to seq {shapes.seq_length}; ours is "
        "whole shuffled passes through `create_dataset(bucket_list=...)` and the train cell, as run_classifier.py "
        "trains (loader included; a graph per bucket length, compiled in the warm-up pass); Hugging Face is "
        f"its classifier step on full batches of {shapes.seq_length} tokens, what padding to max_seq_length "
        "costs it (its attention runs over the padding too).",
        "Tokenizer: text → ids of every non-empty line; ours `FullTokenizer` (a fresh one each repetition: "
        "empty word cache), single-threaded Python; Hugging Face `BertTokenizerFast(vocab=our vocab file, "
        "do_lower_case=True)`, its Rust `tokenizers` backend's `encode_batch` (may use every core); through "
        "the transformers call `tokenizer(lines)` it is slower: " + ", ".join(
            f"{language} {result['transformers_call_mb_per_s']:.2f} MB/s"
            for language, result in hf.get("tokenizer", {}).items()) + ". 'tokens identical' is the share "
        "of lines whose ids equal ours.",
        f"Generator: `python -m src.create_pretraining_data` on the Chinese corpus, dupe_factor "
        f"{GENERATOR_DUPE_FACTOR}, {GENERATOR_WORKERS} workers, no whole-word mask, TFRecord; instances/s of "
        f"the whole command. Its reference is Google BERT's own `create_pretraining_data.py` (PyPI "
        f"`bert-tensorflow`, the single-process original, run by --hf_python) with the same settings "
        f"(max_seq_length {LOADER_SEQ_LENGTH}, {MASKED_POSITIONS} predictions, masked_lm_prob 0.15, "
        "short_seq_prob 0.1, seed 12345), start-up included"
        + ("" if google.get("available") else f"; not measured: {google.get('reason')}") + ". "
        f"Loader: `create_bert_dataset`, batch {LOADER_BATCH_SIZE}, seq "
        f"{LOADER_SEQ_LENGTH}, shuffled, over those shards; no counterpart.",
        f"Threads: MindSpore CPU kernels `ms.device_context.cpu.op_tuning.threads_num({ms_threads})`; "
        + (f"torch `set_num_threads({torch_threads})` (its default here: {hf.get('torch_default_threads')}), "
           f"interop threads {hf.get('torch_interop_threads')} (default). Hugging Face ran in a child process "
           f"({hf.get('python')}) before the MindSpore rows, so the two never shared the cores."
           if hf.get("available") else f"Hugging Face not measured: {hf.get('reason')}."),
    ]
    if shapes is QUICK_SHAPES:
        notes.insert(0, "QUICK SMOKE TEST: tiny shapes and a corpus excerpt; these numbers mean nothing.")
    return notes


# ---------------------------------------------------------------------------------------------------


def run_suite(args):
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    os.makedirs(args.output_dir, exist_ok=True)
    work_dir = tempfile.mkdtemp(prefix="bench_")
    try:
        return _run_suite(args, shapes, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _run_suite(args, shapes, work_dir):
    started = time.time()
    cases, configs = model_cases(shapes)
    corpora_lines = {language: read_corpus_lines(corpus, shapes.corpus_lines)
                     for language, (corpus, _) in CORPORA.items()}

    print(f"Hugging Face measurements ({args.hf_python}) ...", flush=True)
    hf = run_hf(args.hf_python, cases, shapes.gemm_size, corpora_lines, args.repeats, work_dir)

    print("MindSpore measurements ...", flush=True)
    threads = ms_setup()
    results = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                           "mindspore": package_version("mindspore"), "numpy": package_version("numpy"),
                           "torch": hf.get("torch"), "transformers": hf.get("transformers"),
                           "tokenizers": hf.get("tokenizers"), **threads,
                           "torch_threads": hf.get("torch_threads"),
                           "torch_default_threads": hf.get("torch_default_threads")},
               "settings": {"quick": args.quick, "repeats": args.repeats, "warmup": WARMUP_REPETITIONS,
                            "shapes": dataclasses.asdict(shapes)},
               "hugging_face": hf, "project": {}}
    project = results["project"]
    print("[ms] GEMM", flush=True)
    project["gemm"] = ms_gemm_gflops(shapes.gemm_size)
    project["models"] = {}
    for case in cases:
        print(f"[ms] {case.title}", flush=True)
        step = (ms_bucketed_pass(case, configs[case.key], args.repeats, work_dir) if case.bucket_list
                else ms_model_step(case, configs[case.key], args.repeats))
        project["models"][case.key] = {**step,
                                       "flops_per_sample": model_flops_per_sample(case),
                                       "case": dataclasses.asdict(case)}
    project["tokenizer"] = {}
    for language, (_, vocab) in CORPORA.items():
        print(f"[ms] tokenizer, {language}", flush=True)
        project["tokenizer"][language] = tokenizer_rate(corpora_lines[language], vocab, args.repeats)
    corpus_file = os.path.join(REPO, CORPORA["zh"][0])
    if shapes.corpus_lines:
        corpus_file = os.path.join(work_dir, "zh_excerpt.txt")
        with open(os.path.join(REPO, CORPORA["zh"][0]), encoding="utf-8") as f:
            excerpt = [next(f) for _ in range(shapes.corpus_lines)]
        with open(corpus_file, "w", encoding="utf-8") as f:
            f.writelines(excerpt)
    print("[ms] generator", flush=True)
    shards = os.path.join(work_dir, "pretraining_data")
    project["generator"] = generator_rate(corpus_file, shards, args.repeats)
    print("[google] generator", flush=True)
    google_dir = os.path.join(work_dir, "google_generator")
    os.makedirs(google_dir)
    results["google_generator"] = google_generator_rate(args.hf_python, corpus_file, google_dir, args.repeats)
    print("[ms] loader", flush=True)
    project["loader"] = loader_rate(shards, args.repeats)
    results["wall_seconds"] = time.time() - started

    table = report(results, cases, shapes, args.repeats)
    with open(os.path.join(args.output_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(table)
    print(table)
    print(f"written: {os.path.join(args.output_dir, 'results.json')}, {os.path.join(args.output_dir, 'results.md')}")


def report(results, cases, shapes, repeats):
    """The Markdown table (with its machine line and notes) from the results."""
    project, hf = results["project"], results["hugging_face"]
    hf_available = hf.get("available", False)
    hf_gemm = hf["gemm"]["gflops"] if hf_available else None
    peak = max(project["gemm"]["gflops"], hf_gemm or 0)
    source = "MindSpore" if peak == project["gemm"]["gflops"] else "torch"
    rows = [Row("fp32 GEMM", f"{shapes.gemm_size}×{shapes.gemm_size}×{shapes.gemm_size}", "GFLOP/s",
                project["gemm"]["gflops"], hf_gemm)]
    for case in cases:
        rows += model_rows(case, project["models"][case.key], hf["models"][case.key] if hf_available else None,
                           peak)
    for language, (corpus, _) in CORPORA.items():
        ours = project["tokenizer"][language]
        theirs = hf["tokenizer"][language] if hf_available else {}
        setting = f"{os.path.basename(corpus)} ({ours['megabytes']:.2f} MB)"
        rows.append(Row(f"tokenizer, {language}", setting, "MB/s", ours["mb_per_s"], theirs.get("mb_per_s"),
                        digits=2))
        if theirs:
            rows.append(Row(f"tokenizer, {language}: tokens identical to ours", setting, "% of lines", None,
                            100 * theirs["identical_lines"]))
    generator, google = project["generator"], results["google_generator"]
    rows.append(Row("pretraining-data generator (reference: Google's create_pretraining_data.py)",
                    f"zh corpus, dupe_factor {GENERATOR_DUPE_FACTOR}, {GENERATOR_WORKERS} workers "
                    f"({generator['instances']} instances; Google {google.get('instances', '—')})", "instances/s",
                    generator["instances_per_s"], google.get("instances_per_s"), digits=0))
    rows.append(Row("pretraining loader", f"batch {LOADER_BATCH_SIZE}, seq {LOADER_SEQ_LENGTH} "
                    f"({project['loader']['batches']} batches)", "batches/s", project["loader"]["batches_per_s"],
                    digits=0))
    machine = results["machine"]
    machine_line = (f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, "
                    f"MindSpore {machine['mindspore']}, numpy {machine['numpy']}, "
                    f"torch {machine['torch'] or 'not installed'}, "
                    f"transformers {machine['transformers'] or 'not installed'}, "
                    f"tokenizers {machine['tokenizers'] or 'not installed'}; "
                    f"threads: MindSpore {machine['mindspore_kernel_threads']}, torch {machine['torch_threads']}.")
    cola_mean = next(project["models"][case.key]["mean_length"] for case in cases if case.bucket_list)
    notes = build_notes(shapes, repeats, peak, source, hf, machine["torch_threads"],
                        machine["mindspore_kernel_threads"], cola_mean, results["google_generator"])
    return markdown(rows, notes, machine_line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=SUITES, help="which suite to run (cpu: everything above, on CPU)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny shapes, a corpus excerpt")
    parser.add_argument("--output_dir", default="bench_output", help="where results.json and results.md go")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS,
                        help=f"timed repetitions per measurement (at least {MIN_REPEATS})")
    parser.add_argument("--hf_python", default=sys.executable,
                        help="interpreter with torch + transformers for the Hugging Face rows (default: this one)")
    parser.add_argument("--hf_worker", nargs=2, metavar=("PLAN", "RESULT"),
                        help="internal: run the Hugging Face measurements of PLAN, write RESULT")
    args = parser.parse_args()
    if args.hf_worker:
        hf_worker(*args.hf_worker)
        return
    if args.suite is None:
        parser.error("--suite is required")
    if args.repeats < MIN_REPEATS:
        parser.error(f"--repeats must be at least {MIN_REPEATS}, got {args.repeats}")
    run_suite(args)


if __name__ == "__main__":
    main()
