// The views audit (view.h) that every run applies to every message: a message that breaks a
// party's view must be reported, a legitimate one must not.
#include <gtest/gtest.h>

#include <string>

#include "cascade/comm_model.h"
#include "cascade/view.h"

using namespace cascade;

namespace {

bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// α = 2, β = 2, c = 2 (δ = 4): positions 0,1 → CompNode 0; 2,3 → CompNode 1; 8 positions,
// 6 of them prompt. offset: att(p) = p mod 2; cluster: att(p) = comp(p).
Schedule plan(AttnSharding sh, LmHead head = LmHead::client) {
  ScheduleParams p;
  p.alpha = 2;
  p.beta = 2;
  p.c = 2;
  p.n_positions = 8;
  p.n_prompt = 6;
  p.attn_sharding = sh;
  p.lm_head = head;
  p.shape = smollm2_135m_config().shape();
  return make_schedule(p);
}

struct ViewTest : ::testing::Test {
  Schedule s = plan(AttnSharding::offset);
  ModelShape m = s.shape;
  uint64_t q_row = 4ull * m.d_q(), kv_row = 8ull * m.d_kv();
  uint64_t part_row = 4ull * m.n_head * (m.d_head + 2);
  int comp0 = s.comp_rank(0), comp1 = s.comp_rank(1);

  std::string v(const Message& msg) { return view_violation(s, msg); }
};

}  // namespace

TEST_F(ViewTest, LegitimateMessagesPass) {
  EXPECT_EQ(v({0, comp0, -1, {{CommKind::tokens, {0, 1}, 8}}}), "");
  EXPECT_EQ(v({0, comp1, -1, {{CommKind::control, {6}, 8}}}), "");
  EXPECT_EQ(v({0, comp1, -1, {{CommKind::control, {}, 8}}}), "");  // stop
  EXPECT_EQ(v({0, s.attn_rank(1, 1), -1, {{CommKind::schedule, {}, 200}}}), "");
  // CompNode 0 → AttnNode (0, 1): q of position 0 (shard 0), k/v of position 1 (shard 1).
  EXPECT_EQ(v({comp0, s.attn_rank(0, 1), 3, {{CommKind::q, {0}, q_row}, {CommKind::kv, {1}, kv_row}}}), "");
  // Any part order, and a kv-only message.
  EXPECT_EQ(v({comp0, s.attn_rank(0, 1), 3, {{CommKind::kv, {1}, kv_row}, {CommKind::q, {0}, q_row}}}), "");
  EXPECT_EQ(v({comp0, s.attn_rank(0, 1), 3, {{CommKind::kv, {1}, kv_row}}}), "");
  EXPECT_EQ(v({s.attn_rank(1, 0), comp0, 3, {{CommKind::partial, {1}, part_row}}}), "");
  EXPECT_EQ(v({comp0, 0, -1, {{CommKind::hidden, {5}, 4ull * m.d_model}}}), "");  // prefill's last
  EXPECT_EQ(v({comp1, 0, -1, {{CommKind::hidden, {6}, 4ull * m.d_model}}}), "");  // a decode step
  EXPECT_EQ(v({s.attn_rank(1, 1), 0, -1, {{CommKind::report, {}, 1000}}}), "");
}

TEST_F(ViewTest, KvOnlyMessagesAreChecked) {
  // The bug this audit once had: a message whose first part is kv went unchecked.
  const std::string r = v({comp0, s.attn_rank(0, 1), 3, {{CommKind::kv, {0}, kv_row}}});
  EXPECT_TRUE(has(r, "CompNode 0 → AttnNode (0,1) at layer 3 (kv)")) << r;
  EXPECT_TRUE(has(r, "row of position 0 is in attention shard 0, not 1")) << r;
  // The same in either part order.
  EXPECT_NE(v({comp0, s.attn_rank(0, 1), 3, {{CommKind::kv, {0}, kv_row}, {CommKind::q, {0}, q_row}}}), "");
}

TEST_F(ViewTest, CompNodeNeverGetsAnotherShardsTokens) {
  const std::string r = v({0, comp0, -1, {{CommKind::tokens, {2}, 4}}});
  EXPECT_TRUE(has(r, "row of position 2 belongs to CompNode 1, not this CompNode")) << r;
}

