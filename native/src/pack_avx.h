// GEMM panel packing with 256-bit AVX, shared by kernels_avx2.cpp and kernels_avx512.cpp
// (included only by files compiled with -mavx2). Packing is pure data movement, so these
// give the very panels of the scalar versions in kernels_generic.cpp; only faster.
#pragma once

#include <immintrin.h>

namespace temper {
namespace pack_avx {

// Lanes [0, n) set, for masked loads and stores of a partial group of 8.
inline __m256i lane_mask(int n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
}

// In-register transpose of an 8x8 block: v[i] (row i) becomes column i.
inline void transpose8(__m256 v[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// out[kk*width + r] = base[r*stride + kk] for r < rows, 0 for rows <= r < width; kk < kc.
// Groups of 8 rows x 8 depths go through one register transpose; each store writes only its
// own panel (masked at a partial group), so panels packed by different threads never overlap.
inline void transpose_panel(const float* base, long stride, int rows, int width, long kc, float* out) {
  long kk = 0;
  for (; kk + 8 <= kc; kk += 8) {
    for (int r0 = 0; r0 < width; r0 += 8) {
      const int have = rows - r0;  // rows of this group present in the source (may be <= 0)
      const int w = width - r0 < 8 ? width - r0 : 8;
      __m256 v[8];
      for (int i = 0; i < 8; ++i)
        v[i] = i < have ? _mm256_loadu_ps(base + (r0 + i) * stride + kk) : _mm256_setzero_ps();
      transpose8(v);
      float* o = out + kk * width + r0;
      if (w == 8) {
        for (int j = 0; j < 8; ++j) _mm256_storeu_ps(o + j * width, v[j]);
      } else {
        const __m256i m = lane_mask(w);
        for (int j = 0; j < 8; ++j) _mm256_maskstore_ps(o + j * width, m, v[j]);
      }
    }
  }
  for (; kk < kc; ++kk) {
    float* o = out + kk * width;
    int r = 0;
    for (; r < rows; ++r) o[r] = base[r * stride + kk];
    for (; r < width; ++r) o[r] = 0.0f;
  }
}

// Kernels::pack_copy: columns [0, cols) of src into consecutive kc x width panels.
inline void copy_panel(const float* src, long stride, long cols, int width, long kc, float* out) {
  const long panels = (cols + width - 1) / width;
  for (long kk = 0; kk < kc; ++kk) {
    const float* s = src + kk * stride;
    for (long p = 0; p < panels; ++p) {
      float* o = out + p * width * kc + kk * width;
      const float* sp = s + p * width;
      const long left = cols - p * width;
      for (int c0 = 0; c0 < width; c0 += 8) {
        const long have = left - c0;
        const int w = width - c0 < 8 ? width - c0 : 8;
        __m256 v;
        if (have >= 8) v = _mm256_loadu_ps(sp + c0);
        else if (have > 0) v = _mm256_maskload_ps(sp + c0, lane_mask(static_cast<int>(have)));
        else v = _mm256_setzero_ps();
        if (w == 8) _mm256_storeu_ps(o + c0, v);
        else _mm256_maskstore_ps(o + c0, lane_mask(w), v);
      }
    }
  }
}

}  // namespace pack_avx
}  // namespace temper
