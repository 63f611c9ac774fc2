// See collectives.h.
#include "collectives.h"

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

bool read_all(int fd, void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r == 0) return false;
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_all(int fd, const void* buf, size_t n) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
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

constexpr uint8_t kReduceScatterPrefix = 0x21;
constexpr uint8_t kAllGatherPrefix = 0x22;
constexpr uint8_t kRegionsReduceScatterPrefix = 0x23;
constexpr uint8_t kRegionsAllGatherPrefix = 0x24;
// Segments of a ring step travel as separate messages so the adds of one overlap the transfer
// of the next.
constexpr long kSegmentFloats = 1 << 18;  // 1 MiB

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
                           const std::string& prefix, const std::string& host, std::chrono::milliseconds timeout)
    : rank_(rank), world_(world), timeout_(timeout) {
  if (world < 1 || rank < 0 || rank >= world) {
    throw std::invalid_argument("collectives: rank " + std::to_string(rank) + " is not in [0, " + std::to_string(world) + ")");
  }
  gloo::transport::tcp::attr attr;
  attr.hostname = host;
  device_ = gloo::transport::tcp::CreateDevice(attr);
  StoreClient client(store_host, store_port, timeout);
  gloo::rendezvous::PrefixStore store(prefix, client);
  auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, world);
  ctx->setTimeout(timeout);
  ctx->connectFullMesh(store, device_);
  context_ = ctx;
}

ProcessGroup::~ProcessGroup() {
  context_.reset();
  device_.reset();
}

void ProcessGroup::abort() {
  // Closing the pairs makes every pending and later transfer fail with an IoException.
  if (!context_) return;
  for (int r = 0; r < world_; ++r) {
    if (r == rank_) continue;
    auto& pair = context_->getPair(r);
    if (pair) pair->close();
  }
}

void ProcessGroup::all_reduce(float* padded, const ShardLayout& layout) {
  reduce_scatter(padded, layout);
  all_gather(padded, layout);
}

void ProcessGroup::all_reduce(double* data, long n) {
  if (world_ == 1 || n == 0) return;
  gloo::AllreduceOptions opts(context_);
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

// The pieces of flat range [b, e), in order; `starts` holds each region's first flat index.
void pieces_of(const std::vector<Region>& regions, const std::vector<long>& starts, long b, long e,
               std::vector<Piece>* out) {
  out->clear();
  size_t r = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), b) - starts.begin());
  r = r == 0 ? 0 : r - 1;
  for (; r < regions.size() && b < e; ++r) {
    const long lo = std::max(b, starts[r]);
    const long hi = std::min(e, starts[r] + regions[r].n);
    if (lo < hi) out->push_back({r, lo - starts[r], lo, hi - lo});
  }
}
}  // namespace

