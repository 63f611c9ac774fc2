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

}  // namespace

void rmsnorm_forward(ThreadPool& pool, const float* x, const float* w, float* y, float* rstd,
                     long rows, long dim, float eps) {
  pool.parallel_for(ceil_div(rows, kRowsPerTask), [&](std::size_t t, int) {
    const long r1 = std::min(rows, static_cast<long>(t + 1) * kRowsPerTask);
    for (long r = static_cast<long>(t) * kRowsPerTask; r < r1; ++r) {
      const float* xr = x + r * dim;
      double ss = 0.0;  // double: the mean of squares is the one reduction worth guarding
      for (long j = 0; j < dim; ++j) ss += static_cast<double>(xr[j]) * xr[j];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
      rstd[r] = inv;
      float* yr = y + r * dim;
      for (long j = 0; j < dim; ++j) yr[j] = w[j] * (xr[j] * inv);
    }
  });
}

void rmsnorm_backward(ThreadPool& pool, const float* dy, const float* x, const float* w,
                      const float* rstd, float* dx, bool accumulate_dx, float* dw, long rows,
                      long dim) {
  // dx = rstd·(w⊙dy) − x·rstd³·mean(x ⊙ w⊙dy)
  pool.parallel_for(ceil_div(rows, kRowsPerTask), [&](std::size_t t, int) {
    const long r1 = std::min(rows, static_cast<long>(t + 1) * kRowsPerTask);
    for (long r = static_cast<long>(t) * kRowsPerTask; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      const float inv = rstd[r];
      double dot = 0.0;
      for (long j = 0; j < dim; ++j) dot += static_cast<double>(dyr[j]) * w[j] * xr[j];
      const float coef = static_cast<float>(dot / dim) * inv * inv * inv;
      float* dxr = dx + r * dim;
      for (long j = 0; j < dim; ++j) {
        const float g = (dyr[j] * w[j]) * inv - xr[j] * coef;
        dxr[j] = accumulate_dx ? dxr[j] + g : g;
      }
    }
  });
  if (dw == nullptr) return;
  // Weight gradient: a reduction over rows, so split by columns (each column summed by one
  // task, rows in order) to keep it independent of the thread count.
  const long cols_per_task = 16;
  pool.parallel_for(ceil_div(dim, cols_per_task), [&](std::size_t t, int) {
    const long j0 = static_cast<long>(t) * cols_per_task;
    const long j1 = std::min(dim, j0 + cols_per_task);
    for (long r = 0; r < rows; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      const float inv = rstd[r];
      for (long j = j0; j < j1; ++j) dw[j] += dyr[j] * (xr[j] * inv);
    }
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
      for (long h = 0; h < heads; ++h) {
        float* v = x + (r * heads + h) * hd;
        for (long i = 0; i < half; ++i) {
          const float a = v[i];
          const float b = v[i + half];
          const float si = sign * s[i];
          v[i] = a * c[i] - b * si;
          v[i + half] = b * c[i] + a * si;
        }
      }
    }
  });
}

void swiglu_forward(ThreadPool& pool, const float* gate, const float* up, float* act, long n) {
  pool.parallel_for(ceil_div(n, kElemsPerTask), [&](std::size_t t, int) {
    const long i1 = std::min(n, static_cast<long>(t + 1) * kElemsPerTask);
    for (long i = static_cast<long>(t) * kElemsPerTask; i < i1; ++i) {
      const float g = gate[i];
      act[i] = (g / (1.0f + std::exp(-g))) * up[i];
    }
  });
}

