"""BERT and NEZHA encoder (Devlin et al. 2018; Wei et al. 2019) in MindSpore.

Read top to bottom: `BertConfig` and its presets, the embeddings, one encoder
layer (self-attention, then feed-forward), the layer stack, and `BertModel`,
which ties them together and adds the pooler.

NEZHA is not a fork: `use_relative_positions=True` drops the absolute position
embeddings and lets every attention layer add relative-position embeddings to
its keys and values (see `RelativePositionEmbeddings`).

Shape letters used in comments:
    B batch, S sequence length, D hidden size, N attention heads,
    H attention head size (D = N * H), I intermediate size, V vocabulary size,
    R relative-position table rows (2 * max_relative_position + 1).

Parameter names follow the MindSpore model zoo's BERT (`bert_embedding_lookup`,
`bert_encoder.layers.0.attention.attention.query_layer`, ...). Checkpoint keys
come from attribute names (class names play no part), and where the zoo's name
makes an attribute look odd, a comment says so. A checkpoint of the zoo's BERT
or NEZHA therefore loads into this model once the zoo's outer name prefix is
taken off (`src.checkpoint.load_checkpoint_into(net, path, prefix=...)`); the
absolute-position table the zoo's NEZHA stores but never uses is dropped on
load (`src.checkpoint.ZOO_UNUSED_PARAMETER`), and the zoo's learned
relative-position tables need `relative_position_type: learned`.

A few operations have two kernel forms, one for CPU and one for Ascend/GPU
(LayerNorm and Dense while training, the pooler's tanh), and on CPU the
residual sum + LayerNorm and bias + GELU may run as C++ kernels
(`src.kernels`): `BertModel` reads the forms once, from `src.kernel_forms`,
and hands them to the cells that use them.
"""

import dataclasses
import math

import numpy as np
import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import Initializer, TruncatedNormal, initializer

from src.kernel_forms import KernelForms, kernel_forms
from src.kernels.cpu_kernels import BiasGeluKernel, LayerNormKernel

# Added to the attention scores of padded key positions (Google BERT's value):
# exp(-10000) underflows to 0 in fp32, and the value is representable in fp16.
MASK_ADDER = -10000.0

# Bounds of the truncated normal initialiser, in standard deviations
# (tf.truncated_normal_initializer re-draws values beyond 2 sigma).
TRUNCATION_SIGMAS = 2.0

# Base of the sinusoids of NEZHA's functional relative positions and of the
# Transformer's position encoding.
SINUSOID_BASE = 10000.0

# Every model here holds its BertModel in an attribute named `bert`, so the encoder's parameters are
# `bert.*` in every checkpoint: pretraining, task models and converted ones alike.
ENCODER_PREFIX = "bert."

DTYPES = {"float32": ms.float32, "float16": ms.float16, "bfloat16": ms.bfloat16}
ACTIVATIONS = ("gelu",)
RELATIVE_POSITION_TYPES = ("functional", "learned")


@dataclasses.dataclass
class BertConfig:
    """Hyper-parameters of `BertModel`. The defaults are the `base` preset.

    `dtype` is the dtype of the model's outputs; `compute_type` the dtype of
    the matrix multiplications (float16 on Ascend/GPU). Softmax, LayerNorm and
    residual sums always run in float32.
    """
    seq_length: int = 128
    vocab_size: int = 21136
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"                    # exact (erf) GELU
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 16
    initializer_range: float = 0.02             # std of the truncated normal init
    layer_norm_eps: float = 1e-12               # Google BERT and Hugging Face
    use_relative_positions: bool = False        # True: NEZHA
    # "functional": NEZHA's fixed sinusoid table (no parameters);
    # "learned": the model zoo's trainable table, one per layer.
    relative_position_type: str = "functional"
    max_relative_position: int = 64             # distances are clipped to +-this
    dtype: str = "float32"
    compute_type: str = "float32"

    def __post_init__(self):
        positive = ("seq_length", "vocab_size", "hidden_size", "num_hidden_layers",
                    "num_attention_heads", "intermediate_size", "max_position_embeddings",
                    "type_vocab_size", "max_relative_position")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) is not a multiple of "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {ACTIVATIONS}, got {self.hidden_act!r}")
        if self.relative_position_type not in RELATIVE_POSITION_TYPES:
            raise ValueError(f"relative_position_type must be one of {RELATIVE_POSITION_TYPES}, "
                             f"got {self.relative_position_type!r}")
        for name in ("dtype", "compute_type"):
            if getattr(self, name) not in DTYPES:
                raise ValueError(f"{name} must be one of {tuple(DTYPES)}, got {getattr(self, name)!r}")
        if (self.use_relative_positions and self.relative_position_type == "functional"
                and self.attention_head_size % 2):
            raise ValueError(f"the functional relative-position table needs an even attention head size, got "
                             f"{self.attention_head_size} (hidden_size / num_attention_heads)")
        if not self.use_relative_positions and self.seq_length > self.max_position_embeddings:
            raise ValueError(f"seq_length ({self.seq_length}) exceeds "
                             f"max_position_embeddings ({self.max_position_embeddings})")

    @property
    def attention_head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads


