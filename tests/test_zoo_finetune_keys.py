"""The model zoo's fine-tuning keys and values: its scripts/run_{classifier,ner,squad}{,_gpu}.sh, README usage
lines and task_*_config.yaml. Each is taken with its meaning, or refused in one line naming what is supported.

The metric tests score hand-made labels whose values were worked out by hand.
"""

import json
import math
import shlex
import subprocess
import sys

import numpy as np
import pytest

import run_classifier
import run_ner
import run_squad
from src.assessment_method import CLASSIFIER_METHODS, NER_METHODS, ZOO_NER_METHODS, resolve_method
from tests.test_cli import REPO

# The flags of the zoo's scripts (run_*_gpu.sh pass the same ones, less --device_id), as bash hands them
# over; --device_target CPU instead of Ascend, and without its --config_path (a zoo-format file).
ZOO_SCRIPT_FLAGS = {
    run_classifier: '--do_train="true" --do_eval="false" --assessment_method="Accuracy" --device_id=0 '
                    '--epoch_num=3 --num_class=2 --train_data_shuffle="true" --eval_data_shuffle="false" '
                    '--train_batch_size=32 --eval_batch_size=1 --save_finetune_checkpoint_path="" '
                    '--load_pretrain_checkpoint_path="" --load_finetune_checkpoint_path="" '
                    '--train_data_file_path="" --eval_data_file_path="" --schema_file_path=""',
    run_ner: '--do_train="true" --do_eval="false" --assessment_method="BF1" --use_crf="false" --with_lstm="false" '
             '--device_id=0 --epoch_num=5 --train_data_shuffle="true" --eval_data_shuffle="false" '
             '--train_batch_size=32 --eval_batch_size=1 --vocab_file_path="" --label_file_path="" '
             '--save_finetune_checkpoint_path="" --load_pretrain_checkpoint_path="" '
             '--load_finetune_checkpoint_path="" --train_data_file_path="" --eval_data_file_path="" '
             '--schema_file_path=""',
    run_squad: '--do_train="true" --do_eval="false" --device_id=0 --epoch_num=3 --num_class=2 '
               '--train_data_shuffle="true" --eval_data_shuffle="false" --train_batch_size=32 --eval_batch_size=1 '
               '--vocab_file_path="" --save_finetune_checkpoint_path="" --load_pretrain_checkpoint_path="" '
               '--load_finetune_checkpoint_path="" --train_data_file_path="" --eval_data_file_path="" '
               '--eval_json_path="" --schema_file_path=""',
}
NER_LABELS = ["O", "B-name", "I-name"]

# Four sentences, two classes: predictions [0, 1, 0, 0] for labels [0, 1, 1, 0].
LABELS = np.array([0, 1, 1, 0])
PROBABILITIES = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
# TP 1, TN 2, FP 0, FN 1. Macro F1: class 0 P 2/3 R 1 -> 0.8, class 1 P 1 R 1/2 -> 2/3.
# Spearman: label ranks (1.5, 3.5, 3.5, 1.5), P(class 1) ranks (1, 4, 3, 2): centred dot 4, norms^2 4 and 5.
CLASSIFIER_CASES = [("Accuracy", "accuracy", 0.75), ("accuracy", "accuracy", 0.75), ("F1", "f1", (0.8 + 2 / 3) / 2),
                    ("MCC", "mcc", 2 / math.sqrt(12)), ("Mcc", "mcc", 2 / math.sqrt(12)),
                    ("Spearman_correlation", "spearman_correlation", 4 / math.sqrt(20))]

# Two sentences in BIO. Entities: true (name 0-1, loc 3) and (none); predicted (name 0-1) and (loc 0): F1 1/2.
# Characters: 4 of 6 tagged right. (The zoo's token-level BF1 would be 2/3: 2 of 3 entity tags on each side.)
TRUE_TAGS = [["B-name", "I-name", "O", "B-loc"], ["O", "O"]]
PRED_TAGS = [["B-name", "I-name", "O", "O"], ["B-loc", "O"]]
NER_CASES = [("Accuracy", "accuracy", 4 / 6), ("BF1", "f1", 0.5), ("MF1", "f1", 0.5), ("bf1", "f1", 0.5),
             ("f1", "f1", 0.5), ("clue_benchmark", "f1", 0.5)]


