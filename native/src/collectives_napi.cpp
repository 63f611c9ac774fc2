// Node-API face of the collectives (collectives.h). Every collective runs on a libuv worker
// thread and settles a promise, so the pod keeps serving gRPC while ranks exchange data. The
// buffers are the caller's typed arrays (the engine's own gradient/weight memory through
// tensorView): every collective works straight on their memory (no packing into a flat
// buffer), and nothing is copied through JavaScript.
#include "collectives_napi.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>

#include "collectives.h"

namespace temper {
namespace {

class Task : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;

  using Done = std::function<void()>;

  Task(Napi::Env env, Work work, std::vector<Napi::ObjectReference> keep, Done done = nullptr,
       std::shared_ptr<double> result = nullptr)
      : Napi::AsyncWorker(env), work_(std::move(work)), done_(std::move(done)), keep_(std::move(keep)),
        result_(std::move(result)), deferred_(Napi::Promise::Deferred::New(env)) {}

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
    if (done_) done_();
    deferred_.Resolve(result_ ? Napi::Number::New(Env(), *result_).As<Napi::Value>() : Env().Undefined());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Work work_;
  Done done_;  // on the JS thread, after work_ succeeded
  // The typed arrays the work reads and writes stay alive until it is done.
  std::vector<Napi::ObjectReference> keep_;
  std::shared_ptr<double> result_;  // the promise's value, when set
  Napi::Promise::Deferred deferred_;
};

// The Float32Arrays of a JS array, as regions of their memory (one flat vector, in order),
// plus references that keep them alive while a collective runs.
std::vector<Region> regions_of(const Napi::Value& v, std::vector<Napi::ObjectReference>* keep) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "buffers must be an array of Float32Array");
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<Region> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value e = arr.Get(i);
    if (!e.IsTypedArray() || e.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw Napi::TypeError::New(v.Env(), "buffers[" + std::to_string(i) + "] must be a Float32Array");
    }
    Napi::Float32Array f = e.As<Napi::Float32Array>();
    out.push_back({f.Data(), static_cast<long>(f.ElementLength())});
    keep->push_back(Napi::Persistent(f.As<Napi::Object>()));
  }
  return out;
}

// One Float32Array (a shard, a moment vector).
Region one_region(const Napi::Value& v, std::vector<Napi::ObjectReference>* keep) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(v.Env(), "a shard must be a Float32Array");
  }
  Napi::Float32Array f = v.As<Napi::Float32Array>();
  keep->push_back(Napi::Persistent(f.As<Napi::Object>()));
  return {f.Data(), static_cast<long>(f.ElementLength())};
}

// A shard of the flat vector the regions make holds ceil(n / world) values.
void check_shard(Napi::Env env, const char* what, const Region& shard, const std::vector<Region>& regions, int world) {
  long n = 0;
  for (const auto& r : regions) n += r.n;
  const long want = ShardLayout::of(n, world).shard;
  if (shard.n != want) {
    throw Napi::RangeError::New(env, std::string(what) + " holds " + std::to_string(shard.n) + " values, " +
                                         std::to_string(want) + " expected");
  }
}

float num(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("zeroStep: ") + key + " must be a number");
  return v.As<Napi::Number>().FloatValue();
}

class CollectiveStore : public Napi::ObjectWrap<CollectiveStore> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CollectiveStore",
                       {InstanceMethod("port", &CollectiveStore::Port), InstanceMethod("close", &CollectiveStore::Close)});
  }

  // new CollectiveStore(host, port)
  explicit CollectiveStore(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CollectiveStore>(info) {
    if (!info[0].IsString() || !info[1].IsNumber()) {
      throw Napi::TypeError::New(info.Env(), "CollectiveStore(host: string, port: number)");
    }
    try {
      server_ = std::make_unique<StoreServer>(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value());
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
  }

 private:
  Napi::Value Port(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), server_ ? server_->port() : 0);
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (server_) server_->close();
    server_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<StoreServer> server_;
};

