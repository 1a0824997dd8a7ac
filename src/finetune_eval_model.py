"""Task models: the encoder with a classification, tagging or span head.

    BertCLSModel    sentence (pair) -> class log-probabilities   (TNEWS, CoLA)
    BertNERModel    tokens -> tag scores, or a CRF over them      (CLUENER2020)
    BertSquadModel  tokens -> answer start / end logits           (SQuAD v1.1)

Each model's `construct` returns what the head computes (its losses are in
`src/bert_for_finetune.py`); `predict` turns that into the task's answer
(a class, a tag sequence, span logits), so evaluation, export and prediction
share one definition. Parameter names: the encoder is `bert.*` (as in
pretraining checkpoints, so a pretrained encoder loads as it is), the heads
`dense_1.*` (the model zoo's name) and `crf.*`.

Shape letters: B batch, S sequence, D hidden, C classes, T tags.
"""

import mindspore as ms
from mindspore import nn, ops

from src.CRF import CRF
from src.bert_model import BertModel, truncated_normal

NUM_SPAN_LOGITS = 2  # start and end


def head(config, in_channels, out_channels):
    """(dropout, dense) of a task head: the encoder's hidden dropout, then a float32 projection."""
    return (nn.Dropout(p=config.hidden_dropout_prob),
            nn.Dense(in_channels, out_channels, weight_init=truncated_normal(config)))


class BertCLSModel(nn.Cell):
    """Sentence classification from the pooled [CLS] vector.

    Args:
        config (BertConfig): encoder hyper-parameters.
        is_training (bool): the initial mode (`BertModel`'s): dropout on (True) or off.
        num_labels (int): number of classes C.

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
    Outputs:
        float32 [B, C] log-probabilities.
    """

    def __init__(self, config, is_training, num_labels, use_one_hot_embeddings=False):
        super().__init__()
        self.bert = BertModel(config, is_training, use_one_hot_embeddings)
        self.dropout, self.dense_1 = head(config, config.hidden_size, num_labels)
        self.set_train(is_training)

    def construct(self, input_ids, input_mask, token_type_ids):
        _, pooled_output, _ = self.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                        input_mask=input_mask)                           # [B, D]
        logits = self.dense_1(self.dropout(pooled_output.astype(ms.float32)))    # [B, C]
        return ops.log_softmax(logits, axis=-1)

    def predict(self, input_ids, input_mask, token_type_ids):
        """float32 [B, C] class probabilities."""
        return ops.exp(self.construct(input_ids, input_mask, token_type_ids))


class BertNERModel(nn.Cell):
    """Token tagging: a score per tag at every position, decoded by argmax or a CRF.

    Args:
        config (BertConfig): encoder hyper-parameters.
        is_training (bool): the initial mode (`BertModel`'s): dropout on (True) or off.
        num_labels (int): number of tags T.
        use_crf (bool): add a linear-chain CRF (`self.crf`) over the tag scores.

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
    Outputs:
        float32 [B, S, T] tag scores: log-probabilities without a CRF, the
        CRF's emission scores with one.
    """

    def __init__(self, config, is_training, num_labels, use_crf=False, use_one_hot_embeddings=False):
        super().__init__()
        self.bert = BertModel(config, is_training, use_one_hot_embeddings)
        self.dropout, self.dense_1 = head(config, config.hidden_size, num_labels)
        self.use_crf = use_crf
        self.crf = CRF(num_labels) if use_crf else None
        self.set_train(is_training)

    def construct(self, input_ids, input_mask, token_type_ids):
        sequence_output, _, _ = self.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                          input_mask=input_mask)                         # [B, S, D]
        scores = self.dense_1(self.dropout(sequence_output.astype(ms.float32)))    # [B, S, T]
        if self.use_crf:
            return scores
        return ops.log_softmax(scores, axis=-1)

    def predict(self, input_ids, input_mask, token_type_ids):
        """int32 [B, S] best tag ids (Viterbi with a CRF, else argmax); 0 at padding."""
        scores = self.construct(input_ids, input_mask, token_type_ids)              # [B, S, T]
        if self.use_crf:
            tags, _ = self.crf.decode(scores, input_mask)
            return tags
        return ops.argmax(scores, dim=-1).astype(ms.int32) * input_mask


class BertSquadModel(nn.Cell):
    """Extractive question answering: start and end logits at every position.

    Args:
        config (BertConfig): encoder hyper-parameters.
        is_training (bool): the initial mode (`BertModel`'s): dropout on (True) or off (no dropout
            on this head, as in Google BERT).

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
    Outputs:
        start_logits, end_logits: float32 [B, S].
    """

    def __init__(self, config, is_training, use_one_hot_embeddings=False):
        super().__init__()
        self.bert = BertModel(config, is_training, use_one_hot_embeddings)
        self.dense_1 = nn.Dense(config.hidden_size, NUM_SPAN_LOGITS, weight_init=truncated_normal(config))
        self.set_train(is_training)

    def construct(self, input_ids, input_mask, token_type_ids):
        sequence_output, _, _ = self.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                          input_mask=input_mask)                         # [B, S, D]
        logits = self.dense_1(sequence_output.astype(ms.float32))                  # [B, S, 2]
        return logits[:, :, 0], logits[:, :, 1]

    def predict(self, input_ids, input_mask, token_type_ids):
        """(start_logits, end_logits), float32 [B, S] each."""
        return self.construct(input_ids, input_mask, token_type_ids)


class TaskPredictor(nn.Cell):
    """A task model whose `construct` is its `predict` (for evaluation and export).

    Adds no name prefix: it loads the task model's checkpoints as they are.
    """

    def __init__(self, model):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, input_ids, input_mask, token_type_ids):
        return self.model.predict(input_ids, input_mask, token_type_ids)
