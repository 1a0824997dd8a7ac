"""Evaluate a pretrained checkpoint: masked-LM accuracy, loss and perplexity, NSP accuracy.

    python pretrain_eval.py --data_dir=EVAL_DIR --load_checkpoint_path=CKPT [--key=value ...]

Reads pretrain_config.yaml (the model must match the checkpoint's) and prints
one JSON object, also written (whole, or not at all) to <output_dir>/eval_results.json.
A checkpoint holding inf or NaN is refused, and so are results that are not
finite (JSON has no NaN).
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
import math
import os
import sys

import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.dataset import Dataset

from src.bert_for_pre_training import BertPreTraining, masked_lm_nll
from src.bert_model import BertConfig
from src.checkpoint import load_params_into, read_checkpoint
from src.columns import column_names
from src.config import Config, ConfigError, bert_config, load_config
from src.dataset import DatasetError, check_task_data, create_dataset, fixed_shapes, pad_rows
from src.device import init_device
from src.errors import exit_on_user_error
from src.files import finite_json, write_text_atomic
from src.run_directory import check_not_replacing, hold_directories

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrain_config.yaml")
RESULTS_FILE = "eval_results.json"


class PretrainingMetrics(nn.Cell):
    """Per-batch sums for the metrics.

    Args:
        config (BertConfig): the model to evaluate (dropout off).

    Inputs:
        the seven pretraining columns, as `BertNetworkWithLoss` takes them.
    Outputs:
        float32 [B, 6], per sequence: MLM correct, MLM weight, MLM NLL, NSP
        correct, and MLM correct and weight at the replaced positions (the MLM
        figures weighted by `masked_lm_weights`). Per sequence, so that the
        padding rows of a padded last batch can be left out of the sums.
    """

    def __init__(self, config: BertConfig):
        super().__init__(auto_prefix=False)
        self.bert = BertPreTraining(config, is_training=False)

    def construct(self, input_ids: ms.Tensor, input_mask: ms.Tensor, token_type_ids: ms.Tensor,
                  next_sentence_labels: ms.Tensor, masked_lm_positions: ms.Tensor, masked_lm_ids: ms.Tensor,
                  masked_lm_weights: ms.Tensor) -> ms.Tensor:
        mlm_log_probs, nsp_log_probs = self.bert(input_ids=input_ids, input_mask=input_mask,
                                                 token_type_ids=token_type_ids, masked_lm_positions=masked_lm_positions)
        labels = masked_lm_ids.reshape(-1)                                          # [B * P]
        weights = masked_lm_weights.reshape(-1)                                     # [B * P]
        correct = (ops.argmax(mlm_log_probs, dim=-1) == labels).astype(ms.float32)
        nll = masked_lm_nll(mlm_log_probs, masked_lm_ids)
        nsp_correct = (ops.argmax(nsp_log_probs, dim=-1) == next_sentence_labels.reshape(-1)).astype(ms.float32)
        inputs = ops.gather_elements(input_ids, 1, masked_lm_positions).reshape(-1)  # [B * P]
        replaced = weights * (inputs != labels).astype(ms.float32)
        rows = input_ids.shape[0]
        per_position = ops.stack([correct * weights, weights, nll * weights, correct * replaced, replaced])
        mlm = per_position.reshape(5, rows, -1).sum(-1)                              # [5, B]
        return ops.stack([mlm[0], mlm[1], mlm[2], nsp_correct, mlm[3], mlm[4]], axis=1)  # [B, 6]


def evaluate(metrics_net: PretrainingMetrics, dataset: Dataset, pad_last_batch: bool | None = None) -> dict:
    """Run over `dataset`; returns the metrics dict.

    With `pad_last_batch` (by default where `fixed_shapes` says so for MindSpore's
    target: Ascend), a last, smaller batch runs padded to the batch size and its
    padding rows are left out, so the compiled network sees one shape.
    """
    if pad_last_batch is None:
        pad_last_batch = fixed_shapes(ms.get_context("device_target"))
    batch_size = dataset.get_batch_size()
    sums = np.zeros(6)
    label_counts, sequences, random_next = collections.Counter(), 0, 0
    for batch in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
        inputs, real_rows = pad_rows(batch, batch_size) if pad_last_batch else (batch, len(batch[0]))
        per_row = metrics_net(*[ms.Tensor(column) for column in inputs]).asnumpy()   # [B, 6]
        sums += per_row[:real_rows].astype(np.float64).sum(0)
        labels, weights = batch[5].ravel(), batch[6].ravel()
        label_counts.update(labels[weights > 0].tolist())
        sequences += batch[0].shape[0]
        random_next += int(batch[3].sum())
    correct, weight, nll, nsp_correct, replaced_correct, replaced = sums
    if weight == 0:
        raise DatasetError("data_dir: the evaluation data has no masked positions")
    mlm_loss = nll / weight
    return {"sequences": sequences, "masked_tokens": int(weight),
            "mlm_accuracy": correct / weight, "mlm_accuracy_replaced": replaced_correct / max(replaced, 1.0),
            "mlm_loss": mlm_loss, "mlm_perplexity": perplexity(mlm_loss),
            "mlm_majority_accuracy": max(label_counts.values()) / weight,
            "nsp_accuracy": nsp_correct / sequences,
            "nsp_majority_accuracy": max(random_next, sequences - random_next) / sequences}


def perplexity(loss: float) -> float:
    """exp(loss); inf where that overflows a float (loss above about 709), so that the results are refused
    as not finite rather than ending in an OverflowError."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict:
    cfg = load_config(DEFAULT_CONFIG, sys.argv[1:] if argv is None else argv)
    if not cfg.load_checkpoint_path:
        raise ConfigError("--load_checkpoint_path: the checkpoint to evaluate is required")
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch_size must be at least 1, got {cfg.batch_size}")
    config = bert_config(cfg)
    init_device(cfg, config.compute_type, training=False)
    with hold_directories([(cfg.output_dir, "output_dir")]):  # "": the results are printed only
        if cfg.output_dir:
            check_not_replacing([(os.path.join(cfg.output_dir, RESULTS_FILE), "output_dir")], cfg.overwrite)
        return evaluate_checkpoint(cfg, config)


def evaluate_checkpoint(cfg: Config, config: BertConfig) -> dict:
    """Evaluate `load_checkpoint_path` on `data_dir`: print the results and write them into `output_dir`."""
    dataset = create_dataset(cfg.data_dir, column_names("pretraining"), cfg.batch_size, schema_dir=cfg.schema_dir,
                             dataset_format=cfg.dataset_format, seq_length=config.seq_length, drop_remainder=False)
    check_task_data(cfg.data_dir, cfg.dataset_format, "pretraining", config)  # ids the model can embed, every row
    metrics_net = PretrainingMetrics(config)
    # A training checkpoint also holds optimizer state: only the model's weights are taken.
    load_params_into(metrics_net, read_checkpoint(cfg.load_checkpoint_path), cfg.load_checkpoint_path,
                     ignore_unexpected=True)
    metrics_net.set_train(False)
    results = evaluate(metrics_net, dataset)
    results_path = os.path.join(cfg.output_dir, RESULTS_FILE)
    text = finite_json(results, results_path if cfg.output_dir else "results", indent=2)
    print(text)
    if cfg.output_dir:
        write_text_atomic(text + "\n", results_path)
    return results


if __name__ == "__main__":
    main()
