#include "gemm.h"

#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace temper {
namespace {

constexpr long kKC = 256;  // depth of one packed block (measured best of 128/192/256); fixed, it fixes the sum order
constexpr long kMC = 48;     // rows of A per task (a multiple of every kernel's mr)
constexpr long kSmallM = 4;  // below this many rows, multiply without packing

long ceil_div(long a, long b) { return (a + b - 1) / b; }

template <typename T>
void ensure(std::vector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
}

// Packs rows [i0, i0+mr) x depth [k0, k0+kc) of A as a kc x mr panel (zero rows past m).
void pack_a_panel(float* out, long i0, long m, long k0, long kc, MatView a, int mr) {
  const long rows = std::min<long>(mr, m - i0);
  if (a.h != nullptr) {  // bf16: widen element by element (exact)
    for (long kk = 0; kk < kc; ++kk)
      for (long r = 0; r < mr; ++r) out[kk * mr + r] = r < rows ? a.at(i0 + r, k0 + kk) : 0.0f;
    return;
  }
  if (a.cs == 1) {  // rows of A contiguous: a transposing copy of mr rows side by side
    kernels().pack_transpose(a.p + i0 * a.rs + k0, a.rs, static_cast<int>(rows), mr, kc, out);
    return;
  }
  for (long kk = 0; kk < kc; ++kk)  // general strides
    for (long r = 0; r < mr; ++r) out[kk * mr + r] = r < rows ? a.p[(i0 + r) * a.rs + (k0 + kk) * a.cs] : 0.0f;
}

// Packs depth [k0, k0+kc) x columns [j0, j0+nr) of B as a kc x nr panel (zero past n).
void pack_b_panel(float* out, long j0, long n, long k0, long kc, MatView b, int nr) {
  const long cols = std::min<long>(nr, n - j0);
  if (b.h != nullptr) {  // bf16 weights: widen while packing (exact), so the math is float32
    if (b.cs == 1) {
      for (long kk = 0; kk < kc; ++kk) {
        const uint16_t* src = b.h + (k0 + kk) * b.rs + j0;
        float* o = out + kk * nr;
        long c = 0;
        for (; c < cols; ++c) o[c] = bf16_to_f32(src[c]);
        for (; c < nr; ++c) o[c] = 0.0f;
      }
      return;
    }
    for (long c = 0; c < nr; ++c) {  // columns of B contiguous (Wᵀ): walk each column once
      if (c >= cols) {
        for (long kk = 0; kk < kc; ++kk) out[kk * nr + c] = 0.0f;
        continue;
      }
      const uint16_t* src = b.h + (j0 + c) * b.cs + k0 * b.rs;
      for (long kk = 0; kk < kc; ++kk) out[kk * nr + c] = bf16_to_f32(src[kk * b.rs]);
    }
    return;
  }
  if (b.rs == 1) {  // columns of B contiguous (B = Wᵀ): a transposing copy of nr columns
    kernels().pack_transpose(b.p + k0 + j0 * b.cs, b.cs, static_cast<int>(cols), nr, kc, out);
    return;
  }
  for (long kk = 0; kk < kc; ++kk)  // general strides
    for (long c = 0; c < nr; ++c) out[kk * nr + c] = c < cols ? b.p[(k0 + kk) * b.rs + (j0 + c) * b.cs] : 0.0f;
}

// Packs `panels` consecutive A panels starting at row i0 (panel p at out + p*mr*kc). When
// the columns of A are contiguous (A = dYᵀ) the panels are copied together, one run of
// panels*mr floats per depth, which keeps the hardware prefetchers streaming.
void pack_a_panels(float* out, long i0, long panels, long m, long k0, long kc, MatView a, int mr) {
  if (a.h == nullptr && a.rs == 1) {
    kernels().pack_copy(a.p + k0 * a.cs + i0, a.cs, std::min(panels * mr, m - i0), mr, kc, out);
    return;
  }
  for (long p = 0; p < panels; ++p) pack_a_panel(out + p * mr * kc, i0 + p * mr, m, k0, kc, a, mr);
}

// The same for `panels` consecutive B panels starting at column j0 (rows of B contiguous:
// copied together).
void pack_b_panels(float* out, long j0, long panels, long n, long k0, long kc, MatView b, int nr) {
  if (b.h == nullptr && b.cs == 1) {
    kernels().pack_copy(b.p + k0 * b.rs + j0, b.rs, std::min(panels * nr, n - j0), nr, kc, out);
    return;
  }
  for (long p = 0; p < panels; ++p) pack_b_panel(out + p * nr * kc, j0 + p * nr, n, k0, kc, b, nr);
}

// Multiplies the packed rows [i_begin, i_end) by the packed columns [j_begin, j_end) of one
// depth block into C. pa/pb point at the panels of row i_begin / column j_begin. Rows outer:
// the A panel is reused from L1 across the row of tiles, the B panels come from L2 (keeping
// the larger B panel resident instead lost ~5% to L1 evictions).
// pa == nullptr: A is row-major float32 and read in place (gemm_tile_rows, no packing; its
// last, partial row panel is packed into edge_a, mr x kc floats).
void tile_range(const Kernels& kern, long i_begin, long i_end, long j_begin, long j_end, long m,
                long n, long k0, long kc, const float* pa, MatView a, const float* pb, float alpha,
                float* c, long ldc, bool acc, float* edge, float* edge_a) {
  const int mr = kern.mr, nr = kern.nr;
  for (long i0 = i_begin; i0 < i_end; i0 += mr) {
    const long rows = std::min<long>(mr, m - i0);
    const float* ap;
    long lda = 0;  // > 0: ap points into A itself, rows lda apart
    if (pa != nullptr) {
      ap = pa + ((i0 - i_begin) / mr) * mr * kc;
    } else if (rows == mr) {
      ap = a.p + i0 * a.rs + k0;
      lda = a.rs;
    } else {
      pack_a_panel(edge_a, i0, m, k0, kc, a, mr);
      ap = edge_a;
    }
    const auto tile = [&](const float* bp, float* ct, long ld, float al, bool ac) {
      if (lda > 0) kern.gemm_tile_rows(static_cast<int>(kc), ap, lda, bp, ct, ld, al, ac);
      else kern.gemm_tile(static_cast<int>(kc), ap, bp, ct, ld, al, ac);
    };
    for (long j0 = j_begin; j0 < j_end; j0 += nr) {
      const float* bp = pb + ((j0 - j_begin) / nr) * nr * kc;
      const long cols = std::min<long>(nr, n - j0);
      float* ct = c + i0 * ldc + j0;
      if (rows == mr && cols == nr) {
        tile(bp, ct, ldc, alpha, acc);
        continue;
      }
      tile(bp, edge, nr, 1.0f, false);
      for (long r = 0; r < rows; ++r)
        for (long q = 0; q < cols; ++q) {
          float& out = ct[r * ldc + q];
          out = (acc ? out : 0.0f) + alpha * edge[r * nr + q];
        }
    }
  }
}

// A row-major float32 A is read in place by the micro-kernel: packing it would be a
// transposing copy (the costliest kind) of every row, for the same FMAs in the same order.
bool direct_a(MatView a) { return a.h == nullptr && a.cs == 1; }

// Few rows (decoding one token per sequence): one dot product per output; packing a whole
// weight matrix for a handful of rows would cost more than it saves.
void small_m_columns(long j0, long j1, long m, long k, float alpha, MatView a, MatView b, float* c,
                     long ldc, bool accumulate) {
  const Kernels& kern = kernels();
  const bool contiguous = a.cs == 1 && b.rs == 1 && a.h == nullptr;
  // A bf16 B column is widened into a float32 row first, then the same dot runs on it.
  thread_local std::vector<float> widened;
  if (contiguous && b.h != nullptr && static_cast<long>(widened.size()) < k) widened.resize(k);
  for (long i = 0; i < m; ++i) {
    for (long j = j0; j < j1; ++j) {
      float s;
      if (contiguous) {
        const float* col = widened.data();
        if (b.h == nullptr) col = b.p + j * b.cs;
        else
          for (long kk = 0; kk < k; ++kk) widened[kk] = bf16_to_f32(b.h[j * b.cs + kk]);
        s = kern.dot(a.p + i * a.rs, col, k);
      } else {
        s = 0.0f;
        for (long kk = 0; kk < k; ++kk) s += a.at(i, kk) * b.at(kk, j);
      }
      float& out = c[i * ldc + j];
      out = (accumulate ? out : 0.0f) + alpha * s;
    }
  }
}

bool trivial(long m, long n, long k, float* c, long ldc, bool accumulate) {
  if (m <= 0 || n <= 0) return true;
  if (k > 0) return false;
  if (!accumulate)
    for (long i = 0; i < m; ++i) std::memset(c + i * ldc, 0, sizeof(float) * n);
  return true;
}

// The output is cut into a grid of slabs, each multiplied over the whole depth by one task
// that packs its own panels: one pool round per GEMM and no barrier between depth blocks
// (two rounds per 256-deep block cost about 10% of two-thread scaling). A packed operand is
// packed again by every slab across it, so the grid is chosen to duplicate the smaller one.
struct Grid {
  long row_slabs = 1, col_slabs = 1;
  long rows_per_slab = 0, cols_per_slab = 0;  // multiples of mr / nr, so tiles stay on one grid
  long tasks() const { return row_slabs * col_slabs; }
};

// Packed B columns per slab at most: 1024 x 256-deep floats (1 MB) stay in L2 while the row
// blocks of A stream past them.
constexpr long kMaxSlabCols = 1024;

Grid make_grid(long m, long n, int mr, int nr, long threads, bool direct) {
  const long row_panels = ceil_div(m, mr), col_panels = ceil_div(n, nr);
  const long min_cols = ceil_div(col_panels, ceil_div(kMaxSlabCols, nr));  // the L2 cap
  Grid best;
  double best_cost = -1;
  for (long r = 1; r <= threads; ++r) {
    if (threads % r != 0 || r > row_panels) continue;
    const long per = threads / r;  // column slabs per thread round, so every thread gets work
    const long c = std::min(col_panels, ceil_div(std::max(min_cols, per), per) * per);
    // Extra work per depth step: every column slab packs its rows of A again (a read and a
    // write per element) or, when A is read in place, streams them again (a read: half the
    // cost; measured 5-8% faster than splitting columns on tall X·Wᵀ shapes); every row slab
    // packs its columns of B again. Idle threads cost a share of the whole product.
    const double repack = static_cast<double>(c - 1) * m * (direct ? 0.5 : 1.0) + static_cast<double>(r - 1) * n;
    const long tasks = r * c;
    const double idle = tasks % threads == 0 ? 0.0 : static_cast<double>(m) * n / tasks;
    const double cost = repack + idle;
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best.row_slabs = r;
      best.col_slabs = c;
    }
  }
  best.rows_per_slab = ceil_div(row_panels, best.row_slabs) * mr;
  best.cols_per_slab = ceil_div(col_panels, best.col_slabs) * nr;
  best.row_slabs = ceil_div(m, best.rows_per_slab);
  best.col_slabs = ceil_div(n, best.cols_per_slab);
  return best;
}

