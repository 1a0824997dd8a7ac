"""BERT pretraining: masked-LM and next-sentence heads and their loss.

    BertPreTraining      encoder + heads -> log-probabilities
    pretraining_loss     Google BERT's loss from those log-probabilities
    BertNetworkWithLoss  the two together: batch columns -> scalar loss, what
                         the train cell (src/train_cell.py) trains

Shape letters: B batch, S sequence, D hidden, V vocabulary, P masked positions
per sequence (max_predictions_per_seq).
"""

import mindspore as ms
from mindspore import nn, ops

from src.bert_model import DTYPES, BertConfig, BertModel, dense, gelu, layer_norm, truncated_normal
from src.kernel_forms import KernelForms, kernel_forms

# Added to the masked-LM weight sum so that a batch without masked tokens
# divides by a small number instead of zero (Google BERT's value).
MLM_WEIGHT_EPSILON = 1e-5
NUM_NSP_CLASSES = 2


class MaskedLMHead(nn.Cell):
    """Predicts the original token at each masked position.

    dense + GELU + LayerNorm, then a projection tied to the word-embedding
    table plus a per-token output bias; computed at the masked positions only.

    Args:
        config (BertConfig): hidden and vocabulary sizes, compute type.
        forms (KernelForms): kernel forms of the dense layer, the LayerNorm and
            the decoder's matmul (`src.kernel_forms`).

    Inputs:
        sequence_output: [B, S, D] in `config.dtype`.
        embedding_table: float32 [V, D].
        masked_lm_positions: int32 [B, P].
    Outputs:
        float32 [B * P, V] log-probabilities.
    """

    def __init__(self, config: BertConfig, forms: KernelForms):
        super().__init__()
        self.dense = dense(config, config.hidden_size, config.hidden_size, forms)
        self.layernorm = layer_norm(config, forms)
        self.output_bias = ms.Parameter(ops.zeros(config.vocab_size, ms.float32))
        self.compute_type = DTYPES[config.compute_type]
        self.transposed_decoder_table = forms.transposed_decoder_table
        self.matmul_transpose_b = ops.MatMul(transpose_b=True)

    def construct(self, sequence_output: ms.Tensor, embedding_table: ms.Tensor,
                  masked_lm_positions: ms.Tensor) -> ms.Tensor:
        batch_size, seq_length, hidden_size = sequence_output.shape
        # Row of each masked position in the flattened [B * S, D] sequence output.
        offsets = (ops.arange(batch_size, dtype=ms.int32) * seq_length).reshape(-1, 1)  # [B, 1]
        rows = (masked_lm_positions + offsets).reshape(-1)                              # [B * P]
        hidden = ops.gather(sequence_output.reshape(-1, hidden_size), rows, 0)          # [B * P, D]
        hidden = gelu(self.dense(hidden)).astype(ms.float32)                            # [B * P, D]
        hidden = self.layernorm(hidden).astype(self.compute_type)                       # [B * P, D]
        table = embedding_table.astype(self.compute_type)                               # [V, D]
        if self.transposed_decoder_table:
            logits = ops.matmul(hidden, table.T)                                        # [B * P, V]
        else:
            logits = self.matmul_transpose_b(hidden, table)                             # [B * P, V]
        return ops.log_softmax(logits.astype(ms.float32) + self.output_bias, axis=-1)


