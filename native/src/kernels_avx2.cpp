// AVX2 + FMA versions of the kernels in kernels.h. This file is compiled with -mavx2 -mfma
// and only ever called after a CPUID check.
#include <immintrin.h>

#include <algorithm>

#include "kernels.h"
#include "pack_avx.h"

namespace temper {
namespace {

constexpr int kGemmMR = 6;
constexpr int kGemmNR = 16;
// How far ahead (floats of the packed B panel, i.e. k steps x nr) the micro-kernel prefetches.
constexpr int kPrefetchB = 256;

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  lo = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, lo);
  return _mm_cvtss_f32(_mm_add_ss(lo, sh));
}

// kDirect: A read in place (row r at a + r*lda) rather than from a packed kc x 6 panel.
template <bool kDirect>
inline void gemm_tile_impl(int kc, const float* a, long lda, const float* b, float* c, long ldc, float alpha,
                           bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  // The C tile is read (or written) only after the k loop: ask for its lines now.
  for (int r = 0; r < kGemmMR; ++r) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
  // Element (r, k) of A: a[r*step_r + k*step_k].
  const long step_r = kDirect ? lda : 1;
  for (int k = 0; k < kc; ++k) {
    // B streams from L2 (the A panel stays in L1 across the row of tiles): fetch ahead.
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchB), _MM_HINT_T0);
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a + 0 * step_r);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1 * step_r);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2 * step_r);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3 * step_r);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4 * step_r);
    c40 = _mm256_fmadd_ps(av, b0, c40);
    c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5 * step_r);
    c50 = _mm256_fmadd_ps(av, b0, c50);
    c51 = _mm256_fmadd_ps(av, b1, c51);
    a += kDirect ? 1 : kGemmMR;
    b += kGemmNR;
  }
  const __m256 al = _mm256_set1_ps(alpha);
  auto store = [&](float* row, __m256 lo, __m256 hi) {
    if (accumulate) {
      _mm256_storeu_ps(row, _mm256_fmadd_ps(al, lo, _mm256_loadu_ps(row)));
      _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(al, hi, _mm256_loadu_ps(row + 8)));
    } else {
      _mm256_storeu_ps(row, _mm256_mul_ps(al, lo));
      _mm256_storeu_ps(row + 8, _mm256_mul_ps(al, hi));
    }
  };
  store(c + 0 * ldc, c00, c01);
  store(c + 1 * ldc, c10, c11);
  store(c + 2 * ldc, c20, c21);
  store(c + 3 * ldc, c30, c31);
  store(c + 4 * ldc, c40, c41);
  store(c + 5 * ldc, c50, c51);
}

void gemm_tile_avx2(int kc, const float* a, const float* b, float* c, long ldc, float alpha, bool accumulate) {
  gemm_tile_impl<false>(kc, a, 0, b, c, ldc, alpha, accumulate);
}

void gemm_tile_rows_avx2(int kc, const float* a, long lda, const float* b, float* c, long ldc, float alpha,
                         bool accumulate) {
  gemm_tile_impl<true>(kc, a, lda, b, c, ldc, alpha, accumulate);
}

float dot_avx2(const float* x, const float* y, long n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
  float tail = 0.0f;
  for (; i < n; ++i) tail += x[i] * y[i];
  return hsum(_mm256_add_ps(s0, s1)) + tail;
}

void axpy_avx2(float a, const float* x, float* y, long n) {
  const __m256 av = _mm256_set1_ps(a);
  long i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

// exp as in kernels_avx512.cpp (the same reduction, polynomial and FMAs), the scaling by 2^n
// done as two exact multiplications by powers of two built in the exponent field (AVX2 has
// no scalef), so results are the AVX-512 kernel's bits wherever they are normal floats.
inline __m256 exp_ps(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.7f)), _mm256_set1_ps(-87.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // n in [-126, 128]: halves keep each factor 2^h inside the normal exponent range.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i h1 = _mm256_srai_epi32(ni, 1);
  const __m256i h2 = _mm256_sub_epi32(ni, h1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

void exp_shifted_avx2(float* x, long n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  long i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp_ps(_mm256_add_ps(_mm256_loadu_ps(x + i), s)));
  if (i < n) {  // the tail through a zero-padded vector, so it gets the same arithmetic
    alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (long k = i; k < n; ++k) t[k - i] = x[k];
    _mm256_store_ps(t, exp_ps(_mm256_add_ps(_mm256_load_ps(t), s)));
    for (long k = i; k < n; ++k) x[k] = t[k - i];
  }
}

float reduce_max_avx2(const float* x, long n) {
  __m256 m = _mm256_set1_ps(x[0]);
  long i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
  alignas(32) float l[8];
  _mm256_store_ps(l, m);
  float r = l[0];
  for (int k = 1; k < 8; ++k) r = std::max(r, l[k]);
  for (; i < n; ++i) r = std::max(r, x[i]);
  return r;
}

double sum_f64_avx2(const float* x, long n) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();  // lanes 0-3 and 4-7
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
  }
  alignas(32) double l[8];
  _mm256_store_pd(l, lo);
  _mm256_store_pd(l + 4, hi);
  return sum_f64_tail(((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7])), x, i, n);
}

void adamw_avx2(const float* w, const float* g, float* m, float* v, float* w_out, long n, const AdamCoefficients& c) {
  const __m256 scale = _mm256_set1_ps(c.grad_scale), decay = _mm256_set1_ps(c.decay);
  const __m256 b2 = _mm256_set1_ps(c.beta2), omb1 = _mm256_set1_ps(1.0f - c.beta1);
  const __m256 omb2 = _mm256_set1_ps(1.0f - c.beta2), bc2 = _mm256_set1_ps(c.bc2_sqrt);
  const __m256 eps = _mm256_set1_ps(c.eps), step = _mm256_set1_ps(c.step_size);
  long i = 0;
  for (; i + 8 <= n; i += 8) {  // adamw_generic's operations, 8 lanes at a time
    const __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), scale);
    const __m256 wi = _mm256_mul_ps(_mm256_loadu_ps(w + i), decay);
    __m256 mi = _mm256_loadu_ps(m + i);
    mi = _mm256_add_ps(mi, _mm256_mul_ps(_mm256_sub_ps(gi, mi), omb1));
    const __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2),
                                    _mm256_mul_ps(_mm256_mul_ps(omb2, gi), gi));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
    _mm256_storeu_ps(w_out + i, _mm256_sub_ps(wi, _mm256_mul_ps(step, _mm256_div_ps(mi, denom))));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
  }
  adamw_generic(w + i, g + i, m + i, v + i, w_out + i, n - i, c);
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k{"avx2-fma", kGemmMR, kGemmNR, gemm_tile_avx2, gemm_tile_rows_avx2, pack_avx::transpose_panel, pack_avx::copy_panel, exp_shifted_avx2, dot_avx2, axpy_avx2, reduce_max_avx2, sum_f64_avx2, adamw_avx2};
  return k;
}

}  // namespace temper
