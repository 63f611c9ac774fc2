// Autoregressive sampling with a per-sequence KV cache: the prompt is prefilled once, its
// cache copied to each of the n samples, then all live samples decode one token per step as
// one batch (so the matrix multiplies see n rows, not 1).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "model.h"
#include "rng.h"

namespace temper {
namespace {

// log-softmax normaliser of a logits row, in double for a stable sum.
float log_sum_exp(const float* z, long n) {
  float mx = -INFINITY;
  for (long v = 0; v < n; ++v) mx = std::max(mx, z[v]);
  double s = 0.0;
  for (long v = 0; v < n; ++v) s += std::exp(static_cast<double>(z[v] - mx));
  return mx + static_cast<float>(std::log(s));
}

// Draws a token from temperature / top-k / top-p filtered logits. Ties order by token id so
// the draw depends only on the logits and the random number.
int32_t choose_token(const float* z, long vocab, const SampleParams& p, Rng& rng, std::vector<int32_t>& order,
                     std::vector<double>& probs) {
  if (p.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(z, z + vocab) - z);  // first maximum
  }
  order.resize(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[a] > z[b]; });
  long keep = vocab;
  if (p.top_k > 0) keep = std::min(keep, p.top_k);
  probs.resize(keep);
  const double inv_t = 1.0 / p.temperature;
  const double mx = z[order[0]] * inv_t;
  double sum = 0.0;
  for (long i = 0; i < keep; ++i) sum += (probs[i] = std::exp(z[order[i]] * inv_t - mx));
  if (p.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p
    double cum = 0.0;
    long i = 0;
    for (; i < keep; ++i) {
      cum += probs[i] / sum;
      if (cum >= p.top_p) break;
    }
    keep = std::min(keep, i + 1);
    sum = 0.0;
    for (long j = 0; j < keep; ++j) sum += probs[j];
  }
  const double u = rng.uniform() * sum;
  double cum = 0.0;
  for (long i = 0; i < keep; ++i) {
    cum += probs[i];
    if (u < cum) return order[i];
  }
  return order[keep - 1];
}

}  // namespace

void Model::ensure_kv_cache(long slots, long capacity) {
  const long kvdim = config_.num_kv_heads * config_.head_dim;
  if (cache_.slots >= slots && cache_.capacity >= capacity) return;
  cache_.slots = std::max(cache_.slots, slots);
  cache_.capacity = std::max(cache_.capacity, capacity);
  cache_.k.assign(config_.num_layers, std::vector<float>(cache_.slots * cache_.capacity * kvdim));
  cache_.v.assign(config_.num_layers, std::vector<float>(cache_.slots * cache_.capacity * kvdim));
}

