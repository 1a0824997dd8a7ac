"""Learning rate, weight-decay groups and optimizers against hand-computed values and NumPy."""

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from src.config import Config
from src.optimizers import AdamWeightDecay, BertLearningRate, ComposedLamb, apply_decay, build_optimizer

# float32 optimizer steps against the float64 references.
FP32_TOLERANCE = 1e-6

# Large enough that eps, weight decay and the learning rate all move the
# results by far more than FP32_TOLERANCE.
LEARNING_RATE = 0.1
WEIGHT_DECAY = 0.1
EPS = 0.01
BETA1, BETA2 = 0.9, 0.999
# MindSpore holds beta1 and beta2 as float32 tensors, and 1 - float32(0.999)
# is 1.00005e-3, 5e-5 away from 1e-3: enough to show at FP32_TOLERANCE in
# AdamWeightDecay (LAMB's bias correction mostly cancels it). The references
# use the float32 values.
BETA1_FP32, BETA2_FP32 = (float(np.float32(beta)) for beta in (BETA1, BETA2))

# Shapes of the toy parameters; the bias starts at zero, so LAMB's trust
# ratio takes its "norm is 0" branch on the first step.
PARAM_SHAPES = {"dense.weight": (3, 4), "dense.bias": (4,), "layernorm.gamma": (4,)}

OPTIMIZER_CONFIG = {
    "optimizer": "Lamb",
    "Lamb": {"learning_rate": 3.0e-4, "end_learning_rate": 0.0, "power": 2.0,
             "warmup_steps": 100, "weight_decay": 0.01, "eps": 1.0e-8, "beta1": 0.8, "beta2": 0.99,
             "decay_steps": -1},
    "AdamWeightDecay": {"learning_rate": 3.0e-5, "end_learning_rate": 0.0, "power": 5.0,
                        "warmup_steps": 100, "weight_decay": 1.0e-5, "eps": 1.0e-6, "beta1": 0.85,
                        "beta2": 0.995, "decay_steps": -1},
    "Momentum": {"learning_rate": 2.0e-5, "momentum": 0.9},
}


def optimizer_config(name, **section_changes):
    """OPTIMIZER_CONFIG as a `Config` choosing `name`, with some of its section's values changed."""
    values = {key: dict(value) if isinstance(value, dict) else value
              for key, value in OPTIMIZER_CONFIG.items()}
    values["optimizer"] = name
    if name in values:
        values[name].update(section_changes)
    return Config(values)


# --- learning rate -----------------------------------------------------------

@pytest.fixture(scope="module")
def schedule():
    return BertLearningRate(learning_rate=1e-3, end_learning_rate=1e-4, warmup_steps=10,
                            decay_steps=100, power=2.0)


def learning_rate_at(schedule, step):
    lr = schedule(ms.Tensor([step], ms.int32))
    assert lr.dtype == ms.float32 and lr.shape == ()
    return float(lr.asnumpy())


@pytest.mark.parametrize("step, expected", [
    (0, 0.0),          # warmup starts from zero
    (5, 5e-4),         # 1e-3 * 5 / 10
    (9, 9e-4),         # last warmup step
    (10, 8.29e-4),     # (1e-3 - 1e-4) * (1 - 10/100)^2 + 1e-4: decay counts from step 0
    (50, 3.25e-4),     # 9e-4 * 0.5^2 + 1e-4
    (100, 1e-4),       # decay_steps: end_learning_rate
    (150, 1e-4),       # and it stays there
])
def test_learning_rate_hand_computed(schedule, step, expected):
    assert learning_rate_at(schedule, step) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_learning_rate_without_warmup_starts_at_peak():
    schedule = BertLearningRate(1e-3, 1e-4, warmup_steps=0, decay_steps=100, power=2.0)
    assert learning_rate_at(schedule, 0) == pytest.approx(1e-3, rel=1e-6)
    assert learning_rate_at(schedule, 50) == pytest.approx(3.25e-4, rel=1e-6)


@pytest.mark.parametrize("changes, argument", [
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(end_learning_rate=-1e-5), "end_learning_rate"),
    (dict(end_learning_rate=2e-3), "end_learning_rate"),
    (dict(warmup_steps=-1), "warmup_steps"),
    (dict(decay_steps=0), "decay_steps"),
    (dict(power=0.0), "power"),
])
def test_learning_rate_rejects_bad_arguments(changes, argument):
    arguments = dict(learning_rate=1e-3, end_learning_rate=1e-4, warmup_steps=10, decay_steps=100, power=2.0)
    arguments.update(changes)
    with pytest.raises(ValueError, match=f"^{argument} must"):
        BertLearningRate(**arguments)


