// CompNode k: holds the weights and, per step, only the hidden rows of its own positions.
#include <cstring>
#include <stdexcept>

#include "cascade/backend.h"
#include "cascade/layer.h"
#include "cascade/protocol.h"
#include "step.h"

namespace cascade {
namespace {

class CompNode {
 public:
  CompNode(Transport& t, const Schedule& s, const Model& m, Backend& be, const FaultOptions& f)
      : t_(t), s_(s), m_(m), be_(be), fault_(f), k_(s.role_of_rank(t.rank()).k) {}

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

    timer_.start();
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
    embed_tokens(m_, ids.data(), n, h.data());
    timer_.stop();

    const size_t part_floats = (size_t)c.n_head * (c.d_head + 2);  // (m, e, u) of one row
    std::vector<std::vector<float>> up(beta * beta), down(beta * beta);
    for (int l = 0; l < c.n_layer; ++l) {
      stall_if_asked(fault_, t_.rank(), l);
      timer_.start();
      layer_prepass(be_, m_, l, h.data(), pos.data(), n, q.data(), kk.data(), vv.data(), ws_);
      timer_.stop();

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
      timer_.start();
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
        }
      }
      timer_.stop();
      for (int a = 0; a < beta; ++a) {
        for (int b = 0; b < beta; ++b) {
          const std::vector<int>& qa = in_shard[a];
          const std::vector<int>& kvb = in_shard[b];
          if (qa.empty() && kvb.empty()) continue;
          handles.push_back(t_.isend({t_.rank(), s_.attn_rank(a, b), l,
                                      {{CommKind::q, qa, 4ull * qa.size() * c.d_q()},
                                       {CommKind::kv, kvb, 8ull * kvb.size() * c.d_kv()}}},
                                     up[a * beta + b].data()));
        }
      }
      t_.wait_all(handles);

      // Scatter the partials to (b, row, head) and merge them.
      timer_.start();
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
      layer_postpass(be_, m_, l, h.data(), o.data(), n, ws_);
      timer_.stop();
    }

    // The owner of the step's last position sends its logits row to the client.
    if (s_.comp[step.last()] == k_) {
      timer_.start();
      std::vector<float> logits(c.n_vocab);
      final_logits(be_, m_, h.data() + (size_t)row_of[step.last()] * c.d_model, 1, logits.data());
      timer_.stop();
      t_.send({t_.rank(), 0, -1, {{CommKind::logits, {step.last()}, 4ull * c.n_vocab}}},
              logits.data());
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
  FaultOptions fault_;
  int k_;
  ComputeTimer timer_;
  LayerScratch ws_;
};

}  // namespace

PartyStats run_comp_node(Transport& t, const Schedule& s, const Model& m, Backend& be,
                         const FaultOptions& fault) {
  return CompNode(t, s, m, be, fault).run();
}

}  // namespace cascade
