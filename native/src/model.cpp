#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "rng.h"

namespace temper {
namespace {

constexpr long kLogitRows = 128;  // rows of logits materialised at once (bounds memory at large vocab)
// The fused cross-entropy (cross_entropy.h) takes up to kCeRows hidden states per call: each
// pass over the (possibly bf16) unembedding serves that many tokens, and its logits block stays
// small (kCeRows x kCeVocab floats, 8 MiB).
constexpr long kCeRows = 2048;

template <typename T>
void ensure(std::vector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
}

std::string layer_prefix(long i) { return "model.layers." + std::to_string(i) + "."; }

const char* kLinearNames[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                              "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                              "mlp.down_proj"};
const char* kLinearShort[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

bool has_target(const LoraConfig& lora, const std::string& t) {
  return std::find(lora.targets.begin(), lora.targets.end(), t) != lora.targets.end();
}

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

}  // namespace

long Param::numel() const {
  long n = 1;
  for (long d : shape) n *= d;
  return n;
}

Model::Model(const ModelConfig& config, const LoraConfig& lora, int threads, const EngineOptions& options)
    : config_(config), lora_config_(lora), options_(options) {
  const ModelConfig& c = config_;
  require(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0 && c.num_layers > 0,
          "config: vocab_size, hidden_size, intermediate_size and num_hidden_layers must be positive");
  require(c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0,
          "config: num_attention_heads must be a positive multiple of num_key_value_heads");
  require(c.head_dim > 0 && c.head_dim % 2 == 0, "config: head_dim must be a positive even number");
  require(c.max_positions > 0, "config: max_position_embeddings must be positive");
  require(c.rope_theta > 0 && c.rms_norm_eps > 0, "config: rope_theta and rms_norm_eps must be positive");
  if (lora.rank > 0) {
    require(lora.alpha > 0, "lora: alpha must be positive");
    require(!lora.targets.empty(), "lora: target_modules must not be empty");
    for (const auto& t : lora.targets) {
      const bool known = t == "lm_head" || std::find(std::begin(kLinearShort), std::end(kLinearShort), t) != std::end(kLinearShort);
      require(known, "lora: unknown target module '" + t + "'");
    }
    require(!(has_target(lora, "lm_head") && c.tie_word_embeddings),
            "lora: lm_head cannot be adapted when word embeddings are tied");
    lora_scale_ = lora.alpha / static_cast<float>(lora.rank);
  }
  require(!options.base_bf16 || lora.rank > 0,
          "base_dtype bfloat16 needs a LoRA adapter (full-parameter training updates the base in float32)");
  set_threads(threads);
  build_params(lora);
  build_rope_tables();
  if (lora.rank > 0) init_lora(lora.seed);
}

void Model::set_threads(int threads) {
  require(threads >= 1 && threads <= 1024, "threads must be between 1 and 1024");
  backend_ = make_cpu_backend(threads);
}

Param* Model::add_param(const std::string& name, std::vector<long> shape, bool trainable, bool bf16) {
  auto p = std::make_unique<Param>();
  p->name = name;
  p->shape = std::move(shape);
  if (bf16) p->bf16.assign(p->numel(), 0);
  else p->value.assign(p->numel(), 0.0f);
  p->trainable = trainable;
  if (trainable) {
    p->grad.assign(p->numel(), 0.0f);
    p->m.assign(p->numel(), 0.0f);
    p->v.assign(p->numel(), 0.0f);
  }
  Param* raw = p.get();
  by_name_[name] = raw;
  params_.push_back(std::move(p));
  return raw;
}

void Model::build_params(const LoraConfig& lora) {
  const ModelConfig& c = config_;
  const bool full = lora.rank == 0;
  const long qdim = c.num_heads * c.head_dim;
  const long kvdim = c.num_kv_heads * c.head_dim;
  const bool half = options_.base_bf16;  // frozen base matrices in bf16 (LoRA only)
  embed_ = add_param("model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, full, half);
  const long dims[kLinearsPerLayer][2] = {{qdim, c.hidden_size},
                                          {kvdim, c.hidden_size},
                                          {kvdim, c.hidden_size},
                                          {c.hidden_size, qdim},
                                          {c.intermediate_size, c.hidden_size},
                                          {c.intermediate_size, c.hidden_size},
                                          {c.hidden_size, c.intermediate_size}};
  layers_.resize(c.num_layers);
  for (long i = 0; i < c.num_layers; ++i) {
    const std::string pre = layer_prefix(i);
    Layer& L = layers_[i];
    L.input_norm = add_param(pre + "input_layernorm.weight", {c.hidden_size}, full);
    for (int j = 0; j < kLinearsPerLayer; ++j) {
      Linear& lin = L.linears[j];
      lin.out = dims[j][0];
      lin.in = dims[j][1];
      lin.w = add_param(pre + kLinearNames[j] + ".weight", {lin.out, lin.in}, full, half);
      const bool biased = (j <= kV && c.qkv_bias) || (j == kO && c.o_bias);
      if (biased) lin.bias = add_param(pre + kLinearNames[j] + ".bias", {lin.out}, full);
    }
    if (c.qk_norm) {
      L.q_norm = add_param(pre + "self_attn.q_norm.weight", {c.head_dim}, full);
      L.k_norm = add_param(pre + "self_attn.k_norm.weight", {c.head_dim}, full);
    }
    L.post_norm = add_param(pre + "post_attention_layernorm.weight", {c.hidden_size}, full);
  }
  final_norm_ = add_param("model.norm.weight", {c.hidden_size}, full);
  lm_head_.out = c.vocab_size;
  lm_head_.in = c.hidden_size;
  lm_head_.w = c.tie_word_embeddings ? embed_ : add_param("lm_head.weight", {c.vocab_size, c.hidden_size}, full, half);
  // Norm weights start at one and biases at zero (as HF initialises them) so an unloaded
  // model is well defined.
  for (auto& p : params_) {
    const bool is_bias = p->name.size() > 5 && p->name.compare(p->name.size() - 5, 5, ".bias") == 0;
    if (p->shape.size() == 1 && !is_bias) std::fill(p->value.begin(), p->value.end(), 1.0f);
  }
  if (full) return;
  auto add_lora = [&](Linear& lin, const std::string& base) {
    lin.lora.a = add_param(base + ".lora_A.weight", {lora.rank, lin.in}, true);
    lin.lora.b = add_param(base + ".lora_B.weight", {lin.out, lora.rank}, true);
  };
  for (long i = 0; i < c.num_layers; ++i)
    for (int j = 0; j < kLinearsPerLayer; ++j)
      if (has_target(lora, kLinearShort[j])) add_lora(layers_[i].linears[j], layer_prefix(i) + kLinearNames[j]);
  if (has_target(lora, "lm_head")) add_lora(lm_head_, "lm_head");
}

// PEFT's default: A ~ kaiming-uniform(a=√5) = U(−1/√in, 1/√in), B = 0, so a fresh adapter is
// the identity and training starts from the base model.
void Model::init_lora(uint64_t seed) {
  Rng rng(seed);
  for (auto& p : params_) {
    if (p->name.find(".lora_A.") == std::string::npos) continue;
    const float bound = 1.0f / std::sqrt(static_cast<float>(p->shape[1]));
    for (float& x : p->value) x = static_cast<float>((rng.uniform() * 2.0 - 1.0) * bound);
  }
}

void Model::build_rope_tables() {
  const long half = config_.head_dim / 2;
  rope_cos_.resize(config_.max_positions * half);
  rope_sin_.resize(config_.max_positions * half);
  const std::vector<double>& table = config_.rope_inv_freq;
  require(table.empty() || static_cast<long>(table.size()) == half,
          "config: the RoPE inverse-frequency table must have head_dim/2 entries");
  for (long i = 0; i < half; ++i) {
    const double inv_freq =
        table.empty() ? 1.0 / std::pow(config_.rope_theta, (2.0 * i) / config_.head_dim) : table[i];
    require(std::isfinite(inv_freq) && inv_freq > 0, "config: RoPE inverse frequencies must be positive");
    for (long pos = 0; pos < config_.max_positions; ++pos) {
      const double angle = pos * inv_freq;
      rope_cos_[pos * half + i] = static_cast<float>(std::cos(angle));
      rope_sin_[pos * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

Param& Model::param(const std::string& name) {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) throw std::invalid_argument("unknown tensor '" + name + "'");
  return *it->second;
}

void Model::embed(const int32_t* tokens, long rows, float* x) {
  const long h = config_.hidden_size;
  backend_->embed(embed_->as_row_major(h), tokens, rows, h, x);
}

void Model::linear_forward(const Linear& l, const float* x, long rows, float* y, std::vector<float>* xa) {
  backend_->gemm(rows, l.out, l.in, 1.0f, row_major(x, l.in), l.w->as_transposed(l.in), y, l.out, false);
  if (l.bias != nullptr) backend_->bias_add(y, l.bias->value.data(), rows, l.out);
  if (!lora_on(l)) return;
  const long r = l.lora.a->shape[0];
  std::vector<float>& buf = xa != nullptr ? *xa : xa_tmp_;
  ensure(buf, rows * r);
  backend_->gemm(rows, r, l.in, 1.0f, row_major(x, l.in), transposed(l.lora.a->value.data(), l.in), buf.data(), r, false);
  backend_->gemm(rows, l.out, r, lora_scale_, row_major(buf.data(), r), transposed(l.lora.b->value.data(), r), y, l.out, true);
}

void Model::linear_backward(const Linear& l, const float* x, const float* dy, long rows, float* dx,
                            bool accumulate_dx, const float* xa) {
  Param* w = l.w;
  if (l.bias != nullptr && l.bias->trainable) backend_->bias_backward(dy, l.bias->grad.data(), rows, l.out);
  if (w->trainable)  // dW += dyᵀ·x
    backend_->gemm(l.out, l.in, rows, 1.0f, transposed(dy, l.out), row_major(x, l.in), w->grad.data(), l.in, true);
  if (dx != nullptr)  // dx = dy·W
    backend_->gemm(rows, l.in, l.out, 1.0f, row_major(dy, l.out), w->as_row_major(l.in), dx, l.in, accumulate_dx);
  if (!lora_on(l)) return;
  const long r = l.lora.a->shape[0];
  Param* a = l.lora.a;
  Param* b = l.lora.b;
  ensure(dxa_, rows * r);
  // y += s·(x·Aᵀ)·Bᵀ  ⇒  dB += s·dyᵀ·xa,  dxa = s·dy·B,  dA += dxaᵀ·x,  dx += dxa·A
  backend_->gemm(l.out, r, rows, lora_scale_, transposed(dy, l.out), row_major(xa, r), b->grad.data(), r, true);
  backend_->gemm(rows, r, l.out, lora_scale_, row_major(dy, l.out), row_major(b->value.data(), r), dxa_.data(), r, false);
  backend_->gemm(r, l.in, rows, 1.0f, transposed(dxa_.data(), r), row_major(x, l.in), a->grad.data(), l.in, true);
  if (dx != nullptr)
    backend_->gemm(rows, l.in, r, 1.0f, row_major(dxa_.data(), r), row_major(a->value.data(), l.in), dx, l.in, true);
}

void Model::layer_forward(long li, LayerActs& a, float* x, long rows, std::vector<SeqSpan>& spans,
                          KvCache* cache, const std::vector<long>* slots) {
  const ModelConfig& c = config_;
  const Layer& L = layers_[li];
  const long H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const long qdim = c.num_heads * hd, kvdim = c.num_kv_heads * hd;
  ensure(a.x_in, rows * H);
  ensure(a.h1, rows * H);
  ensure(a.rstd1, rows);
  ensure(a.q, rows * qdim);
  ensure(a.k, rows * kvdim);
  ensure(a.v, rows * kvdim);
  ensure(a.attn, rows * qdim);
  ensure(a.lse, rows * c.num_heads);
  ensure(a.x_mid, rows * H);
  ensure(a.h2, rows * H);
  ensure(a.rstd2, rows);
  ensure(a.gate, rows * I);
  ensure(a.up, rows * I);
  ensure(a.act, rows * I);

  parallel_copy(x, a.x_in.data(), rows * H);
  backend_->rmsnorm_forward(x, L.input_norm->value.data(), a.h1.data(), a.rstd1.data(), rows, H, c.rms_norm_eps);
  linear_forward(L.linears[kQ], a.h1.data(), rows, a.q.data(), &a.lora_xa[kQ]);
  linear_forward(L.linears[kK], a.h1.data(), rows, a.k.data(), &a.lora_xa[kK]);
  linear_forward(L.linears[kV], a.h1.data(), rows, a.v.data(), &a.lora_xa[kV]);
  if (c.qk_norm) {
    ensure(a.q_pre, rows * qdim);
    ensure(a.k_pre, rows * kvdim);
    ensure(a.rstd_q, rows * c.num_heads);
    ensure(a.rstd_k, rows * c.num_kv_heads);
    std::memcpy(a.q_pre.data(), a.q.data(), sizeof(float) * rows * qdim);
    std::memcpy(a.k_pre.data(), a.k.data(), sizeof(float) * rows * kvdim);
    backend_->rmsnorm_forward(a.q_pre.data(), L.q_norm->value.data(), a.q.data(), a.rstd_q.data(), rows * c.num_heads, hd, c.rms_norm_eps);
    backend_->rmsnorm_forward(a.k_pre.data(), L.k_norm->value.data(), a.k.data(), a.rstd_k.data(), rows * c.num_kv_heads, hd, c.rms_norm_eps);
  }
  backend_->rope_apply(a.q.data(), rows, c.num_heads, hd, positions_.data(), rope_cos_.data(), rope_sin_.data(), false);
  backend_->rope_apply(a.k.data(), rows, c.num_kv_heads, hd, positions_.data(), rope_cos_.data(), rope_sin_.data(), false);

  if (cache != nullptr) {  // append the new keys/values to each sequence's cache slot
    for (std::size_t s = 0; s < spans.size(); ++s) {
      SeqSpan& sp = spans[s];
      const long base = ((*slots)[s] * cache->capacity) * kvdim;
      float* kc = cache->k[li].data() + base;
      float* vc = cache->v[li].data() + base;
      std::memcpy(kc + sp.start * kvdim, a.k.data() + sp.offset * kvdim, sizeof(float) * sp.len * kvdim);
      std::memcpy(vc + sp.start * kvdim, a.v.data() + sp.offset * kvdim, sizeof(float) * sp.len * kvdim);
      sp.keys = kc;
      sp.values = vc;
    }
  } else {
    for (SeqSpan& sp : spans) {
      sp.keys = a.k.data() + sp.offset * kvdim;
      sp.values = a.v.data() + sp.offset * kvdim;
    }
  }
  const AttentionShape shape{c.num_heads, c.num_kv_heads, hd, static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
  backend_->attention_forward(shape, spans, a.q.data(), a.attn.data(), a.lse.data());

  // x_mid = x + o_proj(attn)
  linear_forward(L.linears[kO], a.attn.data(), rows, a.x_mid.data(), &a.lora_xa[kO]);
  parallel_add(a.x_mid.data(), x, rows * H);
  backend_->rmsnorm_forward(a.x_mid.data(), L.post_norm->value.data(), a.h2.data(), a.rstd2.data(), rows, H, c.rms_norm_eps);
  linear_forward(L.linears[kGate], a.h2.data(), rows, a.gate.data(), &a.lora_xa[kGate]);
  linear_forward(L.linears[kUp], a.h2.data(), rows, a.up.data(), &a.lora_xa[kUp]);
  backend_->swiglu_forward(a.gate.data(), a.up.data(), a.act.data(), rows * I);
  // x = x_mid + down_proj(act)
  linear_forward(L.linears[kDown], a.act.data(), rows, x, &a.lora_xa[kDown]);
  parallel_add(x, a.x_mid.data(), rows * H);
}

void Model::logits_chunk(const float* hf, long r0, long r1, float* logits, float* xa_chunk) {
  const long rows = r1 - r0;
  const Linear& l = lm_head_;
  backend_->gemm(rows, l.out, l.in, 1.0f, row_major(hf + r0 * l.in, l.in), l.w->as_transposed(l.in), logits, l.out, false);
  if (!lora_on(l)) return;
  const long r = l.lora.a->shape[0];
  backend_->gemm(rows, r, l.in, 1.0f, row_major(hf + r0 * l.in, l.in), transposed(l.lora.a->value.data(), l.in), xa_chunk, r, false);
  backend_->gemm(rows, l.out, r, lora_scale_, row_major(xa_chunk, r), transposed(l.lora.b->value.data(), r), logits, l.out, true);
}

void Model::check_batch(const Batch& b) const {
  require(b.tokens.size() == b.targets.size(), "batch: tokens and targets must have the same length (" +
                                                    std::to_string(b.tokens.size()) + " vs " + std::to_string(b.targets.size()) + ")");
  long total = 0;
  for (std::size_t s = 0; s < b.seq_lens.size(); ++s) {
    const long n = b.seq_lens[s];
    require(n > 0, "batch: sequence " + std::to_string(s) + " is empty");
    require(n <= config_.max_positions, "batch: sequence " + std::to_string(s) + " has " + std::to_string(n) +
                                            " tokens, more than max_position_embeddings=" + std::to_string(config_.max_positions));
    total += n;
  }
  require(total == static_cast<long>(b.tokens.size()), "batch: sequence lengths sum to " + std::to_string(total) +
                                                           " but " + std::to_string(b.tokens.size()) + " tokens were given");
  for (std::size_t i = 0; i < b.tokens.size(); ++i) {
    require(b.tokens[i] >= 0 && b.tokens[i] < config_.vocab_size,
            "batch: token id " + std::to_string(b.tokens[i]) + " at position " + std::to_string(i) +
                " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")");
    require(b.targets[i] >= 0 && b.targets[i] < config_.vocab_size,
            "batch: target id " + std::to_string(b.targets[i]) + " at position " + std::to_string(i) +
                " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")");
  }
}

// Embedding, every layer and the final norm: leaves the normed hidden states in hf_.
void Model::run_layers(const Batch& batch, bool save) {
  check_batch(batch);
  const ModelConfig& c = config_;
  const long rows = static_cast<long>(batch.tokens.size());
  const long H = c.hidden_size;
  saved_rows_ = -1;
  spans_.clear();
  positions_.resize(rows);
  long off = 0;
  for (long n : batch.seq_lens) {
    spans_.push_back({off, n, 0, nullptr, nullptr});
    for (long i = 0; i < n; ++i) positions_[off + i] = i;
    off += n;
  }
  const bool recompute = save && options_.recompute;
  if (save && !recompute) acts_.resize(c.num_layers);
  if (recompute) {
    acts_.clear();  // full activations are rebuilt per layer in backward
    layer_inputs_.resize(c.num_layers);
  }
  ensure(x_final_, rows * H);
  ensure(hf_, rows * H);
  ensure(rstd_final_, rows);
  ensure(logit_lse_, rows);
  float* x = x_final_.data();
  embed(batch.tokens.data(), rows, x);
  for (long li = 0; li < c.num_layers; ++li) {
    if (recompute) {
      ensure(layer_inputs_[li], rows * H);
      parallel_copy(x, layer_inputs_[li].data(), rows * H);
    }
    layer_forward(li, save && !recompute ? acts_[li] : infer_acts_, x, rows, spans_, nullptr, nullptr);
  }
  backend_->rmsnorm_forward(x, final_norm_->value.data(), hf_.data(), rstd_final_.data(), rows, H, c.rms_norm_eps);
  if (save) {
    saved_rows_ = rows;
    saved_tokens_ = batch.tokens;
    saved_targets_ = batch.targets;
  }
}

std::vector<float> Model::forward(const Batch& batch, bool save) {
  run_layers(batch, save);
  saved_logits_ = false;
  saved_lm_grad_ = false;
  const long rows = static_cast<long>(batch.tokens.size());
  std::vector<float> logprobs(rows);
  const long r = lora_on(lm_head_) ? lm_head_.lora.a->shape[0] : 0;
  if (r > 0) ensure(lm_xa_, rows * r);
  // A frozen, unadapted unembedding: d logprob / d hf is computed here, in the same pass over
  // the vocabulary, and backward() needs no second look at the logits.
  const bool grad = save && lm_head_frozen();
  if (grad) ensure(lm_grad_, rows * config_.hidden_size);
  for (long r0 = 0; r0 < rows; r0 += kCeRows)
    cross_entropy_rows(r0, std::min(rows, r0 + kCeRows), batch.targets.data(), logprobs.data(), grad);
  for (long i = 0; i < rows; ++i)
    if (!std::isfinite(logprobs[i]))
      throw std::runtime_error("forward produced a non-finite log-probability at position " + std::to_string(i) +
                               " (the weights contain NaN/Inf or have diverged)");
  saved_logits_ = save;
  saved_lm_grad_ = grad;
  return logprobs;
}

void Model::cross_entropy_rows(long r0, long r1, const int32_t* targets, float* logprobs, bool grad) {
  const long n = r1 - r0;
  const long H = config_.hidden_size;
  const Linear& l = lm_head_;
  const float* x = hf_.data() + r0 * H;
  Unembedding u;
  u.w = l.w->as_row_major(H);
  u.vocab = config_.vocab_size;
  u.dim = H;
  if (lora_on(l)) {
    u.rank = l.lora.a->shape[0];
    u.lora_xa = lm_xa_.data() + r0 * u.rank;
    u.lora_b = l.lora.b->value.data();
    u.lora_scale = lora_scale_;
    backend_->gemm(n, u.rank, H, 1.0f, row_major(x, H), transposed(l.lora.a->value.data(), H), lm_xa_.data() + r0 * u.rank,
                   u.rank, false);
  }
  cross_entropy_forward(*backend_, x, n, u, targets + r0, logprobs + r0, logit_lse_.data() + r0,
                        grad ? lm_grad_.data() + r0 * H : nullptr, ce_);
}

std::vector<float> Model::forward_hidden(const Batch& batch, Pooling pooling, bool save) {
  run_layers(batch, save);
  saved_logits_ = false;
  saved_lm_grad_ = false;
  saved_pooling_ = pooling;
  const long H = config_.hidden_size;
  std::vector<float> pooled(spans_.size() * H, 0.0f);
  for (std::size_t s = 0; s < spans_.size(); ++s) {
    const SeqSpan& sp = spans_[s];
    float* out = pooled.data() + s * H;
    if (pooling == Pooling::kLast) {
      std::copy(hf_.data() + (sp.offset + sp.len - 1) * H, hf_.data() + (sp.offset + sp.len) * H, out);
      continue;
    }
    for (long i = 0; i < sp.len; ++i)  // mean, rows added in order
      for (long j = 0; j < H; ++j) out[j] += hf_[(sp.offset + i) * H + j];
    const float inv = 1.0f / static_cast<float>(sp.len);
    for (long j = 0; j < H; ++j) out[j] *= inv;
  }
  return pooled;
}

void Model::backward_hidden(const std::vector<float>& dpooled) {
  if (saved_rows_ < 0) throw std::logic_error("backward_hidden() needs a preceding forward_hidden() with saved activations");
  const long H = config_.hidden_size;
  const long rows = saved_rows_;
  require(static_cast<long>(dpooled.size()) == static_cast<long>(spans_.size()) * H,
          "backward_hidden: got " + std::to_string(dpooled.size()) + " gradients for " + std::to_string(spans_.size()) +
              " sequences of hidden size " + std::to_string(H));
  for (std::size_t i = 0; i < dpooled.size(); ++i)
    require(std::isfinite(dpooled[i]), "backward_hidden: gradient at flat index " + std::to_string(i) + " is not finite");
  ensure(dtmp_, rows * H);
  float* dhf = dtmp_.data();
  std::fill(dhf, dhf + rows * H, 0.0f);
  for (std::size_t s = 0; s < spans_.size(); ++s) {
    const SeqSpan& sp = spans_[s];
    const float* d = dpooled.data() + s * H;
    if (saved_pooling_ == Pooling::kLast) {
      std::copy(d, d + H, dhf + (sp.offset + sp.len - 1) * H);
      continue;
    }
    const float inv = 1.0f / static_cast<float>(sp.len);
    for (long i = 0; i < sp.len; ++i)
      for (long j = 0; j < H; ++j) dhf[(sp.offset + i) * H + j] = d[j] * inv;
  }
  backward_from_hidden(dhf);
}

void Model::layer_backward(long li, LayerActs& a, float* dx, long rows) {
  const ModelConfig& c = config_;
  const Layer& L = layers_[li];
  const long H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const long qdim = c.num_heads * hd, kvdim = c.num_kv_heads * hd;
  ensure(dh_, rows * std::max(H, qdim));
  ensure(dact_, rows * I);
  ensure(dgate_, rows * I);
  ensure(dup_, rows * I);
  ensure(dattn_, rows * qdim);
  ensure(dq_, rows * qdim);
  ensure(dk_, rows * kvdim);
  ensure(dv_, rows * kvdim);
  ensure(dtmp_, rows * H);

  // MLP: x_out = x_mid + down(swiglu(gate(h2), up(h2))), dx holds d/dx_out.
  linear_backward(L.linears[kDown], a.act.data(), dx, rows, dact_.data(), false, a.lora_xa[kDown].data());
  backend_->swiglu_backward(a.gate.data(), a.up.data(), dact_.data(), dgate_.data(), dup_.data(), rows * I);
  linear_backward(L.linears[kGate], a.h2.data(), dgate_.data(), rows, dh_.data(), false, a.lora_xa[kGate].data());
  linear_backward(L.linears[kUp], a.h2.data(), dup_.data(), rows, dh_.data(), true, a.lora_xa[kUp].data());
  Param* pn = L.post_norm;
  backend_->rmsnorm_backward(dh_.data(), a.x_mid.data(), pn->value.data(), a.rstd2.data(), dx, true,
                   pn->trainable ? pn->grad.data() : nullptr, rows, H);
  // dx now holds d/dx_mid. Attention: x_mid = x_in + o(attn(q, k, v)).
  linear_backward(L.linears[kO], a.attn.data(), dx, rows, dattn_.data(), false, a.lora_xa[kO].data());
  std::fill(dk_.begin(), dk_.begin() + rows * kvdim, 0.0f);
  std::fill(dv_.begin(), dv_.begin() + rows * kvdim, 0.0f);
  for (SeqSpan& sp : spans_) {
    sp.keys = a.k.data() + sp.offset * kvdim;
    sp.values = a.v.data() + sp.offset * kvdim;
  }
  const AttentionShape shape{c.num_heads, c.num_kv_heads, hd, static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
  backend_->attention_backward(shape, spans_, a.q.data(), a.attn.data(), dattn_.data(), a.lse.data(), dq_.data(), dk_.data(),
                     dv_.data());
  backend_->rope_apply(dq_.data(), rows, c.num_heads, hd, positions_.data(), rope_cos_.data(), rope_sin_.data(), true);
  backend_->rope_apply(dk_.data(), rows, c.num_kv_heads, hd, positions_.data(), rope_cos_.data(), rope_sin_.data(), true);
  if (c.qk_norm) {  // back through the per-head RMSNorm, in place
    Param* qn = L.q_norm;
    Param* kn = L.k_norm;
    ensure(dtmp_, rows * std::max(qdim, kvdim));
    backend_->rmsnorm_backward(dq_.data(), a.q_pre.data(), qn->value.data(), a.rstd_q.data(), dtmp_.data(), false,
                     qn->trainable ? qn->grad.data() : nullptr, rows * c.num_heads, hd);
    std::memcpy(dq_.data(), dtmp_.data(), sizeof(float) * rows * qdim);
    backend_->rmsnorm_backward(dk_.data(), a.k_pre.data(), kn->value.data(), a.rstd_k.data(), dtmp_.data(), false,
                     kn->trainable ? kn->grad.data() : nullptr, rows * c.num_kv_heads, hd);
    std::memcpy(dk_.data(), dtmp_.data(), sizeof(float) * rows * kvdim);
  }
  linear_backward(L.linears[kQ], a.h1.data(), dq_.data(), rows, dh_.data(), false, a.lora_xa[kQ].data());
  linear_backward(L.linears[kK], a.h1.data(), dk_.data(), rows, dh_.data(), true, a.lora_xa[kK].data());
  linear_backward(L.linears[kV], a.h1.data(), dv_.data(), rows, dh_.data(), true, a.lora_xa[kV].data());
  Param* in = L.input_norm;
  backend_->rmsnorm_backward(dh_.data(), a.x_in.data(), in->value.data(), a.rstd1.data(), dx, true,
                   in->trainable ? in->grad.data() : nullptr, rows, H);
}

void Model::backward(const std::vector<float>& dlogprob) {
  if (saved_rows_ < 0 || !saved_logits_)
    throw std::logic_error("backward() needs a preceding forward() with saved activations");
  const long rows = saved_rows_;
  require(static_cast<long>(dlogprob.size()) == rows, "backward: got " + std::to_string(dlogprob.size()) +
                                                          " gradients for " + std::to_string(rows) + " target tokens");
  for (long i = 0; i < rows; ++i)
    require(std::isfinite(dlogprob[i]), "backward: gradient at position " + std::to_string(i) + " is not finite");
  const ModelConfig& c = config_;
  const long H = c.hidden_size, V = c.vocab_size;
  ensure(dx_, rows * H);
  ensure(dtmp_, rows * H);
  float* dhf = dtmp_.data();
  if (saved_lm_grad_) {  // the forward left d logprob / d hf per row
    backend_->scale_rows(lm_grad_.data(), dlogprob.data(), dhf, rows, H);
    backward_from_hidden(dhf);
    return;
  }
  ensure(logits_buf_, kLogitRows * V);
  ensure(dlogits_buf_, kLogitRows * V);
  const long r = lora_on(lm_head_) ? lm_head_.lora.a->shape[0] : 0;
  // Unembedding, chunk by chunk: d logprob_i / d z_v = [v = target_i] − softmax(z)_v.
  for (long r0 = 0; r0 < rows; r0 += kLogitRows) {
    const long r1 = std::min(rows, r0 + kLogitRows);
    const float* xa = r > 0 ? lm_xa_.data() + r0 * r : nullptr;
    ensure(xa_tmp_, (r1 - r0) * std::max<long>(r, 1));
    logits_chunk(hf_.data(), r0, r1, logits_buf_.data(), r > 0 ? xa_tmp_.data() : nullptr);
    backend_->softmax_backward_rows(logits_buf_.data(), logit_lse_.data() + r0, dlogprob.data() + r0,
                                    saved_targets_.data() + r0, dlogits_buf_.data(), r1 - r0, V);
    linear_backward(lm_head_, hf_.data() + r0 * H, dlogits_buf_.data(), r1 - r0, dhf + r0 * H, false, xa);
  }
  backward_from_hidden(dhf);
}

// From d(loss)/d(final normed hidden states) down to every parameter.
void Model::backward_from_hidden(const float* dhf) {
  const ModelConfig& c = config_;
  const long rows = saved_rows_;
  const long H = c.hidden_size;
  ensure(dx_, rows * H);
  float* dx = dx_.data();
  backend_->rmsnorm_backward(dhf, x_final_.data(), final_norm_->value.data(), rstd_final_.data(), dx, false,
                   final_norm_->trainable ? final_norm_->grad.data() : nullptr, rows, H);
  // x_final_ was overwritten layer by layer during forward; each layer saved its own input.
  if (options_.recompute) {
    // The same layer_forward on the same saved input gives bitwise the same activations.
    ensure(recompute_x_, rows * H);
    for (long li = c.num_layers - 1; li >= 0; --li) {
      parallel_copy(layer_inputs_[li].data(), recompute_x_.data(), rows * H);
      layer_forward(li, recompute_acts_, recompute_x_.data(), rows, spans_, nullptr, nullptr);
      layer_backward(li, recompute_acts_, dx, rows);
    }
  } else {
    for (long li = c.num_layers - 1; li >= 0; --li) layer_backward(li, acts_[li], dx, rows);
  }
  if (embed_->trainable)  // scatter-add into embedding rows, rows in order
    backend_->scatter_add_rows(embed_->grad.data(), saved_tokens_.data(), dx, rows, H);
}

void Model::zero_grad() {
  for (auto& p : params_)
    if (p->trainable) std::fill(p->grad.begin(), p->grad.end(), 0.0f);
}

// Σ g² over every trainable tensor, in a fixed order (backend.h: sum_squares), so the norm is
// the same for any thread count.
double Model::grad_norm() const {
  std::vector<const float*> buffers;
  std::vector<long> sizes;
  for (const auto& p : params_) {
    if (!p->trainable) continue;
    buffers.push_back(p->grad.data());
    sizes.push_back(p->numel());
  }
  return std::sqrt(backend_->sum_squares(buffers, sizes));
}

void Model::parallel_copy(const float* src, float* dst, long n) { backend_->copy(src, dst, n); }

void Model::parallel_add(float* y, const float* x, long n) { backend_->add(y, x, n); }

double Model::adamw_step(const AdamParams& hp) {
  require(hp.lr >= 0 && std::isfinite(hp.lr), "adam: learning_rate must be a finite number >= 0");
  require(hp.beta1 >= 0 && hp.beta1 < 1 && hp.beta2 >= 0 && hp.beta2 < 1, "adam: beta1 and beta2 must be in [0, 1)");
  require(hp.eps > 0, "adam: eps must be positive");
  require(hp.weight_decay >= 0, "adam: weight_decay must be >= 0");
  require(hp.grad_clip >= 0, "adam: grad_clip_norm must be >= 0 (0 disables clipping)");
  require(hp.grad_scale > 0 && std::isfinite(hp.grad_scale), "adam: grad_scale must be a finite number > 0");
  const double norm = grad_norm() * hp.grad_scale;
  if (!std::isfinite(norm)) throw std::runtime_error("adam: gradient norm is not finite; step skipped, gradients kept");
  // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
  float clip = 1.0f;
  if (hp.grad_clip > 0) clip = std::min(1.0f, static_cast<float>(hp.grad_clip / (norm + 1e-6)));
  const float gscale = hp.grad_scale * clip;
  ++step_;
  // Mirrors torch.optim.AdamW (single-tensor path) operation by operation.
  const AdamCoefficients coef = adamw_coefficients(hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, gscale, step_);
  for (auto& p : params_)
    if (p->trainable) backend_->adamw_update(p->value.data(), p->grad.data(), p->m.data(), p->v.data(), p->numel(), coef);
  return norm;
}

}  // namespace temper