// C[i_begin:i_end, j_begin:j_end] over the whole depth, on the calling thread: per 256-deep
// block, pack this slab's B panels, then for each MC-row block pack its A panels (unless A
// is read in place) and run the micro-tiles. Every element gets the same k-order whatever
// the slab, so the grid never changes a result.
void multiply_slab(const Kernels& kern, long i_begin, long i_end, long j_begin, long j_end, long m, long n,
                   long k, float alpha, MatView a, MatView b, float* c, long ldc, bool accumulate,
                   GemmScratch& s) {
  const int mr = kern.mr, nr = kern.nr;
  ensure(s.edge, static_cast<std::size_t>(kMaxGemmMR * kMaxGemmNR));
  ensure(s.edge_a, static_cast<std::size_t>(kMaxGemmMR * kKC));
  const bool direct = direct_a(a);
  const long b_panels = ceil_div(j_end - j_begin, nr);
  for (long k0 = 0; k0 < k; k0 += kKC) {
    const long kc = std::min(kKC, k - k0);
    const bool acc = accumulate || k0 > 0;
    ensure(s.b, static_cast<std::size_t>(b_panels * nr * kc));
    pack_b_panels(s.b.data(), j_begin, b_panels, n, k0, kc, b, nr);
    ensure(s.a, static_cast<std::size_t>(kMC * kc));
    for (long i0 = i_begin; i0 < i_end; i0 += kMC) {
      const long i1 = std::min(i_end, i0 + kMC);
      if (!direct) pack_a_panels(s.a.data(), i0, ceil_div(i1 - i0, mr), m, k0, kc, a, mr);
      tile_range(kern, i0, i1, j_begin, j_end, m, n, k0, kc, direct ? nullptr : s.a.data(), a, s.b.data(), alpha,
                 c, ldc, acc, s.edge.data(), s.edge_a.data());
    }
  }
}

}  // namespace

