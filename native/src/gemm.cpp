#include "gemm.h"

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace temper {
namespace {

constexpr long kKC = 256;       // depth of one packed block (fixed: it fixes the sum order)
constexpr long kMC = 48;        // rows of A per task (8 micro-panels, ~48 KiB at kc=256)
constexpr long kNC = 128;       // columns of B per task (8 micro-panels)
constexpr long kSmallM = 4;     // below this many rows, multiply without packing

long ceil_div(long a, long b) { return (a + b - 1) / b; }

template <typename T>
void ensure(std::vector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

void Gemm::pack_a(long m, long k0, long kc, MatView a) {
  const long panels = ceil_div(m, kGemmMR);
  ensure(packed_a_, static_cast<std::size_t>(panels * kGemmMR * kc));
  float* dst = packed_a_.data();
  pool_.parallel_for(panels, [&](std::size_t p, int) {
    float* out = dst + p * kGemmMR * kc;
    const long i0 = static_cast<long>(p) * kGemmMR;
    const long rows = std::min<long>(kGemmMR, m - i0);
    for (long r = 0; r < kGemmMR; ++r) {
      if (r >= rows) {
        for (long kk = 0; kk < kc; ++kk) out[kk * kGemmMR + r] = 0.0f;
        continue;
      }
      const float* src = a.p + (i0 + r) * a.rs + k0 * a.cs;
      for (long kk = 0; kk < kc; ++kk) out[kk * kGemmMR + r] = src[kk * a.cs];
    }
  });
}

void Gemm::pack_b(long n, long k0, long kc, MatView b) {
  const long panels = ceil_div(n, kGemmNR);
  ensure(packed_b_, static_cast<std::size_t>(panels * kGemmNR * kc));
  float* dst = packed_b_.data();
  pool_.parallel_for(panels, [&](std::size_t p, int) {
    float* out = dst + p * kGemmNR * kc;
    const long j0 = static_cast<long>(p) * kGemmNR;
    const long cols = std::min<long>(kGemmNR, n - j0);
    if (b.cs == 1) {  // rows of B contiguous: copy row segments
      for (long kk = 0; kk < kc; ++kk) {
        const float* src = b.p + (k0 + kk) * b.rs + j0;
        float* o = out + kk * kGemmNR;
        long c = 0;
        for (; c < cols; ++c) o[c] = src[c];
        for (; c < kGemmNR; ++c) o[c] = 0.0f;
      }
    } else {  // columns of B contiguous (B = Wᵀ): walk each column down k
      for (long c = 0; c < kGemmNR; ++c) {
        if (c >= cols) {
          for (long kk = 0; kk < kc; ++kk) out[kk * kGemmNR + c] = 0.0f;
          continue;
        }
        const float* src = b.p + k0 * b.rs + (j0 + c) * b.cs;
        for (long kk = 0; kk < kc; ++kk) out[kk * kGemmNR + c] = src[kk * b.rs];
      }
    }
  });
}

// Few rows (decoding one token per sequence): one dot product per output, parallel over
// columns; packing a whole weight matrix for a handful of rows would cost more than it saves.
void Gemm::small_m(long m, long n, long k, float alpha, MatView a, MatView b, float* c, long ldc,
                   bool accumulate) {
  const Kernels& kern = kernels();
  const long chunk = 64;
  const bool contiguous = a.cs == 1 && b.rs == 1;
  pool_.parallel_for(ceil_div(n, chunk), [&](std::size_t t, int) {
    const long j0 = static_cast<long>(t) * chunk;
    const long j1 = std::min(n, j0 + chunk);
    for (long i = 0; i < m; ++i) {
      for (long j = j0; j < j1; ++j) {
        float s;
        if (contiguous) {
          s = kern.dot(a.p + i * a.rs, b.p + j * b.cs, k);
        } else {
          s = 0.0f;
          for (long kk = 0; kk < k; ++kk) s += a.p[i * a.rs + kk * a.cs] * b.p[kk * b.rs + j * b.cs];
        }
        float& out = c[i * ldc + j];
        out = (accumulate ? out : 0.0f) + alpha * s;
      }
    }
  });
}

void Gemm::run(long m, long n, long k, float alpha, MatView a, MatView b, float* c, long ldc,
               bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (long i = 0; i < m; ++i) std::memset(c + i * ldc, 0, sizeof(float) * n);
    return;
  }
  if (m <= kSmallM) {
    small_m(m, n, k, alpha, a, b, c, ldc, accumulate);
    return;
  }
  const Kernels& kern = kernels();
  ensure(edge_, static_cast<std::size_t>(pool_.size() * kGemmMR * kGemmNR));
  const long row_blocks = ceil_div(m, kMC);
  const long col_blocks = ceil_div(n, kNC);
  for (long k0 = 0; k0 < k; k0 += kKC) {
    const long kc = std::min(kKC, k - k0);
    const bool acc = accumulate || k0 > 0;
    pack_b(n, k0, kc, b);
    pack_a(m, k0, kc, a);
    const float* pa = packed_a_.data();
    const float* pb = packed_b_.data();
    pool_.parallel_for(row_blocks * col_blocks, [&](std::size_t task, int thread) {
      const long ib = static_cast<long>(task) / col_blocks;
      const long jb = static_cast<long>(task) % col_blocks;
      const long i_end = std::min(m, (ib + 1) * kMC);
      const long j_end = std::min(n, (jb + 1) * kNC);
      float* edge = edge_.data() + thread * kGemmMR * kGemmNR;
      for (long j0 = jb * kNC; j0 < j_end; j0 += kGemmNR) {
        const float* bp = pb + (j0 / kGemmNR) * kGemmNR * kc;
        const long cols = std::min<long>(kGemmNR, n - j0);
        for (long i0 = ib * kMC; i0 < i_end; i0 += kGemmMR) {
          const float* ap = pa + (i0 / kGemmMR) * kGemmMR * kc;
          const long rows = std::min<long>(kGemmMR, m - i0);
          float* ct = c + i0 * ldc + j0;
          if (rows == kGemmMR && cols == kGemmNR) {
            kern.gemm_tile(kc, ap, bp, ct, ldc, alpha, acc);
            continue;
          }
          kern.gemm_tile(kc, ap, bp, edge, kGemmNR, 1.0f, false);
          for (long r = 0; r < rows; ++r)
            for (long q = 0; q < cols; ++q) {
              float& out = ct[r * ldc + q];
              out = (acc ? out : 0.0f) + alpha * edge[r * kGemmNR + q];
            }
        }
      }
    });
  }
}

}  // namespace temper
