// CompNode k: holds the weights and, per step, only the hidden rows of its own positions.
#include <cstring>
#include <stdexcept>

#include "cascade/backend.h"
#include "cascade/layer.h"
#include "cascade/protocol.h"
#include "section.h"
#include "step.h"

namespace cascade {
namespace {

class CompNode {
 public:
  CompNode(Transport& t, const Schedule& s, const Model& m, Backend& be, const Fault& f)
      : t_(t), s_(s), m_(m), be_(be), fault_(f), k_(s.role_of_rank(t.rank()).k) {
    // Every party must run the model the client planned for (a CompNode given another --model
    // would compute garbage that no byte count notices).
    if (!(m.cfg.shape() == s.shape))
      throw std::runtime_error("this CompNode's model (" + m.cfg.name + ") does not have the dims of the model the "
                               "client planned for; run every rank with the same --model");
  }

  PartyStats run() {
    serve_steps(t_, s_, [this](const Step& step) { run_step(step); });
    PartyStats st;
    st.compute_s = timer_.seconds();
    return st;
  }

 private:
  void run_step(const Step& step) {
    const ModelConfig& c = m_.cfg;
    const int beta = s_.beta;
    const std::vector<int> own = step.of_comp(s_, k_);
    if (own.empty()) return;  // nothing of ours in this step: no messages either
    const int n = (int)own.size();

    std::vector<int32_t> ids(n);
    t_.recv({0, t_.rank(), -1, {{CommKind::tokens, own, 4ull * n}}}, ids.data());

    TraceRecorder* trace = t_.trace();
    Section embed(timer_, trace, SpanKind::embed, -1);
    std::vector<int32_t> pos(own.begin(), own.end());
    std::vector<int> row_of(s_.n_positions, -1);  // position → row among own
    for (int i = 0; i < n; ++i) row_of[own[i]] = i;
    std::vector<std::vector<int>> in_shard(beta);  // own positions per attention shard
    for (int a = 0; a < beta; ++a) in_shard[a] = step.of_comp_shard(s_, k_, a);

    std::vector<float> h((size_t)n * c.d_model);                  // (n, d)
    std::vector<float> q((size_t)n * c.d_q());                     // (n, n_h, d_h)
    std::vector<float> kk((size_t)n * c.d_kv()), vv(kk.size());    // (n, n_kv, d_h)
    std::vector<float> o(q.size());                                // (n, n_h, d_h)
    // Partials scattered for the merge: m, e (β, n, n_h), u (β, n, n_h, d_h).
    const size_t nh = (size_t)n * c.n_head;
    std::vector<float> M(beta * nh), E(beta * nh), U(beta * nh * c.d_head);
    embed_tokens(m_, ids.data(), n, h.data(), pos.data(), &be_);
    embed.end(cost_copy(4ull * n * c.d_model));

    const size_t part_floats = (size_t)c.n_head * (c.d_head + 2);  // (m, e, u) of one row
    std::vector<std::vector<float>> up(beta * beta), down(beta * beta);
    for (int l = 0; l < c.n_layer; ++l) {
      if (fault_.is(Fault::Kind::stall, t_.rank(), l)) hang_forever();
      {
        Section prepass(timer_, trace, SpanKind::prepass, l);
        layer_prepass(be_, m_, l, h.data(), pos.data(), n, q.data(), kk.data(), vv.data(), ws_);
        prepass.end(cost_prepass(s_.shape, c.d_ff, n));
      }

      std::vector<Transport::Handle> handles;
      // Post the receives of partials first: AttnNode (a, b) answers for our rows in shard a.
      for (int a = 0; a < beta; ++a) {
        if (in_shard[a].empty()) continue;
        for (int b = 0; b < beta; ++b) {
          std::vector<float>& buf = down[a * beta + b];
          buf.resize(in_shard[a].size() * part_floats);
          handles.push_back(t_.irecv({s_.attn_rank(a, b), t_.rank(), l,
                                      {{CommKind::partial, in_shard[a], 4 * buf.size()}}},
                                     buf.data()));
        }
      }
      // Then one up message per AttnNode (a, b): q rows in shard a, then k and v rows in shard b.
      Section pack(timer_, trace, SpanKind::pack, l);
      uint64_t packed = 0;
      for (int a = 0; a < beta; ++a) {
        for (int b = 0; b < beta; ++b) {
          const std::vector<int>& qa = in_shard[a];
          const std::vector<int>& kvb = in_shard[b];
          std::vector<float>& buf = up[a * beta + b];
          buf.resize(qa.size() * c.d_q() + 2 * kvb.size() * c.d_kv());
          float* w = buf.data();
          for (int p : qa) w = copy_row(w, q.data(), row_of[p], c.d_q());
          for (int p : kvb) w = copy_row(w, kk.data(), row_of[p], c.d_kv());
          for (int p : kvb) w = copy_row(w, vv.data(), row_of[p], c.d_kv());
          packed += 4 * buf.size();
        }
      }
      pack.end(cost_copy(packed));
      std::vector<Outgoing> out;
      for (int a = 0; a < beta; ++a) {
        for (int b = 0; b < beta; ++b) {
          const std::vector<int>& qa = in_shard[a];
          const std::vector<int>& kvb = in_shard[b];
          if (qa.empty() && kvb.empty()) continue;
          out.push_back({{t_.rank(), s_.attn_rank(a, b), l,
                          {{CommKind::q, {qa.begin(), qa.end()}, 4ull * qa.size() * c.d_q()},
                           {CommKind::kv, {kvb.begin(), kvb.end()}, 8ull * kvb.size() * c.d_kv()}}},
                         up[a * beta + b].data()});
        }
      }
      inject_faults(l, out, h.data(), row_of);
      for (const Outgoing& o : out) handles.push_back(t_.isend(o.msg, o.payload));
      t_.wait_all(handles);

      // Scatter the partials to (b, row, head) and merge them.
      Section merge(timer_, trace, SpanKind::merge, l);
      for (int a = 0; a < beta; ++a) {
        const std::vector<int>& rows = in_shard[a];
        const size_t nr = rows.size();
        for (int b = 0; b < beta && nr; ++b) {
          const float* pm = down[a * beta + b].data();      // (nr, n_h)
          const float* pe = pm + nr * c.n_head;             // (nr, n_h)
          const float* pu = pe + nr * c.n_head;             // (nr, n_h, d_h)
          for (size_t i = 0; i < nr; ++i) {
            const size_t r = row_of[rows[i]];
            std::memcpy(&M[b * nh + r * c.n_head], pm + i * c.n_head, 4 * c.n_head);
            std::memcpy(&E[b * nh + r * c.n_head], pe + i * c.n_head, 4 * c.n_head);
            std::memcpy(&U[(b * nh + r * c.n_head) * c.d_head], pu + i * c.n_head * c.d_head,
                        4 * c.n_head * c.d_head);
          }
        }
      }
      be_.merge_partials(M.data(), E.data(), U.data(), beta, n, c.n_head, c.d_head, o.data());
      merge.end(cost_merge(s_.shape, n, beta));
      Section postpass(timer_, trace, SpanKind::postpass, l);
      layer_postpass(be_, m_, l, h.data(), o.data(), n, ws_);
      postpass.end(cost_postpass(s_.shape, c.d_ff, n));
    }

    if (c.encoder()) {  // an encoder's output: the last hidden rows of every own position
      t_.send({t_.rank(), 0, -1, {{CommKind::hidden, own, 4ull * n * c.d_model}}}, h.data());
      return;
    }
    // The owner of the step's last position sends the final row to the client: its hidden
    // row (--lm-head client: the client applies the LM head, so we never learn the next
    // token), or the logits (--lm-head comp).
    if (s_.comp[step.last()] == k_) {
      const float* last = h.data() + (size_t)row_of[step.last()] * c.d_model;  // (d)
      if (s_.lm_head == LmHead::client) {
        t_.send({t_.rank(), 0, -1, {{CommKind::hidden, {step.last()}, 4ull * c.d_model}}}, last);
      } else {
        std::vector<float> logits(c.n_vocab);
        Section head(timer_, trace, SpanKind::lm_head, -1);
        final_logits(be_, m_, last, 1, logits.data());
        head.end(cost_lm_head(s_.shape, 1));
        t_.send({t_.rank(), 0, -1, {{CommKind::logits, {step.last()}, 4ull * c.n_vocab}}},
                logits.data());
      }
    }
  }

