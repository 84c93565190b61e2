// Rank 0: the client and planner. It alone holds the prompt and the sampling state; of the
// hidden states it sees only the final row of each step (--lm-head client: it applies the final
// norm and the output matrix itself), or the logits row (--lm-head comp).
#include <cstring>
#include <stdexcept>

#include "cascade/backend.h"
#include "cascade/layer.h"
#include "cascade/protocol.h"
#include "section.h"
#include "step.h"

namespace cascade {
namespace {

// The control part carries the decode position ({p} for DECODE, {} for STOP).
void send_control(Transport& t, const Schedule& s, Control c) {
  std::vector<int32_t> pos;
  if (c.command == kControlDecode) pos.push_back(c.position);
  std::vector<Transport::Handle> h;
  for (int r = 1; r < s.n_ranks(); ++r)
    h.push_back(t.isend({0, r, -1, {{CommKind::control, pos, sizeof(Control)}}}, &c));
  t.wait_all(h);
}

}  // namespace

void abort_run(Transport& t) {
  std::vector<Transport::Handle> h;
  // An empty schedule part: it travels as a message of no parts.
  for (int r = 1; r < t.size(); ++r)
    h.push_back(t.isend({0, r, -1, {{CommKind::schedule, {}, 0}}}, nullptr));
  t.wait_all(h);
}

void send_schedule(Transport& t, const Schedule& s) {
  check_world_size(s, t.size());
  // Point-to-point, so that it is counted like any other message.
  const std::vector<uint8_t> wire = serialize(s);
  std::vector<Transport::Handle> h;
  for (int r = 1; r < s.n_ranks(); ++r)
    h.push_back(t.isend({0, r, -1, {{CommKind::schedule, {}, wire.size()}}}, wire.data()));
  t.wait_all(h);
}

ClientResult run_client(Transport& t, const Schedule& s, const std::vector<int32_t>& prompt,
                        const ClientOptions& opt) {
  check_world_size(s, t.size());
  if ((int)prompt.size() != s.n_prompt)
    throw std::invalid_argument("prompt has " + std::to_string(prompt.size()) +
                                " tokens but the schedule was planned for " +
                                std::to_string(s.n_prompt));
  if (s.n_prompt + opt.n_generate - 1 > s.n_positions)
    throw std::invalid_argument("the schedule plans too few positions for the tokens to generate");
  ClientResult res;

  std::vector<Transport::Handle> h;
  // Each CompNode gets the ids of its own prompt positions, and nothing else.
  const Step pre = Step::prefill(s);
  std::vector<std::vector<int32_t>> ids(s.alpha);
  for (int k = 0; k < s.alpha; ++k) {
    const std::vector<int> own = pre.of_comp(s, k);
    for (int p : own) ids[k].push_back(prompt[p]);
    if (!own.empty())
      h.push_back(t.isend({0, s.comp_rank(k), -1, {{CommKind::tokens, own, 4 * own.size()}}},
                          ids[k].data()));
  }
  t.wait_all(h);
  if (opt.fault.is(Fault::Kind::kill, 0)) die_now();

  if (s.shape.encoder()) {  // one pass; every CompNode returns the last hidden rows it owns
    if (opt.n_generate != 1)
      throw std::invalid_argument("an encoder generates nothing: run it once (n_generate = 1)");
    const int d = s.shape.d_model;
    res.hidden.assign((size_t)s.n_prompt * d, 0.0f);
    std::vector<float> rows;
    for (int k = 0; k < s.alpha; ++k) {
      const std::vector<int> own = pre.of_comp(s, k);
      if (own.empty()) continue;
      rows.resize(own.size() * d);
      t.recv({s.comp_rank(k), 0, -1, {{CommKind::hidden, own, 4ull * rows.size()}}}, rows.data());
      for (size_t i = 0; i < own.size(); ++i)
        std::memcpy(&res.hidden[(size_t)own[i] * d], &rows[i * d], 4ull * d);
    }
    send_control(t, s, {kControlStop, 0});
    return res;
  }
  const bool lm_client = s.lm_head == LmHead::client;
  if (lm_client) {
    if (opt.model == nullptr)
      throw std::invalid_argument("--lm-head client: the client needs the model's final norm and output matrix");
    if (!(opt.model->cfg.shape() == s.shape))
      throw std::invalid_argument("the client's model does not have the schedule's shape");
  }
  std::unique_ptr<Backend> own_backend;
  if (!opt.backend) own_backend = make_cpu_backend();
  Backend* backend = opt.backend ? opt.backend : own_backend.get();
  ComputeTimer timer;
  Sampler sampler(opt.sampler);
  // The final row of each step: d floats (hidden) or n_vocab floats (logits).
  const CommKind row_kind = lm_client ? CommKind::hidden : CommKind::logits;
  std::vector<float> logits(s.shape.n_vocab);
  std::vector<float> hidden(lm_client ? s.shape.d_model : 0);
  std::vector<float>& row = lm_client ? hidden : logits;  // where the final row lands
  int last = s.n_prompt - 1;  // position whose final row comes next
  for (int i = 0; i < opt.n_generate; ++i) {
    if (i > 0) {  // decode step at position p = last + 1 with the previous token
      const int p = last + 1;
      if (t.trace()) t.trace()->set_step(i);
      send_control(t, s, {kControlDecode, p});
      const int32_t tok = res.tokens.back();
      t.send({0, s.comp_rank(s.comp[p]), -1, {{CommKind::tokens, {p}, 4}}}, &tok);
      last = p;
    }
    t.recv({s.comp_rank(s.comp[last]), 0, -1, {{row_kind, {last}, 4 * row.size()}}}, row.data());
    if (lm_client) {
      Section head(timer, t.trace(), SpanKind::lm_head, -1);
      final_logits(*backend, *opt.model, hidden.data(), 1, logits.data());  // (1, n_vocab)
      head.end(cost_lm_head(s.shape, 1));
    }
    if (opt.keep_logits) res.logits.push_back(logits);
    const int32_t tok = sampler.sample(logits.data(), (int)logits.size());
    res.tokens.push_back(tok);
    if (opt.on_token) opt.on_token(tok);
    if (tok == opt.stop_token) break;
  }
  res.compute_s = timer.seconds();
  send_control(t, s, {kControlStop, 0});
  return res;
}

bool receive_schedule(Transport& t, Schedule& s) {
  const Received r = t.recv_any(0, -1, CommKind::schedule);
  if (r.msg.parts.empty()) return false;  // the client's abort
  if (r.msg.parts.size() != 1 || r.msg.parts[0].kind != CommKind::schedule)
    throw std::runtime_error("malformed schedule message from the client");
  s = deserialize(r.payload);
  check_world_size(s, t.size());
  if (s.shape.empty()) throw std::runtime_error("the schedule carries no model shape");
  return true;
}

}  // namespace cascade
