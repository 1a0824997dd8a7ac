"""Fault injection (issue 17, cases 2, 5, 8, 21) on tiny fine-tuned models (random weights, the 40-token
vocabulary of test_predict): predict.py's output against its inputs, vocabularies and label maps that are not
the model's, and run_ner's warning for truncated CLUENER texts. Each refusal is one line naming the file or
flag, exit status 2, no traceback, earlier outputs byte-identical and no temporary file left."""

import json
import os

import pytest

import predict
import run_classifier
import run_ner
from src.bert_model import BertConfig
from src.config import ConfigError
from src.finetune import EMBEDDING_PADDING_ROWS, check_saved_labels, check_vocabulary
from src.ner_tagging import label_list
from src.task_models import BertCLSModel, BertNERModel
from tests.helpers import tiny_config
from tests.test_predict import CLASSES, SEQ, VOCAB, fine_tuned

NER_TAGS = label_list(["address", "name"], "BIO")   # O, B-address, I-address, B-name, I-name
PREVIOUS = b'{"line": 1, "text": "an earlier, good result"}\n'


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A fine-tuned classifier and NER model with their <task>.yaml, label maps and vocabulary."""
    root = tmp_path_factory.mktemp("models")
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    config = tiny_config(vocab_size=len(VOCAB), seq_length=SEQ)
    classifier = fine_tuned(root, BertCLSModel(config, False, len(CLASSES)), "classifier",
                            {"num_class": len(CLASSES), "labels": CLASSES, "do_lower_case": True})
    ner = fine_tuned(root, BertNERModel(config, False, len(NER_TAGS)), "ner",
                     {"num_class": len(NER_TAGS), "use_crf": False, "tag_scheme": "BIO", "labels": NER_TAGS,
                      "do_lower_case": True})
    write_json(root / "label2id.json", {tag: index for index, tag in enumerate(NER_TAGS)})
    return {"root": root, "vocab": root / "vocab.txt", "classifier": classifier, "ner": ner}


def write_json(path, value):
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def refused(main, argv, capsys):
    """Run an entry point that must refuse its input: exit 2, no traceback; returns its last stderr line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    return err.strip().splitlines()[-1]


def assert_no_temporary_files(directory):
    assert not [name for name in os.listdir(directory) if name.startswith(".tmp-")]


# ---------------------------------------------------------------- case 2: predict.py's output file

@pytest.mark.parametrize("spelling", ["same path", "symbolic link", "relative path", "hard link"])
def test_an_output_file_that_is_the_input_is_refused_before_any_work(models, tmp_path, capsys, monkeypatch,
                                                                        spelling):
    source = tmp_path / "input.txt"
    source.write_text("the cat sat\n", encoding="utf-8")
    output = {"same path": str(source), "symbolic link": str(tmp_path / "link.jsonl"),
              "relative path": os.path.join("sub", "..", "input.txt"), "hard link": str(tmp_path / "hard.jsonl")}
    (tmp_path / "sub").mkdir()
    if spelling == "symbolic link":
        os.symlink(source, output[spelling])
    if spelling == "hard link":
        os.link(source, output[spelling])
    monkeypatch.chdir(tmp_path)
    line = refused(predict.main, [*models["classifier"], f"--vocab_file={models['vocab']}",
                                  f"--input_file={source}", f"--output_file={output[spelling]}"], capsys)
    assert line == f"error: --output_file {output[spelling]} is --input_file {source}: give another output file"
    assert source.read_text(encoding="utf-8") == "the cat sat\n"
    assert_no_temporary_files(tmp_path)


def test_an_output_file_that_is_the_checkpoint_or_a_directory_is_refused(models, tmp_path, capsys):
    checkpoint = models["root"] / "classifier.ckpt"
    before = checkpoint.read_bytes()
    argv = [*models["classifier"], f"--vocab_file={models['vocab']}"]
    line = refused(predict.main, [*argv, f"--output_file={checkpoint}"], capsys)
    assert line == f"error: --output_file {checkpoint} is --checkpoint {checkpoint}: give another output file"
    assert checkpoint.read_bytes() == before
    line = refused(predict.main, [*argv, f"--output_file={tmp_path}"], capsys)
    assert line == f"error: --output_file {tmp_path}: is a directory, expected a file name"


