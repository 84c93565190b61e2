#include "cascade/view.h"

namespace cascade {
namespace {

uint64_t part_bytes(const Message& m, CommKind kind) {
  uint64_t n = 0;
  for (const MessagePart& p : m.parts)
    if (p.kind == kind) n += p.bytes;
  return n;
}

bool all_parts_in(const Message& m, std::initializer_list<CommKind> allowed) {
  for (const MessagePart& p : m.parts) {
    bool ok = false;
    for (CommKind k : allowed) ok |= p.kind == k;
    if (!ok && p.bytes > 0) return false;
  }
  return true;
}

}  // namespace

std::string view_violation(const Schedule& s, const ModelConfig& cfg, const Message& m) {
  if (m.dst < 0 || m.dst >= s.n_ranks() || m.src < 0 || m.src >= s.n_ranks())
    return "rank outside the schedule";
  const RankRole to = s.role_of_rank(m.dst);
  const RankRole from = s.role_of_rank(m.src);
  const std::string who = from.name() + " → " + to.name() + " (" +
                          std::string(comm_kind_name(m.kind())) + ", layer " +
                          std::to_string(m.layer) + "): ";
  for (int p : m.positions)
    if (p < 0 || p >= s.n_positions) return who + "position " + std::to_string(p) + " out of range";
  const bool from_client = from.kind == RankRole::client;
  if ((m.kind() == CommKind::schedule || m.kind() == CommKind::control) && !from_client)
    return who + "schedule/control may only come from the client";

  switch (to.kind) {
    case RankRole::client:
      if (!all_parts_in(m, {CommKind::logits})) return who + "the client receives only logits";
      return "";
    case RankRole::comp: {
      if (!all_parts_in(m, {CommKind::schedule, CommKind::control, CommKind::tokens, CommKind::partial}))
        return who + "a CompNode receives no q/k/v rows or logits";
      for (int p : m.positions)
        if (s.comp[p] != to.k)
          return who + "carries position " + std::to_string(p) + " of CompNode " +
                 std::to_string(s.comp[p]);
      const uint64_t n = m.positions.size();
      if (part_bytes(m, CommKind::tokens) != 4 * (m.kind() == CommKind::tokens ? n : 0))
        return who + "token bytes do not match the declared positions";
      if (m.kind() == CommKind::partial) {
        if (from.kind != RankRole::attn) return who + "partials come only from AttnNodes";
        for (int p : m.positions)
          if (s.att[p] != from.a) return who + "partial of a position outside the query shard";
        if (part_bytes(m, CommKind::partial) != n * cfg.n_head * (cfg.d_head + 2) * 4ull)
          return who + "partial bytes do not match the declared positions";
      }
      return "";
    }
    case RankRole::attn: {
      if (!all_parts_in(m, {CommKind::schedule, CommKind::control, CommKind::q, CommKind::kv}))
        return who + "an AttnNode receives no token ids, hidden states, partials or logits";
      if (m.kind() != CommKind::q) return "";
      if (from.kind != RankRole::comp) return who + "q/k/v rows come only from CompNodes";
      const uint64_t nq = part_bytes(m, CommKind::q), nkv = part_bytes(m, CommKind::kv);
      if (nq % (4ull * cfg.d_q()) || nkv % (8ull * cfg.d_kv()) ||
          nq / (4ull * cfg.d_q()) + nkv / (8ull * cfg.d_kv()) != m.positions.size())
        return who + "row bytes do not match the declared positions";
      const size_t n_q = nq / (4ull * cfg.d_q());
      for (size_t i = 0; i < m.positions.size(); ++i) {
        const int p = m.positions[i];
        const int shard = i < n_q ? to.a : to.b;
        if (s.comp[p] != from.k || s.att[p] != shard)
          return who + "row of position " + std::to_string(p) + " does not belong to this pair";
      }
      return "";
    }
  }
  return who + "unknown party";
}

}  // namespace cascade
