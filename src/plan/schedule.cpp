// Schedule construction, validation and wire format. See include/cascade/schedule.h.
#include "cascade/schedule.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <random>
#include <sstream>

namespace cascade {

namespace {

std::string str(long long v) { return std::to_string(v); }

// Total ranks 1 + α + β² as a 64-bit number (to check it fits in an int).
long long ranks_needed(long long alpha, long long beta) { return 1 + alpha + beta * beta; }

// Uniform draw in 0..n-1 from the raw output of mt19937_64 (whose sequence is fixed by the
// standard, unlike std::uniform_int_distribution): reject the lowest 2^64 mod n values.
uint64_t draw_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  uint64_t x;
  do {
    x = rng();
  } while (x < threshold);
  return x % n;
}

}  // namespace

const char* attn_sharding_name(AttnSharding a) {
  return a == AttnSharding::offset ? "offset" : "cluster";
}
const char* lm_head_name(LmHead h) { return h == LmHead::comp ? "comp" : "client"; }

AttnSharding parse_attn_sharding(const std::string& name) {
  if (name == "cluster") return AttnSharding::cluster;
  if (name == "offset") return AttnSharding::offset;
  throw std::invalid_argument("unknown attention sharding '" + name + "' (expected cluster or offset)");
}

LmHead parse_lm_head(const std::string& name) {
  if (name == "client") return LmHead::client;
  if (name == "comp") return LmHead::comp;
  throw std::invalid_argument("unknown LM head placement '" + name + "' (expected client or comp)");
}

std::string RankRole::name() const {
  switch (kind) {
    case client: return "client";
    case comp: return "CompNode " + std::to_string(k);
    case attn: return "AttnNode (" + std::to_string(a) + "," + std::to_string(b) + ")";
  }
  return "?";
}

RankRole Schedule::role_of_rank(int rank) const {
  if (rank < 0 || rank >= n_ranks())
    throw std::out_of_range("rank " + str(rank) + " is outside 0.." + str(n_ranks() - 1));
  RankRole r;
  if (rank == 0) return r;
  if (rank <= alpha) {
    r.kind = RankRole::comp;
    r.k = rank - 1;
    return r;
  }
  const int i = rank - 1 - alpha;
  r.kind = RankRole::attn;
  r.a = i / beta;
  r.b = i % beta;
  return r;
}

std::vector<int> Schedule::positions(int first, int end, int k, int shard) const {
  if (first < 0 || end > n_positions || first > end)
    throw std::out_of_range("positions " + str(first) + ".." + str(end - 1) +
                            " are outside the schedule's 0.." + str(n_positions - 1));
  std::vector<int> out;
  for (int p = first; p < end; ++p)
    if ((k < 0 || comp[p] == k) && (shard < 0 || att[p] == shard)) out.push_back(p);
  return out;
}

namespace {

// "" when the shape is empty (planning only) or consistent, else what is wrong.
std::string shape_problem(const ModelShape& m) {
  if (m == ModelShape{}) return "";
  if (m.n_layer < 1 || m.d_model < 1 || m.n_head < 1 || m.n_head_kv < 1 || m.d_head < 1 ||
      m.n_vocab < 1)
    return "model shape has a dimension < 1";
  if (m.n_head % m.n_head_kv != 0) return "model shape: n_head is not a multiple of n_head_kv";
  if (1LL * m.n_head * m.d_head > INT_MAX / 8 || m.d_model > INT_MAX / 8 || m.n_vocab > INT_MAX / 8)
    return "model shape: dimensions too large";
  return "";
}

// The attention shard rule (see schedule.h) for position p with CompNode k.
int32_t shard_of(AttnSharding rule, bool is_cdelta, int p, int k, int beta, int c, int delta) {
  if (rule == AttnSharding::cluster) return k % beta;
  if (is_cdelta) return ((p % delta) % c) % beta;
  return p % beta;
}

}  // namespace

