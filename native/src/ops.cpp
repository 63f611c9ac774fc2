#include "ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels.h"

namespace temper {
namespace {

constexpr long kRowsPerTask = 16;
constexpr long kElemsPerTask = 1 << 14;

long ceil_div(long a, long b) { return (a + b - 1) / b; }

// The elementwise loops below are compiled for AVX-512, AVX2 and baseline x86-64, and the
// loader picks the widest the CPU has (GCC function multi-versioning). Each element's
// operations are the same in every version (no FMA: -ffp-contract=off, no reductions), so
// all give identical bits; they need no TEMPER_SIMD switch of their own.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TEMPER_ELEMENTWISE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TEMPER_ELEMENTWISE
#endif

TEMPER_ELEMENTWISE void scale_row(const float* w, const float* x, float inv, float* y, long n) {
  for (long j = 0; j < n; ++j) y[j] = w[j] * (x[j] * inv);
}

TEMPER_ELEMENTWISE void multiply(const float* a, const float* b, float* out, long n) {
  for (long j = 0; j < n; ++j) out[j] = a[j] * b[j];
}

// dx (= or +=) dyw·inv − x·coef
TEMPER_ELEMENTWISE void rmsnorm_dx_row(const float* dyw, const float* x, float inv, float coef, float* dx,
                                       bool accumulate, long n) {
  if (accumulate)
    for (long j = 0; j < n; ++j) dx[j] = dx[j] + (dyw[j] * inv - x[j] * coef);
  else
    for (long j = 0; j < n; ++j) dx[j] = dyw[j] * inv - x[j] * coef;
}

// dw[j] += dy[j]·(x[j]·inv) for one row
TEMPER_ELEMENTWISE void rmsnorm_dw_row(const float* dy, const float* x, float inv, float* dw, long n) {
  for (long j = 0; j < n; ++j) dw[j] += dy[j] * (x[j] * inv);
}

// One head's rotation: (a, b) -> (a·c − b·s', b·c + a·s') with s' = sign·s.
TEMPER_ELEMENTWISE void rope_head(float* v, const float* c, const float* s, float sign, long half) {
  for (long i = 0; i < half; ++i) {
    const float a = v[i];
    const float b = v[i + half];
    const float si = sign * s[i];
    v[i] = a * c[i] - b * si;
    v[i + half] = b * c[i] + a * si;
  }
}

TEMPER_ELEMENTWISE void negate(const float* x, float* out, long n) {
  for (long i = 0; i < n; ++i) out[i] = -x[i];
}

// e -> 1 / (1 + e), in place
TEMPER_ELEMENTWISE void logistic_from_exp(float* e, long n) {
  for (long i = 0; i < n; ++i) e[i] = 1.0f / (1.0f + e[i]);
}

TEMPER_ELEMENTWISE void swiglu_forward_span(const float* gate, const float* sig, const float* up, float* act,
                                            long n) {
  for (long i = 0; i < n; ++i) act[i] = (gate[i] * sig[i]) * up[i];
}

TEMPER_ELEMENTWISE void swiglu_backward_span(const float* gate, const float* up, const float* dact,
                                             const float* sig, float* dgate, float* dup, long n) {
  for (long i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = sig[i];
    dup[i] = dact[i] * (g * s);
    dgate[i] = dact[i] * up[i] * (s * (1.0f + g * (1.0f - s)));
  }
}

}  // namespace

void rmsnorm_forward(ThreadPool& pool, const float* x, const float* w, float* y, float* rstd,
                     long rows, long dim, float eps) {
  pool.parallel_for(ceil_div(rows, kRowsPerTask), [&](std::size_t t, int) {
    const long r1 = std::min(rows, static_cast<long>(t + 1) * kRowsPerTask);
    for (long r = static_cast<long>(t) * kRowsPerTask; r < r1; ++r) {
      const float* xr = x + r * dim;
      const double ss = kernels().dot(xr, xr, dim);  // fixed-order SIMD sum of squares
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
      rstd[r] = inv;
      scale_row(w, xr, inv, y + r * dim, dim);
    }
  });
}

void rmsnorm_backward(ThreadPool& pool, const float* dy, const float* x, const float* w,
                      const float* rstd, float* dx, bool accumulate_dx, float* dw, long rows,
                      long dim) {
  // dx = rstd·(w⊙dy) − x·rstd³·mean(x ⊙ w⊙dy)
  pool.parallel_for(ceil_div(rows, kRowsPerTask), [&](std::size_t t, int) {
    thread_local std::vector<float> dyw;  // w ⊙ dy of one row
    if (static_cast<long>(dyw.size()) < dim) dyw.resize(dim);
    const long r1 = std::min(rows, static_cast<long>(t + 1) * kRowsPerTask);
    for (long r = static_cast<long>(t) * kRowsPerTask; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      const float inv = rstd[r];
      multiply(dyr, w, dyw.data(), dim);
      const double dot = kernels().dot(dyw.data(), xr, dim);
      const float coef = static_cast<float>(dot / dim) * inv * inv * inv;
      rmsnorm_dx_row(dyw.data(), xr, inv, coef, dx + r * dim, accumulate_dx, dim);
    }
  });
  if (dw == nullptr) return;
  // Weight gradient: a reduction over rows, so split by columns (each column summed by one
  // task, rows in order) to keep it independent of the thread count.
  const long cols_per_task = 16;
  pool.parallel_for(ceil_div(dim, cols_per_task), [&](std::size_t t, int) {
    const long j0 = static_cast<long>(t) * cols_per_task;
    const long j1 = std::min(dim, j0 + cols_per_task);
    for (long r = 0; r < rows; ++r) rmsnorm_dw_row(dy + r * dim + j0, x + r * dim + j0, rstd[r], dw + j0, j1 - j0);
  });
}

void bias_add(ThreadPool& pool, float* y, const float* b, long rows, long n) {
  pool.parallel_for(ceil_div(rows, kRowsPerTask), [&](std::size_t t, int) {
    const long r1 = std::min(rows, static_cast<long>(t + 1) * kRowsPerTask);
    for (long r = static_cast<long>(t) * kRowsPerTask; r < r1; ++r) {
      float* yr = y + r * n;
      for (long j = 0; j < n; ++j) yr[j] += b[j];
    }
  });
}

void bias_backward(ThreadPool& pool, const float* dy, float* db, long rows, long n) {
  // A reduction over rows: split by columns so the sum order never depends on the threads.
  constexpr long cols_per_task = 64;
  pool.parallel_for(ceil_div(n, cols_per_task), [&](std::size_t t, int) {
    const long j0 = static_cast<long>(t) * cols_per_task;
    const long j1 = std::min(n, j0 + cols_per_task);
    double acc[cols_per_task] = {};  // summed in double: thousands of rows lose no precision
    for (long r = 0; r < rows; ++r) {
      const float* dyr = dy + r * n;
      for (long j = j0; j < j1; ++j) acc[j - j0] += dyr[j];
    }
    for (long j = j0; j < j1; ++j) db[j] += static_cast<float>(acc[j - j0]);
  });
}

void rope_apply(ThreadPool& pool, float* x, long rows, long heads, long hd, const long* positions,
                const float* cos_table, const float* sin_table, bool inverse) {
  const long half = hd / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  pool.parallel_for(ceil_div(rows, kRowsPerTask), [&](std::size_t t, int) {
    const long r1 = std::min(rows, static_cast<long>(t + 1) * kRowsPerTask);
    for (long r = static_cast<long>(t) * kRowsPerTask; r < r1; ++r) {
      const float* c = cos_table + positions[r] * half;
      const float* s = sin_table + positions[r] * half;
      for (long h = 0; h < heads; ++h) rope_head(x + (r * heads + h) * hd, c, s, sign, half);
    }
  });
}

namespace {

// sig[i] = 1 / (1 + exp(-g[i])) for a chunk of at most kSigmoidChunk elements.
constexpr long kSigmoidChunk = 256;
void sigmoid_chunk(const float* g, long n, float* sig) {
  negate(g, sig, n);
  kernels().exp_shifted(sig, n, 0.0f);
  logistic_from_exp(sig, n);
}

}  // namespace

void swiglu_forward(ThreadPool& pool, const float* gate, const float* up, float* act, long n) {
  pool.parallel_for(ceil_div(n, kElemsPerTask), [&](std::size_t t, int) {
    const long i1 = std::min(n, static_cast<long>(t + 1) * kElemsPerTask);
    float sig[kSigmoidChunk];
    for (long c = static_cast<long>(t) * kElemsPerTask; c < i1; c += kSigmoidChunk) {
      const long len = std::min(kSigmoidChunk, i1 - c);
      sigmoid_chunk(gate + c, len, sig);
      swiglu_forward_span(gate + c, sig, up + c, act + c, len);
    }
  });
}

void swiglu_backward(ThreadPool& pool, const float* gate, const float* up, const float* dact,
                     float* dgate, float* dup, long n) {
  pool.parallel_for(ceil_div(n, kElemsPerTask), [&](std::size_t t, int) {
    const long i1 = std::min(n, static_cast<long>(t + 1) * kElemsPerTask);
    float sigs[kSigmoidChunk];
    for (long c = static_cast<long>(t) * kElemsPerTask; c < i1; c += kSigmoidChunk) {
      const long len = std::min(kSigmoidChunk, i1 - c);
      sigmoid_chunk(gate + c, len, sigs);
      swiglu_backward_span(gate + c, up + c, dact + c, sigs, dgate + c, dup + c, len);
    }
  });
}

namespace {

constexpr long kAttnRows = 64;  // query rows per block

// Q rows [r0, r1) of head h of a span, as a matrix view.
MatView query_rows(const float* q, const SeqSpan& sp, long r0, long h, long q_stride, long hd) {
  return {q + (sp.offset + r0) * q_stride + h * hd, q_stride, 1};
}

}  // namespace

void attention_forward(ThreadPool& pool, const AttentionShape& s, const std::vector<SeqSpan>& seqs,
                       const float* q, float* out, float* lse, std::vector<AttentionScratch>& scratch) {
  const long hd = s.hd;
  const long kv_stride = s.kv_heads * hd;
  const long q_stride = s.heads * hd;
  const long group = s.heads / s.kv_heads;
  // Tasks: (sequence, head, block of query rows). Forward has no cross-row reduction.
  struct Task {
    long seq, head, row0;
  };
  std::vector<Task> tasks;
  for (long si = 0; si < static_cast<long>(seqs.size()); ++si)
    for (long h = 0; h < s.heads; ++h)
      for (long r = 0; r < seqs[si].len; r += kAttnRows) tasks.push_back({si, h, r});
  pool.parallel_for(tasks.size(), [&](std::size_t ti, int thread) {
    const Task& task = tasks[ti];
    const SeqSpan& sp = seqs[task.seq];
    const long kvh = task.head / group;
    const long r0 = task.row0;
    const long rows = std::min(sp.len, r0 + kAttnRows) - r0;
    const long nk = sp.start + r0 + rows;  // keys visible to the block's last row
    AttentionScratch& scr = scratch[thread];
    if (static_cast<long>(scr.scores.size()) < rows * nk) scr.scores.resize(rows * nk);
    float* sc = scr.scores.data();
    // scores = scale · Q·Kᵀ
    gemm_serial(rows, nk, hd, s.scale, query_rows(q, sp, r0, task.head, q_stride, hd), {sp.keys + kvh * hd, 1, kv_stride}, sc,
                nk, false, scr.gemm);
    for (long i = 0; i < rows; ++i) {  // causal softmax, row by row
      float* row = sc + i * nk;
      const long valid = sp.start + r0 + i + 1;
      const float mx = kernels().reduce_max(row, valid);
      kernels().exp_shifted(row, valid, -mx);
      const double sum = kernels().sum_f64(row, valid);
      const float inv = static_cast<float>(1.0 / sum);
      for (long j = 0; j < valid; ++j) row[j] *= inv;
      std::fill(row + valid, row + nk, 0.0f);
      lse[(sp.offset + r0 + i) * s.heads + task.head] = mx + static_cast<float>(std::log(sum));
    }
    // out = P·V
    gemm_serial(rows, hd, nk, 1.0f, {sc, nk, 1}, {sp.values + kvh * hd, kv_stride, 1},
                out + (sp.offset + r0) * q_stride + task.head * hd, q_stride, false, scr.gemm);
  });
}

void attention_backward(ThreadPool& pool, const AttentionShape& s,
                        const std::vector<SeqSpan>& seqs, const float* q, const float* out,
                        const float* dout, const float* lse, float* dq, float* dk, float* dv,
                        std::vector<AttentionScratch>& scratch) {
  const Kernels& kern = kernels();
  const long hd = s.hd;
  const long kv_stride = s.kv_heads * hd;
  const long q_stride = s.heads * hd;
  const long group = s.heads / s.kv_heads;
  // Tasks: (sequence, kv head). dk/dv rows are sums over query rows and over the heads of
  // the group, so one task owns them all and adds in a fixed order.
  const long ntasks = static_cast<long>(seqs.size()) * s.kv_heads;
  pool.parallel_for(ntasks, [&](std::size_t ti, int thread) {
    const SeqSpan& sp = seqs[ti / s.kv_heads];
    const long kvh = static_cast<long>(ti) % s.kv_heads;
    AttentionScratch& scr = scratch[thread];
    const MatView keys{sp.keys + kvh * hd, kv_stride, 1};
    const MatView keys_t{sp.keys + kvh * hd, 1, kv_stride};
    const MatView values_t{sp.values + kvh * hd, 1, kv_stride};
    float* dk_seq = dk + sp.offset * kv_stride + kvh * hd;
    float* dv_seq = dv + sp.offset * kv_stride + kvh * hd;
    for (long h = kvh * group; h < (kvh + 1) * group; ++h) {
      for (long r0 = 0; r0 < sp.len; r0 += kAttnRows) {
        const long rows = std::min(sp.len, r0 + kAttnRows) - r0;
        const long nk = r0 + rows;
        if (static_cast<long>(scr.scores.size()) < rows * nk) scr.scores.resize(rows * nk);
        if (static_cast<long>(scr.dprobs.size()) < rows * nk) scr.dprobs.resize(rows * nk);
        float* p = scr.scores.data();
        float* dp = scr.dprobs.data();
        const MatView q_blk = query_rows(q, sp, r0, h, q_stride, hd);
        const MatView do_blk = query_rows(dout, sp, r0, h, q_stride, hd);
        // Recompute P = exp(scale·Q·Kᵀ − lse) and get dP = dO·Vᵀ.
        gemm_serial(rows, nk, hd, s.scale, q_blk, keys_t, p, nk, false, scr.gemm);
        gemm_serial(rows, nk, hd, 1.0f, do_blk, values_t, dp, nk, false, scr.gemm);
        for (long i = 0; i < rows; ++i) {
          const long row = sp.offset + r0 + i;
          const float l = lse[row * s.heads + h];
          const float d_i = kern.dot(dout + row * q_stride + h * hd, out + row * q_stride + h * hd, hd);
          float* pi = p + i * nk;
          float* dsi = dp + i * nk;  // dP becomes dS = P ⊙ (dP − D)·scale in place
          const long valid = r0 + i + 1;
          kern.exp_shifted(pi, valid, -l);
          for (long j = 0; j < valid; ++j) dsi[j] = pi[j] * (dsi[j] - d_i) * s.scale;
          std::fill(pi + valid, pi + nk, 0.0f);
          std::fill(dsi + valid, dsi + nk, 0.0f);
        }
        // dQ = dS·K;  dK += dSᵀ·Q;  dV += Pᵀ·dO
        gemm_serial(rows, hd, nk, 1.0f, {dp, nk, 1}, keys, dq + (sp.offset + r0) * q_stride + h * hd, q_stride, false,
                    scr.gemm);
        gemm_serial(nk, hd, rows, 1.0f, {dp, 1, nk}, q_blk, dk_seq, kv_stride, true, scr.gemm);
        gemm_serial(nk, hd, rows, 1.0f, {p, 1, nk}, do_blk, dv_seq, kv_stride, true, scr.gemm);
      }
    }
  });
}

}  // namespace temper
