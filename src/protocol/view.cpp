#include "cascade/view.h"

namespace cascade {
namespace {

uint64_t part_bytes(const Message& m, CommKind kind) {
  uint64_t n = 0;
  for (const MessagePart& p : m.parts)
    if (p.kind == kind) n += p.bytes;
  return n;
}

// Positions of the rows of one kind (all parts of that kind, in part order).
std::vector<int32_t> part_positions(const Message& m, CommKind kind) {
  std::vector<int32_t> out;
  for (const MessagePart& p : m.parts)
    if (p.kind == kind) out.insert(out.end(), p.positions.begin(), p.positions.end());
  return out;
}

bool has_part(const Message& m, CommKind kind) {
  for (const MessagePart& p : m.parts)
    if (p.kind == kind && !part_is_empty(p)) return true;
  return false;
}

bool all_parts_in(const Message& m, std::initializer_list<CommKind> allowed) {
  for (const MessagePart& p : m.parts) {
    bool ok = false;
    for (CommKind k : allowed) ok |= p.kind == k;
    if (!ok && !part_is_empty(p)) return false;
  }
  return true;
}

}  // namespace

std::string view_violation(const Schedule& s, const ModelConfig& cfg, const Message& m) {
  if (m.dst < 0 || m.dst >= s.n_ranks() || m.src < 0 || m.src >= s.n_ranks())
    return "rank outside the schedule";
  const RankRole to = s.role_of_rank(m.dst);
  const RankRole from = s.role_of_rank(m.src);
  const CommKind kind = m.parts.empty() ? CommKind::control : m.parts.front().kind;
  const std::string who = from.name() + " → " + to.name() + " (" +
                          std::string(comm_kind_name(kind)) + ", layer " +
                          std::to_string(m.layer) + "): ";
  for (const MessagePart& part : m.parts)
    for (int p : part.positions)
      if (p < 0 || p >= s.n_positions) return who + "position " + std::to_string(p) + " out of range";
  const bool from_client = from.kind == RankRole::client;
  if ((has_part(m, CommKind::schedule) || has_part(m, CommKind::control)) && !from_client)
    return who + "schedule/control may only come from the client";
  // The end-of-run report (statistics and byte counts, no rows) goes to the client only.
  if (has_part(m, CommKind::report)) {
    if (to.kind != RankRole::client || !part_positions(m, CommKind::report).empty() ||
        !all_parts_in(m, {CommKind::report}))
      return who + "a report goes to the client alone and carries no rows";
    return "";
  }

  switch (to.kind) {
    case RankRole::client:
      if (!all_parts_in(m, {CommKind::logits})) return who + "the client receives only logits";
      return "";
    case RankRole::comp: {
      if (!all_parts_in(m, {CommKind::schedule, CommKind::control, CommKind::tokens, CommKind::partial}))
        return who + "a CompNode receives no q/k/v rows or logits";
      // Rows (token ids, partials) only of its own positions; the control part's decode
      // position goes to every party.
      for (CommKind k : {CommKind::tokens, CommKind::partial})
        for (int p : part_positions(m, k))
          if (s.comp[p] != to.k)
            return who + "carries position " + std::to_string(p) + " of CompNode " +
                   std::to_string(s.comp[p]);
      if (part_bytes(m, CommKind::tokens) != 4 * part_positions(m, CommKind::tokens).size())
        return who + "token bytes do not match the declared positions";
      if (has_part(m, CommKind::partial)) {
        if (from.kind != RankRole::attn) return who + "partials come only from AttnNodes";
        const std::vector<int32_t> rows = part_positions(m, CommKind::partial);
        for (int p : rows)
          if (s.att[p] != from.a) return who + "partial of a position outside the query shard";
        if (part_bytes(m, CommKind::partial) != rows.size() * cfg.n_head * (cfg.d_head + 2) * 4ull)
          return who + "partial bytes do not match the declared positions";
      }
      return "";
    }
    case RankRole::attn: {
      if (!all_parts_in(m, {CommKind::schedule, CommKind::control, CommKind::q, CommKind::kv}))
        return who + "an AttnNode receives no token ids, hidden states, partials or logits";
      if (!has_part(m, CommKind::q) && !has_part(m, CommKind::kv)) return "";
      if (from.kind != RankRole::comp) return who + "q/k/v rows come only from CompNodes";
      const std::vector<int32_t> q = part_positions(m, CommKind::q);
      const std::vector<int32_t> kv = part_positions(m, CommKind::kv);
      if (part_bytes(m, CommKind::q) != 4ull * cfg.d_q() * q.size() ||
          part_bytes(m, CommKind::kv) != 8ull * cfg.d_kv() * kv.size())
        return who + "row bytes do not match the declared positions";
      // q rows of shard a, k/v rows of shard b, all of the sending CompNode.
      for (const auto& [rows, shard] : {std::make_pair(&q, to.a), std::make_pair(&kv, to.b)})
        for (int p : *rows)
          if (s.comp[p] != from.k || s.att[p] != shard)
            return who + "row of position " + std::to_string(p) + " does not belong to this pair";
      return "";
    }
  }
  return who + "unknown party";
}

}  // namespace cascade
