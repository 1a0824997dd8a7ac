"""run_pretrain.py and pretrain_eval.py end to end on a tiny model: learning, exact resume, bad input."""

import json
import signal
import subprocess
import sys
import time

import mindspore as ms
import numpy as np
import pytest

import pretrain_eval
import run_pretrain
from src.bert_for_pre_training import BertPreTraining
from src.checkpoint import load_params_into
from src.create_pretraining_data import main as generate_main
from src.dataset import create_bert_dataset
from src.training import checkpoint_paths, checkpoint_step
from tests.helpers import tiny_config
from tests.test_create_pretraining_data import UNCASED, write_corpus

SEQ = 32
VOCAB = 30522  # the uncased vocabulary the data is made with
KILL_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("pretraining_data")
    corpus = write_corpus(tmp_path / "corpus.txt", documents=20, sentences=12)
    generate_main([f"--input_file={corpus}", f"--output_dir={tmp_path / 'data'}", f"--vocab_file={UNCASED}",
                   f"--max_seq_length={SEQ}", "--max_predictions_per_seq=5", "--dupe_factor=2",
                   "--num_output_shards=2"])
    return str(tmp_path / "data")


def tiny_args(data_dir, output_dir, *extra):
    return [f"--data_dir={data_dir}", "--bert_network=tiny", f"--model.vocab_size={VOCAB}",
            f"--model.seq_length={SEQ}", "--batch_size=8", f"--output_dir={output_dir}", "--log_every_steps=1",
            "--Lamb.warmup_steps=1", *extra]


