"""Pretraining train-step speed: samples/s of a full step (MLM + NSP, optimizer included).

    python bench/pretrain_step.py [--presets small,base] [--batch_size 32] [--seq_length 128]

For each preset and compute type (float32, float16), builds BertNetworkWithLoss
and BertTrainOneStepCell (AdamWeightDecay, dynamic loss scale, global-norm
clipping) in graph mode and reports the median time of `--repeats` steps after
one warm-up (compile) step, on a random batch with 20 masked positions.
"""

import argparse
import dataclasses
import os
import statistics
import sys
import time

import mindspore as ms
import numpy as np
from mindspore import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from src.bert_for_pre_training import BertNetworkWithLoss, BertTrainOneStepCell  # noqa: E402
from src.bert_model import PRESETS, BertConfig  # noqa: E402

MASKED_POSITIONS = 20
CHINESE_VOCAB_SIZE = 21128


def random_batch(config, batch_size, rng):
    seq = config.seq_length
    return [ms.Tensor(a) for a in (
        rng.randint(1, config.vocab_size, (batch_size, seq)).astype(np.int32),
        np.ones((batch_size, seq), np.int32),
        (np.arange(seq)[None] >= seq // 2).astype(np.int32).repeat(batch_size, 0),
        rng.randint(0, 2, (batch_size, 1)).astype(np.int32),
        np.sort(rng.rand(batch_size, seq).argsort(1)[:, :MASKED_POSITIONS], 1).astype(np.int32),
        rng.randint(1, config.vocab_size, (batch_size, MASKED_POSITIONS)).astype(np.int32),
        np.ones((batch_size, MASKED_POSITIONS), np.float32))]


def step_seconds(config, batch_size, repeats):
    network = BertNetworkWithLoss(config, is_training=True)
    optimizer = nn.AdamWeightDecay(network.trainable_params(), learning_rate=1e-4)
    cell = BertTrainOneStepCell(network, optimizer, nn.DynamicLossScaleUpdateCell(2.0 ** 16, 2, 1000))
    cell.set_train(True)
    batch = random_batch(config, batch_size, np.random.RandomState(0))
    cell(*batch)[0].asnumpy()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        cell(*batch)[0].asnumpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="small,base", help="comma-separated presets")
    parser.add_argument("--batch_size", type=int, default=32, help="sequences per step")
    parser.add_argument("--seq_length", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps")
    parser.add_argument("--compute_types", default="float32,float16", help="comma-separated compute types")
    parser.add_argument("--device_target", default="CPU", help="CPU, GPU or Ascend")
    args = parser.parse_args()
    ms.set_context(mode=ms.GRAPH_MODE, device_target=args.device_target)
    print(f"batch {args.batch_size}, seq {args.seq_length}, vocab {CHINESE_VOCAB_SIZE}, {args.device_target}, "
          f"median of {args.repeats} steps")
    print("| preset | compute_type | step s | samples/s |")
    print("|---|---|---|---|")
    for preset in args.presets.split(","):
        base = BertConfig(**PRESETS[preset], vocab_size=CHINESE_VOCAB_SIZE, seq_length=args.seq_length)
        for compute_type in args.compute_types.split(","):
            seconds = step_seconds(dataclasses.replace(base, compute_type=compute_type), args.batch_size,
                                   args.repeats)
            print(f"| {preset} | {compute_type} | {seconds:.2f} | {args.batch_size / seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