class CollectiveGroup : public Napi::ObjectWrap<CollectiveGroup> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CollectiveGroup",
                       {InstanceMethod("connect", &CollectiveGroup::Connect),
                        InstanceMethod("allReduce", &CollectiveGroup::AllReduce),
                        InstanceMethod("allReduceF64", &CollectiveGroup::AllReduceF64),
                        InstanceMethod("reduceScatter", &CollectiveGroup::ReduceScatter),
                        InstanceMethod("allGather", &CollectiveGroup::AllGather),
                        InstanceMethod("zeroStep", &CollectiveGroup::ZeroStep),
                        InstanceMethod("abort", &CollectiveGroup::Abort),
                        InstanceMethod("transport", &CollectiveGroup::Transport),
                        InstanceMethod("close", &CollectiveGroup::Close)});
  }

  explicit CollectiveGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CollectiveGroup>(info) {}

 private:
  // A reference to this object for a task: it must outlive the work even if JavaScript drops
  // the group (close()) while a collective runs.
  Napi::ObjectReference self() { return Napi::Persistent(Value()); }
  std::vector<Napi::ObjectReference> keep_self() {
    std::vector<Napi::ObjectReference> keep;
    keep.push_back(self());
    return keep;
  }

  std::shared_ptr<ProcessGroup> need(const Napi::Env& env) const {
    if (!group_) throw Napi::Error::New(env, "collective group is not connected (or was closed)");
    return group_;
  }

  Napi::Value run(Napi::Env env, Task::Work work, std::vector<Napi::ObjectReference> keep) {
    keep.push_back(self());
    auto* task = new Task(env, std::move(work), std::move(keep));
    Napi::Promise p = task->promise();
    task->Queue();
    return p;
  }

  // connect({rank, world, storeHost, storePort, prefix, host, timeoutMs, sharedMemory})
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "connect(options) needs an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    const int rank = o.Get("rank").As<Napi::Number>().Int32Value();
    const int world = o.Get("world").As<Napi::Number>().Int32Value();
    const std::string store_host = o.Get("storeHost").As<Napi::String>().Utf8Value();
    const int store_port = o.Get("storePort").As<Napi::Number>().Int32Value();
    const std::string prefix = o.Get("prefix").As<Napi::String>().Utf8Value();
    const std::string host = o.Get("host").As<Napi::String>().Utf8Value();
    const auto timeout = std::chrono::milliseconds(o.Get("timeoutMs").As<Napi::Number>().Int64Value());
    const bool shared_memory = o.Get("sharedMemory").ToBoolean().Value();
    auto slot = std::make_shared<std::shared_ptr<ProcessGroup>>();
    // The group becomes usable once connected: done() runs on the JS thread before the
    // promise settles.
    auto* task = new Task(
        env,
        [=] {
          *slot = std::make_shared<ProcessGroup>(rank, world, store_host, store_port, prefix, host, timeout,
                                                 shared_memory);
        },
        keep_self(), [this, slot] { group_ = *slot; });
    Napi::Promise p = task->promise();
    task->Queue();
    return p;
  }

  // allReduce(buffers: Float32Array[]): in place, the sum over ranks.
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto g = need(env);
    std::vector<Napi::ObjectReference> keep;
    // Straight on the typed arrays' memory: packing into one flat buffer and back cost two
    // passes over every byte, as much CPU as the transfers themselves.
    auto regions = regions_of(info[0], &keep);
    return run(env, [g, regions] { g->all_reduce(regions); }, std::move(keep));
  }

  // allReduceF64(buffer: Float64Array): in place (counts; integers stay exact).
  Napi::Value AllReduceF64(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto g = need(env);
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      throw Napi::TypeError::New(env, "allReduceF64 needs a Float64Array");
    }
    Napi::Float64Array a = info[0].As<Napi::Float64Array>();
    double* data = a.Data();
    const long n = static_cast<long>(a.ElementLength());
    std::vector<Napi::ObjectReference> keep;
    keep.push_back(Napi::Persistent(a.As<Napi::Object>()));
    return run(env, [g, data, n] { g->all_reduce(data, n); }, std::move(keep));
  }

  // reduceScatter(buffers: Float32Array[], shard: Float32Array): the buffers (one flat vector
  // of n values, in order) are summed over ranks and this rank's shard of the sum
  // ([rank·s, min(n, (rank+1)·s)), s = ceil(n / world)) is written to `shard` (length s; a
  // last shard shorter than s is padded with zeros). The buffers are left unchanged.
  Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto g = need(env);
    std::vector<Napi::ObjectReference> keep;
    auto regions = regions_of(info[0], &keep);
    const Region shard = one_region(info[1], &keep);
    check_shard(env, "reduceScatter: shard", shard, regions, g->world());
    return run(env, [g, regions, shard] { g->reduce_scatter(regions, shard.data); }, std::move(keep));
  }

  // allGather(shard: Float32Array, buffers: Float32Array[]): every rank's shard (layout as in
  // reduceScatter) is written into the buffers of every rank.
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto g = need(env);
    std::vector<Napi::ObjectReference> keep;
    const Region shard = one_region(info[0], &keep);
    auto regions = regions_of(info[1], &keep);
    check_shard(env, "allGather: shard", shard, regions, g->world());
    return run(env, [g, regions, shard] { g->all_gather(regions, shard.data); }, std::move(keep));
  }

  // zeroStep(grads: Float32Array[], weights: Float32Array[], m, v, hp) → Promise<grad norm>:
  // one ZeRO-1 AdamW step (ProcessGroup::zero_step). hp: {lr, beta1, beta2, eps, weightDecay,
  // gradClip, gradScale, step (after this one)}. A non-finite norm fails the step on every
  // rank alike and leaves weights, moments and gradients as they were.
  Napi::Value ZeroStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto g = need(env);
    std::vector<Napi::ObjectReference> keep;
    auto grads = regions_of(info[0], &keep);
    auto weights = regions_of(info[1], &keep);
    const Region m = one_region(info[2], &keep);
    const Region v = one_region(info[3], &keep);
    if (!info[4].IsObject()) throw Napi::TypeError::New(env, "zeroStep: hp must be an object");
    Napi::Object o = info[4].As<Napi::Object>();
    ShardedAdamParams hp;
    hp.lr = num(o, "lr");
    hp.beta1 = num(o, "beta1");
    hp.beta2 = num(o, "beta2");
    hp.eps = num(o, "eps");
    hp.weight_decay = num(o, "weightDecay");
    hp.grad_clip = num(o, "gradClip");
    hp.grad_scale = num(o, "gradScale");
    hp.step = static_cast<long>(o.Get("step").As<Napi::Number>().Int64Value());
    if (grads.size() != weights.size()) {
      throw Napi::RangeError::New(env, "zeroStep: " + std::to_string(weights.size()) + " weight buffers, " +
                                           std::to_string(grads.size()) + " gradient buffers");
    }
    for (size_t i = 0; i < grads.size(); ++i) {
      if (grads[i].n != weights[i].n) {
        throw Napi::RangeError::New(env, "zeroStep: weight buffer " + std::to_string(i) + " holds " +
                                             std::to_string(weights[i].n) + " values, its gradients " +
                                             std::to_string(grads[i].n));
      }
    }
    check_shard(env, "zeroStep: m", m, grads, g->world());
    check_shard(env, "zeroStep: v", v, grads, g->world());
    auto result = std::make_shared<double>(0);
    keep.push_back(self());
    auto* task = new Task(
        env, [g, grads, weights, m, v, hp, result] { *result = g->zero_step(grads, weights, m.data, v.data, hp); },
        std::move(keep), nullptr, result);
    Napi::Promise p = task->promise();
    task->Queue();
    return p;
  }

  // "shm" | "tcp" (what the float32 collectives travel on), "closed" once closed.
  Napi::Value Transport(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), group_ ? group_->transport() : "closed");
  }

  Napi::Value Abort(const Napi::CallbackInfo& info) {
    if (group_) group_->abort();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    // A collective still running holds its own reference; the group ends after it.
    if (group_) group_->abort();
    group_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<ProcessGroup> group_;
};