TEST_F(ViewTest, CompNodeNeverGetsRowsOrPartialsOfOthers) {
  EXPECT_NE(v({comp1, comp0, 0, {{CommKind::q, {2}, q_row}}}), "");
  EXPECT_NE(v({comp1, comp0, -1, {{CommKind::hidden, {2}, 4ull * m.d_model}}}), "");
  // A partial for position 3 (CompNode 1) sent to CompNode 0.
  EXPECT_NE(v({s.attn_rank(1, 1), comp0, 0, {{CommKind::partial, {3}, part_row}}}), "");
  // A partial of a position outside the sender's query shard.
  EXPECT_NE(v({s.attn_rank(0, 1), comp0, 0, {{CommKind::partial, {1}, part_row}}}), "");
  // Sizes that do not match the declared positions (a hidden extra token or row).
  EXPECT_TRUE(has(v({0, comp0, -1, {{CommKind::tokens, {0, 1}, 12}}}), "12 bytes for 2 rows of 4 bytes"));
  EXPECT_NE(v({s.attn_rank(0, 0), comp0, 0, {{CommKind::partial, {0}, 2 * part_row}}}), "");
  // Partials come at a layer, from AttnNodes.
  EXPECT_NE(v({s.attn_rank(0, 0), comp0, -1, {{CommKind::partial, {0}, part_row}}}), "");
  EXPECT_NE(v({0, comp0, 0, {{CommKind::partial, {0}, part_row}}}), "");
}

TEST_F(ViewTest, AttnNodeNeverGetsTokensOrHiddenState) {
  const int attn = s.attn_rank(0, 0);
  EXPECT_NE(v({0, attn, -1, {{CommKind::tokens, {0}, 4}}}), "");
  EXPECT_TRUE(has(v({comp0, attn, 0, {{CommKind::q, {0}, q_row}, {CommKind::hidden, {0}, 4ull * m.d_model}}}),
                  "an AttnNode receives no token ids, hidden states, partials or logits"));
  EXPECT_NE(v({comp0, attn, 0, {{CommKind::logits, {0}, 4ull * m.n_vocab}}}), "");
  EXPECT_NE(v({s.attn_rank(0, 1), attn, 0, {{CommKind::partial, {0}, part_row}}}), "");
  // Rows of the wrong shard, of another CompNode, or more bytes than declared rows.
  EXPECT_NE(v({comp0, attn, 0, {{CommKind::q, {1}, q_row}}}), "");
  EXPECT_TRUE(has(v({comp0, attn, 0, {{CommKind::q, {2}, q_row}}}), "belongs to CompNode 1, not the sender"));
  EXPECT_NE(v({comp0, attn, 0, {{CommKind::q, {0}, 2 * q_row}}}), "");
  EXPECT_NE(v({comp0, attn, 0, {{CommKind::q, {0}, q_row}, {CommKind::q, {0}, q_row}}}), "");
}

TEST_F(ViewTest, LayersAndClientTraffic) {
  EXPECT_TRUE(has(v({comp0, s.attn_rank(0, 0), 30, {{CommKind::q, {0}, q_row}}}), "layer 30 does not exist"));
  EXPECT_NE(v({comp0, s.attn_rank(0, 0), -1, {{CommKind::q, {0}, q_row}}}), "");  // rows at a layer
  EXPECT_NE(v({0, comp0, 2, {{CommKind::tokens, {0}, 4}}}), "");                   // client traffic outside
  EXPECT_NE(v({0, comp0, -1, {{CommKind::control, {2}, 8}}}), "");                 // a prompt position
  EXPECT_NE(v({0, comp0, -1, {{CommKind::control, {6, 7}, 8}}}), "");
  EXPECT_NE(v({comp0, comp1, -1, {{CommKind::control, {6}, 8}}}), "");             // control only from the client
  EXPECT_NE(v({comp0, s.attn_rank(1, 1), -1, {{CommKind::report, {}, 10}}}), "");  // reports go to the client
  EXPECT_NE(v({0, 0, -1, {{CommKind::tokens, {0}, 4}}}), "");
}

