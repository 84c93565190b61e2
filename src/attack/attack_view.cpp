#include "cascade/attack_view.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>

#include "cascade/backend.h"
#include "cascade/layer.h"
#include "cascade/rouge.h"
#include "kernels/rope.h"

namespace cascade {

const float* PartyView::row(const RowSpec& spec, int pos) const {
  for (const ViewRows& r : rows) {
    if (r.spec.kind != spec.kind || r.spec.layer != spec.layer) continue;
    auto it = std::lower_bound(r.positions.begin(), r.positions.end(), pos);
    if (it == r.positions.end() || *it != pos) return nullptr;
    const size_t w = r.data.size() / r.positions.size();
    return r.data.data() + (size_t)(it - r.positions.begin()) * w;
  }
  return nullptr;
}

int PartyView::observed() const {
  return (int)std::count_if(tokens.begin(), tokens.end(), [](int32_t t) { return t >= 0; });
}

int party_rank(const Schedule& s, const std::string& party) {
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("party '" + party + "': " + why + " (comp:K with 0 ≤ K < " +
                                 std::to_string(s.alpha) + ", or attn:A,B with 0 ≤ A, B < " +
                                 std::to_string(s.beta) + ")");
  };
  int k = -1, a = -1, b = -1;
  char tail = 0;
  if (std::sscanf(party.c_str(), "comp:%d%c", &k, &tail) == 1) {
    if (k < 0 || k >= s.alpha) throw bad("no such CompNode");
    return s.comp_rank(k);
  }
  if (std::sscanf(party.c_str(), "attn:%d,%d%c", &a, &b, &tail) == 2) {
    if (a < 0 || a >= s.beta || b < 0 || b >= s.beta) throw bad("no such AttnNode");
    return s.attn_rank(a, b);
  }
  throw bad("not a party");
}

namespace {

// The parts rank r received in the prefill (step 0), with their message.
struct ReceivedPart {
  const MessageEvent* msg;
  const ViewPart* part;
  const int32_t* positions;
  const uint8_t* data;
};

std::vector<ReceivedPart> prefill_parts(const Trace& t, int rank) {
  if (!t.meta.views)
    throw std::invalid_argument("the trace has no views: record the run with --trace-views");
  if (rank <= 0 || rank >= (int)t.ranks.size())
    throw std::invalid_argument("rank " + std::to_string(rank) + " is not a party of this trace");
  const RankTrace& r = t.ranks[rank];
  std::vector<ReceivedPart> out;
  for (const ViewPart& p : r.view_parts) {
    const MessageEvent& m = r.messages.at(p.message);
    if (m.step != 0) continue;
    out.push_back({&m, &p, r.view_positions.data() + p.positions_offset, r.view_data.data() + p.data_offset});
  }
  return out;
}

}  // namespace

std::vector<int32_t> trace_prompt(const Trace& t) {
  const Schedule& s = t.schedule;
  std::vector<int32_t> prompt(s.n_prompt, -1);
  for (int k = 0; k < s.alpha; ++k) {
    for (const ReceivedPart& p : prefill_parts(t, s.comp_rank(k))) {
      if (p.part->kind != (int)CommKind::tokens) continue;
      const int32_t* ids = reinterpret_cast<const int32_t*>(p.data);
      for (uint64_t i = 0; i < p.part->n_positions; ++i)
        if (p.positions[i] < s.n_prompt) prompt[p.positions[i]] = ids[i];
    }
  }
  for (int p = 0; p < s.n_prompt; ++p)
    if (prompt[p] < 0) throw std::runtime_error("the trace holds no token of position " + std::to_string(p));
  return prompt;
}

Layer0Inverter::Layer0Inverter(const Model& model) : model_(model) {
  const ModelConfig& c = model.cfg;
  auto be = make_cpu_backend();
  LayerScratch ws;
  q_.resize((size_t)c.n_vocab * c.d_q());
  k_.resize((size_t)c.n_vocab * c.d_kv());
  v_.resize(k_.size());
  const int chunk = 2048;
  std::vector<int32_t> ids(chunk), pos(chunk, 0);
  std::vector<float> h((size_t)chunk * c.d_model);
  for (int t0 = 0; t0 < c.n_vocab; t0 += chunk) {
    const int n = std::min(chunk, c.n_vocab - t0);
    for (int i = 0; i < n; ++i) ids[i] = t0 + i;
    embed_tokens(model, ids.data(), n, h.data());
    layer_prepass(*be, model, 0, h.data(), pos.data(), n, q_.data() + (size_t)t0 * c.d_q(),
                  k_.data() + (size_t)t0 * c.d_kv(), v_.data() + (size_t)t0 * c.d_kv(), ws);
  }
}

