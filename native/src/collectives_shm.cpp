// See collectives_shm.h.
#include "collectives_shm.h"

#include <linux/futex.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace temper {
namespace {

// Values of one chunk a window moves (4 MiB): few enough barriers that ranks sharing busy
// cores rarely wait for one another, small enough that a window's staging is still in the
// shared cache when the peers read it; it bounds the memory too (each rank's segment is 2
// halves × world slots of this, whatever the buffer's size; pages are taken as touched).
constexpr long kWindow = 1 << 20;
constexpr size_t kHeaderBytes = 4096;
// How long a wait spins before it sleeps on the futex: a peer that is running arrives within
// microseconds; one that is not (more ranks than cores) must not be spun against.
constexpr auto kSpin = std::chrono::microseconds(30);
// A sleeping wait wakes this often to look for a gone peer, an abort or the deadline.
constexpr long kSliceNs = 20'000'000;

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Futexes on a shared mapping (no FUTEX_PRIVATE_FLAG: the waiters are other processes).
void futex_wait(std::atomic<uint32_t>* word, uint32_t seen, long ns) {
  timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}
void futex_wake(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

sockaddr_un abstract_address(const std::string& name, socklen_t* len) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // Abstract namespace: a leading NUL, no file; the name dies with the socket.
  const size_t n = std::min(name.size(), sizeof(addr.sun_path) - 1);
  std::memcpy(addr.sun_path + 1, name.data(), n);
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
  return addr;
}

int listen_abstract(std::string* name) {
  unsigned char raw[12];
  if (::getrandom(raw, sizeof(raw), 0) != static_cast<ssize_t>(sizeof(raw))) throw std::runtime_error(errno_text("getrandom"));
  static const char* hex = "0123456789abcdef";
  *name = "temper-collectives-";
  for (unsigned char c : raw) {
    name->push_back(hex[c >> 4]);
    name->push_back(hex[c & 15]);
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(errno_text("shared-memory transport: socket"));
  socklen_t len = 0;
  sockaddr_un addr = abstract_address(*name, &len);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd, 64) != 0) {
    const std::string e = errno_text("shared-memory transport: bind");
    ::close(fd);
    throw std::runtime_error(e);
  }
  return fd;
}

int connect_abstract(const std::string& name) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(errno_text("shared-memory transport: socket"));
  socklen_t len = 0;
  sockaddr_un addr = abstract_address(name, &len);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    const std::string e = errno_text("shared-memory transport: connect to a peer");
    ::close(fd);
    throw std::runtime_error(e);
  }
  return fd;
}

// Whether the process at the other end of a Unix socket runs as this process's user: an
// abstract socket can be reached by any process in the namespace, and the segments are only
// handed to the group's own ranks (pods of one user), never to another user's process.
bool same_user(int sock) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  return ::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == ::geteuid();
}

// Waits until fd is readable (or the deadline); false on timeout.
bool readable(int fd, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

void send_fd(int sock, int32_t rank, int fd) {
  iovec iov{&rank, sizeof(rank)};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof(ctrl);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  if (::sendmsg(sock, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(rank))) {
    throw std::runtime_error(errno_text("shared-memory transport: handing a segment to a peer"));
  }
}

// The peer's rank and segment; -1 as fd when the message carried none.
int recv_fd(int sock, int32_t* rank) {
  iovec iov{rank, sizeof(*rank)};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof(ctrl);
  ssize_t n;
  do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof(*rank))) return -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
      return fd;
    }
  }
  return -1;
}

