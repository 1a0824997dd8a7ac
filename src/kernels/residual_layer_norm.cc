// Residual sum + LayerNorm over the last axis, forward and backward, for MindSpore's ops.Custom (func_type "aot").
//
//   h = x + residual;  y = (h - mean(h)) * rstd * gamma + beta,  rstd = 1 / sqrt(var(h) + epsilon)
//
// Each row of D values is read from memory once and stays in L1 cache for the kernel's passes, instead of
// MindSpore's separate Add, two means, Sub, Mul and Rsqrt and the backward's row and column ReduceSums. The row
// sums are vectorised (`omp simd reduction`, compiled with -fopenmp-simd: no OpenMP runtime): each lane sums a
// strided part of the row, which rounds no worse than one running sum.
//
// Every tensor is float32; rows are every leading axis, D the last (see aot_params.h).

#include <cmath>
#include <cstdint>

#include "aot_params.h"

namespace {

// y, mean, rstd of the rows of x (+ residual when not null).
CPU_VERSIONS void forward(const float *x, const float *residual, const float *gamma, const float *beta,
                          float epsilon, int64_t rows, int64_t width, float *y, float *mean_out, float *rstd_out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * width;
    const float *rr = residual ? residual + r * width : nullptr;
    float *yr = y + r * width;
    // yr holds h while the statistics are taken, then the output.
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < width; ++j) {
      yr[j] = rr ? xr[j] + rr[j] : xr[j];
      sum += yr[j];
    }
    const float mean = sum / width;
    float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
    for (int64_t j = 0; j < width; ++j) {
      const float centered = yr[j] - mean;
      squares += centered * centered;
    }
    const float rstd = 1.0f / std::sqrt(squares / width + epsilon);
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) yr[j] = (yr[j] - mean) * rstd * gamma[j] + beta[j];
    mean_out[r] = mean;
    rstd_out[r] = rstd;
  }
}

// dh = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma, xhat the normalised h;
// dgamma = sum over rows of dy * xhat, dbeta = sum over rows of dy.
CPU_VERSIONS void backward(const float *x, const float *residual, const float *gamma, const float *mean,
                           const float *rstd, const float *dy, int64_t rows, int64_t width, float *dh, float *dgamma,
                           float *dbeta) {
  for (int64_t j = 0; j < width; ++j) dgamma[j] = dbeta[j] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * width;
    const float *rr = residual ? residual + r * width : nullptr;
    const float *dyr = dy + r * width;
    float *dhr = dh + r * width;
    // dhr holds xhat until the row's sums are known.
    float sum_g = 0.0f, sum_g_xhat = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_g_xhat)
    for (int64_t j = 0; j < width; ++j) {
      const float xhat = ((rr ? xr[j] + rr[j] : xr[j]) - mean[r]) * rstd[r];
      const float g = dyr[j] * gamma[j];
      dhr[j] = xhat;
      sum_g += g;
      sum_g_xhat += g * xhat;
      dgamma[j] += dyr[j] * xhat;
      dbeta[j] += dyr[j];
    }
    const float mean_g = sum_g / width;
    const float mean_g_xhat = sum_g_xhat / width;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      dhr[j] = rstd[r] * (dyr[j] * gamma[j] - mean_g - dhr[j] * mean_g_xhat);
    }
  }
}

}  // namespace

extern "C" {

// Inputs x, residual [..., D], gamma, beta [D], epsilon [1]; outputs y [..., D], mean, rstd [rows].
int ResidualLayerNorm(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const AotParams p{nparam, params, ndims, shapes, dtypes};
  if (!p.are_float32(8)) return 1;
  forward(p.in(0), p.in(1), p.in(2), p.in(3), p.in(4)[0], p.rows(0), p.width(0), p.out(5),
          p.out(6), p.out(7));
  return 0;
}

// Inputs x, residual [..., D], gamma [D], mean, rstd [rows], dy [..., D]; outputs dh [..., D], dgamma, dbeta [D].
int ResidualLayerNormGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const AotParams p{nparam, params, ndims, shapes, dtypes};
  if (!p.are_float32(9)) return 1;
  backward(p.in(0), p.in(1), p.in(2), p.in(3), p.in(4), p.in(5), p.rows(0), p.width(0), p.out(6),
           p.out(7), p.out(8));
  return 0;
}

// LayerNorm without a residual (the embeddings'): ResidualLayerNorm's inputs and outputs less the residual.
int LayerNorm(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const AotParams p{nparam, params, ndims, shapes, dtypes};
  if (!p.are_float32(7)) return 1;
  forward(p.in(0), nullptr, p.in(1), p.in(2), p.in(3)[0], p.rows(0), p.width(0), p.out(4),
          p.out(5), p.out(6));
  return 0;
}

// The gradient of LayerNorm: ResidualLayerNormGrad's inputs and outputs less the residual.
int LayerNormGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const AotParams p{nparam, params, ndims, shapes, dtypes};
  if (!p.are_float32(8)) return 1;
  backward(p.in(0), nullptr, p.in(1), p.in(2), p.in(3), p.in(4), p.rows(0), p.width(0),
           p.out(5), p.out(6), p.out(7));
  return 0;
}

}  // extern "C"
