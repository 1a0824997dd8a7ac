"""predict.py on tiny fine-tuned models (random weights, a 40-token vocabulary): outputs against the
task model run directly on hand-built token ids; empty, over-long and non-UTF-8 input."""

import json

import mindspore as ms
import numpy as np
import pytest
import yaml

import predict
from src.checkpoint import save_checkpoint_atomic
from src.ner_tagging import label_list, tags_to_spans
from src.task_models import BertCLSModel, BertNERModel, TaskPredictor
from tests.helpers import randomize_parameters, tiny_config

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "北", "京", "上", "海", "人", "在", "."]
VOCAB = SPECIALS + WORDS + [f"w{i}" for i in range(40 - len(SPECIALS) - len(WORDS))]
SEQ = 8
CLASSES = ["negative", "positive", "neutral"]
TAGS = label_list(["loc", "per"], "BIO")


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return str(path)


def fine_tuned(tmp_path, model, task, settings):
    """Save `model` with random weights as fine-tuning would: <task>.ckpt + <task>.yaml."""
    randomize_parameters(model, seed=7, scale=0.5)
    save_checkpoint_atomic(model, str(tmp_path / f"{task}.ckpt"))
    config = tiny_config(vocab_size=len(VOCAB), seq_length=SEQ)
    (tmp_path / f"{task}.yaml").write_text(yaml.safe_dump({"task": task, **settings, "model": dict(vars(config))}),
                                           encoding="utf-8")
    return [f"--task={task}", f"--config={tmp_path / f'{task}.yaml'}", f"--checkpoint={tmp_path / f'{task}.ckpt'}"]


def ids(tokens):
    row = [VOCAB.index(token) for token in ["[CLS]", *tokens, "[SEP]"]]
    return row + [0] * (SEQ - len(row)), [1] * len(row) + [0] * (SEQ - len(row))


def run_direct(model, token_lists):
    input_ids, input_mask = zip(*[ids(tokens) for tokens in token_lists])
    arrays = [np.array(a, np.int32) for a in (input_ids, input_mask, np.zeros((len(token_lists), SEQ)))]
    model.set_train(False)
    return TaskPredictor(model)(*[ms.Tensor(a) for a in arrays]).asnumpy()


