#include "cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace temper {
namespace {

template <typename T>
void ensure(std::vector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
}

// Rows [row0, ...) of a row-major view.
MatView from_row(MatView m, long row0) {
  MatView out = m;
  if (m.h != nullptr) out.h = m.h + row0 * m.rs;
  else out.p = m.p + row0 * m.rs;
  return out;
}

MatView transpose(MatView m) {
  std::swap(m.rs, m.cs);
  return m;
}

}  // namespace

void cross_entropy_forward(Backend& be, const float* x, long rows, const Unembedding& u, const int32_t* targets,
                           float* logprobs, float* lse, float* grad, CrossEntropyWorkspace& ws) {
  if (grad != nullptr && u.rank > 0)
    throw std::logic_error("cross_entropy_forward: the gradient shortcut needs an unembedding without LoRA");
  const long H = u.dim, V = u.vocab;
  CrossEntropyRows& st = ws.rows;
  st.rows = rows;
  ensure(ws.block, rows * std::min(V, kCeVocab));
  ensure(st.max, rows);
  ensure(st.sum, rows);
  ensure(st.sum_other, rows);
  ensure(st.target_logit, rows);
  std::fill_n(st.max.begin(), rows, -INFINITY);
  std::fill_n(st.sum.begin(), rows, 0.0);
  std::fill_n(st.sum_other.begin(), rows, 0.0);
  std::fill_n(st.target_logit.begin(), rows, 0.0f);
  const bool with_grad = grad != nullptr;
  if (with_grad) {
    ensure(st.acc, rows * H);
    std::fill_n(st.acc.begin(), rows * H, 0.0f);
  }
  float* block = ws.block.data();
  for (long v0 = 0; v0 < V; v0 += kCeVocab) {
    const long vb = std::min(kCeVocab, V - v0);
    be.gemm(rows, vb, H, 1.0f, row_major(x, H), transpose(from_row(u.w, v0)), block, vb, false);
    if (u.rank > 0)
      be.gemm(rows, vb, u.rank, u.lora_scale, row_major(u.lora_xa, u.rank), transposed(u.lora_b + v0 * u.rank, u.rank),
              block, vb, true);
    be.softmax_block(block, vb, v0, targets, st, H, with_grad);
    if (with_grad) be.gemm(rows, H, vb, 1.0f, row_major(block, vb), from_row(u.w, v0), st.acc.data(), H, true);
  }
  be.softmax_finish(st, targets, u.w, H, logprobs, lse, grad);
}

}  // namespace temper
