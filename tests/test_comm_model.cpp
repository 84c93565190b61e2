// Communication model: the formula of PROTOCOL.md, the per-pair breakdown, the headers and the
// flows, against figures worked out by hand.
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "cascade/comm_model.h"
#include "cascade/schedule.h"

using namespace cascade;

namespace {

// SmolLM2-135M's dims, by hand (no GGUF needed).
ModelShape smollm2() {
  ModelShape m;
  m.n_layer = 30;
  m.d_model = 576;
  m.n_head = 9;
  m.n_head_kv = 3;
  m.d_head = 64;
  m.n_vocab = 49152;
  return m;
}

Schedule cdelta(int alpha, int c, int beta, int n_positions, int n_prompt = 0,
                AttnSharding sharding = AttnSharding::cluster, LmHead head = LmHead::client,
                ModelShape shape = smollm2()) {
  ScheduleParams p;
  p.alpha = alpha;
  p.c = c;
  p.beta = beta;
  p.n_positions = n_positions;
  p.n_prompt = n_prompt;
  p.attn_sharding = sharding;
  p.lm_head = head;
  p.shape = shape;
  return make_schedule(p);
}

// Sum of flows by kind.
std::map<CommKind, uint64_t> by_kind(const std::vector<CommFlow>& flows) {
  std::map<CommKind, uint64_t> m;
  for (const auto& f : flows) m[f.kind] += f.bytes;
  return m;
}

void expect_flows_match(const std::vector<CommFlow>& flows, const CommEstimate& e) {
  auto m = by_kind(flows);
  for (int k = 0; k < kNumCommKinds; ++k) {
    const CommKind kind = static_cast<CommKind>(k);
    EXPECT_EQ(m[kind], e.by_kind(kind)) << comm_kind_name(kind);
  }
  uint64_t total = 0;
  for (const auto& f : flows) total += f.bytes;
  EXPECT_EQ(total, e.total());
}

uint64_t rows(const Schedule& s, int first, int end, int k, int shard) {
  return s.positions(first, end, k, shard).size();
}

}  // namespace

TEST(CommModel, BuiltInConfigIsSmolLM2) {
  EXPECT_EQ(smollm2_135m_config().shape(), smollm2());
  EXPECT_EQ(smollm2().d_q(), 576);
  EXPECT_EQ(smollm2().d_kv(), 192);
}

TEST(CommModel, PrefillFormula) {
  for (AttnSharding sh : {AttnSharding::cluster, AttnSharding::offset}) {
    const Schedule s = cdelta(4, 4, 4, 128, 0, sh);  // β = 4, N = 128
    const CommEstimate e = predict_prefill(s, 4);
    const uint64_t up = 128ull * 4 * (576 + 2 * 192) * 4;
    const uint64_t down = 128ull * 4 * 9 * 66 * 4;
    EXPECT_EQ(e.up_per_layer(), up);
    EXPECT_EQ(e.down_per_layer(), down);
    EXPECT_EQ(e.q_per_layer, 128ull * 4 * 576 * 4);
    EXPECT_EQ(e.kv_per_layer, 128ull * 4 * 2 * 192 * 4);
    EXPECT_EQ(e.layers_total(), 30 * (up + down));
    if (sh == AttnSharding::offset) {
      EXPECT_EQ(e.messages_per_layer(), 2u * 4 * 4 * 4);  // 2·α·β²: every pair has traffic
    } else {
      // CompNode k's rows are all in shard k: up to (k, ·) ∪ (·, k) = 7 AttnNodes, partials
      // back from (k, ·) = 4.
      EXPECT_EQ(e.messages_up_per_layer, 4u * 7);
      EXPECT_EQ(e.messages_down_per_layer, 4u * 4);
    }
    // Client: schedule (80 + "cdelta" + 8·128 bytes) to 20 ranks, 4 bytes per token, the final
    // hidden row (d floats).
    EXPECT_EQ(e.schedule, (80 + 6 + 8 * 128) * 20u);
    EXPECT_EQ(e.tokens, 4u * 128);
    EXPECT_EQ(e.control, 0u);
    EXPECT_EQ(e.hidden, 576u * 4);
    EXPECT_EQ(e.logits, 0u);
    EXPECT_EQ(e.client_messages, 20u + 4 + 1);
    EXPECT_EQ(e.protocol_total(), e.layers_total() + e.schedule + e.tokens + e.hidden);
    EXPECT_EQ(e.total(), e.protocol_total() + e.header);
    // bf16 transit halves the layer bytes only.
    const CommEstimate h = predict_prefill(s, 2);
    EXPECT_EQ(h.layers_total() * 2, e.layers_total());
    EXPECT_EQ(h.hidden, e.hidden);
  }
  // --lm-head comp: a logits row (vocab floats) instead of the hidden row.
  const CommEstimate c = predict_prefill(cdelta(4, 4, 4, 128, 0, AttnSharding::cluster, LmHead::comp), 4);
  EXPECT_EQ(c.logits, 49152u * 4);
  EXPECT_EQ(c.hidden, 0u);
}