def test_a_failed_run_leaves_the_previous_output_and_a_good_one_replaces_it_whole(models, tmp_path, capsys):
    source, target, link = tmp_path / "input.txt", tmp_path / "results.jsonl", tmp_path / "latest.jsonl"
    source.write_text("the cat sat\n\na dog ran\n", encoding="utf-8")
    target.write_bytes(PREVIOUS)
    os.symlink(target, link)
    ner_checkpoint = models["root"] / "ner.ckpt"
    # The classifier's YAML with the NER checkpoint: fails when the weights are loaded, after tokenizing.
    line = refused(predict.main, [*models["classifier"][:2], f"--checkpoint={ner_checkpoint}",
                                  f"--vocab_file={models['vocab']}", f"--input_file={source}",
                                  f"--output_file={link}"], capsys)
    assert line.startswith(f"error: {ner_checkpoint} does not match the network: ")
    assert target.read_bytes() == PREVIOUS and os.path.islink(link)
    assert_no_temporary_files(tmp_path)
    predict.main([*models["classifier"], f"--vocab_file={models['vocab']}", f"--input_file={source}",
                  f"--output_file={link}"])
    results = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [result["line"] for result in results] == [1, 2, 3] and results[1]["skipped"] == "empty line"
    assert os.path.islink(link) and os.readlink(link) == str(target)
    assert_no_temporary_files(tmp_path)


# ---------------------------------------------------------------- case 8: the model's vocabulary

