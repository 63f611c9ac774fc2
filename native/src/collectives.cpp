// See collectives.h.
#include "collectives.h"
#include "backend.h"
#include "collectives_shm.h"
#include "kernels.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <gloo/allreduce.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <gloo/types.h>

namespace temper {
namespace {

// Wire format of the store (both ends are this file): a request is op(1) klen(4) key
// [vlen(4) value | timeout_ms(4)]; SET answers status(1), GET answers status(1) vlen(4) value.
constexpr uint8_t kOpSet = 'S';
constexpr uint8_t kOpGet = 'G';
constexpr uint8_t kOk = 0;
constexpr uint8_t kTimeout = 1;
// Keys and values are small (gloo addresses); a bigger length means a stray client.
constexpr uint32_t kMaxField = 1 << 20;

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Moves all n bytes through a socket, one way (`out`: sending); false on end of stream or error.
bool transfer_all(int fd, char* p, size_t n, bool out) {
  while (n > 0) {
    const ssize_t r = out ? ::send(fd, p, n, MSG_NOSIGNAL) : ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool read_all(int fd, void* buf, size_t n) { return transfer_all(fd, static_cast<char*>(buf), n, false); }
bool write_all(int fd, const void* buf, size_t n) {
  return transfer_all(fd, const_cast<char*>(static_cast<const char*>(buf)), n, true);
}

bool read_u32(int fd, uint32_t* v) {
  if (!read_all(fd, v, 4)) return false;
  *v = ntohl(*v);
  return true;
}

bool write_u32(int fd, uint32_t v) {
  v = htonl(v);
  return write_all(fd, &v, 4);
}

bool read_field(int fd, std::string* out) {
  uint32_t len = 0;
  if (!read_u32(fd, &len) || len > kMaxField) return false;
  out->resize(len);
  return len == 0 || read_all(fd, out->data(), len);
}

addrinfo* resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) throw std::runtime_error("collective store: cannot resolve " + host + ": " + gai_strerror(rc));
  return res;
}

// Connects to host:port, retrying until `timeout` (the listener may not be up yet); TCP_NODELAY.
int connect_to(const std::string& host, int port, std::chrono::milliseconds timeout, const char* what) {
  addrinfo* res = resolve(host, port, false);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last = "no address";
  int fd = -1;
  while (fd < 0) {
    for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
      int s = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (s < 0) continue;
      if (::connect(s, a->ai_addr, a->ai_addrlen) == 0) {
        fd = s;
      } else {
        last = errno_text("connect");
        ::close(s);
      }
    }
    if (fd >= 0 || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::freeaddrinfo(res);
  if (fd < 0) throw std::runtime_error(std::string(what) + " at " + host + ":" + std::to_string(port) + " is unreachable (" + last + ")");
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// gloo's rendezvous speaks to the store through this client.
class StoreClient : public gloo::rendezvous::Store {
 public:
  StoreClient(const std::string& host, int port, std::chrono::milliseconds timeout)
      : fd_(connect_to(host, port, timeout, "collective store")), timeout_(timeout) {}
  ~StoreClient() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void set(const std::string& key, const std::vector<char>& data) override {
    bool ok = write_all(fd_, &kOpSet, 1) && write_u32(fd_, key.size()) && write_all(fd_, key.data(), key.size()) &&
              write_u32(fd_, data.size()) && write_all(fd_, data.data(), data.size());
    uint8_t status = 0xff;
    if (!ok || !read_all(fd_, &status, 1) || status != kOk) throw std::runtime_error("collective store: set " + key + " failed");
  }

  std::vector<char> get(const std::string& key) override { return get(key, timeout_); }

  std::vector<char> get(const std::string& key, std::chrono::milliseconds timeout) {
    const uint32_t ms = static_cast<uint32_t>(std::max<long long>(0, timeout.count()));
    bool ok = write_all(fd_, &kOpGet, 1) && write_u32(fd_, key.size()) && write_all(fd_, key.data(), key.size()) &&
              write_u32(fd_, ms);
    uint8_t status = 0xff;
    if (!ok || !read_all(fd_, &status, 1)) throw std::runtime_error("collective store: connection lost reading " + key);
    if (status == kTimeout) {
      throw std::runtime_error("collective store: timed out after " + std::to_string(ms) + " ms waiting for " + key +
                               "; a rank did not join");
    }
    std::string value;
    if (status != kOk || !read_field(fd_, &value)) throw std::runtime_error("collective store: bad answer for " + key);
    return std::vector<char>(value.begin(), value.end());
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }

  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    for (const auto& k : keys) get(k, timeout);
  }

 private:
  int fd_ = -1;
  std::chrono::milliseconds timeout_;
};

// Ring messages: every message of an operation numbered `op` gets its own slot, the prefix in
// the top byte (apart from gloo's own collectives' prefixes), the operation in the next 24 bits
// and the message's index in the low 32.
uint64_t ring_slot(uint8_t prefix, uint32_t op, uint64_t index) {
  return (static_cast<uint64_t>(prefix) << 56) | (static_cast<uint64_t>(op & 0xffffff) << 32) | (index & 0xffffffffu);
}



}  // namespace

// ---------------------------------------------------------------- store server

StoreServer::StoreServer(const std::string& host, int port) {
  addrinfo* res = resolve(host, port, true);
  std::string last = "no address";
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 64) == 0) {
      listen_fd_ = fd;
      break;
    }
    last = errno_text("bind");
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (listen_fd_ < 0) throw std::runtime_error("collective store: cannot listen on " + host + ":" + std::to_string(port) + " (" + last + ")");
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

StoreServer::~StoreServer() { close(); }

void StoreServer::close() {
  if (closed_.exchange(true)) return;
  ::shutdown(listen_fd_, SHUT_RDWR);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : clients_) ::shutdown(fd, SHUT_RDWR);
  }
  cv_.notify_all();
  if (acceptor_.joinable()) acceptor_.join();
  for (auto& t : threads_) t.join();
  ::close(listen_fd_);
}

