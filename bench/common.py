"""What both sides of the benchmark share: shapes, cases, inputs, timing and FLOPs.

Imported by the MindSpore parent (`bench/run.py`) and by the Hugging Face child
(`bench/hf_side.py`, possibly another interpreter), so it imports neither
MindSpore nor torch: only NumPy and the project's pure-Python tokenizer. Both
sides build their inputs here from the same seeds, so they time the same rows.
"""

import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # NumPy is imported inside the functions that use it
    import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
from src.tokenization import FullTokenizer  # noqa: E402  (pure Python: safe in the Hugging Face child)

# The environment before MindSpore is imported, for child processes. `import mindspore` sets
# LD_LIBRARY_PATH to its own plugin libraries (torch then starts with 1 thread instead of one
# per core) and PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python (TensorFlow's protobuf in the
# generator ~4x slower); a user's shell has neither. run.py imports this module first.
CLEAN_ENV = dict(os.environ)

# Untimed calls before timing. MindSpore's step time settles only after about 5 calls (the
# first compiles; the next few run ~25% slower than the rest), torch's after 2.
WARMUP_REPETITIONS = 5
# Untimed passes before timing a pass over a data set: the first compiles (a graph per shape),
# and a pass holds enough steps for the step time to settle inside it.
PASS_WARMUP = 1
GEMM_REPEATS = 10

CHINESE_VOCAB = "data/vocab/bert-base-chinese-vocab.txt"   # 21128 tokens
ENGLISH_VOCAB = "data/vocab/bert-base-uncased-vocab.txt"   # 30522 tokens
CORPORA = {"zh": ("data/corpus/zh_sample.txt", CHINESE_VOCAB),
           "en": ("data/corpus/en_sample.txt", ENGLISH_VOCAB)}
MASKED_POSITIONS = 20          # max_predictions_per_seq of the pretraining data
# Token-length histograms of the fine-tuning sets, made once by bench/make_lengths.py.
LENGTHS_FILE = "bench/lengths.json"


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
    length_rows: int           # rows per pass of the real-length fine-tuning rows
    predict_sentences: int     # sentences classified by predict.py and the pipeline


FULL_SHAPES = Shapes(gemm_size=2048, pretrain=(("small", 32), ("base", 8)), seq_length=128,
                     finetune_preset="small", classifier_batch_size=32, squad_batch_size=8,
                     squad_seq_length=384, corpus_lines=0, length_rows=512, predict_sentences=512)
QUICK_SHAPES = Shapes(gemm_size=256, pretrain=(("tiny", 4),), seq_length=32, finetune_preset="tiny",
                      classifier_batch_size=4, squad_batch_size=2, squad_seq_length=64, corpus_lines=400,
                      length_rows=64, predict_sentences=32)


@dataclasses.dataclass
class ModelCase:
    """One model measurement on a fixed random batch, run by both frameworks on the same shapes.

    `model` holds every BertConfig field, resolved by the project's config
    loader (preset + overrides), so both sides build the same architecture.
    """
    key: str                   # row key in results.json
    task: str                  # "pretrain" | "classifier" | "squad" | "classifier_forward"
    title: str
    batch_size: int
    model: dict
    num_labels: int = 0

    @property
    def seq_length(self) -> int:
        return self.model["seq_length"]


@dataclasses.dataclass
class LengthCase:
    """Fine-tuning passes over rows with the real token lengths of a data set (lengths.json).

    Ours: the job's loader with its YAML defaults (plus `flags`); Hugging Face:
    a DataLoader with per-batch dynamic padding. `model` and `batch_size` come
    from the task's YAML, as in ModelCase.
    """
    key: str
    dataset: str               # cola | tnews | cluener (a key of lengths.json)
    task: str                  # "classifier" | "ner"
    title: str
    batch_size: int
    model: dict
    num_labels: int
    rows: int
    flags: tuple = ()          # our extra YAML overrides, e.g. ("--bucket_list=[16,32,64]",)

    @property
    def seq_length(self) -> int:
        return self.model["seq_length"]


# ---------------------------------------------------------------------------------------------------
# Timing and FLOPs


def median_seconds(run: Callable[[object], object], repeats: int, warmup: int = WARMUP_REPETITIONS,
                   setup: Callable[[], object] | None = None) -> tuple[float, list[float]]:
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