  struct Outgoing {
    Message msg;
    const void* payload;
  };

  // Test-only faults (fault.h) on this layer's up messages.
  void inject_faults(int layer, std::vector<Outgoing>& out, const float* h, const std::vector<int>& row_of) {
    if (out.empty()) return;
    if (fault_.is(Fault::Kind::misroute, t_.rank(), layer)) {
      // Swap the destinations of the messages to (a, b) and (a, b + 1 mod β).
      const int beta = s_.beta;
      for (size_t i = 0; i < out.size(); ++i) {
        const RankRole r = s_.role_of_rank(out[i].msg.dst);
        const int other = s_.attn_rank(r.a, (r.b + 1) % beta);
        for (size_t j = 0; j < out.size(); ++j)
          if (j != i && out[j].msg.dst == other) {
            std::swap(out[i].msg.dst, out[j].msg.dst);
            return;
          }
      }
    }
    if (fault_.is(Fault::Kind::leak, t_.rank(), layer)) {
      // Append the hidden rows of the first message's positions to it.
      Outgoing& o = out.front();
      const MessagePart& first = o.msg.parts[o.msg.parts[0].positions.empty() ? 1 : 0];
      const int d = m_.cfg.d_model;
      const float* base = static_cast<const float*>(o.payload);
      leak_.assign(base, base + o.msg.payload_bytes() / 4);
      for (int p : first.positions) leak_.insert(leak_.end(), h + (size_t)row_of[p] * d, h + (size_t)(row_of[p] + 1) * d);
      o.msg.parts.push_back({CommKind::hidden, first.positions, 4ull * d * first.positions.size()});
      o.payload = leak_.data();
    }
  }

  static float* copy_row(float* dst, const float* src, int row, int width) {
    std::memcpy(dst, src + (size_t)row * width, sizeof(float) * width);
    return dst + width;
  }

  Transport& t_;
  const Schedule& s_;
  const Model& m_;
  Backend& be_;
  Fault fault_;
  std::vector<float> leak_;  // payload of a leaking message (fault injection)
  int k_;
  ComputeTimer timer_;
  LayerScratch ws_;
};

}  // namespace

PartyStats run_comp_node(Transport& t, const Schedule& s, const Model& m, Backend& be,
                         const Fault& fault) {
  return CompNode(t, s, m, be, fault).run();
}

}  // namespace cascade