// The reduce-scatter then all-gather of all_reduce(float*, layout), element for element the
// same operations in the same order, but straight on the caller's regions: a message never
// crosses a region's end (one per piece), the padding past the n values is never sent, and the
// only copy is the incoming half of each reduce-scatter step (into scratch, to be added).
void ProcessGroup::all_reduce(const std::vector<Region>& regions) {
  const int n = world_;
  if (n == 1) return;
  std::vector<long> starts;
  long total = 0;
  for (const auto& r : regions) {
    starts.push_back(total);
    total += r.n;
  }
  // The messages are cut at region ends, so every rank must pass regions of the same lengths:
  // each rank puts (count, total, Σ len·(i+1), Σ len²) in its own slot and all compare.
  {
    constexpr int kPrint = 4;
    std::vector<double> prints(static_cast<size_t>(n * kPrint), 0.0);
    double* mine = prints.data() + rank_ * kPrint;
    mine[0] = static_cast<double>(regions.size());
    mine[1] = static_cast<double>(total);
    for (size_t i = 0; i < regions.size(); ++i) {
      mine[2] += static_cast<double>(regions[i].n) * static_cast<double>(i + 1);
      mine[3] += static_cast<double>(regions[i].n) * static_cast<double>(regions[i].n);
    }
    all_reduce(prints.data(), static_cast<long>(prints.size()));
    for (int r = 0; r < n; ++r) {
      if (!std::equal(prints.begin() + r * kPrint, prints.begin() + (r + 1) * kPrint, prints.begin())) {
        throw std::runtime_error("all-reduce: ranks passed buffers of different lengths (rank 0: " +
                                 std::to_string(static_cast<long>(prints[0])) + " buffers, " +
                                 std::to_string(static_cast<long>(prints[1])) + " values; rank " + std::to_string(r) +
                                 ": " + std::to_string(static_cast<long>(prints[r * kPrint])) + " buffers, " +
                                 std::to_string(static_cast<long>(prints[r * kPrint + 1])) + " values)");
      }
    }
  }
  if (total == 0) return;
  const ShardLayout layout = ShardLayout::of(total, n);
  const long s = layout.shard;
  const int next = (rank_ + 1) % n;
  const int prev = (rank_ + n - 1) % n;
  const long nseg = std::max<long>(1, (s + kSegmentFloats - 1) / kSegmentFloats);
  // Message indices: step·stride + the piece's number within its chunk.
  const uint64_t stride = static_cast<uint64_t>(nseg) + regions.size();
  if (stride * static_cast<uint64_t>(n) >= (1ull << 32)) throw std::runtime_error("all-reduce: too many buffers");
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> bufs(regions.size());
  for (size_t r = 0; r < regions.size(); ++r) {
    if (regions[r].n > 0) bufs[r] = context_->createUnboundBuffer(regions[r].data, static_cast<size_t>(regions[r].n) * sizeof(float));
  }
  scratch_.resize(static_cast<size_t>(s));
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> in(nseg);
  for (long j = 0; j < nseg; ++j) {
    const long b = j * kSegmentFloats;
    const long e = std::min(s, b + kSegmentFloats);
    in[j] = context_->createUnboundBuffer(scratch_.data() + b, static_cast<size_t>(e - b) * sizeof(float));
  }
  std::vector<long> sends(regions.size()), recvs(regions.size());
  std::vector<Piece> pieces;
  std::vector<std::vector<Piece>> incoming(nseg);
  auto wait_sends = [&](const char* what) {
    for (size_t r = 0; r < regions.size(); ++r) {
      for (; sends[r] > 0; --sends[r]) {
        if (!bufs[r]->waitSend(timeout_)) throw std::runtime_error(std::string(what) + ": send timed out");
      }
    }
  };
  // Posts the sends of chunk `chunk` at step `step` (pieces numbered from 0 within the chunk).
  auto send_chunk = [&](uint8_t prefix, uint32_t op, int step, long chunk) {
    uint64_t k = 0;
    for (long j = 0; j < nseg; ++j) {
      const long b = chunk * s + j * kSegmentFloats;
      pieces_of(regions, starts, b, std::min(chunk * s + s, b + kSegmentFloats), &pieces);
      for (const Piece& p : pieces) {
        bufs[p.region]->send(next, ring_slot(prefix, op, step * stride + k++), static_cast<size_t>(p.offset) * sizeof(float),
                             static_cast<size_t>(p.len) * sizeof(float));
        ++sends[p.region];
      }
    }
  };

  // Reduce-scatter, as reduce_scatter(): at step t rank r sends chunk r-1-t, receives chunk
  // r-2-t into scratch and adds it to its own values (own + incoming).
  uint32_t op = ++slot_;
  for (int step = 0; step < n - 1; ++step) {
    const long out_chunk = ((rank_ - 1 - step) % n + n) % n;
    const long in_chunk = ((rank_ - 2 - step) % n + n) % n;
    // Every receive of the step before the first send (see reduce_scatter()).
    uint64_t k = 0;
    for (long j = 0; j < nseg; ++j) {
      const long b = in_chunk * s + j * kSegmentFloats;
      pieces_of(regions, starts, b, std::min(in_chunk * s + s, b + kSegmentFloats), &incoming[j]);
      for (const Piece& p : incoming[j]) {
        in[j]->recv(prev, ring_slot(kRegionsReduceScatterPrefix, op, step * stride + k++),
                    static_cast<size_t>(p.flat - b) * sizeof(float), static_cast<size_t>(p.len) * sizeof(float));
      }
    }
    send_chunk(kRegionsReduceScatterPrefix, op, step, out_chunk);
    for (long j = 0; j < nseg; ++j) {
      for (size_t i = 0; i < incoming[j].size(); ++i) {
        if (!in[j]->waitRecv(timeout_)) throw std::runtime_error("all-reduce: receive timed out");
      }
      const long b = in_chunk * s + j * kSegmentFloats;
      for (const Piece& p : incoming[j]) {
        float* dst = regions[p.region].data + p.offset;
        const float* src = scratch_.data() + j * kSegmentFloats + (p.flat - b);
        for (long i = 0; i < p.len; ++i) dst[i] = dst[i] + src[i];
      }
    }
    wait_sends("all-reduce");
  }

  // All-gather, as all_gather(): at step t rank r forwards chunk r-t (its own reduced chunk
  // first) and receives chunk r-1-t straight into the regions.
  op = ++slot_;
  for (int step = 0; step < n - 1; ++step) {
    const long out_chunk = ((rank_ - step) % n + n) % n;
    const long in_chunk = ((rank_ - 1 - step) % n + n) % n;
    uint64_t k = 0;
    for (long j = 0; j < nseg; ++j) {
      const long b = in_chunk * s + j * kSegmentFloats;
      pieces_of(regions, starts, b, std::min(in_chunk * s + s, b + kSegmentFloats), &pieces);
      for (const Piece& p : pieces) {
        bufs[p.region]->recv(prev, ring_slot(kRegionsAllGatherPrefix, op, step * stride + k++),
                             static_cast<size_t>(p.offset) * sizeof(float), static_cast<size_t>(p.len) * sizeof(float));
        ++recvs[p.region];
      }
    }
    send_chunk(kRegionsAllGatherPrefix, op, step, out_chunk);
    for (size_t r = 0; r < regions.size(); ++r) {
      for (; recvs[r] > 0; --recvs[r]) {
        if (!bufs[r]->waitRecv(timeout_)) throw std::runtime_error("all-reduce: receive timed out");
      }
    }
    wait_sends("all-reduce");
  }
}

