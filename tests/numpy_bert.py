"""An independent NumPy (float64) implementation of the BERT / NEZHA encoder.

Written from the papers' formulas, not from src/: Devlin et al. (2018) for BERT,
Wei et al. (2019), section 3.2, for NEZHA's relative positions:

    e_ij = x_i W^Q (x_j W^K + a_ij)^T / sqrt(H)
    z_i  = sum_j softmax_j(e_ij) (x_j W^V + a_ij)

with a_ij the row clip(j - i, -k, k) + k of the relative-position table. The
tests compare `BertModel` against it, parameter for parameter.
"""

import math

import numpy as np

MASK_ADDER = -10000.0
erf = np.vectorize(math.erf)


def sinusoid_row(row, depth):
    """Closed form of one row of NEZHA's functional table, float64 [depth]."""
    values = np.empty(depth)
    for d in range(depth):
        angle = row / 10000.0 ** (2 * (d // 2) / depth)
        values[d] = math.sin(angle) if d % 2 == 0 else math.cos(angle)
    return values


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * gamma + beta


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def linear(x, params, name):
    return x @ params[name + ".weight"].T + params[name + ".bias"]


def relative_embeddings(config, layer_prefix, params, seq_length):
    """a_ij for all i, j: float64 [S, S, H]."""
    k = config.max_relative_position
    head_size = config.hidden_size // config.num_attention_heads
    if config.relative_position_type == "learned":
        table = params[layer_prefix + "attention.attention._generate_relative_positions_embeddings.embeddings_table"]
    else:
        table = np.stack([sinusoid_row(r, head_size) for r in range(2 * k + 1)])
    rows = np.array([[min(max(j - i, -k), k) + k for j in range(seq_length)] for i in range(seq_length)])
    return table[rows]


def attention(x, bias, params, prefix, config):
    batch, seq, hidden = x.shape
    heads = config.num_attention_heads
    size = hidden // heads

    def split(t):
        return t.reshape(batch, seq, heads, size)  # [B, S, N, H]

    q = split(linear(x, params, prefix + "attention.attention.query_layer"))
    k = split(linear(x, params, prefix + "attention.attention.key_layer"))
    v = split(linear(x, params, prefix + "attention.attention.value_layer"))
    scores = np.einsum("bind,bjnd->bnij", q, k)
    if config.use_relative_positions:
        a = relative_embeddings(config, prefix, params, seq)
        scores = scores + np.einsum("bind,ijd->bnij", q, a)
    probs = softmax(scores / math.sqrt(size) + bias)
    context = np.einsum("bnij,bjnd->bind", probs, v)
    if config.use_relative_positions:
        context = context + np.einsum("bnij,ijd->bind", probs, a)
    return context.reshape(batch, seq, hidden)


def bert_forward(params, config, input_ids, token_type_ids, input_mask):
    """Returns (sequence_output [B, S, D], pooled_output [B, D]) in float64."""
    params = {name: np.asarray(value, np.float64) for name, value in params.items()}
    eps = config.layer_norm_eps
    seq = input_ids.shape[1]
    x = params["bert_embedding_lookup.embedding_table"][input_ids]
    x = x + params["bert_embedding_postprocessor.token_type_embedding.embedding_table"][token_type_ids]
    if not config.use_relative_positions:
        x = x + params["bert_embedding_postprocessor.full_position_embedding.embedding_table"][:seq]
    x = layer_norm(x, params["bert_embedding_postprocessor.layernorm.gamma"],
                   params["bert_embedding_postprocessor.layernorm.beta"], eps)
    bias = (1.0 - input_mask[:, None, None, :]) * MASK_ADDER
    for layer in range(config.num_hidden_layers):
        p = f"bert_encoder.layers.{layer}."
        attended = linear(attention(x, bias, params, p, config), params, p + "attention.output.dense")
        x = layer_norm(attended + x, params[p + "attention.output.layernorm.gamma"],
                       params[p + "attention.output.layernorm.beta"], eps)
        ffn = linear(gelu(linear(x, params, p + "intermediate")), params, p + "output.dense")
        x = layer_norm(ffn + x, params[p + "output.layernorm.gamma"], params[p + "output.layernorm.beta"], eps)
    pooled = np.tanh(linear(x[:, 0], params, "dense"))
    return x, pooled
