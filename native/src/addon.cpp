// Node-API face of the engine. Thin: argument conversion, typed-array copies and turning
// every C++ exception into a JavaScript Error. Validation with friendly wording lives in
// src/engine (TypeScript); this layer re-checks what would otherwise corrupt memory.
#include <napi.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <string>

#include "kernels.h"
#include "collectives_napi.h"
#include "model.h"
#include "ops_napi.h"

namespace {

using temper::Model;

template <typename F>
auto guard(const Napi::Env& env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

// Runs engine work on a libuv worker thread and settles a promise with the result, so long
// steps never block the JavaScript event loop (gRPC heartbeats, health checks). `busy` makes
// concurrent use of one model an error instead of a data race.
class EngineTask : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Result = std::function<Napi::Value(Napi::Env)>;

  EngineTask(Napi::Env env, std::atomic<bool>& busy, Work work, Result result)
      : Napi::AsyncWorker(env), busy_(busy), work_(std::move(work)), result_(std::move(result)),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    busy_ = false;
    Napi::Env env = Env();
    try {
      deferred_.Resolve(result_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    busy_ = false;
    deferred_.Reject(e.Value());
  }

 private:
  std::atomic<bool>& busy_;
  Work work_;
  Result result_;
  Napi::Promise::Deferred deferred_;
};

double num(const Napi::Object& o, const char* key, double fallback) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("'") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool flag(const Napi::Object& o, const char* key, bool fallback) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  return v.ToBoolean().Value();
}

template <typename T, typename Arr>
std::vector<T> copy_typed(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a typed array");
  Arr a = v.As<Arr>();
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<int32_t> int32s(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an Int32Array");
  return copy_typed<int32_t, Napi::Int32Array>(v, what);
}

std::vector<float> float32s(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
  return copy_typed<float, Napi::Float32Array>(v, what);
}

Napi::Float32Array to_js(Napi::Env env, const std::vector<float>& v) {
  Napi::Float32Array out = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), out.Data());
  return out;
}

temper::Batch read_batch(const Napi::CallbackInfo& info) {
  temper::Batch b;
  b.tokens = int32s(info[0], "tokens");
  b.targets = int32s(info[1], "targets");
  for (int32_t n : int32s(info[2], "seqLens")) b.seq_lens.push_back(n);
  return b;
}