TEST_F(ViewTest, ClientGetsOnlyTheFinalRowOfItsOwner) {
  // --lm-head client: the hidden row of the step's last position, from its owner.
  EXPECT_NE(v({comp0, 0, -1, {{CommKind::logits, {5}, 4ull * m.n_vocab}}}), "");
  EXPECT_TRUE(has(v({comp0, 0, -1, {{CommKind::hidden, {6}, 4ull * m.d_model}}}),
                  "row of position 6 belongs to CompNode 1, not the sender"));
  EXPECT_NE(v({comp1, 0, -1, {{CommKind::hidden, {2, 3}, 8ull * m.d_model}}}), "");
  EXPECT_NE(v({comp0, 0, -1, {{CommKind::hidden, {1}, 4ull * m.d_model}}}), "");   // ends no step (N = 6)
  EXPECT_NE(v({comp0, 0, 0, {{CommKind::q, {0}, q_row}}}), "");
  // --lm-head comp: logits instead.
  const Schedule comp_head = plan(AttnSharding::offset, LmHead::comp);
  EXPECT_EQ(view_violation(comp_head, {comp1, 0, -1, {{CommKind::logits, {7}, 4ull * m.n_vocab}}}), "");
  EXPECT_NE(view_violation(comp_head, {comp1, 0, -1, {{CommKind::hidden, {7}, 4ull * m.d_model}}}), "");
}

TEST(View, ClusterSharding) {
  const Schedule s = plan(AttnSharding::cluster);  // shard k = CompNode k
  const uint64_t q_row = 4ull * s.shape.d_q(), kv_row = 8ull * s.shape.d_kv();
  // CompNode 1 → AttnNode (0, 1): kv rows of its positions only (shard 1), no q (shard 0).
  EXPECT_EQ(view_violation(s, {s.comp_rank(1), s.attn_rank(0, 1), 0, {{CommKind::kv, {2, 3}, 2 * kv_row}}}), "");
  EXPECT_NE(view_violation(s, {s.comp_rank(1), s.attn_rank(0, 1), 0, {{CommKind::q, {2}, q_row}}}), "");
  EXPECT_NE(view_violation(s, {s.comp_rank(0), s.attn_rank(1, 1), 0, {{CommKind::kv, {0}, kv_row}}}), "");
}

TEST(View, AuditIsStateful) {
  const Schedule s = plan(AttnSharding::offset);
  const int comp1 = s.comp_rank(1);
  ViewAudit audit(s, comp1);
  audit.check_received({0, comp1, -1, {{CommKind::tokens, {2, 3}, 8}}});
  EXPECT_THROW(audit.check_received({0, comp1, -1, {{CommKind::tokens, {2}, 4}}}), ViewViolation);  // twice
  // A decode token before its control message.
  EXPECT_THROW(audit.check_received({0, comp1, -1, {{CommKind::tokens, {6}, 4}}}), ViewViolation);
  audit.check_received({0, comp1, -1, {{CommKind::control, {6}, 8}}});
  audit.check_received({0, comp1, -1, {{CommKind::tokens, {6}, 4}}});
  audit.check_received({0, comp1, -1, {{CommKind::control, {7}, 8}}});
  try {
    audit.check_received({0, comp1, -1, {{CommKind::control, {7}, 8}}});  // not increasing
    FAIL() << "expected a violation";
  } catch (const ViewViolation& e) {
    EXPECT_TRUE(has(e.what(), "view violation: client → CompNode 1 (control): decode position 7 after 7")) << e.what();
  }
  audit.check_received({0, comp1, -1, {{CommKind::control, {}, 8}}});  // stop
  // A message addressed elsewhere, and the outgoing check.
  EXPECT_THROW(audit.check_received({0, s.comp_rank(0), -1, {{CommKind::tokens, {0}, 4}}}), ViewViolation);
  EXPECT_THROW(audit.check_outgoing({comp1, s.attn_rank(0, 0), 0, {{CommKind::tokens, {2}, 4}}}), ViewViolation);
  EXPECT_NO_THROW(audit.check_outgoing({comp1, s.attn_rank(0, 0), 0, {{CommKind::q, {2}, 4ull * s.shape.d_q()}}}));
}