// Ring reduce-scatter: chunk k starts at rank k+1 and travels the ring k+1 → k+2 → … → k,
// each rank adding its own values to what it receives, so its sum is complete at rank k. At
// step s rank r sends chunk r-1-s to r+1 and receives chunk r-2-s from r-1.
void ProcessGroup::reduce_scatter(float* padded, const ShardLayout& layout) {
  const int n = world_;
  if (n == 1) return;
  const long s = layout.shard;
  const uint32_t op = ++slot_;
  const int next = (rank_ + 1) % n;
  const int prev = (rank_ + n - 1) % n;
  const long nseg = std::max<long>(1, (s + kSegmentFloats - 1) / kSegmentFloats);
  scratch_.resize(static_cast<size_t>(s));
  auto data = context_->createUnboundBuffer(padded, static_cast<size_t>(s) * n * sizeof(float));
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> in(nseg);
  for (long j = 0; j < nseg; ++j) {
    const long b = j * kSegmentFloats;
    const long e = std::min(s, b + kSegmentFloats);
    in[j] = context_->createUnboundBuffer(scratch_.data() + b, static_cast<size_t>(e - b) * sizeof(float));
  }
  for (int step = 0; step < n - 1; ++step) {
    const long send_chunk = ((rank_ - 1 - step) % n + n) % n;
    const long recv_chunk = ((rank_ - 2 - step) % n + n) % n;
    // Every receive of the step is posted before the first send: gloo's TCP pair queues its
    // "ready to receive" notices behind outgoing data, so a notice posted after a send waits
    // for that whole send to leave, and the peer cannot start the matching segment meanwhile.
    for (long j = 0; j < nseg; ++j) in[j]->recv(prev, ring_slot(kReduceScatterPrefix, op, step * nseg + j));
    for (long j = 0; j < nseg; ++j) {
      const long b = j * kSegmentFloats;
      const long e = std::min(s, b + kSegmentFloats);
      data->send(next, ring_slot(kReduceScatterPrefix, op, step * nseg + j),
                 static_cast<size_t>(send_chunk * s + b) * sizeof(float), static_cast<size_t>(e - b) * sizeof(float));
    }
    for (long j = 0; j < nseg; ++j) {
      const long b = j * kSegmentFloats;
      const long e = std::min(s, b + kSegmentFloats);
      if (!in[j]->waitRecv(timeout_)) throw std::runtime_error("reduce-scatter: receive timed out");
      float* dst = padded + recv_chunk * s + b;
      const float* src = scratch_.data() + b;
      // own + incoming, element by element: the order of every sum is fixed by the ring.
      for (long i = 0; i < e - b; ++i) dst[i] = dst[i] + src[i];
    }
    for (long j = 0; j < nseg; ++j) {
      if (!data->waitSend(timeout_)) throw std::runtime_error("reduce-scatter: send timed out");
    }
  }
}

