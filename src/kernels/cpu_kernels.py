"""Fused C++ kernels for the encoder's elementwise work on CPU: built on first use, called through ops.Custom.

Two kernels, each a forward and a backward (their sources are next to this
file, one concept per file):

    residual_layer_norm.cc   LayerNorm(x + residual) -> y; gradient: dx (= dresidual), dgamma, dbeta
    bias_gelu.cc             gelu(y + bias) (exact, erf) -> out; gradient: dy, dbias

They replace chains of MindSpore CPU kernels that each read and write the
whole activation (README.md, "Performance", has the measurements). The
library is compiled once per source, compiler and flags into a cache directory
outside the repository (`cache_dir`), under a name that hashes all three; it is
written to a temporary name and renamed, so concurrent processes (msrun
workers) never load a half-written file. Without a compiler, or if the build
fails, `library_path` prints one line saying so and returns None, and the model
keeps MindSpore's composed ops (`src.kernel_forms`).

Flags: -O3 with -fopenmp-simd (the kernels' `omp simd` loops, no OpenMP
runtime) and -fno-trapping-math (lets the compiler vectorise branches it
would otherwise keep for floating-point exceptions, which nothing reads). No
-march=native: a cache directory may be shared by machines with different
CPUs (a network home directory, a container image), and a library built for
one would crash on another with an illegal instruction. Instead each kernel
is compiled for AVX-512, AVX2 and baseline x86-64 and the loader picks what
the CPU runs (`CPU_VERSIONS` in aot_params.h).

The kernels are single-threaded: all of their calls together are a small
share of a train step (README.md, "Performance"), so a second thread
would save less than the step's run-to-run spread; not worth a thread pool
beside MindSpore's.
"""

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import mindspore as ms
from mindspore import nn, ops

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("residual_layer_norm.cc", "bias_gelu.cc")
HEADERS = ("aot_params.h",)
FLAGS = ("-O3", "-fopenmp-simd", "-fno-trapping-math", "-shared", "-fPIC", "-std=c++17")
# The compiler (the usual make variable) and where built libraries are kept.
COMPILER_VARIABLE = "CXX"
DEFAULT_COMPILER = "g++"
CACHE_VARIABLE = "BERT_KERNEL_CACHE"
# Otherwise under the user's cache directory (the XDG convention): $XDG_CACHE_HOME, else ~/.cache.
CACHE_SUBDIRECTORY = os.path.join("bert_mindspore", "kernels")
LIBRARY_NAME = "bert_cpu_kernels"
# Characters of the source hash kept in the library's file name.
HASH_CHARS = 16


def cache_dir(environ: Mapping[str, str]) -> str:
    """Where built libraries go: $BERT_KERNEL_CACHE, else $XDG_CACHE_HOME (default ~/.cache)/bert_mindspore/kernels."""
    if environ.get(CACHE_VARIABLE):
        return os.path.expanduser(environ[CACHE_VARIABLE])
    return os.path.join(os.path.expanduser(environ.get("XDG_CACHE_HOME") or "~/.cache"), CACHE_SUBDIRECTORY)


def compiler_identity(compiler: str) -> str | None:
    """`compiler --version`'s first line (part of the cache key), or None if it does not run."""
    try:
        result = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.splitlines()[0] if result.stdout else compiler


def library_key(identity: str) -> str:
    """Hash of the sources, the compiler's identity and the flags: a new key whenever any of them changes."""
    digest = hashlib.sha256("\0".join((identity,) + FLAGS).encode())
    for name in SOURCES + HEADERS:
        with open(os.path.join(SOURCE_DIR, name), "rb") as source:
            digest.update(name.encode() + b"\0" + source.read())
    return digest.hexdigest()[:HASH_CHARS]


def build(compiler: str, output_path: str) -> str | None:
    """Compile the sources into `output_path` atomically; returns the compiler's error text, or None."""
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(output_path), suffix=".so.tmp")
    os.close(handle)
    sources = [os.path.join(SOURCE_DIR, name) for name in SOURCES]
    result = subprocess.run([compiler, *FLAGS, "-o", temporary, *sources], capture_output=True, text=True)
    if result.returncode:
        os.remove(temporary)
        return result.stderr.strip() or f"exit status {result.returncode}"
    os.replace(temporary, output_path)
    return None


