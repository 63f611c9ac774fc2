// Single-precision matrix multiply, packed and cache-blocked in the manner of BLIS/GotoBLAS:
// A is packed into kc x mr row panels, B into kc x nr column panels, and a register-tiled
// micro-kernel (6x16 AVX2, 12x32 AVX-512) does the FMAs. Threads split C into slabs (at most
// 1024 columns), each multiplied over the whole depth by one task packing its own panels. In
// a slab, one A panel (the broadcast operand, 6-12 floats per k) stays in L1 while the slab's
// B panels (two vectors per k) stream from L2 past it with software prefetch; the kernel
// prefetches its C tile before the k loop.
// Written by hand because no BLAS we can ship gives us thread-count-independent results:
// here every element of C is produced by one task with a k-order fixed by the depth block
// (256) alone, so the result is identical for any number of threads.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "thread_pool.h"

namespace temper {

// bfloat16 <-> float32. Widening is exact (a bf16 is the top half of a float32), so a matrix
// kept in bf16 and widened while packing gives the very panels its float32 copy would.
inline float bf16_to_f32(uint16_t v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
// Round to nearest, ties to even (finite inputs), as torch's .to(torch.bfloat16) does.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// A strided read-only matrix view: element (i, j) is at p[i * rs + j * cs] (or h[...], a
// bf16 matrix, when h is set; the GEMM widens it to float32 in its packing step).
// Transposition is just swapped strides, so one routine serves X·Wᵀ, dY·W and dYᵀ·X.
struct MatView {
  const float* p;
  long rs;
  long cs;
  const uint16_t* h = nullptr;
  float at(long i, long j) const { return h != nullptr ? bf16_to_f32(h[i * rs + j * cs]) : p[i * rs + j * cs]; }
};

inline MatView row_major(const float* p, long cols) { return {p, cols, 1}; }
inline MatView transposed(const float* p, long cols) { return {p, 1, cols}; }
inline MatView row_major(const uint16_t* h, long cols) { return {nullptr, cols, 1, h}; }
inline MatView transposed(const uint16_t* h, long cols) { return {nullptr, 1, cols, h}; }

// Per-thread buffers for gemm_serial.
struct GemmScratch {
  std::vector<float> a, b, edge, edge_a;
};

// The same multiply on the calling thread only, for use inside parallel tasks (attention).
// Identical blocking, so results do not depend on which thread runs it.
void gemm_serial(long m, long n, long k, float alpha, MatView a, MatView b, float* c, long ldc,
                 bool accumulate, GemmScratch& scratch);

class Gemm {
 public:
  explicit Gemm(ThreadPool& pool) : pool_(pool) {}

  // C[m x n] (row stride ldc) = (accumulate ? C : 0) + alpha · A[m x k] · B[k x n].
  void run(long m, long n, long k, float alpha, MatView a, MatView b, float* c, long ldc,
           bool accumulate);

 private:

  ThreadPool& pool_;
  std::vector<GemmScratch> scratch_;  // one per pool thread: each slab task packs its own panels
};

}  // namespace temper
