// The engine's operators one by one, for tests against plain references (test/engine/ops):
// each call runs one Backend operation (backend.h) on fresh copies of its inputs and returns
// new arrays. The same code paths the model runs, on a backend with the given thread count.
#include "ops_napi.h"

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.h"
#include "cross_entropy.h"

namespace temper {
namespace {

std::vector<float> floats(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw std::invalid_argument(std::string(what) + " must be a Float32Array");
  Napi::Float32Array a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<int32_t> ints(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw std::invalid_argument(std::string(what) + " must be an Int32Array");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

long integer(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw std::invalid_argument(std::string(key) + " must be a number");
  const double d = v.ToNumber().DoubleValue();
  if (!(d >= 0) || d != std::floor(d)) throw std::invalid_argument(std::string(key) + " must be an integer >= 0");
  return static_cast<long>(d);
}

double number(const Napi::Object& o, const char* key, double fallback) {
  const Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.ToNumber().DoubleValue() : fallback;
}

void need(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

Napi::Float32Array out(Napi::Env env, const std::vector<float>& v) {
  Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

std::unique_ptr<Backend> backend_for(const Napi::Object& o) {
  return make_cpu_backend(static_cast<int>(number(o, "threads", 1)));
}

// Every operation takes one options object; errors become JS exceptions with the message.
template <typename F>
Napi::Function op(Napi::Env env, const char* name, F fn) {
  return Napi::Function::New(env, [fn, name](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env e = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(e, std::string(name) + ": expected an options object");
    try {
      return fn(e, info[0].As<Napi::Object>());
    } catch (const std::exception& err) {
      throw Napi::Error::New(e, std::string(name) + ": " + err.what());
    }
  });
}

}  // namespace

void register_ops(Napi::Env env, Napi::Object exports) {
  Napi::Object ops = Napi::Object::New(env);

  ops.Set("rmsnormForward", op(env, "rmsnormForward", [](Napi::Env e, Napi::Object o) -> Napi::Value {
    const long rows = integer(o, "rows"), dim = integer(o, "dim");
    std::vector<float> x = floats(o.Get("x"), "x"), w = floats(o.Get("w"), "w");
    need(static_cast<long>(x.size()) == rows * dim && static_cast<long>(w.size()) == dim, "x must be rows*dim, w dim");
    std::vector<float> y(x.size()), rstd(rows);
    backend_for(o)->rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, dim,
                                    static_cast<float>(number(o, "eps", 1e-6)));
    Napi::Object r = Napi::Object::New(e);
    r.Set("y", out(e, y));
    r.Set("rstd", out(e, rstd));
    return r;
  }));

  ops.Set("rmsnormBackward", op(env, "rmsnormBackward", [](Napi::Env e, Napi::Object o) -> Napi::Value {
    const long rows = integer(o, "rows"), dim = integer(o, "dim");
    std::vector<float> dy = floats(o.Get("dy"), "dy"), x = floats(o.Get("x"), "x"), w = floats(o.Get("w"), "w"),
                       rstd = floats(o.Get("rstd"), "rstd");
    need(static_cast<long>(x.size()) == rows * dim && dy.size() == x.size() && static_cast<long>(w.size()) == dim &&
             static_cast<long>(rstd.size()) == rows,
         "dy and x must be rows*dim, w dim, rstd rows");
    std::vector<float> dx(x.size()), dw(dim, 0.0f);
    backend_for(o)->rmsnorm_backward(dy.data(), x.data(), w.data(), rstd.data(), dx.data(), false, dw.data(), rows, dim);
    Napi::Object r = Napi::Object::New(e);
    r.Set("dx", out(e, dx));
    r.Set("dw", out(e, dw));
    return r;
  }));

  ops.Set("rope", op(env, "rope", [](Napi::Env e, Napi::Object o) -> Napi::Value {
    const long rows = integer(o, "rows"), heads = integer(o, "heads"), hd = integer(o, "headDim");
    std::vector<float> x = floats(o.Get("x"), "x"), cos_t = floats(o.Get("cos"), "cos"), sin_t = floats(o.Get("sin"), "sin");
    std::vector<int32_t> pos32 = ints(o.Get("positions"), "positions");
    need(hd % 2 == 0 && static_cast<long>(x.size()) == rows * heads * hd && static_cast<long>(pos32.size()) == rows &&
             cos_t.size() == sin_t.size(),
         "x must be rows*heads*headDim (headDim even), positions rows");
    std::vector<long> pos(pos32.begin(), pos32.end());
    for (long p : pos) need(p >= 0 && (p + 1) * (hd / 2) <= static_cast<long>(cos_t.size()), "a position is past the tables");
    backend_for(o)->rope_apply(x.data(), rows, heads, hd, pos.data(), cos_t.data(), sin_t.data(),
                               o.Get("inverse").ToBoolean().Value());
    return out(e, x);
  }));

  ops.Set("swigluForward", op(env, "swigluForward", [](Napi::Env e, Napi::Object o) -> Napi::Value {
    std::vector<float> gate = floats(o.Get("gate"), "gate"), up = floats(o.Get("up"), "up");
    need(gate.size() == up.size(), "gate and up must have the same length");
    std::vector<float> act(gate.size());
    backend_for(o)->swiglu_forward(gate.data(), up.data(), act.data(), static_cast<long>(act.size()));
    return out(e, act);
  }));

  ops.Set("swigluBackward", op(env, "swigluBackward", [](Napi::Env e, Napi::Object o) -> Napi::Value {
    std::vector<float> gate = floats(o.Get("gate"), "gate"), up = floats(o.Get("up"), "up"),
                       dact = floats(o.Get("dact"), "dact");
    need(gate.size() == up.size() && dact.size() == up.size(), "gate, up and dact must have the same length");
    std::vector<float> dgate(gate.size()), dup(gate.size());
    backend_for(o)->swiglu_backward(gate.data(), up.data(), dact.data(), dgate.data(), dup.data(),
                                    static_cast<long>(gate.size()));
    Napi::Object r = Napi::Object::New(e);
    r.Set("dgate", out(e, dgate));
    r.Set("dup", out(e, dup));
    return r;
  }));

  // Causal attention over sequences packed row after row: q [rows x heads*hd], k and v
  // [rows x kvHeads*hd], seqLens summing to rows; scale 1/sqrt(hd).
  struct Attn {
    long rows, heads, kv_heads, hd;
    std::vector<float> q, k, v;
    std::vector<SeqSpan> spans;
    AttentionShape shape;
  };
  auto attn_inputs = [](Napi::Object o) {
    Attn a;
    a.heads = integer(o, "heads");
    a.kv_heads = integer(o, "kvHeads");
    a.hd = integer(o, "headDim");
    a.q = floats(o.Get("q"), "q");
    a.k = floats(o.Get("k"), "k");
    a.v = floats(o.Get("v"), "v");
    need(a.heads > 0 && a.kv_heads > 0 && a.heads % a.kv_heads == 0 && a.hd > 0, "heads must be a multiple of kvHeads");
    a.rows = static_cast<long>(a.q.size()) / (a.heads * a.hd);
    need(static_cast<long>(a.q.size()) == a.rows * a.heads * a.hd && static_cast<long>(a.k.size()) == a.rows * a.kv_heads * a.hd &&
             a.v.size() == a.k.size(),
         "q must be rows*heads*headDim, k and v rows*kvHeads*headDim");
    long off = 0;
    const long kvdim = a.kv_heads * a.hd;
    for (int32_t n : ints(o.Get("seqLens"), "seqLens")) {
      need(n > 0, "sequence lengths must be positive");
      a.spans.push_back({off, n, 0, a.k.data() + off * kvdim, a.v.data() + off * kvdim});
      off += n;
    }
    need(off == a.rows, "seqLens must sum to the rows of q");
    a.shape = {a.heads, a.kv_heads, a.hd, static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.hd)))};
    return a;
  };

