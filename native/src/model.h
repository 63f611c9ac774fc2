// A decoder-only transformer of the Llama/Mistral/Qwen family (RMSNorm, RoPE with any
// inverse-frequency table, grouped-query causal attention, optional q/k/v and o_proj biases,
// optional Qwen3 q/k RMSNorm, SwiGLU MLP) with full backward, LoRA adapters, AdamW and
// KV-cache sampling. Parameters use HuggingFace tensor names.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "cross_entropy.h"
#include "gemm.h"
#include "ops.h"

namespace temper {

struct ModelConfig {
  long vocab_size = 0;
  long hidden_size = 0;
  long intermediate_size = 0;
  long num_layers = 0;
  long num_heads = 0;
  long num_kv_heads = 0;
  long head_dim = 0;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  long max_positions = 2048;
  bool tie_word_embeddings = false;
  bool qk_norm = false;
  bool qkv_bias = false;  // q_proj/k_proj/v_proj have biases (Qwen2, attention_bias)
  bool o_bias = false;    // o_proj has a bias (Llama/Qwen3 attention_bias)
  // RoPE inverse frequencies (head_dim/2 of them), frequency scaling already applied; empty
  // means plain RoPE, 1/rope_theta^(2i/head_dim).
  std::vector<double> rope_inv_freq;
};

struct LoraConfig {
  long rank = 0;  // 0 = no adapter: full-parameter training
  float alpha = 0.0f;
  std::vector<std::string> targets;  // q_proj k_proj v_proj o_proj gate_proj up_proj down_proj lm_head
  uint64_t seed = 0;
};

struct Param {
  std::string name;
  std::vector<long> shape;
  std::vector<float> value;      // float32 storage (empty when the tensor is kept in bf16)
  std::vector<uint16_t> bf16;    // bf16 storage of a frozen base matrix (EngineOptions::base_bf16)
  std::vector<float> grad;  // empty unless trainable
  std::vector<float> m;     // AdamW first moment
  std::vector<float> v;     // AdamW second moment
  bool trainable = false;
  long numel() const;
  bool is_bf16() const { return !bf16.empty(); }
  // This tensor as a GEMM operand, whichever storage it has.
  MatView as_row_major(long cols) const { return is_bf16() ? row_major(bf16.data(), cols) : row_major(value.data(), cols); }
  MatView as_transposed(long cols) const { return is_bf16() ? transposed(bf16.data(), cols) : transposed(value.data(), cols); }
  // Rows [row0, ...) of a [rows x cols] matrix, as a GEMM operand (plain or transposed).
  MatView rows_from(long row0, long cols) const {
    return is_bf16() ? row_major(bf16.data() + row0 * cols, cols) : row_major(value.data() + row0 * cols, cols);
  }
  MatView rows_from_transposed(long row0, long cols) const {
    return is_bf16() ? transposed(bf16.data() + row0 * cols, cols) : transposed(value.data() + row0 * cols, cols);
  }
};

// How the engine holds and recomputes things; none of it changes the math.
struct EngineOptions {
  // With a LoRA adapter, keep the frozen 2-D base matrices (embeddings, projections, lm_head)
  // in bf16: half the memory; the GEMM widens them to float32 when packing, so compute is fp32.
  bool base_bf16 = false;
  // Keep only each layer's input during a saved forward and recompute the layer's activations
  // in backward (about one more forward of compute for a fraction of the memory).
  bool recompute = false;
};

struct AdamParams {
  float lr = 1e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  float grad_clip = 0.0f;  // max global grad norm; 0 = off
  // Multiplies the accumulated gradients before the step (gradient-accumulation
  // normalisation: 1/num_tokens, 1/num_sequences); the norm and clipping see scaled values.
  float grad_scale = 1.0f;
};

struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> targets;
  std::vector<long> seq_lens;
};

struct SampleParams {
  long n = 1;
  long max_tokens = 16;
  float temperature = 1.0f;  // 0 = greedy
  long top_k = 0;            // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;
  std::vector<int32_t> stop_tokens;
  bool prompt_logprobs = false;
};

struct SampleResult {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  bool stopped = false;  // finish reason: true = stop token, false = length
};

enum class Pooling { kMean, kLast };

class Model {
 public:
  Model(const ModelConfig& config, const LoraConfig& lora, int threads, const EngineOptions& options = {});
  const EngineOptions& options() const { return options_; }

  const ModelConfig& config() const { return config_; }
  const std::vector<std::unique_ptr<Param>>& params() const { return params_; }
  Param& param(const std::string& name);
  int threads() const { return backend_->threads(); }
  Backend& backend() { return *backend_; }
  void set_threads(int threads);
  void set_adapter_enabled(bool on) { adapter_enabled_ = on; }
  bool adapter_enabled() const { return adapter_enabled_; }
  long step() const { return step_; }
  void set_step(long step) { step_ = step; }

  // Log-probability of targets[i] after tokens[..i] within each sequence.
  // With save=true the activations are kept for backward().
  std::vector<float> forward(const Batch& batch, bool save);
  // Accumulates parameter gradients of Σ dlogprob[i]·logprob[i] for the last saved forward.
  void backward(const std::vector<float>& dlogprob);
  // Final normed hidden states pooled per sequence (mean over its tokens, or its last token):
  // [sequences x hidden]. With save=true, backward_hidden() can follow.
  std::vector<float> forward_hidden(const Batch& batch, Pooling pooling, bool save);
  // Accumulates parameter gradients of Σ dpooled·pooled for the last saved forward_hidden.
  void backward_hidden(const std::vector<float>& dpooled);
  void zero_grad();
  // Global L2 norm of all trainable gradients.
  double grad_norm() const;
  // Clips, applies decoupled AdamW, clears gradients. Returns the pre-clip grad norm.
  double adamw_step(const AdamParams& p);

