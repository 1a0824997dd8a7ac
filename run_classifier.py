"""Fine-tune and evaluate sentence classification (CLUE TNEWS, GLUE CoLA, ...).

    python run_classifier.py --do_train=true --do_eval=true --num_class=15 \\
        --train_data_file_path=DIR/train.tfrecord --eval_data_file_path=DIR/dev.tfrecord \\
        --load_pretrain_checkpoint_path=CKPT [--key=value ...]

Keys and defaults: task_classifier_config.yaml. Prints the zoo's result lines
and writes <output_dir>/eval_results.json.
"""

import os
import sys

import numpy as np

from src import assessment_method
from src.bert_model import BertConfig
from src.config import Config, bert_config, load_config
from src.errors import exit_on_user_error
from src.finetune import check_job_inputs, eval_dataset, predict, read_label_map, save_results, setup, train_task
from src.tasks import load_predictor, recorded_settings

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "task_classifier_config.yaml")
# Spearman correlation ranks a score: for two classes, the probability of class 1.
POSITIVE_CLASS = 1


def score(method: str, labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """The `method` metric (a CLASSIFIER_METHODS name) of [N] labels against [N, num_class] class
    probabilities, printed in the zoo's format and returned as a dict."""
    num_class = probabilities.shape[-1]
    predictions = probabilities.argmax(axis=-1)
    if method == "accuracy":
        results = assessment_method.accuracy(labels, predictions)
        print(assessment_method.format_accuracy(results))
    elif method == "f1":
        results = assessment_method.classification_f1(labels, predictions, num_class)
        print(assessment_method.format_f1(results))
    elif method == "mcc":
        results = assessment_method.matthews_corrcoef(labels, predictions)
        print(assessment_method.format_mcc(results))
    else:
        scores = probabilities[:, POSITIVE_CLASS] if num_class == 2 else predictions
        results = assessment_method.spearman_correlation(labels, scores)
        print(assessment_method.format_spearman(results))
    return results


def evaluate(cfg: Config, config: BertConfig, checkpoint: str, method: str, settings: dict) -> dict:
    """Score the classifier fine-tuned at `checkpoint` (its `settings`: num_class, labels) on the evaluation
    data with `method`; the results go to eval_results.json."""
    model = load_predictor("classifier", config, settings, checkpoint)
    columns, (probabilities,) = predict(model, eval_dataset(cfg, config, "classifier"), bucket_list=cfg.bucket_list)
    labels = columns["label_ids"].reshape(-1)
    predictions = probabilities.argmax(axis=-1)
    results = score(method, labels, probabilities)
    results.update(assessment_method=method, checkpoint=checkpoint,
                   eval_data_file_path=cfg.eval_data_file_path, examples=int(labels.size),
                   prediction_counts=np.bincount(predictions, minlength=cfg.num_class).tolist(),
                   label_counts=np.bincount(labels, minlength=cfg.num_class).tolist())
    if cfg.label2id_file_path:
        results["class_names"] = settings["labels"]
    save_results(cfg, results)
    return results


def class_names(cfg: Config) -> list[str]:
    """The class names in id order (from label2id_file_path), or their ids as strings."""
    if not cfg.label2id_file_path:
        return [str(index) for index in range(cfg.num_class)]
    label_map = read_label_map(cfg.label2id_file_path, cfg.num_class)
    return sorted(label_map, key=label_map.get)


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict | None:
    cfg = load_config(DEFAULT_CONFIG, sys.argv[1:] if argv is None else argv)
    method, _ = assessment_method.resolve_method(cfg.assessment_method, assessment_method.CLASSIFIER_METHODS)
    label_map = read_label_map(cfg.label2id_file_path, cfg.num_class) if cfg.label2id_file_path else None
    config = bert_config(cfg)
    with setup(cfg, config, "classifier"):  # holds output_dir (and the model directory) until the job ends
        check_job_inputs(cfg, config, "classifier", label_map)
        checkpoint = cfg.load_finetune_checkpoint_path
        settings = recorded_settings("classifier", cfg, labels=class_names(cfg))
        if cfg.do_train:
            checkpoint = train_task(cfg, config, "classifier", settings)
        if cfg.do_eval:
            return evaluate(cfg, config, checkpoint, method, settings)
        return None


if __name__ == "__main__":
    main()
