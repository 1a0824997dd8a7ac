"""The C++ CPU kernels (src/kernels): each equals the composed MindSpore ops it replaces, forward and gradient,
and float64 NumPy; the whole model with them equals the model without; the library's build and cache; the
fallback to composed ops when no compiler is found.

Shapes are odd on purpose (a last axis of 37, not a multiple of any vector width) so that the kernels'
vector loops and their remainders both run. Tolerances are absolute at the scale of the compared values.
"""

import dataclasses
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from src.bert_model import BertModel, DenseGelu, LayerNorm, without_cpu_kernels
from src.kernel_forms import kernel_forms
from src.kernels import cpu_kernels
from tests.helpers import NO_DROPOUT, encoder_tensors, tiny_config
from tests.numpy_bert import erf
from tests.numpy_bert import gelu as numpy_gelu
from tests.numpy_bert import layer_norm as numpy_layer_norm
from tests.test_kernel_forms import assert_close_to_scale, outputs_and_gradients, twin_nets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = kernel_forms("CPU")
COMPOSED = dataclasses.replace(CPU, layer_norm_kernel=False, bias_gelu_kernel=False)
# The kernels and the composed ops compute the same float32 maths: they differ by rounding, and GELU by
# the error of the kernel's erf (Abramowitz & Stegun 7.1.26, below 1.5e-7), at most this at the values' scale.
KERNEL_TOLERANCE = 1e-6
# Whole models differ by rounding that grows through the layers (as in tests/test_kernel_forms.py).
MODEL_TOLERANCE = 1e-5
EPSILON = 1e-12
ODD_SHAPE = (3, 5, 37)

pytestmark = pytest.mark.skipif(cpu_kernels.library_path() is None, reason="no C++ compiler: kernels not built")


def random_array(shape, seed, scale=1.0, offset=0.0):
    return (offset + np.random.RandomState(seed).normal(0.0, scale, shape)).astype(np.float32)


class ResidualLayerNorm(nn.Cell):
    """LayerNorm(x + residual) as BertOutput calls it, in training mode (the composed form without the kernel)."""

    def __init__(self, kernel):
        super().__init__()
        self.layernorm = LayerNorm(ODD_SHAPE[-1], EPSILON, composed_in_training=True, kernel=kernel)

    def construct(self, x, residual):
        return self.layernorm(x, residual)


def kernel_and_composed(build, inputs):
    """Outputs and gradients (test_kernel_forms' probed loss) of `build(True)` (the kernel) and `build(False)`
    with the same random parameters; returns both results and the parameters."""
    kernel_net, composed_net, params = twin_nets(lambda forms: build(forms == CPU), COMPOSED)
    return outputs_and_gradients(kernel_net, inputs), outputs_and_gradients(composed_net, inputs), params


def assert_kernel_matches(kernel_results, composed_results):
    assert kernel_results.keys() == composed_results.keys()
    for name, expected in composed_results.items():
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(kernel_results[name], expected, rtol=0, atol=KERNEL_TOLERANCE * scale,
                                   err_msg=name)


def test_residual_layer_norm_kernel_equals_the_composed_ops_and_numpy():
    x, residual = random_array(ODD_SHAPE, 1, scale=3.0, offset=2.0), random_array(ODD_SHAPE, 2)
    inputs = [ms.Tensor(x), ms.Tensor(residual)]
    kernel, composed, params = kernel_and_composed(ResidualLayerNorm, inputs)
    assert_kernel_matches(kernel, composed)
    assert set(kernel) == {"output 0", "input 0 grad", "input 1 grad", "layernorm.gamma grad",
                           "layernorm.beta grad"}
    np.testing.assert_array_equal(kernel["input 0 grad"], kernel["input 1 grad"])   # d(x + residual)
    expected = numpy_layer_norm(x.astype(np.float64) + residual, params["layernorm.gamma"],
                                params["layernorm.beta"], EPSILON)
    np.testing.assert_allclose(kernel["output 0"], expected, atol=KERNEL_TOLERANCE * np.abs(expected).max())


def test_layer_norm_kernel_without_residual_equals_the_composed_ops():
    """The embeddings' LayerNorm: no residual, a two-dimensional input."""
    inputs = [ms.Tensor(random_array((7, ODD_SHAPE[-1]), 3, scale=2.0))]
    kernel, composed, _ = kernel_and_composed(
        lambda kernel: LayerNorm(ODD_SHAPE[-1], EPSILON, composed_in_training=True, kernel=kernel), inputs)
    assert_kernel_matches(kernel, composed)


