// The views audit. See include/cascade/view.h for the rules.
#include "cascade/view.h"

#include <string>

namespace cascade {
namespace {

std::string str(long long v) { return std::to_string(v); }

// Payload bytes of one row of `kind` (fp32 on the wire); 0 for kinds without rows.
uint64_t row_bytes(const ModelShape& m, CommKind kind) {
  switch (kind) {
    case CommKind::tokens: return 4;
    case CommKind::q: return 4ull * m.d_q();
    case CommKind::kv: return 8ull * m.d_kv();  // k and v
    case CommKind::partial: return 4ull * m.n_head * (m.d_head + 2);  // m, e, u per head
    case CommKind::hidden: return 4ull * m.d_model;
    case CommKind::logits: return 4ull * m.n_vocab;
    default: return 0;
  }
}

std::string kinds_of(const Message& m) {
  std::string k;
  for (const MessagePart& p : m.parts) k += (k.empty() ? "" : "+") + std::string(comm_kind_name(p.kind));
  return k.empty() ? "empty" : k;
}

// What is wrong with one part of a message from `from` to `to`, or "".
std::string part_problem(const Schedule& s, const RankRole& from, const RankRole& to, int layer,
                         const MessagePart& part) {
  const CommKind kind = part.kind;
  const std::vector<int32_t>& pos = part.positions;
  for (size_t i = 0; i < pos.size(); ++i) {
    if (pos[i] < 0 || pos[i] >= s.n_positions)
      return "position " + str(pos[i]) + " is outside the schedule's 0.." + str(s.n_positions - 1);
    if (i > 0 && pos[i] <= pos[i - 1]) return "positions are not strictly increasing";
  }
  const bool from_client = from.kind == RankRole::client;
  const bool client_layer = layer == -1;

  // Messages of the client to every party.
  if (kind == CommKind::schedule || kind == CommKind::control) {
    if (!from_client) return "only the client sends the schedule and control messages";
    if (!client_layer) return "client traffic travels outside the layers";
    if (to.kind == RankRole::client) return "the client does not send to itself";
    if (kind == CommKind::schedule) return pos.empty() ? "" : "a schedule carries no positions";
    if (part.bytes != 8) return "a control message is 8 bytes, got " + str(part.bytes);
    if (pos.size() > 1) return "a control message names at most one position";
    if (pos.size() == 1 && pos[0] < s.n_prompt)
      return "decode position " + str(pos[0]) + " is a prompt position";
    return "";
  }
  if (kind == CommKind::report || kind == CommKind::trace) {
    if (to.kind != RankRole::client) return "end-of-run reports and traces go to the client only";
    if (!client_layer || !pos.empty()) return "a report is outside the layers and carries no positions";
    return "";
  }
  const uint64_t row = row_bytes(s.shape, kind);
  if (row == 0) return "kind " + std::string(comm_kind_name(kind)) + " is not a protocol message";
  if (part.bytes != row * pos.size())
    return str(part.bytes) + " bytes for " + str(pos.size()) + " row" + (pos.size() == 1 ? "" : "s") +
           " of " + str(row) + " bytes";
  // Whose rows: every position must be the sender's (CompNodes) or the receiver's (partials,
  // token ids) and in the right attention shard.
  auto owned_by = [&](int k, int shard, const char* whose) -> std::string {
    for (int p : pos) {
      if (s.comp[p] != k)
        return "row of position " + str(p) + " belongs to CompNode " + str(s.comp[p]) + ", not " + whose;
      if (shard >= 0 && s.att[p] != shard)
        return "row of position " + str(p) + " is in attention shard " + str(s.att[p]) + ", not " +
               str(shard);
    }
    return "";
  };
  const bool in_layers = layer >= 0;
  switch (to.kind) {
    case RankRole::client:
      if (s.shape.encoder()) {  // the last hidden rows of the sender's prompt positions
        if (kind != CommKind::hidden || from.kind != RankRole::comp || !client_layer || pos.empty())
          return "an encoder's client receives only last hidden rows, from CompNodes, outside the layers";
        if (pos.back() >= s.n_prompt) return "position " + str(pos.back()) + " is not an input position";
        return owned_by(from.k, -1, "the sender");
      }
      if (kind != CommKind::hidden && kind != CommKind::logits)
        return "the client receives only the final row of each step";
      if (from.kind != RankRole::comp || !client_layer || pos.size() != 1)
        return "the final row comes from a CompNode, outside the layers, for one position";
      if ((kind == CommKind::hidden) != (s.lm_head == LmHead::client))
        return std::string("under --lm-head ") + lm_head_name(s.lm_head) + " the final row is " +
               (s.lm_head == LmHead::client ? "the hidden row" : "the logits row");
      if (pos[0] < s.n_prompt - 1) return "position " + str(pos[0]) + " ends no step";
      return owned_by(from.k, -1, "the sender");
    case RankRole::comp:
      if (kind == CommKind::tokens) {
        if (!from_client || !client_layer) return "token ids come only from the client, outside the layers";
        return owned_by(to.k, -1, "this CompNode");
      }
      if (kind == CommKind::partial) {
        if (from.kind != RankRole::attn || !in_layers) return "partials come only from AttnNodes, at a layer";
        return owned_by(to.k, from.a, "this CompNode");
      }
      return "a CompNode receives no q/k/v rows, hidden states or logits";
    case RankRole::attn:
      if (kind == CommKind::q || kind == CommKind::kv) {
        if (from.kind != RankRole::comp || !in_layers) return "q/k/v rows come only from CompNodes, at a layer";
        // Query rows of shard a, key/value rows of shard b, and only the sender's own.
        return owned_by(from.k, kind == CommKind::q ? to.a : to.b, "the sender");
      }
      return "an AttnNode receives no token ids, hidden states, partials or logits";
  }
  return "unknown party";
}

}  // namespace

std::string view_violation(const Schedule& s, const Message& m) {
  if (s.shape.empty()) return "view check: the schedule carries no model shape";
  if (m.src < 0 || m.src >= s.n_ranks() || m.dst < 0 || m.dst >= s.n_ranks() || m.src == m.dst)
    return "message from rank " + str(m.src) + " to rank " + str(m.dst) + ": ranks outside the schedule";
  const RankRole from = s.role_of_rank(m.src), to = s.role_of_rank(m.dst);
  const std::string who = from.name() + " → " + to.name() +
                          (m.layer < 0 ? std::string(" outside the layers") : " at layer " + str(m.layer)) +
                          " (" + kinds_of(m) + "): ";
  if (m.layer < -1 || m.layer >= s.shape.n_layer)
    return who + "layer " + str(m.layer) + " does not exist (" + str(s.shape.n_layer) + " layers)";
  for (size_t i = 0; i < m.parts.size(); ++i) {
    for (size_t j = 0; j < i; ++j)
      if (m.parts[j].kind == m.parts[i].kind) return who + "two parts of the same kind";
    const std::string why = part_problem(s, from, to, m.layer, m.parts[i]);
    if (!why.empty()) return who + why;
  }
  return "";
}

void ViewAudit::check_outgoing(const Message& msg) const {
  const std::string why = view_violation(s_, msg);
  if (!why.empty()) throw ViewViolation("view violation (refused to send): " + why);
}

void ViewAudit::check_received(const Message& msg) {
  std::string why = msg.dst != rank_ ? "a message for rank " + str(msg.dst) + " arrived at rank " + str(rank_)
                                     : view_violation(s_, msg);
  for (size_t i = 0; why.empty() && i < msg.parts.size(); ++i) {
    const MessagePart& part = msg.parts[i];
    if (part.kind == CommKind::control && !part.positions.empty()) {
      if (part.positions[0] <= last_decode_)
        why = "decode position " + str(part.positions[0]) + " after " + str(last_decode_) +
              ": control positions must increase";
      else
        last_decode_ = part.positions[0];
    } else if (part.kind == CommKind::tokens) {
      for (int p : part.positions) {
        if (tokens_seen_.count(p)) why = "the token id of position " + str(p) + " arrived twice";
        else if (p >= s_.n_prompt && p != last_decode_)
          why = "the token id of position " + str(p) + " arrived outside its decode step";
        if (!why.empty()) break;
        tokens_seen_.insert(p);
      }
    }
    if (!why.empty())
      why = s_.role_of_rank(msg.src).name() + " → " + s_.role_of_rank(msg.dst).name() + " (" +
            comm_kind_name(part.kind) + "): " + why;
  }
  if (!why.empty()) throw ViewViolation("view violation: " + why);
}

}  // namespace cascade