void StoreServer::accept_loop() {
  while (!closed_) {
    pollfd p{listen_fd_, POLLIN, 0};
    int pr = ::poll(&p, 1, 200);
    if (closed_) break;
    if (pr <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) {
      ::close(fd);
      break;
    }
    clients_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void StoreServer::serve(int fd) {
  for (;;) {
    uint8_t op = 0;
    std::string key;
    if (!read_all(fd, &op, 1) || !read_field(fd, &key)) break;
    if (op == kOpSet) {
      std::string value;
      if (!read_field(fd, &value)) break;
      {
        std::lock_guard<std::mutex> lock(mu_);
        data_[key] = std::vector<char>(value.begin(), value.end());
      }
      cv_.notify_all();
      if (!write_all(fd, &kOk, 1)) break;
    } else if (op == kOpGet) {
      uint32_t ms = 0;
      if (!read_u32(fd, &ms)) break;
      std::vector<char> value;
      bool found = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        found = cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return closed_ || data_.count(key) > 0; }) &&
                !closed_;
        if (found) value = data_[key];
      }
      if (!found) {
        if (closed_ || !write_all(fd, &kTimeout, 1)) break;
        continue;
      }
      if (!write_all(fd, &kOk, 1) || !write_u32(fd, value.size()) || !write_all(fd, value.data(), value.size())) break;
    } else {
      break;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  clients_.erase(std::remove(clients_.begin(), clients_.end(), fd), clients_.end());
  ::close(fd);
}

// ---------------------------------------------------------------- process group

ProcessGroup::ProcessGroup(int rank, int world, const std::string& store_host, int store_port,
                           const std::string& prefix, const std::string& host, std::chrono::milliseconds timeout,
                           bool shared_memory)
    : rank_(rank), world_(world), timeout_(timeout) {
  if (world < 1 || rank < 0 || rank >= world) {
    throw std::invalid_argument("collectives: rank " + std::to_string(rank) + " is not in [0, " + std::to_string(world) + ")");
  }
  gloo::transport::tcp::attr attr;
  attr.hostname = host;
  StoreClient client(store_host, store_port, timeout);
  // Two meshes, each on its own device (its own sockets and its own I/O thread): ring messages
  // a rank sends travel on mesh rank % 2 and those it receives on mesh (rank - 1) % 2, so with an
  // even number of ranks one thread writes a rank's outgoing stream while another reads its
  // incoming one. One mesh would put both directions of a 2-rank ring on one socket and one
  // thread, taking turns.
  for (int i = 0; i < 2; ++i) {
    devices_[i] = gloo::transport::tcp::CreateDevice(attr);
    gloo::rendezvous::PrefixStore store(prefix + (i == 0 ? "/a" : "/b"), client);
    auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, world);
    ctx->setTimeout(timeout);
    ctx->connectFullMesh(store, devices_[i]);
    contexts_[i] = ctx;
  }
  ShmTransport::Setup shm = ShmTransport::connect(
      rank, world, shared_memory,
      [&](const std::string& k, const std::string& v) { client.set(prefix + "/" + k, std::vector<char>(v.begin(), v.end())); },
      [&](const std::string& k) {
        const std::vector<char> v = client.get(prefix + "/" + k);
        return std::string(v.begin(), v.end());
      },
      timeout);
  shm_ = std::move(shm.all);
  link_out_ = std::move(shm.out);
  link_in_ = std::move(shm.in);
}