// Waits for rank `peer`'s segment on `sock` and maps `bytes` of it (the descriptor is closed
// once mapped); errors begin with `who`.
char* map_peer_segment(int sock, int peer, size_t bytes, std::chrono::steady_clock::time_point deadline,
                       const char* who) {
  const std::string rank = "rank " + std::to_string(peer);
  if (!readable(sock, deadline)) throw std::runtime_error(std::string(who) + ": " + rank + " did not hand over its segment in time");
  int32_t their = -1;
  const int fd = recv_fd(sock, &their);
  if (fd < 0 || their != peer) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error(std::string(who) + ": bad segment hand-over from " + rank);
  }
  struct stat st{};
  const bool sized = ::fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) >= bytes;
  void* map = sized ? ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
  ::close(fd);
  if (map == MAP_FAILED) throw std::runtime_error(std::string(who) + ": cannot map " + rank + "'s segment");
  return static_cast<char*>(map);
}

// Waits until the counter `word` (in a shared segment) reaches `target` (wrapping compare):
// spins briefly, then sleeps on the futex in slices, calling `check` (which throws: a peer
// gone, an abort, the deadline) before each sleep. `sleepers` counts this waiter while it may
// sleep, so a waker that sees none skips the wake-up syscall.
template <class Check>
void wait_until(std::atomic<uint32_t>* word, std::atomic<uint32_t>* sleepers, uint32_t target, Check check) {
  auto reached = [&](uint32_t v) { return static_cast<int32_t>(v - target) >= 0; };
  const auto spin_until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (reached(word->load(std::memory_order_acquire))) return;
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= spin_until) break;
    cpu_relax();
  }
  for (;;) {
    check();
    // Announce the sleep before the last look: a waker that stores after that look sees the
    // sleeper and wakes it; one that stored before is seen by the look.
    sleepers->fetch_add(1);
    const uint32_t v = word->load();
    if (!reached(v)) futex_wait(word, v, kSliceNs);
    sleepers->fetch_sub(1);
    if (reached(word->load(std::memory_order_acquire))) return;
  }
}

// Publishes a counter and wakes its sleepers, if any.
void publish(std::atomic<uint32_t>* word, std::atomic<uint32_t>* sleepers, uint32_t value) {
  word->store(value);
  if (sleepers->load() > 0) futex_wake(word);
}

// Whether a Unix socket's other end hung up (its process ended, or it left the group).
bool hung_up(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && p.revents != 0;
}

// d = own + (src[m-1] + (… + (src[1] + src[0]))), element by element, operand order as the
// TCP ring's (collectives.cpp: the receiving rank's own value first). Written to d1 and, when
// given, d2; d1 may be `own` itself.
void reduce_into(const float* own, const std::vector<const float*>& src, long at, float* d1, float* d2, long len) {
  const size_t m = src.size();
  if (m == 1) {
    const float* s0 = src[0] + at;
    if (d2) {
      for (long i = 0; i < len; ++i) {
        const float v = own[i] + s0[i];
        d1[i] = v;
        d2[i] = v;
      }
    } else {
      for (long i = 0; i < len; ++i) d1[i] = own[i] + s0[i];
    }
    return;
  }
  constexpr long kBlock = 1024;
  float acc[kBlock];
  for (long b = 0; b < len; b += kBlock) {
    const long l = std::min(kBlock, len - b);
    const float* s0 = src[0] + at + b;
    for (long i = 0; i < l; ++i) acc[i] = s0[i];
    for (size_t k = 1; k < m; ++k) {
      const float* sk = src[k] + at + b;
      for (long i = 0; i < l; ++i) acc[i] = sk[i] + acc[i];
    }
    for (long i = 0; i < l; ++i) {
      const float v = own[b + i] + acc[i];
      d1[b + i] = v;
      if (d2) d2[b + i] = v;
    }
  }
}

}  // namespace

std::string host_identity() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string boot;
  std::getline(f, boot);
  struct stat st{};
  if (boot.empty() || ::stat("/proc/self/ns/net", &st) != 0) return "";
  return boot + "/netns:" + std::to_string(static_cast<unsigned long long>(st.st_dev)) + ":" +
         std::to_string(static_cast<unsigned long long>(st.st_ino));
}