int32_t Layer0Inverter::token(const RowSpec& spec, int pos, const float* row) const {
  const ModelConfig& c = model_.cfg;
  if (spec.layer != 0) throw std::invalid_argument("Layer0Inverter: not a layer-0 row");
  const int w = row_width(c, spec);
  std::vector<float> x(row, row + w);
  const std::vector<float>* table = &v_;
  if (spec.kind == RowKind::q || spec.kind == RowKind::k) {  // undo RoPE: rotate back by pos
    kernels::rope_row(x.data(), spec.kind == RowKind::q ? c.n_head : c.n_head_kv, c.d_head, -pos, c.rope_theta);
    table = spec.kind == RowKind::q ? &q_ : &k_;
  } else if (spec.kind == RowKind::hidden) {
    throw std::invalid_argument("Layer0Inverter: hidden rows at layer 0 are embeddings (use the embedding table)");
  }
  int32_t best = -1;
  double best_d = std::numeric_limits<double>::infinity();
  for (int t = 0; t < c.n_vocab; ++t) {
    const float* r = table->data() + (size_t)t * w;
    double d = 0.0;
    for (int i = 0; i < w && d < best_d; ++i) d += std::fabs(x[i] - r[i]);
    if (d < best_d) best_d = d, best = t;
  }
  return best;
}

const float* Layer0Inverter::row_at_0(RowKind kind, int32_t token) const {
  const ModelConfig& c = model_.cfg;
  if (token < 0 || token >= c.n_vocab) throw std::out_of_range("Layer0Inverter: token " + std::to_string(token) + " is not in the vocabulary");
  switch (kind) {
    case RowKind::q: return q_.data() + (size_t)token * c.d_q();
    case RowKind::k: return k_.data() + (size_t)token * c.d_kv();
    case RowKind::v: return v_.data() + (size_t)token * c.d_kv();
    default: throw std::invalid_argument("Layer0Inverter: no table of hidden rows");
  }
}