def pass_rate(one_pass: Callable[[], int], repeats: int) -> dict:
    """Samples/s of whole passes: `one_pass()` returns the samples it trained on; the median over
    `repeats` timed passes after PASS_WARMUP untimed ones. Returns a results.json entry."""
    samples = []
    seconds, times = median_seconds(lambda _: samples.append(one_pass()), repeats, warmup=PASS_WARMUP)
    timed = samples[-repeats:]
    rates = [count / t for count, t in zip(timed, times)]
    return {"samples_per_s": statistics.median(rates), "seconds": seconds, "times": times, "samples": timed}


def encoder_matmul_weights(model: dict) -> int:
    """N_enc: weights of the encoder's matrix multiplications (Q, K, V, output; two FFN layers)."""
    hidden, intermediate = model["hidden_size"], model["intermediate_size"]
    return model["num_hidden_layers"] * (4 * hidden * hidden + 2 * hidden * intermediate)


def forward_flops_per_sequence(case: ModelCase) -> int:
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


def model_flops_per_sample(case: ModelCase) -> int:
    """Forward only for inference; forward + backward (3x the forward) for a train step."""
    return forward_flops_per_sequence(case) * (1 if case.task == "classifier_forward" else 3)


# ---------------------------------------------------------------------------------------------------
# Inputs shared by both frameworks (NumPy only)


def model_inputs(case: ModelCase, seed: int = 0) -> dict[str, "np.ndarray"]:
    """Random batch of `case` as NumPy arrays, the same in both frameworks (same seed)."""
    import numpy as np
    rng = np.random.RandomState(seed)
    batch, seq, vocab = case.batch_size, case.seq_length, case.model["vocab_size"]
    arrays = {"input_ids": rng.randint(1, vocab, (batch, seq)).astype(np.int32),
              "input_mask": np.ones((batch, seq), np.int32),
              # segment A then segment B
              "segment_ids": (np.arange(seq)[None] >= seq // 2).astype(np.int32).repeat(batch, 0)}
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


def read_lengths(dataset: str) -> tuple["np.ndarray", "np.ndarray"]:
    """(lengths, records per length) of one data set of lengths.json, as NumPy arrays."""
    import numpy as np
    with open(os.path.join(REPO, LENGTHS_FILE), encoding="utf-8") as f:
        histogram = json.load(f)[dataset]["histogram"]
    return np.array([int(length) for length in histogram]), np.array(list(histogram.values()))


def length_rows(case: LengthCase, seed: int = 0) -> list[tuple[list[int], int | list[int]]]:
    """`case.rows` unpadded rows whose lengths are drawn from the data set's histogram, cut to
    seq_length as the converter truncates: [(token ids [L], labels)], labels an int (classifier)
    or [L] ints (ner). Random token ids: the speed depends on the lengths, not on the words."""
    import numpy as np
    rng = np.random.RandomState(seed)
    lengths, counts = read_lengths(case.dataset)
    drawn = np.minimum(rng.choice(lengths, size=case.rows, p=counts / counts.sum()), case.seq_length)
    rows = []
    for length in drawn:
        ids = rng.randint(1, case.model["vocab_size"], length).tolist()
        labels = (rng.randint(0, case.num_labels, length).tolist() if case.task == "ner"
                  else int(rng.randint(0, case.num_labels)))
        rows.append((ids, labels))
    return rows


def read_corpus_lines(corpus: str, limit: int) -> list[str]:
    with open(os.path.join(REPO, corpus), encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[:limit] if limit else lines


def megabytes(lines: Iterable[str]) -> float:
    return sum(len(line.encode("utf-8")) for line in lines) / 1e6


def our_tokenizer(vocab: str) -> FullTokenizer:
    """The project's FullTokenizer; a fresh one has an empty word cache."""
    return FullTokenizer(os.path.join(REPO, vocab), do_lower_case=True)


def token_ids(tokenizer: FullTokenizer, lines: Iterable[str]) -> list[list[int]]:
    """Text -> WordPiece ids, line by line."""
    return [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(line)) for line in lines]


def vocab_size_of(vocab: str) -> int:
    with open(os.path.join(REPO, vocab), encoding="utf-8") as f:
        return sum(1 for _ in f)


# ---------------------------------------------------------------------------------------------------
# Machine


def cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def package_version(name: str) -> str | None:

    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
