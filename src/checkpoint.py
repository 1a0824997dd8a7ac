"""Saving and loading checkpoints safely.

MindSpore's `save_checkpoint` writes in place without fsync, so a crash while
saving can leave a truncated file where the last good checkpoint was; and
`load_param_into_net` silently skips missing or unexpected names. The
functions here close those gaps (writing through `src.files.replace_atomically`),
and refuse a checkpoint holding inf or NaN (the training that wrote it diverged).
"""

import contextlib
import hashlib
import os
from collections.abc import Iterable

import mindspore as ms
import numpy as np
from mindspore import nn

from src.bert_model import ENCODER_PREFIX
from src.errors import UserError
from src.files import NonFiniteError, file_named, replace_atomically


class CheckpointMismatchError(UserError):
    """A checkpoint is unreadable, or its names or shapes do not match the network."""


def save_checkpoint_atomic(params: nn.Cell | list, path: str, append_dict: dict | None = None) -> None:
    """Write `params` (a Cell, or a list of {'name', 'data'} dicts) to `path` atomically.

    `append_dict` adds named scalars (e.g. the training step) to the file.
    """
    def write(tmp_path):
        try:
            ms.save_checkpoint(params, tmp_path, append_dict=append_dict)
        finally:
            # MindSpore writes <name>.tmp and renames it to <name>.ckpt: a failed save leaves it behind.
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.splitext(tmp_path)[0] + ".tmp")
    replace_atomically(path, write, suffix=".ckpt")


def first_non_finite(named_tensors: Iterable[tuple[str, ms.Tensor]]) -> str | None:
    """The name of the first float tensor of `(name, Tensor)` pairs holding inf or NaN, else None.

    Checked on the host: for BERT-base's weights and Adam moments (410M
    floats) 0.1 s on CPU, where a full on-device reduction takes ~1 s; on a
    device it is one copy of what a checkpoint save copies anyway.
    """
    for name, tensor in named_tensors:
        values = tensor.asnumpy()
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            return name
    return None


# The model zoo's NEZHA keeps an absolute-position table that it never uses;
# ours has none, so the zoo's copy is dropped on load.
ZOO_UNUSED_PARAMETER = "bert_embedding_postprocessor.full_position_embedding.embedding_table"


def weights_fingerprint(net: nn.Cell) -> str:
    """A short hash of every parameter's bytes, in name order: equal iff the weights are bitwise equal
    (compares the ranks of a data-parallel run without writing a checkpoint per rank)."""
    digest = hashlib.sha256()
    for param in sorted(net.get_parameters(), key=lambda p: p.name):
        digest.update(param.name.encode())
        digest.update(param.asnumpy().tobytes())
    return digest.hexdigest()[:16]


def load_checkpoint_into(net: nn.Cell, path: str, prefix: str = "") -> None:
    """Load the checkpoint at `path` into `net`, requiring an exact match of names and shapes.

    Args:
        net (nn.Cell): the network to fill.
        path (str): a MindSpore `.ckpt` file.
        prefix (str): taken off the checkpoint's names first, e.g. "bert." to
            load an encoder saved inside a larger model into a bare `BertModel`;
            names without the prefix are then ignored.
    Raises:
        CheckpointMismatchError naming every missing, unexpected and mis-shaped parameter.
    """
    load_params_into(net, read_checkpoint(path), path, prefix)


def load_encoder(net: nn.Cell, path: str, flag: str = "") -> None:
    """Load the encoder (`bert.*`) of any checkpoint of ours (pretraining, converted, fine-tuned) into `net`
    (a task model, or anything holding the encoder as `bert`); the checkpoint's other names (heads,
    optimizer state) are ignored and `net`'s other parameters keep their values. Every encoder parameter
    must be there with its shape (another vocabulary or architecture fails with the list of differences);
    `flag`, the option that gave `path`, opens the error of a checkpoint without an encoder."""
    saved = {name: value for name, value in read_checkpoint(path).items() if name.startswith(ENCODER_PREFIX)}
    if not saved:
        where = file_named(path, flag)
        raise CheckpointMismatchError(f"{where}: no encoder parameters ({ENCODER_PREFIX}*) in it")
    kept = {param.name: param for param in net.get_parameters() if not param.name.startswith(ENCODER_PREFIX)}
    load_params_into(net, {**saved, **kept}, path)


def read_checkpoint(path: str) -> dict[str, ms.Parameter]:
    """{name: Parameter} of a checkpoint file; a missing or unreadable file raises CheckpointMismatchError,
    one holding inf or NaN NonFiniteError (every command reads checkpoints here: none evaluates, exports,
    predicts with or resumes from the weights of a run that diverged)."""
    if not os.path.isfile(path):
        raise CheckpointMismatchError(f"{path}: no such checkpoint file")
    try:
        params = ms.load_checkpoint(path)
    except (ValueError, RuntimeError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointMismatchError(f"{path}: not a readable MindSpore checkpoint ({reason})") from None
    bad = first_non_finite(params.items())
    if bad:
        raise NonFiniteError(f"{path}: tensor {bad} holds inf or NaN (the training that wrote it diverged); "
                             "use an earlier checkpoint")
    return params


def load_params_into(net: nn.Cell, saved: dict[str, ms.Parameter], source: str, prefix: str = "",
                     ignore_unexpected: bool = False) -> None:
    """`load_checkpoint_into` for a {name: Parameter} dict already read from `source`.

    `ignore_unexpected` accepts extra names, e.g. the optimizer state of a
    training checkpoint when only the model is wanted.
    """
    if prefix:
        saved = {name[len(prefix):]: value for name, value in saved.items() if name.startswith(prefix)}
    expected = {param.name: param for param in net.get_parameters()}
    for name in [name for name in saved if name.endswith(ZOO_UNUSED_PARAMETER) and name not in expected]:
        del saved[name]
    problems = [f"missing {name} {tuple(param.shape)}" for name, param in expected.items()
                if name not in saved]
    if ignore_unexpected:
        saved = {name: value for name, value in saved.items() if name in expected}
    problems += [f"unexpected {name} {tuple(value.shape)}" for name, value in saved.items()
                 if name not in expected]
    problems += [f"shape of {name}: checkpoint {tuple(saved[name].shape)}, network {tuple(param.shape)}"
                 for name, param in expected.items()
                 if name in saved and tuple(saved[name].shape) != tuple(param.shape)]
    if problems:
        raise CheckpointMismatchError(f"{source} does not match the network: " + "; ".join(problems))
    ms.load_param_into_net(net, saved, strict_load=True)
