// The fused cross-entropy: log-probabilities of targets under softmax(x · Wᵀ) without ever
// holding the [rows x vocab] logits. The vocabulary is walked in fixed blocks of kCeVocab
// entries with an online softmax (backend.h: softmax_block), so the unembedding (float32 or
// bf16) is packed once per call, and with `grad` the same pass yields
//   d logprob_r / d x_r = W_t − Σ_v p_v W_v = (1 − p_t)·W_t − Σ_{v≠t} p_v W_v
// for an unembedding that is frozen, so a backward pass needs no second look at the logits.
// The blocking fixes every summation order: results do not depend on threads.
#pragma once

#include <cstdint>
#include <vector>

#include "backend.h"

namespace temper {

constexpr long kCeVocab = 1024;  // vocabulary entries per block (logits block: rows x kCeVocab)

struct Unembedding {
  MatView w;  // [vocab x dim], row-major (float32 or bf16)
  long vocab = 0;
  long dim = 0;
  // Optional LoRA on the unembedding: logits += scale · xa · Bᵀ with xa = x·Aᵀ [rows x rank]
  // (computed by the caller) and B [vocab x rank].
  const float* lora_xa = nullptr;
  const float* lora_b = nullptr;
  long rank = 0;
  float lora_scale = 0.0f;
};

struct CrossEntropyWorkspace {
  std::vector<float> block;
  CrossEntropyRows rows;
};

// logprobs[r] = log softmax(x_r · Wᵀ)[targets[r]], lse[r] its normaliser; with grad (not null,
// [rows x dim]) d logprobs[r] / d x_r (the LoRA term, if any, must then be absent).
void cross_entropy_forward(Backend& be, const float* x, long rows, const Unembedding& u, const int32_t* targets,
                           float* logprobs, float* lse, float* grad, CrossEntropyWorkspace& ws);

}  // namespace temper