// What a rank says of a collective's buffers before its first barrier: the operation, the
// number of regions, the values and two sums that tell different cuts apart (the messages of
// the TCP ring are cut at region ends, so every rank must pass the same lengths; here, as
// there, a mismatch fails every rank).
struct Print {
  double v[5];
};

// The head of every segment: the barrier word (the barriers this rank passed, a futex), how
// many peers sleep on it (a waker that sees none skips the syscall), whether this rank left
// the group, and its print of the current collective — in one of two places by the parity of
// the barrier it comes before: a place is written again only two barriers later, after every
// peer read it.
struct ShmTransport::Header {
  std::atomic<uint32_t> arrive;
  std::atomic<uint32_t> sleepers;
  std::atomic<uint32_t> gone;
  uint32_t pad;
  Print print[2];
};

// The caller's regions as one flat vector.
struct ShmTransport::Flat {
  const std::vector<Region>& regions;
  std::vector<long> starts;
  ShardLayout layout;

  Flat(const std::vector<Region>& rs, int world) : regions(rs) {
    long total = 0;
    for (const auto& r : rs) {
      starts.push_back(total);
      total += r.n;
    }
    layout = ShardLayout::of(total, world);
  }

  // fn(pointer, length, offset from a) for the pieces of flat range [a, a + len).
  template <class F>
  void each(long a, long len, F fn) const {
    const long e = a + len;
    size_t r = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), a) - starts.begin());
    r = r == 0 ? 0 : r - 1;
    for (; r < regions.size() && starts[r] < e; ++r) {
      const long lo = std::max(a, starts[r]);
      const long hi = std::min(e, starts[r] + regions[r].n);
      if (lo < hi) fn(regions[r].data + (lo - starts[r]), hi - lo, lo - a);
    }
  }
  void read(long a, long len, float* to) const {
    each(a, len, [&](float* p, long l, long at) { std::memcpy(to + at, p, static_cast<size_t>(l) * sizeof(float)); });
  }
  void write(long a, long len, const float* from) const {
    each(a, len, [&](float* p, long l, long at) { std::memcpy(p, from + at, static_cast<size_t>(l) * sizeof(float)); });
  }
};

ShmTransport::ShmTransport(int rank, int world, std::chrono::milliseconds timeout)
    : rank_(rank), world_(world), timeout_(timeout), maps_(static_cast<size_t>(world), nullptr) {}

ShmTransport::Setup ShmTransport::connect(int rank, int world, bool allow, const KvSet& set, const KvGet& get,
                                          std::chrono::milliseconds timeout) {
  // The host, and the user: segments are handed to processes of this user only (same_user), so
  // ranks of different users on one host take TCP from the start.
  std::string host = allow && world > 1 ? host_identity() : "";
  if (!host.empty()) host += "/uid:" + std::to_string(::geteuid());
  int listen_fd = -1;
  std::string name;
  if (!host.empty()) {
    try {
      listen_fd = listen_abstract(&name);
    } catch (const std::exception&) {
      listen_fd = -1;  // this rank cannot offer it: TCP to and from it
    }
  }
  const bool offer = listen_fd >= 0;
  set("shm/" + std::to_string(rank), std::string(offer ? "1" : "0") + "\n" + host + "\n" + name);
  std::vector<std::string> names(static_cast<size_t>(world));
  std::vector<bool> shares(static_cast<size_t>(world));
  bool all = true;
  for (int r = 0; r < world; ++r) {
    std::istringstream in(get("shm/" + std::to_string(r)));
    std::string ok, their_host;
    std::getline(in, ok);
    std::getline(in, their_host);
    std::getline(in, names[r]);
    shares[r] = offer && ok == "1" && their_host == host;
    all = all && shares[r];
  }
  Setup s;
  struct Listener {
    int fd;
    ~Listener() {
      if (fd >= 0) ::close(fd);
    }
  } listener{listen_fd};
  if (all) {
    s.all.reset(new ShmTransport(rank, world, timeout));
    s.all->setup(names, listen_fd);
    return s;
  }
  const int next = (rank + 1) % world;
  const int prev = (rank + world - 1) % world;
  // With two ranks, one not sharing means neither edge does.
  if (world < 3 || (!shares[next] && !shares[prev])) return s;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // As in setup(): connect (queued in the listener's backlog), then accept, then receive.
  int to_prev = shares[prev] ? connect_abstract(names[prev]) : -1;
  try {
    if (shares[next]) s.out = ShmLink::create(rank, next, listen_fd, deadline, timeout);
    if (shares[prev]) {
      s.in = ShmLink::open(prev, to_prev, deadline, timeout);
      to_prev = -1;  // the link owns it
    }
  } catch (...) {
    if (to_prev >= 0) ::close(to_prev);
    throw;
  }
  return s;
}