def run_predict(argv, tmp_path, lines, capsys):
    source = tmp_path / "input.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    predict.main([*argv, f"--input_file={source}", f"--output_file={tmp_path / 'out.jsonl'}", "--batch_size=2"])
    with open(tmp_path / "out.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f], capsys.readouterr().err


def test_classifier_labels_and_probabilities_match_the_model(tmp_path, vocab_file, capsys):
    model = BertCLSModel(tiny_config(vocab_size=len(VOCAB), seq_length=SEQ), False, len(CLASSES))
    argv = fine_tuned(tmp_path, model, "classifier", {"num_class": 3, "labels": CLASSES, "do_lower_case": True})
    lines = ["The cat sat.", "", "a dog ran on the mat the cat sat"]
    outputs, err = run_predict([*argv, f"--vocab_file={vocab_file}"], tmp_path, lines, capsys)
    expected = run_direct(model, [["the", "cat", "sat", "."], ["a", "dog", "ran", "on", "the", "mat"]])
    assert outputs[1] == {"line": 2, "skipped": "empty line"}
    for output, probabilities, line in zip([outputs[0], outputs[2]], expected, (1, 3)):
        assert output["line"] == line and output["label"] == CLASSES[int(probabilities.argmax())]
        assert abs(output["probability"] - float(probabilities.max())) < 1e-6
    assert "1 inputs longer than 6 tokens were truncated" in err


def test_ner_entities_are_the_decoded_tags_with_character_offsets(tmp_path, vocab_file, capsys):
    model = BertNERModel(tiny_config(vocab_size=len(VOCAB), seq_length=SEQ), False, len(TAGS), use_crf=True)
    argv = fine_tuned(tmp_path, model, "ner", {"num_class": len(TAGS), "use_crf": True, "tag_scheme": "BIO",
                                               "labels": TAGS, "do_lower_case": True})
    text = "北京人在上海"
    outputs, _ = run_predict([*argv, f"--vocab_file={vocab_file}"], tmp_path, [text], capsys)
    tag_ids = run_direct(model, [list(text)])[0]
    spans = tags_to_spans([TAGS[i] for i in tag_ids[1:1 + len(text)]], "BIO")
    expected = [{"type": kind, "text": text[start:end + 1], "start": start, "end": end}
                for kind, start, end in sorted(spans, key=lambda span: span[1])]
    assert outputs == [{"line": 1, "text": text, "entities": expected}]


def test_squad_answers_come_from_the_context(tmp_path, vocab_file, capsys):
    from src.task_models import BertSquadModel
    model = BertSquadModel(tiny_config(vocab_size=len(VOCAB), seq_length=SEQ), False)
    argv = fine_tuned(tmp_path, model, "squad", {"do_lower_case": True, "doc_stride": 2, "max_query_length": 2,
                                                 "n_best_size": 5, "max_answer_length": 3})
    context = "The cat sat on the mat."
    lines = [json.dumps({"question": "cat?", "context": context, "id": "q1"})]
    outputs, _ = run_predict([*argv, f"--vocab_file={vocab_file}"], tmp_path, lines, capsys)
    assert outputs[0]["id"] == "q1" and outputs[0]["answer"] in context and 0 < outputs[0]["probability"] <= 1


def test_bad_input_is_one_line_and_exit_2(tmp_path, vocab_file, capsys):
    model = BertCLSModel(tiny_config(vocab_size=len(VOCAB), seq_length=SEQ), False, len(CLASSES))
    argv = fine_tuned(tmp_path, model, "classifier", {"num_class": 3, "labels": CLASSES, "do_lower_case": True})
    source = tmp_path / "bad.txt"
    source.write_bytes(b"fine\n\xff\xfe broken\n")
    with pytest.raises(SystemExit) as exit_info:
        predict.main([*argv, f"--vocab_file={vocab_file}", f"--input_file={source}"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {source}:2: not UTF-8 (invalid start byte at byte 0)"]
    with pytest.raises(SystemExit):
        predict.main([*argv[:1], "--task=ner", *argv[1:], f"--vocab_file={vocab_file}", f"--input_file={source}"])
    assert "describes a 'classifier' model, not --task=ner" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["classifier", "ner"])
def test_inputs_of_several_lengths_give_the_full_length_results_in_input_order(task, tmp_path, vocab_file, capsys,
                                                                              monkeypatch):
    config = tiny_config(vocab_size=len(VOCAB), seq_length=SEQ)
    if task == "classifier":
        model = BertCLSModel(config, False, len(CLASSES))
        settings = {"num_class": 3, "labels": CLASSES, "do_lower_case": True}
    else:
        model = BertNERModel(config, False, len(TAGS), use_crf=False)
        settings = {"num_class": len(TAGS), "use_crf": False, "tag_scheme": "BIO", "labels": TAGS,
                    "do_lower_case": True}
    argv = fine_tuned(tmp_path, model, task, settings)
    # 6, 3, 4 and 5 tokens with [CLS] and [SEP]: sorted, batches of 2 run at lengths 4 and SEQ.
    token_lists = ([["the", "dog", "ran", "."], ["cat"], ["cat", "sat"], ["a", "dog", "sat"]] if task == "classifier"
                   else [["北", "京", "人", "在"], ["北"], ["上", "海"], ["人", "在", "上"]])
    lines = [(" " if task == "classifier" else "").join(tokens) for tokens in token_lists]
    shapes, run = [], predict.predict
    monkeypatch.setattr(predict, "predict", lambda model, *args, **kwargs: run(
        lambda *inputs: shapes.append(inputs[0].shape) or model(*inputs), *args, **kwargs))
    outputs, _ = run_predict([*argv, f"--vocab_file={vocab_file}", "--bucket_list=[4]"], tmp_path, lines, capsys)
    assert shapes == [(2, 4), (2, SEQ)]
    expected = run_direct(model, token_lists)
    assert [output["line"] for output in outputs] == [1, 2, 3, 4]
    for output, values, text in zip(outputs, expected, lines):
        if task == "classifier":
            assert output["label"] == CLASSES[int(values.argmax())]
            assert output["probability"] == pytest.approx(float(values.max()), rel=1e-5)  # float32 sums' order
        else:
            spans = tags_to_spans([TAGS[i] for i in values[1:1 + len(text)]], "BIO")
            assert output["entities"] == [{"type": kind, "text": text[start:end + 1], "start": start, "end": end}
                                          for kind, start, end in sorted(spans, key=lambda span: span[1])]


def test_a_bad_bucket_list_is_one_line_and_exit_2(tmp_path, vocab_file, capsys):
    model = BertCLSModel(tiny_config(vocab_size=len(VOCAB), seq_length=SEQ), False, len(CLASSES))
    argv = fine_tuned(tmp_path, model, "classifier", {"num_class": 3, "labels": CLASSES, "do_lower_case": True})
    with pytest.raises(SystemExit) as exit_info:
        predict.main([*argv, f"--vocab_file={vocab_file}", "--bucket_list=[0, 4]"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: bucket_list: expected positive whole lengths such as [32, 64], got [0, 4]"]
