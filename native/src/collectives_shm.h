// The same-host transport of the collectives: ranks that find at rendezvous that they all
// share a host (one kernel boot and one network namespace) exchange float32 data through
// shared memory instead of TCP, as collective libraries do for co-located ranks. In a group
// that spans hosts, the TCP ring's edges between two ranks of one host become ShmLinks.
//
// Each rank owns one anonymous memory file (memfd: it never appears in /dev/shm and the kernel
// frees it when the last process holding it unmaps it or exits, so a rank that dies leaks
// nothing). The file is handed to the other ranks over an abstract Unix socket (SCM_RIGHTS);
// abstract sockets live in a network namespace, which is also why "same host" includes it.
// The connected sockets stay open: a peer whose process ends closes them, which the waits
// notice at once.
//
// Bitwise: every reduced element is computed as the TCP ring computes it (collectives.h):
// chunk c's sum starts from rank c+1's value, each next rank's value is added in front
// (x_{c+k} + acc) and rank c adds its own last; one rank computes it, the others copy it. So a
// result has the same bits over either transport.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collectives.h"

namespace temper {

// This host's identity for the transport choice: the kernel's boot id and the network
// namespace of this process (device and inode of /proc/self/ns/net). Two processes in different
// namespaces on one machine count as two hosts (the tests simulate hosts that way).
std::string host_identity();

// Values one message of a ShmLink holds at most (the TCP ring's messages are no longer).
constexpr long kShmLinkFloats = 1 << 18;

// One direction of one edge of the ring (rank r to rank r+1) whose two ranks share a host, in
// a group that spans hosts: the ring runs as over TCP, message by message in the same order,
// but this edge's messages go through a segment the sender owns (two message slots used in
// turn) instead of a socket. The ring's arithmetic is untouched, so the bits are the same.
class ShmLink {
 public:
  ~ShmLink();
  ShmLink(const ShmLink&) = delete;
  ShmLink& operator=(const ShmLink&) = delete;
  // Sender: copies n ≤ kShmLinkFloats values into the next slot (once the receiver is done
  // with the message that used it before) and posts them.
  void send(const float* data, long n, const char* what);
  // Receiver: the next message's n values, valid until release().
  const float* receive(long n, const char* what);
  void release();
  // Fails this side's pending and later operations, and the other side's.
  void abort();

 private:
  friend class ShmTransport;
  struct Header;
  // Sender: accepts the receiver's connection on listen_fd, creates the segment, hands it over.
  static std::unique_ptr<ShmLink> create(int rank, int peer, int listen_fd,
                                         std::chrono::steady_clock::time_point deadline,
                                         std::chrono::milliseconds timeout);
  // Receiver: takes the sender's segment from the socket `sock` connected to it (owned).
  static std::unique_ptr<ShmLink> open(int peer, int sock, std::chrono::steady_clock::time_point deadline,
                                       std::chrono::milliseconds timeout);
  ShmLink(bool sender, int peer, int sock, char* map, std::chrono::milliseconds timeout);
  Header* header() const;
  float* slot(uint32_t seq) const;
  void check(const char* what, std::chrono::steady_clock::time_point deadline, const char* waiting_for) const;

  bool sender_;
  int peer_;
  int sock_;
  char* map_;
  std::chrono::milliseconds timeout_;
  uint32_t seq_ = 0;  // messages sent (sender) or received (receiver)
  std::atomic<bool> aborted_{false};
};

class ShmTransport {
 public:
  using KvSet = std::function<void(const std::string& key, const std::string& value)>;
  using KvGet = std::function<std::string(const std::string& key)>;

  // What a rank got at rendezvous: the whole-group transport when every rank shares its host,
  // else the links of its ring edges that do (none: TCP everywhere).
  struct Setup {
    std::unique_ptr<ShmTransport> all;
    std::unique_ptr<ShmLink> out;  // to rank + 1
    std::unique_ptr<ShmLink> in;   // from rank - 1
  };

  // Rendezvous through the store (set/get under the group's prefix, keys "shm/<rank>"): every
  // rank publishes whether it allows shared memory, its host identity and its user, and all
  // read every rank's, so every rank takes the same decision. A ring edge uses shared memory
  // when both its ranks allow it and share host and user.
  static Setup connect(int rank, int world, bool allow, const KvSet& set, const KvGet& get,
                       std::chrono::milliseconds timeout);
  ~ShmTransport();
  ShmTransport(const ShmTransport&) = delete;
  ShmTransport& operator=(const ShmTransport&) = delete;

  // As ProcessGroup's (collectives.h): regions form one flat vector, shard r = [r·s, min(n,(r+1)·s)).
  // reduce_scatter: this rank's shard of the sum into `out` (s values, zero-padded past the end).
  void reduce_scatter(const std::vector<Region>& regions, float* out);
  // all_gather: every rank's shard into the regions; this rank's own from `own` (null: from the
  // regions).
  void all_gather(const std::vector<Region>& regions, const float* own);
  // all_reduce: in place, exactly reduce_scatter then all_gather.
  void all_reduce(const std::vector<Region>& regions);
  // Fails this rank's pending and later operations, and its peers' (they see it gone).
  void abort();

 private:
  struct Header;
  struct Flat;
  ShmTransport(int rank, int world, std::chrono::milliseconds timeout);
  void setup(const std::vector<std::string>& sockets, int listen_fd);
  Header* header(int r) const;
  float* slot(int r, int half, int chunk) const;
  void barrier(const char* what);
  void wait_for(int peer, uint32_t target, const char* what, std::chrono::steady_clock::time_point deadline);
  void check_peers(const char* what);
  // Every rank's print of the collective it arrived at `barrier` with equals this rank's.
  void check_prints(uint32_t barrier, const char* what) const;
  // One window of a collective: values [o, o + window) of every chunk.
  void run(const Flat& flat, float* out, const float* own, bool reduce, bool gather, const char* what);

  int rank_;
  int world_;
  std::chrono::milliseconds timeout_;
  size_t bytes_ = 0;              // each rank's segment
  std::vector<char*> maps_;       // every rank's segment, mapped here (own at rank_)
  std::vector<int> peer_fds_;     // connected sockets to the peers (liveness)
  uint32_t epoch_ = 0;            // barriers passed
  uint32_t window_ = 0;           // windows run (alternates the halves)
  std::atomic<bool> aborted_{false};
};

}  // namespace temper
