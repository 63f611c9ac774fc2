#include "gemm.h"

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace temper {
namespace {

constexpr long kKC = 256;       // depth of one packed block (fixed: it fixes the sum order)
constexpr long kMC = 48;        // rows of A per task (a multiple of every kernel's mr)
constexpr long kNC = 128;       // columns of B per task (a multiple of every kernel's nr)
constexpr long kSmallM = 4;     // below this many rows, multiply without packing

long ceil_div(long a, long b) { return (a + b - 1) / b; }

template <typename T>
void ensure(std::vector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

void Gemm::pack_a(long m, long k0, long kc, MatView a, int mr) {
  const long panels = ceil_div(m, mr);
  ensure(packed_a_, static_cast<std::size_t>(panels * mr * kc));
  float* dst = packed_a_.data();
  pool_.parallel_for(panels, [&](std::size_t p, int) {
    float* out = dst + p * mr * kc;
    const long i0 = static_cast<long>(p) * mr;
    const long rows = std::min<long>(mr, m - i0);
    if (a.rs == 1) {  // columns of A contiguous (A = dYᵀ): copy column segments
      for (long kk = 0; kk < kc; ++kk) {
        const float* src = a.p + (k0 + kk) * a.cs + i0;
        float* o = out + kk * mr;
        long r = 0;
        for (; r < rows; ++r) o[r] = src[r];
        for (; r < mr; ++r) o[r] = 0.0f;
      }
      return;
    }
    // Rows of A contiguous: read the mr rows side by side (mr sequential streams) so the
    // packed panel is written contiguously; zero rows past the edge.
    const float* src[kMaxGemmMR];
    for (long r = 0; r < mr; ++r) src[r] = a.p + (i0 + std::min(r, rows - 1)) * a.rs + k0 * a.cs;
    for (long kk = 0; kk < kc; ++kk) {
      float* o = out + kk * mr;
      long r = 0;
      for (; r < rows; ++r) o[r] = src[r][kk * a.cs];
      for (; r < mr; ++r) o[r] = 0.0f;
    }
  });
}

void Gemm::pack_b(long n, long k0, long kc, MatView b, int nr) {
  const long panels = ceil_div(n, nr);
  ensure(packed_b_, static_cast<std::size_t>(panels * nr * kc));
  float* dst = packed_b_.data();
  pool_.parallel_for(panels, [&](std::size_t p, int) {
    float* out = dst + p * nr * kc;
    const long j0 = static_cast<long>(p) * nr;
    const long cols = std::min<long>(nr, n - j0);
    if (b.cs == 1) {  // rows of B contiguous: copy row segments
      for (long kk = 0; kk < kc; ++kk) {
        const float* src = b.p + (k0 + kk) * b.rs + j0;
        float* o = out + kk * nr;
        long c = 0;
        for (; c < cols; ++c) o[c] = src[c];
        for (; c < nr; ++c) o[c] = 0.0f;
      }
      return;
    }
    // Columns of B contiguous (B = Wᵀ): read the nr columns side by side, write rows of the
    // panel contiguously.
    const float* src[kMaxGemmNR];
    for (long c = 0; c < nr; ++c) src[c] = b.p + k0 * b.rs + (j0 + std::min(c, cols - 1)) * b.cs;
    for (long kk = 0; kk < kc; ++kk) {
      float* o = out + kk * nr;
      long c = 0;
      for (; c < cols; ++c) o[c] = src[c][kk * b.rs];
      for (; c < nr; ++c) o[c] = 0.0f;
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
  const int mr = kern.mr, nr = kern.nr;
  ensure(edge_, static_cast<std::size_t>(pool_.size() * kMaxGemmMR * kMaxGemmNR));
  const long row_blocks = ceil_div(m, kMC);
  const long col_blocks = ceil_div(n, kNC);
  for (long k0 = 0; k0 < k; k0 += kKC) {
    const long kc = std::min(kKC, k - k0);
    const bool acc = accumulate || k0 > 0;
    pack_b(n, k0, kc, b, nr);
    pack_a(m, k0, kc, a, mr);
    const float* pa = packed_a_.data();
    const float* pb = packed_b_.data();
    pool_.parallel_for(row_blocks * col_blocks, [&](std::size_t task, int thread) {
      const long ib = static_cast<long>(task) / col_blocks;
      const long jb = static_cast<long>(task) % col_blocks;
      const long i_end = std::min(m, (ib + 1) * kMC);
      const long j_end = std::min(n, (jb + 1) * kNC);
      float* edge = edge_.data() + thread * kMaxGemmMR * kMaxGemmNR;
      for (long j0 = jb * kNC; j0 < j_end; j0 += nr) {
        const float* bp = pb + (j0 / nr) * nr * kc;
        const long cols = std::min<long>(nr, n - j0);
        for (long i0 = ib * kMC; i0 < i_end; i0 += mr) {
          const float* ap = pa + (i0 / mr) * mr * kc;
          const long rows = std::min<long>(mr, m - i0);
          float* ct = c + i0 * ldc + j0;
          if (rows == mr && cols == nr) {
            kern.gemm_tile(kc, ap, bp, ct, ldc, alpha, acc);
            continue;
          }
          kern.gemm_tile(kc, ap, bp, edge, nr, 1.0f, false);
          for (long r = 0; r < rows; ++r)
            for (long q = 0; q < cols; ++q) {
              float& out = ct[r * ldc + q];
              out = (acc ? out : 0.0f) + alpha * edge[r * nr + q];
            }
        }
      }
    });
  }
}

}  // namespace temper
