"""Which kernels compute a few operations of the model, per device target: the one place that decides.

The maths is the same on every target; only the operators that compute it
differ. On Ascend and GPU the model uses MindSpore's fused kernels, as the
model zoo's BERT does. On CPU it uses forms measured faster or more exact with
MindSpore's CPU backend (README.md, "Performance", has the measurements):

    operation            CPU                                        Ascend / GPU
    residual + LayerNorm C++ kernel (src/kernels), else as below    Add, ops.LayerNorm
    LayerNorm, training  means and elementwise ops                  ops.LayerNorm
    bias + GELU          C++ kernel (src/kernels), else as below    BiasAdd, composed erf GELU
    Dense, training      ops.dense                                  MatMul + BiasAdd
    pooler tanh          1 - 2 / (exp(2x) + 1) (the kernel errs)    ops.tanh
    MLM decoder          matmul by the transposed embedding table   MatMul(transpose_b=True)
    CRF loops            tensor `while` loops (one loop body)       unrolled loops (one graph)

The C++ kernels are built on first use (`src.kernels.cpu_kernels`); where no
compiler is found or the build fails, one line says so and CPU keeps the
composed forms. Without the kernels, LayerNorm and Dense use the fused kernels
in inference mode on every target, and GELU composes the exact erf form (see
`src.bert_model.gelu` for why not MindSpore's fused GeLU).
"""

import dataclasses

import mindspore as ms

from src.device import TARGETS
from src.kernels.cpu_kernels import library_path


@dataclasses.dataclass(frozen=True)
class KernelForms:
    """The kernel choices of one device target (True: the CPU form)."""
    composed_training_layer_norm: bool   # LayerNorm composed from means while training
    dense_op_in_training: bool           # ops.dense while training instead of MatMul + BiasAdd
    composed_tanh: bool                  # tanh from exp instead of ops.tanh
    transposed_decoder_table: bool       # MLM decoder: matmul by table.T instead of MatMul(transpose_b)
    crf_while_loops: bool                # CRF: tensor `while` loops instead of unrolled Python loops
    layer_norm_kernel: bool              # C++ residual + LayerNorm kernel (training and inference)
    bias_gelu_kernel: bool               # C++ bias + GELU kernel (float32 only; training and inference)


def kernel_forms(target: str | None = None) -> KernelForms:
    """The kernel forms for `target` ("CPU", "GPU" or "Ascend"; None: MindSpore's current device_target)."""
    if target is None:
        target = ms.get_context("device_target")
    if target not in TARGETS:
        raise ValueError(f"device target must be one of {TARGETS}, got {target!r}")
    on_cpu = target == "CPU"
    kernels = on_cpu and library_path() is not None
    return KernelForms(composed_training_layer_norm=on_cpu, dense_op_in_training=on_cpu, composed_tanh=on_cpu,
                       transposed_decoder_table=on_cpu, crf_while_loops=on_cpu, layer_norm_kernel=kernels,
                       bias_gelu_kernel=kernels)