PartyView party_view(const Trace& t, int rank, const Model& model, const Layer0Inverter* inverter) {
  const Schedule& s = t.schedule;
  const ModelConfig& c = model.cfg;
  if (!(s.shape == c.shape()))
    throw std::invalid_argument("the model's shape differs from the traced run's: attack with the run's model");
  PartyView v;
  v.rank = rank;
  v.role = s.role_of_rank(rank);
  v.n_prompt = s.n_prompt;
  v.tokens.assign(s.n_prompt, -1);
  v.shard.assign(s.att.begin(), s.att.begin() + s.n_prompt);
  const std::vector<ReceivedPart> parts = prefill_parts(t, rank);

  if (v.role.kind == RankRole::comp) {
    std::vector<int32_t> own, ids;
    for (const ReceivedPart& p : parts) {
      if (p.part->kind != (int)CommKind::tokens) continue;
      own.assign(p.positions, p.positions + p.part->n_positions);
      const int32_t* d = reinterpret_cast<const int32_t*>(p.data);
      ids.assign(d, d + p.part->n_positions);
    }
    const int n = (int)own.size();
    for (int i = 0; i < n; ++i) v.tokens[own[i]] = ids[i];
    if (n == 0) return v;
    std::map<int, int> row_of;
    for (int i = 0; i < n; ++i) row_of[own[i]] = i;
    // Replay the CompNode: embed, then per layer prepass, merge of the received partials (in
    // AttnNode b order, as the CompNode merges), postpass.
    auto be = make_cpu_backend();
    LayerScratch ws;
    std::vector<float> h((size_t)n * c.d_model), q((size_t)n * c.d_q()), k((size_t)n * c.d_kv()),
        vv(k.size()), o(q.size());
    const size_t nh = (size_t)n * c.n_head;
    std::vector<float> M(s.beta * nh), E(M.size()), U(M.size() * c.d_head);
    embed_tokens(model, ids.data(), n, h.data());
    auto keep_hidden = [&](int layer) {
      v.rows.push_back({{RowKind::hidden, layer}, own, h});
    };
    keep_hidden(0);
    for (int l = 0; l < c.n_layer; ++l) {
      layer_prepass(*be, model, l, h.data(), own.data(), n, q.data(), k.data(), vv.data(), ws);
      std::fill(M.begin(), M.end(), -std::numeric_limits<float>::infinity());
      std::fill(E.begin(), E.end(), 0.0f);
      std::fill(U.begin(), U.end(), 0.0f);
      for (const ReceivedPart& p : parts) {
        if (p.part->kind != (int)CommKind::partial || p.msg->layer != l) continue;
        const RankRole from = s.role_of_rank(p.msg->peer);
        const size_t nr = p.part->n_positions;
        if (p.part->bytes != 4 * nr * c.n_head * (c.d_head + 2))
          throw std::runtime_error("a partial of the trace has the wrong size");
        const float* pm = reinterpret_cast<const float*>(p.data);
        const float* pe = pm + nr * c.n_head;
        const float* pu = pe + nr * c.n_head;
        for (size_t i = 0; i < nr; ++i) {
          const size_t r = row_of.at(p.positions[i]), at = from.b * nh + r * c.n_head;
          std::memcpy(&M[at], pm + i * c.n_head, 4 * c.n_head);
          std::memcpy(&E[at], pe + i * c.n_head, 4 * c.n_head);
          std::memcpy(&U[at * c.d_head], pu + i * c.n_head * c.d_head, 4 * c.n_head * c.d_head);
        }
      }
      if (l == 0) {  // keep the layer-0 partials as received (positions < n_prompt)
        ViewPartials& vp = v.partials;
        vp.beta = s.beta, vp.n_head = c.n_head, vp.d_head = c.d_head;
        int np = 0;
        while (np < n && own[np] < s.n_prompt) ++np;
        vp.positions.assign(own.begin(), own.begin() + np);
        for (int b = 0; b < s.beta; ++b) {
          const size_t at = b * nh;
          vp.m.insert(vp.m.end(), M.begin() + at, M.begin() + at + (size_t)np * c.n_head);
          vp.e.insert(vp.e.end(), E.begin() + at, E.begin() + at + (size_t)np * c.n_head);
          vp.u.insert(vp.u.end(), U.begin() + at * c.d_head, U.begin() + (at + (size_t)np * c.n_head) * c.d_head);
        }
      }
      be->merge_partials(M.data(), E.data(), U.data(), s.beta, n, c.n_head, c.d_head, o.data());
      layer_postpass(*be, model, l, h.data(), o.data(), n, ws);
      keep_hidden(l + 1);
    }
    return v;
  }

  if (v.role.kind != RankRole::attn) throw std::invalid_argument("the client is not attacked");
  // AttnNode: gather the q, k, v rows of every layer, by position.
  std::vector<std::map<int, std::vector<float>>> qs(c.n_layer), ks(c.n_layer), vs(c.n_layer);
  for (const ReceivedPart& p : parts) {
    const int l = p.msg->layer;
    const size_t nr = p.part->n_positions;
    const float* d = reinterpret_cast<const float*>(p.data);
    if (p.part->kind == (int)CommKind::q) {
      for (size_t i = 0; i < nr; ++i) qs[l][p.positions[i]].assign(d + i * c.d_q(), d + (i + 1) * c.d_q());
    } else if (p.part->kind == (int)CommKind::kv) {
      for (size_t i = 0; i < nr; ++i) {
        ks[l][p.positions[i]].assign(d + i * c.d_kv(), d + (i + 1) * c.d_kv());
        vs[l][p.positions[i]].assign(d + (nr + i) * c.d_kv(), d + (nr + i + 1) * c.d_kv());
      }
    }
  }
  auto add = [&](RowKind kind, int l, const std::map<int, std::vector<float>>& m) {
    if (m.empty()) return;
    ViewRows r{{kind, l}, {}, {}};
    for (const auto& [pos, row] : m) {
      r.positions.push_back(pos);
      r.data.insert(r.data.end(), row.begin(), row.end());
    }
    v.rows.push_back(std::move(r));
  };
  for (int l = 0; l < c.n_layer; ++l) {
    add(RowKind::q, l, qs[l]);
    add(RowKind::k, l, ks[l]);
    add(RowKind::v, l, vs[l]);
  }
  // Tokens from the layer-0 rows: v (position-free) where held, else q.
  std::unique_ptr<Layer0Inverter> own;
  if (!inverter) own = std::make_unique<Layer0Inverter>(model);
  const Layer0Inverter& inv = inverter ? *inverter : *own;
  for (const auto& [pos, row] : vs[0])
    if (pos < v.n_prompt) v.tokens[pos] = inv.token({RowKind::v, 0}, pos, row.data());
  for (const auto& [pos, row] : qs[0])
    if (pos < v.n_prompt && v.tokens[pos] < 0) v.tokens[pos] = inv.token({RowKind::q, 0}, pos, row.data());
  return v;
}