// Every message of a tiny prefill, worked out by hand, headers included.
TEST(CommModel, TinyPrefillByHand) {
  // α = 2, β = 1, c = 2, N = 4: positions 0,1 → CompNode 0, 2,3 → CompNode 1, all in shard 0.
  // 1 layer, d = 8, 2 heads, 1 kv head, d_h = 4 (d_q 8, d_kv 4), vocab 10.
  const ModelShape tiny{1, 8, 2, 1, 4, 10};
  const Schedule s = cdelta(2, 2, 1, 4, 0, AttnSharding::cluster, LmHead::client, tiny);
  ASSERT_EQ(serialize(s).size(), 80u + 6 + 8 * 4);
  const CommEstimate e = predict_prefill(s, 4);
  EXPECT_EQ(e.schedule, 3u * 118);        // to ranks 1, 2, 3
  EXPECT_EQ(e.tokens, 2u * 8);            // 2 ids to each CompNode
  EXPECT_EQ(e.q, 2u * (2 * 8 * 4));       // 2 rows of d_q per CompNode
  EXPECT_EQ(e.kv, 2u * (2 * 2 * 4 * 4));  // 2 rows of k and v (d_kv each)
  EXPECT_EQ(e.partial, 2u * (2 * 2 * 6 * 4));  // 2 rows × 2 heads × (d_h + 2)
  EXPECT_EQ(e.hidden, 8u * 4);
  // Headers: 12 + Σ (16 + 4·rows): schedule 28 × 3, tokens 36 × 2, up (q + kv parts, 2 rows
  // each) 60 × 2, partials 36 × 2, hidden 32.
  EXPECT_EQ(e.header, 3u * 28 + 2 * 36 + 2 * 60 + 2 * 36 + 32);
  EXPECT_EQ(e.messages(), 3u + 2 + 2 + 2 + 1);
  const auto msgs = messages_prefill(s, 4);
  ASSERT_EQ(msgs.size(), 10u);
  EXPECT_EQ(msgs.back().src, s.comp_rank(1));  // position 3's owner sends the final row
  EXPECT_EQ(msgs.back().dst, 0);
}

TEST(CommModel, PairsSumToTotals) {
  for (const Schedule& s : {cdelta(4, 4, 4, 128), cdelta(3, 5, 2, 101, 0, AttnSharding::offset),
                            cdelta(8, 8, 8, 37), cdelta(8, 8, 8, 37, 0, AttnSharding::offset)}) {
    const int n = s.n_positions;
    const auto pairs = layer_pair_bytes(s, 0, n, 4);
    ASSERT_EQ(pairs.size(), static_cast<size_t>(s.alpha) * s.beta * s.beta);
    uint64_t up = 0, down = 0, msgs = 0;
    for (const auto& pb : pairs) {
      EXPECT_EQ(&pb - pairs.data(), (pb.k * s.beta + pb.a) * s.beta + pb.b);
      EXPECT_EQ(pb.q, 4ull * 576 * rows(s, 0, n, pb.k, pb.a));
      EXPECT_EQ(pb.kv, 4ull * 2 * 192 * rows(s, 0, n, pb.k, pb.b));
      EXPECT_EQ(pb.partial, 4ull * 9 * 66 * rows(s, 0, n, pb.k, pb.a));
      up += pb.up();
      down += pb.down();
      msgs += (pb.up() > 0) + (pb.down() > 0);
    }
    const CommEstimate e = predict_prefill(s, 4);
    EXPECT_EQ(up, static_cast<uint64_t>(n) * s.beta * (576 + 2 * 192) * 4);
    EXPECT_EQ(down, static_cast<uint64_t>(n) * s.beta * 9 * 66 * 4);
    EXPECT_EQ(up, e.up_per_layer());
    EXPECT_EQ(down, e.down_per_layer());
    EXPECT_EQ(msgs, e.messages_per_layer());
    EXPECT_LE(msgs, 2ull * s.alpha * s.beta * s.beta);
  }
}

