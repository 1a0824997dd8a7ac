// MindSpore's calling convention for ops.Custom(func_type="aot") kernels, read in one place.
//
// A kernel is `extern "C" int F(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
// void *stream, void *extra)`: params holds the inputs, then the outputs; shapes[i] has ndims[i] sizes. It returns
// 0 on success; anything else makes MindSpore raise. The kernels here take float32 contiguous tensors whose last
// axis is the one they work along, and treat every leading axis as rows.

#ifndef SRC_KERNELS_AOT_PARAMS_H_
#define SRC_KERNELS_AOT_PARAMS_H_

#include <cstdint>

struct AotParams {
  void **params;
  int *ndims;
  int64_t **shapes;

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