def metrics(output_dir):
    with open(output_dir / "metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_loss_falls(data_dir, tmp_path):
    run_pretrain.main(tiny_args(data_dir, tmp_path, "--train_steps=40", "--enable_save_ckpt=false",
                                "--optimizer=AdamWeightDecay", "--AdamWeightDecay.learning_rate=5e-3",
                                "--AdamWeightDecay.warmup_steps=4"))
    losses = [record["loss"] for record in metrics(tmp_path)]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < losses[0] - 2.0


def test_resumed_run_repeats_the_uninterrupted_run_exactly(data_dir, tmp_path):
    """Kill after step 3 (its checkpoint is what survives a kill), resume: steps 4-6 are bitwise equal.
    Dropout is off: MindSpore keeps the dropout kernels' random state out of reach of checkpoints."""
    no_dropout = ["--model.hidden_dropout_prob=0.0", "--model.attention_probs_dropout_prob=0.0",
                  "--train_steps=6", "--save_checkpoint_steps=3", "--save_checkpoint_num=5",
                  "--accumulation_steps=2", "--Lamb.warmup_steps=2"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run_pretrain.main(tiny_args(data_dir, whole, *no_dropout))
    run_pretrain.main(tiny_args(data_dir, resumed, *no_dropout,
                                f"--load_checkpoint_path={whole / 'checkpoints' / 'checkpoint_bert_step_3.ckpt'}"))
    expected = [(r["step"], r["loss"], r["lr"]) for r in metrics(whole)][3:]
    assert [(r["step"], r["loss"], r["lr"]) for r in metrics(resumed)] == expected
    final_whole = ms.load_checkpoint(str(whole / "checkpoints" / "checkpoint_bert_step_6.ckpt"))
    final_resumed = ms.load_checkpoint(str(resumed / "checkpoints" / "checkpoint_bert_step_6.ckpt"))
    assert final_whole.keys() == final_resumed.keys()
    for name in final_whole:
        np.testing.assert_array_equal(final_whole[name].asnumpy(), final_resumed[name].asnumpy(), err_msg=name)


def test_checkpoints_are_rotated(data_dir, tmp_path):
    run_pretrain.main(tiny_args(data_dir, tmp_path, "--train_steps=5", "--save_checkpoint_steps=2",
                                "--save_checkpoint_num=2"))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["checkpoint_bert_step_4.ckpt", "checkpoint_bert_step_5.ckpt"]


def test_pretrain_eval_matches_a_host_side_computation(data_dir, tmp_path):
    checkpoint = run_pretrain.main(tiny_args(data_dir, tmp_path, "--train_steps=3"))
    results = pretrain_eval.main(tiny_args(data_dir, tmp_path / "eval", f"--load_checkpoint_path={checkpoint}"))

    net = BertPreTraining(tiny_config(vocab_size=VOCAB, seq_length=SEQ, type_vocab_size=16,
                                      max_position_embeddings=512), is_training=False)
    load_params_into(net, ms.load_checkpoint(checkpoint), checkpoint, ignore_unexpected=True)
    correct = weight = nll = nsp_correct = sequences = replaced_correct = replaced = random_next = 0.0
    dataset = create_bert_dataset(data_dir=data_dir, batch_size=1, do_shuffle=False)
    for row in dataset.create_dict_iterator(output_numpy=True, num_epochs=1):
        mlm, nsp = [o.asnumpy() for o in net(*[ms.Tensor(row[c]) for c in
                                                 ("input_ids", "input_mask", "segment_ids", "masked_lm_positions")])]
        labels, weights = row["masked_lm_ids"].ravel(), row["masked_lm_weights"].ravel()
        correct += (weights * (mlm.argmax(-1) == labels)).sum()
        was_replaced = weights * (row["input_ids"][0, row["masked_lm_positions"][0]] != labels)
        replaced_correct += (was_replaced * (mlm.argmax(-1) == labels)).sum()
        replaced += was_replaced.sum()
        nll -= (weights * mlm[np.arange(len(labels)), labels]).sum()
        weight += weights.sum()
        nsp_correct += (nsp.argmax(-1) == row["next_sentence_labels"].ravel()).sum()
        random_next += row["next_sentence_labels"].sum()
        sequences += 1
    assert results["sequences"] == sequences and results["masked_tokens"] == weight
    assert results["mlm_accuracy"] == pytest.approx(correct / weight, abs=1e-6)
    assert results["mlm_accuracy_replaced"] == pytest.approx(replaced_correct / replaced, abs=1e-6)
    assert 0.8 < replaced / weight < 0.97  # 90% of masked positions are replaced
    assert results["mlm_loss"] == pytest.approx(nll / weight, rel=1e-5)
    assert results["nsp_accuracy"] == pytest.approx(nsp_correct / sequences, abs=1e-6)
    assert results["nsp_majority_accuracy"] == pytest.approx(max(random_next, sequences - random_next) / sequences)
    assert json.loads((tmp_path / "eval" / "eval_results.json").read_text()) == results


def expect_error(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run_pretrain.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and message in error, error


def test_bad_input_stops_before_training(data_dir, tmp_path, capsys):
    args = tiny_args(data_dir, tmp_path)
    expect_error(capsys, args + ["--optimizer=Adagrad"], "optimizer: expected one of Lamb, AdamWeightDecay, Momentum")
    expect_error(capsys, args + ["--accumulation_steps=0"], "accumulation_steps must be at least 1")
    expect_error(capsys, args + ["--data_sink_steps=0"], "data_sink_steps must be at least 1")
    expect_error(capsys, args + ["--enable_data_sink=yes"], "enable_data_sink: expected auto, true or false, got 'yes'")
    expect_error(capsys, args + ["--enable_data_sink=true", "--data_sink_steps=1000"],
                 "data_sink_steps (1000) exceeds the run's")
    expect_error(capsys, args + ["--do_shuffle=yes"], "--do_shuffle: expected true or false, got 'yes'")
    expect_error(capsys, tiny_args("", tmp_path), "data_dir: no data given")
    expect_error(capsys, tiny_args(tmp_path, tmp_path), "no tfrecord files")
    expect_error(capsys, args + ["--model.vocab_size=1000"], "does not fit model.vocab_size 1000")
    expect_error(capsys, args + ["--model.seq_length=64"], "the model's seq_length is 64")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    expect_error(capsys, args + [f"--save_checkpoint_path={blocker / 'ckpt'}"], "lies under")
    assert not list(tmp_path.glob("**/metrics.jsonl"))  # no step was taken


def test_checkpoint_of_another_architecture_is_refused(data_dir, tmp_path, capsys):
    checkpoint = run_pretrain.main(tiny_args(data_dir, tmp_path / "a", "--train_steps=1"))
    expect_error(capsys, tiny_args(data_dir, tmp_path / "b", "--model.num_hidden_layers=1",
                                   f"--load_checkpoint_path={checkpoint}"), "does not match the network: unexpected")


def test_a_fresh_run_does_not_mix_its_checkpoints_with_another_runs(data_dir, tmp_path, capsys):
    run_pretrain.main(tiny_args(data_dir, tmp_path, "--train_steps=2"))
    expect_error(capsys, tiny_args(data_dir, tmp_path, "--train_steps=1"),
                 "already holds checkpoints (checkpoint_bert_step_2.ckpt); resume with --load_checkpoint_path")


def test_encoder_only_weights_initialise_a_run(data_dir, tmp_path, capsys):
    """As from the Hugging Face converter without heads: the encoder is loaded, the heads start fresh."""
    checkpoint = run_pretrain.main(tiny_args(data_dir, tmp_path / "a", "--train_steps=1"))
    encoder = {name: value for name, value in ms.load_checkpoint(checkpoint).items() if name.startswith("bert.")}
    encoder_path = str(tmp_path / "encoder.ckpt")
    ms.save_checkpoint([{"name": name, "data": value} for name, value in encoder.items()], encoder_path)
    final = run_pretrain.main(tiny_args(data_dir, tmp_path / "b", "--train_steps=1", "--Lamb.learning_rate=1e-12",
                                        f"--load_checkpoint_path={encoder_path}"))
    assert "has no mlm_head, nsp_head weights; they start from random initialisation" in capsys.readouterr().out
    trained = ms.load_checkpoint(final)
    name = "bert.bert_encoder.layers.0.output.dense.weight"
    np.testing.assert_allclose(trained[name].asnumpy(), encoder[name].asnumpy(), atol=1e-6)


def test_a_run_killed_mid_training_resumes_from_its_newest_checkpoint(data_dir, tmp_path):
    """kill -9 at an arbitrary moment (possibly mid-save): the newest checkpoint loads, and the
    resumed run repeats the uninterrupted run's losses exactly (dropout off)."""
    args = ["--model.hidden_dropout_prob=0.0", "--model.attention_probs_dropout_prob=0.0", "--train_steps=12",
            "--save_checkpoint_steps=1", "--save_checkpoint_num=2"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_pretrain.main(tiny_args(data_dir, whole, *args))
    process = subprocess.Popen([sys.executable, run_pretrain.__file__, *tiny_args(data_dir, killed, *args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + KILL_TIMEOUT_S
    while time.time() < deadline and not checkpoint_paths(str(killed / "checkpoints")):
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    newest = checkpoint_paths(str(killed / "checkpoints"))[-1]
    step = checkpoint_step(newest)
    assert 1 <= step <= 12
    run_pretrain.main(tiny_args(data_dir, killed, *args, f"--load_checkpoint_path={newest}"))
    assert [(r["step"], r["loss"]) for r in metrics(killed)] == [(r["step"], r["loss"]) for r in metrics(whole)]