// ---------------------------------------------------------------- ring links

// The head of a link's segment: the messages the sender posted and the receiver released
// (futex words, with their sleepers), and whether either side left.
struct ShmLink::Header {
  std::atomic<uint32_t> posted;
  std::atomic<uint32_t> post_sleepers;
  std::atomic<uint32_t> released;
  std::atomic<uint32_t> release_sleepers;
  std::atomic<uint32_t> gone;
};

namespace {
constexpr size_t kLinkBytes = kHeaderBytes + 2 * kShmLinkFloats * sizeof(float);
}  // namespace

std::unique_ptr<ShmLink> ShmLink::create(int rank, int peer, int listen_fd, std::chrono::steady_clock::time_point deadline,
                                         std::chrono::milliseconds timeout) {
  int sock = -1;
  while (sock < 0) {
    if (!readable(listen_fd, deadline)) throw std::runtime_error("shared-memory link: rank " + std::to_string(peer) + " did not connect in time");
    sock = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (sock < 0) throw std::runtime_error(errno_text("shared-memory link: accept"));
    if (!same_user(sock)) {
      ::close(sock);  // not one of the group's ranks
      sock = -1;
    }
  }
  const int mfd = static_cast<int>(::syscall(SYS_memfd_create, "temper-collectives", MFD_CLOEXEC));
  void* map = MAP_FAILED;
  if (mfd >= 0 && ::ftruncate(mfd, static_cast<off_t>(kLinkBytes)) == 0) {
    map = ::mmap(nullptr, kLinkBytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  }
  if (map == MAP_FAILED) {
    const std::string e = errno_text("shared-memory link: creating the segment");
    if (mfd >= 0) ::close(mfd);
    ::close(sock);
    throw std::runtime_error(e);
  }
  std::unique_ptr<ShmLink> link(new ShmLink(true, peer, sock, static_cast<char*>(map), timeout));
  try {
    send_fd(sock, rank, mfd);
  } catch (...) {
    ::close(mfd);
    throw;
  }
  ::close(mfd);
  return link;
}

std::unique_ptr<ShmLink> ShmLink::open(int peer, int sock, std::chrono::steady_clock::time_point deadline,
                                       std::chrono::milliseconds timeout) {
  struct Owned {
    int fd;
    ~Owned() {
      if (fd >= 0) ::close(fd);
    }
  } owned{sock};
  if (!same_user(sock)) throw std::runtime_error("shared-memory link: rank " + std::to_string(peer) + "'s socket belongs to another user");
  char* map = map_peer_segment(sock, peer, kLinkBytes, deadline, "shared-memory link");
  owned.fd = -1;
  return std::unique_ptr<ShmLink>(new ShmLink(false, peer, sock, map, timeout));
}

ShmLink::ShmLink(bool sender, int peer, int sock, char* map, std::chrono::milliseconds timeout)
    : sender_(sender), peer_(peer), sock_(sock), map_(map), timeout_(timeout) {}

ShmLink::~ShmLink() {
  header()->gone.store(1);
  futex_wake(&header()->posted);
  futex_wake(&header()->released);
  ::close(sock_);
  ::munmap(map_, kLinkBytes);
}

void ShmLink::abort() {
  aborted_ = true;
  header()->gone.store(1);
  futex_wake(&header()->posted);
  futex_wake(&header()->released);
  ::shutdown(sock_, SHUT_RDWR);
}

ShmLink::Header* ShmLink::header() const { return reinterpret_cast<Header*>(map_); }

float* ShmLink::slot(uint32_t seq) const {
  return reinterpret_cast<float*>(map_ + kHeaderBytes) + static_cast<size_t>(seq % 2) * kShmLinkFloats;
}

void ShmLink::check(const char* what, std::chrono::steady_clock::time_point deadline, const char* waiting_for) const {
  if (aborted_) throw std::runtime_error(std::string(what) + ": the group was aborted");
  if (header()->gone.load()) throw std::runtime_error(std::string(what) + ": rank " + std::to_string(peer_) + " left the group");
  if (hung_up(sock_)) {
    throw std::runtime_error(std::string(what) + ": a peer rank vanished (rank " + std::to_string(peer_) +
                             "'s process ended or it left the group)");
  }
  if (std::chrono::steady_clock::now() >= deadline) {
    throw std::runtime_error(std::string(what) + ": rank " + std::to_string(peer_) + " did not " + waiting_for + " within " +
                             std::to_string(timeout_.count()) + " ms");
  }
}

void ShmLink::send(const float* data, long n, const char* what) {
  if (!sender_ || n > kShmLinkFloats) throw std::logic_error("shared-memory link: not a sender, or a message too long");
  Header* h = header();
  const uint32_t seq = seq_;
  // The slot's previous message (seq - 2) must have been released: released ≥ seq - 1.
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  wait_until(&h->released, &h->release_sleepers, seq - 1, [&] { check(what, deadline, "take a message"); });
  std::memcpy(slot(seq), data, static_cast<size_t>(n) * sizeof(float));
  seq_ = seq + 1;
  publish(&h->posted, &h->post_sleepers, seq_);
}

const float* ShmLink::receive(long n, const char* what) {
  if (sender_ || n > kShmLinkFloats) throw std::logic_error("shared-memory link: not a receiver, or a message too long");
  Header* h = header();
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  wait_until(&h->posted, &h->post_sleepers, seq_ + 1, [&] { check(what, deadline, "send its message"); });
  return slot(seq_);
}

void ShmLink::release() {
  Header* h = header();
  ++seq_;
  publish(&h->released, &h->release_sleepers, seq_);
}

void ShmTransport::setup(const std::vector<std::string>& sockets, int listen_fd) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  bytes_ = kHeaderBytes + 2 * static_cast<size_t>(world_) * kWindow * sizeof(float);
  // The segment: memory pages are taken as windows first touch them.
  int mfd = static_cast<int>(::syscall(SYS_memfd_create, "temper-collectives", MFD_CLOEXEC));
  if (mfd < 0) throw std::runtime_error(errno_text("shared-memory transport: memfd_create"));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } own{mfd};
  if (::ftruncate(mfd, static_cast<off_t>(bytes_)) != 0) throw std::runtime_error(errno_text("shared-memory transport: sizing the segment"));
  void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (p == MAP_FAILED) throw std::runtime_error(errno_text("shared-memory transport: mmap"));
  maps_[rank_] = static_cast<char*>(p);
  // Every rank's listener is up before it published its name, so these connects are queued
  // in its backlog at once; nobody waits for anybody's accept here.
  std::vector<int> to(static_cast<size_t>(world_), -1);
  for (int r = 0; r < world_; ++r) {
    if (r == rank_) continue;
    to[r] = connect_abstract(sockets[r]);
    peer_fds_.push_back(to[r]);
    if (!same_user(to[r])) throw std::runtime_error("shared-memory transport: rank " + std::to_string(r) + "'s socket belongs to another user");
  }
  for (int i = 0; i < world_ - 1;) {
    if (!readable(listen_fd, deadline)) throw std::runtime_error("shared-memory transport: a peer did not connect in time");
    int a = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (a < 0) throw std::runtime_error(errno_text("shared-memory transport: accept"));
    if (!same_user(a)) {
      ::close(a);  // not one of the group's ranks
      continue;
    }
    peer_fds_.push_back(a);
    send_fd(a, rank_, mfd);
    ++i;
  }
  for (int r = 0; r < world_; ++r) {
    if (r == rank_) continue;
    maps_[r] = map_peer_segment(to[r], r, bytes_, deadline, "shared-memory transport");
  }
}