ProcessGroup::~ProcessGroup() {
  shm_.reset();
  link_out_.reset();
  link_in_.reset();
  for (auto& c : contexts_) c.reset();
  for (auto& d : devices_) d.reset();
}

void ProcessGroup::abort() {
  if (shm_) shm_->abort();
  if (link_out_) link_out_->abort();
  if (link_in_) link_in_->abort();
  // Closing the pairs makes every pending and later transfer fail with an IoException.
  for (auto& ctx : contexts_) {
    if (!ctx) continue;
    for (int r = 0; r < world_; ++r) {
      if (r == rank_) continue;
      auto& pair = ctx->getPair(r);
      if (pair) pair->close();
    }
  }
}

void ProcessGroup::all_reduce(double* data, long n) {
  if (world_ == 1 || n == 0) return;
  gloo::AllreduceOptions opts(contexts_[0]);
  opts.setOutput(data, static_cast<size_t>(n));
  opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<double>));
  opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
  opts.setTag(++slot_);
  opts.setTimeout(timeout_);
  gloo::allreduce(opts);
}

namespace {
// The part of a ring message's flat range that lies in one region: values [flat, flat + len)
// of the flat vector, at `offset` in region `region`.
struct Piece {
  size_t region;
  long offset;
  long flat;
  long len;
};

// The pieces of flat range [b, e), appended in order; `starts` holds each region's first flat index.
void pieces_of(const std::vector<Region>& regions, const std::vector<long>& starts, long b, long e,
               std::vector<Piece>* out) {
  size_t r = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), b) - starts.begin());
  r = r == 0 ? 0 : r - 1;
  for (; r < regions.size() && b < e; ++r) {
    const long lo = std::max(b, starts[r]);
    const long hi = std::min(e, starts[r] + regions[r].n);
    if (lo < hi) out->push_back({r, lo - starts[r], lo, hi - lo});
  }
}

// Segments of a ring step travel as separate messages so the adds of one overlap the transfer
// of the next.
constexpr long kSegmentFloats = 1 << 18;  // 1 MiB
static_assert(kSegmentFloats <= kShmLinkFloats, "a ring message must fit a shared-memory link's slot");
constexpr uint8_t kReduceScatterPrefix = 0x23;
constexpr uint8_t kAllGatherPrefix = 0x24;
}  // namespace