  std::vector<SampleResult> sample(const std::vector<int32_t>& prompt, const SampleParams& p,
                                   std::vector<float>* prompt_logprobs);

 private:
  struct Lora {
    Param* a = nullptr;
    Param* b = nullptr;
  };
  struct Linear {
    Param* w = nullptr;
    Param* bias = nullptr;  // [out], or none
    Lora lora;
    long out = 0;
    long in = 0;
  };
  enum LinearId { kQ, kK, kV, kO, kGate, kUp, kDown, kLinearsPerLayer };
  struct Layer {
    Param* input_norm;
    Param* post_norm;
    Param* q_norm = nullptr;
    Param* k_norm = nullptr;
    std::array<Linear, kLinearsPerLayer> linears;
  };
  // Activations of one layer; grow-only buffers so steady-state calls do not allocate.
  struct LayerActs {
    std::vector<float> x_in, h1, rstd1, q_pre, k_pre, rstd_q, rstd_k, q, k, v, attn, lse, x_mid,
        h2, rstd2, gate, up, act;
    std::array<std::vector<float>, kLinearsPerLayer> lora_xa;
  };
  struct KvCache {
    long slots = 0;
    long capacity = 0;
    std::vector<std::vector<float>> k, v;  // per layer: [slots][capacity][kv_dim]
  };

  Param* add_param(const std::string& name, std::vector<long> shape, bool trainable, bool bf16 = false);
  void build_params(const LoraConfig& lora);
  void init_lora(uint64_t seed);
  void build_rope_tables();
  bool lora_on(const Linear& l) const { return adapter_enabled_ && l.lora.a != nullptr; }

  void embed(const int32_t* tokens, long rows, float* x);
  void linear_forward(const Linear& l, const float* x, long rows, float* y, std::vector<float>* xa);
  void linear_backward(const Linear& l, const float* x, const float* dy, long rows, float* dx,
                       bool accumulate_dx, const float* xa);
  void layer_forward(long li, LayerActs& a, float* x, long rows, std::vector<SeqSpan>& spans,
                     KvCache* cache, const std::vector<long>* slots);
  void layer_backward(long li, LayerActs& a, float* dx, long rows);
  void run_layers(const Batch& batch, bool save);
  void parallel_copy(const float* src, float* dst, long n);
  void parallel_add(float* y, const float* x, long n);  // y += x
  void backward_from_hidden(const float* dhf);
  // Final norm + unembedding over rows [r0, r1) of normed hidden states → logits chunk.
  void logits_chunk(const float* hf, long r0, long r1, float* logits, float* xa_chunk);
  // The fused cross-entropy (cross_entropy.h) over rows [r0, r1) of hf_: normaliser and
  // target log-probability per row; with grad also d logprob / d hf (into lm_grad_), for an
  // unembedding that is frozen and unadapted.
  void cross_entropy_rows(long r0, long r1, const int32_t* targets, float* logprobs, bool grad);
  // backward() can take d logprob / d hf from lm_grad_ instead of recomputing the logits.
  bool lm_head_frozen() const { return !lm_head_.w->trainable && !lora_on(lm_head_); }
  void check_batch(const Batch& batch) const;
  void ensure_kv_cache(long slots, long capacity);

  ModelConfig config_;
  LoraConfig lora_config_;
  EngineOptions options_;
  float lora_scale_ = 0.0f;
  // Where every computation runs (backend.h): the model code below is device-neutral.
  std::unique_ptr<Backend> backend_;
  std::vector<std::unique_ptr<Param>> params_;
  std::map<std::string, Param*> by_name_;
  Param* embed_ = nullptr;
  Param* final_norm_ = nullptr;
  Linear lm_head_;
  std::vector<Layer> layers_;
  bool adapter_enabled_ = true;
  long step_ = 0;

  std::vector<float> rope_cos_, rope_sin_;

  // Saved forward state (training).
  std::vector<LayerActs> acts_;
  // Recompute mode: each layer's input (acts_ then stays empty) and one set of activations
  // rebuilt layer by layer in backward.
  std::vector<std::vector<float>> layer_inputs_;
  LayerActs recompute_acts_;
  std::vector<float> recompute_x_;
  LayerActs infer_acts_;
  std::vector<SeqSpan> spans_;
  std::vector<long> positions_;
  std::vector<int32_t> saved_tokens_, saved_targets_;
  std::vector<float> x_final_, hf_, rstd_final_, logit_lse_, lm_xa_;
  // Cross-entropy state, and d logprob / d hf of the saved forward.
  CrossEntropyWorkspace ce_;
  std::vector<float> lm_grad_;
  long saved_rows_ = -1;
  bool saved_logits_ = false;  // the saved forward computed logits (backward() may follow)
  bool saved_lm_grad_ = false;  // lm_grad_ holds d logprob / d hf of the saved forward
  Pooling saved_pooling_ = Pooling::kMean;
  // Backward / scratch buffers.
  std::vector<float> logits_buf_, dlogits_buf_, dx_, dh_, dtmp_, dq_, dk_, dv_, dattn_, dgate_,
      dup_, dact_, dxa_, xa_tmp_;
  KvCache cache_;
};

}  // namespace temper
