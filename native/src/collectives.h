// Collectives between data-parallel trainer ranks, on gloo (the library PyTorch uses for CPU
// collectives): a rendezvous store served over TCP by rank 0's pod, and a process group whose
// ring all-reduce / reduce-scatter / all-gather move float32 buffers straight between the
// ranks' processes over TCP — or, when every rank shares one host, through shared memory
// (collectives_shm.h).
//
// Determinism: every collective here reduces in an order fixed by (world size, buffer length)
// alone, the same on either transport, and each reduced element is computed once, on one
// rank, then copied to the others; so the same ranks give bitwise the same result on every
// run and every rank ends with the same bits.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gloo {
class Context;
namespace transport {
class Device;
}
}  // namespace gloo

namespace temper {

class ShmTransport;
class ShmLink;

// A key/value store for gloo's rendezvous: SET key value, GET key (blocks until the key is set
// or a timeout). One thread per connection; a handful of ranks connect once per group.
class StoreServer {
 public:
  // Listens on host:port (port 0 = any free port).
  StoreServer(const std::string& host, int port);
  ~StoreServer();
  int port() const { return port_; }
  void close();

 private:
  void accept_loop();
  void serve(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> closed_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::vector<char>> data_;
  std::vector<int> clients_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// Where a shard of a flat buffer of n values lives: shard r holds [r·s, min(n, (r+1)·s)) with
// s = ceil(n / world). Every rank's shard has the same padded length s, which the ring needs.
struct ShardLayout {
  long n = 0;
  int world = 1;
  long shard = 0;  // s
  long begin(int r) const { return std::min(n, static_cast<long>(r) * shard); }
  long end(int r) const { return std::min(n, static_cast<long>(r + 1) * shard); }
  static ShardLayout of(long n, int world) {
    ShardLayout l;
    l.n = n;
    l.world = world;
    l.shard = world > 0 ? (n + world - 1) / world : n;
    return l;
  }
};

// A run of float32 values in the caller's memory (one tensor's gradients, say); a list of
// regions is one flat vector, in order.
struct Region {
  float* data;
  long n;
};

// AdamW hyper-parameters of one sharded step (the engine's AdamParams, plus the step number
// after this step, which the bias corrections use).
struct ShardedAdamParams {
  float lr = 1e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  float grad_clip = 0.0f;
  float grad_scale = 1.0f;
  long step = 1;
};

class ProcessGroup {
 public:
  // Joins the group: rank `rank` of `world`, rendezvous through the store at
  // store_host:store_port under `prefix`; this rank's gloo endpoint listens on `host`.
  // Blocks until every rank joined or `timeout` passed (then throws). With `shared_memory`,
  // when every rank allows it and all share this host (collectives_shm.h), the float32
  // collectives move through shared memory instead of TCP, with the same bits.
  ProcessGroup(int rank, int world, const std::string& store_host, int store_port,
               const std::string& prefix, const std::string& host, std::chrono::milliseconds timeout,
               bool shared_memory = false);
  ~ProcessGroup();

  int rank() const { return rank_; }
  int world() const { return world_; }
  // What this rank's float32 collectives travel on: "shm" (every rank on this host), "tcp+shm"
  // (a group spanning hosts whose ring has an edge to or from this rank on this host), "tcp".
  const char* transport() const { return shm_ ? "shm" : link_out_ || link_in_ ? "tcp+shm" : "tcp"; }

  // Ring collectives straight on the caller's regions (one flat vector of n values, in order;
  // shard r is [r·s, min(n, (r+1)·s)), s = ceil(n / world)). Messages are cut at region ends,
  // so every rank must pass regions of the same lengths (checked: a mismatch throws on every
  // rank). Nothing is packed into a flat buffer: the only scratch is two shard-sized buffers.
  //
  // In place: every element becomes the sum over ranks. It is exactly the reduce-scatter then
  // the all-gather below, so a gradient summed here has the same bits as the shard a ZeRO-1
  // step reduce-scatters: sharding the optimizer changes the memory, not the numbers.
  void all_reduce(const std::vector<Region>& regions);
  // In place, small vectors (counts, norms): gloo's ring all-reduce.
  void all_reduce(double* data, long n);
  // This rank's shard of the sum over ranks into `out` (s values; past the shard's end zeros).
  // The regions are only read.
  void reduce_scatter(const std::vector<Region>& regions, float* out);
  // Every rank's shard into every rank's regions; this rank's own comes from `own` (s values).
  void all_gather(const std::vector<Region>& regions, const float* own);
  // One ZeRO-1 AdamW step: the gradients are reduce-scattered, this rank updates its shard of
  // the weights in place with its shard of the moments `m`/`v` (s values each), the weights
  // are all-gathered and the gradients zeroed. Returns the global pre-clip gradient norm (×
  // grad_scale). A non-finite norm throws before anything changed (gradients kept). A failed
  // transfer leaves the step half done (moments updated, weights partly gathered): the group
  // is broken anyway, and the run resumes from its last checkpoint, as after any collective
  // failure. grads and weights: the same lengths, region by region.
  double zero_step(const std::vector<Region>& grads, const std::vector<Region>& weights, float* m, float* v,
                   const ShardedAdamParams& hp);
  // Fails every pending and later operation (the peer set is broken; join a new group).
  void abort();

 private:
  struct Ring;
  void check_lengths(const std::vector<Region>& regions, const char* what);
  void ring_reduce_scatter(const Ring& ring, float* out);
  void ring_all_gather(const Ring& ring, const float* own);
  gloo::Context& send_context() const;
  gloo::Context& recv_context() const;

  int rank_;
  int world_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<gloo::transport::Device> devices_[2];
  std::shared_ptr<gloo::Context> contexts_[2];
  std::vector<float> pass_[2];  // reduce-scatter: what was received and summed, to send on
  std::vector<float> shard_;    // zero_step: this rank's shard of the summed gradients
  uint32_t slot_ = 0;
  // Set when every rank shares this host: the float32 collectives go through it. The small
  // float64 all-reduce stays on gloo's TCP ring (its uses are exact whatever the order).
  std::unique_ptr<ShmTransport> shm_;
  // In a group spanning hosts, the ring edges to the next rank / from the previous one when
  // they share this host: those messages go through shared memory, the others over TCP.
  std::unique_ptr<ShmLink> link_out_;
  std::unique_ptr<ShmLink> link_in_;
};

// One ZeRO-1 optimizer step on this rank's shard [b, e) of the flat parameter vector:
// `grad` holds the shard's summed gradients, `w` the shard's weights, `m`/`v` its AdamW
// moments; `norm` is the global pre-clip gradient norm (already × grad_scale). The math is
// the engine's adamw_step (model.cpp), element by element, so a sharded run matches an
// unsharded one. The updated weights go to `w_out`, which may be `w` or `grad` (element i is
// read before it is written); m and v are updated in place.
void sharded_adamw(const ShardedAdamParams& hp, double norm, const float* grad, const float* w, float* w_out, float* m,
                   float* v, long n);

// A plain TCP stream between two processes, the anchor bench:trainer compares the collectives'
// throughput with: tcp_listen binds (port 0 = any) and returns the socket; tcp_drain accepts
// one connection and reads `bytes`; tcp_send connects and writes `bytes`. Both return seconds.
int tcp_listen(const std::string& host, int* port);
double tcp_drain(int listen_fd, size_t bytes);
double tcp_send(const std::string& host, int port, size_t bytes);

}  // namespace temper
