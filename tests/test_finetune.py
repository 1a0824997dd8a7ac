"""Fine-tuning: task heads and losses against NumPy, pretrained-encoder loading, and
run_classifier / run_ner / run_squad end to end on the tiny fixtures of tests/data/finetune."""

import json
import os

import mindspore as ms
import numpy as np
import pytest

import run_classifier
import run_ner
import run_squad
from src.bert_for_pre_training import BertPreTraining
from src.checkpoint import CheckpointMismatchError, load_encoder, save_checkpoint_atomic
from src.create_finetune_data import main as convert_main
from src.task_models import BertCLS, BertCLSModel, BertNER, BertNERModel, BertSquad, TaskPredictor
from tests.helpers import random_inputs, randomize_parameters, tiny_config
from tests.test_create_finetune_data import CHINESE, FIXTURES, UNCASED

SEQ = 32
CHINESE_VOCAB_SIZE = 21128
UNCASED_VOCAB_SIZE = 30522
NUM_TNEWS_LABELS = 15
NUM_CLUENER_BIO_TAGS = 21


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def encoder_outputs(model, input_ids, token_type_ids, input_mask):
    sequence, pooled, _ = model.bert(input_ids=ms.Tensor(input_ids), token_type_ids=ms.Tensor(token_type_ids),
                                     input_mask=ms.Tensor(input_mask))
    return sequence.asnumpy().astype(np.float64), pooled.asnumpy().astype(np.float64)


def head_weights(model):
    return model.dense_1.weight.asnumpy().astype(np.float64), model.dense_1.bias.asnumpy().astype(np.float64)


# ---------------------------------------------------------------- heads and losses (dropout off)

def test_classifier_loss_is_the_cross_entropy_of_a_dense_layer_on_the_pooled_output():
    config = tiny_config()
    network = BertCLS(config, is_training=False, num_labels=3)
    randomize_parameters(network)
    input_ids, token_type_ids, input_mask = random_inputs(config)
    labels = np.array([[2], [0], [1]], np.int32)
    loss = network(*[ms.Tensor(a) for a in (input_ids, input_mask, token_type_ids, labels)]).asnumpy()
    _, pooled = encoder_outputs(network.model, input_ids, token_type_ids, input_mask)
    weight, bias = head_weights(network.model)
    log_probs = log_softmax(pooled @ weight.T + bias)
    assert abs(loss - (-log_probs[np.arange(3), labels[:, 0]].mean())) < 1e-5


def test_ner_loss_averages_over_real_tokens_only():
    config = tiny_config()
    network = BertNER(config, is_training=False, num_labels=5)
    randomize_parameters(network)
    input_ids, token_type_ids, input_mask = random_inputs(config)
    labels = np.random.RandomState(3).randint(0, 5, input_ids.shape).astype(np.int32)
    loss = network(*[ms.Tensor(a) for a in (input_ids, input_mask, token_type_ids, labels)]).asnumpy()
    sequence, _ = encoder_outputs(network.model, input_ids, token_type_ids, input_mask)
    weight, bias = head_weights(network.model)
    nll = -np.take_along_axis(log_softmax(sequence @ weight.T + bias), labels[..., None], -1)[..., 0]
    assert abs(loss - (nll * input_mask).sum() / input_mask.sum()) < 1e-5
    other_padding_labels = np.where(input_mask == 1, labels, (labels + 1) % 5).astype(np.int32)
    loss_again = network(*[ms.Tensor(a) for a in (input_ids, input_mask, token_type_ids, other_padding_labels)])
    assert loss_again.asnumpy() == loss


def test_squad_loss_is_the_mean_of_start_and_end_cross_entropies():
    config = tiny_config()
    network = BertSquad(config, is_training=False)
    randomize_parameters(network)
    input_ids, token_type_ids, input_mask = random_inputs(config)
    starts, ends = np.array([[1], [2], [0]], np.int32), np.array([[3], [4], [0]], np.int32)
    loss = network(*[ms.Tensor(a) for a in (input_ids, input_mask, token_type_ids, starts, ends)]).asnumpy()
    sequence, _ = encoder_outputs(network.model, input_ids, token_type_ids, input_mask)
    weight, bias = head_weights(network.model)
    logits = sequence @ weight.T + bias                          # [B, S, 2]
    rows = np.arange(3)
    start_nll = -log_softmax(logits[..., 0])[rows, starts[:, 0]]
    end_nll = -log_softmax(logits[..., 1])[rows, ends[:, 0]]
    assert abs(loss - (start_nll.mean() + end_nll.mean()) / 2) < 1e-5


