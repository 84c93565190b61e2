// Communication model: the formula of PROTOCOL.md, the per-pair breakdown and the flows.
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "cascade/comm_model.h"
#include "cascade/schedule.h"

using namespace cascade;

namespace {

// SmolLM2-135M's dims, by hand (no GGUF needed).
ModelConfig smollm2() {
  ModelConfig c;
  c.n_layer = 30;
  c.d_model = 576;
  c.n_head = 9;
  c.n_head_kv = 3;
  c.d_head = 64;
  c.d_ff = 1536;
  c.n_vocab = 49152;
  return c;
}

Schedule cdelta(int alpha, int c, int beta, int n_positions, int n_prompt = 0) {
  ScheduleParams p;
  p.alpha = alpha;
  p.c = c;
  p.beta = beta;
  p.n_positions = n_positions;
  p.n_prompt = n_prompt;
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

}  // namespace

TEST(CommModel, BuiltInConfigIsSmolLM2) {
  ModelConfig c = smollm2_135m_config();
  ModelConfig h = smollm2();
  EXPECT_EQ(c.n_layer, h.n_layer);
  EXPECT_EQ(c.d_q(), 576);
  EXPECT_EQ(c.d_kv(), 192);
  EXPECT_EQ(c.n_vocab, h.n_vocab);
}

TEST(CommModel, PrefillFormula) {
  const ModelConfig cfg = smollm2();
  const Schedule s = cdelta(4, 4, 4, 128);  // β = 4, N = 128
  const CommEstimate e = predict_prefill(cfg, s, 128, 4);
  const uint64_t up = 128ull * 4 * (576 + 2 * 192) * 4;
  const uint64_t down = 128ull * 4 * 9 * 66 * 4;
  EXPECT_EQ(e.up_per_layer(), up);
  EXPECT_EQ(e.down_per_layer(), down);
  EXPECT_EQ(e.q_per_layer, 128ull * 4 * 576 * 4);
  EXPECT_EQ(e.kv_per_layer, 128ull * 4 * 2 * 192 * 4);
  EXPECT_EQ(e.layers_total(), 30 * (up + down));
  EXPECT_EQ(e.messages_per_layer(), 2u * 4 * 4 * 4);  // 2·α·β², every pair has traffic
  // Client: schedule to 20 ranks, 4 bytes per token, one logits row.
  EXPECT_EQ(e.schedule, (44 + 6 + 8 * 128) * 20u);
  EXPECT_EQ(e.tokens, 4u * 128);
  EXPECT_EQ(e.control, 0u);
  EXPECT_EQ(e.logits, 49152u * 4);
  EXPECT_EQ(e.client_messages, 20u + 4 + 1);
  EXPECT_EQ(e.total(), e.layers_total() + e.schedule + e.tokens + e.logits);
  // bf16 transit halves the layer bytes only.
  const CommEstimate h = predict_prefill(cfg, s, 128, 2);
  EXPECT_EQ(h.layers_total() * 2, e.layers_total());
  EXPECT_EQ(h.logits, e.logits);
}

TEST(CommModel, PairsSumToTotals) {
  const ModelConfig cfg = smollm2();
  for (const Schedule& s : {cdelta(4, 4, 4, 128), cdelta(3, 5, 2, 101), cdelta(8, 8, 8, 37)}) {
    const int n = s.n_positions;
    const auto pairs = layer_pair_bytes(cfg, s, 0, n, 4);
    ASSERT_EQ(pairs.size(), static_cast<size_t>(s.alpha) * s.beta * s.beta);
    uint64_t up = 0, down = 0, msgs = 0;
    for (const auto& pb : pairs) {
      EXPECT_EQ(&pb - pairs.data(), (pb.k * s.beta + pb.a) * s.beta + pb.b);
      EXPECT_EQ(pb.q, 4ull * 576 * s.rows_of_comp_in_shard(pb.k, pb.a));
      EXPECT_EQ(pb.kv, 4ull * 2 * 192 * s.rows_of_comp_in_shard(pb.k, pb.b));
      EXPECT_EQ(pb.partial, 4ull * 9 * 66 * s.rows_of_comp_in_shard(pb.k, pb.a));
      up += pb.up();
      down += pb.down();
      msgs += (pb.up() > 0) + (pb.down() > 0);
    }
    const CommEstimate e = predict_prefill(cfg, s, n, 4);
    EXPECT_EQ(up, static_cast<uint64_t>(n) * s.beta * (576 + 2 * 192) * 4);
    EXPECT_EQ(down, static_cast<uint64_t>(n) * s.beta * 9 * 66 * 4);
    EXPECT_EQ(up, e.up_per_layer());
    EXPECT_EQ(down, e.down_per_layer());
    EXPECT_EQ(msgs, e.messages_per_layer());
    EXPECT_LE(msgs, 2ull * s.alpha * s.beta * s.beta);
  }
}

TEST(CommModel, DecodeStep) {
  const ModelConfig cfg = smollm2();
  const Schedule s = cdelta(4, 4, 4, 140, 128);
  const CommEstimate d = predict_decode_step(cfg, s, 128, 4);
  EXPECT_EQ(d.up_per_layer(), 4ull * (576 + 2 * 192) * 4);
  EXPECT_EQ(d.down_per_layer(), 4ull * 9 * 66 * 4);
  EXPECT_EQ(d.messages_up_per_layer, 2u * 4 - 1);  // (att, ·) ∪ (·, att)
  EXPECT_EQ(d.messages_down_per_layer, 4u);
  EXPECT_EQ(d.control, 8u * 20);
  EXPECT_EQ(d.tokens, 4u);
  EXPECT_EQ(d.logits, 49152u * 4);
  EXPECT_EQ(d.schedule, 0u);
  EXPECT_EQ(d.client_messages, 20u + 1 + 1);
  EXPECT_THROW(predict_decode_step(cfg, s, 140, 4), std::invalid_argument);
}

TEST(CommModel, WholeRun) {
  const ModelConfig cfg = smollm2();
  const Schedule s = cdelta(4, 4, 4, 133, 128);
  const CommEstimate r = predict_run(cfg, s, 128, 5, 4);  // prefill + 4 decode steps + stop
  const CommEstimate p = predict_prefill(cfg, s, 128, 4);
  const CommEstimate d = predict_decode_step(cfg, s, 128, 4);
  EXPECT_EQ(r.layers_total(), p.layers_total() + 4 * d.layers_total());
  EXPECT_EQ(r.control, (4 + 1) * 8u * 20);
  EXPECT_EQ(r.tokens, 4u * (128 + 4));
  EXPECT_EQ(r.logits, 5u * 49152 * 4);
  EXPECT_EQ(r.schedule, p.schedule);
  EXPECT_EQ(r.up_per_layer(), p.up_per_layer() + 4 * d.up_per_layer());
  // One generated token: prefill and stop.
  const CommEstimate one = predict_run(cfg, s, 128, 1, 4);
  EXPECT_EQ(one.total(), p.total() + 8u * 20);
  EXPECT_THROW(predict_run(cfg, s, 128, 0, 4), std::invalid_argument);
  EXPECT_THROW(predict_run(cfg, s, 128, 7, 4), std::invalid_argument);  // needs position 133
  EXPECT_NO_THROW(predict_run(cfg, s, 128, 6, 4));
}

TEST(CommModel, FlowsEqualEstimates) {
  const ModelConfig cfg = smollm2();
  const Schedule s = cdelta(3, 4, 2, 50, 41);
  expect_flows_match(flows_prefill(cfg, s, 41, 4), predict_prefill(cfg, s, 41, 4));
  expect_flows_match(flows_decode_step(cfg, s, 45, 4), predict_decode_step(cfg, s, 45, 4));
  expect_flows_match(flows_run(cfg, s, 41, 6, 4), predict_run(cfg, s, 41, 6, 4));

  // Per (src, dst, layer, kind): every layer alike, ranks as in the layout, client traffic
  // at layer −1.
  const auto flows = flows_prefill(cfg, s, 41, 4);
  const auto pairs = layer_pair_bytes(cfg, s, 0, 41, 4);
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
    }
  // Logits come from the owner of position 40.
  const int owner = s.comp_rank(s.comp[40]);
  EXPECT_EQ(got[std::make_tuple(owner, 0, -1, static_cast<int>(CommKind::logits))], 49152u * 4);
  // Token ids go to the CompNodes, 4 bytes per owned prompt position.
  for (int k = 0; k < s.alpha; ++k) {
    const uint64_t want = 4ull * s.positions_of_comp(k, 41).size();
    EXPECT_EQ(got[std::make_tuple(0, s.comp_rank(k), -1, static_cast<int>(CommKind::tokens))],
              want);
  }
}

TEST(CommModel, EmptyCompNodeSendsNothing) {
  const ModelConfig cfg = smollm2();
  const Schedule s = cdelta(8, 8, 8, 20);  // CompNodes 3..7 own nothing
  const CommEstimate e = predict_prefill(cfg, s, 20, 4);
  EXPECT_EQ(e.client_messages, 72u + 3 + 1);
  for (const auto& f : flows_prefill(cfg, s, 20, 4)) {
    if (f.layer < 0) continue;
    const int comp = f.kind == CommKind::partial ? f.dst : f.src;
    EXPECT_LE(comp, 3);
    EXPECT_GT(f.bytes, 0u);
  }
}

TEST(CommModel, FormatBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.00 KiB");
  EXPECT_EQ(format_bytes(3 * 1024 * 1024 / 2), "1.50 MiB");
}