def dense_gelu(kernel):
    return DenseGelu(11, ODD_SHAPE[-1], "normal", dense_op_in_training=True, bias_gelu_kernel=kernel)


def test_bias_gelu_kernel_equals_the_composed_ops_and_numpy():
    x = random_array(ODD_SHAPE[:-1] + (11,), 4, scale=4.0)
    kernel, composed, params = kernel_and_composed(dense_gelu, [ms.Tensor(x)])
    assert_kernel_matches(kernel, composed)
    assert set(kernel) == {"output 0", "input 0 grad", "weight grad", "bias grad"}
    pre_activation = x.astype(np.float64) @ params["weight"].T.astype(np.float64) + params["bias"]
    assert np.abs(pre_activation).max() > 3.0   # the GELU's tails are exercised, not only its middle
    np.testing.assert_allclose(kernel["output 0"], numpy_gelu(pre_activation), atol=KERNEL_TOLERANCE)


def test_bias_gelu_kernel_values_and_slope_over_the_whole_range():
    """Against float64 erf on a fine grid from -10 to 10 (where GELU and its slope saturate), with a zero
    bias: the values directly, the slope Phi(z) + z phi(z) as the gradient of their sum."""
    z = np.linspace(-10.0, 10.0, 4001).reshape(1, -1)
    kernel = cpu_kernels.BiasGeluKernel()
    inputs = (ms.Tensor(z.astype(np.float32)), ms.Tensor(np.zeros(z.shape[-1], np.float32)))
    values = kernel(*inputs).asnumpy()
    slope = ms.grad(SummedOutput(kernel))(*inputs).asnumpy()
    cdf = 0.5 * (1.0 + erf(z / np.sqrt(2.0)))
    density = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    np.testing.assert_allclose(values, numpy_gelu(z), rtol=0, atol=KERNEL_TOLERANCE)
    np.testing.assert_allclose(slope, cdf + z * density, rtol=0, atol=KERNEL_TOLERANCE)


class SummedOutput(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, *inputs):
        return self.net(*inputs).sum()


@pytest.mark.parametrize("use_relative_positions", [False, True])
def test_model_with_kernels_equals_the_model_without(use_relative_positions):
    """The tiny BERT and NEZHA in training mode (dropout off), padded inputs: outputs and every gradient."""
    config = tiny_config(use_relative_positions=use_relative_positions, **NO_DROPOUT)
    inputs = list(encoder_tensors(config).values())   # the harness passes them positionally: BertModel's order
    kernel_net, composed_net, _ = twin_nets(lambda forms: BertModel(config, is_training=False, forms=forms),
                                            COMPOSED)
    kernel_results = outputs_and_gradients(kernel_net, inputs)
    composed_results = outputs_and_gradients(composed_net, inputs)
    assert kernel_results.keys() == composed_results.keys()
    for name, expected in composed_results.items():
        assert_close_to_scale(kernel_results[name], expected, name)
    assert not all(np.array_equal(kernel_results[name], value) for name, value in composed_results.items())


def test_a_kernel_refuses_other_dtypes_instead_of_misreading_them():
    kernel = cpu_kernels.BiasGeluKernel()
    with pytest.raises(RuntimeError, match=r"function\(BiasGelu\) is 1"):
        kernel(ms.Tensor(np.ones((2, 3), np.float16)), ms.Tensor(np.ones(3, np.float16)))


def test_the_model_uses_the_bias_gelu_kernel_for_float32_only():
    """A float16 compute type keeps the composed GELU (the kernel reads float32), the LayerNorm kernel stays."""
    model = BertModel(tiny_config(compute_type="float16"), is_training=True, forms=CPU)
    layer = model.bert_encoder.layers[0]
    assert layer.intermediate.bias_gelu is None
    assert layer.output.layernorm.kernel is not None
    assert BertModel(tiny_config(), is_training=True, forms=CPU).bert_encoder.layers[0].intermediate.bias_gelu


def test_without_cpu_kernels_gives_the_composed_model():
    """What `export_predictor` exports: a model built with the kernels, then stripped of them, is the model
    built without them, to the bit (in inference mode, before its first call: a compiled graph is kept)."""
    config = tiny_config()
    inputs = encoder_tensors(config)

    def build(forms):
        return BertModel(config, is_training=False, forms=forms)

    kernel_net, composed_net, params = twin_nets(build, COMPOSED)
    stripped_net = without_cpu_kernels(build(CPU))
    for param in stripped_net.get_parameters():
        param.set_data(ms.Tensor(params[param.name]))
    kernel_cells = (cpu_kernels.LayerNormKernel, cpu_kernels.BiasGeluKernel)
    assert not [name for name, cell in stripped_net.cells_and_names() if isinstance(cell, kernel_cells)]
    assert [name for name, cell in kernel_net.cells_and_names() if isinstance(cell, kernel_cells)]
    stripped, composed = stripped_net(**inputs)[0].asnumpy(), composed_net(**inputs)[0].asnumpy()
    np.testing.assert_array_equal(stripped, composed)
    assert_close_to_scale(kernel_net(**inputs)[0].asnumpy(), composed)