class NextSentenceHead(nn.Cell):
    """Is segment B the continuation of A? (label 0: yes, 1: B is random.)

    Args:
        config (BertConfig): hidden size, initializer range.

    Inputs:
        pooled_output: [B, D] in `config.dtype`.
    Outputs:
        float32 [B, 2] log-probabilities.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Dense(config.hidden_size, NUM_NSP_CLASSES, weight_init=truncated_normal(config))

    def construct(self, pooled_output: ms.Tensor) -> ms.Tensor:
        return ops.log_softmax(self.dense(pooled_output.astype(ms.float32)), axis=-1)


class BertPreTraining(nn.Cell):
    """The encoder with both pretraining heads.

    Args as `BertModel`'s (`is_training`: the initial mode); `forms` (None: the current device target's)
    serves both.

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
        masked_lm_positions: int32 [B, P].
    Outputs:
        mlm_log_probs: float32 [B * P, V].
        nsp_log_probs: float32 [B, 2].
    """

    def __init__(self, config: BertConfig, is_training: bool, use_one_hot_embeddings: bool = False,
                 forms: KernelForms | None = None):
        super().__init__()
        forms = forms or kernel_forms()
        self.bert = BertModel(config, is_training, use_one_hot_embeddings, forms)
        self.mlm_head = MaskedLMHead(config, forms)
        self.nsp_head = NextSentenceHead(config)
        self.set_train(is_training)

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor, token_type_ids: ms.Tensor,
                  masked_lm_positions: ms.Tensor) -> tuple[ms.Tensor, ms.Tensor]:
        sequence_output, pooled_output, embedding_table = self.bert(
            input_ids=input_ids, token_type_ids=token_type_ids, input_mask=input_mask)  # [B, S, D], [B, D], [V, D]
        return (self.mlm_head(sequence_output, embedding_table, masked_lm_positions),
                self.nsp_head(pooled_output))


def masked_lm_nll(mlm_log_probs: ms.Tensor, masked_lm_ids: ms.Tensor) -> ms.Tensor:
    """-log p(original token) at every prediction slot: [B * P, V], [B, P] -> float32 [B * P]."""
    return -ops.gather_elements(mlm_log_probs, 1, masked_lm_ids.reshape(-1, 1)).reshape(-1)


def pretraining_loss(mlm_log_probs: ms.Tensor, nsp_log_probs: ms.Tensor, masked_lm_ids: ms.Tensor,
                     masked_lm_weights: ms.Tensor, next_sentence_labels: ms.Tensor) -> ms.Tensor:
    """Google BERT's pretraining loss: weighted masked-LM cross-entropy + NSP cross-entropy.

    The masked-LM term is the mean over the batch's real predictions: padded
    prediction slots have weight 0 and the divisor is the batch's sum of weights
    (+ MLM_WEIGHT_EPSILON), so padding does not dilute the mean.

    Args:
        mlm_log_probs: float32 [B * P, V].  nsp_log_probs: float32 [B, 2].
        masked_lm_ids: int32 [B, P].  masked_lm_weights: float32 [B, P].
        next_sentence_labels: int32 [B, 1] (1 = random B).
    Returns:
        float32 scalar.
    """
    mlm_nll = masked_lm_nll(mlm_log_probs, masked_lm_ids)                              # [B * P]
    weights = masked_lm_weights.reshape(-1)                                            # [B * P]
    mlm_loss = (mlm_nll * weights).sum() / (weights.sum() + MLM_WEIGHT_EPSILON)
    nsp_nll = -ops.gather_elements(nsp_log_probs, 1, next_sentence_labels.reshape(-1, 1))  # [B, 1]
    return mlm_loss + nsp_nll.mean()


class BertNetworkWithLoss(nn.Cell):
    """Pretraining batch (the seven data columns, in the loader's order) -> scalar loss.

    Adds no name prefix, so its parameters are named as `BertPreTraining`'s
    (`bert.*`, `mlm_head.*`, `nsp_head.*`), the names every checkpoint uses.
    """

    def __init__(self, config: BertConfig, is_training: bool, use_one_hot_embeddings: bool = False):
        super().__init__(auto_prefix=False)
        self.bert = BertPreTraining(config, is_training, use_one_hot_embeddings)
        self.set_train(is_training)

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor, token_type_ids: ms.Tensor,
                  next_sentence_labels: ms.Tensor, masked_lm_positions: ms.Tensor, masked_lm_ids: ms.Tensor,
                  masked_lm_weights: ms.Tensor) -> ms.Tensor:
        mlm_log_probs, nsp_log_probs = self.bert(input_ids=input_ids, input_mask=input_mask,
                                                 token_type_ids=token_type_ids, masked_lm_positions=masked_lm_positions)
        return pretraining_loss(mlm_log_probs, nsp_log_probs, masked_lm_ids, masked_lm_weights,
                                next_sentence_labels)
