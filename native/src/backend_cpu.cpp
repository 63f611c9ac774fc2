// The CPU backend: run-time-chosen SIMD kernels (kernels.h), a thread pool, the packed GEMM
// (gemm.h) and the row-parallel operators (ops.h). Every operation splits its work so each
// output is written by one task, which keeps results independent of the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "backend.h"
#include "kernels.h"
#include "thread_pool.h"

namespace temper {
namespace {

constexpr long kChunk = 1 << 14;  // elements per task of the elementwise operations

long ceil_div(long a, long b) { return (a + b - 1) / b; }

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads), gemm_(pool_), scratch_(threads) {}

  std::string name() const override { return std::string("cpu-") + kernels().name + " x" + std::to_string(pool_.size()); }
  int threads() const override { return pool_.size(); }

  void gemm(long m, long n, long k, float alpha, MatView a, MatView b, float* c, long ldc, bool accumulate) override {
    gemm_.run(m, n, k, alpha, a, b, c, ldc, accumulate);
  }

  void copy(const float* src, float* dst, long n) override {
    pool_.parallel_for(ceil_div(n, kChunk), [&](std::size_t t, int) {
      const long i0 = static_cast<long>(t) * kChunk;
      std::memcpy(dst + i0, src + i0, sizeof(float) * std::min(kChunk, n - i0));
    });
  }

  void add(float* y, const float* x, long n) override {
    pool_.parallel_for(ceil_div(n, kChunk), [&](std::size_t t, int) {
      const long i1 = std::min(n, static_cast<long>(t + 1) * kChunk);
      for (long i = static_cast<long>(t) * kChunk; i < i1; ++i) y[i] += x[i];
    });
  }

  void embed(MatView table, const int32_t* tokens, long rows, long dim, float* out) override {
    pool_.parallel_for(rows, [&](std::size_t r, int) {
      const long row = tokens[r];
      float* o = out + static_cast<long>(r) * dim;
      if (table.h != nullptr) {
        const uint16_t* src = table.h + row * table.rs;
        for (long j = 0; j < dim; ++j) o[j] = bf16_to_f32(src[j]);
      } else {
        std::memcpy(o, table.p + row * table.rs, sizeof(float) * dim);
      }
    });
  }

  void scatter_add_rows(float* table, const int32_t* tokens, const float* rows_data, long rows, long dim) override {
    // Split by columns: every task walks all rows in order, so repeated tokens add up in the
    // same order whatever the thread count. 64 columns (four cache lines) per task, so even a
    // small hidden size is shared between threads.
    const long cols = 64;
    pool_.parallel_for(ceil_div(dim, cols), [&](std::size_t t, int) {
      const long j0 = static_cast<long>(t) * cols, j1 = std::min(dim, j0 + cols);
      for (long i = 0; i < rows; ++i) {
        float* row = table + static_cast<long>(tokens[i]) * dim;
        const float* d = rows_data + i * dim;
        for (long j = j0; j < j1; ++j) row[j] += d[j];
      }
    });
  }

  void scale_rows(const float* src, const float* scale, float* dst, long rows, long dim) override {
    pool_.parallel_for(rows, [&](std::size_t i, int) {
      const float g = scale[i];
      const float* s = src + static_cast<long>(i) * dim;
      float* d = dst + static_cast<long>(i) * dim;
      for (long j = 0; j < dim; ++j) d[j] = g * s[j];
    });
  }