// Ring all-gather: at step s rank r forwards chunk r-s to r+1 and receives chunk r-1-s.
void ProcessGroup::all_gather(float* padded, const ShardLayout& layout) {
  const int n = world_;
  if (n == 1) return;
  const long s = layout.shard;
  const uint32_t op = ++slot_;
  const int next = (rank_ + 1) % n;
  const int prev = (rank_ + n - 1) % n;
  const long nseg = std::max<long>(1, (s + kSegmentFloats - 1) / kSegmentFloats);
  auto data = context_->createUnboundBuffer(padded, static_cast<size_t>(s) * n * sizeof(float));
  for (int step = 0; step < n - 1; ++step) {
    const long send_chunk = ((rank_ - step) % n + n) % n;
    const long recv_chunk = ((rank_ - 1 - step) % n + n) % n;
    // All receives before the first send (see reduce_scatter).
    for (long j = 0; j < nseg; ++j) {
      const long b = j * kSegmentFloats;
      const long e = std::min(s, b + kSegmentFloats);
      data->recv(prev, ring_slot(kAllGatherPrefix, op, step * nseg + j), static_cast<size_t>(recv_chunk * s + b) * sizeof(float),
                 static_cast<size_t>(e - b) * sizeof(float));
    }
    for (long j = 0; j < nseg; ++j) {
      const long b = j * kSegmentFloats;
      const long e = std::min(s, b + kSegmentFloats);
      data->send(next, ring_slot(kAllGatherPrefix, op, step * nseg + j), static_cast<size_t>(send_chunk * s + b) * sizeof(float),
                 static_cast<size_t>(e - b) * sizeof(float));
    }
    for (long j = 0; j < nseg; ++j) {
      if (!data->waitRecv(timeout_)) throw std::runtime_error("all-gather: receive timed out");
    }
    for (long j = 0; j < nseg; ++j) {
      if (!data->waitSend(timeout_)) throw std::runtime_error("all-gather: send timed out");
    }
  }
}

// ---------------------------------------------------------------- sharded AdamW

void sharded_adamw(const ShardedAdamParams& hp, double norm, const float* grad, float* w, float* m, float* v, long n) {
  // As model.cpp's adamw_step, operation by operation (torch.optim.AdamW, single tensor).
  float clip = 1.0f;
  if (hp.grad_clip > 0) clip = std::min(1.0f, static_cast<float>(hp.grad_clip / (norm + 1e-6)));
  const float gscale = hp.grad_scale * clip;
  const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(hp.beta1), hp.step));
  const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(hp.beta2), hp.step));
  const float step_size = hp.lr / bc1;
  const float bc2_sqrt = std::sqrt(bc2);
  const float decay = 1.0f - hp.lr * hp.weight_decay;
  for (long i = 0; i < n; ++i) {
    const float gi = grad[i] * gscale;
    w[i] *= decay;
    m[i] += (gi - m[i]) * (1.0f - hp.beta1);
    v[i] = v[i] * hp.beta2 + (1.0f - hp.beta2) * gi * gi;
    const float denom = std::sqrt(v[i]) / bc2_sqrt + hp.eps;
    w[i] -= step_size * (m[i] / denom);
  }
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
    ssize_t r = ::recv(fd, buf.data(), std::min(buf.size(), bytes - got), 0);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      break;
    }
    got += static_cast<size_t>(r);
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
