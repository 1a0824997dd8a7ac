"""Fine-tune and evaluate extractive question answering (SQuAD v1.1).

    python run_squad.py --do_train=true --do_eval=true --vocab_file_path=VOCAB \\
        --train_data_file_path=DIR/train.tfrecord --eval_data_file_path=DIR/dev.tfrecord \\
        --eval_json_path=DIR/dev.json --load_pretrain_checkpoint_path=CKPT [--key=value ...]

Keys and defaults: task_squad_config.yaml. Evaluation rebuilds the windows of
`eval_json_path` (checked against the rows of `eval_data_file_path`), turns
the start/end logits into answers (n-best, max context, original text),
writes predictions.json and nbest_predictions.json, and prints exact match
and F1 as the official v1.1 script computes them.
"""

import json
import os
import sys

import numpy as np

from src import squad
from src.assessment_method import squad_evaluate
from src.bert_model import BertConfig
from src.config import Config, ConfigError, bert_config, load_config
from src.errors import exit_on_user_error
from src.finetune import check_job_inputs, eval_dataset, predict, save_results, setup, train_task
from src.task_models import NUM_SPAN_LOGITS
from src.tasks import load_predictor, recorded_settings
from src.tokenization import FullTokenizer


def evaluation_windows(cfg: Config, config: BertConfig) -> tuple[list[squad.SquadExample], list[squad.SquadFeature]]:
    """(examples, features) of eval_json_path, built as the converter built them."""
    if not (cfg.eval_json_path and cfg.vocab_file_path):
        raise ConfigError("--eval_json_path and --vocab_file_path: required to evaluate")
    examples, _ = squad.read_squad_examples(cfg.eval_json_path, is_training=False)
    tokenizer = FullTokenizer(cfg.vocab_file_path, cfg.do_lower_case)
    features = list(squad.iter_features(examples, tokenizer, False, config.seq_length, cfg.doc_stride,
                                        cfg.max_query_length))
    return examples, features


def check_rows_match(features: list[squad.SquadFeature], columns: dict[str, np.ndarray], cfg: Config) -> None:
    """The records must be the windows of eval_json_path, made with the same settings."""
    by_id = {feature.unique_id: feature for feature in features}
    unique_ids = columns["unique_ids"].reshape(-1)
    if len(unique_ids) != len(features) or any(
            uid not in by_id or not np.array_equal(by_id[uid].input_ids, ids)
            for uid, ids in zip(unique_ids.tolist(), columns["input_ids"])):
        raise ConfigError(f"eval_data_file_path {cfg.eval_data_file_path} does not hold the windows of "
                          f"eval_json_path {cfg.eval_json_path} with this vocab_file_path, do_lower_case, "
                          "doc_stride, max_query_length and seq_length")


def evaluate(cfg: Config, config: BertConfig, checkpoint: str, settings: dict) -> dict:
    """Answer the questions of eval_json_path with the model fine-tuned at `checkpoint` and score the answers;
    the predictions and the scores go to output_dir."""
    examples, features = evaluation_windows(cfg, config)
    model = load_predictor("squad", config, settings, checkpoint)
    columns, (start_logits, end_logits) = predict(model, eval_dataset(cfg, config, "squad"),
                                                    bucket_list=cfg.bucket_list, token_outputs=True)
    check_rows_match(features, columns, cfg)
    results = [squad.RawResult(int(uid), start.tolist(), end.tolist())
               for uid, start, end in zip(columns["unique_ids"].reshape(-1), start_logits, end_logits)]
    predictions, nbest = squad.make_predictions(examples, features, results, cfg.n_best_size,
                                                cfg.max_answer_length, cfg.do_lower_case)
    paths = squad.write_predictions(cfg.output_dir, predictions, nbest)
    with open(cfg.eval_json_path, encoding="utf-8") as f:
        scores = squad_evaluate(json.load(f)["data"], predictions)
    print(json.dumps(scores))
    scores.update(checkpoint=checkpoint, eval_json_path=cfg.eval_json_path, questions=len(examples),
                  windows=len(features), predictions_file=paths[0], nbest_file=paths[1])
    save_results(cfg, scores)
    return scores


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict | None:
    cfg = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "task_squad_config.yaml"),
                      sys.argv[1:] if argv is None else argv)
    if cfg.num_class != NUM_SPAN_LOGITS:
        raise ConfigError(f"--num_class: SQuAD's head has {NUM_SPAN_LOGITS} outputs (start and end logits), "
                          f"got {cfg.num_class}")
    config = bert_config(cfg)
    with setup(cfg, config, "squad"):  # holds output_dir (and the model directory) until the job ends
        check_job_inputs(cfg, config, "squad")
        checkpoint = cfg.load_finetune_checkpoint_path
        settings = recorded_settings("squad", cfg)
        if cfg.do_train:
            checkpoint = train_task(cfg, config, "squad", settings)
        if cfg.do_eval:
            return evaluate(cfg, config, checkpoint, settings)
        return None


if __name__ == "__main__":
    main()