class EngineModel : public Napi::ObjectWrap<EngineModel> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "EngineModel",
                       {InstanceMethod("tensorInfo", &EngineModel::TensorInfo),
                        InstanceMethod("setTensor", &EngineModel::SetTensor),
                        InstanceMethod("getTensor", &EngineModel::GetTensor),
                        InstanceMethod("loadTensorFile", &EngineModel::LoadTensorFile),
                        InstanceMethod("tensorDtype", &EngineModel::TensorDtype),
                        InstanceMethod("getGrad", &EngineModel::GetGrad),
                        InstanceMethod("tensorView", &EngineModel::TensorView),
                        InstanceMethod("getOptimizerState", &EngineModel::GetOptimizerState),
                        InstanceMethod("setOptimizerState", &EngineModel::SetOptimizerState),
                        InstanceMethod("releaseOptimizerState", &EngineModel::ReleaseOptimizerState),
                        InstanceMethod("forward", &EngineModel::Forward),
                        InstanceMethod("backward", &EngineModel::Backward),
                        InstanceMethod("zeroGrad", &EngineModel::ZeroGrad),
                        InstanceMethod("gradNorm", &EngineModel::GradNorm),
                        InstanceMethod("adamwStep", &EngineModel::AdamwStep),
                        InstanceMethod("sample", &EngineModel::Sample),
                        InstanceMethod("forwardAsync", &EngineModel::ForwardAsync),
                        InstanceMethod("forwardHidden", &EngineModel::ForwardHidden),
                        InstanceMethod("backwardHidden", &EngineModel::BackwardHidden),
                        InstanceMethod("forwardHiddenAsync", &EngineModel::ForwardHiddenAsync),
                        InstanceMethod("backwardHiddenAsync", &EngineModel::BackwardHiddenAsync),
                        InstanceMethod("backwardAsync", &EngineModel::BackwardAsync),
                        InstanceMethod("adamwStepAsync", &EngineModel::AdamwStepAsync),
                        InstanceMethod("sampleAsync", &EngineModel::SampleAsync),
                        InstanceMethod("setAdapterEnabled", &EngineModel::SetAdapterEnabled),
                        InstanceMethod("setThreads", &EngineModel::SetThreads),
                        InstanceMethod("threads", &EngineModel::Threads),
                        InstanceMethod("step", &EngineModel::Step),
                        InstanceMethod("setStep", &EngineModel::SetStep)});
  }

  explicit EngineModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineModel>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "EngineModel(config, options): config must be an object");
    const Napi::Object c = info[0].As<Napi::Object>();
    temper::ModelConfig mc;
    mc.vocab_size = static_cast<long>(num(c, "vocabSize", 0));
    mc.hidden_size = static_cast<long>(num(c, "hiddenSize", 0));
    mc.intermediate_size = static_cast<long>(num(c, "intermediateSize", 0));
    mc.num_layers = static_cast<long>(num(c, "numLayers", 0));
    mc.num_heads = static_cast<long>(num(c, "numHeads", 0));
    mc.num_kv_heads = static_cast<long>(num(c, "numKvHeads", 0));
    mc.head_dim = static_cast<long>(num(c, "headDim", 0));
    mc.rms_norm_eps = static_cast<float>(num(c, "rmsNormEps", 1e-6));
    mc.rope_theta = num(c, "ropeTheta", 10000.0);
    mc.max_positions = static_cast<long>(num(c, "maxPositions", 2048));
    mc.tie_word_embeddings = flag(c, "tieWordEmbeddings", false);
    mc.qk_norm = flag(c, "qkNorm", false);
    mc.qkv_bias = flag(c, "qkvBias", false);
    mc.o_bias = flag(c, "oProjBias", false);
    const Napi::Value inv_freq = c.Get("ropeInvFreq");
    if (!inv_freq.IsUndefined() && !inv_freq.IsNull()) {
      if (!inv_freq.IsTypedArray() || inv_freq.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
        throw Napi::TypeError::New(env, "'ropeInvFreq' must be a Float64Array");
      mc.rope_inv_freq = copy_typed<double, Napi::Float64Array>(inv_freq, "ropeInvFreq");
    }
    temper::LoraConfig lora;
    temper::EngineOptions options;
    int threads = 1;
    if (info[1].IsObject()) {
      const Napi::Object o = info[1].As<Napi::Object>();
      threads = static_cast<int>(num(o, "threads", 1));
      options.base_bf16 = flag(o, "baseBf16", false);
      options.recompute = flag(o, "recompute", false);
      const Napi::Value l = o.Get("lora");
      if (l.IsObject()) {
        const Napi::Object lo = l.As<Napi::Object>();
        lora.rank = static_cast<long>(num(lo, "rank", 0));
        lora.alpha = static_cast<float>(num(lo, "alpha", 0));
        lora.seed = static_cast<uint64_t>(num(lo, "seed", 0));
        const Napi::Value t = lo.Get("targets");
        if (t.IsArray()) {
          const Napi::Array arr = t.As<Napi::Array>();
          for (uint32_t i = 0; i < arr.Length(); ++i) lora.targets.push_back(arr.Get(i).ToString().Utf8Value());
        }
      }
    }
    guard(env, [&] {
      model_ = std::make_unique<Model>(mc, lora, threads, options);
      return 0;
    });
  }

 private:
  Napi::Value TensorInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto& params = model_->params();
    Napi::Array out = Napi::Array::New(env, params.size());
    for (std::size_t i = 0; i < params.size(); ++i) {
      const auto& p = params[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", p->name);
      Napi::Array shape = Napi::Array::New(env, p->shape.size());
      for (std::size_t d = 0; d < p->shape.size(); ++d) shape.Set(d, Napi::Number::New(env, static_cast<double>(p->shape[d])));
      o.Set("shape", shape);
      o.Set("trainable", p->trainable);
      out.Set(i, o);
    }
    return out;
  }

  Napi::Value SetTensor(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    Napi::Env env = info.Env();
    const std::string name = info[0].ToString().Utf8Value();
    std::vector<float> data = float32s(info[1], "data");
    guard(env, [&] {
      temper::Param& p = model_->param(name);
      if (static_cast<long>(data.size()) != p.numel())
        throw std::invalid_argument("tensor '" + name + "' has " + std::to_string(p.numel()) + " elements, got " +
                                    std::to_string(data.size()));
      for (std::size_t i = 0; i < data.size(); ++i)
        if (!std::isfinite(data[i]))
          throw std::invalid_argument("tensor '" + name + "' has a non-finite value at flat index " + std::to_string(i));
      if (p.is_bf16())  // a bf16 base tensor: rounded to nearest even (exact for bf16-valued data)
        for (std::size_t i = 0; i < data.size(); ++i) p.bf16[i] = temper::f32_to_bf16(data[i]);
      else
        std::copy(data.begin(), data.end(), p.value.begin());  // keep the storage (views alias it)
      return 0;
    });
    return env.Undefined();
  }

  Napi::Value GetTensor(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    Napi::Env env = info.Env();
    const std::string name = info[0].ToString().Utf8Value();
    return guard(env, [&] {
      const temper::Param& p = model_->param(name);
      if (!p.is_bf16()) return to_js(env, p.value);
      Napi::Float32Array out = Napi::Float32Array::New(env, p.bf16.size());
      for (std::size_t i = 0; i < p.bf16.size(); ++i) out[i] = temper::bf16_to_f32(p.bf16[i]);
      return out;
    });
  }

  Napi::Value TensorDtype(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string name = info[0].ToString().Utf8Value();
    return guard(env, [&]() -> Napi::Value {
      return Napi::String::New(env, model_->param(name).is_bf16() ? "BF16" : "F32");
    });
  }

  // loadTensorFile(name, path, offset, dtype): reads a tensor's bytes (F32 or BF16, little
  // endian, as in safetensors) from a file straight into the engine's storage with pread, so
  // the weights never pass through JavaScript. Same-dtype tensors are read in place; others
  // are converted in 4 MiB chunks. A non-finite value is an error naming its flat index (the
  // tensor is then left zeroed: the caller discards the model).
  Napi::Value LoadTensorFile(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_idle(env);
    const std::string name = info[0].ToString().Utf8Value();
    const std::string path = info[1].ToString().Utf8Value();
    const double offset_d = info[2].ToNumber().DoubleValue();
    const std::string dtype = info[3].ToString().Utf8Value();
    guard(env, [&] {
      if (dtype != "F32" && dtype != "BF16") throw std::invalid_argument("loadTensorFile: dtype must be F32 or BF16 (got " + dtype + ")");
      if (!(offset_d >= 0) || offset_d > 9.0e15) throw std::invalid_argument("loadTensorFile: bad offset");
      temper::Param& p = model_->param(name);
      const long n = p.numel();
      const bool src_bf16 = dtype == "BF16";
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw std::runtime_error(path + ": " + std::strerror(errno));
      auto read_at = [&](void* dst, std::size_t bytes, off_t at) {
        char* out = static_cast<char*>(dst);
        while (bytes > 0) {
          const ssize_t got = ::pread(fd, out, bytes, at);
          if (got < 0 && errno == EINTR) continue;
          if (got <= 0) throw std::runtime_error(path + ": short read of tensor '" + name + "'" + (got < 0 ? std::string(": ") + std::strerror(errno) : ""));
          out += got;
          bytes -= static_cast<std::size_t>(got);
          at += got;
        }
      };
      const off_t base = static_cast<off_t>(offset_d);
      try {
        if (src_bf16 && p.is_bf16()) {
          read_at(p.bf16.data(), n * 2, base);
        } else if (!src_bf16 && !p.is_bf16()) {
          read_at(p.value.data(), n * 4, base);
        } else {
          constexpr long kChunk = 1 << 20;  // elements
          std::vector<char> buf(kChunk * 4);
          for (long i0 = 0; i0 < n; i0 += kChunk) {
            const long len = std::min(kChunk, n - i0);
            read_at(buf.data(), len * (src_bf16 ? 2 : 4), base + i0 * (src_bf16 ? 2 : 4));
            for (long i = 0; i < len; ++i) {
              if (src_bf16) {
                uint16_t h;
                std::memcpy(&h, buf.data() + i * 2, 2);
                p.value[i0 + i] = temper::bf16_to_f32(h);
              } else {
                float f;
                std::memcpy(&f, buf.data() + i * 4, 4);
                p.bf16[i0 + i] = temper::f32_to_bf16(f);
              }
            }
          }
        }
        for (long i = 0; i < n; ++i) {
          const float x = p.is_bf16() ? temper::bf16_to_f32(p.bf16[i]) : p.value[i];
          if (!std::isfinite(x))
            throw std::invalid_argument(path + ": tensor '" + name + "' has a non-finite value at flat index " + std::to_string(i));
        }
      } catch (...) {
        ::close(fd);
        if (p.is_bf16()) std::fill(p.bf16.begin(), p.bf16.end(), 0);
        else std::fill(p.value.begin(), p.value.end(), 0.0f);
        throw;
      }
      ::close(fd);
      return 0;
    });
    return env.Undefined();
  }

  // A Float32Array over the engine's own storage of a tensor ('value', 'm', 'v' or 'grad'):
  // no copy. A tensor stored in bf16 (frozen LoRA base) gives its 'value' as a Uint16Array of
  // bfloat16 bits, the storage it really has. The buffer keeps the model alive (a reference
  // released by its finalizer), and the storage never moves (setTensor copies into it), so the view stays valid.
  Napi::Value TensorView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_idle(env);
    const std::string name = info[0].ToString().Utf8Value();
    const std::string kind = info[1].IsString() ? info[1].ToString().Utf8Value() : "value";
    return guard(env, [&]() -> Napi::Value {
      temper::Param& p = model_->param(name);
      std::vector<float>* store = kind == "value" ? &p.value : kind == "m" ? &p.m : kind == "v" ? &p.v : kind == "grad" ? &p.grad : nullptr;
      if (store == nullptr) throw std::invalid_argument("tensorView: kind must be value, m, v or grad (got '" + kind + "')");
      if (kind == "value" && p.is_bf16()) {  // a bf16 frozen base: its bits, as a Uint16Array
        auto* keep = new Napi::ObjectReference(Napi::Persistent(Value()));
        Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(
            env, p.bf16.data(), p.bf16.size() * sizeof(uint16_t), [](Napi::Env, void*, Napi::ObjectReference* ref) { delete ref; }, keep);
        return Napi::Uint16Array::New(env, p.bf16.size(), buf, 0);
      }
      if (store->empty()) return env.Null();  // frozen tensors have no grad or moments
      auto* keep = new Napi::ObjectReference(Napi::Persistent(Value()));
      Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(
          env, store->data(), store->size() * sizeof(float), [](Napi::Env, void*, Napi::ObjectReference* ref) { delete ref; }, keep);
      return Napi::Float32Array::New(env, store->size(), buf, 0);
    });
  }

  Napi::Value GetGrad(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    Napi::Env env = info.Env();
    const std::string name = info[0].ToString().Utf8Value();
    return guard(env, [&]() -> Napi::Value {
      const temper::Param& p = model_->param(name);
      if (!p.trainable) return env.Null();
      return to_js(env, p.grad);
    });
  }

  Napi::Value GetOptimizerState(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    Napi::Env env = info.Env();
    const std::string name = info[0].ToString().Utf8Value();
    return guard(env, [&]() -> Napi::Value {
      const temper::Param& p = model_->param(name);
      if (!p.trainable) return env.Null();
      Napi::Object o = Napi::Object::New(env);
      o.Set("m", to_js(env, p.m));
      o.Set("v", to_js(env, p.v));
      return o;
    });
  }

  Napi::Value SetOptimizerState(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    Napi::Env env = info.Env();
    const std::string name = info[0].ToString().Utf8Value();
    std::vector<float> m = float32s(info[1], "m");
    std::vector<float> v = float32s(info[2], "v");
    guard(env, [&] {
      temper::Param& p = model_->param(name);
      if (!p.trainable) throw std::invalid_argument("tensor '" + name + "' is frozen and has no optimizer state");
      if (static_cast<long>(m.size()) != p.numel() || static_cast<long>(v.size()) != p.numel())
        throw std::invalid_argument("optimizer state for '" + name + "' must have " + std::to_string(p.numel()) + " elements");
      // Assigned, not copied into: the engine's moments may have been released (ZeRO-1).
      p.m = std::move(m);
      p.v = std::move(v);
      return 0;
    });
    return env.Undefined();
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    Napi::Env env = info.Env();
    temper::Batch b = read_batch(info);
    const bool save = info[3].ToBoolean().Value();
    return guard(env, [&] { return to_js(env, model_->forward(b, save)); });
  }

  Napi::Value Backward(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    Napi::Env env = info.Env();
    std::vector<float> d = float32s(info[0], "dlogprob");
    guard(env, [&] {
      model_->backward(d);
      return 0;
    });
    return env.Undefined();
  }

  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    model_->zero_grad();
    return info.Env().Undefined();
  }

  Napi::Value GradNorm(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    return Napi::Number::New(info.Env(), model_->grad_norm());
  }

  static temper::AdamParams read_adam(const Napi::CallbackInfo& info) {
    if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "adamwStep(params): params must be an object");
    const Napi::Object o = info[0].As<Napi::Object>();
    temper::AdamParams p;
    p.lr = static_cast<float>(num(o, "learningRate", p.lr));
    p.beta1 = static_cast<float>(num(o, "beta1", p.beta1));
    p.beta2 = static_cast<float>(num(o, "beta2", p.beta2));
    p.eps = static_cast<float>(num(o, "eps", p.eps));
    p.weight_decay = static_cast<float>(num(o, "weightDecay", p.weight_decay));
    p.grad_clip = static_cast<float>(num(o, "gradClipNorm", p.grad_clip));
    p.grad_scale = static_cast<float>(num(o, "gradScale", p.grad_scale));
    return p;
  }

  Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const temper::AdamParams p = read_adam(info);
    check_idle(env);
    return guard(env, [&] {
      ensure_moments();
      return Napi::Number::New(env, model_->adamw_step(p));
    });
  }

  // ZeRO-1 (native/src/collectives.h): each data-parallel rank keeps only its shard of the
  // AdamW moments, outside the engine; this frees the engine's own copies. They live on in the
  // shards, so an unsharded step refuses to run until setOptimizerState has put every tensor's
  // moments back: starting it from zero moments would silently lose the optimizer state.
  Napi::Value ReleaseOptimizerState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_idle(env);
    for (const auto& p : model_->params()) {
      std::vector<float>().swap(p->m);
      std::vector<float>().swap(p->v);
    }
    moments_released_ = true;
    return env.Undefined();
  }

  // Before an unsharded step: a model that never stepped gets zero moments; one whose moments
  // were released must have had them all restored.
  void ensure_moments() {
    for (const auto& p : model_->params()) {
      if (!p->trainable || !p->m.empty()) continue;
      if (moments_released_) {
        throw std::runtime_error("adam: the optimizer state of tensor '" + p->name +
                                 "' was released (it is sharded across data-parallel ranks); restore the moments "
                                 "before an unsharded step");
      }
      p->m.assign(p->numel(), 0.0f);
      p->v.assign(p->numel(), 0.0f);
    }
    moments_released_ = false;
  }

  static temper::SampleParams read_sample_params(const Napi::CallbackInfo& info) {
    if (!info[1].IsObject()) throw Napi::TypeError::New(info.Env(), "sample(prompt, params): params must be an object");
    const Napi::Object o = info[1].As<Napi::Object>();
    temper::SampleParams p;
    p.n = static_cast<long>(num(o, "n", 1));
    p.max_tokens = static_cast<long>(num(o, "maxTokens", 16));
    p.temperature = static_cast<float>(num(o, "temperature", 1.0));
    p.top_k = static_cast<long>(num(o, "topK", 0));
    p.top_p = static_cast<float>(num(o, "topP", 1.0));
    p.seed = static_cast<uint64_t>(num(o, "seed", 0));
    p.prompt_logprobs = flag(o, "promptLogprobs", false);
    const Napi::Value stops = o.Get("stopTokens");
    if (!stops.IsUndefined() && !stops.IsNull()) p.stop_tokens = int32s(stops, "stopTokens");
    return p;
  }

  static Napi::Object samples_to_js(Napi::Env env, const std::vector<temper::SampleResult>& results,
                                    const std::vector<float>& plp, bool with_prompt) {
      Napi::Object out = Napi::Object::New(env);
      Napi::Array samples = Napi::Array::New(env, results.size());
      for (std::size_t i = 0; i < results.size(); ++i) {
        Napi::Object s = Napi::Object::New(env);
        Napi::Int32Array toks = Napi::Int32Array::New(env, results[i].tokens.size());
        std::copy(results[i].tokens.begin(), results[i].tokens.end(), toks.Data());
        s.Set("tokens", toks);
        s.Set("logprobs", to_js(env, results[i].logprobs));
        s.Set("finishReason", results[i].stopped ? "stop" : "length");
        samples.Set(i, s);
      }
      out.Set("samples", samples);
      out.Set("promptLogprobs", with_prompt ? Napi::Value(to_js(env, plp)) : env.Null());
      return out;
  }

  Napi::Value Sample(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<int32_t> prompt = int32s(info[0], "prompt");
    const temper::SampleParams p = read_sample_params(info);
    check_idle(env);
    return guard(env, [&] {
      std::vector<float> plp;
      auto results = model_->sample(prompt, p, p.prompt_logprobs ? &plp : nullptr);
      return samples_to_js(env, results, plp, p.prompt_logprobs);
    });
  }

  // ---- asynchronous variants: same work on a worker thread, promise results ----

  void check_idle(Napi::Env env) {
    if (busy_) throw Napi::Error::New(env, "the model is busy with another operation; await it first");
  }

  Napi::Value run_async(Napi::Env env, EngineTask::Work work, EngineTask::Result result) {
    check_idle(env);
    busy_ = true;
    auto* task = new EngineTask(env, busy_, std::move(work), std::move(result));
    Napi::Promise promise = task->promise();
    task->Queue();  // the worker deletes itself when done
    return promise;
  }

  Napi::Value ForwardAsync(const Napi::CallbackInfo& info) {
    auto batch = std::make_shared<temper::Batch>(read_batch(info));
    const bool save = info[3].ToBoolean().Value();
    auto out = std::make_shared<std::vector<float>>();
    return run_async(
        info.Env(), [this, batch, save, out] { *out = model_->forward(*batch, save); },
        [out](Napi::Env env) -> Napi::Value { return to_js(env, *out); });
  }

  // forwardHidden(tokens, seqLens, pooling 'mean'|'last', save): pooled final hidden states.
  static temper::Pooling read_pooling(const Napi::Value& v) {
    const std::string s = v.IsString() ? v.ToString().Utf8Value() : "mean";
    if (s == "mean") return temper::Pooling::kMean;
    if (s == "last") return temper::Pooling::kLast;
    throw Napi::Error::New(v.Env(), "pooling must be 'mean' or 'last' (got '" + s + "')");
  }

  static temper::Batch read_hidden_batch(const Napi::CallbackInfo& info) {
    temper::Batch b;
    b.tokens = int32s(info[0], "tokens");
    b.targets = b.tokens;  // no targets: only hidden states are returned
    for (int32_t n : int32s(info[1], "seqLens")) b.seq_lens.push_back(n);
    return b;
  }

  Napi::Value ForwardHidden(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_idle(env);
    temper::Batch b = read_hidden_batch(info);
    const temper::Pooling pooling = read_pooling(info[2]);
    const bool save = info[3].ToBoolean().Value();
    return guard(env, [&] { return to_js(env, model_->forward_hidden(b, pooling, save)); });
  }

  Napi::Value BackwardHidden(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_idle(env);
    std::vector<float> d = float32s(info[0], "dpooled");
    guard(env, [&] {
      model_->backward_hidden(d);
      return 0;
    });
    return env.Undefined();
  }

  Napi::Value ForwardHiddenAsync(const Napi::CallbackInfo& info) {
    auto batch = std::make_shared<temper::Batch>(read_hidden_batch(info));
    const temper::Pooling pooling = read_pooling(info[2]);
    const bool save = info[3].ToBoolean().Value();
    auto out = std::make_shared<std::vector<float>>();
    return run_async(
        info.Env(), [this, batch, pooling, save, out] { *out = model_->forward_hidden(*batch, pooling, save); },
        [out](Napi::Env env) -> Napi::Value { return to_js(env, *out); });
  }

  Napi::Value BackwardHiddenAsync(const Napi::CallbackInfo& info) {
    auto d = std::make_shared<std::vector<float>>(float32s(info[0], "dpooled"));
    return run_async(
        info.Env(), [this, d] { model_->backward_hidden(*d); }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }

  Napi::Value BackwardAsync(const Napi::CallbackInfo& info) {
    auto d = std::make_shared<std::vector<float>>(float32s(info[0], "dlogprob"));
    return run_async(
        info.Env(), [this, d] { model_->backward(*d); }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }

  Napi::Value AdamwStepAsync(const Napi::CallbackInfo& info) {
    const temper::AdamParams p = read_adam(info);
    auto norm = std::make_shared<double>(0.0);
    return run_async(
        info.Env(), [this, p, norm] {
          ensure_moments();
          *norm = model_->adamw_step(p);
        },
        [norm](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *norm); });
  }

  Napi::Value SampleAsync(const Napi::CallbackInfo& info) {
    auto prompt = std::make_shared<std::vector<int32_t>>(int32s(info[0], "prompt"));
    const temper::SampleParams p = read_sample_params(info);
    auto results = std::make_shared<std::vector<temper::SampleResult>>();
    auto plp = std::make_shared<std::vector<float>>();
    return run_async(
        info.Env(), [this, prompt, p, results, plp] { *results = model_->sample(*prompt, p, p.prompt_logprobs ? plp.get() : nullptr); },
        [results, plp, p](Napi::Env env) -> Napi::Value { return samples_to_js(env, *results, *plp, p.prompt_logprobs); });
  }

  Napi::Value SetAdapterEnabled(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    model_->set_adapter_enabled(info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }

  Napi::Value SetThreads(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    Napi::Env env = info.Env();
    const int n = info[0].ToNumber().Int32Value();
    guard(env, [&] {
      model_->set_threads(n);
      return 0;
    });
    return env.Undefined();
  }

  Napi::Value Threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), model_->threads()); }
  Napi::Value Step(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(model_->step())); }
  Napi::Value SetStep(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    model_->set_step(info[0].ToNumber().Int64Value());
    return info.Env().Undefined();
  }

  std::unique_ptr<Model> model_;
  std::atomic<bool> busy_{false};
  // releaseOptimizerState ran and the moments have not all been restored since.
  bool moments_released_ = false;
};