def build_library(environ: Mapping[str, str]) -> str | None:
    """Path of the kernel library for the compiler that `environ` names, building it if it is not in the
    cache; None, after one line on stderr, if there is no compiler or the build fails."""
    compiler = environ.get(COMPILER_VARIABLE) or DEFAULT_COMPILER
    identity = shutil.which(compiler) and compiler_identity(compiler)
    if not identity:
        print(f"no C++ compiler ({compiler}) found: the CPU kernels stay MindSpore's composed ops", file=sys.stderr)
        return None
    path = os.path.join(cache_dir(environ), f"{LIBRARY_NAME}-{library_key(identity)}.so")
    if not os.path.exists(path):
        error = build(compiler, path)
        if error:
            print(f"building the CPU kernels with {compiler} failed ({error.splitlines()[0]}): "
                  "the CPU kernels stay MindSpore's composed ops", file=sys.stderr)
            return None
    return path


@functools.cache
def library_path() -> str | None:
    """`build_library` for this process's environment, once per process (so its line prints once)."""
    return build_library(os.environ)


def custom_op(function: str, out_shape: Callable, out_dtype: Callable, bprop: Callable | None = None) -> ops.Custom:
    """ops.Custom calling `function` of the built library (which must exist: see `library_path`)."""
    return ops.Custom(f"{library_path()}:{function}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot",
                      bprop=bprop)


def like_first_input(first: Any, *_: Any) -> Any:
    """out_shape or out_dtype for ops.Custom: one output with the first input's shape or dtype."""
    return first


def layer_norm_outputs() -> tuple[Callable, Callable]:
    """(out_shape, out_dtype) of the LayerNorm forwards: y as x [..., D], the rows' mean and 1/std [...]
    (kept for the gradient)."""
    return (lambda x, *_: (x, x[:-1], x[:-1])), (lambda dtype, *_: (dtype,) * 3)


def gradient_outputs(sums: int) -> tuple[Callable, Callable]:
    """(out_shape, out_dtype) of a gradient kernel: dx as its first input x [..., D], then `sums` sums
    over the rows, each [D] (dgamma and dbeta, or dbias)."""
    return (lambda x, *_: (x,) + (x[-1:],) * sums), (lambda dtype, *_: (dtype,) * (1 + sums))


class LayerNormKernel(nn.Cell):
    """LayerNorm over the last axis of x + residual (or of x alone), forward and gradient in C++.

    Args:
        epsilon (float): added to the variance.

    Inputs:
        x: float32 [..., D].
        residual: float32 [..., D], or None.
        gamma, beta: float32 [D].
    Outputs:
        float32 [..., D].
    """

    def __init__(self, epsilon: float):
        super().__init__()
        self.epsilon = ms.Tensor([epsilon], ms.float32)   # an input of the kernel: [1]
        residual_grad = custom_op("ResidualLayerNormGrad", *gradient_outputs(2))
        plain_grad = custom_op("LayerNormGrad", *gradient_outputs(2))

        def residual_bprop(x, residual, gamma, beta, epsilon, out, dout):
            dh, dgamma, dbeta = residual_grad(x, residual, gamma, out[1], out[2], dout[0])
            return dh, dh, dgamma, dbeta, ops.zeros_like(epsilon)

        def plain_bprop(x, gamma, beta, epsilon, out, dout):
            dx, dgamma, dbeta = plain_grad(x, gamma, out[1], out[2], dout[0])
            return dx, dgamma, dbeta, ops.zeros_like(epsilon)

        self.residual_forward = custom_op("ResidualLayerNorm", *layer_norm_outputs(), residual_bprop)
        self.plain_forward = custom_op("LayerNorm", *layer_norm_outputs(), plain_bprop)

    def construct(self, x: ms.Tensor, residual: ms.Tensor | None, gamma: ms.Tensor, beta: ms.Tensor) -> ms.Tensor:
        if residual is None:
            return self.plain_forward(x, gamma, beta, self.epsilon)[0]
        return self.residual_forward(x, residual, gamma, beta, self.epsilon)[0]


class BiasGeluKernel(nn.Cell):
    """Exact GELU of y + bias, forward and gradient in C++.

    Inputs:
        y: float32 [..., I].
        bias: float32 [I].
    Outputs:
        float32 [..., I].
    """

    def __init__(self):
        super().__init__()
        grad = custom_op("BiasGeluGrad", *gradient_outputs(1))

        def bprop(y, bias, out, dout):
            return grad(y, bias, dout)

        self.forward = custom_op("BiasGelu", like_first_input, like_first_input, bprop)

    def construct(self, y: ms.Tensor, bias: ms.Tensor) -> ms.Tensor:
        return self.forward(y, bias)
