// Traces (trace.h, trace_io.h): the recorder's timeline, the recording's wire form, the HDF5
// file written and read back, and the errors of bad files and paths.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "cascade/trace_io.h"
#include "test_util.h"

using namespace cascade;
using cascade_test::error_of;
using cascade_test::temp_path;

namespace {

bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// A small but complete trace: α = 1, β = 1 (3 ranks), hand-made recordings; rank 2 empty.
Trace small_trace(bool views) {
  Trace t;
  ScheduleParams p;
  p.alpha = 1;
  p.beta = 1;
  p.c = 2;
  p.n_prompt = 3;
  p.n_positions = 4;
  p.shape = {2, 8, 2, 1, 4, 10};
  t.schedule = make_schedule(p);
  t.meta.views = views;
  t.meta.world_size = 3;
  t.meta.d_ff = 16;
  t.meta.n_generated = 2;
  t.meta.rho = 3;
  t.meta.hosts = {"a", "b", "c"};
  t.meta.command_line = "cascade run --alpha 1";
  t.meta.model_name = "tiny";
  for (int r = 0; r < 3; ++r) {
    RankTrace rt;
    rt.rank = r;
    rt.party = t.schedule.role_of_rank(r).name();
    rt.host = t.meta.hosts[r];
    rt.wall_s = 1.5 + r;
    t.ranks.push_back(rt);
  }
  RankTrace& c = t.ranks[1];
  c.spans = {{0, -1, SpanKind::embed, 0.0, 0.1, 0.1, 0, 96},
             {0, 0, SpanKind::prepass, 0.1, 0.3, 0.2, 1234, 5678},
             {0, 0, SpanKind::send, 0.3, 0.31, 0.01, 0, 0},
             {0, 0, SpanKind::wait, 0.31, 0.5, 0.0, 0, 0}};
  MessageEvent sent;
  sent.direction = 0;
  sent.peer = 2;
  sent.layer = 0;
  sent.channel = (int)CommKind::q;
  sent.kinds = (1 << (int)CommKind::q) | (1 << (int)CommKind::kv);
  sent.wire_bytes = 100;
  sent.payload_bytes = 64;
  sent.t_post = 0.305;
  sent.t_complete = 0.4;
  sent.post_span = 2;
  sent.complete_span = 3;
  MessageEvent got = sent;
  got.direction = 1;
  got.channel = (int)CommKind::partial;
  got.kinds = 1 << (int)CommKind::partial;
  got.post_span = got.complete_span = 3;
  c.messages = {sent, got};
  if (views) {
    c.view_parts = {{1, (int)CommKind::partial, 0, 2, 0, 5}};
    c.view_positions = {0, 1};
    c.view_data = {1, 2, 3, 4, 5};
  }
  return t;
}

}  // namespace

TEST(Trace, RecorderCoversTheTimelineWithoutGaps) {
  TraceRecorder rec(4, false);
  rec.start();
  sleep_ms(2);  // → an `other` span
  rec.begin(SpanKind::prepass, 3);
  EXPECT_EQ(rec.current_span(), 1);
  rec.end({10.0, 20.0});
  EXPECT_EQ(rec.current_span(), -1);
  rec.set_step(2);
  rec.begin(SpanKind::wait, 3);
  rec.end();
  EXPECT_THROW(rec.end(), std::logic_error);
  rec.begin(SpanKind::merge, 3);
  EXPECT_THROW(rec.begin(SpanKind::postpass, 3), std::logic_error);  // no nesting
  rec.end();
  sleep_ms(1);
  rec.finish(1.0, 0.5, 0.25, 123, 4, MemoryStats{});
  const RankTrace& r = rec.data();
  ASSERT_GE(r.spans.size(), 4u);
  EXPECT_EQ(r.spans.front().kind, SpanKind::other);
  EXPECT_EQ(r.spans.front().t_start, 0.0);
  EXPECT_EQ(r.spans[1].kind, SpanKind::prepass);
  EXPECT_EQ(r.spans[1].layer, 3);
  EXPECT_EQ(r.spans[1].flops, 10.0);
  EXPECT_EQ(r.spans[1].mem_bytes, 20.0);
  for (size_t i = 1; i < r.spans.size(); ++i) {
    EXPECT_EQ(r.spans[i].t_start, r.spans[i - 1].t_end) << i;  // contiguous
    EXPECT_GE(r.spans[i].seconds(), 0.0);
  }
  EXPECT_EQ(r.spans.back().kind, SpanKind::other);  // the tail after the last span
  EXPECT_EQ(r.bytes_sent, 123u);
  EXPECT_EQ(r.rank, 4);
}

