"""Pretraining heads, loss and train cell against NumPy and closed forms."""

import dataclasses
import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import amp, nn

from src.bert_for_pre_training import BertNetworkWithLoss, BertPreTraining
from src.optimizers import BertLearningRate
from src.train_cell import ALL_FINITE, INF_NAN, BertTrainOneStepCell, overflow_check_for
from src.training import TrainingError, TrainingPlan, learning_rate, train
from tests.helpers import NO_DROPOUT, randomize_parameters, tiny_config
from tests.numpy_bert import bert_forward, gelu, layer_norm

PREDICTIONS = 3


def pretraining_batch(config, batch_size=4, seed=0, weights=None):
    """The seven pretraining columns for `config`, as NumPy arrays."""
    rng = np.random.RandomState(seed)
    seq = config.seq_length
    input_ids = rng.randint(1, config.vocab_size, (batch_size, seq)).astype(np.int32)
    input_mask = np.ones((batch_size, seq), np.int32)
    input_mask[0, seq - 2:] = 0
    token_type_ids = (np.arange(seq)[None] >= seq // 2).astype(np.int32).repeat(batch_size, 0)
    next_sentence_labels = rng.randint(0, 2, (batch_size, 1)).astype(np.int32)
    positions = np.stack([rng.choice(np.arange(1, seq - 2), PREDICTIONS, replace=False) for _ in range(batch_size)])
    masked_ids = rng.randint(1, config.vocab_size, (batch_size, PREDICTIONS)).astype(np.int32)
    if weights is None:
        weights = np.ones((batch_size, PREDICTIONS), np.float32)
        weights[1, -1] = 0.0  # a padded prediction slot
    return [input_ids, input_mask, token_type_ids, next_sentence_labels, positions.astype(np.int32),
            masked_ids, weights]


def numpy_pretraining_loss(params, config, batch):
    """Google BERT's loss, from the independent NumPy encoder and the heads' formulas."""
    input_ids, input_mask, token_type_ids, nsp_labels, positions, masked_ids, weights = batch
    encoder = {name[len("bert."):]: value for name, value in params.items() if name.startswith("bert.")}
    sequence, pooled = bert_forward(encoder, config, input_ids, token_type_ids, input_mask)
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    gathered = np.stack([sequence[b, positions[b]] for b in range(len(positions))]).reshape(-1, config.hidden_size)
    hidden = gelu(gathered @ p["mlm_head.dense.weight"].T + p["mlm_head.dense.bias"])
    hidden = layer_norm(hidden, p["mlm_head.layernorm.gamma"], p["mlm_head.layernorm.beta"], config.layer_norm_eps)
    logits = hidden @ p["bert.bert_embedding_lookup.embedding_table"].T + p["mlm_head.output_bias"]
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    nll = -log_probs[np.arange(len(log_probs)), masked_ids.reshape(-1)]
    w = weights.reshape(-1)
    mlm = (nll * w).sum() / (w.sum() + 1e-5)
    nsp_logits = pooled @ p["nsp_head.dense.weight"].T + p["nsp_head.dense.bias"]
    nsp_log_probs = nsp_logits - np.log(np.exp(nsp_logits).sum(-1, keepdims=True))
    nsp = -nsp_log_probs[np.arange(len(nsp_labels)), nsp_labels.reshape(-1)].mean()
    return mlm + nsp


def test_loss_equals_numpy_formula():
    config = tiny_config()
    network = BertNetworkWithLoss(config, is_training=False)
    params = randomize_parameters(network, scale=0.1)
    batch = pretraining_batch(config)
    loss = float(network(*[ms.Tensor(a) for a in batch]).asnumpy())
    assert loss == pytest.approx(numpy_pretraining_loss(params, config, batch), abs=1e-4)


def test_parameter_names_match_the_converter():
    names = {p.name for p in BertPreTraining(tiny_config(), False).get_parameters()}
    assert {"bert.bert_embedding_lookup.embedding_table", "mlm_head.dense.weight", "mlm_head.layernorm.gamma",
            "mlm_head.output_bias", "nsp_head.dense.weight", "nsp_head.dense.bias"} <= names
    assert names == {p.name for p in BertNetworkWithLoss(tiny_config(), False).get_parameters()}


def make_train_cell(config, optimizer="adam", seed=0, **cell_args):
    """(network, optimizer, train cell) of the pretraining loss in training mode, without dropout, so that
    the steps it takes are deterministic."""
    network = BertNetworkWithLoss(dataclasses.replace(config, **NO_DROPOUT), is_training=True)
    randomize_parameters(network, seed=seed, scale=0.1)
    if optimizer == "adam":
        opt = nn.AdamWeightDecay(network.trainable_params(), learning_rate=1e-2)
    else:  # plain gradient descent: the update is -lr * (clipped) gradient
        opt = nn.Momentum(network.trainable_params(), learning_rate=1.0, momentum=0.0)
    cell = BertTrainOneStepCell(network, opt, **cell_args)
    cell.set_train(True)
    return network, opt, cell


def snapshot(cell):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def test_overflow_skips_the_step_and_halves_the_scale_then_the_scale_grows_back():
    config = tiny_config()
    update = nn.DynamicLossScaleUpdateCell(loss_scale_value=2.0 ** 10, scale_factor=2, scale_window=2)
    network, _, cell = make_train_cell(config, scale_update_cell=update)
    batch = [ms.Tensor(a) for a in pretraining_batch(config)]
    huge = np.finfo(np.float32).max  # loss * scale overflows: every gradient is inf
    cell.loss_scale.set_data(ms.Tensor(huge, ms.float32))
    before = snapshot(cell)
    _, overflow, scale = cell(*batch)
    assert bool(overflow.asnumpy()) and float(scale.asnumpy()) == huge
    after = snapshot(cell)
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    # Weights and optimizer moments untouched; only the loss-scale bookkeeping moved.
    assert changed <= {"loss_scale", "current_iterator_step", "last_overflow_iterator_step", "overflow_steps_at_floor"}
    assert float(cell.loss_scale.asnumpy()) == huge / 2

    cell.loss_scale.set_data(ms.Tensor(8.0, ms.float32))
    scales = [float(cell(*batch)[2].asnumpy()) for _ in range(4)]
    assert scales == [8.0, 8.0, 16.0, 16.0]  # doubled after scale_window = 2 clean steps
    assert float(cell.loss_scale.asnumpy()) == 32.0
    assert not np.array_equal(snapshot(cell)["bert.dense.weight"], after["bert.dense.weight"])


def test_accumulation_equals_one_step_on_the_concatenated_batch():
    config = tiny_config()
    batch = pretraining_batch(config, batch_size=4, weights=np.ones((4, PREDICTIONS), np.float32))
    _, _, whole = make_train_cell(config)
    loss_whole = float(whole(*[ms.Tensor(a) for a in batch])[0].asnumpy())
    _, _, accumulating = make_train_cell(config, accumulation_steps=2)
    first = accumulating(*[ms.Tensor(a[:2]) for a in batch])
    weights_between = snapshot(accumulating)
    second = accumulating(*[ms.Tensor(a[2:]) for a in batch])
    assert not bool(first[1].asnumpy())
    initial = snapshot(make_train_cell(config)[2])
    assert np.array_equal(weights_between["bert.dense.weight"], initial["bert.dense.weight"])  # no update yet
    assert float(second[0].asnumpy()) == pytest.approx(loss_whole, abs=1e-5)
    expected, actual = snapshot(whole), snapshot(accumulating)
    for name in expected:
        if name in actual and not name.startswith("accumulated"):
            np.testing.assert_allclose(actual[name], expected[name], atol=1e-5, err_msg=name)


@pytest.mark.parametrize("enable_global_norm", [True, False])
def test_gradient_clipping(enable_global_norm):
    config = tiny_config()
    clip = 1e-3
    network, _, cell = make_train_cell(config, optimizer="sgd", clip_norm=clip, enable_global_norm=enable_global_norm)
    before = {p.name: p.asnumpy().copy() for p in network.trainable_params()}
    cell(*[ms.Tensor(a) for a in pretraining_batch(config)])
    deltas = [p.asnumpy() - before[p.name] for p in network.trainable_params()]
    norms = np.array([np.linalg.norm(d) for d in deltas])
    if enable_global_norm:  # the whole update has norm clip (the raw gradient is far larger)
        assert math.sqrt((norms ** 2).sum()) == pytest.approx(clip, rel=1e-3)
    else:  # each tensor's update has norm at most clip; large ones exactly clip
        assert norms.max() == pytest.approx(clip, rel=1e-3) and (norms <= clip * (1 + 1e-3)).all()
        assert (np.abs(norms - clip) < clip * 1e-3).sum() > len(norms) // 2


def test_overflow_check_per_target():
    """Saturating fp16 on Ascend hides overflows from an inf/NaN test: MindSpore's all_finite there and on GPU."""
    assert [overflow_check_for(target) for target in ("Ascend", "GPU", "CPU")] == [ALL_FINITE, ALL_FINITE, INF_NAN]


class _LinearLoss(nn.Cell):
    """loss = sum(w * x): the gradient of w is x (times the loss scale), so x chooses the gradients."""

    def __init__(self, size):
        super().__init__()
        self.w = ms.Parameter(ms.Tensor(np.full(size, 0.5, np.float32)), name="w")

    def construct(self, x):
        return (self.w * x).sum()


def linear_train_cell(overflow_check, scale_update_cell=None, enable_global_norm=True):
    network = _LinearLoss(3)
    optimizer = nn.Momentum(network.trainable_params(), learning_rate=0.1, momentum=0.0)
    cell = BertTrainOneStepCell(network, optimizer, scale_update_cell, enable_global_norm=enable_global_norm,
                                overflow_check=overflow_check)
    cell.set_train(True)
    return network, cell


@pytest.mark.parametrize("enable_global_norm", [True, False])
def test_both_overflow_checks_flag_the_same_gradients(enable_global_norm):
    """all_finite's non-Ascend path runs on CPU: it and the sum-of-squares test agree on finite, inf and NaN."""
    gradients = {"finite": [1.0, -2.0, 3.0], "inf": [1.0, np.inf, 3.0], "-inf": [-np.inf, 0.0, 1.0],
                 "nan": [1.0, 2.0, np.nan], "huge": [3e38, 3e38, 1.0]}  # huge: finite, its square is not
    for check in (ALL_FINITE, INF_NAN):
        network, cell = linear_train_cell(check, enable_global_norm=enable_global_norm)
        flags = {}
        for name, x in gradients.items():
            before = network.w.asnumpy().copy()
            flags[name] = bool(cell(ms.Tensor(np.array(x, np.float32)))[1].asnumpy())
            assert np.array_equal(network.w.asnumpy(), before) == flags[name], (check, name)  # skipped iff flagged
        assert flags == {"finite": False, "inf": True, "-inf": True, "nan": True, "huge": True}, check
    for x in gradients.values():  # and all_finite alone (the part Ascend relies on) agrees with NumPy
        assert bool(amp.all_finite((ms.Tensor(np.array(x, np.float32)),)).asnumpy()) == np.isfinite(x).all()


def test_overflowing_steps_at_the_minimum_scale_are_counted_on_the_device():
    """The count grows only while the scale is at its floor (1), and a finite step resets it."""
    _, cell = linear_train_cell(INF_NAN, nn.DynamicLossScaleUpdateCell(4.0, 2, 1000))
    nan, one = ms.Tensor(np.full(3, np.nan, np.float32)), ms.Tensor(np.ones(3, np.float32))
    counts = []
    for x in (nan, nan, nan, nan, one, nan):
        scale = float(cell(x)[2].asnumpy())
        counts.append((scale, int(cell.overflow_steps_at_floor.asnumpy())))
    assert counts == [(4.0, 0), (2.0, 0), (1.0, 1), (1.0, 2), (1.0, 0), (1.0, 1)]


def test_persistent_non_finite_gradients_stop_the_run_at_a_read_point():
    """The streak reaches 5 at step 5; the host reads the cell's count at log steps (4, 8), so the run stops
    at step 8. The loss stays finite (3e38): only the gradients' sum of squares overflows."""
    import mindspore.dataset as ds
    huge = np.tile(np.array([3e38, 3e38, 1.0], np.float32), (50, 1))
    dataset = ds.NumpySlicesDataset({"x": huge}, shuffle=False).batch(1)
    plan = TrainingPlan(total_steps=50, micro_batches_per_step=1, samples_per_micro_batch=1, steps_per_epoch=50,
                        log_every_steps=4, save_checkpoint_steps=0, save_checkpoint_num=1, checkpoint_dir="",
                        output_dir="", max_overflow_steps_at_floor=5)
    with pytest.raises(TrainingError, match="not finite for 8 consecutive steps at the minimum loss scale "
                                            r"\(step 8\); last good checkpoint: none written"):
        train(linear_train_cell(INF_NAN)[1], dataset, plan)


@pytest.mark.parametrize("warmup_steps", [0, 4])
def test_logged_learning_rate_equals_the_schedules_graph(warmup_steps):
    schedule = BertLearningRate(1e-3, 1e-5, warmup_steps, decay_steps=10, power=2.0)
    optimizer = nn.AdamWeightDecay([ms.Parameter(ms.Tensor(np.zeros(1, np.float32)), name="w")], schedule)
    for step in (0, 1, 3, 4, 5, 9, 10, 12):
        graph = float(schedule(ms.Tensor(step, ms.int32)).asnumpy())
        assert learning_rate(optimizer, step) == pytest.approx(graph, rel=1e-6, abs=1e-12), step
