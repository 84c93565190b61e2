// One rank's whole run: role dispatch, then the end-of-run report to rank 0.
#include <algorithm>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "cascade/backend.h"
#include "cascade/device_link.h"
#include "cascade/device_model.h"
#include "cascade/protocol.h"
#include "cascade/trace.h"
#include "cascade/view.h"
#include "report.h"
#include "step.h"

namespace cascade {
namespace {

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

// Every rank's recording to rank 0 (kind trace, outside the protocol), in rank order.
void gather_traces(Transport& t, RankTrace mine, CascadeReport& rep) {
  if (t.rank() != 0) {
    const std::vector<uint8_t> bytes = encode_rank_trace(mine);
    LongerTimeout patience(t);
    t.send({t.rank(), 0, -1, {{CommKind::trace, {}, bytes.size()}}}, bytes.data());
    rep.traces.push_back(std::move(mine));  // others keep their own, as their stats
    return;
  }
  rep.traces.push_back(std::move(mine));
  for (int r = 1; r < t.size(); ++r) {
    const Received got = t.recv_any(r, -1, CommKind::trace);
    RankTrace rt = decode_rank_trace(got.payload.data(), got.payload.size());
    if (rt.rank != r)
      throw std::runtime_error("the trace recording from rank " + std::to_string(r) + " says rank " +
                               std::to_string(rt.rank));
    rep.traces.push_back(std::move(rt));
  }
}

uint64_t total_bytes(const ByteCounts& c) {
  uint64_t n = 0;
  for (const auto& kv : c) n += kv.second;
  return n;
}

}  // namespace

CascadeReport run_cascade(Transport& t, const CascadeSetup& setup) {
  CascadeReport rep;
  t.reset_counts();  // this run's bytes only (a series of runs shares the transport)
  auto be = make_cpu_backend();
  // The link (if any) uses the backend: it leaves the transport before the backend goes.
  struct DropLink {
    Transport& t;
    ~DropLink() { t.set_device_link(nullptr); }
  } drop_link{t};
  PartyStats mine;
  std::chrono::steady_clock::time_point t_start;
  double wait_at_start = 0.0;
  auto start = [&] {
    t_start = std::chrono::steady_clock::now();
    wait_at_start = t.wait_seconds();
  };
  // Once the schedule is known, errors name parties ("CompNode 1") rather than bare ranks, and
  // every message is checked against the views: what this party sends against the receiver's
  // (unless a fault makes it the faulty party), what it receives against its own.
  auto know_schedule = [&](const Schedule& s) {
    t.set_peer_namer([s](int r) { return r < s.n_ranks() ? s.role_of_rank(r).name() : "?"; });
    auto audit = std::make_shared<ViewAudit>(s, t.rank());
    const bool check_own = !setup.fault.skips_own_check(t.rank());
    t.set_audit_hook([audit, check_own](const Message& m, bool outgoing) {
      if (!outgoing) audit->check_received(m);
      else if (check_own) audit->check_outgoing(m);
    });
  };
  // --trace: this rank's recording, from the barrier's release to the stop message.
  std::unique_ptr<TraceRecorder> trace;
  if (setup.trace) trace = std::make_unique<TraceRecorder>(t.rank(), setup.trace_views);
  auto ready = [&] {
    if (setup.fault.is(Fault::Kind::stall_start, t.rank())) hang_forever();
    {
      LongerTimeout patience(t);
      t.barrier();  // everyone has loaded what it needs
    }
    start();
    if (trace) {
      trace->start();
      t.set_trace(trace.get());
    }
  };
  // The end of this rank's run (or of the part it ran): its stats, and its recording closed.
  auto finish = [&] {
    // Wall and wait time from the barrier on, the same span for every party.
    mine.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    mine.wait_s = t.wait_seconds() - wait_at_start;
    mine.bytes_sent = total_bytes(t.sent());
    mine.messages_sent = t.messages_sent();
    mine.memory = read_memory_stats();
    if (trace) {
      t.set_trace(nullptr);  // the reports below are not part of the run
      trace->finish(mine.wall_s, mine.compute_s, mine.wait_s, mine.bytes_sent, mine.messages_sent, mine.memory);
      trace->data().party = rep.schedule.role_of_rank(t.rank()).name();
      trace->data().host = host_name();
    }
  };
  // On an error, this rank's recording so far goes to setup.partial_trace (rank 0 saves it as
  // an incomplete trace: the others' recordings never reach it).
  try {
    if (t.rank() == 0) {
      rep.schedule = setup.schedule;
      try {
        check_world_size(rep.schedule, t.size());
        if (rep.schedule.shape.empty()) throw std::invalid_argument("the schedule carries no model shape");
      } catch (...) {
        abort_run(t);  // the other ranks would otherwise wait for a schedule that never comes
        throw;
      }
      send_schedule(t, rep.schedule);
      know_schedule(rep.schedule);
      ClientOptions client = setup.client;
      client.fault = setup.fault;
      if (rep.schedule.lm_head == LmHead::client && client.model) {
        be->prepare_weights(*client.model, setup.precision, {});  // before the barrier: untimed
        client.backend = be.get();
      }
      ready();
      rep.client = run_client(t, rep.schedule, setup.prompt, client);
      mine.compute_s = rep.client.compute_s;
    } else {
      if (!receive_schedule(t, rep.schedule)) return rep;
      know_schedule(rep.schedule);
      const RankRole role = rep.schedule.role_of_rank(t.rank());
      if (setup.backend) be = setup.backend();
      if (setup.link) t.set_device_link(setup.link(*be));
      if (role.kind == RankRole::comp) {
        // The weights in the backend's memory (uploaded once for a device), prepared there.
        const DeviceModel model(*be, setup.model());
        be->prepare_weights(model.model(), setup.precision, {});
        ready();
        mine = run_comp_node(t, rep.schedule, model.model(), *be, setup.fault);
      } else {
        ready();
        mine = run_attn_node(t, rep.schedule, *be, setup.fault);
      }
    }
  } catch (...) {
    if (trace && setup.partial_trace && t.trace() == trace.get()) {  // recording since ready()
      finish();
      *setup.partial_trace = std::move(trace->data());
    }
    throw;
  }
  rep.ran = true;
  finish();
  if (setup.fault.is(Fault::Kind::stall_end, t.rank())) hang_forever();
  // Point-to-point, with the timeout: a rank that died at the end is named, not waited for.
  if (t.rank() == 0) {
    rep.stats.push_back(mine);
    for (const auto& [key, bytes] : t.sent()) rep.sent[key] += bytes;
    for (const auto& [key, bytes] : t.received()) rep.received[key] += bytes;
    for (int r = 1; r < t.size(); ++r) {
      const Received report = t.recv_any(r, -1, CommKind::report);
      rep.stats.push_back(decode_report(r, report.payload, rep.sent, rep.received));
    }
    // The reports' payloads as rank 0 received them (kind report: outside the protocol). Only
    // that kind: their headers must not join the protocol's header counts, which the senders'
    // reports (encoded before sending) do not hold.
    for (const auto& [key, bytes] : t.received())
      if (key.kind == CommKind::report) rep.received[key] += bytes;
  } else {
    const std::vector<uint8_t> report = encode_report(mine, t.sent(), t.received());
    LongerTimeout patience(t);
    t.send({t.rank(), 0, -1, {{CommKind::report, {}, report.size()}}}, report.data());
    rep.stats.push_back(mine);
  }
  if (trace) gather_traces(t, std::move(trace->data()), rep);
  // The end. Rank 0, holding every report (and trace), releases the parties with one more
  // STOP; each waits for it here, point-to-point, instead of in MPI_Finalize. When a stuck
  // peer makes the client abort the run, every other party is then in an ordinary timed
  // receive, which the abort ends: waiting in Open MPI 4.1's finalize fence instead, mpirun
  // sometimes never exited. Outside the byte accounting, like the reports.
  if (t.rank() == 0) {
    const Control release{kControlStop, 0};
    std::vector<Transport::Handle> h;
    for (int r = 1; r < t.size(); ++r)
      h.push_back(t.isend({0, r, -1, {{CommKind::control, {}, sizeof release}}}, &release));
    t.wait_all(h);
  } else {
    LongerTimeout patience(t);
    const Received r = t.recv_any(0, -1, CommKind::control);
    Control c{};
    if (r.payload.size() == sizeof c) std::memcpy(&c, r.payload.data(), sizeof c);
    if (c.command != kControlStop) throw std::runtime_error("the client ended the run with a malformed release");
  }
  return rep;
}

std::vector<std::string> byte_count_differences(const CascadeReport& rep) {
  const std::vector<CommFlow> sent = protocol_flows(to_flows(rep.sent));
  const std::vector<CommFlow> received = protocol_flows(to_flows(rep.received));
  const int n_generated = std::max<int>(1, (int)rep.client.tokens.size());
  const std::vector<CommFlow> predicted = flows_run(rep.schedule, n_generated, 4);
  std::vector<std::string> out = flow_differences(sent, received, "sent", "received");
  for (const std::string& d : flow_differences(sent, predicted, "sent", "predicted")) out.push_back(d);
  return out;
}

}  // namespace cascade
