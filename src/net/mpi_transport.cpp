// Transport over MPI point-to-point calls. Waiting polls MPI_Test with short sleeps instead
// of blocking in MPI_Wait: Open MPI busy-polls in MPI_Wait, which starves the other ranks
// when parties outnumber cores, and polling lets us enforce the timeout.
#include <mpi.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "cascade/mpi_transport.h"

namespace cascade {
namespace {

// Tag = (layer + 1)·8 + kind of the first part: unique per (layer, kind), so messages of
// different layers or kinds between the same pair never match each other.
int tag_of(int layer, CommKind kind) { return (layer + 1) * 8 + (int)kind; }

std::string kind_str(const Message& m) {
  std::string s;
  for (const MessagePart& p : m.parts) s += (s.empty() ? "" : "+") + std::string(comm_kind_name(p.kind));
  return s.empty() ? "message" : s;
}

std::string layer_str(int layer) {
  return layer < 0 ? std::string("outside the layers") : "at layer " + std::to_string(layer);
}

class MpiTransport final : public Transport {
 public:
  explicit MpiTransport(MPI_Comm comm) : comm_(comm) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }

  void barrier() override { MPI_Barrier(comm_); }

  std::vector<std::vector<uint8_t>> gather_to_root(const std::vector<uint8_t>& mine) override {
    int n = (int)mine.size();
    std::vector<int> sizes(rank_ == 0 ? size_ : 0), displs(sizes.size());
    MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, comm_);
    int total = 0;
    for (size_t r = 0; r < sizes.size(); ++r) {
      displs[r] = total;
      total += sizes[r];
    }
    std::vector<uint8_t> all(total);
    MPI_Gatherv(mine.data(), n, MPI_BYTE, all.data(), sizes.data(), displs.data(), MPI_BYTE, 0, comm_);
    std::vector<std::vector<uint8_t>> out;
    for (size_t r = 0; r < sizes.size(); ++r)
      out.emplace_back(all.begin() + displs[r], all.begin() + displs[r] + sizes[r]);
    return out;
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  Handle isend(const Message& msg_in, const void* buf) override {
    Message msg = msg_in;
    msg.src = rank_;
    check_peer(msg.dst);
    Pending p{msg, true, MPI_REQUEST_NULL};
    MPI_Isend(buf, (int)msg.bytes(), MPI_BYTE, msg.dst, tag_of(msg.layer, msg.kind()),
              comm_, &p.req);
    account_send(msg);
    return add(std::move(p));
  }

  Handle irecv(const Message& msg_in, void* buf) override {
    Message msg = msg_in;
    msg.dst = rank_;
    check_peer(msg.src);
    Pending p{msg, false, MPI_REQUEST_NULL};
    MPI_Irecv(buf, (int)msg.bytes(), MPI_BYTE, msg.src, tag_of(msg.layer, msg.kind()),
              comm_, &p.req);
    return add(std::move(p));
  }

  void wait_all(std::vector<Handle>& handles) override {
    const auto t0 = std::chrono::steady_clock::now();
    size_t done = 0;
    int spins = 0;
    std::vector<bool> finished(handles.size(), false);
    while (done < handles.size()) {
      bool progress = false;
      for (size_t i = 0; i < handles.size(); ++i) {
        if (finished[i]) continue;
        Pending& p = pending_.at(handles[i]);
        int flag = 0;
        MPI_Status st;
        MPI_Test(&p.req, &flag, &st);
        if (!flag) continue;
        if (!p.outgoing) {
          int count = 0;
          MPI_Get_count(&st, MPI_BYTE, &count);
          if ((uint64_t)count != p.msg.bytes())
            throw TransportError("received " + std::to_string(count) + " bytes of " +
                                 kind_str(p.msg) + " from " + peer_name(p.msg.src) + " " +
                                 layer_str(p.msg.layer) + ", expected " +
                                 std::to_string(p.msg.bytes()));
          account_recv(p.msg);
        }
        finished[i] = true;
        ++done;
        progress = true;
      }
      if (done == handles.size()) break;
      if (!progress) idle(t0, spins, [&] {
          for (size_t i = 0; i < handles.size(); ++i)
            if (!finished[i]) return pending_.at(handles[i]);
          return pending_.at(handles[0]);
        });
    }
    for (Handle h : handles) pending_.erase(h);
    handles.clear();
    wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  std::vector<uint8_t> recv_any_size(int src, int layer, CommKind kind) override {
    check_peer(src);
    const auto t0 = std::chrono::steady_clock::now();
    int spins = 0, flag = 0;
    MPI_Status st;
    Message msg{src, rank_, layer, {{kind, 0}}, {}};
    for (;;) {
      MPI_Iprobe(src, tag_of(layer, kind), comm_, &flag, &st);
      if (flag) break;
      idle(t0, spins, [&] { return Pending{msg, false, MPI_REQUEST_NULL}; });
    }
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    std::vector<uint8_t> buf(count);
    MPI_Recv(buf.data(), count, MPI_BYTE, src, tag_of(layer, kind), comm_, MPI_STATUS_IGNORE);
    msg.parts[0].bytes = (uint64_t)count;
    account_recv(msg);
    wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return buf;
  }

 private:
  struct Pending {
    Message msg;
    bool outgoing;
    MPI_Request req;
  };

  Handle add(Pending p) {
    const Handle h = next_++;
    pending_.emplace(h, std::move(p));
    return h;
  }

  void check_peer(int r) const {
    if (r < 0 || r >= size_ || r == rank_)
      throw TransportError("invalid peer rank " + std::to_string(r) + " (world size " +
                           std::to_string(size_) + ", this is rank " + std::to_string(rank_) + ")");
  }

  // Spin briefly, then sleep a little; past the timeout, name what we were waiting for.
  template <class F>
  void idle(std::chrono::steady_clock::time_point t0, int& spins, F first_pending) {
    if (++spins < 64) return;
    std::this_thread::sleep_for(std::chrono::microseconds(spins < 2000 ? 20 : 200));
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (waited > timeout_s_) {
      const Pending p = first_pending();
      const bool out = p.outgoing;
      throw TransportError("timed out after " + std::to_string((int)waited) + " s " +
                           (out ? "sending " : "waiting for ") + kind_str(p.msg) +
                           (out ? " to " : " from ") + peer_name(out ? p.msg.dst : p.msg.src) +
                           " " + layer_str(p.msg.layer) + ": the peer is dead or stuck");
    }
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  Handle next_ = 0;
  std::unordered_map<Handle, Pending> pending_;
};

}  // namespace

std::unique_ptr<Transport> make_mpi_transport(MPI_Comm comm) {
  return std::make_unique<MpiTransport>(comm);
}
std::unique_ptr<Transport> make_mpi_transport() { return make_mpi_transport(MPI_COMM_WORLD); }

}  // namespace cascade