TEST(CommModel, DecodeStep) {
  const Schedule s = cdelta(4, 4, 4, 140, 128);
  const CommEstimate d = predict_decode_step(s, 128, 4);
  EXPECT_EQ(d.up_per_layer(), 4ull * (576 + 2 * 192) * 4);
  EXPECT_EQ(d.down_per_layer(), 4ull * 9 * 66 * 4);
  EXPECT_EQ(d.messages_up_per_layer, 2u * 4 - 1);  // (att, ·) ∪ (·, att)
  EXPECT_EQ(d.messages_down_per_layer, 4u);
  EXPECT_EQ(d.control, 8u * 20);
  EXPECT_EQ(d.tokens, 4u);
  EXPECT_EQ(d.hidden, 576u * 4);
  EXPECT_EQ(d.schedule, 0u);
  EXPECT_EQ(d.client_messages, 20u + 1 + 1);
  // Headers: control (1 position) 32 × 20, token 32, final row 32; per layer 7 up messages of
  // one row in one or two parts (q+kv to (att, att): 12 + 2·20; q or kv alone: 12 + 20) and 4
  // partial messages (32).
  const uint64_t per_layer = (12 + 2 * 20) + 6 * (12 + 20) + 4 * 32;
  EXPECT_EQ(d.header, 20u * 32 + 32 + 32 + 30 * per_layer);
  EXPECT_THROW(predict_decode_step(s, 140, 4), std::invalid_argument);
  EXPECT_THROW(predict_decode_step(s, 127, 4), std::invalid_argument);  // a prompt position
}

TEST(CommModel, WholeRun) {
  const Schedule s = cdelta(4, 4, 4, 133, 128);
  const CommEstimate r = predict_run(s, 5, 4);  // prefill + 4 decode steps + stop
  const CommEstimate p = predict_prefill(s, 4);
  const CommEstimate d = predict_decode_step(s, 128, 4);
  EXPECT_EQ(r.layers_total(), p.layers_total() + 4 * d.layers_total());
  EXPECT_EQ(r.control, (4 + 1) * 8u * 20);
  EXPECT_EQ(r.tokens, 4u * (128 + 4));
  EXPECT_EQ(r.hidden, 5u * 576 * 4);
  EXPECT_EQ(r.schedule, p.schedule);
  EXPECT_EQ(r.up_per_layer(), p.up_per_layer() + 4 * d.up_per_layer());
  // One generated token: prefill and stop (8 bytes + a 28-byte header to each of 20 ranks).
  const CommEstimate one = predict_run(s, 1, 4);
  EXPECT_EQ(one.total(), p.total() + (8u + 28) * 20);
  EXPECT_THROW(predict_run(s, 0, 4), std::invalid_argument);
  EXPECT_THROW(predict_run(s, 7, 4), std::invalid_argument);  // needs position 133
  EXPECT_NO_THROW(predict_run(s, 6, 4));
  // No model shape: nothing to predict.
  ScheduleParams bare;
  bare.n_positions = 4;
  EXPECT_THROW(predict_prefill(make_schedule(bare), 4), std::invalid_argument);
}