TEST(Trace, MessagesAreNumberedPerChannelAndViewsKeepWhatArrived) {
  TraceRecorder rec(1, true);
  rec.start();
  const auto now = std::chrono::steady_clock::now();
  const uint8_t payload[] = {9, 8, 7, 6, 5, 4};
  Message m{2, 1, 5, {{CommKind::q, {3}, 2}, {CommKind::kv, {3, 4}, 4}}};
  rec.begin(SpanKind::wait, 5);
  const int64_t wait_span = rec.current_span();
  rec.message(m, false, 60, (int)CommKind::q, now, -1, now, payload);
  rec.message(m, false, 60, (int)CommKind::q, now, -1, now, payload);
  Message other = m;
  other.layer = 6;
  rec.message(other, false, 60, (int)CommKind::q, now, -1, now, payload);
  rec.message({1, 2, 5, {{CommKind::partial, {3}, 2}}}, true, 30, (int)CommKind::partial, now, 0, now, nullptr);
  rec.end();
  const RankTrace& r = rec.data();
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].seq, 0u);
  EXPECT_EQ(r.messages[1].seq, 1u);  // same (peer, layer, channel)
  EXPECT_EQ(r.messages[2].seq, 0u);  // another layer
  EXPECT_EQ(r.messages[3].seq, 0u);  // sent: counted apart
  EXPECT_EQ(r.messages[0].complete_span, wait_span);
  EXPECT_EQ(r.spans.at(wait_span).kind, SpanKind::wait);
  EXPECT_EQ(r.messages[0].kinds, (1 << (int)CommKind::q) | (1 << (int)CommKind::kv));
  // Views of the three received messages only, part by part, payload split at the parts.
  ASSERT_EQ(r.view_parts.size(), 6u);
  EXPECT_EQ(r.view_parts[1].kind, (int)CommKind::kv);
  EXPECT_EQ(r.view_parts[1].n_positions, 2u);
  EXPECT_EQ(r.view_data[r.view_parts[1].data_offset], 7);
  EXPECT_EQ(r.view_data.size(), 18u);
}

TEST(Trace, RecordingWireFormRoundTripsAndRefusesDamage) {
  Trace t = small_trace(true);
  const RankTrace& r = t.ranks[1];
  const std::vector<uint8_t> bytes = encode_rank_trace(r);
  const RankTrace back = decode_rank_trace(bytes.data(), bytes.size());
  EXPECT_EQ(back.party, r.party);
  ASSERT_EQ(back.spans.size(), r.spans.size());
  EXPECT_EQ(back.spans[1].flops, 1234.0);
  EXPECT_EQ(back.messages[1].kinds, r.messages[1].kinds);
  EXPECT_EQ(back.view_data, r.view_data);
  for (size_t n = 0; n < bytes.size(); n += 7)
    EXPECT_THROW(decode_rank_trace(bytes.data(), n), std::runtime_error) << n;
  std::vector<uint8_t> bad = bytes;
  bad[0] ^= 1;
  EXPECT_TRUE(has(error_of([&] { decode_rank_trace(bad.data(), bad.size()); }), "bad magic"));
  bad = bytes;
  bad.push_back(0);
  EXPECT_TRUE(has(error_of([&] { decode_rank_trace(bad.data(), bad.size()); }), "trailing"));
}