// One ring collective's view of the caller's regions: the flat vector they make, its shard
// layout, and the messages of each chunk — the pieces of each 1 MiB segment, cut at region
// ends — which sender and receiver derive alike (the ranks' region lengths are checked equal).
struct ProcessGroup::Ring {
  const std::vector<Region>& regions;
  std::vector<long> starts;
  ShardLayout layout;
  // messages[c]: chunk c's messages in order; msg_seg[c][k]: the segment message k lies in.
  std::vector<std::vector<Piece>> messages;
  uint64_t stride = 0;  // message indices: step·stride + k

  Ring(const std::vector<Region>& rs, int world) : regions(rs) {
    long total = 0;
    for (const auto& r : rs) {
      starts.push_back(total);
      total += r.n;
    }
    layout = ShardLayout::of(total, world);
    messages.resize(static_cast<size_t>(world));
    for (int c = 0; c < world; ++c) {
      for (long b = layout.begin(c); b < layout.end(c); b += kSegmentFloats) {
        pieces_of(regions, starts, b, std::min(layout.end(c), b + kSegmentFloats), &messages[c]);
      }
      stride = std::max<uint64_t>(stride, messages[c].size());
    }
    if (stride * static_cast<uint64_t>(world) >= (1ull << 32)) throw std::runtime_error("collective: too many buffers");
  }
  float* at(const Piece& p) const { return regions[p.region].data + p.offset; }
};

gloo::Context& ProcessGroup::send_context() const { return *contexts_[rank_ % 2]; }
gloo::Context& ProcessGroup::recv_context() const { return *contexts_[((rank_ + world_ - 1) % world_) % 2]; }

// Every rank must pass regions of the same lengths (the messages are cut at region ends): each
// rank puts (count, total, Σ len·(i+1), Σ len²) in its own slot and all compare.
void ProcessGroup::check_lengths(const std::vector<Region>& regions, const char* what) {
  constexpr int kPrint = 4;
  const int n = world_;
  std::vector<double> prints(static_cast<size_t>(n * kPrint), 0.0);
  double* mine = prints.data() + rank_ * kPrint;
  mine[0] = static_cast<double>(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    mine[1] += static_cast<double>(regions[i].n);
    mine[2] += static_cast<double>(regions[i].n) * static_cast<double>(i + 1);
    mine[3] += static_cast<double>(regions[i].n) * static_cast<double>(regions[i].n);
  }
  all_reduce(prints.data(), static_cast<long>(prints.size()));
  for (int r = 0; r < n; ++r) {
    if (!std::equal(prints.begin() + r * kPrint, prints.begin() + (r + 1) * kPrint, prints.begin())) {
      throw std::runtime_error(std::string(what) + ": ranks passed buffers of different lengths (rank 0: " +
                               std::to_string(static_cast<long>(prints[0])) + " buffers, " +
                               std::to_string(static_cast<long>(prints[1])) + " values; rank " + std::to_string(r) +
                               ": " + std::to_string(static_cast<long>(prints[r * kPrint])) + " buffers, " +
                               std::to_string(static_cast<long>(prints[r * kPrint + 1])) + " values)");
    }
  }
}