ShmTransport::~ShmTransport() {
  if (maps_[rank_]) {
    header(rank_)->gone.store(1);
    futex_wake(&header(rank_)->arrive);
  }
  for (int fd : peer_fds_) ::close(fd);
  for (char* m : maps_) {
    if (m) ::munmap(m, bytes_);
  }
}

void ShmTransport::abort() {
  aborted_ = true;
  if (maps_[rank_]) {
    header(rank_)->gone.store(1);
    futex_wake(&header(rank_)->arrive);
  }
  // The peers see their sockets to this rank hang up.
  for (int fd : peer_fds_) ::shutdown(fd, SHUT_RDWR);
}

ShmTransport::Header* ShmTransport::header(int r) const { return reinterpret_cast<Header*>(maps_[r]); }

float* ShmTransport::slot(int r, int half, int chunk) const {
  return reinterpret_cast<float*>(maps_[r] + kHeaderBytes) + (static_cast<size_t>(half) * world_ + chunk) * kWindow;
}

// A peer whose process ended (or that aborted) has hung up its sockets to this rank.
void ShmTransport::check_peers(const char* what) {
  std::vector<pollfd> fds;
  for (int fd : peer_fds_) fds.push_back({fd, POLLIN | POLLRDHUP, 0});
  if (::poll(fds.data(), fds.size(), 0) <= 0) return;
  for (const auto& p : fds) {
    if (p.revents != 0) {
      throw std::runtime_error(std::string(what) + ": a peer rank vanished (its process ended or it left the group)");
    }
  }
}