# --- weight decay groups -----------------------------------------------------

@pytest.mark.parametrize("name, decays", [
    ("bert.bert_encoder.layers.0.output.layernorm.gamma", False),
    ("bert.bert_encoder.layers.0.output.layernorm.beta", False),
    ("bert.bert_embedding_postprocessor.layernorm.gamma", False),
    ("bert.encoder.layer.0.output.LayerNorm.weight", False),
    ("mlm_head.output_bias", False),
    ("x.dense.bias", False),
    ("bert.bert_encoder.layers.0.attention.attention.query_layer.bias", False),
    ("bert.bert_encoder.layers.0.attention.attention.query_layer.weight", True),
    ("bert.bert_encoder.layers.0.intermediate.weight", True),
    ("bert.bert_embedding_lookup.embedding_table", True),
    ("bert.bert_encoder.layers.0.attention.attention.relative_positions.embeddings_table", True),
    ("nsp_head.dense.weight", True),
])
def test_apply_decay(name, decays):
    assert apply_decay(name) is decays


# --- toy network whose gradients are its inputs ------------------------------

class LinearLoss(nn.Cell):
    """loss = sum_i sum(param_i * g_i), so the gradient of param_i is exactly the input g_i."""

    def __init__(self, values):
        super().__init__()
        self.weights = ms.ParameterTuple(ms.Parameter(ms.Tensor(value, ms.float32), name=name)
                                         for name, value in values.items())

    def construct(self, *gradients):
        loss = 0.0
        for weight, gradient in zip(self.weights, gradients):
            loss = loss + (weight * gradient).sum()
        return loss


def initial_values(seed=0):
    """{name: float32 array} for PARAM_SHAPES: random weight, zero bias, gamma near 1."""
    rng = np.random.RandomState(seed)
    return {"dense.weight": rng.normal(0.0, 0.5, PARAM_SHAPES["dense.weight"]).astype(np.float32),
            "dense.bias": np.zeros(PARAM_SHAPES["dense.bias"], np.float32),
            "layernorm.gamma": (1.0 + rng.normal(0.0, 0.1, PARAM_SHAPES["layernorm.gamma"])).astype(np.float32)}


def random_gradients(num_steps, seed=1):
    """One {name: float32 array} of gradients per step."""
    rng = np.random.RandomState(seed)
    return [{name: rng.normal(0.0, 1.0, shape).astype(np.float32) for name, shape in PARAM_SHAPES.items()}
            for _ in range(num_steps)]


def train(net, optimizer, gradients_per_step):
    """Run one training step per gradient dict; returns {name: final value}."""
    step = nn.TrainOneStepCell(net, optimizer)
    for gradients in gradients_per_step:
        step(*(ms.Tensor(gradients[name]) for name in PARAM_SHAPES))
    return {param.name: param.asnumpy() for param in net.weights}


def lamb_reference(values, gradients_per_step, learning_rates, weight_decays):
    """LAMB in float64 NumPy; learning_rates[i] and t = i + 1 apply at step i."""
    params = {name: value.astype(np.float64) for name, value in values.items()}
    m = {name: np.zeros_like(value) for name, value in params.items()}
    v = {name: np.zeros_like(value) for name, value in params.items()}
    for t, (gradients, lr) in enumerate(zip(gradients_per_step, learning_rates), start=1):
        for name, w in params.items():
            g = gradients[name].astype(np.float64)
            m[name] = BETA1_FP32 * m[name] + (1 - BETA1_FP32) * g
            v[name] = BETA2_FP32 * v[name] + (1 - BETA2_FP32) * g * g
            m_hat = m[name] / (1 - BETA1_FP32 ** t)
            v_hat = v[name] / (1 - BETA2_FP32 ** t)
            r = m_hat / (np.sqrt(v_hat) + EPS) + weight_decays[name] * w
            w_norm, r_norm = np.linalg.norm(w), np.linalg.norm(r)
            trust_ratio = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
            params[name] = w - lr * trust_ratio * r
    return params