void gemm_serial(long m, long n, long k, float alpha, MatView a, MatView b, float* c, long ldc,
                 bool accumulate, GemmScratch& s) {
  if (trivial(m, n, k, c, ldc, accumulate)) return;
  if (m <= kSmallM) {
    small_m_columns(0, n, m, k, alpha, a, b, c, ldc, accumulate);
    return;
  }
  multiply_slab(kernels(), 0, m, 0, n, m, n, k, alpha, a, b, c, ldc, accumulate, s);
}

void Gemm::run(long m, long n, long k, float alpha, MatView a, MatView b, float* c, long ldc,
               bool accumulate) {
  if (trivial(m, n, k, c, ldc, accumulate)) return;
  if (m <= kSmallM) {
    const long chunk = 64;
    pool_.parallel_for(ceil_div(n, chunk), [&](std::size_t t, int) {
      const long j0 = static_cast<long>(t) * chunk;
      small_m_columns(j0, std::min(n, j0 + chunk), m, k, alpha, a, b, c, ldc, accumulate);
    });
    return;
  }
  const Kernels& kern = kernels();
  if (scratch_.size() < static_cast<std::size_t>(pool_.size())) scratch_.resize(pool_.size());
  const Grid g = make_grid(m, n, kern.mr, kern.nr, pool_.size(), direct_a(a));
  pool_.parallel_for(g.tasks(), [&](std::size_t task, int thread) {
    const long i0 = (static_cast<long>(task) / g.col_slabs) * g.rows_per_slab;
    const long j0 = (static_cast<long>(task) % g.col_slabs) * g.cols_per_slab;
    multiply_slab(kern, i0, std::min(m, i0 + g.rows_per_slab), j0, std::min(n, j0 + g.cols_per_slab), m, n, k,
                  alpha, a, b, c, ldc, accumulate, scratch_[thread]);
  });
}

}  // namespace temper
