// AttnNode (a, b): no weights. Per layer it gets q rows of attention shard a and k/v rows of
// shard b, keeps the k/v rows as its KV cache, and answers each CompNode with the partials
// (m, e, u) of that CompNode's query rows. The cache and every tensor stay in the backend's
// memory; only message payloads are staged through the host when the transport needs it.
#include <algorithm>
#include <stdexcept>

#include "cascade/backend.h"
#include "cascade/device_buffer.h"
#include "cascade/protocol.h"
#include "payload.h"
#include "section.h"
#include "step.h"

namespace cascade {
namespace {

class AttnNode {
 public:
  AttnNode(Transport& t, const Schedule& s, Backend& be, const Fault& f)
      : t_(t), s_(s), c_(s.shape), be_(be), fault_(f) {
    const RankRole role = s.role_of_rank(t.rank());
    a_ = role.a;
    b_ = role.b;
    k_cache_.resize(c_.n_layer);
    v_cache_.resize(c_.n_layer);
  }

  PartyStats run() {
    serve_steps(t_, s_, [this](const Step& step) { run_step(step); });
    PartyStats st;
    st.compute_s = timer_.seconds();
    return st;
  }

 private:
  void run_step(const Step& step) {
    const int alpha = s_.alpha;
    // Per CompNode: its query rows (shard a) and key/value rows (shard b) in this step.
    std::vector<std::vector<int>> qk(alpha), kvk(alpha);
    int nq = 0, nkv = 0;
    for (int k = 0; k < alpha; ++k) {
      qk[k] = step.of_comp_shard(s_, k, a_);
      kvk[k] = step.of_comp_shard(s_, k, b_);
      nq += (int)qk[k].size();
      nkv += (int)kvk[k].size();
    }
    if (nq == 0 && nkv == 0) return;  // this step does not concern us

    const int dq = c_.d_q(), dkv = c_.d_kv();
    const size_t part_floats = (size_t)c_.n_head * (c_.d_head + 2);
    std::vector<int32_t> q_pos;  // query rows, grouped by CompNode
    for (int k = 0; k < alpha; ++k) q_pos.insert(q_pos.end(), qk[k].begin(), qk[k].end());
    for (int k = 0; k < alpha; ++k) k_pos_.insert(k_pos_.end(), kvk[k].begin(), kvk[k].end());

    // (query, key) pairs the attention scores, for the trace's FLOP counts.
    uint64_t pairs = 0;
    TraceRecorder* trace = t_.trace();
    if (trace && !c_.causal()) pairs = (uint64_t)q_pos.size() * k_pos_.size();
    if (trace && c_.causal()) {
      std::vector<int32_t> keys(k_pos_);
      std::sort(keys.begin(), keys.end());
      for (int32_t p : q_pos) pairs += std::upper_bound(keys.begin(), keys.end(), p) - keys.begin();
    }

    q_pos_.upload(be_, q_pos);
    k_pos_dev_.upload(be_, k_pos_);
    up_.resize(alpha);
    down_.resize(alpha);
    q_.resize(be_, (size_t)nq * dq);                 // (nq, n_h, d_h)
    m_.resize(be_, (size_t)nq * c_.n_head);          // (nq, n_h)
    e_.resize(be_, (size_t)nq * c_.n_head);          // (nq, n_h)
    u_.resize(be_, (size_t)nq * dq);                 // (nq, n_h, d_h)
    for (int l = 0; l < c_.n_layer; ++l) {
      if (fault_.is(Fault::Kind::stall, t_.rank(), l)) hang_forever();
      if (fault_.is(Fault::Kind::kill, t_.rank(), l)) die_now();
      std::vector<Transport::Handle> handles;
      for (int k = 0; k < alpha; ++k) {
        if (qk[k].empty() && kvk[k].empty()) continue;
        up_[k].resize(be_, t_, s_.comp_rank(k), qk[k].size() * dq + 2 * kvk[k].size() * dkv);
        handles.push_back(t_.irecv({s_.comp_rank(k), t_.rank(), l,
                                    {{CommKind::q, qk[k], 4ull * qk[k].size() * dq},
                                     {CommKind::kv, kvk[k], 8ull * kvk[k].size() * dkv}}},
                                   up_[k].for_recv()));
      }
      t_.wait_all(handles);

      Section unpack(timer_, trace, SpanKind::pack, l);
      // Unpack: queries side by side; keys and values appended to this layer's cache.
      DeviceBuffer<float>& kc = k_cache_[l];
      DeviceBuffer<float>& vc = v_cache_[l];
      size_t cached = kc.size();
      kc.resize_keep(be_, cached + (size_t)nkv * dkv);
      vc.resize_keep(be_, cached + (size_t)nkv * dkv);
      float* qw = q_.data();
      for (int k = 0; k < alpha; ++k) {
        if (qk[k].empty() && kvk[k].empty()) continue;
        up_[k].received();
        const float* r = up_[k].data();
        const size_t nqk = qk[k].size() * dq, nkvk = kvk[k].size() * dkv;
        if (nqk) be_.copy(qw, r, 4 * nqk);
        if (nkvk) {
          be_.copy(kc.data() + cached, r + nqk, 4 * nkvk);
          be_.copy(vc.data() + cached, r + nqk + nkvk, 4 * nkvk);
        }
        qw += nqk;
        cached += nkvk;
      }
      unpack.end(cost_copy(4ull * ((size_t)nq * dq + 2ull * nkv * dkv)));
      if (nq > 0) {
        Section attention(timer_, trace, SpanKind::attention, l);
        PartialAttnArgs pa;
        pa.q = q_.data(); pa.q_pos = q_pos_.data(); pa.nq = nq;
        pa.k = kc.data(); pa.v = vc.data(); pa.k_pos = k_pos_dev_.data(); pa.nk = (int)k_pos_.size();
        pa.n_head = c_.n_head; pa.n_head_kv = c_.n_head_kv; pa.d_head = c_.d_head; pa.causal = c_.causal();
        pa.m = m_.data(); pa.e = e_.data(); pa.u = u_.data();
        be_.partial_attention(pa);
        attention.end(cost_attention(c_, nq, k_pos_.size(), pairs));
      }
      // Answer each CompNode: m (rows, n_h), e (rows, n_h), u (rows, n_h, d_h).
      Section pack(timer_, trace, SpanKind::pack, l);
      size_t row0 = 0;
      for (int k = 0; k < alpha; ++k) {
        const size_t nr = qk[k].size();
        if (nr == 0) continue;
        Payload& buf = down_[k];
        buf.resize(be_, t_, s_.comp_rank(k), nr * part_floats);
        const size_t hn = nr * c_.n_head;
        be_.copy(buf.data(), m_.data() + row0 * c_.n_head, 4 * hn);
        be_.copy(buf.data() + hn, e_.data() + row0 * c_.n_head, 4 * hn);
        be_.copy(buf.data() + 2 * hn, u_.data() + row0 * dq, 4 * hn * c_.d_head);
        row0 += nr;
      }
      pack.end(cost_copy(4ull * nq * part_floats));
      for (int k = 0; k < alpha; ++k)
        if (!qk[k].empty())
          handles.push_back(t_.isend({t_.rank(), s_.comp_rank(k), l,
                                      {{CommKind::partial, qk[k], down_[k].bytes()}}},
                                     down_[k].for_send()));
      t_.wait_all(handles);
    }
  }

  Transport& t_;
  const Schedule& s_;
  const ModelShape& c_;  // the dims, from the schedule: an AttnNode never opens the model
  Backend& be_;
  Fault fault_;
  int a_ = 0, b_ = 0;
  ComputeTimer timer_;
  // In the backend's memory (device-resident on a GPU): the KV cache for the whole run, and a
  // step's queries, positions and partials.
  std::vector<int32_t> k_pos_;  // positions of the cached key/value rows (same every layer)
  DeviceBuffer<int32_t> k_pos_dev_, q_pos_;
  std::vector<DeviceBuffer<float>> k_cache_, v_cache_;  // per layer: (n_cached, n_kv, d_h)
  DeviceBuffer<float> q_, m_, e_, u_;
  std::vector<Payload> up_, down_;  // per CompNode k
};

}  // namespace

PartyStats run_attn_node(Transport& t, const Schedule& s, Backend& be, const Fault& fault) {
  return AttnNode(t, s, be, fault).run();
}

}  // namespace cascade