void swiglu_backward(ThreadPool& pool, const float* gate, const float* up, const float* dact,
                     float* dgate, float* dup, long n) {
  pool.parallel_for(ceil_div(n, kElemsPerTask), [&](std::size_t t, int) {
    const long i1 = std::min(n, static_cast<long>(t + 1) * kElemsPerTask);
    for (long i = static_cast<long>(t) * kElemsPerTask; i < i1; ++i) {
      const float g = gate[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      const float silu = g * sig;
      dup[i] = dact[i] * silu;
      dgate[i] = dact[i] * up[i] * (sig * (1.0f + g * (1.0f - sig)));
    }
  });
}

void attention_forward(ThreadPool& pool, const AttentionShape& s, const std::vector<SeqSpan>& seqs,
                       const float* q, float* out, float* lse,
                       std::vector<std::vector<float>>& scratch) {
  const Kernels& kern = kernels();
  const long hd = s.hd;
  const long kv_stride = s.kv_heads * hd;
  const long q_stride = s.heads * hd;
  const long group = s.heads / s.kv_heads;
  // Tasks: (sequence, head, block of query rows). Forward has no cross-row reduction.
  constexpr long kRowBlock = 32;
  struct Task {
    long seq, head, row0;
  };
  std::vector<Task> tasks;
  for (long si = 0; si < static_cast<long>(seqs.size()); ++si)
    for (long h = 0; h < s.heads; ++h)
      for (long r = 0; r < seqs[si].len; r += kRowBlock) tasks.push_back({si, h, r});
  pool.parallel_for(tasks.size(), [&](std::size_t ti, int thread) {
    const Task& task = tasks[ti];
    const SeqSpan& sp = seqs[task.seq];
    const long kvh = task.head / group;
    std::vector<float>& p = scratch[thread];
    if (static_cast<long>(p.size()) < sp.start + sp.len) p.resize(sp.start + sp.len);
    const long r1 = std::min(sp.len, task.row0 + kRowBlock);
    for (long i = task.row0; i < r1; ++i) {
      const long row = sp.offset + i;
      const float* qi = q + row * q_stride + task.head * hd;
      const long nk = sp.start + i + 1;
      float mx = -INFINITY;
      for (long j = 0; j < nk; ++j) {
        const float sc = kern.dot(qi, sp.keys + j * kv_stride + kvh * hd, hd) * s.scale;
        p[j] = sc;
        mx = std::max(mx, sc);
      }
      double sum = 0.0;
      for (long j = 0; j < nk; ++j) {
        p[j] = std::exp(p[j] - mx);
        sum += p[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* oi = out + row * q_stride + task.head * hd;
      std::memset(oi, 0, sizeof(float) * hd);
      for (long j = 0; j < nk; ++j) kern.axpy(p[j] * inv, sp.values + j * kv_stride + kvh * hd, oi, hd);
      lse[row * s.heads + task.head] = mx + static_cast<float>(std::log(sum));
    }
  });
}

void attention_backward(ThreadPool& pool, const AttentionShape& s,
                        const std::vector<SeqSpan>& seqs, const float* q, const float* out,
                        const float* dout, const float* lse, float* dq, float* dk, float* dv,
                        std::vector<std::vector<float>>& scratch) {
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
    std::vector<float>& buf = scratch[thread];
    if (static_cast<long>(buf.size()) < 2 * sp.len) buf.resize(2 * sp.len);
    float* p = buf.data();
    float* dp = buf.data() + sp.len;
    float* dk_seq = dk + sp.offset * kv_stride;
    float* dv_seq = dv + sp.offset * kv_stride;
    for (long h = kvh * group; h < (kvh + 1) * group; ++h) {
      for (long i = 0; i < sp.len; ++i) {
        const long row = sp.offset + i;
        const float* qi = q + row * q_stride + h * hd;
        const float* doi = dout + row * q_stride + h * hd;
        const float* oi = out + row * q_stride + h * hd;
        const float l = lse[row * s.heads + h];
        const long nk = i + 1;
        const float d_i = kern.dot(doi, oi, hd);
        for (long j = 0; j < nk; ++j) {
          const float* kj = sp.keys + j * kv_stride + kvh * hd;
          const float* vj = sp.values + j * kv_stride + kvh * hd;
          p[j] = std::exp(kern.dot(qi, kj, hd) * s.scale - l);
          dp[j] = kern.dot(doi, vj, hd);
        }
        float* dqi = dq + row * q_stride + h * hd;
        std::memset(dqi, 0, sizeof(float) * hd);
        for (long j = 0; j < nk; ++j) {
          const float ds = p[j] * (dp[j] - d_i) * s.scale;
          kern.axpy(ds, sp.keys + j * kv_stride + kvh * hd, dqi, hd);
          kern.axpy(ds, qi, dk_seq + j * kv_stride + kvh * hd, hd);
          kern.axpy(p[j], doi, dv_seq + j * kv_stride + kvh * hd, hd);
        }
      }
    }
  });
}

}  // namespace temper