  ops.Set("attentionForward", op(env, "attentionForward", [attn_inputs](Napi::Env e, Napi::Object o) -> Napi::Value {
    Attn a = attn_inputs(o);
    std::vector<float> o_(a.q.size()), lse(a.rows * a.heads);
    backend_for(o)->attention_forward(a.shape, a.spans, a.q.data(), o_.data(), lse.data());
    Napi::Object r = Napi::Object::New(e);
    r.Set("out", out(e, o_));
    r.Set("lse", out(e, lse));
    return r;
  }));

  ops.Set("attentionBackward", op(env, "attentionBackward", [attn_inputs](Napi::Env e, Napi::Object o) -> Napi::Value {
    Attn a = attn_inputs(o);
    std::vector<float> fwd_out = floats(o.Get("out"), "out"), dout = floats(o.Get("dout"), "dout"),
                       lse = floats(o.Get("lse"), "lse");
    need(fwd_out.size() == a.q.size() && dout.size() == a.q.size() && static_cast<long>(lse.size()) == a.rows * a.heads,
         "out and dout must be shaped like q, lse rows*heads");
    std::vector<float> dq(a.q.size()), dk(a.k.size(), 0.0f), dv(a.v.size(), 0.0f);
    backend_for(o)->attention_backward(a.shape, a.spans, a.q.data(), fwd_out.data(), dout.data(), lse.data(), dq.data(),
                                       dk.data(), dv.data());
    Napi::Object r = Napi::Object::New(e);
    r.Set("dq", out(e, dq));
    r.Set("dk", out(e, dk));
    r.Set("dv", out(e, dv));
    return r;
  }));