const char* verify_name(Verify v) { return v == Verify::partials ? "partials" : "rows"; }

Verify parse_verify(const std::string& name) {
  if (name == "rows") return Verify::rows;
  if (name == "partials") return Verify::partials;
  throw std::invalid_argument("verification '" + name + "': expected rows or partials");
}

ViewAttackResult attack_view(const Model& model, const PartyView& view, const ViewAttackOptions& o,
                             const Progress& progress, const Layer0Inverter* table) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool partials = o.verify == Verify::partials;
  if (partials && view.role.kind != RankRole::comp)
    throw std::invalid_argument("--verify partials: only CompNodes receive partials (" + view.role.name() + " does not)");
  std::unique_ptr<Layer0Inverter> own_table;
  if (partials && !table) table = (own_table = std::make_unique<Layer0Inverter>(model)).get();
  ViewAttackResult res;
  res.recovered.assign(view.n_prompt, -1);
  res.confident.assign(view.n_prompt, 0);
  Continuations cx(model);
  int settled = 0;  // positions 0..settled−1 are in cx's prefix
  const int observed = view.observed();
  int done = 0;
  // The model's greedy next token after cx's prefix.
  auto greedy = [&] {
    const std::vector<float>& lp = cx.next_logits();
    return lp.empty() ? o.gap.start_token : (int32_t)(std::max_element(lp.begin(), lp.end()) - lp.begin());
  };
  // The greedy guess for [settled, end), unverified (a hole or segment too long to search).
  auto skip = [&](int end) {
    for (int i = settled; i < end; ++i) {
      res.recovered[i] = greedy();
      cx.append({res.recovered[i]});
    }
    ++res.skipped_holes;
    settled = end;
  };
  // A searched hole (or segment) at `settled`: its guess goes into the result and the prefix.
  auto settle = [&](HoleResult h) {
    for (int i = 0; i < h.len; ++i) {
      res.recovered[settled + i] = h.guess[i];
      res.confident[settled + i] = h.matched;
    }
    res.verified += h.verified;
    cx.append(h.guess);
    settled += h.len;
    res.holes.push_back(std::move(h));
  };
  auto search = [&](int len, const FillVerifier& verify, const GapOptions& gap) {
    settle(fill_hole(cx, len, verify, gap));
  };
  // The span solver's fills of the segment at `settled`, verified in order. True when the
  // segment is settled: on a match, when they used the whole budget (their nearest is the
  // guess), or when the span solves only some of its shards (then unverified). Otherwise
  // `left.budget` is what they left to the LM enumeration.
  auto try_span = [&](int len, const FillVerifier& verify, const std::vector<int32_t>& known,
                      const std::vector<int>& queries, GapOptions& left) {
    const auto t1 = std::chrono::steady_clock::now();
    const SpanSolution sol = span_solve(model, *table, view.partials, view.shard, known, settled, len, queries, o.gap.budget);
    HoleResult h;
    h.start = settled, h.len = len, h.distance = std::numeric_limits<double>::infinity();
    const int n = (int)sol.fills.size();
    if (n > 0 && std::count(sol.fills[0].begin(), sol.fills[0].end(), -1) > 0) {
      // Some shard of the segment is beyond the span: the solved positions are taken as they
      // are and the rest get the model's greedy guess, unverified (the fill cannot be checked).
      if (std::count(sol.fills[0].begin(), sol.fills[0].end(), -1) == len) return false;
      for (int i = 0; i < len; ++i) {
        res.recovered[settled + i] = sol.fills[0][i] >= 0 ? sol.fills[0][i] : greedy();
        cx.append({res.recovered[settled + i]});
      }
      settled += len;
      return true;
    }
    if (n > 0) {
      std::vector<std::vector<int32_t>> entries;
      std::vector<int32_t> parent, last;
      for (int i = 0; i < n; ++i) {
        entries.emplace_back(sol.fills[i].begin(), sol.fills[i].end() - 1);
        parent.push_back(i);
        last.push_back(sol.fills[i].back());
      }
      FillBatch fb;
      fb.entries = &entries, fb.parent = parent.data(), fb.last = last.data(), fb.n = n, fb.len = len;
      std::vector<double> d(n);
      verify(cx, fb, d.data());
      for (int i = 0; i < n && !h.matched; ++i) {
        ++h.verified;
        if (d[i] < h.distance) h.distance = d[i], h.guess = sol.fills[i];
        if (d[i] < o.gap.eps) h.matched = true, h.match_rank = i;
      }
    }
    h.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    left.budget = o.gap.budget - h.verified;
    if (!h.matched && left.budget > 0) {
      res.verified += h.verified;
      return false;
    }
    res.span_solved += h.matched;
    settle(std::move(h));
    return true;
  };
  for (int p = 0; p < view.n_prompt; ++p) {
    const int32_t tok = view.tokens[p];
    if (tok < 0) continue;
    if (p > settled && partials) {
      // Segment by segment, each against the partials of the own run starting at p.
      std::vector<int> queries;
      for (int q = p; q < view.n_prompt && view.tokens[q] >= 0; ++q) queries.push_back(q);
      std::vector<int32_t> known = res.recovered;
      for (int q = 0; q < view.n_prompt; ++q)
        if (view.tokens[q] >= 0) known[q] = view.tokens[q];
      for (const auto& [first, end] : hole_segments(view.shard, settled, p)) {
        {
          for (int q = 0; q < first; ++q) known[q] = res.recovered[q];
          const int len = end - first;
          const FillVerifier verify = partial_verifier(model, *table, view.partials, view.shard, known, first, len, queries);
          GapOptions left = o.gap;
          if (o.span && try_span(len, verify, known, queries, left)) continue;
          if (o.max_hole > 0 && len > o.max_hole) skip(end);
          else search(len, verify, left);
        }
      }
    } else if (p > settled) {
      // The row of p that verifies fills: hidden@layer (CompNode), else k or q (AttnNode).
      RowSpec spec{RowKind::hidden, o.layer};
      const float* row = view.row(spec, p);
      for (RowKind kind : {RowKind::k, RowKind::q}) {
        if (row) break;
        spec = {kind, o.layer};
        row = view.row(spec, p);
      }
      if (!row) throw std::runtime_error("the view holds no row of position " + std::to_string(p) + " at layer " + std::to_string(o.layer));
      if (o.max_hole > 0 && p - settled > o.max_hole) skip(p);
      else search(p - settled, row_verifier(tok, spec, row), o.gap);
    }
    cx.append({tok});
    res.recovered[p] = tok;
    res.confident[p] = 1;
    settled = p + 1;
    if (progress) progress(++done, observed);
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

AttackScore score_attack(const std::vector<int32_t>& truth, const std::vector<int32_t>& recovered,
                         const std::vector<char>& confident, const std::vector<int32_t>& known) {
  if (truth.size() != recovered.size() || truth.size() != known.size() || truth.size() != confident.size())
    throw std::invalid_argument("score_attack: lengths differ");
  AttackScore s;
  s.n = (int)truth.size();
  std::vector<int32_t> claimed, all;
  for (int p = 0; p < s.n; ++p) {
    if (known[p] >= 0) {
      ++s.observed;
    } else {
      ++s.unseen;
      s.unseen_correct += recovered[p] == truth[p];
      s.unseen_confident += confident[p] != 0;
    }
    if (recovered[p] < 0) continue;
    if (confident[p]) claimed.push_back(recovered[p]);
    all.push_back(recovered[p]);
  }
  s.unseen_accuracy = s.unseen ? (double)s.unseen_correct / s.unseen : 0.0;
  s.rouge_confident = rouge_l_tokens(truth, claimed).f1;
  s.rouge_all = rouge_l_tokens(truth, all).f1;
  s.rouge_tokens = std::max(s.rouge_confident, s.rouge_all);
  const double x = s.n ? (double)s.observed / s.n : 0.0;
  s.floor = 2 * x / (1 + x);
  s.gain = s.rouge_tokens - s.floor;
  return s;
}

}  // namespace cascade