def test_a_vocabulary_larger_than_the_model_is_refused_by_predict(models, tmp_path, capsys):
    bigger = tmp_path / "vocab-60.txt"
    bigger.write_text("\n".join(VOCAB + [f"extra{i}" for i in range(20)]) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    line = refused(predict.main, [*models["classifier"], f"--vocab_file={bigger}", f"--output_file={output}"],
                   capsys)
    assert line == (f"error: --vocab_file {bigger}: 60 tokens, more than the model's 40 embedding rows "
                    "(vocab_size): not the vocabulary the model was trained with")
    assert not output.exists()


def test_a_much_smaller_vocabulary_is_a_warning_and_padding_rows_are_not(capsys):
    vocab = {token: index for index, token in enumerate(VOCAB)}
    check_vocabulary(vocab, "v.txt", len(VOCAB) + EMBEDDING_PADDING_ROWS - 1, "--vocab_file")
    assert capsys.readouterr().err == ""
    check_vocabulary(vocab, "v.txt", len(VOCAB) + EMBEDDING_PADDING_ROWS, "--vocab_file")
    assert capsys.readouterr().err == (f"warning: --vocab_file v.txt: 40 tokens for a model of "
                                       f"{40 + EMBEDDING_PADDING_ROWS} embedding rows (vocab_size): is it the "
                                       "vocabulary the model was trained with?\n")
    # The zoo's default model (21136 rows) with Google's Chinese vocabulary (21128 tokens): padding, no warning.
    check_vocabulary(dict.fromkeys(range(21128)), "zh.txt", BertConfig().vocab_size, "--vocab_file")
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- cases 5, 8, 21: run_ner's evaluation

def ner_eval(models, output_dir, *extra):
    return ["--bert_network=tiny", f"--model_config={models['root'] / 'ner.yaml'}", "--do_eval=true",
            f"--load_finetune_checkpoint_path={models['root'] / 'ner.ckpt'}", f"--num_class={len(NER_TAGS)}",
            f"--label2id_file_path={models['root'] / 'label2id.json'}", f"--vocab_file_path={models['vocab']}",
            f"--output_dir={output_dir}", "--eval_batch_size=2", *extra]


@pytest.fixture
def cluener_file(tmp_path):
    """Three CLUENER test records, one of 100,000 characters."""
    path = tmp_path / "test.json"
    texts = ["北京人在上海", "北京" * 50_000, "上海人"]
    path.write_text("".join(json.dumps({"id": index, "text": text}, ensure_ascii=False) + "\n"
                            for index, text in enumerate(texts)), encoding="utf-8")
    return path


def test_run_ner_warns_of_truncated_cluener_texts(models, tmp_path, cluener_file, capsys):
    results = run_ner.main(ner_eval(models, tmp_path / "out", f"--eval_data_file_path={cluener_file}",
                                    "--assessment_method=clue_benchmark"))
    err = capsys.readouterr().err
    assert f"warning: 1 inputs longer than {SEQ - 2} tokens were truncated" in err.splitlines()
    assert results["sentences"] == 3
    assert len((tmp_path / "out" / "cluener_predict.json").read_text(encoding="utf-8").splitlines()) == 3


def assert_nothing_written(output_dir):
    """A refused evaluation leaves its (empty) output directory as it was: no results, no temporary file."""
    assert os.listdir(output_dir) == []


def test_run_ner_refuses_a_label_map_with_swapped_ids(models, tmp_path, cluener_file, capsys):
    swapped = {tag: index for index, tag in enumerate(NER_TAGS)}
    swapped["B-address"], swapped["B-name"] = swapped["B-name"], swapped["B-address"]
    write_json(tmp_path / "label2id.json", swapped)
    (tmp_path / "out").mkdir()
    line = refused(run_ner.main, ner_eval(models, tmp_path / "out", f"--eval_data_file_path={cluener_file}",
                                          f"--label2id_file_path={tmp_path / 'label2id.json'}",
                                          "--assessment_method=clue_benchmark"), capsys)
    assert line == (f"error: --label2id_file_path {tmp_path / 'label2id.json'} disagrees with the labels saved in "
                    f"{models['root'] / 'ner.yaml'}: id 1 is 'B-name' in the label map, 'B-address' in the model")
    assert_nothing_written(tmp_path / "out")


def test_run_ner_refuses_a_vocabulary_larger_than_the_model(models, tmp_path, cluener_file, capsys):
    bigger = tmp_path / "vocab.txt"
    bigger.write_text("\n".join(VOCAB + ["extra"]) + "\n", encoding="utf-8")
    (tmp_path / "out").mkdir()
    line = refused(run_ner.main, ner_eval(models, tmp_path / "out", f"--eval_data_file_path={cluener_file}",
                                          f"--vocab_file_path={bigger}"), capsys)
    assert line.startswith(f"error: --vocab_file_path {bigger}: 41 tokens, more than the model's 40 embedding rows")
    assert_nothing_written(tmp_path / "out")


def test_run_ner_refuses_a_checkpoint_of_another_task(models, tmp_path, cluener_file, capsys):
    checkpoint = models["root"] / "classifier.ckpt"
    (tmp_path / "out").mkdir()
    line = refused(run_ner.main, ner_eval(models, tmp_path / "out", f"--eval_data_file_path={cluener_file}",
                                          f"--load_finetune_checkpoint_path={checkpoint}"), capsys)
    assert line == (f"error: --load_finetune_checkpoint_path {checkpoint}: {models['root'] / 'classifier.yaml'} "
                    "describes a 'classifier' model, not 'ner'")
    assert_nothing_written(tmp_path / "out")


# ---------------------------------------------------------------- case 5: run_classifier and predict.py

def test_run_classifier_refuses_a_label_map_in_another_order(models, tmp_path, capsys):
    write_json(tmp_path / "label2id.json", {label: index for index, label in enumerate(reversed(CLASSES))})
    (tmp_path / "dev.tfrecord").write_bytes(b"")   # not read: the labels are refused first
    (tmp_path / "out").mkdir()
    line = refused(run_classifier.main, [
        "--bert_network=tiny", f"--model_config={models['root'] / 'classifier.yaml'}", "--do_eval=true",
        f"--load_finetune_checkpoint_path={models['root'] / 'classifier.ckpt'}", f"--num_class={len(CLASSES)}",
        f"--label2id_file_path={tmp_path / 'label2id.json'}", f"--eval_data_file_path={tmp_path / 'dev.tfrecord'}",
        f"--output_dir={tmp_path / 'out'}"], capsys)
    assert line == (f"error: --label2id_file_path {tmp_path / 'label2id.json'} disagrees with the labels saved in "
                    f"{models['root'] / 'classifier.yaml'}: id 0 is 'neutral' in the label map, 'negative' in the "
                    "model")
    assert_nothing_written(tmp_path / "out")


def test_predict_refuses_a_config_whose_labels_are_not_its_classes(models, tmp_path, capsys):
    config = tmp_path / "classifier.yaml"
    text = (models["root"] / "classifier.yaml").read_text(encoding="utf-8")
    config.write_text(text.replace("num_class: 3", "num_class: 4"), encoding="utf-8")
    line = refused(predict.main, [models["classifier"][0], f"--config={config}", models["classifier"][2],
                                  f"--vocab_file={models['vocab']}"], capsys)
    assert line == f"error: --config {config}: expected labels: a list of num_class (4) names"


def test_a_model_saved_without_class_names_takes_any_label_map_and_a_named_one_is_compared():
    for unnamed in (["0", "1", "2"], ["LABEL_0", "LABEL_1", "LABEL_2"]):   # ours, Hugging Face's defaults
        check_saved_labels(CLASSES, unnamed, "labels")
    with pytest.raises(ConfigError, match="^labels: id 2 is 'neutral' in the label map, '2' in the model$"):
        check_saved_labels(CLASSES, ["negative", "positive", "2"], "labels")
    with pytest.raises(ConfigError, match="^labels: 3 labels in the label map, 2 in the model$"):
        check_saved_labels(CLASSES, ["negative", "positive"], "labels")
