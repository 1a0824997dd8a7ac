"""Which compute precision is fastest and still correct for the encoder on this machine?

    python bench/precision_cpu.py [--preset small] [--batch_size 16] [--repeats 5]

Builds one set of random weights, then for compute_type float32, float16 and
bfloat16 measures in graph mode the median time of an encoder forward and of a
forward + backward (gradients of the mean sequence output w.r.t. all weights),
and the max |difference| of sequence_output from float32. A precision without
kernels on this device is reported as unsupported. Prints a Markdown table.
"""

import argparse
import dataclasses
import os
import statistics
import sys
import time

import mindspore as ms
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from src.bert_model import PRESETS, BertConfig, BertModel  # noqa: E402

PRECISIONS = ("float32", "float16", "bfloat16")


def median_seconds(step, repeats):
    step()  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(config, weights, inputs, repeats):
    net = BertModel(config, is_training=False)
    for param in net.get_parameters():
        param.set_data(ms.Tensor(weights[param.name]))
    tensors = [ms.Tensor(a) for a in inputs]
    forward_output = net(*tensors)[0].asnumpy()
    forward = median_seconds(lambda: net(*tensors)[0].asnumpy(), repeats)

    def loss_fn(*args):
        return net(*args)[0].mean()

    grad_fn = ms.jit(ms.value_and_grad(loss_fn, None, net.trainable_params()))
    backward = median_seconds(lambda: grad_fn(*tensors)[0].asnumpy(), repeats)
    return forward_output, forward, backward


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model size preset")
    parser.add_argument("--batch_size", type=int, default=16, help="sequences per step")
    parser.add_argument("--seq_length", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per measurement")
    parser.add_argument("--device_target", default="CPU", help="CPU, GPU or Ascend")
    args = parser.parse_args()
    ms.set_context(mode=ms.GRAPH_MODE, device_target=args.device_target)

    base = BertConfig(**PRESETS[args.preset], seq_length=args.seq_length)
    rng = np.random.RandomState(0)
    weights = {p.name: p.asnumpy() for p in BertModel(base, is_training=False).get_parameters()}
    inputs = (rng.randint(1, base.vocab_size, (args.batch_size, args.seq_length)).astype(np.int32),
              np.zeros((args.batch_size, args.seq_length), np.int32),
              np.ones((args.batch_size, args.seq_length), np.int32))

    print(f"preset {args.preset}, batch {args.batch_size}, seq {args.seq_length}, {args.device_target}, "
          f"median of {args.repeats}")
    print("| compute_type | forward ms | forward+backward ms | max abs diff vs float32 |")
    print("|---|---|---|---|")
    reference = None
    for precision in PRECISIONS:
        config = dataclasses.replace(base, compute_type=precision)
        try:
            output, forward, backward = measure(config, weights, inputs, args.repeats)
        except (RuntimeError, TypeError, ValueError) as error:
            reason = " ".join([line.strip("- ") for line in str(error).splitlines()
                               if any(c.isalpha() for c in line)][:2])
            print(f"| {precision} | unsupported: {reason[:90]} | | |")
            continue
        reference = output if reference is None else reference
        print(f"| {precision} | {forward * 1e3:.1f} | {backward * 1e3:.1f} | "
              f"{np.abs(output - reference).max():.2e} |")


if __name__ == "__main__":
    main()
