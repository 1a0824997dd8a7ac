"""Task models, each followed by its loss cell: the encoder with a classification, tagging or span head.

    BertCLSModel    sentence (pair) -> class log-probabilities   (TNEWS, CoLA)
      BertCLS         + mean cross-entropy of the class
    BertNERModel    tokens -> tag scores, or a CRF over them      (CLUENER2020)
      BertNER         + token cross-entropy over real tokens, or the CRF's NLL
    BertSquadModel  tokens -> answer start / end logits           (SQuAD v1.1)
      BertSquad       + mean of the start and end cross-entropies
    TaskPredictor   a task model whose `construct` is its `predict`

Each model's `construct` returns what the head computes; `predict` turns that
into the task's answer (a class, a tag sequence, span logits), so evaluation,
export and prediction share one definition. A loss cell takes the data
loader's columns in order and returns a scalar loss, so the one train cell
(`src.train_cell.BertTrainOneStepCell`) trains them all.

Parameter names: the encoder is `bert.*` (as in pretraining checkpoints, so a
pretrained encoder loads as it is), the heads `dense_1.*` (the model zoo's
name) and `crf.*`. Neither loss cells nor `TaskPredictor` add a name prefix,
so a fine-tuned checkpoint loads straight into the task model.

Shape letters: B batch, S sequence, D hidden, C classes, T tags.
"""

import mindspore as ms
from mindspore import nn, ops

from src.CRF import CRF
from src.bert_model import BertConfig, BertModel, truncated_normal

NUM_SPAN_LOGITS = 2  # start and end


def head(config: BertConfig, in_channels: int, out_channels: int) -> tuple[nn.Dropout, nn.Dense]:
    """(dropout, dense) of a task head: the encoder's hidden dropout, then a float32 projection."""
    return (nn.Dropout(p=config.hidden_dropout_prob),
            nn.Dense(in_channels, out_channels, weight_init=truncated_normal(config)))


def nll(log_probs: ms.Tensor, labels: ms.Tensor) -> ms.Tensor:
    """-log p(label) per row: float32 [N, K], int32 [N] -> float32 [N]."""
    return -ops.gather_elements(log_probs, 1, labels.reshape(-1, 1)).reshape(-1)


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

    def __init__(self, config: BertConfig, is_training: bool, num_labels: int, use_one_hot_embeddings: bool = False):
        super().__init__()
        self.bert = BertModel(config, is_training, use_one_hot_embeddings)
        self.dropout, self.dense_1 = head(config, config.hidden_size, num_labels)
        self.set_train(is_training)

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor, token_type_ids: ms.Tensor) -> ms.Tensor:
        _, pooled_output, _ = self.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                        input_mask=input_mask)                     # [B, D]
        logits = self.dense_1(self.dropout(pooled_output.astype(ms.float32)))      # [B, C]
        return ops.log_softmax(logits, axis=-1)

    def predict(self, input_ids: ms.Tensor, input_mask: ms.Tensor, token_type_ids: ms.Tensor) -> ms.Tensor:
        """float32 [B, C] class probabilities."""
        return ops.exp(self.construct(input_ids, input_mask, token_type_ids))


class BertCLS(nn.Cell):
    """Classification loss: mean cross-entropy of the class log-probabilities.

    Args as `BertCLSModel`'s.

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
        label_ids: int32 [B, 1] class ids.
    Outputs:
        float32 scalar.
    """

    def __init__(self, config: BertConfig, is_training: bool, num_labels: int, use_one_hot_embeddings: bool = False):
        super().__init__(auto_prefix=False)
        self.model = BertCLSModel(config, is_training, num_labels, use_one_hot_embeddings)
        self.set_train(is_training)

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor, token_type_ids: ms.Tensor,
                  label_ids: ms.Tensor) -> ms.Tensor:
        log_probs = self.model(input_ids, input_mask, token_type_ids)                 # [B, C]
        return nll(log_probs, label_ids).mean()


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

    def __init__(self, config: BertConfig, is_training: bool, num_labels: int, use_crf: bool = False,
                 use_one_hot_embeddings: bool = False):
        super().__init__()
        self.bert = BertModel(config, is_training, use_one_hot_embeddings)
        self.dropout, self.dense_1 = head(config, config.hidden_size, num_labels)
        self.use_crf = use_crf
        self.crf = CRF(num_labels) if use_crf else None
        self.set_train(is_training)

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor, token_type_ids: ms.Tensor) -> ms.Tensor:
        sequence_output, _, _ = self.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                          input_mask=input_mask)                   # [B, S, D]
        scores = self.dense_1(self.dropout(sequence_output.astype(ms.float32)))    # [B, S, T]
        if self.use_crf:
            return scores
        return ops.log_softmax(scores, axis=-1)

    def predict(self, input_ids: ms.Tensor, input_mask: ms.Tensor, token_type_ids: ms.Tensor) -> ms.Tensor:
        """int32 [B, S] best tag ids (Viterbi with a CRF, else argmax); 0 at padding."""
        scores = self.construct(input_ids, input_mask, token_type_ids)              # [B, S, T]
        if self.use_crf:
            tags, _ = self.crf.decode(scores, input_mask)
            return tags
        return ops.argmax(scores, dim=-1).astype(ms.int32) * input_mask


