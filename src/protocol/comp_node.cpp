// CompNode k: holds the weights and, per step, only the hidden rows of its own positions. Every
// tensor lives in the backend's memory (the model: device_model.h); only message payloads are
// staged through the host when the transport needs it (payload.h).
#include <stdexcept>

#include "cascade/backend.h"
#include "cascade/layer.h"
#include "cascade/protocol.h"
#include "payload.h"
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
    // Own rows grouped by attention shard: grouped = rows of shard 0, then of shard 1, …, shard
    // a from off[a]; place[r] = where own row r is in that order. The q/k/v rows of a message
    // are gathered through `grouped`, and the merged rows, computed in grouped order (each
    // (a, b) answer lands contiguously), go back to own order through `place`.
    std::vector<int32_t> grouped, place(n), off(beta + 1);
    for (int a = 0; a < beta; ++a) {
      off[a] = (int32_t)grouped.size();
      for (int p : in_shard[a]) grouped.push_back(row_of[p]);
    }
    off[beta] = (int32_t)grouped.size();
    if (off[beta] != n) throw std::logic_error("a CompNode's positions are not split among the attention shards");
    for (int i = 0; i < n; ++i) place[grouped[i]] = i;
    pos_.upload(be_, pos);
    grouped_.upload(be_, grouped);
    place_.upload(be_, place);

    h_.resize(be_, (size_t)n * c.d_model);                          // (n, d)
    q_.resize(be_, (size_t)n * c.d_q());                            // (n, n_h, d_h)
    kk_.resize(be_, (size_t)n * c.d_kv());                           // (n, n_kv, d_h)
    v_.resize(be_, (size_t)n * c.d_kv());                           // (n, n_kv, d_h)
    o_.resize(be_, (size_t)n * c.d_q());                            // (n, n_h, d_h)
    o_grouped_.resize(be_, (size_t)n * c.d_q());                    // (n, n_h, d_h), grouped order
    // The partials for the merge, rows in grouped order: m, e (β, n, n_h), u (β, n, n_h, d_h).
    const size_t nh = (size_t)n * c.n_head;
    M_.resize(be_, beta * nh);
    E_.resize(be_, beta * nh);
    U_.resize(be_, beta * nh * c.d_head);
    embed_tokens(m_, ids.data(), n, h_.data(), pos.data(), &be_);
    embed.end(cost_copy(4ull * n * c.d_model));

    // Rows [off[a], off[a + 1]) of the grouped order of src (·, width) to dst; returns dst's end.
    auto gather = [&](const DeviceBuffer<float>& src, int a, int width, float* dst) {
      const int rows = off[a + 1] - off[a];
      if (rows) be_.gather_rows(src.data(), grouped_.data() + off[a], rows, width, dst);
      return dst + (size_t)rows * width;
    };
    const size_t part_floats = (size_t)c.n_head * (c.d_head + 2);  // (m, e, u) of one row
    up_.resize(beta * beta);
    down_.resize(beta * beta);
    for (int l = 0; l < c.n_layer; ++l) {
      if (fault_.is(Fault::Kind::stall, t_.rank(), l)) hang_forever();
      if (fault_.is(Fault::Kind::kill, t_.rank(), l)) die_now();
      {
        Section prepass(timer_, trace, SpanKind::prepass, l);
        layer_prepass(be_, m_, l, h_.data(), pos_.data(), n, q_.data(), kk_.data(), v_.data(), ws_);
        prepass.end(cost_prepass(s_.shape, c.d_ff, n));
      }

      std::vector<Transport::Handle> handles;
      // Post the receives of partials first: AttnNode (a, b) answers for our rows in shard a.
      for (int a = 0; a < beta; ++a) {
        if (in_shard[a].empty()) continue;
        for (int b = 0; b < beta; ++b) {
          Payload& buf = down_[a * beta + b];
          buf.resize(be_, t_, s_.attn_rank(a, b), in_shard[a].size() * part_floats);
          handles.push_back(t_.irecv({s_.attn_rank(a, b), t_.rank(), l,
                                      {{CommKind::partial, in_shard[a], buf.bytes()}}},
                                     buf.for_recv()));
        }
      }
      // Then one up message per AttnNode (a, b): q rows in shard a, then k and v rows in shard b.
      Section pack(timer_, trace, SpanKind::pack, l);
      uint64_t packed = 0;
      std::vector<Outgoing> out;
      for (int a = 0; a < beta; ++a) {
        for (int b = 0; b < beta; ++b) {
          const std::vector<int>& qa = in_shard[a];
          const std::vector<int>& kvb = in_shard[b];
          if (qa.empty() && kvb.empty()) continue;
          Payload& buf = up_[a * beta + b];
          buf.resize(be_, t_, s_.attn_rank(a, b), qa.size() * c.d_q() + 2 * kvb.size() * c.d_kv());
          gather(v_, b, c.d_kv(), gather(kk_, b, c.d_kv(), gather(q_, a, c.d_q(), buf.data())));
          packed += buf.bytes();
          out.push_back({{t_.rank(), s_.attn_rank(a, b), l,
                          {{CommKind::q, {qa.begin(), qa.end()}, 4ull * qa.size() * c.d_q()},
                           {CommKind::kv, {kvb.begin(), kvb.end()}, 8ull * kvb.size() * c.d_kv()}}},
                         buf.for_send()});
        }
      }
      pack.end(cost_copy(packed));
      inject_faults(l, out, row_of);
      for (const Outgoing& o : out) handles.push_back(t_.isend(o.msg, o.payload));
      t_.wait_all(handles);

      // The partials side by side (grouped order) and merged; then back to own order.
      Section merge(timer_, trace, SpanKind::merge, l);
      for (int a = 0; a < beta; ++a) {
        const size_t nr = in_shard[a].size();
        for (int b = 0; b < beta && nr; ++b) {
          Payload& got = down_[a * beta + b];
          got.received();
          const float* pm = got.data();           // (nr, n_h)
          const float* pe = pm + nr * c.n_head;   // (nr, n_h)
          const float* pu = pe + nr * c.n_head;   // (nr, n_h, d_h)
          const size_t at = b * nh + (size_t)off[a] * c.n_head;
          be_.copy(M_.data() + at, pm, 4 * nr * c.n_head);
          be_.copy(E_.data() + at, pe, 4 * nr * c.n_head);
          be_.copy(U_.data() + at * c.d_head, pu, 4 * nr * c.n_head * c.d_head);
        }
      }
      be_.merge_partials(M_.data(), E_.data(), U_.data(), beta, n, c.n_head, c.d_head, o_grouped_.data());
      be_.gather_rows(o_grouped_.data(), place_.data(), n, c.d_q(), o_.data());
      merge.end(cost_merge(s_.shape, n, beta));
      Section postpass(timer_, trace, SpanKind::postpass, l);
      layer_postpass(be_, m_, l, h_.data(), o_.data(), n, ws_);
      postpass.end(cost_postpass(s_.shape, c.d_ff, n));
    }

    if (c.encoder()) {  // an encoder's output: the last hidden rows of every own position
      Payload& hid = final_;
      hid.resize(be_, t_, 0, (size_t)n * c.d_model);
      be_.copy(hid.data(), h_.data(), hid.bytes());
      t_.send({t_.rank(), 0, -1, {{CommKind::hidden, own, hid.bytes()}}}, hid.for_send());
      return;
    }
    // The owner of the step's last position sends the final row to the client: its hidden
    // row (--lm-head client: the client applies the LM head, so we never learn the next
    // token), or the logits (--lm-head comp).
    if (s_.comp[step.last()] == k_) {
      const float* last = h_.data() + (size_t)row_of[step.last()] * c.d_model;  // (d)
      Payload& row = final_;
      if (s_.lm_head == LmHead::client) {
        row.resize(be_, t_, 0, c.d_model);
        be_.copy(row.data(), last, row.bytes());
        t_.send({t_.rank(), 0, -1, {{CommKind::hidden, {step.last()}, row.bytes()}}}, row.for_send());
      } else {
        row.resize(be_, t_, 0, c.n_vocab);
        Section head(timer_, trace, SpanKind::lm_head, -1);
        final_logits(be_, m_, last, 1, row.data());
        head.end(cost_lm_head(s_.shape, 1));
        t_.send({t_.rank(), 0, -1, {{CommKind::logits, {step.last()}, row.bytes()}}}, row.for_send());
      }
    }
  }

  struct Outgoing {
    Message msg;
    const void* payload;
  };

  // Test-only faults (fault.h) on this layer's up messages.
  void inject_faults(int layer, std::vector<Outgoing>& out, const std::vector<int>& row_of) {
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
      // Append the hidden rows of the first message's positions to it (on the host: the
      // payload is the CPU backend's buffer or the staged copy).
      Outgoing& o = out.front();
      if (!be_.host_memory() && t_.device_payloads(o.msg.dst))
        throw std::logic_error("the leak fault needs host payloads (a transport that stages them)");
      const std::vector<float> h = h_.download();
      const MessagePart& first = o.msg.parts[o.msg.parts[0].positions.empty() ? 1 : 0];
      const int d = m_.cfg.d_model;
      const float* base = static_cast<const float*>(o.payload);
      leak_.assign(base, base + o.msg.payload_bytes() / 4);
      for (int p : first.positions)
        leak_.insert(leak_.end(), h.begin() + (size_t)row_of[p] * d, h.begin() + (size_t)(row_of[p] + 1) * d);
      o.msg.parts.push_back({CommKind::hidden, first.positions, 4ull * d * first.positions.size()});
      o.payload = leak_.data();
    }
  }

  Transport& t_;
  const Schedule& s_;
  const Model& m_;
  Backend& be_;
  Fault fault_;
  std::vector<float> leak_;  // payload of a leaking message (fault injection)
  int k_;
  ComputeTimer timer_;
  // A step's buffers, in the backend's memory (device-resident on a GPU), reused across steps.
  DeviceBuffer<int32_t> pos_, grouped_, place_;
  DeviceBuffer<float> h_, q_, kk_, v_, o_, o_grouped_, M_, E_, U_;
  std::vector<Payload> up_, down_;  // per AttnNode (a, b), index a·β + b
  Payload final_;                   // the row (or rows) for the client
  LayerScratch ws_;
};

}  // namespace

PartyStats run_comp_node(Transport& t, const Schedule& s, const Model& m, Backend& be,
                         const Fault& fault) {
  return CompNode(t, s, m, be, fault).run();
}

}  // namespace cascade