// Ring reduce-scatter: chunk c starts at rank c+1 and travels the ring c+1 → c+2 → … → c,
// each rank adding its own values to what it receives (own + incoming, element by element: the
// order of every sum is fixed by the ring), so the sum is complete at rank c. At step t rank r
// sends chunk r-1-t and receives chunk r-2-t. The caller's regions are only read: what a rank
// received and summed waits in one of two scratch buffers (alternating by step) to be sent on,
// and the last step's sums — this rank's shard — go to `out` (null: into the regions).
void ProcessGroup::ring_reduce_scatter(const Ring& ring, float* out) {
  const int n = world_;
  const long s = ring.layout.shard;
  const int next = (rank_ + 1) % n;
  const int prev = (rank_ + n - 1) % n;
  ShmLink* const shm_out = link_out_.get();
  ShmLink* const shm_in = link_in_.get();
  for (auto& b : pass_) b.resize(static_cast<size_t>(s));
  // Region-backed sends (step 0) and the scratch buffers, each as a buffer of the mesh it
  // travels on.
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> src(ring.regions.size());
  std::unique_ptr<gloo::transport::UnboundBuffer> fwd[2];
  if (!shm_out) {
    for (int i = 0; i < 2; ++i) {
      fwd[i] = send_context().createUnboundBuffer(pass_[i].data(), static_cast<size_t>(s) * sizeof(float));
    }
  }
  // One receive buffer per incoming message, so each is waited for (and added) on its own.
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> in;
  const uint32_t op = ++slot_;
  std::vector<std::pair<gloo::transport::UnboundBuffer*, long>> sent;
  for (int step = 0; step < n - 1; ++step) {
    const long out_chunk = ((rank_ - 1 - step) % n + n) % n;
    const long in_chunk = ((rank_ - 2 - step) % n + n) % n;
    const bool last = step == n - 2;
    const long in_base = ring.layout.begin(static_cast<int>(in_chunk));
    const long out_base = ring.layout.begin(static_cast<int>(out_chunk));
    auto& incoming = ring.messages[in_chunk];
    const auto& outgoing = ring.messages[out_chunk];
    float* acc = pass_[step % 2].data();
    // Every receive of the step is posted before the first send: gloo's TCP pair queues its
    // "ready to receive" notices behind outgoing data, so a notice posted after a send waits
    // for that whole send to leave, and the peer cannot start the matching message meanwhile.
    if (!shm_in) {
      in.resize(incoming.size());
      for (size_t k = 0; k < incoming.size(); ++k) {
        const Piece& p = incoming[k];
        in[k] = recv_context().createUnboundBuffer(acc + (p.flat - in_base), static_cast<size_t>(p.len) * sizeof(float));
        in[k]->recv(prev, ring_slot(kReduceScatterPrefix, op, step * ring.stride + k));
      }
    }
    // Message k's values: the rank's own (step 0, from its regions), else what it received and
    // summed at the step before.
    auto outgoing_values = [&](const Piece& p) -> const float* {
      return step == 0 ? ring.at(p) : pass_[(step - 1) % 2].data() + (p.flat - out_base);
    };
    if (!shm_out) {
      for (size_t k = 0; k < outgoing.size(); ++k) {
        const Piece& p = outgoing[k];
        const uint64_t slot = ring_slot(kReduceScatterPrefix, op, step * ring.stride + k);
        if (step == 0) {
          auto& b = src[p.region];
          if (!b) b = send_context().createUnboundBuffer(ring.regions[p.region].data, static_cast<size_t>(ring.regions[p.region].n) * sizeof(float));
          b->send(next, slot, static_cast<size_t>(p.offset) * sizeof(float), static_cast<size_t>(p.len) * sizeof(float));
          sent.emplace_back(b.get(), 1);
        } else {
          fwd[(step - 1) % 2]->send(next, slot, static_cast<size_t>(p.flat - out_base) * sizeof(float),
                                    static_cast<size_t>(p.len) * sizeof(float));
          sent.emplace_back(fwd[(step - 1) % 2].get(), 1);
        }
      }
    }
    // Own value first, then the incoming partial sum: the order of every sum is the ring's.
    auto add = [&](const Piece& p, const float* inc) {
      const float* own = ring.at(p);
      float* dst = !last ? acc + (p.flat - in_base) : out ? out + (p.flat - in_base) : ring.at(p);
      for (long i = 0; i < p.len; ++i) dst[i] = own[i] + inc[i];
    };
    // Message by message: a shared-memory send waits for the peer to take the message two
    // before, which the peer does in its own loop between its sends, so no rank waits on one
    // that waits on it.
    const size_t count = std::max(outgoing.size(), incoming.size());
    for (size_t k = 0; k < count; ++k) {
      if (shm_out && k < outgoing.size()) shm_out->send(outgoing_values(outgoing[k]), outgoing[k].len, "reduce-scatter");
      if (k >= incoming.size()) continue;
      const Piece& p = incoming[k];
      if (shm_in) {
        add(p, shm_in->receive(p.len, "reduce-scatter"));
        shm_in->release();
      } else {
        if (!in[k]->waitRecv(timeout_)) throw std::runtime_error("reduce-scatter: receive timed out");
        add(p, acc + (p.flat - in_base));
      }
    }
    // The buffer sent from at this step is received into at the next: its sends must be done.
    for (auto& [b, c] : sent) {
      for (; c > 0; --c) {
        if (!b->waitSend(timeout_)) throw std::runtime_error("reduce-scatter: send timed out");
      }
    }
    sent.clear();
  }
  if (out) {
    const long len = ring.layout.end(rank_) - ring.layout.begin(rank_);
    std::fill(out + len, out + s, 0.0f);
  }
}

