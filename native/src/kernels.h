// Innermost numeric kernels, compiled three times: for baseline x86-64 (kernels_generic.cpp),
// with AVX2+FMA (kernels_avx2.cpp) and with AVX-512 (kernels_avx512.cpp). kernels() picks the
// widest the CPU supports at run time; TEMPER_SIMD=generic|avx2|avx512 caps the choice
// (TEMPER_NO_AVX2=1 is kept as a synonym of generic) for testing the fallbacks.
#pragma once

namespace temper {

// Coefficients of one decoupled AdamW update (torch.optim.AdamW, single-tensor path);
// adamw_coefficients (backend.h) computes them for a step.
struct AdamCoefficients {
  float grad_scale;  // multiplies the gradient first (accumulation normalisation × clipping)
  float decay;       // 1 − lr·weight_decay
  float beta1;
  float beta2;
  float step_size;   // lr / (1 − beta1^t)
  float bc2_sqrt;    // sqrt(1 − beta2^t)
  float eps;
};

constexpr int kMaxGemmMR = 12;  // largest micro-tile over all kernel sets
constexpr int kMaxGemmNR = 32;

struct Kernels {
  const char* name;
  int mr;  // rows of C per micro-tile
  int nr;  // columns of C per micro-tile
  // C[mr x nr] (row stride ldc) = (accumulate ? C : 0) + alpha * A_panel · B_panel, where
  // A_panel is kc x mr (packed, mr contiguous per k) and B_panel is kc x nr.
  void (*gemm_tile)(int kc, const float* a, const float* b, float* c, long ldc, float alpha,
                    bool accumulate);
  // The same with A read in place instead of from a packed panel: element (r, kk) of the
  // mr x kc block at a[r*lda + kk] (mr rows of a row-major A). Same FMA order, same result.
  void (*gemm_tile_rows)(int kc, const float* a, long lda, const float* b, float* c, long ldc, float alpha,
                         bool accumulate);
  // Transposing copy used to pack GEMM panels: out[kk*width + r] = base[r*stride + kk] for
  // r < rows, 0 for rows <= r < width, kk < kc. (Rows of A, or columns of Bᵀ, side by side.)
  void (*pack_transpose)(const float* base, long stride, int rows, int width, long kc, float* out);
  // Plain copy used to pack GEMM panels: columns [0, cols) of the kc x cols matrix at src
  // (row stride `stride`) into ceil(cols/width) consecutive kc x width panels, panel p at
  // out + p*width*kc, out[p*width*kc + kk*width + c] = src[kk*stride + p*width + c], zero past
  // cols. (Segments of rows of B, or of columns of Aᵀ.) Several panels at once, so each
  // source row is read as one run rather than width floats at a time.
  void (*pack_copy)(const float* src, long stride, long cols, int width, long kc, float* out);
  // x[i] = exp(x[i] + shift), accurate to about 1 ulp (inputs below -87 give 0).
  void (*exp_shifted)(float* x, long n, float shift);
  // Σ x[i]·y[i] with a fixed summation order for a given n.
  float (*dot)(const float* x, const float* y, long n);
  // y[i] += a·x[i]
  void (*axpy)(float a, const float* x, float* y, long n);
  // max over x[0..n) (n >= 1; exact, so every order gives the same value).
  float (*reduce_max)(const float* x, long n);
  // Σ x[i] accumulated in double, in eight interleaved lanes (lane l takes i ≡ l mod 8 of the
  // leading multiple of 8) combined as ((0+4)+(1+5))+((2+6)+(3+7)), then the tail in order:
  // the same order, hence the same bits, on every kernel set.
  double (*sum_f64)(const float* x, long n);
  // One AdamW update of n parameters: w_out[i] from w[i], g[i] and the moments m[i], v[i]
  // (updated in place). w_out may be w, or g (each element is read before it is written).
  // Every set performs the same correctly rounded operations in the same order (no FMA), so
  // all give identical bits. The one definition of the update: the engine's optimizer step
  // and the ZeRO-1 sharded step both call it.
  void (*adamw)(const float* w, const float* g, float* m, float* v, float* w_out, long n, const AdamCoefficients& c);
};

void exp_shifted_generic(float* x, long n, float shift);
// Σ x² in double: one kernels().dot per kSquaresPiece elements (float lanes, fixed order),
// the pieces added in order. The backend's sum_squares splits the same pieces over threads
// and adds them in the same order, so both give the same bits.
constexpr long kSquaresPiece = 1 << 15;
double sum_squares(const float* x, long n);
double sum_f64_tail(double lanes_total, const float* x, long i, long n);
void adamw_generic(const float* w, const float* g, float* m, float* v, float* w_out, long n, const AdamCoefficients& c);
void pack_transpose_generic(const float* base, long stride, int rows, int width, long kc, float* out);
void pack_copy_generic(const float* src, long stride, long cols, int width, long kc, float* out);
const Kernels& generic_kernels();
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();
const Kernels& kernels();

}  // namespace temper