void ShmTransport::wait_for(int peer, uint32_t target, const char* what, std::chrono::steady_clock::time_point deadline) {
  Header* h = header(peer);
  wait_until(&h->arrive, &h->sleepers, target, [&] {
    if (aborted_) throw std::runtime_error(std::string(what) + ": the group was aborted");
    if (h->gone.load()) throw std::runtime_error(std::string(what) + ": rank " + std::to_string(peer) + " left the group");
    check_peers(what);
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error(std::string(what) + ": rank " + std::to_string(peer) + " did not arrive within " +
                               std::to_string(timeout_.count()) + " ms");
    }
  });
}

void ShmTransport::check_prints(uint32_t barrier, const char* what) const {
  const Print& mine = header(rank_)->print[barrier % 2];
  for (int p = 0; p < world_; ++p) {
    const Print& theirs = header(p)->print[barrier % 2];
    if (std::equal(theirs.v, theirs.v + 5, mine.v)) continue;
    if (theirs.v[0] != mine.v[0]) {
      throw std::runtime_error(std::string(what) + ": rank " + std::to_string(p) + " runs another collective at the same time");
    }
    throw std::runtime_error(std::string(what) + ": ranks passed buffers of different lengths (rank " + std::to_string(rank_) +
                             ": " + std::to_string(static_cast<long>(mine.v[1])) + " buffers, " +
                             std::to_string(static_cast<long>(mine.v[2])) + " values; rank " + std::to_string(p) + ": " +
                             std::to_string(static_cast<long>(theirs.v[1])) + " buffers, " +
                             std::to_string(static_cast<long>(theirs.v[2])) + " values)");
  }
}

void ShmTransport::barrier(const char* what) {
  const uint32_t k = ++epoch_;
  Header* me = header(rank_);
  publish(&me->arrive, &me->sleepers, k);
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (int i = 1; i < world_; ++i) wait_for((rank_ + i) % world_, k, what, deadline);
}

