// The MPI transport on its own: messages split into pieces arrive intact and are counted the
// same at both ends, receivers check what arrived against what they expected, and a dead or
// silent peer ends in an error that names it (no hang). Each case runs on every rank on a
// communicator of its own; rank 0 prints "OK"/"NOT OK" per case and "N passed, N failed".
//
//   mpirun -np 3 cascade_transport_tests           the cases below (3 ranks or more)
//   mpirun -np 2 cascade_transport_tests --large   one message of 2^31 + 100 bytes
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "cascade/backend.h"
#include "cascade/mpi_transport.h"
#include "host_link.h"

using namespace cascade;

namespace {

// A case body returns "" when this rank saw what it should, else what went wrong.
using Body = std::function<std::string(Transport& t, MPI_Comm comm)>;

uint8_t pattern(uint64_t i, uint64_t seed) { return (uint8_t)((i * 131 + seed * 17 + (i >> 13)) & 0xff); }

std::vector<uint8_t> payload_of(uint64_t n, uint64_t seed) {
  std::vector<uint8_t> p(n);
  for (uint64_t i = 0; i < n; ++i) p[i] = pattern(i, seed);
  return p;
}

// "" when buf holds the pattern, else the first wrong byte.
std::string check_payload(const std::vector<uint8_t>& buf, uint64_t seed) {
  for (uint64_t i = 0; i < buf.size(); ++i)
    if (buf[i] != pattern(i, seed)) return "byte " + std::to_string(i) + " of " + std::to_string(buf.size()) + " differs";
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Runs `body` expecting a TransportError whose text contains every string of `want`.
std::string expect_error(const std::function<void()>& body, const std::vector<std::string>& want) {
  try {
    body();
  } catch (const TransportError& e) {
    for (const std::string& w : want)
      if (!contains(e.what(), w)) return "error \"" + std::string(e.what()) + "\" lacks \"" + w + "\"";
    return "";
  }
  return "no error (expected one containing \"" + want.front() + "\")";
}

// Every rank's flows of `counts`, merged on rank 0 (elsewhere: empty).
std::vector<CommFlow> gather_flows(const ByteCounts& counts, MPI_Comm comm) {
  std::vector<uint64_t> mine;
  for (const CommFlow& f : to_flows(counts))
    for (uint64_t v : {(uint64_t)f.src, (uint64_t)f.dst, (uint64_t)(int64_t)f.layer, (uint64_t)f.kind, f.bytes})
      mine.push_back(v);
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const int n = (int)mine.size();
  std::vector<int> sizes(size), displs(size);
  MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, comm);
  int total = 0;
  for (int r = 0; r < size; ++r) {
    displs[r] = total;
    total += sizes[r];
  }
  std::vector<uint64_t> all(rank == 0 ? total : 0);
  MPI_Gatherv(mine.data(), n, MPI_UINT64_T, all.data(), sizes.data(), displs.data(), MPI_UINT64_T, 0, comm);
  std::vector<CommFlow> flows;
  for (size_t i = 0; i + 5 <= all.size(); i += 5)
    flows.push_back({(int)all[i], (int)all[i + 1], (int)(int64_t)all[i + 2], (CommKind)all[i + 3], all[i + 4]});
  return merge_flows(std::move(flows));
}

// Rank 0: "" when every rank's sent flows equal the received flows of their receivers.
std::string check_sent_is_received(Transport& t, MPI_Comm comm) {
  const std::vector<CommFlow> sent = gather_flows(t.sent(), comm);
  const std::vector<CommFlow> received = gather_flows(t.received(), comm);
  if (t.rank() != 0) return "";
  if (sent != received)
    return std::to_string(sent.size()) + " sent flows differ from " + std::to_string(received.size()) +
           " received flows";
  for (const CommFlow& f : sent)
    if (f.kind == CommKind::header) return "";
  return "no header bytes counted";
}

// Payload sizes around the piece size: with one q part of one position the header is 32 bytes,
// so 968 payload bytes make a stream of exactly 1000.
const uint64_t kSizes[] = {0, 1, 967, 968, 969, 999, 1000, 1001, 5000};

// Ranks 1 and 2 each send every size to rank 0 on one channel, all in flight at once, in
// pieces of at most 1000 bytes; rank 0 checks content, and both ends' counts must agree.
std::string case_pieces(Transport& t, MPI_Comm comm) {
  t.set_max_chunk_bytes(1000);
  std::string why;
  if (t.rank() == 0) {
    std::vector<std::vector<uint8_t>> got;
    for (uint64_t n : kSizes) got.emplace_back(n);
    std::vector<std::vector<uint8_t>> got2 = got;
    std::vector<Transport::Handle> h;
    for (size_t i = 0; i < got.size(); ++i) {
      h.push_back(t.irecv({1, 0, 2, {{CommKind::q, {(int)i}, kSizes[i]}}}, got[i].data()));
      h.push_back(t.irecv({2, 0, 2, {{CommKind::q, {(int)i}, kSizes[i]}}}, got2[i].data()));
    }
    t.wait_all(h);
    for (size_t i = 0; i < got.size() && why.empty(); ++i) {
      why = check_payload(got[i], 1000 + i);
      if (why.empty()) why = check_payload(got2[i], 2000 + i);
    }
  } else if (t.rank() <= 2) {
    std::vector<Transport::Handle> h;
    for (size_t i = 0; i < std::size(kSizes); ++i) {
      std::vector<uint8_t> p = payload_of(kSizes[i], 1000 * t.rank() + i);
      h.push_back(t.isend({t.rank(), 0, 2, {{CommKind::q, {(int)i}, kSizes[i]}}}, p.data()));
      std::fill(p.begin(), p.end(), 0);  // the transport holds its own copy
    }
    t.wait_all(h);
  }
  const std::string counts = check_sent_is_received(t, comm);
  return why.empty() ? counts : why;
}

// Parts arriving in another order than expected are accepted and delivered in expected order.
std::string case_part_order(Transport& t, MPI_Comm) {
  const std::vector<uint8_t> q = payload_of(24, 1), kv = payload_of(40, 2);
  if (t.rank() == 1) {
    std::vector<uint8_t> buf(kv);
    buf.insert(buf.end(), q.begin(), q.end());
    t.send({1, 0, 5, {{CommKind::kv, {3, 5}, 40}, {CommKind::q, {2}, 24}}}, buf.data());
  } else if (t.rank() == 0) {
    std::vector<uint8_t> buf(64);
    t.recv({1, 0, 5, {{CommKind::q, {2}, 24}, {CommKind::kv, {3, 5}, 40}}}, buf.data());
    if (!std::equal(q.begin(), q.end(), buf.begin()) || !std::equal(kv.begin(), kv.end(), buf.begin() + 24))
      return "payload not delivered in the expected part order";
  }
  return "";
}

// Other positions, another size, or an extra part than expected: "unexpected content".
std::string case_unexpected_content(Transport& t, MPI_Comm) {
  const std::vector<uint8_t> p = payload_of(32, 3);
  if (t.rank() == 1) {
    t.send({1, 0, 4, {{CommKind::q, {2, 4}, 16}}}, p.data());
    t.send({1, 0, 4, {{CommKind::partial, {2}, 32}}}, p.data());
    t.send({1, 0, 4, {{CommKind::q, {2}, 8}, {CommKind::kv, {3}, 8}}}, p.data());
  } else if (t.rank() == 0) {
    std::vector<uint8_t> buf(32);
    std::string why = expect_error([&] { t.recv({1, 0, 4, {{CommKind::q, {2, 3}, 16}}}, buf.data()); },
                                   {"unexpected content from rank 1 (party 1) at layer 4 (q)",
                                    "q row #1 is position 4, expected 3"});
    if (why.empty())
      why = expect_error([&] { t.recv({1, 0, 4, {{CommKind::partial, {2}, 16}}}, buf.data()); },
                         {"unexpected content", "partial has 32 bytes, expected 16"});
    if (why.empty())
      why = expect_error([&] { t.recv({1, 0, 4, {{CommKind::q, {2}, 8}}}, buf.data()); },
                         {"unexpected content", "an unexpected kv part arrived"});
    return why;
  }
  return "";
}

// An audit hook that throws on receive ends the wait with its message.
std::string case_audit_throws(Transport& t, MPI_Comm) {
  const std::vector<uint8_t> p = payload_of(8, 4);
  if (t.rank() == 1) {
    t.send({1, 0, 0, {{CommKind::partial, {7}, 8}}}, p.data());
  } else if (t.rank() == 0) {
    t.set_audit_hook([](const Message& m, bool outgoing) {
      if (!outgoing) throw TransportError("audit refuses position " + std::to_string(m.parts.at(0).positions.at(0)));
    });
    std::vector<uint8_t> buf(8);
    return expect_error([&] { t.recv({1, 0, 0, {{CommKind::partial, {7}, 8}}}, buf.data()); },
                        {"audit refuses position 7"});
  }
  return "";
}

// Messages of unknown size, in pieces; an empty one arrives as no parts.
std::string case_recv_any(Transport& t, MPI_Comm comm) {
  t.set_max_chunk_bytes(100);
  const std::vector<uint8_t> p = payload_of(345, 5);
  if (t.rank() == 1) {
    t.send({1, 0, -1, {{CommKind::report, {}, p.size()}}}, p.data());
    t.send({1, 0, -1, {{CommKind::schedule, {}, 0}}}, nullptr);
  } else if (t.rank() == 0) {
    const Received r = t.recv_any(1, -1, CommKind::report);
    if (r.msg.src != 1 || r.msg.dst != 0 || r.msg.layer != -1 || r.msg.parts.size() != 1 ||
        r.msg.parts[0].kind != CommKind::report || r.msg.parts[0].bytes != p.size())
      return "recv_any: wrong message";
    if (r.payload != p) return "recv_any: wrong payload";
    const Received e = t.recv_any(1, -1, CommKind::schedule);
    if (!e.msg.parts.empty() || !e.payload.empty()) return "recv_any: the empty message has parts";
  }
  return check_sent_is_received(t, comm);
}

std::string case_barrier(Transport& t, MPI_Comm) {
  t.set_timeout(60);
  for (int i = 0; i < 3; ++i) t.barrier();
  return "";
}

// The last rank never arrives: rank 0 names it, the others give up waiting for the release.
std::string case_barrier_timeout(Transport& t, MPI_Comm) {
  t.set_timeout(2);
  const int late = t.size() - 1;
  if (t.rank() == late) return "";
  if (t.rank() == 0)
    return expect_error([&] { t.barrier(); },
                        {"timed out after 2 s at the barrier: rank " + std::to_string(late) + " (party " +
                             std::to_string(late) + ") never arrived: dead or stuck"});
  return expect_error([&] { t.barrier(); }, {"timed out after 2 s at the barrier", "no release from rank 0"});
}

// A peer that never sends, one that stops mid-message, and one that sends garbage.
std::string case_receive_timeout(Transport& t, MPI_Comm comm) {
  t.set_timeout(1);
  const int tag = (3 + 1) * 16 + (int)CommKind::q;  // the wire tag of (layer 3, q)
  if (t.rank() == 1) {
    // Only the first 100 bytes of a 1000-byte message, then garbage on another layer's tag.
    const std::vector<uint8_t> p = payload_of(968, 6);
    const std::vector<uint8_t> wire = encode_message({1, 0, 3, {{CommKind::q, {1}, 968}}}, p.data());
    MPI_Barrier(comm);  // after rank 0's first timeout
    MPI_Send(wire.data(), 100, MPI_BYTE, 0, tag, comm);
    MPI_Barrier(comm);
    const char garbage[] = "not a message at all";
    MPI_Send(garbage, sizeof garbage, MPI_BYTE, 0, tag + 16, comm);
  } else if (t.rank() == 0) {
    std::vector<uint8_t> buf(968);
    std::string why = expect_error([&] { t.recv({1, 0, 3, {{CommKind::q, {1}, 968}}}, buf.data()); },
                                   {"timed out after 1 s waiting for q from rank 1 (party 1) at layer 3: "
                                    "the peer is dead or stuck"});
    MPI_Barrier(comm);
    if (why.empty())
      why = expect_error([&] { t.recv({1, 0, 3, {{CommKind::q, {1}, 968}}}, buf.data()); },
                         {"timed out after 1 s waiting for q from rank 1 (party 1) at layer 3 (100 of 1000 bytes in)"});
    MPI_Barrier(comm);
    if (why.empty())
      why = expect_error([&] { t.recv({1, 0, 4, {{CommKind::q, {1}, 968}}}, buf.data()); },
                         {"message from rank 1 (party 1) at layer 4 (q): malformed message at byte 0",
                          "bad magic"});
    return why;
  } else {
    MPI_Barrier(comm);
    MPI_Barrier(comm);
  }
  return "";
}

// A chain: rank 0 waits on rank 1, which waits on rank 2, which is stuck (it sleeps, outside any
// wait). Rank 1 alone names rank 2: rank 0's probe finds rank 1 alive and waiting, so rank 0 waits
// on instead of blaming it, and ends on rank 1's abort notice. Rank 2, once it resumes, finds
// the notice at its next wait.
std::string case_probe_and_abort_notice(Transport& t, MPI_Comm comm) {
  t.set_timeout(1);
  std::vector<uint8_t> buf(8);
  std::string why;
  auto expect_notice = [&](const std::function<void()>& body) {
    try {
      body();
      return std::string("no error (expected rank 1's abort notice)");
    } catch (const RunEnded& e) {
      if (!contains(e.what(), "party 1 failed: timed out after 1 s waiting for q from rank 2 (party 2) at layer 0"))
        return "the notice \"" + std::string(e.what()) + "\" is not rank 1's";
    } catch (const std::exception& e) {
      return "error \"" + std::string(e.what()) + "\", not rank 1's abort notice";
    }
    return std::string();
  };
  if (t.rank() == 0) {
    const auto t0 = std::chrono::steady_clock::now();
    why = expect_notice([&] { t.recv({1, 0, 0, {{CommKind::q, {0}, 8}}}, buf.data()); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (why.empty() && s < 1.0) why = "rank 0 stopped after " + std::to_string(s) + " s, before its own timeout";
  } else if (t.rank() == 1) {
    try {
      t.recv({2, 1, 0, {{CommKind::q, {0}, 8}}}, buf.data());
      why = "no timeout waiting for the stuck rank 2";
    } catch (const RunEnded& e) {
      why = std::string("rank 1 got a notice instead of naming rank 2: ") + e.what();
    } catch (const TransportError& e) {
      if (!contains(e.what(), "timed out after 1 s waiting for q from rank 2 (party 2) at layer 0: the peer is dead or stuck"))
        why = "error \"" + std::string(e.what()) + "\" does not name rank 2";
      t.notify_abort(std::string("party 1 failed: ") + e.what());
    }
  } else if (t.rank() == 2) {
    std::this_thread::sleep_for(std::chrono::seconds(3));  // stuck: no wait, no answer
    why = expect_notice([&] { t.recv({0, 2, 0, {{CommKind::q, {0}, 8}}}, buf.data()); });
  }
  MPI_Barrier(comm);
  return why;
}

// A device link (the host-staged test link, tests/emu/host_link.h) between ranks 1 and 2 on CPU
// backends, for the duration of `body`; rank 0 is off the link, as the client is.
std::string with_link(Transport& t, MPI_Comm comm, const std::function<std::string()>& body) {
  auto be = make_cpu_backend();
  MPI_Comm link_comm;
  MPI_Comm_dup(comm, &link_comm);
  if (t.rank() != 0) t.set_device_link(cascade_test::make_host_link(*be, link_comm));
  std::string why;
  try {
    why = body();
  } catch (const std::exception& e) {
    why = std::string("error: ") + e.what();
  }
  t.set_device_link(nullptr);
  MPI_Barrier(comm);
  MPI_Comm_free(&link_comm);
  return why;
}

// Between ranks on the link the payloads take it and only headers use MPI: the content arrives,
// the link carries exactly the payload bytes, the counts of both ends agree, and the name says
// the link. Rank 0 is not on it: its messages still go whole over MPI.
std::string case_link(Transport& t, MPI_Comm comm) {
  std::string why = with_link(t, comm, [&]() -> std::string {
    const unsigned long long link0 = cascade_test::host_link_bytes_sent();
    uint64_t payloads = 0;
    if (t.rank() == 1) {
      if (!t.device_payloads(2) || t.device_payloads(0)) return "device_payloads: wrong peers";
      if (t.name() != "nccl-emu") return "name " + t.name();
      std::vector<std::vector<uint8_t>> p;
      std::vector<Transport::Handle> h;
      for (size_t i = 0; i < std::size(kSizes); ++i) {
        p.push_back(payload_of(kSizes[i], 300 + i));
        h.push_back(t.isend({1, 2, 2, {{CommKind::q, {(int)i}, kSizes[i]}}}, p.back().data()));
        payloads += kSizes[i];
      }
      const std::vector<uint8_t> to0 = payload_of(500, 9);
      h.push_back(t.isend({1, 0, 1, {{CommKind::partial, {1}, 500}}}, to0.data()));
      t.wait_all(h);
      if (cascade_test::host_link_bytes_sent() - link0 != payloads)
        return "the link carried " + std::to_string(cascade_test::host_link_bytes_sent() - link0) + " bytes, not " +
               std::to_string(payloads);
    } else if (t.rank() == 2) {
      std::vector<std::vector<uint8_t>> got;
      for (uint64_t n : kSizes) got.emplace_back(n);
      std::vector<Transport::Handle> h;
      for (size_t i = 0; i < got.size(); ++i)
        h.push_back(t.irecv({1, 2, 2, {{CommKind::q, {(int)i}, kSizes[i]}}}, got[i].data()));
      t.wait_all(h);
      for (size_t i = 0; i < got.size(); ++i)
        if (std::string w = check_payload(got[i], 300 + i); !w.empty()) return w;
    } else {
      std::vector<uint8_t> buf(500);
      t.recv({1, 0, 1, {{CommKind::partial, {1}, 500}}}, buf.data());
      return check_payload(buf, 9);
    }
    return "";
  });
  const std::string counts = check_sent_is_received(t, comm);
  return why.empty() ? counts : why;
}

// A link writes the parts where the sender put them, so another part order than expected is
// refused (MPI alone reorders them: case_part_order); and a sender that posts a message but never
// waits (its payload never issued to the link) is a timeout naming it.
std::string case_link_refusals(Transport& t, MPI_Comm comm) {
  return with_link(t, comm, [&]() -> std::string {
    t.set_timeout(1);
    const std::vector<uint8_t> q = payload_of(24, 1), kv = payload_of(40, 2);
    if (t.rank() == 1) {
      std::vector<uint8_t> buf(kv);
      buf.insert(buf.end(), q.begin(), q.end());
      std::vector<Transport::Handle> h{t.isend({1, 2, 5, {{CommKind::kv, {3, 5}, 40}, {CommKind::q, {2}, 24}}}, buf.data())};
      try {
        t.wait_all(h);  // the link's send may stay unmatched: the receiver refuses the header
      } catch (const TransportError&) {
      }
      h = {t.isend({1, 2, 6, {{CommKind::q, {2}, 24}}}, q.data())};  // and never waited for
      MPI_Barrier(comm);
    } else if (t.rank() == 2) {
      std::vector<uint8_t> buf(64);
      std::string why = expect_error(
          [&] { t.recv({1, 2, 5, {{CommKind::q, {2}, 24}, {CommKind::kv, {3, 5}, 40}}}, buf.data()); },
          {"unexpected content from rank 1 (party 1) at layer 5 (q)", "a device link cannot reorder them"});
      if (why.empty())
        why = expect_error([&] { t.recv({1, 2, 6, {{CommKind::q, {2}, 24}}}, buf.data()); },
                           {"timed out after 1 s waiting for q from rank 1 (party 1) at layer 6"});
      MPI_Barrier(comm);
      return why;
    } else {
      MPI_Barrier(comm);
    }
    return "";
  });
}

// One message of 2^31 + 100 payload bytes with the default 1 GiB pieces.
std::string case_large(Transport& t, MPI_Comm comm) {
  const uint64_t n = (1ull << 31) + 100;
  std::string why;
  const auto t0 = std::chrono::steady_clock::now();
  if (t.rank() == 1) {
    const std::vector<uint8_t> p = payload_of(n, 7);
    t.send({1, 0, 0, {{CommKind::kv, {0, 1, 2}, n}}}, p.data());
  } else if (t.rank() == 0) {
    std::vector<uint8_t> buf(n);
    t.recv({1, 0, 0, {{CommKind::kv, {0, 1, 2}, n}}}, buf.data());
    why = check_payload(buf, 7);
    std::printf("       2^31 + 100 bytes in %.1f s (with filling and checking)\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const std::string counts = check_sent_is_received(t, comm);
  return why.empty() ? counts : why;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const bool large = argc > 1 && !std::strcmp(argv[1], "--large");
  std::vector<std::pair<const char*, Body>> cases;
  if (large) {
    cases = {{"one message of 2^31 + 100 bytes", case_large}};
  } else {
    cases = {{"pieces of <= 1000 bytes, sizes around the piece", case_pieces},
             {"parts in another order than expected", case_part_order},
             {"unexpected content", case_unexpected_content},
             {"audit hook throws on receive", case_audit_throws},
             {"recv_any", case_recv_any},
             {"barrier", case_barrier},
             {"barrier with a rank that never arrives", case_barrier_timeout},
             {"receive timeouts and garbage", case_receive_timeout},
             {"probe before blame, and the abort notice", case_probe_and_abort_notice},
             {"device link: payloads on it, headers on MPI", case_link},
             {"device link: part order and a sender that never issues", case_link_refusals}};
  }
  const int need = large ? 2 : 3;
  if (world < need) {
    if (rank == 0) std::fprintf(stderr, "needs %d ranks or more, got %d\n", need, world);
    MPI_Finalize();
    return 1;
  }
  int passed = 0, failed = 0;
  for (const auto& [name, body] : cases) {
    MPI_Comm comm;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    std::string why;
    try {
      auto t = make_mpi_transport(comm);
      t->set_timeout(60);
      t->set_peer_namer([](int r) { return "party " + std::to_string(r); });
      why = body(*t, comm);
    } catch (const std::exception& e) {
      why = std::string("error: ") + e.what();
    }
    MPI_Comm_free(&comm);
    // Rank 0 reports every rank's failures.
    if (!why.empty()) std::fprintf(stderr, "rank %d: %s: %s\n", rank, name, why.c_str());
    int bad = !why.empty(), any_bad = 0;
    MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    (any_bad ? failed : passed)++;
    if (rank == 0) std::printf("%s %s\n", any_bad ? "NOT OK" : "OK    ", name);
    std::fflush(stdout);
  }
  if (rank == 0) std::printf("%d passed, %d failed\n", passed, failed);
  MPI_Finalize();
  return failed == 0 ? 0 : 1;
}