// Ring all-gather: at step t rank r forwards chunk r-t (its own first: from `own` when given,
// else from its regions) and receives chunk r-1-t straight into its regions.
void ProcessGroup::ring_all_gather(const Ring& ring, const float* own) {
  const int n = world_;
  const int next = (rank_ + 1) % n;
  const int prev = (rank_ + n - 1) % n;
  ShmLink* const shm_out = link_out_.get();
  ShmLink* const shm_in = link_in_.get();
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> src(ring.regions.size()), dst(ring.regions.size());
  auto buffer = [&](std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>>& v, gloo::Context& ctx, size_t r) {
    if (!v[r]) v[r] = ctx.createUnboundBuffer(ring.regions[r].data, static_cast<size_t>(ring.regions[r].n) * sizeof(float));
    return v[r].get();
  };
  std::unique_ptr<gloo::transport::UnboundBuffer> own_buf;
  if (own && !shm_out) {
    const long len = ring.layout.end(rank_) - ring.layout.begin(rank_);
    own_buf = send_context().createUnboundBuffer(const_cast<float*>(own), static_cast<size_t>(std::max(1L, len)) * sizeof(float));
  }
  const uint32_t op = ++slot_;
  std::vector<gloo::transport::UnboundBuffer*> waits;
  for (int step = 0; step < n - 1; ++step) {
    const long out_chunk = ((rank_ - step) % n + n) % n;
    const long in_chunk = ((rank_ - 1 - step) % n + n) % n;
    const auto& incoming = ring.messages[in_chunk];
    waits.clear();
    if (!shm_in) {
      for (size_t k = 0; k < incoming.size(); ++k) {
        const Piece& p = incoming[k];
        auto* b = buffer(dst, recv_context(), p.region);
        b->recv(prev, ring_slot(kAllGatherPrefix, op, step * ring.stride + k), static_cast<size_t>(p.offset) * sizeof(float),
                static_cast<size_t>(p.len) * sizeof(float));
        waits.push_back(b);
      }
    }
    const auto& outgoing = ring.messages[out_chunk];
    const long out_base = ring.layout.begin(static_cast<int>(out_chunk));
    std::vector<gloo::transport::UnboundBuffer*> sends;
    if (!shm_out) {
      for (size_t k = 0; k < outgoing.size(); ++k) {
        const Piece& p = outgoing[k];
        const uint64_t slot = ring_slot(kAllGatherPrefix, op, step * ring.stride + k);
        if (step == 0 && own_buf) {
          own_buf->send(next, slot, static_cast<size_t>(p.flat - out_base) * sizeof(float), static_cast<size_t>(p.len) * sizeof(float));
          sends.push_back(own_buf.get());
        } else {
          auto* b = buffer(src, send_context(), p.region);
          b->send(next, slot, static_cast<size_t>(p.offset) * sizeof(float), static_cast<size_t>(p.len) * sizeof(float));
          sends.push_back(b);
        }
      }
    }
    // Message by message, as in the reduce-scatter.
    const size_t count = std::max(outgoing.size(), incoming.size());
    for (size_t k = 0; k < count; ++k) {
      if (shm_out && k < outgoing.size()) {
        const Piece& p = outgoing[k];
        shm_out->send(step == 0 && own ? own + (p.flat - out_base) : ring.at(p), p.len, "all-gather");
      }
      if (k >= incoming.size()) continue;
      if (shm_in) {
        const Piece& p = incoming[k];
        const float* v = shm_in->receive(p.len, "all-gather");
        std::copy(v, v + p.len, ring.at(p));
        shm_in->release();
      } else if (!waits[k]->waitRecv(timeout_)) {
        throw std::runtime_error("all-gather: receive timed out");
      }
    }
    for (auto* b : sends) {
      if (!b->waitSend(timeout_)) throw std::runtime_error("all-gather: send timed out");
    }
  }
  if (own) {
    for (const Piece& p : ring.messages[rank_]) {
      std::copy(own + (p.flat - ring.layout.begin(rank_)), own + (p.flat - ring.layout.begin(rank_)) + p.len, ring.at(p));
    }
  }
}

