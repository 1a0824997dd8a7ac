"""BertModel against an independent NumPy implementation, hand-computed values and invariances."""

import math

import mindspore as ms
import numpy as np
import pytest

from src.bert_model import BertConfig, BertModel, PRESETS, RelativePositionEmbeddings
from src.checkpoint import load_checkpoint_into, save_checkpoint_atomic
from tests.helpers import NO_DROPOUT, encoder_inputs, random_inputs, randomize_parameters, run, tiny_config
from tests.numpy_bert import bert_forward, sinusoid_row

# float32 model against the float64 reference; the exp-based tanh and erf GELU
# keep the error at float32 rounding level.
FP32_TOLERANCE = 1e-4


def compare_with_numpy(config, seed=0):
    net = BertModel(config, is_training=False)
    assert_matches_numpy(net, randomize_parameters(net, seed), config)


def assert_matches_numpy(net, params, config):
    """`net`'s outputs on random padded inputs equal the NumPy reference with `params`."""
    inputs = encoder_inputs(config)
    sequence_output, pooled_output, _ = run(net, **inputs)
    expected_sequence, expected_pooled = bert_forward(params, config, **inputs)
    real = inputs["input_mask"].astype(bool)
    assert np.abs(sequence_output[real] - expected_sequence[real]).max() < FP32_TOLERANCE
    assert np.abs(pooled_output - expected_pooled).max() < FP32_TOLERANCE


def test_bert_matches_numpy_reference():
    compare_with_numpy(tiny_config())


@pytest.mark.parametrize("use_relative_positions", [False, True])
def test_training_kernels_match_inference_kernels(use_relative_positions):
    """On CPU Dense and LayerNorm run other kernels in training mode than in inference mode
    (src.kernel_forms): with dropout off, outputs and gradients must agree, and the training
    mode must also match the NumPy reference."""
    config = tiny_config(use_relative_positions=use_relative_positions, **NO_DROPOUT)
    net = BertModel(config, is_training=False)
    params = randomize_parameters(net, seed=4)
    inputs = [ms.Tensor(array) for array in random_inputs(config)]
    weights = net.trainable_params()

    def loss(input_ids, token_type_ids, input_mask):
        sequence_output, pooled_output, _ = net(input_ids=input_ids, token_type_ids=token_type_ids,
                                                input_mask=input_mask)
        return (sequence_output * sequence_output).sum() + pooled_output.sum()

    gradient = ms.value_and_grad(loss, grad_position=None, weights=weights)
    results = {}
    for training in (False, True):
        net.set_train(training)
        value, grads = gradient(*inputs)
        results[training] = [value.asnumpy()] + [grad.asnumpy() for grad in grads]
    for param, inference, trained in zip(["loss"] + [w.name for w in weights], results[False], results[True]):
        np.testing.assert_allclose(trained, inference, rtol=1e-4, atol=1e-5, err_msg=param)
    assert_matches_numpy(net, params, config)   # still in training mode


def test_nezha_functional_matches_numpy_reference():
    # One layer, and k = 3 < S - 1 so that distances are clipped.
    compare_with_numpy(tiny_config(num_hidden_layers=1, use_relative_positions=True, max_relative_position=3))


def test_nezha_learned_matches_numpy_reference():
    compare_with_numpy(tiny_config(use_relative_positions=True, relative_position_type="learned",
                                   max_relative_position=3))


def test_nezha_has_no_absolute_positions_and_functional_has_no_parameters():
    bert_names = {p.name for p in BertModel(tiny_config(), False).get_parameters()}
    nezha_names = {p.name for p in BertModel(tiny_config(use_relative_positions=True), False).get_parameters()}
    assert bert_names - nezha_names == {"bert_embedding_postprocessor.full_position_embedding.embedding_table"}
    assert nezha_names <= bert_names


