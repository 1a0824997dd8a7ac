"""Helpers shared by the tests: tiny configs, random weights and inputs, small filesystems."""

import contextlib
import os
import subprocess

import mindspore as ms
import pytest
import numpy as np

from src.bert_model import PRESETS, BertConfig

# Config fields of a model without dropout: it trains deterministically, and its training mode differs
# from its inference mode only in the kernel forms (src.kernel_forms).
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_config(**changes):
    """The `tiny` preset shrunk further for tests: vocab 50, sequence 8."""
    fields = dict(PRESETS["tiny"], vocab_size=50, seq_length=8, type_vocab_size=2, max_position_embeddings=16)
    fields.update(changes)
    return BertConfig(**fields)


def randomize_parameters(net, seed=0, scale=0.2):
    """Give every parameter random values (LayerNorm gains near 1); returns {name: array}."""
    rng = np.random.RandomState(seed)
    values = {}
    for param in net.get_parameters():
        value = rng.normal(0.0, scale, param.shape).astype(np.float32)
        if param.name.endswith("gamma"):
            value += 1.0
        param.set_data(ms.Tensor(value))
        values[param.name] = value
    return values


def random_inputs(config, batch_size=3, lengths=(8, 5, 2), seed=1):
    """(input_ids, token_type_ids, input_mask) int32 [B, S] with padding after `lengths`."""
    rng = np.random.RandomState(seed)
    seq = config.seq_length
    input_ids = rng.randint(1, config.vocab_size, (batch_size, seq)).astype(np.int32)
    token_type_ids = rng.randint(0, config.type_vocab_size, (batch_size, seq)).astype(np.int32)
    input_mask = (np.arange(seq)[None, :] < np.array(lengths)[:, None]).astype(np.int32)
    input_ids[input_mask == 0] = 0
    token_type_ids[input_mask == 0] = 0
    return input_ids, token_type_ids, input_mask


def encoder_inputs(config, **options):
    """`random_inputs` by `BertModel`'s argument names, for calls by keyword: {input_ids, token_type_ids,
    input_mask}."""
    return dict(zip(("input_ids", "token_type_ids", "input_mask"), random_inputs(config, **options)))


def encoder_tensors(config, **options):
    """`encoder_inputs` as MindSpore tensors."""
    return {name: ms.Tensor(array) for name, array in encoder_inputs(config, **options).items()}


def run(net, *arrays, **named_arrays):
    """Call a Cell on NumPy arrays, positional or by keyword; returns NumPy outputs."""
    outputs = net(*[ms.Tensor(a) for a in arrays], **{name: ms.Tensor(a) for name, a in named_arrays.items()})
    return [o.asnumpy() for o in outputs]


@contextlib.contextmanager
def mounted_tmpfs(path, options):
    """A fresh tmpfs mounted at `path` with mount `options` (e.g. "size=64k,ro") for the block, to make a full
    or read-only disk (tests run as root, which ignores mode bits); skips the test where mounting is refused."""
    os.makedirs(path, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                           text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to make a full or read-only disk: {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)
