"""A/B of the CPU kernels: the classifier `small` step (batch 32, seq 128) with the C++ kernels on and off.

    python bench/kernels_ab.py [--rounds 16] [--steps 5] [--variants composed,ln,gelu,both] [--inference]

Builds every variant in one process (`composed`: MindSpore's ops; `ln`: the
residual + LayerNorm kernel; `gelu`: the bias + GELU kernel; `both`), warms
each up, then times `--steps` steps of each variant in rotating order,
`--rounds` times, so that load changes on the machine hit every variant alike.
Prints the median per-step wall and CPU time of each variant and its ratio to
the first. `--inference` times the eval-mode forward instead of a train step.
"""

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import mindspore as ms  # noqa: E402

import src.bert_model as bert_model  # noqa: E402
from src.config import Config, bert_config, load_config  # noqa: E402
from src.kernel_forms import kernel_forms  # noqa: E402
from src.optimizers import build_optimizer  # noqa: E402
from src.task_models import BertCLS, BertCLSModel  # noqa: E402
from src.training import build_train_cell  # noqa: E402

WARMUP_STEPS = 5
SEQ_LENGTH = 128
VOCAB_SIZE = 21128
NUM_CLASS = 15
# Kernel choices of each variant, on top of the CPU's forms.
VARIANTS = {"composed": (False, False), "ln": (True, False), "gelu": (False, True), "both": (True, True)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=16, help="timed blocks per variant")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--variants", default="composed,ln,gelu,both", help="comma-separated, first is the base")
    parser.add_argument("--batch_size", type=int, default=32, help="rows per step")
    parser.add_argument("--inference", action="store_true", help="time the eval-mode forward")
    return parser.parse_args()


def build_step(name: str, cfg: Config, config: bert_model.BertConfig, batch: list[ms.Tensor],
               inference: bool) -> Callable[[], np.ndarray]:
    """A function running one step of the classifier built with variant `name`'s kernels."""
    layer_norm_kernel, bias_gelu_kernel = VARIANTS[name]
    forms = dataclasses.replace(kernel_forms("CPU"), layer_norm_kernel=layer_norm_kernel,
                                bias_gelu_kernel=bias_gelu_kernel)
    bert_model.kernel_forms = lambda *_: forms  # the model reads its forms when it is built
    if inference:
        net = BertCLSModel(config, False, NUM_CLASS)
        net.set_train(False)
        return lambda: net(*batch[:3]).asnumpy()
    net = BertCLS(config, True, NUM_CLASS)
    cell = build_train_cell(net, build_optimizer(cfg, net.trainable_params(), 1000, "CPU", warmup_steps=0), cfg)
    cell.set_train(True)
    return lambda: cell(*batch)[0].asnumpy()


def main() -> None:

    args = parse_args()
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    cfg = load_config(os.path.join(REPO, "task_classifier_config.yaml"),
                      ["--device_target=CPU", "--bert_network=small", f"--model.seq_length={SEQ_LENGTH}",
                       f"--model.vocab_size={VOCAB_SIZE}", "--model.compute_type=float32"])
    config = bert_config(cfg)
    rng = np.random.RandomState(0)
    shape = (args.batch_size, SEQ_LENGTH)
    batch = [ms.Tensor(rng.randint(1, VOCAB_SIZE, shape).astype(np.int32)), ms.Tensor(np.ones(shape, np.int32)),
             ms.Tensor(np.zeros(shape, np.int32)),
             ms.Tensor(rng.randint(0, NUM_CLASS, (args.batch_size,)).astype(np.int32))]
    variants = args.variants.split(",")
    steps = {name: build_step(name, cfg, config, batch, args.inference) for name in variants}
    for step in steps.values():
        for _ in range(WARMUP_STEPS):
            step()
    wall, cpu = {name: [] for name in variants}, {name: [] for name in variants}
    for round_index in range(args.rounds):
        shift = round_index % len(variants)
        for name in variants[shift:] + variants[:shift]:
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                steps[name]()
            wall[name].append((time.perf_counter() - start) / args.steps * 1000)
            cpu[name].append((time.process_time() - start_cpu) / args.steps * 1000)
    for label, table in (("wall", wall), ("cpu", cpu)):
        base = statistics.median(table[variants[0]])
        for name in variants:
            median = statistics.median(table[name])
            print(f"{label} {name:9s} median {median:7.1f} ms/step ({median / base:.3f} of {variants[0]})")


if __name__ == "__main__":
    main()