def adam_weight_decay_reference(values, gradients_per_step, learning_rates, weight_decays):
    """MindSpore's AdamWeightDecay in float64 NumPy: Adam without bias correction, decoupled decay."""
    params = {name: value.astype(np.float64) for name, value in values.items()}
    m = {name: np.zeros_like(value) for name, value in params.items()}
    v = {name: np.zeros_like(value) for name, value in params.items()}
    for gradients, lr in zip(gradients_per_step, learning_rates):
        for name, w in params.items():
            g = gradients[name].astype(np.float64)
            m[name] = BETA1_FP32 * m[name] + (1 - BETA1_FP32) * g
            v[name] = BETA2_FP32 * v[name] + (1 - BETA2_FP32) * g * g
            params[name] = w - lr * (m[name] / (np.sqrt(v[name]) + EPS) + weight_decays[name] * w)
    return params


def assert_close(actual, expected):
    assert actual.keys() == expected.keys()
    for name in actual:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=FP32_TOLERANCE, err_msg=name)


# --- ComposedLamb ------------------------------------------------------------

def test_composed_lamb_groups_and_schedule_match_numpy():
    values, gradients = initial_values(), random_gradients(3)
    net = LinearLoss(values)
    groups = [{"params": [net.weights[0]], "weight_decay": WEIGHT_DECAY},
              {"params": [net.weights[1], net.weights[2]]},
              {"order_params": list(net.weights)}]
    # No warmup, so every step moves the weights; lr is read before the
    # step count is incremented: 0.1, 0.09, 0.08.
    schedule = BertLearningRate(LEARNING_RATE, 0.0, warmup_steps=0, decay_steps=10, power=1.0)
    optimizer = ComposedLamb(groups, learning_rate=schedule, beta1=BETA1, beta2=BETA2, eps=EPS)
    expected = lamb_reference(values, gradients, [0.1, 0.09, 0.08],
                              {"dense.weight": WEIGHT_DECAY, "dense.bias": 0.0, "layernorm.gamma": 0.0})
    assert_close(train(net, optimizer, gradients), expected)
    assert int(optimizer.global_step.asnumpy()[0]) == 3


def test_composed_lamb_without_groups_decays_all_but_beta_and_gamma():
    values, gradients = initial_values(), random_gradients(3)
    net = LinearLoss(values)
    optimizer = ComposedLamb(net.trainable_params(), learning_rate=LEARNING_RATE, beta1=BETA1, beta2=BETA2,
                             eps=EPS, weight_decay=WEIGHT_DECAY)
    expected = lamb_reference(values, gradients, [LEARNING_RATE] * 3,
                              {"dense.weight": WEIGHT_DECAY, "dense.bias": WEIGHT_DECAY, "layernorm.gamma": 0.0})
    assert_close(train(net, optimizer, gradients), expected)


def test_composed_lamb_state_is_named_like_nn_lamb():
    net = LinearLoss(initial_values())
    composed = ComposedLamb(net.trainable_params(), learning_rate=LEARNING_RATE)
    fused = nn.Lamb(net.trainable_params(), learning_rate=LEARNING_RATE)
    names = sorted(param.name for param in composed.get_parameters())
    assert names == sorted(param.name for param in fused.get_parameters())
    assert "lamb_m.dense.weight" in names and "lamb_v.layernorm.gamma" in names


@pytest.mark.parametrize("changes, argument", [
    (dict(beta1=1.0), "beta1"), (dict(beta2=0.0), "beta2"), (dict(eps=0.0), "eps"),
])
def test_composed_lamb_rejects_bad_arguments(changes, argument):
    net = LinearLoss(initial_values())
    with pytest.raises(ValueError, match=f"^{argument} must"):
        ComposedLamb(net.trainable_params(), learning_rate=LEARNING_RATE, **changes)


# --- AdamWeightDecay -----------------------------------------------------------

def adam_weight_decay_groups(net):
    """Weight decay on the weight only; the learning rate as a schedule, as build_optimizer passes it."""
    groups = [{"params": [net.weights[0]], "weight_decay": WEIGHT_DECAY},
              {"params": [net.weights[1], net.weights[2]]},
              {"order_params": list(net.weights)}]
    # lr(step) = 0.1 * (1 - step / 4) at steps 0, 1, 2: 0.1, 0.075, 0.05.
    return groups, BertLearningRate(LEARNING_RATE, 0.0, warmup_steps=0, decay_steps=4, power=1.0)


