#include "host_link.h"

#include <chrono>
#include <map>
#include <vector>

namespace cascade_test {
namespace {

using Clock = std::chrono::steady_clock;
unsigned long long g_bytes_sent = 0;

class HostLink final : public cascade::DeviceLink {
 public:
  HostLink(cascade::Backend& be, MPI_Comm comm) : be_(be), comm_(comm) {}
  // Sends may still be in flight (MPI hands large ones over only once the receiver pulls them):
  // wait for them a while, and leave what never finishes (a dead peer) to MPI, buffers kept.
  ~HostLink() override {
    for (auto& [ticket, g] : groups_) {  // receives nobody waits for any more: cancelled
      for (const auto& [i, dst] : g.recv_to)
        if (g.reqs[i] != MPI_REQUEST_NULL) {
          MPI_Cancel(&g.reqs[i]);
          MPI_Wait(&g.reqs[i], MPI_STATUS_IGNORE);
        }
      g.landed = true;
    }
    const auto t0 = Clock::now();
    while (!groups_.empty() && std::chrono::duration<double>(Clock::now() - t0).count() < 10.0) collect();
    for (auto& [ticket, g] : groups_) {
      for (MPI_Request& r : g.reqs)
        if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
      static std::vector<std::vector<std::vector<uint8_t>>> orphans;
      orphans.push_back(std::move(g.host));
    }
  }

  std::string name() const override { return "nccl-emu"; }
  bool covers(int rank) const override { return rank != 0; }

  int64_t issue(const std::vector<Op>& ops) override {
    Group& g = groups_[next_];
    g.posted = Clock::now();
    g.host.resize(ops.size());
    g.reqs.assign(ops.size(), MPI_REQUEST_NULL);
    for (size_t i = 0; i < ops.size(); ++i) {
      const Op& op = ops[i];
      g.host[i].resize(op.bytes);
      g.peers.push_back(op.peer);
      if (op.send) {
        be_.to_host(g.host[i].data(), op.buf, op.bytes);  // read now, as NCCL reads in stream order
        MPI_Isend(g.host[i].data(), (int)op.bytes, MPI_BYTE, op.peer, 0, comm_, &g.reqs[i]);
        g_bytes_sent += op.bytes;
      } else {
        g.recv_to.push_back({i, op.buf});
        MPI_Irecv(g.host[i].data(), (int)op.bytes, MPI_BYTE, op.peer, 0, comm_, &g.reqs[i]);
      }
    }
    g.landed = g.recv_to.empty();
    return next_++;
  }

  bool ready(int64_t ticket) override {
    auto it = groups_.find(ticket);
    if (it == groups_.end()) return true;  // landed and forgotten
    Group& g = it->second;
    if (!g.landed) {
      for (const auto& [i, dst] : g.recv_to) {
        int flag = 0;
        MPI_Test(&g.reqs[i], &flag, MPI_STATUS_IGNORE);
        if (!flag) return false;
      }
      for (const auto& [i, dst] : g.recv_to) be_.to_device(dst, g.host[i].data(), g.host[i].size());
      g.landed = true;
    }
    collect();
    return true;
  }

  int overdue(double seconds) override {
    collect();
    for (auto& [ticket, g] : groups_) {
      if (std::chrono::duration<double>(Clock::now() - g.posted).count() <= seconds) continue;
      for (size_t i = 0; i < g.reqs.size(); ++i) {
        int flag = 0;
        MPI_Test(&g.reqs[i], &flag, MPI_STATUS_IGNORE);
        if (!flag) return g.peers[i];
      }
    }
    return -1;
  }

  void to_host(void* dst, const void* src, uint64_t bytes) override { be_.to_host(dst, src, bytes); }

 private:
  struct Group {
    Clock::time_point posted;
    std::vector<std::vector<uint8_t>> host;  // per op: its host copy
    std::vector<MPI_Request> reqs;           // per op
    std::vector<int> peers;                  // per op
    std::vector<std::pair<size_t, void*>> recv_to;  // receives: op index, device destination
    bool landed = false;
  };

  // Forgets the groups whose every op has finished (the sends' host copies with them).
  void collect() {
    for (auto it = groups_.begin(); it != groups_.end();) {
      int done = 0;
      MPI_Testall((int)it->second.reqs.size(), it->second.reqs.data(), &done, MPI_STATUSES_IGNORE);
      it = done && it->second.landed ? groups_.erase(it) : std::next(it);
    }
  }

  cascade::Backend& be_;
  MPI_Comm comm_;
  int64_t next_ = 0;
  std::map<int64_t, Group> groups_;
};

}  // namespace

unsigned long long host_link_bytes_sent() { return g_bytes_sent; }

std::unique_ptr<cascade::DeviceLink> make_host_link(cascade::Backend& be, MPI_Comm comm) {
  return std::make_unique<HostLink>(be, comm);
}

}  // namespace cascade_test
