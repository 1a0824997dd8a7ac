"""Evaluate a pretrained checkpoint: masked-LM accuracy, loss and perplexity, NSP accuracy.

    python pretrain_eval.py --data_dir=EVAL_DIR --load_checkpoint_path=CKPT [--key=value ...]

Reads pretrain_config.yaml (the model must match the checkpoint's) and prints
one JSON object, also written to <output_dir>/eval_results.json.
The masked-LM figures are weighted by `masked_lm_weights` (padded prediction
slots do not count). `mlm_majority_accuracy` is the accuracy of always
predicting the most frequent masked token of the evaluation set: the floor a
model must beat to have learned anything beyond token frequencies;
`nsp_majority_accuracy` is the same floor for next-sentence prediction (the
random-B share is above one half with Google's recipe).
`mlm_accuracy_replaced` counts only the masked positions whose input token was
replaced ([MASK] or a random token, 90% of them): there the answer must come
from the context, while the other 10% can be copied from the input.
"""

import collections
import json
import math
import os
import sys

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.bert_for_pre_training import BertPreTraining, masked_lm_nll
from src.checkpoint import load_params_into, read_checkpoint
from src.config import ConfigError, bert_config, load_config
from src.dataset import PRETRAIN_COLUMNS, DatasetError, create_dataset
from src.device import init_device
from src.errors import exit_on_user_error

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrain_config.yaml")
RESULTS_FILE = "eval_results.json"


class PretrainingMetrics(nn.Cell):
    """Per-batch sums for the metrics.

    Args:
        config (BertConfig): the model to evaluate (dropout off).

    Inputs:
        the seven pretraining columns, as `BertNetworkWithLoss` takes them.
    Outputs:
        float32 scalars: MLM correct, MLM weight, MLM NLL, NSP correct, and MLM
        correct and weight at the replaced positions (all weighted by
        `masked_lm_weights`).
    """

    def __init__(self, config):
        super().__init__(auto_prefix=False)
        self.bert = BertPreTraining(config, is_training=False)

    def construct(self, input_ids, input_mask, token_type_ids, next_sentence_labels,
                  masked_lm_positions, masked_lm_ids, masked_lm_weights):
        mlm_log_probs, nsp_log_probs = self.bert(input_ids, input_mask, token_type_ids, masked_lm_positions)
        labels = masked_lm_ids.reshape(-1)                                          # [B * P]
        weights = masked_lm_weights.reshape(-1)                                     # [B * P]
        correct = (ops.argmax(mlm_log_probs, dim=-1) == labels).astype(ms.float32)
        nll = masked_lm_nll(mlm_log_probs, masked_lm_ids)
        nsp_correct = (ops.argmax(nsp_log_probs, dim=-1) == next_sentence_labels.reshape(-1)).astype(ms.float32)
        inputs = ops.gather_elements(input_ids, 1, masked_lm_positions).reshape(-1)  # [B * P]
        replaced = weights * (inputs != labels).astype(ms.float32)
        return ((correct * weights).sum(), weights.sum(), (nll * weights).sum(), nsp_correct.sum(),
                (correct * replaced).sum(), replaced.sum())


def evaluate(metrics_net, dataset):
    """Run over `dataset`; returns the metrics dict."""
    sums = np.zeros(6)
    label_counts, sequences, random_next = collections.Counter(), 0, 0
    for batch in dataset.create_tuple_iterator(num_epochs=1):
        sums += [float(value.asnumpy()) for value in metrics_net(*batch)]
        labels, weights = batch[5].asnumpy().ravel(), batch[6].asnumpy().ravel()
        label_counts.update(labels[weights > 0].tolist())
        sequences += batch[0].shape[0]
        random_next += int(batch[3].asnumpy().sum())
    correct, weight, nll, nsp_correct, replaced_correct, replaced = sums
    if weight == 0:
        raise DatasetError("data_dir: the evaluation data has no masked positions")
    mlm_loss = nll / weight
    return {"sequences": sequences, "masked_tokens": int(weight),
            "mlm_accuracy": correct / weight, "mlm_accuracy_replaced": replaced_correct / max(replaced, 1.0),
            "mlm_loss": mlm_loss, "mlm_perplexity": math.exp(mlm_loss),
            "mlm_majority_accuracy": max(label_counts.values()) / weight,
            "nsp_accuracy": nsp_correct / sequences,
            "nsp_majority_accuracy": max(random_next, sequences - random_next) / sequences}


@exit_on_user_error
def main(argv=None):
    cfg = load_config(DEFAULT_CONFIG, sys.argv[1:] if argv is None else argv)
    if not cfg.load_checkpoint_path:
        raise ConfigError("--load_checkpoint_path: the checkpoint to evaluate is required")
    config = bert_config(cfg)
    init_device(cfg, config.compute_type, training=False)
    dataset = create_dataset(cfg.data_dir, PRETRAIN_COLUMNS, cfg.batch_size, schema_dir=cfg.schema_dir,
                             dataset_format=cfg.dataset_format, seq_length=config.seq_length, drop_remainder=False)
    metrics_net = PretrainingMetrics(config)
    # A training checkpoint also holds optimizer state: only the model's weights are taken.
    load_params_into(metrics_net, read_checkpoint(cfg.load_checkpoint_path), cfg.load_checkpoint_path,
                     ignore_unexpected=True)
    metrics_net.set_train(False)
    results = evaluate(metrics_net, dataset)
    print(json.dumps(results, indent=2))
    if cfg.output_dir:
        os.makedirs(cfg.output_dir, exist_ok=True)
        with open(os.path.join(cfg.output_dir, RESULTS_FILE), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