  void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, long rows, long dim, float eps) override {
    temper::rmsnorm_forward(pool_, x, w, y, rstd, rows, dim, eps);
  }
  void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                        bool accumulate_dx, float* dw, long rows, long dim) override {
    temper::rmsnorm_backward(pool_, dy, x, w, rstd, dx, accumulate_dx, dw, rows, dim);
  }
  void rope_apply(float* x, long rows, long heads, long hd, const long* positions, const float* cos_table,
                  const float* sin_table, bool inverse) override {
    temper::rope_apply(pool_, x, rows, heads, hd, positions, cos_table, sin_table, inverse);
  }
  void bias_add(float* y, const float* b, long rows, long n) override { temper::bias_add(pool_, y, b, rows, n); }
  void bias_backward(const float* dy, float* db, long rows, long n) override {
    temper::bias_backward(pool_, dy, db, rows, n);
  }
  void swiglu_forward(const float* gate, const float* up, float* act, long n) override {
    temper::swiglu_forward(pool_, gate, up, act, n);
  }
  void swiglu_backward(const float* gate, const float* up, const float* dact, float* dgate, float* dup,
                       long n) override {
    temper::swiglu_backward(pool_, gate, up, dact, dgate, dup, n);
  }
  void attention_forward(const AttentionShape& s, const std::vector<SeqSpan>& seqs, const float* q, float* out,
                         float* lse) override {
    temper::attention_forward(pool_, s, seqs, q, out, lse, scratch_);
  }
  void attention_backward(const AttentionShape& s, const std::vector<SeqSpan>& seqs, const float* q,
                          const float* out, const float* dout, const float* lse, float* dq, float* dk,
                          float* dv) override {
    temper::attention_backward(pool_, s, seqs, q, out, dout, lse, dq, dk, dv, scratch_);
  }

  void softmax_block(float* block, long vb, long v0, const int32_t* targets, CrossEntropyRows& st, long dim,
                     bool grad) override {
    const Kernels& kern = kernels();
    pool_.parallel_for(st.rows, [&](std::size_t i, int) {
      float* z = block + static_cast<long>(i) * vb;
      const long t = static_cast<long>(targets[i]) - v0;
      const bool has_t = t >= 0 && t < vb;
      float bmax = -INFINITY;
      for (long v = 0; v < vb; ++v) bmax = std::max(bmax, z[v]);
      const float m_old = st.max[i];
      const float m_new = std::max(m_old, bmax);
      if (has_t) st.target_logit[i] = z[t];
      kern.exp_shifted(z, vb, -m_new);
      double e_t = 0.0;
      if (has_t) {
        e_t = z[t];
        z[t] = 0.0f;
      }
      double other = 0.0;
      for (long v = 0; v < vb; ++v) other += z[v];
      const double scale = m_old == -INFINITY ? 0.0 : std::exp(static_cast<double>(m_old) - static_cast<double>(m_new));
      st.sum_other[i] = st.sum_other[i] * scale + other;
      st.sum[i] = st.sum[i] * scale + other + e_t;
      st.max[i] = m_new;
      if (grad && m_new != m_old) {
        float* acc = st.acc.data() + static_cast<long>(i) * dim;
        const float sf = static_cast<float>(scale);
        for (long j = 0; j < dim; ++j) acc[j] *= sf;
      }
    });
  }

  void softmax_finish(const CrossEntropyRows& st, const int32_t* targets, MatView w, long dim, float* logprobs,
                      float* lse, float* grad_out) override {
    pool_.parallel_for(st.rows, [&](std::size_t i, int) {
      const double s = st.sum[i];
      const float l = st.max[i] + static_cast<float>(std::log(s));
      lse[i] = l;
      logprobs[i] = st.target_logit[i] - l;
      if (grad_out == nullptr) return;
      const float p_other = static_cast<float>(st.sum_other[i] / s);
      const float inv = static_cast<float>(1.0 / s);
      const long t = targets[i];
      const float* acc = st.acc.data() + static_cast<long>(i) * dim;
      float* g = grad_out + static_cast<long>(i) * dim;
      for (long j = 0; j < dim; ++j) g[j] = p_other * w.at(t, j) - inv * acc[j];
    });
  }

  void softmax_backward_rows(const float* z, const float* lse, const float* g, const int32_t* targets, float* dz,
                             long rows, long vocab) override {
    const Kernels& kern = kernels();
    pool_.parallel_for(rows, [&](std::size_t i, int) {
      const float* zi = z + static_cast<long>(i) * vocab;
      float* d = dz + static_cast<long>(i) * vocab;
      std::copy(zi, zi + vocab, d);
      kern.exp_shifted(d, vocab, -lse[i]);
      for (long v = 0; v < vocab; ++v) d[v] *= -g[i];
      d[targets[i]] += g[i];
    });
  }

  double sum_squares(const std::vector<const float*>& buffers, const std::vector<long>& sizes) override {
    struct Piece {
      const float* p;
      long n;
    };
    std::vector<Piece> pieces;
    for (std::size_t b = 0; b < buffers.size(); ++b)
      for (long i = 0; i < sizes[b]; i += kSquaresPiece)
        pieces.push_back({buffers[b] + i, std::min(kSquaresPiece, sizes[b] - i)});
    std::vector<double> sums(pieces.size());
    const Kernels& kern = kernels();
    pool_.parallel_for(pieces.size(), [&](std::size_t c, int) { sums[c] = kern.dot(pieces[c].p, pieces[c].p, pieces[c].n); });
    double total = 0.0;
    for (double x : sums) total += x;
    return total;
  }

  void adamw_update(float* w, float* g, float* m, float* v, long n, const AdamCoefficients& c) override {
    pool_.parallel_for(ceil_div(n, kChunk), [&](std::size_t t, int) {
      const long i0 = static_cast<long>(t) * kChunk;
      const long len = std::min(n - i0, kChunk);
      kernels().adamw(w + i0, g + i0, m + i0, v + i0, w + i0, len, c);
      std::memset(g + i0, 0, sizeof(float) * len);  // the chunk is still in cache
    });
  }

 private:
  ThreadPool pool_;
  Gemm gemm_;
  std::vector<AttentionScratch> scratch_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  if (threads < 1 || threads > 1024) throw std::invalid_argument("threads must be between 1 and 1024");
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace temper