TEST(CommModel, FlowsEqualEstimates) {
  const Schedule s = cdelta(3, 4, 2, 50, 41, AttnSharding::offset);
  expect_flows_match(to_flows(messages_prefill(s, 4)), predict_prefill(s, 4));
  expect_flows_match(to_flows(messages_decode_step(s, 45, 4)), predict_decode_step(s, 45, 4));
  expect_flows_match(flows_run(s, 6, 4), predict_run(s, 6, 4));

  // Per (src, dst, layer, kind): every layer alike, ranks as in the layout, client traffic
  // at layer −1.
  const auto flows = to_flows(messages_prefill(s, 4));
  const auto pairs = layer_pair_bytes(s, 0, 41, 4);
  std::map<std::tuple<int, int, int, int>, uint64_t> got;
  for (const auto& f : flows) {
    auto key = std::make_tuple(f.src, f.dst, f.layer, static_cast<int>(f.kind));
    EXPECT_EQ(got.count(key), 0u) << "flows are merged";
    got[key] = f.bytes;
  }
  for (int l : {0, 29})
    for (const auto& pb : pairs) {
      const int c = s.comp_rank(pb.k), a = s.attn_rank(pb.a, pb.b);
      auto at = [&](int src, int dst, CommKind k) {
        auto it = got.find(std::make_tuple(src, dst, l, static_cast<int>(k)));
        return it == got.end() ? 0 : it->second;
      };
      EXPECT_EQ(at(c, a, CommKind::q), pb.q);
      EXPECT_EQ(at(c, a, CommKind::kv), pb.kv);
      EXPECT_EQ(at(a, c, CommKind::partial), pb.partial);
      const uint64_t parts = (pb.rows_q > 0) + (pb.rows_kv > 0);
      EXPECT_EQ(at(c, a, CommKind::header), parts ? 12 + 16 * parts + 4 * (pb.rows_q + pb.rows_kv) : 0);
    }
  // The final hidden row comes from the owner of position 40.
  const int owner = s.comp_rank(s.comp[40]);
  EXPECT_EQ(got[std::make_tuple(owner, 0, -1, static_cast<int>(CommKind::hidden))], 576u * 4);
  // Token ids go to the CompNodes, 4 bytes per owned prompt position.
  for (int k = 0; k < s.alpha; ++k) {
    const uint64_t want = 4ull * s.positions(0, 41, k).size();
    EXPECT_EQ(got[std::make_tuple(0, s.comp_rank(k), -1, static_cast<int>(CommKind::tokens))],
              want);
  }
}

TEST(CommModel, EmptyCompNodeSendsNothing) {
  const Schedule s = cdelta(8, 8, 8, 20);  // CompNodes 3..7 own nothing
  const CommEstimate e = predict_prefill(s, 4);
  EXPECT_EQ(e.client_messages, 72u + 3 + 1);
  for (const auto& f : to_flows(messages_prefill(s, 4))) {
    if (f.layer < 0) continue;
    const int comp = f.kind == CommKind::partial || f.dst <= s.alpha ? f.dst : f.src;
    EXPECT_LE(comp, 3);
    EXPECT_GT(f.bytes, 0u);
  }
}

TEST(CommModel, ProtocolFlowsDropReports) {
  std::vector<CommFlow> f = {{1, 0, -1, CommKind::report, 100}, {0, 1, -1, CommKind::schedule, 5}};
  const auto p = protocol_flows(f);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].kind, CommKind::schedule);
}

TEST(CommModel, FlowDifferences) {
  const std::vector<CommFlow> a = {{1, 5, 3, CommKind::kv, 1536}, {0, 1, -1, CommKind::tokens, 8}};
  std::vector<CommFlow> b = a;
  EXPECT_TRUE(flow_differences(a, b, "sent", "received").empty());
  b[0].bytes = 1535;
  auto d = flow_differences(a, b, "sent", "received");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0], "rank 1 → rank 5, layer 3, kv: sent 1536 B, received 1535 B");
  b.pop_back();  // a flow only one side has
  d = flow_differences(a, b, "sent", "received");
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0], "rank 0 → rank 1, client traffic, tokens: sent 8 B, received 0 B");
  std::vector<CommFlow> many;
  for (int r = 0; r < 9; ++r) many.push_back({r, r + 1, 0, CommKind::q, 4});
  d = flow_differences(many, {}, "x", "y", 5);
  ASSERT_EQ(d.size(), 6u);
  EXPECT_EQ(d.back(), "… and 4 more");
}

TEST(CommModel, FormatBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.00 KiB");
  EXPECT_EQ(format_bytes(3 * 1024 * 1024 / 2), "1.50 MiB");
}
