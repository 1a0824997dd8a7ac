"""Kernel forms per device target: the choice, and that the CPU and Ascend/GPU forms compute the same.

The CPU forms include the C++ kernels where they could be built (tests/test_custom_kernels.py compares
them with the composed CPU forms and tests the fallback without a compiler).

The Ascend/GPU forms (MindSpore's fused kernels) also run on CPU, so each is
built here next to the CPU form with the same parameters and compared in
training mode (where the forms differ), outputs and gradients, and against
NumPy where a closed form exists.
"""

import dataclasses
import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.bert_for_pre_training import MaskedLMHead
from src.bert_model import BertModel, dense, gelu, layer_norm, tanh
from src.kernel_forms import KernelForms, kernel_forms
from src.kernels.cpu_kernels import library_path
from tests.helpers import NO_DROPOUT, encoder_tensors, randomize_parameters, tiny_config
from tests.numpy_bert import gelu as numpy_gelu
from tests.numpy_bert import layer_norm as numpy_layer_norm

CPU = kernel_forms("CPU")
DEVICE = kernel_forms("Ascend")
# Two forms of the same float32 maths differ by rounding only: by at most this fraction of each
# compared array's largest magnitude (or absolutely, below 1). Rounding differences in early
# layers reach every gradient entry, small ones included, at the scale of the large ones.
TOLERANCE = 1e-5
# MindSpore's CPU tanh kernel errs by up to ~1e-4 near |x| = 5 (float64 check).
CPU_TANH_KERNEL_ERROR = 1.1e-4


def test_cpu_takes_every_cpu_form_and_devices_the_fused_kernels():
    built = library_path() is not None   # the C++ kernels: where this machine could build them
    assert CPU == KernelForms(composed_training_layer_norm=True, dense_op_in_training=True, composed_tanh=True,
                              transposed_decoder_table=True, crf_while_loops=True, layer_norm_kernel=built,
                              bias_gelu_kernel=built)
    fused = KernelForms(composed_training_layer_norm=False, dense_op_in_training=False, composed_tanh=False,
                        transposed_decoder_table=False, crf_while_loops=False, layer_norm_kernel=False,
                        bias_gelu_kernel=False)
    assert kernel_forms("GPU") == kernel_forms("Ascend") == fused
    assert kernel_forms() == CPU   # the tests run with device_target CPU


def test_unknown_target_is_rejected_by_name():
    with pytest.raises(ValueError, match="'TPU'"):
        kernel_forms("TPU")


class ProbedLoss(nn.Cell):
    """sum over the outputs of (output * a fixed random probe): a scalar whose gradients carry every
    output's (a plain sum would hide LayerNorm's gradient, which sums to zero over the hidden axis)."""

    def __init__(self, net, probes):
        super().__init__(auto_prefix=False)
        self.net = net
        self.probes = probes

    def construct(self, *inputs):
        outputs = self.net(*inputs)
        if not isinstance(outputs, tuple):
            outputs = (outputs,)
        loss = 0.0
        for output, probe in zip(outputs, self.probes):
            loss = loss + (output.astype(ms.float32) * probe).sum()
        return loss


def outputs_and_gradients(net, inputs, seed=0):
    """`net`'s outputs in training mode and the gradients of a probed loss w.r.t. its float inputs and
    parameters, as {name: array}."""
    net.set_train(True)
    outputs = net(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    rng = np.random.RandomState(seed)
    probes = tuple(ms.Tensor(rng.normal(size=output.shape).astype(np.float32)) for output in outputs)
    weights = net.trainable_params()
    input_grads, weight_grads = ops.GradOperation(get_all=True, get_by_list=True)(
        ProbedLoss(net, probes), weights)(*inputs)
    results = {f"output {i}": output.asnumpy() for i, output in enumerate(outputs)}
    results.update({f"input {i} grad": grad.asnumpy() for i, (grad, value) in enumerate(zip(input_grads, inputs))
                    if value.dtype == ms.float32})
    results.update({f"{weight.name} grad": grad.asnumpy() for weight, grad in zip(weights, weight_grads)})
    return results


def twin_nets(build, device_forms):
    """`build(CPU)` and `build(device_forms)` with the same random parameters, which must have the
    same names (checkpoint keys) in both forms; returns the two nets and {name: array}."""
    cpu_net, device_net = build(CPU), build(device_forms)
    params = randomize_parameters(cpu_net, seed=5)
    assert {p.name for p in device_net.get_parameters()} == set(params)
    for param in device_net.get_parameters():
        param.set_data(ms.Tensor(params[param.name]))
    return cpu_net, device_net, params


def assert_forms_agree(build, inputs, device_forms=DEVICE):
    """Twin nets from `build(forms)` give the same outputs and gradients in training mode; returns the
    results of both forms and the parameters."""
    cpu_net, device_net, params = twin_nets(build, device_forms)
    cpu_results = outputs_and_gradients(cpu_net, inputs)
    device_results = outputs_and_gradients(device_net, inputs)
    assert cpu_results.keys() == device_results.keys()
    for name, expected in cpu_results.items():
        assert_close_to_scale(device_results[name], expected, name)
    return cpu_results, device_results, params


def bit_identical(cpu_results, device_results):
    """Whether every result is the same to the bit: False shows that other kernels ran."""
    return all(np.array_equal(device_results[name], value) for name, value in cpu_results.items())


def assert_close_to_scale(actual, expected, name=""):
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE * scale, err_msg=name)