def test_relative_table_equals_closed_form_sinusoid():
    # head size 4, k = 2, S = 6. Row = clip(j - i, -2, 2) + 2; value at depth d:
    # sin(row / 10000^(d/4)) for even d, cos(row / 10000^((d-1)/4)) for odd d.
    config = tiny_config(hidden_size=8, num_attention_heads=2, use_relative_positions=True,
                         max_relative_position=2)
    table = RelativePositionEmbeddings(config)(6).asnumpy()  # [S, S, H]
    assert table.shape == (6, 6, 4)
    hand_picked = {
        (0, 0, 0): math.sin(2.0),                # distance 0 -> row 2
        (0, 0, 1): math.cos(2.0),
        (2, 3, 0): math.sin(3.0),                # distance +1 -> row 3
        (3, 2, 1): math.cos(1.0),                # distance -1 -> row 1
        (1, 2, 2): math.sin(3.0 / 100.0),        # d = 2: 10000^(2/4) = 100
        (2, 1, 3): math.cos(1.0 / 100.0),
        (0, 5, 0): math.sin(4.0),                # distance +5 clipped to +2 -> row 4
        (5, 0, 2): math.sin(0.0),                # distance -5 clipped to -2 -> row 0
        (5, 0, 3): math.cos(0.0),
    }
    for (i, j, d), value in hand_picked.items():
        assert table[i, j, d] == pytest.approx(value, abs=1e-6), (i, j, d)
    for i in range(6):
        for j in range(6):
            row = min(max(j - i, -2), 2) + 2
            np.testing.assert_allclose(table[i, j], sinusoid_row(row, 4), atol=1e-6)


def test_zoo_nezha_checkpoint_loads_and_matches(tmp_path):
    """A checkpoint under the model zoo's NEZHA names (learned table, k = 16, its
    unused absolute-position table included) loads and gives the zoo's formulas' output."""
    config = tiny_config(use_relative_positions=True, relative_position_type="learned",
                         max_relative_position=16, layer_norm_eps=1e-7)
    rng = np.random.RandomState(3)
    donor = BertModel(config, is_training=False)
    zoo_params = {p.name: rng.normal(0, 0.2, p.shape).astype(np.float32) for p in donor.get_parameters()}
    zoo_params["bert_embedding_postprocessor.full_position_embedding.embedding_table"] = (
        rng.normal(0, 0.2, (512, config.hidden_size)).astype(np.float32))
    path = str(tmp_path / "zoo_nezha.ckpt")
    save_checkpoint_atomic([{"name": "bert." + name, "data": ms.Tensor(value)}
                            for name, value in zoo_params.items()], path)

    net = BertModel(config, is_training=False)
    load_checkpoint_into(net, path, prefix="bert.")
    assert_matches_numpy(net, zoo_params, config)


@pytest.mark.parametrize("use_relative_positions", [False, True])
def test_padding_does_not_change_real_positions(use_relative_positions):
    config = tiny_config(use_relative_positions=use_relative_positions, max_relative_position=3)
    net = BertModel(config, is_training=False)
    randomize_parameters(net)
    input_ids, token_type_ids, input_mask = random_inputs(config)
    changed_ids, changed_types = input_ids.copy(), token_type_ids.copy()
    padding = input_mask == 0
    changed_ids[padding] = np.random.RandomState(7).randint(1, config.vocab_size, padding.sum())
    changed_types[padding] = 1
    before = run(net, input_ids=input_ids, token_type_ids=token_type_ids, input_mask=input_mask)
    after = run(net, input_ids=changed_ids, token_type_ids=changed_types, input_mask=input_mask)
    real = input_mask.astype(bool)
    np.testing.assert_allclose(after[0][real], before[0][real], atol=1e-6)
    np.testing.assert_allclose(after[1], before[1], atol=1e-6)


def test_outputs_shapes_and_tied_embedding_table():
    config = tiny_config()
    net = BertModel(config, is_training=False)
    sequence_output, pooled_output, table = run(net, **encoder_inputs(config))
    assert sequence_output.shape == (3, config.seq_length, config.hidden_size)
    assert pooled_output.shape == (3, config.hidden_size)
    np.testing.assert_array_equal(table, net.bert_embedding_lookup.embedding_table.asnumpy())