def label2id_flags(directory):
    """--label2id_file_path of a small label2id.json written in `directory`, and its --num_class."""
    path = directory / "label2id.json"
    path.write_text(json.dumps({tag: index for index, tag in enumerate(NER_LABELS)}), encoding="utf-8")
    return [f"--label2id_file_path={path}", f"--num_class={len(NER_LABELS)}"]


def refusal(main, argv, capsys):
    """The one stderr line of a job that refuses `argv` with exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("name, key, expected", CLASSIFIER_CASES)
def test_classifier_names_in_the_zoo_case_score_the_metric_they_name(name, key, expected, capsys):
    method, note = resolve_method(name, CLASSIFIER_METHODS)
    assert note is None
    assert run_classifier.score(method, LABELS, PROBABILITIES)[key] == pytest.approx(expected)
    assert capsys.readouterr().out  # the zoo's result line


@pytest.mark.parametrize("name, key, expected", NER_CASES)
def test_ner_names_of_the_zoo_score_the_closest_metric(name, key, expected, capsys):
    method, note = resolve_method(name, NER_METHODS, ZOO_NER_METHODS)
    assert (note is not None) == (name.lower() in ("bf1", "mf1"))
    assert run_ner.score(method, TRUE_TAGS, PRED_TAGS, "BIO")[key] == pytest.approx(expected)
    assert capsys.readouterr().out


@pytest.mark.parametrize("main, argv, line", [
    (run_classifier.main, ["--assessment_method=auc"], "error: assessment_method: expected one of accuracy, f1, "
                                                       "mcc, spearman_correlation (any case), got 'auc'"),
    (run_classifier.main, ["--assessment_method", "BF1"], "error: assessment_method: expected one of accuracy, f1, "
                                                          "mcc, spearman_correlation (any case), got 'BF1'"),
    (run_ner.main, ["--assessment_method=Spearman_correlation"],
     "error: assessment_method: expected one of f1, accuracy, clue_benchmark, bf1, mf1 (any case), "
     "got 'Spearman_correlation'"),
])
def test_an_unknown_method_is_one_line_naming_the_supported_ones(main, argv, line, capsys):
    assert refusal(main, argv, capsys) == line


def test_ner_label_file_path_is_refused_with_a_hint(capsys):
    assert refusal(run_ner.main, ["--label_file_path=/data/cluener/label_file"], capsys) == (
        "error: --label_file_path: the zoo's entity-type list is not read here; give "
        "--label2id_file_path=DIR/label2id.json (written by python -m src.create_finetune_data)")


def test_the_readme_line_with_lstm_true_exits_2_with_one_line():
    # The zoo README's chineseNer CPU line (less its --config_path), run as a user would.
    line = ('--device_target CPU --do_train=true --do_eval=true --assessment_method=BF1 --use_crf=true '
            '--with_lstm=true --label_file_path="" --train_data_file_path="" --eval_data_file_path="" '
            '--load_pretrain_checkpoint_path=""')
    result = subprocess.run([sys.executable, "run_ner.py", *shlex.split(line)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert (result.returncode, result.stderr) == (2, "error: --with_lstm=true: no LSTM head here; the NER heads "
                                                     "are softmax (--use_crf=false) and CRF (--use_crf=true)\n")


@pytest.mark.parametrize("job", list(ZOO_SCRIPT_FLAGS), ids=lambda job: job.__name__)
def test_every_key_of_the_zoo_scripts_is_taken(job, tmp_path, capsys):
    argv = ["--device_target=CPU", *shlex.split(ZOO_SCRIPT_FLAGS[job])]
    if job is run_ner:
        argv += label2id_flags(tmp_path)
    # Every key and value passes; the job stops at the first path the script leaves empty.
    assert refusal(job.main, argv, capsys) == "error: --train_data_file_path: required with --do_train=true"


def test_the_zoo_bf1_says_how_it_is_scored(tmp_path, capsys):
    with pytest.raises(SystemExit):  # nothing to do: after the note
        run_ner.main(["--assessment_method=BF1", *label2id_flags(tmp_path)])
    assert capsys.readouterr().out.splitlines()[0] == f"assessment_method BF1: {ZOO_NER_METHODS['bf1'][1]}"
