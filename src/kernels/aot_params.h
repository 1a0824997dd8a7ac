// MindSpore's calling convention for ops.Custom(func_type="aot") kernels, read in one place.
//
// A kernel is `extern "C" int F(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
// void *stream, void *extra)`: params holds the inputs, then the outputs; shapes[i] has ndims[i] sizes. It returns
// 0 on success; anything else makes MindSpore raise. The kernels here take float32 contiguous tensors whose last
// axis is the one they work along, and treat every leading axis as rows.

#ifndef SRC_KERNELS_AOT_PARAMS_H_
#define SRC_KERNELS_AOT_PARAMS_H_

#include <cstdint>
#include <cstring>

// Compile the marked function three times, for AVX-512, AVX2 and the x86-64 baseline (SSE2), and let the
// dynamic loader pick the one this CPU runs (GCC's function multi-versioning). Measured on [4096, 1024] (an
// AVX-512 machine): bias + GELU forward 6.8 ms with SSE2, 2.8 ms with AVX2, 1.0 ms with AVX-512. -march=native
// would give the same speed, but a cache shared between machines with different CPUs would then hold a
// library that crashes some of them with an illegal instruction.
#if defined(__x86_64__) && defined(__GNUC__)
#define CPU_VERSIONS __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CPU_VERSIONS
#endif

struct AotParams {
  int nparam;
  void **params;
  int *ndims;
  int64_t **shapes;
  const char **dtypes;

  // Whether there are `count` tensors, all float32 (the kernels' only type): a kernel returns 1 otherwise.
  bool are_float32(int count) const {
    if (nparam != count) return false;
    for (int i = 0; i < nparam; ++i) {
      if (std::strcmp(dtypes[i], "float32") != 0) return false;
    }
    return true;
  }

  const float *in(int i) const { return static_cast<const float *>(params[i]); }
  float *out(int i) const { return static_cast<float *>(params[i]); }
  // The size of the last axis of tensor i.
  int64_t width(int i) const { return shapes[i][ndims[i] - 1]; }
  // The product of the sizes of every axis of tensor i but the last.
  int64_t rows(int i) const {
    int64_t rows = 1;
    for (int axis = 0; axis + 1 < ndims[i]; ++axis) rows *= shapes[i][axis];
    return rows;
  }
};

#endif  // SRC_KERNELS_AOT_PARAMS_H_
