// The device seam. The model (model.cpp, sampler.cpp) says WHAT to compute on tensor memory;
// a Backend says WHERE and HOW. Everything device-specific lives behind this interface: the
// choice of SIMD kernels (AVX-512 / AVX2+FMA / generic, kernels.h), the thread pool and the
// per-thread scratch of the CPU backend (backend_cpu.cpp). A GPU backend implements the same
// operations (with device pointers) and the model code does not change.
//
// Contract of every operation: results depend only on the inputs, never on the number of
// threads or on how work is scheduled (see thread_pool.h), so a backend may be swapped for
// another of the same numerics without changing a single bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gemm.h"
#include "kernels.h"
#include "ops.h"

namespace temper {

// torch.optim.AdamW's coefficients at optimizer step `step` (1-based).
inline AdamCoefficients adamw_coefficients(float lr, float beta1, float beta2, float eps, float weight_decay,
                                           float grad_scale, long step) {
  const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(beta1), step));
  const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(beta2), step));
  return {grad_scale, 1.0f - lr * weight_decay, beta1, beta2, lr / bc1, std::sqrt(bc2), eps};
}

// Per-row state of the fused cross-entropy's online softmax over vocabulary blocks.
struct CrossEntropyRows {
  long rows = 0;
  std::vector<float> max;            // running max of the logits seen so far
  std::vector<double> sum;           // Σ exp(z − max) over all entries seen
  std::vector<double> sum_other;     // the same without the target entry
  std::vector<float> target_logit;   // z[target]
  std::vector<float> acc;            // with grad: Σ_{v≠t} exp(z_v − max)·W_v  [rows x dim]
};

class Backend {
 public:
  virtual ~Backend() = default;
  // e.g. "cpu-avx512 x2"
  virtual std::string name() const = 0;
  virtual int threads() const = 0;

  // ---- dense algebra
  // C[m x n] (row stride ldc) = (accumulate ? C : 0) + alpha · A[m x k] · B[k x n]; a bf16
  // operand is widened exactly, compute is float32.
  virtual void gemm(long m, long n, long k, float alpha, MatView a, MatView b, float* c, long ldc,
                    bool accumulate) = 0;

  // ---- elementwise and row operations
  virtual void copy(const float* src, float* dst, long n) = 0;
  virtual void add(float* y, const float* x, long n) = 0;  // y += x
  // out[r, :] = table[tokens[r], :] (table row-major [vocab x dim], float32 or bf16)
  virtual void embed(MatView table, const int32_t* tokens, long rows, long dim, float* out) = 0;
  // table[tokens[r], :] += rows_data[r, :], rows in order (repeated tokens add up in order)
  virtual void scatter_add_rows(float* table, const int32_t* tokens, const float* rows_data, long rows,
                                long dim) = 0;
  // dst[r, :] = scale[r] · src[r, :]
  virtual void scale_rows(const float* src, const float* scale, float* dst, long rows, long dim) = 0;

  // ---- transformer operators (math and layouts documented in ops.h)
  virtual void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, long rows, long dim,
                               float eps) = 0;
  virtual void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                                bool accumulate_dx, float* dw, long rows, long dim) = 0;
  virtual void rope_apply(float* x, long rows, long heads, long hd, const long* positions, const float* cos_table,
                          const float* sin_table, bool inverse) = 0;
  virtual void bias_add(float* y, const float* b, long rows, long n) = 0;
  virtual void bias_backward(const float* dy, float* db, long rows, long n) = 0;
  virtual void swiglu_forward(const float* gate, const float* up, float* act, long n) = 0;
  virtual void swiglu_backward(const float* gate, const float* up, const float* dact, float* dgate, float* dup,
                               long n) = 0;
  virtual void attention_forward(const AttentionShape& s, const std::vector<SeqSpan>& seqs, const float* q,
                                 float* out, float* lse) = 0;
  virtual void attention_backward(const AttentionShape& s, const std::vector<SeqSpan>& seqs, const float* q,
                                  const float* out, const float* dout, const float* lse, float* dq, float* dk,
                                  float* dv) = 0;

  // ---- fused cross-entropy steps (cross_entropy.h composes them with gemm)
  // One vocabulary block [v0, v0+vb) of logits [rows x vb]: updates the online softmax of
  // each row and turns the block into exp(z − max) with the target entry zeroed (the weights
  // of acc's next product); with grad, rescales acc rows when their max grew.
  virtual void softmax_block(float* block, long vb, long v0, const int32_t* targets, CrossEntropyRows& st,
                             long dim, bool grad) = 0;
  // Per row: lse = max + log(sum), logprob = z_t − lse; with grad (w: the unembedding, row-major)
  // grad_out[r] = (sum_other/sum)·W_t − acc/sum = d logprob / d x.
  virtual void softmax_finish(const CrossEntropyRows& st, const int32_t* targets, MatView w, long dim,
                              float* logprobs, float* lse, float* grad_out) = 0;
  // dz[r, :] = g[r]·([v = target_r] − exp(z[r, :] − lse[r])), for logits recomputed in backward.
  virtual void softmax_backward_rows(const float* z, const float* lse, const float* g, const int32_t* targets,
                                     float* dz, long rows, long vocab) = 0;

  // ---- optimizer
  // Σ x² over several buffers, in a fixed order (float32 chunks summed in double).
  virtual double sum_squares(const std::vector<const float*>& buffers, const std::vector<long>& sizes) = 0;
  // One AdamW update of n parameters; the gradient is cleared.
  virtual void adamw_update(float* w, float* g, float* m, float* v, long n, const AdamCoefficients& c) = 0;
};

// The CPU backend: the widest SIMD kernel set the CPU has (TEMPER_SIMD caps it) on `threads`
// threads.
std::unique_ptr<Backend> make_cpu_backend(int threads);

}  // namespace temper