def random_tensor(shape, seed=1, scale=1.0):
    return ms.Tensor(np.random.RandomState(seed).normal(0.0, scale, shape).astype(np.float32))


def test_layer_norm_forms_agree_and_match_numpy():
    config = tiny_config()
    x = random_tensor((3, 5, config.hidden_size), scale=3.0)
    results, device_results, params = assert_forms_agree(lambda forms: layer_norm(config, forms), [x])
    assert not bit_identical(results, device_results)
    expected = numpy_layer_norm(x.asnumpy().astype(np.float64), params["gamma"], params["beta"],
                                config.layer_norm_eps)
    np.testing.assert_allclose(results["output 0"], expected, atol=TOLERANCE)


def test_dense_forms_agree_and_match_numpy():
    config = tiny_config()
    x = random_tensor((3, 5, config.hidden_size))
    # (ops.dense and MatMul + BiasAdd round alike on CPU: the results are even bit-identical.)
    results, _, params = assert_forms_agree(lambda forms: dense(config, config.hidden_size, 7, forms), [x])
    expected = x.asnumpy().astype(np.float64) @ params["weight"].T + params["bias"]   # [3, 5, 7]
    np.testing.assert_allclose(results["output 0"], expected, atol=TOLERANCE)


def test_gelu_is_exact_and_the_fused_primitive_is_the_tanh_approximation():
    """Why every target keeps the composed exact GELU: MindSpore's fused GeLU is not exact."""
    x = np.linspace(-6.0, 6.0, 1201)
    exact = numpy_gelu(x)
    tanh_approximation = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    ours = gelu(ms.Tensor(x.astype(np.float32))).asnumpy()
    fused = ops.GeLU()(ms.Tensor(x.astype(np.float32))).asnumpy()
    np.testing.assert_allclose(ours, exact, atol=1e-6)
    np.testing.assert_allclose(fused, tanh_approximation, atol=1e-6)
    assert np.abs(fused - exact).max() > 4e-4


class Elementwise(nn.Cell):
    """A function as a Cell (as BertModel holds its pooler activation), so that graph mode compiles it
    and differentiates it (TanhGrad for ops.tanh, autodiff of the composition for ours)."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def construct(self, x):
        return self.function(x)


def test_tanh_forms_agree_within_the_cpu_kernels_error():
    x = np.linspace(-12.0, 12.0, 2401)
    forms = {"composed": Elementwise(tanh), "kernel": Elementwise(ops.tanh)}
    values, grads = {}, {}
    for name, cell in forms.items():
        values[name] = cell(ms.Tensor(x.astype(np.float32))).asnumpy()
        grads[name] = ops.grad(cell)(ms.Tensor(x.astype(np.float32))).asnumpy()
    np.testing.assert_allclose(values["composed"], np.tanh(x), atol=2e-6)
    np.testing.assert_allclose(values["kernel"], np.tanh(x), atol=CPU_TANH_KERNEL_ERROR)
    np.testing.assert_allclose(grads["composed"], 1.0 - np.tanh(x) ** 2, atol=4e-6)
    np.testing.assert_allclose(grads["kernel"], grads["composed"], atol=2 * CPU_TANH_KERNEL_ERROR)


def test_masked_lm_head_forms_agree():
    config = tiny_config()
    batch_size, num_predictions = 3, 4
    sequence_output = random_tensor((batch_size, config.seq_length, config.hidden_size), seed=2)
    embedding_table = random_tensor((config.vocab_size, config.hidden_size), seed=3, scale=0.2)
    positions = np.random.RandomState(4).randint(0, config.seq_length, (batch_size, num_predictions))
    inputs = [sequence_output, embedding_table, ms.Tensor(positions.astype(np.int32))]
    results, device_results, _ = assert_forms_agree(lambda forms: MaskedLMHead(config, forms), inputs)
    assert not bit_identical(results, device_results)
    assert results["output 0"].shape == (batch_size * num_predictions, config.vocab_size)
    assert np.abs(results["input 1 grad"]).max() > 0.01   # the decoder's table gradient is compared, not zero


def test_encoder_forms_agree():
    """The whole tiny encoder in training mode (dropout off). With the pooler's tanh in the CPU form
    everything agrees to rounding; with the tanh kernel too only the pooled output may differ, by at
    most that kernel's error (`test_tanh_forms_agree_within_the_cpu_kernels_error`)."""
    config = tiny_config(**NO_DROPOUT)
    inputs = encoder_tensors(config)

    def build(forms):
        return BertModel(config, is_training=False, forms=forms)

    # The harness passes its inputs positionally: in BertModel's order, which `inputs` keeps.
    results, device_results, _ = assert_forms_agree(
        build, list(inputs.values()), device_forms=dataclasses.replace(DEVICE, composed_tanh=True))
    assert not bit_identical(results, device_results)
    cpu_net, device_net, _ = twin_nets(build, DEVICE)
    cpu_net.set_train(True)
    device_net.set_train(True)
    (cpu_sequence, cpu_pooled, _), (device_sequence, device_pooled, _) = cpu_net(**inputs), device_net(**inputs)
    assert_close_to_scale(device_sequence.asnumpy(), cpu_sequence.asnumpy())
    np.testing.assert_allclose(device_pooled.asnumpy(), cpu_pooled.asnumpy(), atol=CPU_TANH_KERNEL_ERROR)
    assert not np.array_equal(device_pooled.asnumpy(), cpu_pooled.asnumpy())   # the tanh kernel ran
