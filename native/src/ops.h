// Row-wise transformer operators with their backward passes. Each parallelises over rows,
// heads or columns so that every output is written by exactly one task (see thread_pool.h).
#pragma once

#include <vector>

#include "gemm.h"
#include "thread_pool.h"

namespace temper {

// y = x / sqrt(mean(x²) + eps) * w over rows of length dim; rstd[r] saved for backward.
void rmsnorm_forward(ThreadPool& pool, const float* x, const float* w, float* y, float* rstd,
                     long rows, long dim, float eps);

// dx (= or +=) d/dx; dw += d/dw (dw may be null when the weight is frozen).
void rmsnorm_backward(ThreadPool& pool, const float* dy, const float* x, const float* w,
                      const float* rstd, float* dx, bool accumulate_dx, float* dw, long rows,
                      long dim);

// Rotary embedding (HF rotate_half layout) on `heads` heads of size hd per row, in place.
// cos/sin tables are [positions x hd/2]; inverse=true applies the transposed rotation
// (the backward pass).
void rope_apply(ThreadPool& pool, float* x, long rows, long heads, long hd, const long* positions,
                const float* cos_table, const float* sin_table, bool inverse);

// y[r, :] += b for each of `rows` rows of width n (a linear layer's bias).
void bias_add(ThreadPool& pool, float* y, const float* b, long rows, long n);
// db += Σ_r dy[r, :] (a bias gradient: each column summed by one task, rows in order).
void bias_backward(ThreadPool& pool, const float* dy, float* db, long rows, long n);

// act = silu(gate) * up
void swiglu_forward(ThreadPool& pool, const float* gate, const float* up, float* act, long n);
// dgate, dup from dact
void swiglu_backward(ThreadPool& pool, const float* gate, const float* up, const float* dact,
                     float* dgate, float* dup, long n);

// One sequence as attention sees it: `len` new query rows starting at row `offset` of the
// q buffer, at absolute positions start..start+len-1, attending causally to keys/values
// rows 0..start+len-1 at `keys`/`values` (row stride kv_heads*hd).
struct SeqSpan {
  long offset;
  long len;
  long start;
  const float* keys;
  const float* values;
};

struct AttentionShape {
  long heads;
  long kv_heads;
  long hd;
  float scale;
};

// Per-thread working memory of the attention kernels.
struct AttentionScratch {
  std::vector<float> scores;  // a block of query rows x keys
  std::vector<float> dprobs;
  GemmScratch gemm;
};

// out[row, h, :] = softmax(q·kᵀ·scale) · v; lse[row * heads + h] saved for backward.
// Computed block by block as small matrix products (gemm_serial) on each thread.
void attention_forward(ThreadPool& pool, const AttentionShape& s, const std::vector<SeqSpan>& seqs,
                       const float* q, float* out, float* lse, std::vector<AttentionScratch>& scratch);

// Given dout, writes dq and accumulates dk, dv (same layout as keys/values of each span,
// which must be the training buffers: start == 0).
void attention_backward(ThreadPool& pool, const AttentionShape& s,
                        const std::vector<SeqSpan>& seqs, const float* q, const float* out,
                        const float* dout, const float* lse, float* dq, float* dk, float* dv,
                        std::vector<AttentionScratch>& scratch);

}  // namespace temper