Schedule make_schedule(const ScheduleParams& params) {
  const std::string& st = params.strategy;
  const bool is_cdelta = st == kStrategyCDelta;
  if (!is_cdelta && st != kStrategyContiguous && st != kStrategyRoundRobin &&
      st != kStrategyRandom)
    throw std::invalid_argument("unknown strategy '" + st +
                                "' (expected cdelta, contiguous, round-robin or random)");
  if (params.attn_sharding != AttnSharding::cluster && params.attn_sharding != AttnSharding::offset)
    throw std::invalid_argument("unknown attention sharding");
  if (params.lm_head != LmHead::client && params.lm_head != LmHead::comp)
    throw std::invalid_argument("unknown LM head placement");
  if (params.alpha < 1)
    throw std::invalid_argument("alpha (CompNodes) must be >= 1, got " + str(params.alpha));
  if (params.beta < 1)
    throw std::invalid_argument("beta (attention shards) must be >= 1, got " +
                                str(params.beta));
  if (params.attn_sharding == AttnSharding::cluster && params.beta > params.alpha)
    throw std::invalid_argument("attention sharding 'cluster' (att(p) = comp(p) mod beta) needs "
                                "1 <= beta <= alpha, got beta = " + str(params.beta) +
                                " > alpha = " + str(params.alpha) +
                                " (or use --attn-sharding offset, which needs beta <= c)");
  if (ranks_needed(params.alpha, params.beta) > INT_MAX)
    throw std::invalid_argument("1 + alpha + beta^2 ranks does not fit in an int");
  if (params.n_positions < 1)
    throw std::invalid_argument("the number of positions must be >= 1, got " +
                                str(params.n_positions));
  const int n_prompt = params.n_prompt == 0 ? params.n_positions : params.n_prompt;
  if (n_prompt < 1 || n_prompt > params.n_positions)
    throw std::invalid_argument("the prompt length must be in 1.." + str(params.n_positions) +
                                " (the positions planned), got " + str(n_prompt));
  if (const std::string why = shape_problem(params.shape); !why.empty())
    throw std::invalid_argument(why);

  Schedule s;
  s.strategy = st;
  s.attn_sharding = params.attn_sharding;
  s.lm_head = params.lm_head;
  s.alpha = params.alpha;
  s.beta = params.beta;
  s.seed = params.seed;
  s.n_prompt = n_prompt;
  s.n_positions = params.n_positions;
  s.shape = params.shape;
  s.comp.resize(s.n_positions);
  s.att.resize(s.n_positions);
  const int n = s.n_positions;

  if (is_cdelta) {
    const long long c = params.c, alpha = params.alpha;
    if (c < 1) throw std::invalid_argument("cluster size c must be >= 1, got " + str(c));
    if (params.attn_sharding == AttnSharding::offset && params.beta > c)
      throw std::invalid_argument("attention sharding 'offset' needs 1 <= beta <= c, got beta = " +
                                  str(params.beta) + " > c = " + str(c));
    if (alpha * c > INT_MAX) throw std::invalid_argument("alpha * c does not fit in an int");
    const long long delta = params.delta == 0 ? alpha * c : params.delta;
    if (!((alpha - 1) * c < delta && delta <= alpha * c))
      throw std::invalid_argument("delta must satisfy (alpha-1)*c < delta <= alpha*c, i.e. " +
                                  str((alpha - 1) * c + 1) + " <= delta <= " + str(alpha * c) +
                                  " for alpha = " + str(alpha) + ", c = " + str(c) +
                                  "; got " + str(delta));
    s.c = static_cast<int>(c);
    s.delta = static_cast<int>(delta);
    for (int p = 0; p < n; ++p) s.comp[p] = (p % s.delta) / s.c;
  } else if (st == kStrategyContiguous) {
    const int block = static_cast<int>((static_cast<long long>(n) + s.alpha - 1) / s.alpha);
    s.c = block;
    s.delta = static_cast<int>(std::min<long long>(INT_MAX, 1LL * s.alpha * block));
    for (int p = 0; p < n; ++p) s.comp[p] = p / block;
  } else if (st == kStrategyRoundRobin) {
    s.c = 1;
    s.delta = s.alpha;
    for (int p = 0; p < n; ++p) s.comp[p] = p % s.alpha;
  } else {  // random
    s.c = 0;
    s.delta = 0;
    std::mt19937_64 rng(params.seed);
    for (int p = 0; p < n; ++p)
      s.comp[p] = static_cast<int32_t>(draw_below(rng, static_cast<uint64_t>(s.alpha)));
  }
  for (int p = 0; p < n; ++p)
    s.att[p] = shard_of(s.attn_sharding, is_cdelta, p, s.comp[p], s.beta, s.c, s.delta);
  return s;
}

