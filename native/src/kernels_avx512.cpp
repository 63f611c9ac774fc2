// AVX-512F versions of the kernels in kernels.h: a 12x32 micro-tile (24 zmm accumulators,
// two B vectors, one broadcast). Compiled with -mavx512f and only called after a CPUID check.
#include <immintrin.h>

#include "kernels.h"
#include "pack_avx.h"

namespace temper {
namespace {

constexpr int kMR = 12;
constexpr int kNR = 32;
// How far ahead (floats of the packed B panel, i.e. k steps x nr) the micro-kernel prefetches.
constexpr int kPrefetchB = 256;

// kDirect: A read in place (row r at a + r*lda) rather than from a packed kc x kMR panel.
template <bool kDirect>
inline void gemm_tile_impl(int kc, const float* a, long lda, const float* b, float* c, long ldc, float alpha,
                           bool accumulate) {
  __m512 acc[kMR][2];
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  // The C tile is read (or written) only after the k loop: ask for its lines now.
  for (int r = 0; r < kMR; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16), _MM_HINT_T0);
  }
  for (int k = 0; k < kc; ++k) {
    // B streams from L2 (the A panel stays in L1 across the row of tiles): fetch ahead.
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchB), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchB + 16), _MM_HINT_T0);
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
    // Fully unrolled by the compiler (kMR is a constant): 24 independent FMA chains.
    for (int r = 0; r < kMR; ++r) {
      const __m512 av = _mm512_set1_ps(kDirect ? a[r * lda + k] : a[r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
    if (!kDirect) a += kMR;
    b += kNR;
  }
  const __m512 al = _mm512_set1_ps(alpha);
  for (int r = 0; r < kMR; ++r) {
    float* row = c + r * ldc;
    if (accumulate) {
      _mm512_storeu_ps(row, _mm512_fmadd_ps(al, acc[r][0], _mm512_loadu_ps(row)));
      _mm512_storeu_ps(row + 16, _mm512_fmadd_ps(al, acc[r][1], _mm512_loadu_ps(row + 16)));
    } else {
      _mm512_storeu_ps(row, _mm512_mul_ps(al, acc[r][0]));
      _mm512_storeu_ps(row + 16, _mm512_mul_ps(al, acc[r][1]));
    }
  }
}

void gemm_tile_avx512(int kc, const float* a, const float* b, float* c, long ldc, float alpha, bool accumulate) {
  gemm_tile_impl<false>(kc, a, 0, b, c, ldc, alpha, accumulate);
}

void gemm_tile_rows_avx512(int kc, const float* a, long lda, const float* b, float* c, long ldc, float alpha,
                           bool accumulate) {
  gemm_tile_impl<true>(kc, a, lda, b, c, ldc, alpha, accumulate);
}

// exp by range reduction: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for an exact
// product), e^r by its degree-7 Taylor polynomial (truncation < 1.5e-8 relative), then
// scaled by 2^n. Inputs are clamped to [-87.3, 88.7]; the low end rounds to ~0.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

void exp_shifted_avx512(float* x, long n, float shift) {
  const __m512 s = _mm512_set1_ps(shift);
  long i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, exp_ps(_mm512_add_ps(_mm512_loadu_ps(x + i), s)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, exp_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
  }
}

float dot_avx512(const float* x, const float* y, long n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  long i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void axpy_avx512(float a, const float* x, float* y, long n) {
  const __m512 av = _mm512_set1_ps(a);
  long i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

float reduce_max_avx512(const float* x, long n) {
  __m512 m = _mm512_set1_ps(x[0]);
  long i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
  if (i < n) m = _mm512_mask_max_ps(m, static_cast<__mmask16>((1u << (n - i)) - 1), m, _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << (n - i)) - 1), x + i));
  return _mm512_reduce_max_ps(m);
}

double sum_f64_avx512(const float* x, long n) {
  __m512d s = _mm512_setzero_pd();  // lane l of the kernels.h order
  long i = 0;
  for (; i + 8 <= n; i += 8) s = _mm512_add_pd(s, _mm512_cvtps_pd(_mm256_loadu_ps(x + i)));
  alignas(64) double l[8];
  _mm512_store_pd(l, s);
  return sum_f64_tail(((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7])), x, i, n);
}

void adamw_avx512(const float* w, const float* g, float* m, float* v, float* w_out, long n, const AdamCoefficients& c) {
  const __m512 scale = _mm512_set1_ps(c.grad_scale), decay = _mm512_set1_ps(c.decay);
  const __m512 b2 = _mm512_set1_ps(c.beta2), omb1 = _mm512_set1_ps(1.0f - c.beta1);
  const __m512 omb2 = _mm512_set1_ps(1.0f - c.beta2), bc2 = _mm512_set1_ps(c.bc2_sqrt);
  const __m512 eps = _mm512_set1_ps(c.eps), step = _mm512_set1_ps(c.step_size);
  long i = 0;
  for (; i + 16 <= n; i += 16) {  // adamw_generic's operations, 16 lanes at a time
    const __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), scale);
    const __m512 wi = _mm512_mul_ps(_mm512_loadu_ps(w + i), decay);
    __m512 mi = _mm512_loadu_ps(m + i);
    mi = _mm512_add_ps(mi, _mm512_mul_ps(_mm512_sub_ps(gi, mi), omb1));
    const __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), b2),
                                    _mm512_mul_ps(_mm512_mul_ps(omb2, gi), gi));
    const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2), eps);
    _mm512_storeu_ps(w_out + i, _mm512_sub_ps(wi, _mm512_mul_ps(step, _mm512_div_ps(mi, denom))));
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
  }
  adamw_generic(w + i, g + i, m + i, v + i, w_out + i, n - i, c);
}

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels k{"avx512", kMR, kNR, gemm_tile_avx512, gemm_tile_rows_avx512, pack_avx::transpose_panel, pack_avx::copy_panel, exp_shifted_avx512, dot_avx512, axpy_avx512, reduce_max_avx512, sum_f64_avx512, adamw_avx512};
  return k;
}

}  // namespace temper
