"""Models for inference files: build one by task name, load its weights strictly, export it with a
dynamic batch dimension, and load the exported file back.

    build_predictor    task name -> a Cell whose `construct` gives the task's answer (dropout off)
    load_weights       a checkpoint -> that Cell; names and shapes must match exactly
    export_predictor   the Cell -> a MINDIR (AIR, ONNX) file whose inputs are int32 [None, S]
    load_exported      a MINDIR file -> a Cell that runs it at any batch size

Every exported graph takes `input_ids, input_mask, token_type_ids`, int32
[B, S] with B free and S the model's `seq_length`, and returns

    encoder     (sequence_output [B, S, D], pooled_output [B, D]), in the model's `dtype`
    classifier  float32 [B, C] class probabilities
    ner         int32 [B, S] tag ids (argmax, or the CRF's Viterbi path: decoding is in the graph); 0 at padding
    squad       (start_logits, end_logits), float32 [B, S] each

Shape letters: B batch, S sequence, D hidden, C classes.
"""

import os

import mindspore as ms
from mindspore import nn

from src.bert_model import ENCODER_PREFIX, BertModel, without_cpu_kernels
from src.checkpoint import CheckpointMismatchError, load_params_into, read_checkpoint
from src.finetune import load_task_model
from src.task_models import BertCLSModel, BertNERModel, BertSquadModel, TaskPredictor

TASKS = ("encoder", "classifier", "ner", "squad")
INPUT_NAMES = ("input_ids", "input_mask", "token_type_ids")
# The file `ms.export` writes for each format, after the name it is given.
FILE_SUFFIXES = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
# A MINDIR whose weights pass 1 GB (`large`, `nezha`) is written as two parts:
# `<name>_graph.mindir` and the weights in `<name>_variables/`.
SPLIT_GRAPH_SUFFIX = "_graph.mindir"
SPLIT_WEIGHTS_SUFFIX = "_variables"


class EncoderPredictor(nn.Cell):
    """The bare encoder, with the task models' input order, for export.

    Args:
        config (BertConfig): encoder hyper-parameters.

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
    Outputs:
        sequence_output: [B, S, D]; pooled_output: [B, D] (the tanh pooler on the first token).
    """

    def __init__(self, config):
        super().__init__()
        # Named `bert`, so its parameters are the `bert.*` of every checkpoint of ours.
        self.bert = BertModel(config, is_training=False)

    def construct(self, input_ids, input_mask, token_type_ids):
        sequence_output, pooled_output, _ = self.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                                      input_mask=input_mask)  # [B, S, D], [B, D]
        return sequence_output, pooled_output


def build_predictor(task, config, num_class=0, use_crf=False):
    """The eval-mode Cell of `task` (one of TASKS); `num_class` counts the classifier's classes or the NER tags."""
    if task == "encoder":
        predictor = EncoderPredictor(config)
    elif task == "classifier":
        predictor = TaskPredictor(BertCLSModel(config, False, num_class))
    elif task == "ner":
        predictor = TaskPredictor(BertNERModel(config, False, num_class, use_crf))
    elif task == "squad":
        predictor = TaskPredictor(BertSquadModel(config, False))
    else:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    predictor.set_train(False)
    return predictor


def load_weights(predictor, path):
    """Load the checkpoint at `path` into a `build_predictor` Cell; names and shapes must match exactly.

    A task model takes the whole checkpoint (a fine-tuned `<task>.ckpt`), so a
    checkpoint of another task fails with the list of differences. The encoder
    takes the `bert.*` part of any checkpoint of ours (pretraining, converted,
    fine-tuned) and ignores the rest (heads, optimizer state).
    """
    if not isinstance(predictor, EncoderPredictor):
        return load_task_model(predictor, path)
    saved = {name: value for name, value in read_checkpoint(path).items() if name.startswith(ENCODER_PREFIX)}
    if not saved:
        raise CheckpointMismatchError(f"{path}: no encoder parameters ({ENCODER_PREFIX}*) in it")
    load_params_into(predictor, saved, path)
    predictor.set_train(False)
    return predictor


def dynamic_batch_inputs(seq_length):
    """Input placeholders int32 [None, S] for `ms.export` and `Cell.set_inputs`: any batch size, fixed S."""
    return [ms.Tensor(shape=[None, seq_length], dtype=ms.int32) for _ in INPUT_NAMES]


def export_predictor(predictor, seq_length, file_name, file_format="MINDIR"):
    """Export `predictor` with a dynamic batch dimension; returns the paths written (graph first)."""
    suffix = FILE_SUFFIXES[file_format]
    stem = file_name[:-len(suffix)] if file_name.endswith(suffix) else file_name
    split_graph = stem + SPLIT_GRAPH_SUFFIX
    # MindSpore picks the split form itself; a split file left by an earlier export must not count.
    before = modification_time(split_graph)
    # The CPU's C++ kernels stay out of the file: it would call a library in this machine's kernel cache.
    ms.export(without_cpu_kernels(predictor), *dynamic_batch_inputs(seq_length), file_name=stem,
              file_format=file_format)
    if file_format == "MINDIR" and modification_time(split_graph) not in (None, before):
        return [split_graph, stem + SPLIT_WEIGHTS_SUFFIX]
    return [stem + suffix]


def modification_time(path):
    """`path`'s modification time in ns, None if there is no such file."""
    return os.stat(path).st_mtime_ns if os.path.exists(path) else None


def load_exported(path, seq_length):
    """A MINDIR file as a Cell that takes int32 [B, S] inputs at any batch size B.

    The Cell is compiled once for the dynamic shape. Without `set_inputs` a
    GraphCell recompiles for every new batch size, and in MindSpore 2.10 that
    second compile fails for a graph with loops (the CRF decoder) with
    "The actor already exists".
    """
    graph = nn.GraphCell(ms.load(path))
    graph.set_inputs(*dynamic_batch_inputs(seq_length))
    return graph
