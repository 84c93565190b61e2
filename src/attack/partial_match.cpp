#include "cascade/partial_match.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>

#include "cascade/attack_view.h"
#include "cascade/backend.h"
#include "kernels/rope.h"

namespace cascade {

int ViewPartials::index(int pos) const {
  auto it = std::lower_bound(positions.begin(), positions.end(), pos);
  return it != positions.end() && *it == pos ? (int)(it - positions.begin()) : -1;
}

FillVerifier partial_verifier(const Model& model, const Layer0Inverter& table, const ViewPartials& vp,
                              const std::vector<int32_t>& att, const std::vector<int32_t>& known, int first,
                              int len, const std::vector<int>& queries) {
  const ModelConfig& c = model.cfg;
  if (queries.empty()) throw std::invalid_argument("partial_verifier: no query to verify with");
  const int q_end = *std::max_element(queries.begin(), queries.end());
  std::set<int32_t> shard_set;
  for (int p = first; p < first + len; ++p) shard_set.insert(att.at(p));

  // Per shard of the segment: its key positions up to the last query, their K (RoPE) and V
  // rows from the known tokens, and where the segment's keys sit among them.
  struct Shard {
    int b;
    std::vector<int32_t> pos;
    std::vector<float> K, V;       // (keys, d_kv)
    std::vector<int> slot;         // key index of segment position first + i, −1 if not this shard
    std::vector<float> L, O;       // received, scale-free: (queries, n_head), (queries, n_head, d_head)
  };
  auto shards = std::make_shared<std::vector<Shard>>();
  for (int32_t b : shard_set) {
    Shard sh;
    sh.b = b;
    sh.slot.assign(len, -1);
    for (int j = 0; j <= q_end; ++j) {
      if (att.at(j) != b) continue;
      const bool in_seg = j >= first && j < first + len;
      if (in_seg) sh.slot[j - first] = (int)sh.pos.size();
      const int32_t tok = in_seg ? 0 : known.at(j);
      if (tok < 0)
        throw std::invalid_argument("partial_verifier: the token of key position " + std::to_string(j) + " is unknown");
      sh.pos.push_back(j);
      const float* k0 = table.row_at_0(RowKind::k, tok);
      const float* v0 = table.row_at_0(RowKind::v, tok);
      sh.K.insert(sh.K.end(), k0, k0 + c.d_kv());
      sh.V.insert(sh.V.end(), v0, v0 + c.d_kv());
      kernels::rope_row(sh.K.data() + sh.K.size() - c.d_kv(), c.n_head_kv, c.d_head, j, c.rope_theta);
    }
    for (int p : queries) {
      const int r = vp.index(p);
      if (r < 0) throw std::invalid_argument("partial_verifier: no partial of position " + std::to_string(p));
      for (int h = 0; h < c.n_head; ++h) {
        const size_t at = ((size_t)b * vp.positions.size() + r) * c.n_head + h;
        const float e = vp.e[at];
        sh.L.push_back(vp.m[at] + std::log(e));
        for (int t = 0; t < c.d_head; ++t) sh.O.push_back(vp.u[at * c.d_head + t] / e);
      }
    }
    shards->push_back(std::move(sh));
  }
  // The queries' layer-0 q rows (their tokens are the CompNode's own).
  auto Q = std::make_shared<std::vector<float>>();
  auto qpos = std::make_shared<std::vector<int32_t>>(queries.begin(), queries.end());
  for (int p : queries) {
    const float* q0 = table.row_at_0(RowKind::q, known.at(p));
    Q->insert(Q->end(), q0, q0 + c.d_q());
    kernels::rope_row(Q->data() + Q->size() - c.d_q(), c.n_head, c.d_head, p, c.rope_theta);
  }
  auto be = std::shared_ptr<Backend>(make_cpu_backend());
  return [&model, &table, shards, Q, qpos, be, first, len](Continuations&, const FillBatch& fb, double* d) {
    const ModelConfig& c = model.cfg;
    const int nq = (int)qpos->size();
    std::vector<float> m((size_t)nq * c.n_head), e(m.size()), u(m.size() * c.d_head);
    for (int i = 0; i < fb.n; ++i) {
      const std::vector<int32_t>& head = (*fb.entries)[fb.parent[i]];
      double num = 0.0, den = 0.0;
      for (Shard& sh : *shards) {
        for (int s = 0; s < len; ++s) {  // the fill's keys and values
          if (sh.slot[s] < 0) continue;
          const int32_t tok = s + 1 < len ? head[s] : fb.last[i];
          float* k = sh.K.data() + (size_t)sh.slot[s] * c.d_kv();
          std::memcpy(k, table.row_at_0(RowKind::k, tok), 4 * c.d_kv());
          kernels::rope_row(k, c.n_head_kv, c.d_head, first + s, c.rope_theta);
          std::memcpy(sh.V.data() + (size_t)sh.slot[s] * c.d_kv(), table.row_at_0(RowKind::v, tok), 4 * c.d_kv());
        }
        PartialAttnArgs a;
        a.q = Q->data();
        a.q_pos = qpos->data();
        a.nq = nq;
        a.k = sh.K.data();
        a.v = sh.V.data();
        a.k_pos = sh.pos.data();
        a.nk = (int)sh.pos.size();
        a.n_head = c.n_head;
        a.n_head_kv = c.n_head_kv;
        a.d_head = c.d_head;
        a.m = m.data();
        a.e = e.data();
        a.u = u.data();
        be->partial_attention(a);
        for (size_t r = 0; r < m.size(); ++r) {
          num += std::fabs((double)m[r] + std::log((double)e[r]) - sh.L[r]);
          den += std::fabs(sh.L[r]);
          for (int t = 0; t < c.d_head; ++t) {
            num += std::fabs((double)u[r * c.d_head + t] / e[r] - sh.O[r * c.d_head + t]);
            den += std::fabs(sh.O[r * c.d_head + t]);
          }
        }
      }
      d[i] = den > 0 ? num / den : num;
    }
  };
}

}  // namespace cascade
