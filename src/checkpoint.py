"""Saving and loading checkpoints safely.

MindSpore's `save_checkpoint` writes in place without fsync, so a crash while
saving can leave a truncated file where the last good checkpoint was; and
`load_param_into_net` silently skips missing or unexpected names. The
functions here close those gaps, and refuse inf and NaN: in a checkpoint that
is read (the training that wrote it diverged) and in a JSON results file
(`NaN` is not JSON).
"""

import contextlib
import hashlib
import json
import math
import os
import tempfile

import mindspore as ms
import numpy as np

from src.errors import UserError
from src.staging import STAGING_PREFIX, OutputError


# mkstemp creates files readable by the owner only; configs are for everyone.
TEXT_FILE_MODE = 0o644


class CheckpointMismatchError(UserError):
    """A checkpoint is unreadable, or its names or shapes do not match the network."""


class NonFiniteError(UserError):
    """A checkpoint or a results file would hold inf or NaN."""


def replace_atomically(path, write, suffix="", mode=None):
    """Make `path` by `write(temporary_path)`, atomically.

    The temporary file is in the same directory; once written it gets `mode`
    (if given), is flushed to disk, and is renamed over `path`: readers see the
    old file or the new one, never a partial one. A failure leaves no
    temporary file behind, and an OSError (a full disk, a read-only directory)
    becomes an OutputError naming `path`.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp_path = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(prefix=STAGING_PREFIX, suffix=suffix, dir=directory)
        os.close(fd)
        write(tmp_path)
        if mode is not None:
            os.chmod(tmp_path, mode)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error}); any previous file there is "
                          "unchanged") from None
    finally:
        if tmp_path and os.path.exists(tmp_path):
            os.remove(tmp_path)


def save_checkpoint_atomic(params, path, append_dict=None):
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


def write_text_atomic(text, path):
    """Write a small text file atomically, readable by everyone."""
    def write(tmp_path):
        with open(tmp_path, "w", encoding="utf-8") as f:
            f.write(text)
    replace_atomically(path, write, mode=TEXT_FILE_MODE)


def finite_json(value, where, **dumps_options):
    """`json.dumps(value)` refusing inf and NaN, which Python would write as `NaN`/`Infinity` (not JSON):
    NonFiniteError names `where` and the first such entry."""
    try:
        return json.dumps(value, allow_nan=False, **dumps_options)
    except ValueError:
        key, item = next((key, item) for key, item in json_leaves(value)
                         if isinstance(item, float) and not math.isfinite(item))
        raise NonFiniteError(f"{where}: not written: {key} is {item}, and JSON holds finite numbers only "
                             "(the model's outputs are not finite)") from None


def json_leaves(value, prefix=""):
    """(dotted key, leaf) of nested dicts and lists, in order; list items are keyed by index."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None:
        yield prefix, value
        return
    for key, item in items:
        yield from json_leaves(item, f"{prefix}.{key}" if prefix else str(key))


def first_non_finite(named_tensors):
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


def weights_fingerprint(net):
    """A short hash of every parameter's bytes, in name order: equal iff the weights are bitwise equal
    (compares the ranks of a data-parallel run without writing a checkpoint per rank)."""
    digest = hashlib.sha256()
    for param in sorted(net.get_parameters(), key=lambda p: p.name):
        digest.update(param.name.encode())
        digest.update(param.asnumpy().tobytes())
    return digest.hexdigest()[:16]


def load_checkpoint_into(net, path, prefix=""):
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


def read_checkpoint(path):
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


def load_params_into(net, saved, source, prefix="", ignore_unexpected=False):
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