void validate(const Schedule& s) {
  auto fail = [](const std::string& m) { throw std::runtime_error("invalid schedule: " + m); };
  const std::string& st = s.strategy;
  const bool is_cdelta = st == kStrategyCDelta;
  if (!is_cdelta && st != kStrategyContiguous && st != kStrategyRoundRobin &&
      st != kStrategyRandom)
    fail("unknown strategy '" + st + "'");
  if (s.attn_sharding != AttnSharding::cluster && s.attn_sharding != AttnSharding::offset)
    fail("unknown attention sharding " + str((int)s.attn_sharding));
  if (s.lm_head != LmHead::client && s.lm_head != LmHead::comp)
    fail("unknown LM head placement " + str((int)s.lm_head));
  if (s.alpha < 1) fail("alpha = " + str(s.alpha) + " < 1");
  if (s.beta < 1) fail("beta = " + str(s.beta) + " < 1");
  if (s.attn_sharding == AttnSharding::cluster && s.beta > s.alpha)
    fail("cluster sharding needs beta <= alpha (beta = " + str(s.beta) + ", alpha = " +
         str(s.alpha) + ")");
  if (ranks_needed(s.alpha, s.beta) > INT_MAX) fail("1 + alpha + beta^2 overflows an int");
  if (s.n_positions < 1) fail("n_positions = " + str(s.n_positions) + " < 1");
  if (s.n_prompt < 1 || s.n_prompt > s.n_positions)
    fail("n_prompt = " + str(s.n_prompt) + " outside 1.." + str(s.n_positions));
  if (const std::string why = shape_problem(s.shape); !why.empty()) fail(why);
  if (s.comp.size() != static_cast<size_t>(s.n_positions) ||
      s.att.size() != static_cast<size_t>(s.n_positions))
    fail("arrays have " + str(static_cast<long long>(s.comp.size())) + " and " +
         str(static_cast<long long>(s.att.size())) + " entries, expected n_positions = " +
         str(s.n_positions));
  for (int p = 0; p < s.n_positions; ++p) {
    if (s.comp[p] < 0 || s.comp[p] >= s.alpha)
      fail("position " + str(p) + " has CompNode " + str(s.comp[p]) + ", outside 0.." +
           str(s.alpha - 1));
    if (s.att[p] < 0 || s.att[p] >= s.beta)
      fail("position " + str(p) + " has attention shard " + str(s.att[p]) + ", outside 0.." +
           str(s.beta - 1));
  }
  // The arrays must follow the strategy's and the sharding rule's formulas.
  if (is_cdelta) {
    const long long c = s.c, a = s.alpha;
    if (c < 1) fail("cdelta needs c >= 1 (c = " + str(c) + ")");
    if (s.attn_sharding == AttnSharding::offset && s.beta > c)
      fail("offset sharding needs beta <= c (beta = " + str(s.beta) + ", c = " + str(c) + ")");
    if (!((a - 1) * c < s.delta && s.delta <= a * c))
      fail("delta = " + str(s.delta) + " outside (alpha-1)*c < delta <= alpha*c");
  } else if (st == kStrategyContiguous) {
    const long long block = (static_cast<long long>(s.n_positions) + s.alpha - 1) / s.alpha;
    if (s.c != block) fail("contiguous block size c = " + str(s.c) + ", expected " + str(block));
  }
  for (int p = 0; p < s.n_positions; ++p) {
    int want_comp = s.comp[p];  // random: range-checked above
    if (is_cdelta) want_comp = (p % s.delta) / s.c;
    else if (st == kStrategyContiguous) want_comp = p / s.c;
    else if (st == kStrategyRoundRobin) want_comp = p % s.alpha;
    const int want_att = shard_of(s.attn_sharding, is_cdelta, p, want_comp, s.beta, s.c, s.delta);
    if (s.comp[p] != want_comp || s.att[p] != want_att)
      fail("position " + str(p) + " has (CompNode " + str(s.comp[p]) + ", shard " +
           str(s.att[p]) + "), but " + st + " with " + attn_sharding_name(s.attn_sharding) +
           " sharding gives (" + str(want_comp) + ", " + str(want_att) + ")");
  }
}

void check_world_size(const Schedule& s, int world) {
  if (world != s.n_ranks()) {
    std::ostringstream os;
    os << "this schedule needs 1 + α + β² = " << s.n_ranks() << " ranks (α = " << s.alpha
       << ", β = " << s.beta << "), but the job has " << world;
    throw std::runtime_error(os.str());
  }
}

// ---- wire format -------------------------------------------------------------------------

namespace {

constexpr char kMagic[4] = {'C', 'S', 'C', 'H'};
constexpr size_t kMaxStrategyLen = 64;

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_i32(std::vector<uint8_t>& out, int32_t v) { put_u32(out, static_cast<uint32_t>(v)); }
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

struct Reader {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;

  void need(size_t n, const char* what) {
    if (size - pos < n)
      throw std::runtime_error("corrupt schedule: truncated at byte " + std::to_string(pos) +
                               " reading " + what + " (" + std::to_string(size) +
                               " bytes in all)");
  }
  uint32_t u32(const char* what) {
    need(4, what);
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(data[pos + i]) << (8 * i);
    pos += 4;
    return v;
  }
  int32_t i32(const char* what) { return static_cast<int32_t>(u32(what)); }
  uint64_t u64(const char* what) {
    need(8, what);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(data[pos + i]) << (8 * i);
    pos += 8;
    return v;
  }
};

}  // namespace