# ---------------------------------------------------------------- build, cache and fallback

def fake_compiler(tmp_path, fails):
    """A compiler script that answers `--version` with "fake c++ 1.0" and compiles by calling g++, or, if
    `fails`, prints one error line and exits 1; returns its path."""
    compile_line = 'echo "fake: cannot compile" >&2; exit 1' if fails else 'exec g++ "$@"'
    script = tmp_path / "fake-c++"
    script.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "fake c++ 1.0"; exit 0; fi\n'
                      f"{compile_line}\n")
    script.chmod(0o755)
    return str(script)


def test_library_is_built_once_into_the_cache_under_a_key(tmp_path, capsys):
    environ = {"CXX": fake_compiler(tmp_path, fails=False), "BERT_KERNEL_CACHE": str(tmp_path / "cache")}
    path = cpu_kernels.build_library(environ)
    assert os.path.dirname(path) == str(tmp_path / "cache")
    assert os.path.basename(path) == f"bert_cpu_kernels-{cpu_kernels.library_key('fake c++ 1.0')}.so"
    assert os.listdir(tmp_path / "cache") == [os.path.basename(path)]   # no temporary file left
    built = os.stat(path).st_mtime_ns
    assert cpu_kernels.build_library(environ) == path
    assert os.stat(path).st_mtime_ns == built   # found in the cache, not rebuilt
    assert cpu_kernels.library_key("fake c++ 2.0") != cpu_kernels.library_key("fake c++ 1.0")
    assert capsys.readouterr().err == ""


def test_cache_directory_is_the_variable_else_the_user_cache():
    home = os.path.expanduser("~")
    assert cpu_kernels.cache_dir({}) == os.path.join(home, ".cache", "bert_mindspore", "kernels")
    assert cpu_kernels.cache_dir({"XDG_CACHE_HOME": "/c"}) == "/c/bert_mindspore/kernels"
    assert cpu_kernels.cache_dir({"XDG_CACHE_HOME": "/c", "BERT_KERNEL_CACHE": "/k"}) == "/k"


def test_failed_build_says_so_in_one_line_and_leaves_nothing(tmp_path, capsys):
    environ = {"CXX": fake_compiler(tmp_path, fails=True), "BERT_KERNEL_CACHE": str(tmp_path / "cache")}
    assert cpu_kernels.build_library(environ) is None
    assert capsys.readouterr().err.splitlines() == [
        f"building the CPU kernels with {environ['CXX']} failed (fake: cannot compile): "
        "the CPU kernels stay MindSpore's composed ops"]
    assert os.listdir(tmp_path / "cache") == []


def test_without_a_compiler_the_model_uses_the_composed_ops(tmp_path):
    """A fresh process whose PATH holds no compiler (and an empty cache): one line, composed forms, and a
    model that still runs in training mode (whose composed gradients the other tests compare)."""
    script = ("import mindspore as ms; ms.set_device('CPU'); ms.set_context(mode=ms.GRAPH_MODE)\n"
              "from src.kernel_forms import kernel_forms\n"
              "from src.bert_model import BertModel\n"
              "from tests.helpers import encoder_tensors, tiny_config\n"
              "forms = kernel_forms('CPU')\n"
              "print(forms.layer_norm_kernel, forms.bias_gelu_kernel)\n"
              "net = BertModel(tiny_config(), is_training=True)\n"
              "print(*net(**encoder_tensors(tiny_config()))[0].shape)\n")
    environ = {"PATH": str(tmp_path), "HOME": str(tmp_path), "BERT_KERNEL_CACHE": str(tmp_path / "cache"),
               "PYTHONPATH": REPO}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environ, capture_output=True,
                            text=True, check=True)
    config = tiny_config()
    assert result.stdout.split() == ["False", "False", "3", str(config.seq_length), str(config.hidden_size)]
    assert [line for line in result.stderr.splitlines() if "compiler" in line] == [
        "no C++ compiler (g++) found: the CPU kernels stay MindSpore's composed ops"]