def test_the_training_flag_is_the_one_dropout_switch():
    """`is_training` only sets the initial mode; `set_train` switches dropout after it: a model built for
    training, set to eval, is the model built for eval (same weights, deterministic), and set back to
    training it drops different units at every call."""
    config = tiny_config(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    inputs = encoder_inputs(config)
    evaluating = BertModel(config, is_training=False)
    params = randomize_parameters(evaluating)
    training = BertModel(config, is_training=True)
    for param in training.get_parameters():
        param.set_data(ms.Tensor(params[param.name]))
    assert training.training and not evaluating.training

    training.set_train(False)
    expected = run(evaluating, **inputs)[0]
    for _ in range(2):
        np.testing.assert_array_equal(run(training, **inputs)[0], expected)

    training.set_train(True)
    first, second = run(training, **inputs)[0], run(training, **inputs)[0]
    assert np.abs(first - second).max() > 0.1
    assert np.abs(first - expected).max() > 0.1


def test_initialisation_is_truncated_normal():
    config = tiny_config(vocab_size=2000, initializer_range=0.02)
    table = BertModel(config, is_training=False).bert_embedding_lookup.embedding_table.asnumpy()
    assert np.abs(table).max() <= 2 * 0.02
    # std of a normal truncated at +-2 sigma is 0.8796 sigma.
    assert table.std() == pytest.approx(0.8796 * 0.02, rel=0.02)
    assert abs(table.mean()) < 1e-3


def test_one_hot_embeddings_equal_gather():
    config = tiny_config()
    inputs = encoder_inputs(config)
    gather = BertModel(config, is_training=False)
    params = randomize_parameters(gather)
    one_hot = BertModel(config, is_training=False, use_one_hot_embeddings=True)
    for param in one_hot.get_parameters():
        param.set_data(ms.Tensor(params[param.name]))
    np.testing.assert_allclose(run(one_hot, **inputs)[0], run(gather, **inputs)[0], atol=1e-5)


# fp16 matmuls on hidden states normalised to unit scale: a few 1e-3 of error is
# fp16 rounding (10-bit mantissa) accumulated over two layers.
FP16_TOLERANCE = 2e-2


@pytest.mark.parametrize("use_relative_positions", [False, True])
def test_float16_compute_stays_close_to_float32(use_relative_positions):
    config = tiny_config(use_relative_positions=use_relative_positions, max_relative_position=3)
    inputs = encoder_inputs(config)
    full = BertModel(config, is_training=False)
    params = randomize_parameters(full, scale=0.1)
    half = BertModel(BertConfig(**{**config.__dict__, "compute_type": "float16"}), is_training=False)
    for param in half.get_parameters():
        param.set_data(ms.Tensor(params[param.name]))
    expected = run(full, **inputs)
    actual = run(half, **inputs)
    assert actual[0].dtype == np.float32  # `dtype` (outputs) stays float32
    real = inputs["input_mask"].astype(bool)
    assert np.abs(actual[0][real] - expected[0][real]).max() < FP16_TOLERANCE
    assert np.abs(actual[1] - expected[1]).max() < FP16_TOLERANCE


def test_presets_have_the_documented_sizes():
    base = BertConfig(**PRESETS["base"])
    assert (base.seq_length, base.vocab_size, base.hidden_size, base.num_hidden_layers,
            base.num_attention_heads, base.intermediate_size, base.max_position_embeddings,
            base.type_vocab_size, base.initializer_range) == (128, 21136, 768, 12, 12, 3072, 512, 16, 0.02)
    assert (base.hidden_act, base.hidden_dropout_prob, base.attention_probs_dropout_prob) == ("gelu", 0.1, 0.1)
    nezha = BertConfig(**PRESETS["nezha"])
    assert (nezha.num_hidden_layers, nezha.hidden_size, nezha.num_attention_heads,
            nezha.intermediate_size, nezha.use_relative_positions) == (24, 1024, 16, 4096, True)
    large = BertConfig(**PRESETS["large"])
    assert (large.num_hidden_layers, large.hidden_size, large.use_relative_positions) == (24, 1024, False)


@pytest.mark.parametrize("changes, message", [
    (dict(hidden_size=65), "not a multiple of num_attention_heads"),
    (dict(hidden_act="relu"), "hidden_act"),
    (dict(relative_position_type="rotary"), "relative_position_type"),
    (dict(compute_type="float8"), "compute_type"),
    (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob"),
    (dict(seq_length=32), "exceeds max_position_embeddings"),
])
def test_bad_config_is_rejected_with_the_field_named(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**changes)
