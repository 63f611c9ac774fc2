#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels.h"

namespace temper {
namespace {

constexpr int kGemmMR = 6;
constexpr int kGemmNR = 16;

void gemm_tile_generic(int kc, const float* a, const float* b, float* c, long ldc, float alpha,
                       bool accumulate) {
  float acc[kGemmMR][kGemmNR];
  std::memset(acc, 0, sizeof(acc));
  for (int k = 0; k < kc; ++k) {
    const float* ak = a + k * kGemmMR;
    const float* bk = b + k * kGemmNR;
    for (int r = 0; r < kGemmMR; ++r) {
      const float av = ak[r];
      for (int j = 0; j < kGemmNR; ++j) acc[r][j] += av * bk[j];
    }
  }
  for (int r = 0; r < kGemmMR; ++r) {
    float* cr = c + r * ldc;
    for (int j = 0; j < kGemmNR; ++j) cr[j] = (accumulate ? cr[j] : 0.0f) + alpha * acc[r][j];
  }
}

void gemm_tile_rows_generic(int kc, const float* a, long lda, const float* b, float* c, long ldc, float alpha,
                            bool accumulate) {
  float acc[kGemmMR][kGemmNR];
  std::memset(acc, 0, sizeof(acc));
  for (int k = 0; k < kc; ++k) {
    const float* bk = b + k * kGemmNR;
    for (int r = 0; r < kGemmMR; ++r) {
      const float av = a[r * lda + k];
      for (int j = 0; j < kGemmNR; ++j) acc[r][j] += av * bk[j];
    }
  }
  for (int r = 0; r < kGemmMR; ++r) {
    float* cr = c + r * ldc;
    for (int j = 0; j < kGemmNR; ++j) cr[j] = (accumulate ? cr[j] : 0.0f) + alpha * acc[r][j];
  }
}

float dot_generic(const float* x, const float* y, long n) {
  // Eight independent partial sums: vectorisable without reassociation, fixed order.
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  long i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) s[l] += x[i + l] * y[i + l];
  float tail = 0.0f;
  for (; i < n; ++i) tail += x[i] * y[i];
  return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
}

void axpy_generic(float a, const float* x, float* y, long n) {
  for (long i = 0; i < n; ++i) y[i] += a * x[i];
}

float reduce_max_generic(const float* x, long n) {
  float m = x[0];
  for (long i = 1; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

double sum_f64_generic(const float* x, long n) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  long i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) s[l] += x[i + l];
  return sum_f64_tail(((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])), x, i, n);
}

}  // namespace

double sum_squares(const float* x, long n) {
  double total = 0.0;
  for (long i = 0; i < n; i += kSquaresPiece) total += kernels().dot(x + i, x + i, std::min(kSquaresPiece, n - i));
  return total;
}

double sum_f64_tail(double lanes_total, const float* x, long i, long n) {
  for (; i < n; ++i) lanes_total += x[i];
  return lanes_total;
}

void adamw_generic(const float* w, const float* g, float* m, float* v, float* w_out, long n, const AdamCoefficients& c) {
  const float one_minus_b1 = 1.0f - c.beta1, one_minus_b2 = 1.0f - c.beta2;
  for (long i = 0; i < n; ++i) {
    const float gi = g[i] * c.grad_scale;
    const float wi = w[i] * c.decay;
    m[i] += (gi - m[i]) * one_minus_b1;
    v[i] = v[i] * c.beta2 + one_minus_b2 * gi * gi;
    const float denom = std::sqrt(v[i]) / c.bc2_sqrt + c.eps;
    w_out[i] = wi - c.step_size * (m[i] / denom);
  }
}

void exp_shifted_generic(float* x, long n, float shift) {
  for (long i = 0; i < n; ++i) x[i] = std::exp(x[i] + shift);
}

void pack_transpose_generic(const float* base, long stride, int rows, int width, long kc, float* out) {
  for (long kk = 0; kk < kc; ++kk) {
    float* o = out + kk * width;
    int r = 0;
    for (; r < rows; ++r) o[r] = base[r * stride + kk];
    for (; r < width; ++r) o[r] = 0.0f;
  }
}

void pack_copy_generic(const float* src, long stride, long cols, int width, long kc, float* out) {
  const long panels = (cols + width - 1) / width;
  for (long kk = 0; kk < kc; ++kk) {
    const float* s = src + kk * stride;
    for (long p = 0; p < panels; ++p) {
      float* o = out + p * width * kc + kk * width;
      const long have = cols - p * width;
      for (int c = 0; c < width; ++c) o[c] = c < have ? s[p * width + c] : 0.0f;
    }
  }
}

const Kernels& generic_kernels() {
  static const Kernels k{"generic", kGemmMR, kGemmNR, gemm_tile_generic, gemm_tile_rows_generic, pack_transpose_generic, pack_copy_generic, exp_shifted_generic, dot_generic, axpy_generic, reduce_max_generic, sum_f64_generic, adamw_generic};
  return k;
}

const Kernels& kernels() {
  static const Kernels& chosen = [&]() -> const Kernels& {
    const char* no_avx2 = std::getenv("TEMPER_NO_AVX2");
    const char* cap_env = std::getenv("TEMPER_SIMD");
    std::string cap = cap_env != nullptr ? cap_env : "avx512";
    if (no_avx2 != nullptr && no_avx2[0] == '1') cap = "generic";
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");
    if (cap == "avx512" && avx512) return avx512_kernels();
    if ((cap == "avx512" || cap == "avx2") && avx2) return avx2_kernels();
    return generic_kernels();
  }();
  return chosen;
}

}  // namespace temper
