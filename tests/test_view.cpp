// The view rules the audit hook enforces in the MPI tests (view.h): a message that breaks a
// party's view must be reported, a legitimate one must not.
#include <gtest/gtest.h>

#include "cascade/comm_model.h"
#include "cascade/view.h"

using namespace cascade;

namespace {

struct ViewTest : ::testing::Test {
  // α = 2, β = 2, c = 2 (δ = 4): positions 0,1 → CompNode 0; 2,3 → CompNode 1; att(p) = p mod 2.
  Schedule s = make_schedule({kStrategyCDelta, 2, 2, 2, 0, 0, 8, 8, AttnSharding::offset, LmHead::client, {}});
  ModelConfig cfg = smollm2_135m_config();
  uint64_t q_row = 4ull * cfg.d_q(), kv_row = 8ull * cfg.d_kv();
  uint64_t part_row = 4ull * cfg.n_head * (cfg.d_head + 2);
};

TEST_F(ViewTest, LegitimateMessagesPass) {
  const int comp0 = s.comp_rank(0), comp1 = s.comp_rank(1);
  EXPECT_EQ(view_violation(s, cfg, {0, comp0, -1, {{CommKind::tokens, {0, 1}, 8}}}), "");
  EXPECT_EQ(view_violation(s, cfg, {0, comp1, -1, {{CommKind::control, {5}, 8}}}), "");
  // CompNode 0 → AttnNode (0, 1): q of position 0 (shard 0), k/v of position 1 (shard 1).
  EXPECT_EQ(view_violation(s, cfg, {comp0, s.attn_rank(0, 1), 3, {{CommKind::q, {0}, q_row}, {CommKind::kv, {1}, kv_row}}}), "");
  EXPECT_EQ(view_violation(s, cfg, {s.attn_rank(1, 0), comp0, 3, {{CommKind::partial, {1}, part_row}}}), "");
  EXPECT_EQ(view_violation(s, cfg, {comp1, 0, -1, {{CommKind::logits, {3}, 4ull * cfg.n_vocab}}}), "");
}

TEST_F(ViewTest, CompNodeNeverGetsAnotherShardsTokens) {
  const std::string v = view_violation(s, cfg, {0, s.comp_rank(0), -1, {{CommKind::tokens, {2}, 4}}});
  EXPECT_NE(v.find("position 2 of CompNode 1"), std::string::npos) << v;
}

TEST_F(ViewTest, CompNodeNeverGetsRowsOrPartialsOfOthers) {
  EXPECT_NE(view_violation(s, cfg, {s.comp_rank(1), s.comp_rank(0), 0, {{CommKind::q, {2}, q_row}}}), "");
  // A partial for position 3 (CompNode 1) sent to CompNode 0.
  EXPECT_NE(view_violation(s, cfg, {s.attn_rank(1, 1), s.comp_rank(0), 0, {{CommKind::partial, {3}, part_row}}}), "");
  // A partial of a position outside the sender's query shard.
  EXPECT_NE(view_violation(s, cfg, {s.attn_rank(0, 1), s.comp_rank(0), 0, {{CommKind::partial, {1}, part_row}}}), "");
  // Token bytes that do not match the declared positions (a hidden extra token).
  EXPECT_NE(view_violation(s, cfg, {0, s.comp_rank(0), -1, {{CommKind::tokens, {0, 1}, 12}}}), "");
}

TEST_F(ViewTest, AttnNodeNeverGetsTokensOrHiddenState) {
  const int attn = s.attn_rank(0, 0);
  EXPECT_NE(view_violation(s, cfg, {0, attn, -1, {{CommKind::tokens, {0}, 4}}}), "");
  EXPECT_NE(view_violation(s, cfg, {s.comp_rank(0), attn, 0, {{CommKind::logits, {0}, 4ull * cfg.n_vocab}}}), "");
  EXPECT_NE(view_violation(s, cfg, {s.attn_rank(0, 1), attn, 0, {{CommKind::partial, {0}, part_row}}}), "");
  // Rows of the wrong shard, or more bytes than declared rows (a smuggled hidden row).
  EXPECT_NE(view_violation(s, cfg, {s.comp_rank(0), attn, 0, {{CommKind::q, {1}, q_row}}}), "");
  EXPECT_NE(view_violation(s, cfg, {s.comp_rank(0), attn, 0, {{CommKind::q, {0}, 2 * q_row}}}), "");
}

TEST_F(ViewTest, KvOnlyUpMessageIsChecked) {
  // As it travels, an up message with no q rows has a kv part only: still checked.
  const int comp0 = s.comp_rank(0);
  EXPECT_EQ(view_violation(s, cfg, {comp0, s.attn_rank(0, 1), 2, {{CommKind::kv, {1}, kv_row}}}), "");
  EXPECT_NE(view_violation(s, cfg, {comp0, s.attn_rank(0, 1), 2, {{CommKind::kv, {0}, kv_row}}}), "");
  EXPECT_NE(view_violation(s, cfg, {comp0, s.attn_rank(0, 1), 2, {{CommKind::kv, {1}, 2 * kv_row}}}), "");
}

TEST_F(ViewTest, ReportGoesToTheClientOnly) {
  EXPECT_EQ(view_violation(s, cfg, {s.attn_rank(1, 1), 0, -1, {{CommKind::report, {}, 100}}}), "");
  EXPECT_NE(view_violation(s, cfg, {s.attn_rank(1, 1), s.comp_rank(0), -1, {{CommKind::report, {}, 100}}}), "");
  EXPECT_NE(view_violation(s, cfg, {s.comp_rank(0), 0, -1, {{CommKind::report, {0}, 100}}}), "");
}

TEST_F(ViewTest, ClientGetsOnlyLogitsAndControlComesOnlyFromIt) {
  EXPECT_NE(view_violation(s, cfg, {s.comp_rank(0), 0, 0, {{CommKind::q, {0}, q_row}}}), "");
  EXPECT_NE(view_violation(s, cfg, {s.comp_rank(0), s.comp_rank(1), -1, {{CommKind::control, {}, 8}}}), "");
}

}  // namespace
