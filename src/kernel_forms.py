"""Which kernels compute a few operations of the model, per device target: the one place that decides.

The maths is the same on every target; only the operators that compute it
differ. On Ascend and GPU the model uses MindSpore's fused kernels, as the
model zoo's BERT does. On CPU it uses forms measured faster or more exact with
MindSpore's CPU backend (README.md, "Performance", has the measurements):

    operation            CPU                                        Ascend / GPU
    LayerNorm, training  means and elementwise ops                  ops.LayerNorm
    Dense, training      ops.dense                                  MatMul + BiasAdd
    pooler tanh          1 - 2 / (exp(2x) + 1) (the kernel errs)    ops.tanh
    MLM decoder          matmul by the transposed embedding table   MatMul(transpose_b=True)
    CRF loops            tensor `while` loops (one loop body)       unrolled loops (one graph)

In inference mode LayerNorm and Dense use the fused kernels on every target.
GELU is not a choice: every target composes the exact erf form (see
`src.bert_model.gelu` for why not MindSpore's fused GeLU).
"""

import dataclasses

import mindspore as ms

from src.device import TARGETS


@dataclasses.dataclass(frozen=True)
class KernelForms:
    """The kernel choices of one device target (True: the CPU form)."""
    composed_training_layer_norm: bool   # LayerNorm composed from means while training
    dense_op_in_training: bool           # ops.dense while training instead of MatMul + BiasAdd
    composed_tanh: bool                  # tanh from exp instead of ops.tanh
    transposed_decoder_table: bool       # MLM decoder: matmul by table.T instead of MatMul(transpose_b)
    crf_while_loops: bool                # CRF: tensor `while` loops instead of unrolled Python loops


def kernel_forms(target=None):
    """The kernel forms for `target` ("CPU", "GPU" or "Ascend"; None: MindSpore's current device_target)."""
    if target is None:
        target = ms.get_context("device_target")
    if target not in TARGETS:
        raise ValueError(f"device target must be one of {TARGETS}, got {target!r}")
    on_cpu = target == "CPU"
    return KernelForms(composed_training_layer_norm=on_cpu, dense_op_in_training=on_cpu, composed_tanh=on_cpu,
                       transposed_decoder_table=on_cpu, crf_while_loops=on_cpu)