# Named model sizes chosen by `bert_network` in the job's YAML: the fields each
# preset changes from the `base` defaults of `BertConfig`.
_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
PRESETS = {
    "base": {},
    "large": _LARGE,
    "nezha": dict(_LARGE, use_relative_positions=True),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
}


def truncated_normal(config: BertConfig) -> TruncatedNormal:
    """Initialiser: normal(0, initializer_range) truncated at 2 standard deviations."""
    bound = TRUNCATION_SIGMAS * config.initializer_range
    return TruncatedNormal(sigma=config.initializer_range, a=-bound, b=bound)


class Dense(nn.Cell):
    """y = x W^T + b over the last axis, W [out, in]: nn.Dense's layout and parameter names.

    MatMul + BiasAdd (the fused pair nn.Dense uses), except while training with
    `dense_op_in_training` (the CPU form, see `src.kernel_forms`): then
    `ops.dense`, whose gradient sums the bias with ReduceSum instead of
    BiasAddGrad. The mode is read when the graph is compiled.
    """

    def __init__(self, in_channels: int, out_channels: int, weight_init: Initializer, dense_op_in_training: bool):
        super().__init__()
        self.weight = ms.Parameter(initializer(weight_init, (out_channels, in_channels)), name="weight")
        self.bias = ms.Parameter(initializer("zeros", (out_channels,)), name="bias")
        self.matmul = ops.MatMul(transpose_b=True)
        self.bias_add = ops.BiasAdd()
        self.dense_op_in_training = dense_op_in_training

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        # The weights in x's type: `to_float(float16)` casts a cell's inputs, not its parameters.
        weight, bias = self.weight.astype(x.dtype), self.bias.astype(x.dtype)
        if self.training and self.dense_op_in_training:
            return ops.dense(x, weight, bias)
        shape = x.shape
        y = self.bias_add(self.matmul(x.reshape(-1, shape[-1]), weight), bias)  # [N, out]
        return y.reshape(shape[:-1] + (y.shape[-1],))


def dense(config: BertConfig, in_channels: int, out_channels: int, forms: KernelForms) -> Dense:
    """A Dense layer in the kernel `forms` whose matmul runs in `config.compute_type`."""
    layer = Dense(in_channels, out_channels, truncated_normal(config), forms.dense_op_in_training)
    return layer.to_float(DTYPES[config.compute_type])