def test_predictors_give_probabilities_and_masked_argmax_tags():
    config = tiny_config()
    input_ids, token_type_ids, input_mask = random_inputs(config)
    inputs = [ms.Tensor(a) for a in (input_ids, input_mask, token_type_ids)]
    classifier = BertCLSModel(config, False, 4)
    randomize_parameters(classifier)
    probabilities = TaskPredictor(classifier)(*inputs).asnumpy()
    np.testing.assert_allclose(probabilities, np.exp(classifier(*inputs).asnumpy()), atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
    tagger = BertNERModel(config, False, 5)
    randomize_parameters(tagger)
    tags = TaskPredictor(tagger)(*inputs).asnumpy()
    assert (tags == tagger(*inputs).asnumpy().argmax(-1) * input_mask).all()


def test_the_predictor_keeps_the_task_model_parameter_names():
    model = BertNERModel(tiny_config(), False, 5, use_crf=True)
    names = [p.name for p in model.get_parameters()]
    assert [p.name for p in TaskPredictor(model).get_parameters()] == names
    assert [p.name for p in BertNER(tiny_config(), True, 5, use_crf=True).get_parameters()] == names
    assert {"dense_1.weight", "crf.transitions", "crf.start_transitions", "crf.end_transitions"} <= set(names)


# ---------------------------------------------------------------- starting from a pretrained encoder

def test_pretrained_encoder_loads_and_the_head_keeps_its_initialisation(tmp_path):
    config = tiny_config()
    pretrained = BertPreTraining(config, is_training=True)
    saved = randomize_parameters(pretrained, seed=5)
    save_checkpoint_atomic(pretrained, str(tmp_path / "pretrained.ckpt"))
    network = BertCLS(config, True, 3)
    head_before = network.model.dense_1.weight.asnumpy().copy()
    load_encoder(network, str(tmp_path / "pretrained.ckpt"))
    for param in network.get_parameters():
        if param.name.startswith("bert."):
            np.testing.assert_array_equal(param.asnumpy(), saved[param.name])
    np.testing.assert_array_equal(network.model.dense_1.weight.asnumpy(), head_before)


def test_pretrained_checkpoint_of_another_vocabulary_fails_naming_the_shapes(tmp_path):
    save_checkpoint_atomic(BertPreTraining(tiny_config(vocab_size=60), True), str(tmp_path / "other.ckpt"))
    with pytest.raises(CheckpointMismatchError, match=r"embedding_table: checkpoint \(60, 64\), network \(50, 64\)"):
        load_encoder(BertCLS(tiny_config(), True, 3), str(tmp_path / "other.ckpt"))


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The fixtures converted as a user would: 75% train, 25% dev."""
    root = tmp_path_factory.mktemp("finetune_data")
    jobs = {"tnews": ("tnews.json", CHINESE, ["--label_file=" + os.path.join(FIXTURES, "tnews_labels.json")]),
            "cluener": ("cluener.json", CHINESE, ["--label_file=" + os.path.join(FIXTURES, "cluener_labels.json")]),
            "squad": ("squad.json", UNCASED, ["--doc_stride=64", "--max_query_length=24"])}
    for task, (source, vocab, extra) in jobs.items():
        convert_main.__wrapped__([f"--task={task}", f"--input_file={os.path.join(FIXTURES, source)}",
                                  f"--vocab_file={vocab}", f"--output_dir={root / task}", "--dev_fraction=0.25",
                                  f"--max_seq_length={SEQ if task != 'squad' else 2 * SEQ}", *extra])
    return root


def tiny_job(output_dir, vocab_size, seq_length=SEQ, *extra):
    return ["--bert_network=tiny", f"--model.vocab_size={vocab_size}", f"--model.seq_length={seq_length}",
            f"--output_dir={output_dir}", "--train_batch_size=8", "--eval_batch_size=16", "--log_every_steps=1",
            "--AdamWeightDecay.learning_rate=2e-3", *extra]


def logged_losses(output_dir):
    with open(os.path.join(output_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line)["loss"] for line in f]


def assert_loss_falls(output_dir, window=5):
    losses = logged_losses(output_dir)
    assert np.mean(losses[-window:]) < 0.85 * np.mean(losses[:window]), losses


def test_classifier_trains_saves_and_evaluates_and_eval_only_repeats_it(data, tmp_path):
    tnews = data / "tnews"
    common = [f"--num_class={NUM_TNEWS_LABELS}", f"--eval_data_file_path={tnews / 'dev.tfrecord'}",
              f"--label2id_file_path={tnews / 'label2id.json'}", "--assessment_method=f1"]
    results = run_classifier.main(tiny_job(tmp_path / "run", CHINESE_VOCAB_SIZE, SEQ, *common, "--do_train=true",
                                           "--do_eval=true", "--epoch_num=12", "--AdamWeightDecay.learning_rate=1e-3",
                                           "--model.hidden_dropout_prob=0", "--model.attention_probs_dropout_prob=0",
                                           f"--train_data_file_path={tnews / 'train.tfrecord'}",
                                           f"--schema_file_path={tnews / 'train_schema.json'}"))
    assert_loss_falls(tmp_path / "run")
    for name in ("classifier.ckpt", "classifier.yaml", "loss.png", "eval_results.json"):
        assert (tmp_path / "run" / name).is_file()
    assert sum(results["prediction_counts"]) == results["examples"] == 24
    again = run_classifier.main(tiny_job(tmp_path / "eval", CHINESE_VOCAB_SIZE, SEQ, *common, "--do_eval=true",
                                         f"--model_config={tmp_path / 'run' / 'classifier.yaml'}",
                                         f"--load_finetune_checkpoint_path={tmp_path / 'run' / 'classifier.ckpt'}"))
    assert again["f1"] == results["f1"] and again["prediction_counts"] == results["prediction_counts"]


def test_ner_with_crf_trains_and_writes_the_cluener_submission(data, tmp_path):
    cluener = data / "cluener"
    results = run_ner.main(tiny_job(tmp_path, CHINESE_VOCAB_SIZE, SEQ, "--do_train=true", "--do_eval=true",
                                    "--use_crf=true", "--epoch_num=4", f"--num_class={NUM_CLUENER_BIO_TAGS}",
                                    f"--label2id_file_path={cluener / 'label2id.json'}",
                                    f"--train_data_file_path={cluener / 'train.tfrecord'}",
                                    f"--eval_data_file_path={cluener / 'dev.json'}", f"--vocab_file_path={CHINESE}",
                                    "--assessment_method=clue_benchmark"))
    assert_loss_falls(tmp_path)
    with open(cluener / "dev.json", encoding="utf-8") as f:
        dev_texts = [json.loads(line)["text"] for line in f]
    with open(tmp_path / "cluener_predict.json", encoding="utf-8") as f:
        submission = [json.loads(line) for line in f]
    assert [line["id"] for line in submission] == list(range(len(dev_texts)))
    for line, text in zip(submission, dev_texts):
        for entities in line["label"].values():
            for entity, positions in entities.items():
                assert all(text[start:end + 1] == entity for start, end in positions)
    assert results["tag_scheme"] == "BIO" and results["true_entities"] > 0 and 0.0 <= results["f1"] <= 1.0


def test_ner_softmax_evaluates_from_records(data, tmp_path):
    cluener = data / "cluener"
    results = run_ner.main(tiny_job(tmp_path, CHINESE_VOCAB_SIZE, SEQ, "--do_train=true", "--do_eval=true",
                                    "--epoch_num=2", f"--num_class={NUM_CLUENER_BIO_TAGS}",
                                    f"--label2id_file_path={cluener / 'label2id.json'}",
                                    f"--train_data_file_path={cluener / 'train.tfrecord'}",
                                    f"--eval_data_file_path={cluener / 'dev.tfrecord'}"))
    assert results["sentences"] == 24 and not results["use_crf"]


def test_squad_trains_and_writes_predictions_for_every_question(data, tmp_path):
    squad = data / "squad"
    results = run_squad.main(tiny_job(tmp_path, UNCASED_VOCAB_SIZE, 2 * SEQ, "--do_train=true", "--do_eval=true",
                                      "--epoch_num=3", "--doc_stride=64", "--max_query_length=24",
                                      f"--vocab_file_path={UNCASED}",
                                      f"--train_data_file_path={squad / 'train.tfrecord'}",
                                      f"--eval_data_file_path={squad / 'dev.tfrecord'}",
                                      f"--eval_json_path={squad / 'dev.json'}"))
    assert_loss_falls(tmp_path)
    with open(squad / "dev.json", encoding="utf-8") as f:
        question_ids = {qa["id"] for article in json.load(f)["data"] for paragraph in article["paragraphs"]
                        for qa in paragraph["qas"]}
    with open(tmp_path / "predictions.json", encoding="utf-8") as f:
        assert set(json.load(f)) == question_ids
    assert results["questions"] == len(question_ids) and 0.0 <= results["f1"] <= 100.0


# ---------------------------------------------------------------- bad input

def run_expecting_exit(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


def test_num_class_disagreeing_with_the_label_map(data, tmp_path, capsys):
    tnews = data / "tnews"
    lines = run_expecting_exit(run_classifier.main, tiny_job(
        tmp_path, CHINESE_VOCAB_SIZE, SEQ, "--do_train=true", "--num_class=2",
        f"--train_data_file_path={tnews / 'train.tfrecord'}", f"--label2id_file_path={tnews / 'label2id.json'}"),
        capsys)
    assert lines == [f"error: --num_class=2 disagrees with the 15 labels of {tnews / 'label2id.json'}"]


def test_labels_beyond_num_class(data, tmp_path, capsys):
    lines = run_expecting_exit(run_classifier.main, tiny_job(
        tmp_path, CHINESE_VOCAB_SIZE, SEQ, "--do_train=true", "--num_class=2",
        f"--train_data_file_path={data / 'tnews' / 'train.tfrecord'}"), capsys)
    assert len(lines) == 1 and "does not fit --num_class=2" in lines[0]


@pytest.mark.parametrize("flag, message", [
    ("--AdamWeightDecay.learning_rate=0", "learning_rate must be positive, got 0.0"),
    ("--AdamWeightDecay.weight_decay=-0.1", "AdamWeightDecay.weight_decay must be >= 0, got -0.1"),
    ("--AdamWeightDecay.beta1=1.0", "beta1 must be in (0, 1), got 1.0"),
    ("--AdamWeightDecay.decay_steps=0", "AdamWeightDecay.decay_steps: expected a number of steps >= 1"),
    ("--optimizer=Adam", "optimizer: expected one of Lamb, AdamWeightDecay, Momentum, got 'Adam'"),
])
def test_a_bad_optimizer_setting_is_one_line(data, tmp_path, capsys, flag, message):
    lines = run_expecting_exit(run_classifier.main, tiny_job(
        tmp_path, CHINESE_VOCAB_SIZE, SEQ, "--do_train=true", f"--num_class={NUM_TNEWS_LABELS}",
        f"--train_data_file_path={data / 'tnews' / 'train.tfrecord'}", flag), capsys)
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines


def test_a_checkpoint_of_another_task_is_refused(data, tmp_path, capsys):
    preset_tiny = tiny_config(vocab_size=CHINESE_VOCAB_SIZE, seq_length=SEQ, type_vocab_size=16,
                              max_position_embeddings=512)
    save_checkpoint_atomic(BertCLS(preset_tiny, True, 3), str(tmp_path / "classifier.ckpt"))
    cluener = data / "cluener"
    lines = run_expecting_exit(run_ner.main, tiny_job(
        tmp_path, CHINESE_VOCAB_SIZE, SEQ, "--do_eval=true", f"--num_class={NUM_CLUENER_BIO_TAGS}",
        f"--label2id_file_path={cluener / 'label2id.json'}", f"--eval_data_file_path={cluener / 'dev.tfrecord'}",
        f"--load_finetune_checkpoint_path={tmp_path / 'classifier.ckpt'}"), capsys)
    assert len(lines) == 1 and "shape of dense_1.weight: checkpoint (3, 64), network (21, 64)" in lines[0]


def test_evaluating_without_a_checkpoint_or_anything_to_do(tmp_path, capsys):
    assert run_expecting_exit(run_classifier.main, [f"--output_dir={tmp_path}"], capsys) == [
        "error: nothing to do: set --do_train=true and/or --do_eval=true"]
    assert run_expecting_exit(run_classifier.main, [f"--output_dir={tmp_path}", "--do_eval=true",
                                                    "--eval_data_file_path=x.tfrecord"], capsys) == [
        "error: --load_finetune_checkpoint_path: required to evaluate without training"]