// matmul(m, n, k, a, b, {transA, transB, threads}) → C = op(A)·op(B), row-major; exposed for
// the GEMM tests and the GEMM benchmark against OpenBLAS.
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const long m = info[0].ToNumber().Int64Value();
  const long n = info[1].ToNumber().Int64Value();
  const long k = info[2].ToNumber().Int64Value();
  if (!info[3].IsTypedArray() || !info[4].IsTypedArray()) throw Napi::TypeError::New(env, "matmul: a and b must be Float32Arrays");
  Napi::Float32Array a = info[3].As<Napi::Float32Array>();
  Napi::Float32Array b = info[4].As<Napi::Float32Array>();
  bool ta = false, tb = false;
  int threads = 1;
  long repeat = 1;
  if (info[5].IsObject()) {
    const Napi::Object o = info[5].As<Napi::Object>();
    ta = flag(o, "transA", false);
    tb = flag(o, "transB", false);
    threads = static_cast<int>(num(o, "threads", 1));
    repeat = static_cast<long>(num(o, "repeat", 1));
  }
  if (m <= 0 || n <= 0 || k <= 0 || static_cast<long>(a.ElementLength()) != m * k || static_cast<long>(b.ElementLength()) != k * n)
    throw Napi::Error::New(env, "matmul: a must have m*k and b k*n elements");
  static std::unique_ptr<temper::ThreadPool> pool;
  static std::unique_ptr<temper::Gemm> gemm;
  if (!pool || pool->size() != threads) {
    gemm.reset();
    pool = std::make_unique<temper::ThreadPool>(threads);
    gemm = std::make_unique<temper::Gemm>(*pool);
  }
  Napi::Float32Array c = Napi::Float32Array::New(env, m * n);
  const temper::MatView av = ta ? temper::transposed(a.Data(), m) : temper::row_major(a.Data(), k);
  const temper::MatView bv = tb ? temper::transposed(b.Data(), k) : temper::row_major(b.Data(), n);
  for (long r = 0; r < repeat; ++r) gemm->run(m, n, k, 1.0f, av, bv, c.Data(), n, false);
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("EngineModel", EngineModel::Init(env));
  temper::register_collectives(env, exports);
  temper::register_ops(env, exports);
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  exports.Set("simd", Napi::String::New(env, temper::kernels().name));
  return exports;
}

}  // namespace

NODE_API_MODULE(temper_engine, Init)