void ProcessGroup::all_reduce(const std::vector<Region>& regions) {
  if (world_ == 1) return;
  // The shared-memory transport checks the lengths itself, at its first barrier.
  if (shm_) return shm_->all_reduce(regions);
  check_lengths(regions, "all-reduce");
  const Ring ring(regions, world_);
  if (ring.layout.n == 0) return;
  ring_reduce_scatter(ring, nullptr);
  ring_all_gather(ring, nullptr);
}

void ProcessGroup::reduce_scatter(const std::vector<Region>& regions, float* out) {
  const Ring ring(regions, world_);
  if (world_ == 1) {
    for (const Piece& p : ring.messages[0]) std::copy(ring.at(p), ring.at(p) + p.len, out + p.flat);
    return;
  }
  if (shm_) return shm_->reduce_scatter(regions, out);
  check_lengths(regions, "reduce-scatter");
  if (ring.layout.n == 0) return;
  ring_reduce_scatter(ring, out);
}

void ProcessGroup::all_gather(const std::vector<Region>& regions, const float* own) {
  const Ring ring(regions, world_);
  if (world_ == 1) {
    for (const Piece& p : ring.messages[0]) std::copy(own + p.flat, own + p.flat + p.len, ring.at(p));
    return;
  }
  if (shm_) return shm_->all_gather(regions, own);
  check_lengths(regions, "all-gather");
  if (ring.layout.n == 0) return;
  ring_all_gather(ring, own);
}