class LayerNorm(nn.Cell):
    """Layer normalisation over the last axis of x (+ residual): (h - mean) / sqrt(var + eps) * gamma + beta.

    nn.LayerNorm's parameter names (`gamma`, `beta`). With `kernel` (the CPU
    form when built, see `src.kernel_forms`) the residual sum and the
    normalisation run as one C++ kernel, forward and gradient. Otherwise the
    fused `ops.LayerNorm`, except while training with `composed_in_training`
    (the CPU form without the kernel): then means and elementwise ops, whose
    gradients avoid the fused LayerNormGrad kernel.

    Inputs:
        x: float32 [..., D].
        residual: float32 [..., D] added to x first, or None.
    Outputs:
        float32 [..., D].
    """

    def __init__(self, hidden_size: int, epsilon: float, composed_in_training: bool, kernel: bool):
        super().__init__()
        self.gamma = ms.Parameter(initializer("ones", (hidden_size,)), name="gamma")
        self.beta = ms.Parameter(initializer("zeros", (hidden_size,)), name="beta")
        self.epsilon = epsilon
        self.fused = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=epsilon)
        self.composed_in_training = composed_in_training
        self.kernel = LayerNormKernel(epsilon) if kernel else None

    def construct(self, x: ms.Tensor, residual: ms.Tensor | None = None) -> ms.Tensor:
        if self.kernel is not None:
            return self.kernel(x, residual, self.gamma, self.beta)
        if residual is not None:
            x = x + residual                                              # [..., D]
        if not (self.training and self.composed_in_training):
            return self.fused(x, self.gamma, self.beta)[0]
        centered = x - x.mean(-1, keep_dims=True)                         # [..., D]
        variance = (centered * centered).mean(-1, keep_dims=True)        # [..., 1]
        return centered * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta


def layer_norm(config: BertConfig, forms: KernelForms) -> LayerNorm:
    """LayerNorm over the hidden size in the kernel `forms`."""
    return LayerNorm(config.hidden_size, config.layer_norm_eps, forms.composed_training_layer_norm,
                     forms.layer_norm_kernel)


def gelu(x: ms.Tensor) -> ms.Tensor:
    """Exact GELU, x * Phi(x) with the normal CDF from erf, on every device target.

    Google BERT's and Hugging Face's checkpoints were trained with it. It is not
    MindSpore's fused `GeLU` primitive: that computes the tanh approximation
    (up to 4.7e-4 from this; `ops.gelu(approximate="tanh")` calls it), while
    `ops.gelu(approximate="none")` composes erf and elementwise ops. MindSpore's
    exact fused kernel, `GeluExt` (`mint.nn.functional.gelu`), has no CPU or GPU
    kernel in 2.10, so it could be compared with this form on Ascend only; until
    then every target composes erf.
    """
    return ops.gelu(x, approximate="none")


class DenseGelu(Dense):
    """gelu(x W^T + b): the feed-forward's first layer, with Dense's parameters and names.

    With `bias_gelu_kernel` (the CPU form when built, float32 only, see
    `src.kernel_forms`) the matmul is followed by one C++ kernel for the bias
    add and GELU, forward and gradient; otherwise Dense, then `gelu`.
    """

    def __init__(self, in_channels: int, out_channels: int, weight_init: Initializer, dense_op_in_training: bool,
                 bias_gelu_kernel: bool):
        super().__init__(in_channels, out_channels, weight_init, dense_op_in_training)
        self.bias_gelu = BiasGeluKernel() if bias_gelu_kernel else None

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        if self.bias_gelu is None:
            return gelu(super().construct(x))
        shape = x.shape
        y = self.matmul(x.reshape(-1, shape[-1]), self.weight)  # [N, out]
        return self.bias_gelu(y, self.bias).reshape(shape[:-1] + (y.shape[-1],))


def without_cpu_kernels(net: nn.Cell) -> nn.Cell:
    """`net` (changed in place) with the composed ops instead of the C++ kernels in its LayerNorm and
    DenseGelu cells: for graphs that leave this process (`ms.export`), which cannot call a library in this
    machine's kernel cache. Calls that run the net itself keep a graph compiled before the change;
    `ms.export` compiles its own."""
    for _, cell in net.cells_and_names():
        if isinstance(cell, LayerNorm):
            cell.kernel = None
        elif isinstance(cell, DenseGelu):
            cell.bias_gelu = None
    return net


def dense_gelu(config: BertConfig, forms: KernelForms) -> DenseGelu:
    """The feed-forward's D -> I layer with its GELU in the kernel `forms` (the C++ kernel: float32 only)."""
    kernel = forms.bias_gelu_kernel and config.compute_type == "float32"
    layer = DenseGelu(config.hidden_size, config.intermediate_size, truncated_normal(config),
                      forms.dense_op_in_training, kernel)
    return layer.to_float(DTYPES[config.compute_type])


