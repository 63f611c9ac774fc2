// Innermost numeric kernels, compiled twice: once for baseline x86-64 (kernels_generic.cpp)
// and once with AVX2+FMA (kernels_avx2.cpp). kernels() picks one at run time from CPUID,
// or the generic set when TEMPER_NO_AVX2=1 (handy for testing the fallback).
#pragma once

namespace temper {

constexpr int kGemmMR = 6;   // rows of C per micro-tile
constexpr int kGemmNR = 16;  // columns of C per micro-tile

struct Kernels {
  const char* name;
  // C[MR x NR] (row stride ldc) = (accumulate ? C : 0) + alpha * A_panel · B_panel, where
  // A_panel is kc x MR (packed, MR contiguous per k) and B_panel is kc x NR.
  void (*gemm_tile)(int kc, const float* a, const float* b, float* c, long ldc, float alpha,
                    bool accumulate);
  // Σ x[i]·y[i] with a fixed summation order for a given n.
  float (*dot)(const float* x, const float* y, long n);
  // y[i] += a·x[i]
  void (*axpy)(float a, const float* x, float* y, long n);
};

const Kernels& generic_kernels();
const Kernels& avx2_kernels();
const Kernels& kernels();

}  // namespace temper