def test_adam_weight_decay_groups_and_schedule_match_numpy():
    values, gradients = initial_values(), random_gradients(3)
    net = LinearLoss(values)
    groups, schedule = adam_weight_decay_groups(net)
    optimizer = AdamWeightDecay(groups, learning_rate=schedule, beta1=BETA1, beta2=BETA2, eps=EPS)
    expected = adam_weight_decay_reference(values, gradients, [0.1, 0.075, 0.05],
                                           {"dense.weight": WEIGHT_DECAY, "dense.bias": 0.0, "layernorm.gamma": 0.0})
    assert_close(train(net, optimizer, gradients), expected)
    assert int(optimizer.global_step.asnumpy()[0]) == 3


def test_adam_weight_decay_equals_the_deprecated_mindspore_class():
    """Same groups, schedule and gradients: the same weights and the same named state as nn.AdamWeightDecay."""
    values, gradients = initial_values(), random_gradients(3)
    results = {}
    for cls in (AdamWeightDecay, nn.AdamWeightDecay):
        net = LinearLoss(values)
        groups, schedule = adam_weight_decay_groups(net)
        optimizer = cls(groups, learning_rate=schedule, beta1=BETA1, beta2=BETA2, eps=EPS)
        weights = train(net, optimizer, gradients)
        state = {param.name: param.asnumpy() for param in optimizer.get_parameters()}
        results[cls] = weights, state
    ours, theirs = results[AdamWeightDecay], results[nn.AdamWeightDecay]
    assert_close(ours[0], theirs[0])
    assert "adam_m.dense.weight" in ours[1] and ours[1].keys() == theirs[1].keys()
    assert_close(ours[1], theirs[1])


# --- build_optimizer ---------------------------------------------------------

def named_parameters(names):
    return [ms.Parameter(ms.Tensor(np.ones(2, np.float32)), name=name) for name in names]


@pytest.mark.parametrize("name, device_target, expected_class", [
    ("Lamb", "CPU", ComposedLamb),
    ("Lamb", "GPU", nn.Lamb),
    ("Lamb", "Ascend", nn.Lamb),
    ("AdamWeightDecay", "CPU", AdamWeightDecay),
    ("AdamWeightDecay", "Ascend", AdamWeightDecay),
    ("Momentum", "CPU", nn.SGD),
])
def test_build_optimizer_class(name, device_target, expected_class):
    optimizer = build_optimizer(optimizer_config(name), named_parameters(["dense.weight"]), 1000, device_target)
    assert type(optimizer) is expected_class


@pytest.mark.parametrize("name, device_target", [("Lamb", "CPU"), ("Lamb", "GPU"), ("AdamWeightDecay", "CPU")])
def test_build_optimizer_groups_by_name_and_takes_the_section(name, device_target):
    names = ["embedding_table", "layernorm.gamma", "dense.weight", "dense.bias", "mlm_head.output_bias",
             "layernorm.beta", "output.weight"]
    optimizer = build_optimizer(optimizer_config(name), named_parameters(names), 1000, device_target)
    section = OPTIMIZER_CONFIG[name]
    # order_params keeps the network's order.
    assert [param.name for param in optimizer.parameters] == names
    decays = {param.name: wd for param, wd in zip(optimizer.parameters, optimizer.group_weight_decay)}
    assert decays == {"embedding_table": section["weight_decay"], "layernorm.gamma": 0.0,
                      "dense.weight": section["weight_decay"], "dense.bias": 0.0,
                      "mlm_head.output_bias": 0.0, "layernorm.beta": 0.0,
                      "output.weight": section["weight_decay"]}
    schedule = optimizer.learning_rate
    assert isinstance(schedule, BertLearningRate)
    assert (schedule.learning_rate, schedule.end_learning_rate, schedule.warmup_steps, schedule.decay_steps,
            schedule.power) == (section["learning_rate"], section["end_learning_rate"],
                                section["warmup_steps"], 1000, section["power"])
    for key in ("eps", "beta1", "beta2"):
        assert getattr(optimizer, key).asnumpy().item() == pytest.approx(section[key], rel=1e-6), key


