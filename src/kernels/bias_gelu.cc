// Bias add + exact GELU, forward and backward, for MindSpore's ops.Custom (func_type "aot").
//
//   z = y + bias;  out = z * Phi(z);  dz = dout * (Phi(z) + z * phi(z));  dbias = sum over rows of dz
//
// with Phi the standard normal CDF and phi its density. One pass instead of MindSpore's BiasAdd, Div, Erf, Add,
// Mul, Mul forward and about ten elementwise kernels and a ReduceSum backward.
//
// Phi comes from Abramowitz & Stegun 7.1.26: erfc(u) ~= t (a1 + t (a2 + ... + t a5)) exp(-u^2), t = 1 / (1 + p u),
// u >= 0, absolute error below 1.5e-7. With u = |z| / sqrt(2), exp(-u^2) = exp(-z^2 / 2) is also the density's
// factor, so each element costs one exp. Phi(z) = 1 - erfc(u) / 2 for z >= 0 and erfc(u) / 2 below, which keeps
// Phi's small values for negative z exact to that bound instead of losing them to 1 + erf cancellation.
//
// The exp is written out (range reduction to 2^n exp(r), |r| <= ln2 / 2, and a degree-6 polynomial, relative
// error below 2e-7) because the C library's expf is a call the compiler cannot vectorise.
//
// Every tensor is float32; rows are every leading axis, I (the bias length) the last (see aot_params.h).

#include <cmath>
#include <cstdint>
#include <cstring>

#include "aot_params.h"

namespace {

constexpr float kLog2e = 1.44269504f;
constexpr float kLn2High = 0.693145752f;     // ln 2 split in two so that n * kLn2High is exact in float
constexpr float kLn2Low = 1.42860677e-6f;
constexpr float kExpLowest = -87.0f;         // exp below this is under float's smallest normal: clamp
constexpr float kInvSqrt2 = 0.707106781f;
constexpr float kInvSqrt2Pi = 0.398942280f;  // 1 / sqrt(2 pi), the density's factor
// Abramowitz & Stegun 7.1.26.
constexpr float kP = 0.3275911f;
constexpr float kA1 = 0.254829592f, kA2 = -0.284496736f, kA3 = 1.421413741f, kA4 = -1.453152027f,
                kA5 = 1.061405429f;

// exp(x) for x <= 0 (the only arguments here).
inline float exp_nonpositive(float x) {
  x = x < kExpLowest ? kExpLowest : x;
  // n = round(x / ln 2) by truncating x / ln 2 - 1/2 (x <= 0): a conversion SSE2 vectorises, unlike nearbyint.
  const int32_t n = static_cast<int32_t>(x * kLog2e - 0.5f);
  const float r = x - n * kLn2High - n * kLn2Low;
  const float poly =
      1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  const int32_t bits = (n + 127) << 23;  // 2^n as a float's bits
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return poly * scale;
}

// Phi(z) and phi(z) together: they share exp(-z^2 / 2).
inline void normal_cdf_pdf(float z, float &cdf, float &pdf) {
  const float gauss = exp_nonpositive(-0.5f * z * z);
  const float t = 1.0f / (1.0f + kP * kInvSqrt2 * std::fabs(z));
  const float half_erfc = 0.5f * t * (kA1 + t * (kA2 + t * (kA3 + t * (kA4 + t * kA5)))) * gauss;
  cdf = z >= 0.0f ? 1.0f - half_erfc : half_erfc;
  pdf = kInvSqrt2Pi * gauss;
}

CPU_VERSIONS void forward(const float *y, const float *bias, int64_t rows, int64_t width, float *out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *yr = y + r * width;
    float *outr = out + r * width;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      const float z = yr[j] + bias[j];
      float cdf, pdf;
      normal_cdf_pdf(z, cdf, pdf);
      outr[j] = z * cdf;
    }
  }
}

CPU_VERSIONS void backward(const float *y, const float *bias, const float *dout, int64_t rows, int64_t width,
                           float *dz, float *dbias) {
  for (int64_t j = 0; j < width; ++j) dbias[j] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float *yr = y + r * width;
    const float *doutr = dout + r * width;
    float *dzr = dz + r * width;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      const float z = yr[j] + bias[j];
      float cdf, pdf;
      normal_cdf_pdf(z, cdf, pdf);
      dzr[j] = doutr[j] * (cdf + z * pdf);
      dbias[j] += dzr[j];
    }
  }
}

}  // namespace

extern "C" {

// Inputs y [..., I], bias [I]; output gelu(y + bias) [..., I].
int BiasGelu(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const AotParams p{nparam, params, ndims, shapes, dtypes};
  if (!p.are_float32(3)) return 1;
  forward(p.in(0), p.in(1), p.rows(0), p.width(0), p.out(2));
  return 0;
}

// Inputs y [..., I], bias [I], dout [..., I]; outputs dy (= dz) [..., I], dbias [I].
int BiasGeluGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const AotParams p{nparam, params, ndims, shapes, dtypes};
  if (!p.are_float32(5)) return 1;
  backward(p.in(0), p.in(1), p.in(2), p.rows(0), p.width(0), p.out(3), p.out(4));
  return 0;
}

}  // extern "C"