TEST(Trace, FileRoundTrip) {
  for (bool views : {false, true}) {
    const Trace t = small_trace(views);
    const std::string path = temp_path(views ? "views.h5" : "plain.h5");
    check_trace_path(path, true);
    write_trace(path, t);
    const Trace back = read_trace(path);
    std::remove(path.c_str());
    EXPECT_TRUE(back.meta.complete);
    EXPECT_EQ(back.meta.views, views);
    EXPECT_EQ(back.meta.hosts, t.meta.hosts);
    EXPECT_EQ(back.meta.command_line, t.meta.command_line);
    EXPECT_EQ(back.schedule.comp, t.schedule.comp);
    EXPECT_EQ(back.schedule.shape, t.schedule.shape);
    EXPECT_EQ(back.schedule.lm_head, t.schedule.lm_head);
    ASSERT_EQ(back.ranks.size(), 3u);
    EXPECT_TRUE(back.ranks[2].spans.empty());  // an empty recording reads back empty
    const RankTrace& r = back.ranks[1];
    ASSERT_EQ(r.spans.size(), 4u);
    EXPECT_EQ(r.spans[1].kind, SpanKind::prepass);
    EXPECT_EQ(r.spans[1].mem_bytes, 5678.0);
    ASSERT_EQ(r.messages.size(), 2u);
    EXPECT_EQ(r.messages[0].post_span, 2);
    EXPECT_EQ(r.messages[1].t_complete, 0.4);
    EXPECT_EQ(r.wall_s, 2.5);
    EXPECT_EQ(r.view_data.size(), views ? 5u : 0u);
  }
}

TEST(Trace, BadPathsAndFiles) {
  // Unwritable, existing without overwrite.
  EXPECT_TRUE(has(error_of([] { check_trace_path("/nonexistent-dir/x.h5", false); }), "cannot create trace file"));
  const std::string path = temp_path("exists.h5");
  { std::ofstream(path) << "x"; }
  EXPECT_TRUE(has(error_of([&] { check_trace_path(path, false); }), "exists; pass --force"));
  // Not HDF5, missing, a placeholder of a run that did not finish.
  EXPECT_TRUE(has(error_of([&] { read_trace(path); }), "is not an HDF5 file"));
  EXPECT_TRUE(has(error_of([&] { read_trace(path + ".missing"); }), "not found"));
  check_trace_path(path, true);
  EXPECT_TRUE(has(error_of([&] { read_trace(path); }), "did not finish"));
  // A truncated file.
  write_trace(path, small_trace(true));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  ASSERT_EQ(truncate(path.c_str(), st.st_size / 2), 0);
  EXPECT_NE(error_of([&] { read_trace(path); }), "");
  // A view part that points outside its arrays.
  Trace t = small_trace(true);
  t.ranks[1].view_parts[0].bytes = 99;
  write_trace(path, t);
  EXPECT_TRUE(has(error_of([&] { read_trace(path); }), "outside its arrays"));
  // A recording count that is not the world size.
  t = small_trace(false);
  t.ranks.pop_back();
  EXPECT_TRUE(has(error_of([&] { write_trace(path, t); }), "2 rank recordings for a world of 3"));
  std::remove(path.c_str());
}

TEST(Trace, IncompleteTraceKeepsTheRecordingsItHasAndWhy) {
  // What rank 0 saves when a run fails: its own recording, the reason, complete = 0.
  Trace t = small_trace(true);
  t.meta.complete = false;
  t.meta.error = "rank 0 (client) stopped: rank 1 (CompNode 0) failed: timed out";
  t.ranks.resize(1);
  const std::string path = temp_path("incomplete.h5");
  write_trace(path, t);
  const Trace back = read_trace(path);
  EXPECT_FALSE(back.meta.complete);
  EXPECT_EQ(back.meta.error, t.meta.error);
  EXPECT_EQ(back.meta.world_size, 3);
  ASSERT_EQ(back.ranks.size(), 1u);
  EXPECT_EQ(back.ranks[0].rank, 0);
  EXPECT_EQ(back.ranks[0].spans.size(), t.ranks[0].spans.size());
  const std::string refusal = error_of([&] { require_all_ranks(back, path); });
  EXPECT_TRUE(has(refusal, "is incomplete: the run ended early (rank 0 (client) stopped: rank 1 (CompNode 0) failed: "
                           "timed out), and it holds the recordings of rank 0 of 3")) << refusal;
  // Rank 2 alone (rank 0's missing) reads back too, as rank 2.
  t = small_trace(false);
  t.meta.complete = false;
  t.ranks.erase(t.ranks.begin(), t.ranks.begin() + 2);
  write_trace(path, t);
  const Trace only2 = read_trace(path);
  ASSERT_EQ(only2.ranks.size(), 1u);
  EXPECT_EQ(only2.ranks[0].rank, 2);
  EXPECT_TRUE(has(error_of([&] { require_all_ranks(only2, path); }), "no reason recorded"));
  // A complete trace needs every rank, and recordings out of order are refused either way.
  EXPECT_NO_THROW(require_all_ranks(small_trace(false), path));
  t = small_trace(false);
  std::swap(t.ranks[0], t.ranks[1]);
  EXPECT_TRUE(has(error_of([&] { write_trace(path, t); }), "3 rank recordings for a world of 3"));
  t.meta.complete = false;
  EXPECT_TRUE(has(error_of([&] { write_trace(path, t); }), "3 rank recordings for a world of 3"));
  std::remove(path.c_str());
}