def tanh(x: ms.Tensor) -> ms.Tensor:
    """tanh(x) = 1 - 2 / (exp(2x) + 1): the CPU form of the pooler's tanh.

    MindSpore 2.10's CPU tanh kernel errs by up to ~1e-4 near |x| = 5; this form
    stays within 2e-6 of tanh (float64 check), and it saturates correctly (exp
    overflow gives 1, underflow -1).
    """
    return 1.0 - 2.0 / (ops.exp(2.0 * x) + 1.0)


class EmbeddingPostprocessor(nn.Cell):
    """Adds token-type and (BERT only) absolute position embeddings, then LayerNorm and dropout.

    (The class name is the model zoo's; the checkpoint keys come from the attribute that holds it,
    `bert_embedding_postprocessor`.)

    Args:
        config (BertConfig): sizes, dropout, initializer range.
        forms (KernelForms): the LayerNorm's kernel form.
        use_one_hot_embeddings (bool): token types by one-hot matmul instead of gather.

    Inputs:
        token_type_ids: int32 [B, S].
        word_embeddings: float32 [B, S, D].
    Outputs:
        float32 [B, S, D].
    """

    def __init__(self, config: BertConfig, forms: KernelForms, use_one_hot_embeddings: bool = False):
        super().__init__()
        self.token_type_embedding = nn.Embedding(
            config.type_vocab_size, config.hidden_size, use_one_hot=use_one_hot_embeddings,
            embedding_table=truncated_normal(config))
        self.use_absolute_positions = not config.use_relative_positions
        if self.use_absolute_positions:
            self.full_position_embedding = nn.Embedding(
                config.max_position_embeddings, config.hidden_size,
                embedding_table=truncated_normal(config))
        self.layernorm = layer_norm(config, forms)
        self.dropout = nn.Dropout(p=config.hidden_dropout_prob)

    def construct(self, token_type_ids: ms.Tensor, word_embeddings: ms.Tensor) -> ms.Tensor:
        embeddings = word_embeddings + self.token_type_embedding(token_type_ids)  # [B, S, D]
        if self.use_absolute_positions:
            seq_length = word_embeddings.shape[1]
            position_ids = ops.arange(seq_length, dtype=ms.int32).reshape(1, seq_length)  # [1, S]
            embeddings = embeddings + self.full_position_embedding(position_ids)  # [B, S, D]
        return self.dropout(self.layernorm(embeddings))


def relative_position_index(seq_length: int, max_relative_position: int) -> ms.Tensor:
    """Row of the relative-position table for each (query i, key j): clip(j - i) + k.

    Returns int32 [S, S] with values in [0, 2k] (k = max_relative_position).
    """
    positions = ops.arange(seq_length, dtype=ms.int32)
    distance = positions.reshape(1, -1) - positions.reshape(-1, 1)  # [S, S]: j - i
    clipped = ops.clip_by_value(distance, -max_relative_position, max_relative_position)
    return clipped + max_relative_position


def sinusoid_table(num_rows: int, depth: int) -> np.ndarray:
    """NEZHA's functional relative-position table, float32 [num_rows, depth].

    table[r, 2m] = sin(r / 10000^(2m / depth)), table[r, 2m+1] = cos(same).
    The row r is the clipped distance shifted by k, as in Huawei's released
    NEZHA code, so checkpoints trained with it reproduce their outputs.
    """
    rows = np.arange(num_rows, dtype=np.float64)[:, None]  # [R, 1]
    frequencies = SINUSOID_BASE ** (-np.arange(0, depth, 2, dtype=np.float64) / depth)  # [H/2]
    table = np.zeros((num_rows, depth), dtype=np.float64)
    table[:, 0::2] = np.sin(rows * frequencies)
    table[:, 1::2] = np.cos(rows * frequencies)
    return table.astype(np.float32)