std::vector<SampleResult> Model::sample(const std::vector<int32_t>& prompt, const SampleParams& p,
                                        std::vector<float>* prompt_logprobs) {
  const ModelConfig& c = config_;
  const long V = c.vocab_size, H = c.hidden_size;
  const long kvdim = c.num_kv_heads * c.head_dim;
  const long lp = static_cast<long>(prompt.size());
  if (lp == 0) throw std::invalid_argument("sample: the prompt is empty");
  if (p.n < 1 || p.n > 4096) throw std::invalid_argument("sample: n must be between 1 and 4096");
  if (p.max_tokens < 1) throw std::invalid_argument("sample: max_tokens must be at least 1");
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) throw std::invalid_argument("sample: temperature must be >= 0");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) throw std::invalid_argument("sample: top_p must be in (0, 1]");
  if (p.top_k < 0) throw std::invalid_argument("sample: top_k must be >= 0 (0 disables it)");
  if (lp >= c.max_positions)
    throw std::invalid_argument("sample: prompt of " + std::to_string(lp) + " tokens leaves no room below max_position_embeddings=" +
                                std::to_string(c.max_positions));
  for (long i = 0; i < lp; ++i)
    if (prompt[i] < 0 || prompt[i] >= V)
      throw std::invalid_argument("sample: prompt token id " + std::to_string(prompt[i]) + " at position " + std::to_string(i) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
  const long max_new = std::min(p.max_tokens, c.max_positions - lp);
  ensure_kv_cache(p.n, lp + max_new);
  saved_rows_ = -1;  // sampling reuses the inference buffers; any saved forward is gone

  std::vector<float> x(std::max(lp, p.n) * H);
  std::vector<float> hf(std::max(lp, p.n) * H), rstd(std::max(lp, p.n));
  std::vector<float> logits;

  // Prefill the prompt into slot 0.
  std::vector<long> slots{0};
  std::vector<SeqSpan> spans{{0, lp, 0, nullptr, nullptr}};
  positions_.resize(lp);
  std::iota(positions_.begin(), positions_.end(), 0L);
  embed(prompt.data(), lp, x.data());
  for (long li = 0; li < c.num_layers; ++li) layer_forward(li, infer_acts_, x.data(), lp, spans, &cache_, &slots);
  const long first_row = (prompt_logprobs != nullptr) ? 0 : lp - 1;
  const long nrows = lp - first_row;
  backend_->rmsnorm_forward(x.data() + first_row * H, final_norm_->value.data(), hf.data(), rstd.data(), nrows, H, c.rms_norm_eps);
  logits.resize(nrows * V);
  std::vector<float> xa;
  if (lora_on(lm_head_)) xa.resize(nrows * lm_head_.lora.a->shape[0]);
  logits_chunk(hf.data(), 0, nrows, logits.data(), xa.data());
  if (prompt_logprobs != nullptr) {  // logprob of prompt[i] given prompt[..i]; none for the first token
    prompt_logprobs->assign(lp, NAN);
    for (long i = 1; i < lp; ++i) {
      const float* z = logits.data() + (i - 1) * V;
      (*prompt_logprobs)[i] = z[prompt[i]] - log_sum_exp(z, V);
    }
  }
  std::vector<float> last(logits.end() - V, logits.end());
  for (long li = 0; li < c.num_layers; ++li)
    for (long s = 1; s < p.n; ++s) {
      std::memcpy(cache_.k[li].data() + s * cache_.capacity * kvdim, cache_.k[li].data(), sizeof(float) * lp * kvdim);
      std::memcpy(cache_.v[li].data() + s * cache_.capacity * kvdim, cache_.v[li].data(), sizeof(float) * lp * kvdim);
    }

  std::vector<SampleResult> results(p.n);
  std::vector<Rng> rngs;
  for (long s = 0; s < p.n; ++s) rngs.emplace_back(p.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(s) + 1);
  std::vector<int32_t> order;
  std::vector<double> probs;
  auto take = [&](long s, const float* z) {
    const int32_t tok = choose_token(z, V, p, rngs[s], order, probs);
    results[s].tokens.push_back(tok);
    results[s].logprobs.push_back(z[tok] - log_sum_exp(z, V));
    if (std::find(p.stop_tokens.begin(), p.stop_tokens.end(), tok) != p.stop_tokens.end()) results[s].stopped = true;
  };
  for (long s = 0; s < p.n; ++s) take(s, last.data());

  std::vector<int32_t> step_tokens;
  for (long t = 1; t < max_new; ++t) {
    slots.clear();
    spans.clear();
    step_tokens.clear();
    for (long s = 0; s < p.n; ++s) {
      if (results[s].stopped) continue;
      spans.push_back({static_cast<long>(slots.size()), 1, lp + t - 1, nullptr, nullptr});
      slots.push_back(s);
      step_tokens.push_back(results[s].tokens.back());
    }
    if (slots.empty()) break;
    const long rows = static_cast<long>(slots.size());
    positions_.assign(rows, lp + t - 1);
    embed(step_tokens.data(), rows, x.data());
    for (long li = 0; li < c.num_layers; ++li) layer_forward(li, infer_acts_, x.data(), rows, spans, &cache_, &slots);
    backend_->rmsnorm_forward(x.data(), final_norm_->value.data(), hf.data(), rstd.data(), rows, H, c.rms_norm_eps);
    logits.resize(rows * V);
    if (lora_on(lm_head_)) xa.resize(rows * lm_head_.lora.a->shape[0]);
    logits_chunk(hf.data(), 0, rows, logits.data(), xa.data());
    for (long r = 0; r < rows; ++r) take(slots[r], logits.data() + r * V);
  }
  return results;
}

}  // namespace temper
