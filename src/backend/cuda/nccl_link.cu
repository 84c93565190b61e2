// The NCCL device link (include/cascade/device_link.h), part of the CUDA plugin: payloads move
// GPU to GPU with ncclSend/ncclRecv. One communicator over the parties (the client is not on
// it), on a stream of its own: a group waits for the compute already issued on the backend's
// stream (an event), and the compute issued afterwards waits for the group (another event), so
// no host synchronisation sits on the critical path. The host learns of a dead or stuck peer by
// polling the group's completion event (overdue) and NCCL's asynchronous error.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <thread>

#include "cascade/device_link.h"

namespace cascade {
namespace {

void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string("NCCL link: ") + what + ": " + cudaGetErrorString(err));
}

void nccl_ok(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return;
  std::string why = ncclGetErrorString(r);
  if (r == ncclInvalidUsage)  // the usual cause when ranks share a device
    why += " (NCCL needs one GPU per rank: are two ranks on one GPU?)";
  throw std::runtime_error(std::string("NCCL link: ") + what + ": " + why);
}

class NcclLink final : public DeviceLink {
 public:
  // Rank `rank` of `nranks`; world rank = first + rank. The calling thread's current device
  // (the backend's) is the link's.
  NcclLink(const ncclUniqueId& id, int nranks, int rank, int first, cudaStream_t compute)
      : nranks_(nranks), first_(first), compute_(compute) {
    nccl_ok(ncclCommInitRank(&comm_, nranks, id, rank), "ncclCommInitRank");
    cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  // Sends may still be draining after the last wait: give them a while, then abort the
  // communicator rather than wait for a peer that is gone.
  ~NcclLink() override {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      while (overdue(1e30) < 0 && !groups_.empty() &&
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 10.0)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } catch (const std::exception&) {  // an asynchronous NCCL error: abort below
    }
    for (Group& g : groups_) cudaEventDestroy(g.done);
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async);
    if (async != ncclSuccess || !groups_.empty()) ncclCommAbort(comm_);  // a peer is gone: do not wait for it
    else ncclCommDestroy(comm_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "nccl"; }
  bool covers(int rank) const override { return rank >= first_ && rank < first_ + nranks_; }

  int64_t issue(const std::vector<Op>& ops) override {
    cudaEvent_t after_compute = nullptr;
    cuda_ok(cudaEventCreateWithFlags(&after_compute, cudaEventDisableTiming), "cudaEventCreate");
    cuda_ok(cudaEventRecord(after_compute, compute_), "cudaEventRecord");
    cuda_ok(cudaStreamWaitEvent(stream_, after_compute, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(after_compute);  // released once the wait has happened
    Group g;
    g.posted = std::chrono::steady_clock::now();
    nccl_ok(ncclGroupStart(), "ncclGroupStart");
    for (const Op& op : ops) {
      g.peers.push_back(op.peer);
      const int peer = op.peer - first_;
      if (op.send) nccl_ok(ncclSend(op.buf, op.bytes, ncclUint8, peer, comm_, stream_), "ncclSend");
      else nccl_ok(ncclRecv(op.buf, op.bytes, ncclUint8, peer, comm_, stream_), "ncclRecv");
    }
    nccl_ok(ncclGroupEnd(), "ncclGroupEnd");
    cuda_ok(cudaEventCreateWithFlags(&g.done, cudaEventDisableTiming), "cudaEventCreate");
    cuda_ok(cudaEventRecord(g.done, stream_), "cudaEventRecord");
    // Later compute reads what arrived and may overwrite what was sent only after the group.
    cuda_ok(cudaStreamWaitEvent(compute_, g.done, 0), "cudaStreamWaitEvent");
    g.ticket = next_++;
    groups_.push_back(g);
    return g.ticket;
  }

  // Stream order makes every group ready at once; a failed one shows as NCCL's async error.
  bool ready(int64_t) override {
    check_async();
    return true;
  }

  int overdue(double seconds) override {
    while (!groups_.empty() && cudaEventQuery(groups_.front().done) == cudaSuccess) {
      cudaEventDestroy(groups_.front().done);
      groups_.pop_front();
    }
    check_async();
    for (const Group& g : groups_)
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - g.posted).count() > seconds &&
          cudaEventQuery(g.done) == cudaErrorNotReady)
        return g.peers.empty() ? -1 : g.peers.front();
    return -1;
  }

  void to_host(void* dst, const void* src, uint64_t bytes) override {
    cuda_ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, compute_), "cudaMemcpyAsync");
    cuda_ok(cudaStreamSynchronize(compute_), "cudaStreamSynchronize");
  }

 private:
  struct Group {
    int64_t ticket = 0;
    cudaEvent_t done = nullptr;
    std::chrono::steady_clock::time_point posted;
    std::vector<int> peers;
  };

  void check_async() {
    ncclResult_t async = ncclSuccess;
    nccl_ok(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
    nccl_ok(async, "a transfer failed");
  }

  int nranks_, first_;
  cudaStream_t compute_;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  int64_t next_ = 0;
  std::deque<Group> groups_;  // issued, oldest first, until their event has completed
};

}  // namespace
}  // namespace cascade

// Entry points (src/net/nccl_link.cpp loads them with the plugin).
extern "C" void cascade_nccl_unique_id(char out[128]) {
  static_assert(sizeof(ncclUniqueId) == 128, "NCCL's unique id is 128 bytes");
  ncclUniqueId id;
  cascade::nccl_ok(ncclGetUniqueId(&id), "ncclGetUniqueId");
  std::memcpy(out, &id, sizeof id);
}

// Throws std::runtime_error; the caller owns the result.
extern "C" cascade::DeviceLink* cascade_nccl_link_create(const char id_bytes[128], int nranks, int rank,
                                                        int first_world_rank, void* compute_stream) {
  ncclUniqueId id;
  std::memcpy(&id, id_bytes, sizeof id);
  return new cascade::NcclLink(id, nranks, rank, first_world_rank, static_cast<cudaStream_t>(compute_stream));
}