TEST(Trace, SpanCostsFromShapes) {
  const ModelShape m{30, 576, 9, 3, 64, 49152};
  // The Q|K|V GEMM of 10 rows: 2·10·576·(576 + 2·192).
  EXPECT_GE(cost_prepass(m, 1536, 10).flops, 2.0 * 10 * 576 * 960);
  EXPECT_LT(cost_prepass(m, 1536, 10).flops, 2.0 * 10 * 576 * 960 * 1.01);
  // Weights dominate the bytes of a one-row GEMV: (576·960 fp32).
  EXPECT_GE(cost_prepass(m, 1536, 1).mem_bytes, 4.0 * 576 * 960);
  EXPECT_NEAR(cost_postpass(m, 1536, 10).flops, 2.0 * 10 * (576 * 576 + 3 * 576 * 1536), 2.0 * 10 * 576 * 1536 * 0.01);
  EXPECT_NEAR(cost_lm_head(m, 1).flops, 2.0 * 576 * 49152, 1e4);
  EXPECT_EQ(cost_attention(m, 2, 3, 5).flops, 5.0 * 9 * (4 * 64 + 3));
  EXPECT_EQ(cost_copy(100).mem_bytes, 200.0);
  EXPECT_EQ(std::string(span_kind_name(SpanKind::lm_head)), "lm_head");
  EXPECT_TRUE(is_compute(SpanKind::attention));
  EXPECT_FALSE(is_compute(SpanKind::wait));
}

namespace {

// Found by fuzz_trace (fuzz/corpus/trace/regress-hdf5-segv): a damaged trace on which HDF5 1.10
// itself crashes (SEGV inside libhdf5). read_trace reads it in a child process first, so the
// caller gets an error naming the file instead of a crash.
TEST(TraceFile, AFileThatCrashesHdf5IsRefusedNotFatal) {
  const std::string path = std::string(CASCADE_SOURCE_DIR) + "/fuzz/corpus/trace/regress-hdf5-segv";
  try {
    (void)cascade::read_trace(path);
    FAIL() << "read";
  } catch (const cascade::TraceFileError& e) {
    EXPECT_NE(std::string(e.what()).find("the HDF5 library crashed reading it"), std::string::npos) << e.what();
  }
}

// A reader that never finishes (HDF5 looping on a damaged file; here a FIFO nobody writes, on
// which the open blocks) is killed at the deadline and the file refused.
TEST(TraceFile, AReaderThatNeverFinishesIsStopped) {
  const std::string fifo = ::testing::TempDir() + "cascade_trace_fifo.h5";
  ::unlink(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ::setenv("CASCADE_TRACE_READ_TIMEOUT", "1", 1);
  try {
    (void)cascade::read_trace(fifo);
    ADD_FAILURE() << "read";
  } catch (const cascade::TraceFileError& e) {
    EXPECT_NE(std::string(e.what()).find("reading it took more than 1 s in a child process"), std::string::npos)
        << e.what();
  }
  ::unsetenv("CASCADE_TRACE_READ_TIMEOUT");
  ::unlink(fifo.c_str());
}

}  // namespace