  // Fused cross-entropy of x [rows x dim] against the unembedding w [vocab x dim] (Float32Array,
  // or Uint16Array of bf16 bits); with grad, also d logprob / d x.
  ops.Set("crossEntropy", op(env, "crossEntropy", [](Napi::Env e, Napi::Object o) -> Napi::Value {
    const long rows = integer(o, "rows"), vocab = integer(o, "vocab"), dim = integer(o, "dim");
    std::vector<float> x = floats(o.Get("x"), "x");
    std::vector<int32_t> targets = ints(o.Get("targets"), "targets");
    std::vector<float> w32;
    std::vector<uint16_t> w16;
    const Napi::Value wv = o.Get("w");
    Unembedding u;
    if (wv.IsTypedArray() && wv.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array) {
      Napi::Uint16Array a = wv.As<Napi::Uint16Array>();
      w16.assign(a.Data(), a.Data() + a.ElementLength());
      need(static_cast<long>(w16.size()) == vocab * dim, "w must be vocab*dim");
      u.w = row_major(w16.data(), dim);
    } else {
      w32 = floats(wv, "w");
      need(static_cast<long>(w32.size()) == vocab * dim, "w must be vocab*dim");
      u.w = row_major(w32.data(), dim);
    }
    need(static_cast<long>(x.size()) == rows * dim && static_cast<long>(targets.size()) == rows, "x must be rows*dim, targets rows");
    for (int32_t t : targets) need(t >= 0 && t < vocab, "a target is outside the vocabulary");
    u.vocab = vocab;
    u.dim = dim;
    const bool grad = o.Get("grad").ToBoolean().Value();
    std::vector<float> logprobs(rows), lse(rows), g(grad ? rows * dim : 0);
    CrossEntropyWorkspace ws;
    cross_entropy_forward(*backend_for(o), x.data(), rows, u, targets.data(), logprobs.data(), lse.data(),
                          grad ? g.data() : nullptr, ws);
    Napi::Object r = Napi::Object::New(e);
    r.Set("logprobs", out(e, logprobs));
    r.Set("lse", out(e, lse));
    if (grad) r.Set("grad", out(e, g));
    return r;
  }));

  // One AdamW update at optimizer step `step` (1-based) of w with gradient g and moments m, v.
  ops.Set("adamw", op(env, "adamw", [](Napi::Env e, Napi::Object o) -> Napi::Value {
    std::vector<float> w = floats(o.Get("w"), "w"), g = floats(o.Get("g"), "g"), m = floats(o.Get("m"), "m"),
                       v = floats(o.Get("v"), "v");
    need(g.size() == w.size() && m.size() == w.size() && v.size() == w.size(), "w, g, m and v must have the same length");
    const long step = integer(o, "step");
    need(step >= 1, "step must be >= 1");
    const AdamCoefficients c = adamw_coefficients(
        static_cast<float>(number(o, "lr", 1e-4)), static_cast<float>(number(o, "beta1", 0.9)),
        static_cast<float>(number(o, "beta2", 0.95)), static_cast<float>(number(o, "eps", 1e-8)),
        static_cast<float>(number(o, "weightDecay", 0.0)), static_cast<float>(number(o, "gradScale", 1.0)), step);
    backend_for(o)->adamw_update(w.data(), g.data(), m.data(), v.data(), static_cast<long>(w.size()), c);
    Napi::Object r = Napi::Object::New(e);
    r.Set("w", out(e, w));
    r.Set("m", out(e, m));
    r.Set("v", out(e, v));
    return r;
  }));

  ops.Set("backend", op(env, "backend", [](Napi::Env e, Napi::Object o) -> Napi::Value {
    return Napi::String::New(e, backend_for(o)->name());
  }));

  exports.Set("ops", ops);
}

}  // namespace temper