std::vector<uint8_t> serialize(const Schedule& s) {
  if (s.comp.size() != static_cast<size_t>(s.n_positions) ||
      s.att.size() != static_cast<size_t>(s.n_positions))
    throw std::runtime_error("serialize: schedule arrays do not match n_positions");
  if (s.strategy.size() > kMaxStrategyLen)
    throw std::runtime_error("serialize: strategy name too long");
  std::vector<uint8_t> out;
  out.reserve(80 + s.strategy.size() + 8 * static_cast<size_t>(s.n_positions));
  for (char ch : kMagic) out.push_back(static_cast<uint8_t>(ch));
  put_u32(out, kScheduleVersion);
  put_u32(out, static_cast<uint32_t>(s.strategy.size()));
  for (char ch : s.strategy) out.push_back(static_cast<uint8_t>(ch));
  put_i32(out, static_cast<int32_t>(s.attn_sharding));
  put_i32(out, static_cast<int32_t>(s.lm_head));
  put_i32(out, s.alpha);
  put_i32(out, s.beta);
  put_i32(out, s.c);
  put_i32(out, s.delta);
  put_u64(out, s.seed);
  put_i32(out, s.n_prompt);
  put_i32(out, s.n_positions);
  for (int v : {s.shape.n_layer, s.shape.d_model, s.shape.n_head, s.shape.n_head_kv,
                s.shape.d_head, s.shape.n_vocab, static_cast<int32_t>(s.shape.family)})
    put_i32(out, v);
  for (int32_t v : s.comp) put_i32(out, v);
  for (int32_t v : s.att) put_i32(out, v);
  return out;
}

Schedule deserialize(const uint8_t* data, size_t size) {
  if (data == nullptr && size != 0) throw std::runtime_error("corrupt schedule: null buffer");
  Reader r{data, size};
  r.need(4, "magic");
  if (std::memcmp(data, kMagic, 4) != 0)
    throw std::runtime_error("corrupt schedule: bad magic (expected \"CSCH\")");
  r.pos = 4;
  const uint32_t version = r.u32("version");
  if (version != kScheduleVersion)
    throw std::runtime_error("unsupported schedule version " + std::to_string(version) +
                             " (this build reads version " +
                             std::to_string(kScheduleVersion) + ")");
  const uint32_t len = r.u32("strategy length");
  if (len > kMaxStrategyLen)
    throw std::runtime_error("corrupt schedule: strategy name length " + std::to_string(len));
  r.need(len, "strategy name");
  Schedule s;
  s.strategy.assign(reinterpret_cast<const char*>(data + r.pos), len);
  r.pos += len;
  s.attn_sharding = static_cast<AttnSharding>(r.i32("attn_sharding"));
  s.lm_head = static_cast<LmHead>(r.i32("lm_head"));
  s.alpha = r.i32("alpha");
  s.beta = r.i32("beta");
  s.c = r.i32("c");
  s.delta = r.i32("delta");
  s.seed = r.u64("seed");
  s.n_prompt = r.i32("n_prompt");
  s.n_positions = r.i32("n_positions");
  s.shape.n_layer = r.i32("n_layer");
  s.shape.d_model = r.i32("d_model");
  s.shape.n_head = r.i32("n_head");
  s.shape.n_head_kv = r.i32("n_head_kv");
  s.shape.d_head = r.i32("d_head");
  s.shape.n_vocab = r.i32("n_vocab");
  const int32_t family = r.i32("family");
  if (family < 0 || family > static_cast<int32_t>(Family::bert))
    throw std::runtime_error("corrupt schedule: model family " + std::to_string(family));
  s.shape.family = static_cast<Family>(family);
  if (s.n_positions < 1)
    throw std::runtime_error("corrupt schedule: n_positions = " +
                             std::to_string(s.n_positions));
  const uint64_t arrays = 8ull * static_cast<uint64_t>(s.n_positions);
  if (size - r.pos != arrays)
    throw std::runtime_error("corrupt schedule: " + std::to_string(size - r.pos) +
                             " bytes of arrays, expected " + std::to_string(arrays) +
                             " for n_positions = " + std::to_string(s.n_positions));
  s.comp.resize(s.n_positions);
  s.att.resize(s.n_positions);
  for (auto& v : s.comp) v = r.i32("comp");
  for (auto& v : s.att) v = r.i32("att");
  try {
    validate(s);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string("corrupt schedule: ") + e.what());
  }
  return s;
}

}  // namespace cascade
