"""Fine-tuning losses: a task model (src/finetune_eval_model.py) plus its loss.

Each Cell takes the data loader's columns in order and returns a scalar loss,
so the one train cell of pretraining (`BertTrainOneStepCell`) trains them all.
None adds a name prefix: the parameters keep the task model's names, and a
fine-tuned checkpoint loads straight into the task model for evaluation.

Shape letters: B batch, S sequence, C classes, T tags.
"""

import mindspore as ms
from mindspore import nn, ops

from src.finetune_eval_model import BertCLSModel, BertNERModel, BertSquadModel


def nll(log_probs, labels):
    """-log p(label) per row: float32 [N, K], int32 [N] -> float32 [N]."""
    return -ops.gather_elements(log_probs, 1, labels.reshape(-1, 1)).reshape(-1)


class BertCLS(nn.Cell):
    """Classification loss: mean cross-entropy of the class log-probabilities.

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
        label_ids: int32 [B, 1] class ids.
    Outputs:
        float32 scalar.
    """

    def __init__(self, config, is_training, num_labels, use_one_hot_embeddings=False):
        super().__init__(auto_prefix=False)
        self.model = BertCLSModel(config, is_training, num_labels, use_one_hot_embeddings)
        self.set_train(is_training)

    def construct(self, input_ids, input_mask, token_type_ids, label_ids):
        log_probs = self.model(input_ids, input_mask, token_type_ids)                 # [B, C]
        return nll(log_probs, label_ids).mean()


class BertNER(nn.Cell):
    """Tagging loss: token cross-entropy over the real tokens, or the CRF's negative log-likelihood.

    Padding (input_mask 0) takes no part in either: the cross-entropy is the
    mean over real tokens only, and the CRF scores each sequence up to its
    last real token.

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
        label_ids: int32 [B, S] tag ids.
    Outputs:
        float32 scalar.
    """

    def __init__(self, config, is_training, num_labels, use_crf=False, use_one_hot_embeddings=False):
        super().__init__(auto_prefix=False)
        self.model = BertNERModel(config, is_training, num_labels, use_crf, use_one_hot_embeddings)
        self.set_train(is_training)
        self.use_crf = use_crf

    def construct(self, input_ids, input_mask, token_type_ids, label_ids):
        scores = self.model(input_ids, input_mask, token_type_ids)                    # [B, S, T]
        if self.use_crf:
            return self.model.crf.neg_log_likelihood(scores, label_ids, input_mask)
        num_tags = scores.shape[-1]
        token_nll = nll(scores.reshape(-1, num_tags), label_ids.reshape(-1))          # [B * S]
        mask = input_mask.reshape(-1).astype(ms.float32)                               # [B * S]
        return (token_nll * mask).sum() / mask.sum()


class BertSquad(nn.Cell):
    """Span loss: mean of the start and end cross-entropies (Google BERT's run_squad).

    Inputs:
        input_ids, input_mask, token_type_ids: int32 [B, S].
        start_positions, end_positions: int32 [B, 1] token indices (0: [CLS], no answer in this window).
    Outputs:
        float32 scalar.
    """

    def __init__(self, config, is_training, use_one_hot_embeddings=False):
        super().__init__(auto_prefix=False)
        self.model = BertSquadModel(config, is_training, use_one_hot_embeddings)
        self.set_train(is_training)

    def construct(self, input_ids, input_mask, token_type_ids, start_positions, end_positions):
        start_logits, end_logits = self.model(input_ids, input_mask, token_type_ids)  # [B, S] each
        start_loss = nll(ops.log_softmax(start_logits, axis=-1), start_positions).mean()
        end_loss = nll(ops.log_softmax(end_logits, axis=-1), end_positions).mean()
        return (start_loss + end_loss) / 2.0