class BertNER(nn.Cell):
    """Tagging loss: token cross-entropy over the real tokens, or the CRF's negative log-likelihood.

    Padding (input_mask 0) takes no part in either: the cross-entropy is the
    mean over real tokens only, and the CRF scores each sequence up to its
    last real token.

    Args as `BertNERModel`'s.

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
        label_ids: int32 [B, S] tag ids.
    Outputs:
        float32 scalar.
    """

    def __init__(self, config: BertConfig, is_training: bool, num_labels: int, use_crf: bool = False,
                 use_one_hot_embeddings: bool = False):
        super().__init__(auto_prefix=False)
        self.model = BertNERModel(config, is_training, num_labels, use_crf, use_one_hot_embeddings)
        self.use_crf = use_crf
        self.set_train(is_training)

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor, token_type_ids: ms.Tensor,
                  label_ids: ms.Tensor) -> ms.Tensor:
        scores = self.model(input_ids, input_mask, token_type_ids)                    # [B, S, T]
        if self.use_crf:
            return self.model.crf.neg_log_likelihood(scores, label_ids, input_mask)
        num_tags = scores.shape[-1]
        token_nll = nll(scores.reshape(-1, num_tags), label_ids.reshape(-1))          # [B * S]
        mask = input_mask.reshape(-1).astype(ms.float32)                               # [B * S]
        return (token_nll * mask).sum() / mask.sum()


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

    def __init__(self, config: BertConfig, is_training: bool, use_one_hot_embeddings: bool = False):
        super().__init__()
        self.bert = BertModel(config, is_training, use_one_hot_embeddings)
        self.dense_1 = nn.Dense(config.hidden_size, NUM_SPAN_LOGITS, weight_init=truncated_normal(config))
        self.set_train(is_training)

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor,
                  token_type_ids: ms.Tensor) -> tuple[ms.Tensor, ms.Tensor]:
        sequence_output, _, _ = self.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                          input_mask=input_mask)                   # [B, S, D]
        logits = self.dense_1(sequence_output.astype(ms.float32))                  # [B, S, 2]
        return logits[:, :, 0], logits[:, :, 1]

    def predict(self, input_ids: ms.Tensor, input_mask: ms.Tensor,
                token_type_ids: ms.Tensor) -> tuple[ms.Tensor, ms.Tensor]:
        """(start_logits, end_logits), float32 [B, S] each."""
        return self.construct(input_ids, input_mask, token_type_ids)


class BertSquad(nn.Cell):
    """Span loss: mean of the start and end cross-entropies (Google BERT's run_squad).

    Args as `BertSquadModel`'s.

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
        start_positions, end_positions: int32 [B, 1] token indices (0: [CLS], no answer in this window).
    Outputs:
        float32 scalar.
    """

    def __init__(self, config: BertConfig, is_training: bool, use_one_hot_embeddings: bool = False):
        super().__init__(auto_prefix=False)
        self.model = BertSquadModel(config, is_training, use_one_hot_embeddings)
        self.set_train(is_training)

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor, token_type_ids: ms.Tensor,
                  start_positions: ms.Tensor, end_positions: ms.Tensor) -> ms.Tensor:
        start_logits, end_logits = self.model(input_ids, input_mask, token_type_ids)  # [B, S] each
        start_loss = nll(ops.log_softmax(start_logits, axis=-1), start_positions).mean()
        end_loss = nll(ops.log_softmax(end_logits, axis=-1), end_positions).mean()
        return (start_loss + end_loss) / 2.0


class TaskPredictor(nn.Cell):
    """A task model whose `construct` is its `predict` (for evaluation and export).

    Adds no name prefix: it loads the task model's checkpoints as they are.
    """

    def __init__(self, model: nn.Cell):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor,
                  token_type_ids: ms.Tensor) -> ms.Tensor | tuple[ms.Tensor, ms.Tensor]:
        return self.model.predict(input_ids, input_mask, token_type_ids)
