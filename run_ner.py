"""Fine-tune and evaluate named-entity recognition (CLUENER2020), with a softmax or a CRF head.

    python run_ner.py --do_train=true --do_eval=true --use_crf=true --num_class=21 \\
        --label2id_file_path=DIR/label2id.json --train_data_file_path=DIR/train.tfrecord \\
        --eval_data_file_path=DIR/dev.tfrecord --load_pretrain_checkpoint_path=CKPT [--key=value ...]

Keys and defaults: task_ner_config.yaml. Evaluation prints entity-level
precision, recall and F1 (exact type and span), or with
`--assessment_method=accuracy` the share of characters tagged right, and writes
<output_dir>/eval_results.json; `--assessment_method=clue_benchmark` reads a
CLUENER JSON file as `eval_data_file_path` and also writes the CLUENER
submission file <output_dir>/cluener_predict.json (scored too when the file has labels).
The zoo's flags are taken: its BF1 and MF1 are scored as entity F1, `with_lstm`
must be false (no LSTM head here) and its `label_file_path` must be empty.
"""

import json
import os
import sys

import mindspore.dataset as ds

from src import assessment_method
from src.bert_model import BertConfig
from src.config import Config, ConfigError, bert_config, load_config
from src.errors import exit_on_user_error
from src.featurization import SPECIAL_TOKENS_PER_TEXT, Example, read_cluener_rows
from src.finetune import (check_job_inputs, eval_dataset, predict, read_label_map, rows_dataset, save_results, setup,
                          train_task, warn_truncated)
from src.ner_tagging import infer_scheme, tags_to_spans
from src.tasks import TASKS, load_predictor, recorded_settings

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "task_ner_config.yaml")
SUBMISSION_FILE = "cluener_predict.json"
JSON_SUFFIX = ".json"


def evaluation_data(cfg: Config, config: BertConfig, label_map: dict[str, int], scheme: str,
                    method: str) -> tuple[ds.Dataset, list[Example] | None]:
    """(dataset, CLUENER examples or None): a CLUENER JSON file is converted in memory."""
    if not cfg.eval_data_file_path.endswith(JSON_SUFFIX):
        if method == "clue_benchmark":
            raise ConfigError("--assessment_method=clue_benchmark: eval_data_file_path must be a CLUENER JSON file")
        return eval_dataset(cfg, config, "ner"), None
    if not cfg.vocab_file_path:
        raise ConfigError("--vocab_file_path: required to read the CLUENER JSON file eval_data_file_path")
    examples, rows = read_cluener_rows(cfg.eval_data_file_path, cfg.vocab_file_path, label_map, config.seq_length,
                                       scheme, cfg.do_lower_case, cfg.on_error)
    # One tag per character: a text longer than the sequence loses its tail, as in the converter.
    max_tokens = config.seq_length - SPECIAL_TOKENS_PER_TEXT
    warn_truncated(sum(len(example.text) > max_tokens for example in examples), max_tokens)
    return rows_dataset(rows, TASKS["ner"].evaluation_columns, cfg.eval_batch_size), examples


def score(method: str, true_tags: list[list[str]], pred_tags: list[list[str]], scheme: str) -> dict:
    """Token accuracy for `method` "accuracy", else entity F1, of the sentences' tag lists; printed in the
    zoo's format and returned as a dict."""
    if method == "accuracy":
        results = assessment_method.accuracy([tag for tags in true_tags for tag in tags],
                                             [tag for tags in pred_tags for tag in tags])
        print(assessment_method.format_accuracy(results))
    else:
        results = assessment_method.entity_f1(true_tags, pred_tags, scheme)
        print(assessment_method.format_f1(results))
    return results


def evaluate(cfg: Config, config: BertConfig, checkpoint: str, label_map: dict[str, int], method: str,
             settings: dict) -> dict:
    """Score the tagger fine-tuned at `checkpoint` (its `settings`: num_class, use_crf, tag_scheme) on the
    evaluation data with `method`; the results go to eval_results.json (and the CLUENER submission file)."""
    id_to_tag = {index: tag for tag, index in label_map.items()}
    scheme = settings["tag_scheme"]
    dataset, examples = evaluation_data(cfg, config, label_map, scheme, method)
    model = load_predictor("ner", config, settings, checkpoint)
    columns, (predicted_ids,) = predict(model, dataset, bucket_list=cfg.bucket_list, token_outputs=True)
    # Tags of the characters: positions 1 .. length - 2 (between [CLS] and [SEP]).
    lengths = columns["input_mask"].sum(axis=1) - 2
    true_tags = [[id_to_tag[i] for i in row[1:1 + n]] for row, n in zip(columns["label_ids"], lengths)]
    pred_tags = [[id_to_tag[i] for i in row[1:1 + n]] for row, n in zip(predicted_ids, lengths)]
    results = {}
    labelled = examples is None or any(example.label is not None for example in examples)
    if labelled:
        results = score(method, true_tags, pred_tags, scheme)
    if method == "clue_benchmark":
        path = os.path.join(cfg.output_dir, SUBMISSION_FILE)
        assessment_method.write_cluener_submission(path, [
            (example_id(example, index), example.text, tags_to_spans(tags, scheme))
            for index, (example, tags) in enumerate(zip(examples, pred_tags))])
        print(f"CLUENER submission written to {path}")
        results["submission_file"] = path
    results.update(assessment_method=method, use_crf=cfg.use_crf, tag_scheme=scheme,
                   checkpoint=checkpoint, eval_data_file_path=cfg.eval_data_file_path, sentences=len(pred_tags))
    save_results(cfg, results)
    return results


def example_id(example: Example, index: int) -> object:
    """The record's own "id" (CLUENER test files have one), else its index in the file."""
    return json.loads(example.raw).get("id", index)


def check_zoo_keys(cfg: Config) -> None:
    """The zoo's NER keys that have no counterpart here are taken only at their neutral values."""
    if cfg.with_lstm:
        raise ConfigError("--with_lstm=true: no LSTM head here; the NER heads are softmax (--use_crf=false) "
                          "and CRF (--use_crf=true)")
    if cfg.label_file_path:
        raise ConfigError("--label_file_path: the zoo's entity-type list is not read here; give "
                          "--label2id_file_path=DIR/label2id.json (written by python -m src.create_finetune_data)")


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict | None:
    cfg = load_config(DEFAULT_CONFIG, sys.argv[1:] if argv is None else argv)
    method, note = assessment_method.resolve_method(cfg.assessment_method, assessment_method.NER_METHODS,
                                                    assessment_method.ZOO_NER_METHODS)
    check_zoo_keys(cfg)
    if note:
        print(f"assessment_method {cfg.assessment_method}: {note}")
    if not cfg.label2id_file_path:
        raise ConfigError("--label2id_file_path: required (the label2id.json written with the data)")
    label_map = read_label_map(cfg.label2id_file_path, cfg.num_class)
    config = bert_config(cfg)
    with setup(cfg, config, "ner"):  # holds output_dir (and the model directory) until the job ends
        check_job_inputs(cfg, config, "ner", label_map,
                         eval_records=not cfg.eval_data_file_path.endswith(JSON_SUFFIX))
        checkpoint = cfg.load_finetune_checkpoint_path
        settings = recorded_settings("ner", cfg, tag_scheme=infer_scheme(label_map),
                                     labels=sorted(label_map, key=label_map.get))
        if cfg.do_train:
            checkpoint = train_task(cfg, config, "ner", settings)
        if cfg.do_eval:
            return evaluate(cfg, config, checkpoint, label_map, method, settings)
        return None


if __name__ == "__main__":
    main()