@pytest.mark.parametrize("name", ["Lamb", "AdamWeightDecay"])
@pytest.mark.parametrize("decay_steps, expected", [(-1, 1000), (300, 300), (5000, 5000)])
def test_decay_steps_of_the_section_or_the_run(name, decay_steps, expected):
    optimizer = build_optimizer(optimizer_config(name, decay_steps=decay_steps), named_parameters(["w"]), 1000,
                                "CPU")
    assert optimizer.learning_rate.decay_steps == expected
    # After warmup (100 steps) the rate reaches end_learning_rate (0) at decay_steps, not at the run's end.
    if expected < 1000:
        assert learning_rate_at(optimizer.learning_rate, expected) == 0.0
        assert learning_rate_at(optimizer.learning_rate, expected - 1) > 0.0


@pytest.mark.parametrize("decay_steps", [0, -2])
def test_bad_decay_steps_are_refused(decay_steps):
    with pytest.raises(ValueError, match=rf"^Lamb.decay_steps: expected a number of steps >= 1, or -1 for the "
                                         rf"run's 1000 steps, got {decay_steps}$"):
        build_optimizer(optimizer_config("Lamb", decay_steps=decay_steps), named_parameters(["w"]), 1000, "CPU")


def test_build_optimizer_with_only_decayed_parameters():
    optimizer = build_optimizer(optimizer_config("Lamb"), named_parameters(["a.weight", "b.weight"]), 1000, "CPU")
    assert optimizer.group_weight_decay == [0.01, 0.01]


def momentum_reference(values, gradients_per_step, lr, momentum):
    """Heavy-ball momentum in float64 NumPy: v = momentum * v + g; w = w - lr * v."""
    params = {name: value.astype(np.float64) for name, value in values.items()}
    velocity = {name: np.zeros_like(value) for name, value in params.items()}
    for gradients in gradients_per_step:
        for name in params:
            velocity[name] = momentum * velocity[name] + gradients[name]
            params[name] = params[name] - lr * velocity[name]
    return params


def test_built_momentum_matches_numpy_and_the_deprecated_class():
    values, gradients = initial_values(), random_gradients(3)
    cfg = optimizer_config("Momentum", learning_rate=LEARNING_RATE, momentum=0.9)
    net = LinearLoss(values)
    built = train(net, build_optimizer(cfg, net.trainable_params(), 1000, "CPU"), gradients)
    # float32 momentum: 0.9 is 0.89999998 (a 2e-8 difference, far below the tolerance).
    assert_close(built, momentum_reference(values, gradients, LEARNING_RATE, 0.9))
    net = LinearLoss(values)
    assert_close(built, train(net, nn.Momentum(net.trainable_params(), LEARNING_RATE, 0.9), gradients))


def test_build_optimizer_rejects_unknown_names():
    params = named_parameters(["dense.weight"])
    with pytest.raises(ValueError) as error:
        build_optimizer(optimizer_config("Adam"), params, 1000, "CPU")
    assert str(error.value) == "optimizer: expected one of Lamb, AdamWeightDecay, Momentum, got 'Adam'"
    with pytest.raises(ValueError, match="^device_target: expected one of Ascend, GPU, CPU, got 'cpu'$"):
        build_optimizer(optimizer_config("Lamb"), params, 1000, "cpu")


def test_built_adam_weight_decay_matches_numpy():
    values, gradients = initial_values(), random_gradients(2)
    net = LinearLoss(values)
    cfg = optimizer_config("AdamWeightDecay", learning_rate=LEARNING_RATE, end_learning_rate=0.0, power=1.0,
                           warmup_steps=0, weight_decay=WEIGHT_DECAY, eps=EPS, beta1=BETA1, beta2=BETA2)
    optimizer = build_optimizer(cfg, net.trainable_params(), 4, "CPU")
    # lr(step) = 0.1 * (1 - step / 4) at steps 0 and 1.
    expected = adam_weight_decay_reference(values, gradients, [0.1, 0.075],
                                           {"dense.weight": WEIGHT_DECAY, "dense.bias": 0.0,
                                            "layernorm.gamma": 0.0})
    assert_close(train(net, optimizer, gradients), expected)


def test_warmup_longer_than_the_run_is_refused():
    with pytest.raises(ValueError, match=r"^Lamb.warmup_steps \(100\) exceeds the 50 training steps"):
        build_optimizer(optimizer_config("Lamb"), named_parameters(["dense.weight"]), 50, "CPU")
