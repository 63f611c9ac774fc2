// Single-precision matrix multiply, packed and cache-blocked in the manner of BLIS/GotoBLAS:
// B is packed into kc x nr column panels (L1-resident), A into kc x mr row panels grouped in
// MC-row blocks (L2-resident), and a register-tiled micro-kernel (6x16 AVX2, 12x32 AVX-512)
// does the FMAs.
// Written by hand because no BLAS we can ship gives us thread-count-independent results:
// here every element of C is produced by one task with a k-order fixed by the blocking
// constants alone, so the result is identical for any number of threads.
#pragma once

#include <vector>

#include "thread_pool.h"

namespace temper {

// A strided read-only matrix view: element (i, j) is at p[i * rs + j * cs]. Transposition is
// just swapped strides, so one routine serves X·Wᵀ, dY·W and dYᵀ·X.
struct MatView {
  const float* p;
  long rs;
  long cs;
};

inline MatView row_major(const float* p, long cols) { return {p, cols, 1}; }
inline MatView transposed(const float* p, long cols) { return {p, 1, cols}; }

// Per-thread buffers for gemm_serial.
struct GemmScratch {
  std::vector<float> a, b, edge;
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
  std::vector<float> packed_a_;
  std::vector<float> packed_b_;
  std::vector<float> edge_;  // per-thread mr x nr scratch for partial tiles
};

}  // namespace temper