double ProcessGroup::zero_step(const std::vector<Region>& grads, const std::vector<Region>& weights, float* m, float* v,
                               const ShardedAdamParams& hp) {
  if (grads.size() != weights.size()) throw std::runtime_error("zero step: gradient and weight buffers differ in number");
  for (size_t i = 0; i < grads.size(); ++i) {
    if (grads[i].n != weights[i].n) {
      throw std::runtime_error("zero step: buffer " + std::to_string(i) + " has " + std::to_string(grads[i].n) +
                               " gradients and " + std::to_string(weights[i].n) + " weights");
    }
  }
  const Ring g(grads, world_);
  const Ring w(weights, world_);
  const long s = g.layout.shard;
  const long b = g.layout.begin(rank_);
  const long len = g.layout.end(rank_) - b;
  shard_.resize(static_cast<size_t>(std::max(1L, s)));
  float* sum = shard_.data();
  if (world_ == 1) {
    for (const Piece& p : g.messages[0]) std::copy(g.at(p), g.at(p) + p.len, sum + p.flat);
  } else {
    if (shm_) {
      shm_->reduce_scatter(grads, sum);  // checks the lengths itself
    } else {
      check_lengths(grads, "zero step");
      if (g.layout.n > 0) ring_reduce_scatter(g, sum);
    }
  }
  // The global norm: each rank's sum of squares in its slot, summed in rank order (adding
  // zeros is exact, so every rank gets the same bits).
  std::vector<double> parts(static_cast<size_t>(world_), 0.0);
  parts[rank_] = sum_squares(sum, len);
  all_reduce(parts.data(), world_);
  double total = 0.0;
  for (double p : parts) total += p;
  const double norm = std::sqrt(total) * hp.grad_scale;
  if (!std::isfinite(norm)) throw std::runtime_error("adam: gradient norm is not finite; step skipped, gradients kept");
  // This rank's shard of the weights, read where they live (the pieces of its range); the
  // updated values replace the summed gradients in `sum` (each element's gradient is read
  // before its weight is written), so the caller's weights change only as the all-gather
  // writes them: every rank's at once.
  for (const Piece& p : w.messages[rank_]) {
    const long at = p.flat - b;
    sharded_adamw(hp, norm, sum + at, w.at(p), sum + at, m + at, v + at, p.len);
  }
  if (world_ == 1) {
    for (const Piece& p : w.messages[0]) std::copy(sum + p.flat, sum + p.flat + p.len, w.at(p));
  } else if (w.layout.n > 0 && shm_) {
    shm_->all_gather(weights, sum);
  } else if (w.layout.n > 0) {
    ring_all_gather(w, sum);
  }
  for (const auto& r : grads) std::fill(r.data, r.data + r.n, 0.0f);
  return norm;
}

// ---------------------------------------------------------------- sharded AdamW

void sharded_adamw(const ShardedAdamParams& hp, double norm, const float* grad, const float* w, float* w_out, float* m,
                   float* v, long n) {
  // model.cpp's adamw_step: the same clipping, coefficients and update kernel.
  float clip = 1.0f;
  if (hp.grad_clip > 0) clip = std::min(1.0f, static_cast<float>(hp.grad_clip / (norm + 1e-6)));
  const AdamCoefficients c =
      adamw_coefficients(hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.grad_scale * clip, hp.step);
  kernels().adamw(w, grad, m, v, w_out, n, c);
}

// ---------------------------------------------------------------- raw TCP anchor

namespace {
constexpr size_t kStreamChunk = 1 << 20;
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int tcp_listen(const std::string& host, int* port) {
  addrinfo* res = resolve(host, 0, true);
  int fd = -1;
  for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 1) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) throw std::runtime_error(errno_text("tcp stream: listen"));
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return fd;
}

double tcp_drain(int listen_fd, size_t bytes) {
  int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(listen_fd);
  if (fd < 0) throw std::runtime_error(errno_text("tcp stream: accept"));
  std::vector<char> buf(kStreamChunk);
  const auto t0 = std::chrono::steady_clock::now();
  size_t got = 0;
  while (got < bytes) {
    const size_t n = std::min(buf.size(), bytes - got);
    if (!read_all(fd, buf.data(), n)) break;
    got += n;
  }
  const double t = seconds_since(t0);
  const uint8_t ack = 1;
  write_all(fd, &ack, 1);
  ::close(fd);
  if (got < bytes) throw std::runtime_error("tcp stream: the sender stopped early");
  return t;
}

double tcp_send(const std::string& host, int port, size_t bytes) {
  int fd = connect_to(host, port, std::chrono::milliseconds(10000), "tcp stream");
  std::vector<char> buf(kStreamChunk, 1);
  const auto t0 = std::chrono::steady_clock::now();
  size_t sent = 0;
  bool ok = true;
  while (ok && sent < bytes) {
    const size_t n = std::min(buf.size(), bytes - sent);
    ok = write_all(fd, buf.data(), n);
    sent += n;
  }
  // Until the receiver has read everything: its one-byte answer.
  uint8_t ack = 0;
  ok = ok && read_all(fd, &ack, 1);
  const double t = seconds_since(t0);
  ::close(fd);
  if (!ok) throw std::runtime_error("tcp stream: the receiver went away");
  return t;
}

}  // namespace temper