// The raw TCP anchor of bench:trainer (collectives.h: tcp_listen / tcp_drain / tcp_send).
// tcpStreamListen(host) → {fd, port}
Napi::Value TcpStreamListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int port = 0;
  int fd = -1;
  try {
    fd = tcp_listen(info[0].As<Napi::String>().Utf8Value(), &port);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", fd);
  o.Set("port", port);
  return o;
}

// tcpStreamDrain(fd, bytes) → Promise<seconds>
Napi::Value TcpStreamDrain(const Napi::CallbackInfo& info) {
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const auto bytes = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
  auto result = std::make_shared<double>(0);
  auto* task = new Task(info.Env(), [=] { *result = tcp_drain(fd, bytes); }, {}, nullptr, result);
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

// tcpStreamSend(host, port, bytes) → Promise<seconds>
Napi::Value TcpStreamSend(const Napi::CallbackInfo& info) {
  const std::string host = info[0].As<Napi::String>().Utf8Value();
  const int port = info[1].As<Napi::Number>().Int32Value();
  const auto bytes = static_cast<size_t>(info[2].As<Napi::Number>().Int64Value());
  auto result = std::make_shared<double>(0);
  auto* task = new Task(info.Env(), [=] { *result = tcp_send(host, port, bytes); }, {}, nullptr, result);
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

}  // namespace

void register_collectives(Napi::Env env, Napi::Object exports) {
  exports.Set("CollectiveStore", CollectiveStore::Init(env));
  exports.Set("CollectiveGroup", CollectiveGroup::Init(env));
  exports.Set("tcpStreamListen", Napi::Function::New(env, TcpStreamListen));
  exports.Set("tcpStreamDrain", Napi::Function::New(env, TcpStreamDrain));
  exports.Set("tcpStreamSend", Napi::Function::New(env, TcpStreamSend));
}

}  // namespace temper