class RelativePositionEmbeddings(nn.Cell):
    """NEZHA's relative-position embeddings a_ij for every (query i, key j).

    Functional (NEZHA): a fixed sinusoid table, no parameters. Learned (model
    zoo): a trainable `embeddings_table` of R rows. Both have R = 2k + 1 rows
    indexed by `relative_position_index`, and the same embedding serves keys
    and values.

    Inputs:
        seq_length: int, S.
    Outputs:
        float32 [S, S, H].
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.max_relative_position = config.max_relative_position
        num_rows = 2 * config.max_relative_position + 1
        if config.relative_position_type == "learned":
            self.embeddings_table = ms.Parameter(ms.Tensor(shape=(num_rows, config.attention_head_size),
                                                           dtype=ms.float32,
                                                           init=truncated_normal(config)))
        else:
            self.embeddings_table = ms.Tensor(sinusoid_table(num_rows, config.attention_head_size))

    def construct(self, seq_length: int) -> ms.Tensor:
        index = relative_position_index(seq_length, self.max_relative_position)  # [S, S]
        return ops.gather(self.embeddings_table, index, 0)  # [S, S, H]


class BertAttention(nn.Cell):
    """Multi-head scaled dot-product self-attention (plus NEZHA's relative terms).

    scores_ij = q_i . (k_j + a_ij) / sqrt(H);  context_i = sum_j p_ij (v_j + a_ij),
    with a_ij = 0 for BERT. Padded keys get MASK_ADDER before the softmax.

    Args:
        config (BertConfig): sizes, dropout, compute type, relative positions.
        forms (KernelForms): the projections' kernel form.

    Inputs:
        hidden_states: float32 [B, S, D].
        attention_mask_bias: float32 [B, 1, 1, S], 0 for real tokens, MASK_ADDER for padding.
    Outputs:
        context: [B, S, D] in compute_type, before the output projection.
    """

    def __init__(self, config: BertConfig, forms: KernelForms):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.attention_head_size
        self.scale = 1.0 / math.sqrt(config.attention_head_size)
        self.compute_type = DTYPES[config.compute_type]
        self.query_layer = dense(config, config.hidden_size, config.hidden_size, forms)
        self.key_layer = dense(config, config.hidden_size, config.hidden_size, forms)
        self.value_layer = dense(config, config.hidden_size, config.hidden_size, forms)
        self.dropout = nn.Dropout(p=config.attention_probs_dropout_prob)
        # q k^T without materialising k^T (a transpose per layer and step, forward and backward).
        self.query_key_matmul = ops.BatchMatMul(transpose_b=True)
        self.use_relative_positions = config.use_relative_positions
        if self.use_relative_positions:
            # Attribute name from the model zoo, so its NEZHA checkpoints load.
            self._generate_relative_positions_embeddings = RelativePositionEmbeddings(config)

    def split_heads(self, x: ms.Tensor) -> ms.Tensor:
        batch_size, seq_length, _ = x.shape
        x = x.reshape(batch_size, seq_length, self.num_attention_heads, self.attention_head_size)  # [B, S, N, H]
        return x.transpose(0, 2, 1, 3)  # [B, N, S, H]

    def construct(self, hidden_states: ms.Tensor, attention_mask_bias: ms.Tensor) -> ms.Tensor:
        batch_size, seq_length, hidden_size = hidden_states.shape
        # 1/sqrt(H) applied to the queries: the same scores as scaling them, on S*H values instead of S*S.
        query = self.split_heads(self.query_layer(hidden_states) * self.scale)  # [B, N, S, H]
        key = self.split_heads(self.key_layer(hidden_states))                   # [B, N, S, H]
        value = self.split_heads(self.value_layer(hidden_states))               # [B, N, S, H]

        scores = self.query_key_matmul(query, key)  # [B, N, S, S]
        if self.use_relative_positions:
            relations = self._generate_relative_positions_embeddings(seq_length)  # [S, S, H]
            relations = relations.astype(self.compute_type)
            # scores_ij += q_i . a_ij, batched over i: [S, B*N, H] x [S, H, S] -> [S, B*N, S]
            query_by_position = query.transpose(2, 0, 1, 3).reshape(seq_length, -1, self.attention_head_size)
            key_terms = ops.matmul(query_by_position, relations.swapaxes(-1, -2))  # [S, B*N, S]
            key_terms = key_terms.reshape(seq_length, batch_size, self.num_attention_heads, seq_length)
            scores = scores + key_terms.transpose(1, 2, 0, 3)  # [B, N, S, S]

        # Softmax in fp32 whatever the compute type: fp16 exp overflows easily.
        scores = scores.astype(ms.float32) + attention_mask_bias  # [B, N, S, S]
        probs = self.dropout(ops.softmax(scores, axis=-1)).astype(self.compute_type)  # [B, N, S, S]

        context = ops.matmul(probs, value)  # [B, N, S, H]
        if self.use_relative_positions:
            # context_i += sum_j p_ij a_ij: [S, B*N, S] x [S, S, H] -> [S, B*N, H]
            probs_by_position = probs.transpose(2, 0, 1, 3).reshape(seq_length, -1, seq_length)
            value_terms = ops.matmul(probs_by_position, relations)  # [S, B*N, H]
            value_terms = value_terms.reshape(seq_length, batch_size, self.num_attention_heads,
                                              self.attention_head_size)
            context = context + value_terms.transpose(1, 2, 0, 3)  # [B, N, S, H]
        return context.transpose(0, 2, 1, 3).reshape(batch_size, seq_length, hidden_size)  # [B, S, D]


class BertOutput(nn.Cell):
    """Projection, dropout, residual sum and LayerNorm (the last two in fp32).

    Args:
        config (BertConfig): sizes, dropout, compute type.
        in_channels (int): width of the input (D after attention, I after the feed-forward).
        forms (KernelForms): the projection's and LayerNorm's kernel forms.

    Inputs:
        hidden_states: [B, S, in_channels] in compute_type.
        residual: float32 [B, S, D].
    Outputs:
        float32 [B, S, D].
    """

    def __init__(self, config: BertConfig, in_channels: int, forms: KernelForms):
        super().__init__()
        self.dense = dense(config, in_channels, config.hidden_size, forms)
        self.dropout = nn.Dropout(p=config.hidden_dropout_prob)
        self.layernorm = layer_norm(config, forms)

    def construct(self, hidden_states: ms.Tensor, residual: ms.Tensor) -> ms.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states)).astype(ms.float32)  # [B, S, D]
        return self.layernorm(hidden_states, residual)


class BertSelfAttention(nn.Cell):
    """Self-attention sub-layer: attention, then output projection + residual + LayerNorm.

    (Hugging Face calls this sub-layer BertAttention and the core BertSelfAttention;
    the class names here are the model zoo's. Checkpoint keys come from the
    attributes, as the zoo's: `attention.attention.query_layer`, `attention.output.dense`.)

    Args and inputs as `BertAttention`; the output is float32 [B, S, D].
    """

    def __init__(self, config: BertConfig, forms: KernelForms):
        super().__init__()
        self.attention = BertAttention(config, forms)
        self.output = BertOutput(config, config.hidden_size, forms)

    def construct(self, hidden_states: ms.Tensor, attention_mask_bias: ms.Tensor) -> ms.Tensor:
        context = self.attention(hidden_states, attention_mask_bias)  # [B, S, D]
        return self.output(context, hidden_states)                   # [B, S, D]


class BertEncoderCell(nn.Cell):
    """One encoder layer: self-attention sub-layer, then the feed-forward sub-layer.

    Args:
        config (BertConfig): the layer's hyper-parameters.
        forms (KernelForms): kernel forms of its projections and LayerNorms.

    Inputs:
        hidden_states: float32 [B, S, D].
        attention_mask_bias: float32 [B, 1, 1, S].
    Outputs:
        float32 [B, S, D].
    """

    def __init__(self, config: BertConfig, forms: KernelForms):
        super().__init__()
        self.attention = BertSelfAttention(config, forms)
        # Feed-forward: intermediate projection + exact GELU, then `output`.
        # (`intermediate` holds a bare Dense's parameters, as in the model zoo's checkpoints.)
        self.intermediate = dense_gelu(config, forms)
        self.output = BertOutput(config, config.intermediate_size, forms)

    def construct(self, hidden_states: ms.Tensor, attention_mask_bias: ms.Tensor) -> ms.Tensor:
        attention_output = self.attention(hidden_states, attention_mask_bias)           # [B, S, D]
        intermediate = self.intermediate(attention_output)          # [B, S, I]
        return self.output(intermediate, attention_output)          # [B, S, D]


class BertTransformer(nn.Cell):
    """The stack of `num_hidden_layers` encoder layers.

    Args:
        config (BertConfig): the number of layers and everything each layer needs.
        forms (KernelForms): kernel forms of every layer.

    Inputs:
        hidden_states: float32 [B, S, D], the embeddings.
        attention_mask_bias: float32 [B, 1, 1, S].
    Outputs:
        float32 [B, S, D], the last layer's hidden states.
    """

    def __init__(self, config: BertConfig, forms: KernelForms):
        super().__init__()
        self.layers = nn.CellList([BertEncoderCell(config, forms) for _ in range(config.num_hidden_layers)])

    def construct(self, hidden_states: ms.Tensor, attention_mask_bias: ms.Tensor) -> ms.Tensor:
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask_bias)  # [B, S, D]
        return hidden_states


def mask_to_bias(input_mask: ms.Tensor) -> ms.Tensor:
    """[B, S] mask (1 real, 0 padding) -> float32 [B, 1, 1, S] additive bias."""
    mask = input_mask.astype(ms.float32)
    return ((1.0 - mask) * MASK_ADDER).reshape(mask.shape[0], 1, 1, mask.shape[1])


class BertModel(nn.Cell):
    """Bidirectional Encoder Representations from Transformers (BERT / NEZHA).

    Args:
        config (BertConfig): model hyper-parameters.
        is_training (bool): the initial mode, `set_train(is_training)`. `Cell.training` is the one
            train/eval switch: it turns dropout on or off (nn.Dropout passes its input through when not
            training) and picks the training or inference kernel forms; `set_train` changes it later.
        use_one_hot_embeddings (bool): look embeddings up by one-hot matmul
            instead of gather (faster on some accelerators).
        forms (KernelForms): kernel forms (`src.kernel_forms`); None: those of
            MindSpore's current device target.

    Inputs (the model zoo's order; call by keyword, since swapped int32 [B, S] inputs would run unnoticed):
        input_ids: int32 [B, S].
        token_type_ids: int32 [B, S], segment 0 or 1.
        input_mask: int32 [B, S], 1 for real tokens, 0 for padding.
    Outputs:
        sequence_output: [B, S, D] final hidden states, in `config.dtype`.
        pooled_output: [B, D] tanh(dense(first token's hidden state)), in `config.dtype`.
        embedding_table: float32 [V, D], the word embeddings (tied to the MLM decoder).
    """

    def __init__(self, config: BertConfig, is_training: bool, use_one_hot_embeddings: bool = False,
                 forms: KernelForms | None = None):
        super().__init__()
        forms = forms or kernel_forms()
        self.output_type = DTYPES[config.dtype]
        self.bert_embedding_lookup = nn.Embedding(
            config.vocab_size, config.hidden_size, use_one_hot=use_one_hot_embeddings,
            embedding_table=truncated_normal(config))
        self.bert_embedding_postprocessor = EmbeddingPostprocessor(config, forms, use_one_hot_embeddings)
        self.bert_encoder = BertTransformer(config, forms)
        # The pooler's dense layer; the zoo's checkpoints call it plain `dense`.
        self.dense = dense(config, config.hidden_size, config.hidden_size, forms)
        self.pooler_activation = tanh if forms.composed_tanh else ops.tanh
        self.set_train(is_training)

    def construct(self, input_ids: ms.Tensor, token_type_ids: ms.Tensor,
                  input_mask: ms.Tensor) -> tuple[ms.Tensor, ms.Tensor, ms.Tensor]:
        word_embeddings = self.bert_embedding_lookup(input_ids)                            # [B, S, D]
        embeddings = self.bert_embedding_postprocessor(token_type_ids, word_embeddings)  # [B, S, D]
        sequence_output = self.bert_encoder(embeddings, mask_to_bias(input_mask))  # [B, S, D]
        pooled_output = self.pooler_activation(self.dense(sequence_output[:, 0]).astype(ms.float32))  # [B, D]
        return (sequence_output.astype(self.output_type), pooled_output.astype(self.output_type),
                self.bert_embedding_lookup.embedding_table)