// Window by window (values [o, o + kWindow) of every chunk), in two halves of the segments
// used in turn: a half is written again only two windows later, after a barrier every rank
// passed once done reading it.
//  - reduce: each rank stages the other ranks' chunks of its values in its segment; barrier;
//    rank r sums its chunk from the peers' segments in ring order, its own value last, into
//    `out` (or its regions) and, when gathering, over the first value it read (rank r+1's
//    slot of chunk r: lines already in this core's cache, no fresh memory to claim);
//  - gather: (without reduce, each rank first stages its own shard in its own slot) after a
//    barrier each rank copies the others' chunks from where they were left into its regions.
void ShmTransport::run(const Flat& flat, float* out, const float* own, bool reduce, bool gather, const char* what) {
  const ShardLayout& lay = flat.layout;
  const int n = world_;
  const int r = rank_;
  std::vector<const float*> src(static_cast<size_t>(n - 1));
  Print mine{};
  mine.v[0] = reduce + 2.0 * gather;
  mine.v[1] = static_cast<double>(flat.regions.size());
  for (size_t i = 0; i < flat.regions.size(); ++i) {
    const double len = static_cast<double>(flat.regions[i].n);
    mine.v[2] += len;
    mine.v[3] += len * static_cast<double>(i + 1);
    mine.v[4] += len * len;
  }
  const uint32_t first = epoch_ + 1;
  header(r)->print[first % 2] = mine;
  // At least one window, so that the prints are compared even when there is nothing to move.
  for (long o = 0; o == 0 || o < lay.shard; o += kWindow) {
    const int h = static_cast<int>(window_++ % 2);
    auto len = [&](int c) { return std::max(0L, std::min(kWindow, lay.end(c) - lay.begin(c) - o)); };
    if (reduce) {
      for (int c = 0; c < n; ++c) {
        if (c != r) flat.read(lay.begin(c) + o, len(c), slot(r, h, c));
      }
    } else if (own) {
      std::memcpy(slot(r, h, r), own + o, static_cast<size_t>(len(r)) * sizeof(float));
    } else {
      flat.read(lay.begin(r) + o, len(r), slot(r, h, r));
    }
    barrier(what);
    if (o == 0) check_prints(first, what);
    if (reduce) {
      for (int k = 1; k < n; ++k) src[k - 1] = slot((r + k) % n, h, r);
      float* publish = gather ? slot((r + 1) % n, h, r) : nullptr;
      flat.each(lay.begin(r) + o, len(r), [&](float* p, long l, long at) {
        reduce_into(p, src, at, out ? out + o + at : p, publish ? publish + at : nullptr, l);
      });
      if (gather) barrier(what);
    }
    if (gather) {
      for (int c = 0; c < n; ++c) {
        if (c != r) flat.write(lay.begin(c) + o, len(c), slot(reduce ? (c + 1) % n : c, h, c));
      }
      if (!reduce && own) flat.write(lay.begin(r) + o, len(r), own + o);
    }
  }
  if (out) {
    const long mine = lay.end(r) - lay.begin(r);
    std::fill(out + std::max(0L, mine), out + lay.shard, 0.0f);
  }
}

void ShmTransport::reduce_scatter(const std::vector<Region>& regions, float* out) {
  const Flat flat(regions, world_);
  run(flat, out, nullptr, true, false, "reduce-scatter (shared memory)");
}

void ShmTransport::all_gather(const std::vector<Region>& regions, const float* own) {
  const Flat flat(regions, world_);
  run(flat, nullptr, own, false, true, "all-gather (shared memory)");
}

void ShmTransport::all_reduce(const std::vector<Region>& regions) {
  const Flat flat(regions, world_);
  run(flat, nullptr, nullptr, true, true, "all-reduce (shared memory)");
}

}  // namespace temper
