"""Models for inference files: the encoder's predictor, export with a dynamic batch dimension, and the
exported file loaded back (a task's predictor is src.tasks.load_predictor).

    load_encoder_predictor  a checkpoint's encoder -> a Cell giving its outputs (dropout off)
    export_predictor        a predictor -> a MINDIR (AIR, ONNX) file whose inputs are int32 [None, S]
    load_exported           a MINDIR file -> a Cell that runs it at any batch size

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

from src.bert_model import BertConfig, BertModel, without_cpu_kernels
from src.checkpoint import load_encoder
from src.tasks import TASKS

# What can be exported: the bare encoder, or a task's predictor.
ENCODER = "encoder"
EXPORTABLE = (ENCODER, *TASKS)
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

    def __init__(self, config: BertConfig):
        super().__init__()
        # Named `bert`, so its parameters are the `bert.*` of every checkpoint of ours.
        self.bert = BertModel(config, is_training=False)

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor,
                  token_type_ids: ms.Tensor) -> tuple[ms.Tensor, ms.Tensor]:
        sequence_output, pooled_output, _ = self.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                                      input_mask=input_mask)  # [B, S, D], [B, D]
        return sequence_output, pooled_output


def load_encoder_predictor(config: BertConfig, path: str) -> EncoderPredictor:
    """The eval-mode EncoderPredictor of BertConfig `config`, with the encoder (`bert.*`) of any checkpoint
    of ours at `path` (pretraining, converted, fine-tuned; the rest, heads and optimizer state, is ignored)."""
    predictor = EncoderPredictor(config)
    load_encoder(predictor, path)
    predictor.set_train(False)
    return predictor


def dynamic_batch_inputs(seq_length: int) -> list[ms.Tensor]:
    """Input placeholders int32 [None, S] for `ms.export` and `Cell.set_inputs`: any batch size, fixed S."""
    return [ms.Tensor(shape=[None, seq_length], dtype=ms.int32) for _ in INPUT_NAMES]


def export_predictor(predictor: nn.Cell, seq_length: int, file_name: str, file_format: str = "MINDIR") -> list[str]:
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


def modification_time(path: str) -> int | None:
    """`path`'s modification time in ns, None if there is no such file."""
    return os.stat(path).st_mtime_ns if os.path.exists(path) else None


def load_exported(path: str, seq_length: int) -> nn.GraphCell:
    """A MINDIR file as a Cell that takes int32 [B, S] inputs at any batch size B.

    The Cell is compiled once for the dynamic shape. Without `set_inputs` a
    GraphCell recompiles for every new batch size, and in MindSpore 2.10 that
    second compile fails for a graph with loops (the CRF decoder) with
    "The actor already exists".
    """
    graph = nn.GraphCell(ms.load(path))
    graph.set_inputs(*dynamic_batch_inputs(seq_length))
    return graph
