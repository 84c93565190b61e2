// Byte-level BPE (GPT-2 style), built from GGUF metadata.
//
// encode(text):
//   1. split out special tokens (longest match at the leftmost position), as HF added tokens;
//   2. pre-tokenise each remaining segment by the `pre` type (PCRE2 with UTF + UCP):
//        smollm:        every \p{N} character on its own, then the GPT-2 regex on what is between
//                       (HF: Sequence[Digits(individual_digits), ByteLevel(use_regex)]);
//        gpt2, default: the GPT-2 regex alone;
//   3. each piece: bytes -> byte-level symbols (ids of the 256 single-byte tokens), then apply
//      merges, lowest rank first (leftmost on ties), until no learned pair is left. A byte
//      with no token of its own is dropped (as HF does when there is no unk token).
// decode(ids): token text -> bytes through the inverse byte table; special tokens verbatim.
#include "cascade/tokenizer.h"

#include "cascade/gguf.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cascade {

namespace {

constexpr int32_t kTokenTypeControl = 3;
constexpr int32_t kTokenTypeUserDefined = 4;

// GPT-2's regex (openai/gpt-2 encoder.py; HF ByteLevel use_regex=true).
const char* const kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char* const kDigitRegex = "\\p{N}";

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes one UTF-8 character at s[i]; returns its length (>= 1) and the code point, or
// length 1 and UINT32_MAX for an invalid byte.
size_t next_utf8(const std::string& s, size_t i, uint32_t* cp) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  size_t n = 0;
  uint32_t v = 0;
  if (c < 0x80) { *cp = c; return 1; }
  if ((c & 0xE0) == 0xC0) { n = 2; v = c & 0x1F; }
  else if ((c & 0xF0) == 0xE0) { n = 3; v = c & 0x0F; }
  else if ((c & 0xF8) == 0xF0) { n = 4; v = c & 0x07; }
  else { *cp = UINT32_MAX; return 1; }
  if (i + n > s.size()) { *cp = UINT32_MAX; return 1; }
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) { *cp = UINT32_MAX; return 1; }
    v = (v << 6) | (b(i + k) & 0x3F);
  }
  *cp = v;
  return n;
}

// GPT-2 bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
// are given code points 256, 257, ... in byte order.
std::vector<uint32_t> bytes_to_unicode() {
  std::vector<uint32_t> table(256);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    table[b] = printable ? b : next++;
  }
  return table;
}

// A compiled PCRE2 pattern (JIT where available).
class Regex {
 public:
  explicit Regex(const char* pattern) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off,
                          nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw std::runtime_error("tokenizer: cannot compile regex at offset " +
                               std::to_string(err_off) + ": " +
                               reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // optional: falls back to the interpreter
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls f(begin, end, matched) for every piece of s[0, n) in order: the matches
  // (matched = true) and the gaps between them (false), so the pieces tile the input.
  template <class F>
  void split(const char* s, size_t n, F&& f) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
    if (!md) throw std::bad_alloc();
    size_t pos = 0;
    while (pos < n) {
      const int rc =
          pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s), n, pos, 0, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        throw std::runtime_error(std::string("tokenizer: regex match failed: ") +
                                 reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      const size_t b = ov[0], e = ov[1];
      if (e == b) break;  // our patterns never match empty; the rest becomes one gap
      if (b > pos) f(pos, b, false);
      f(b, e, true);
      pos = e;
    }
    if (pos < n) f(pos, n, false);
  }

 private:
  pcre2_code* code_ = nullptr;
};

enum class PreType { kGpt2, kSmollm };

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

int32_t to_id(uint64_t v) {
  return v > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()) ? -1
                                                                        : static_cast<int32_t>(v);
}

}  // namespace

TokenizerData TokenizerData::from_gguf(const GgufFile& gguf) {
  TokenizerData d;
  d.model = gguf.get_string("tokenizer.ggml.model");
  if (gguf.has("tokenizer.ggml.pre")) d.pre = gguf.get_string("tokenizer.ggml.pre");
  d.tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  if (gguf.has("tokenizer.ggml.token_type")) {
    for (int64_t t : gguf.get_int_array("tokenizer.ggml.token_type")) {
      d.token_types.push_back(static_cast<int32_t>(t));
    }
  }
  if (gguf.has("tokenizer.ggml.merges")) d.merges = gguf.get_string_array("tokenizer.ggml.merges");
  const uint64_t none = std::numeric_limits<uint64_t>::max();
  d.bos_id = to_id(gguf.get_uint_or("tokenizer.ggml.bos_token_id", none));
  d.eos_id = to_id(gguf.get_uint_or("tokenizer.ggml.eos_token_id", none));
  d.unk_id = to_id(gguf.get_uint_or("tokenizer.ggml.unknown_token_id", none));
  d.add_bos = gguf.get_bool_or("tokenizer.ggml.add_bos_token", false);
  return d;
}

struct Tokenizer::Impl {
  struct Merge {
    int32_t rank;
    int32_t result;
  };

  std::vector<std::string> tokens;
  std::vector<std::string> pieces;  // decoded bytes of each token
  std::vector<bool> special;        // control or user-defined
  std::unordered_map<std::string, int32_t> token_to_id;
  std::unordered_map<uint64_t, Merge> merges;  // (left id, right id) -> rank, merged id
  int32_t byte_token[256];                     // id of each byte's one-symbol token, or -1
  // Special tokens by first byte, longest first: (id, parse_special needed).
  std::vector<std::pair<int32_t, bool>> specials_by_byte[256];
  PreType pre = PreType::kGpt2;
  Regex gpt2_regex{kGpt2Regex};
  Regex digit_regex{kDigitRegex};
  int32_t bos = -1, eos = -1;
  int32_t unk = -1;  // stored only: encode drops bytes that have no token instead
  bool add_bos = false;

  explicit Impl(const TokenizerData& d);
  void encode_segment(const char* s, size_t n, std::vector<int32_t>& out) const;
  void encode_piece(const char* s, size_t n, std::vector<int32_t>& out) const;
};

Tokenizer::Impl::Impl(const TokenizerData& d) {
  if (d.model != "gpt2") {
    throw std::runtime_error("tokenizer: unsupported tokenizer model '" + d.model +
                             "' (only byte-level BPE, tokenizer.ggml.model = 'gpt2')");
  }
  if (d.pre == "smollm") {
    pre = PreType::kSmollm;
  } else if (d.pre == "gpt2" || d.pre == "default") {
    pre = PreType::kGpt2;
  } else {
    throw std::runtime_error("tokenizer: unsupported pre-tokenizer type '" + d.pre +
                             "' (tokenizer.ggml.pre; supported: smollm, gpt2, default)");
  }
  if (d.tokens.empty()) throw std::runtime_error("tokenizer: empty vocabulary");
  if (d.tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw std::runtime_error("tokenizer: vocabulary too large");
  }
  if (!d.token_types.empty() && d.token_types.size() != d.tokens.size()) {
    throw std::runtime_error("tokenizer: " + std::to_string(d.token_types.size()) +
                             " token types for " + std::to_string(d.tokens.size()) + " tokens");
  }
  const auto n_vocab = static_cast<int32_t>(d.tokens.size());
  for (int32_t id : {d.bos_id, d.eos_id, d.unk_id}) {
    if (id < -1 || id >= n_vocab) {
      throw std::runtime_error("tokenizer: special token id " + std::to_string(id) +
                               " outside the vocabulary of " + std::to_string(n_vocab));
    }
  }
  tokens = d.tokens;
  bos = d.bos_id;
  eos = d.eos_id;
  unk = d.unk_id;
  add_bos = d.add_bos;

  token_to_id.reserve(tokens.size());
  for (int32_t i = 0; i < n_vocab; ++i) token_to_id.emplace(tokens[i], i);  // first wins

  // Byte table, both ways.
  const std::vector<uint32_t> b2u = bytes_to_unicode();
  std::unordered_map<uint32_t, uint8_t> u2b;
  for (int b = 0; b < 256; ++b) {
    u2b[b2u[b]] = static_cast<uint8_t>(b);
    std::string sym;
    append_utf8(sym, b2u[b]);
    auto it = token_to_id.find(sym);
    byte_token[b] = it == token_to_id.end() ? -1 : it->second;
  }

  // Special tokens and decoded pieces.
  special.assign(tokens.size(), false);
  pieces.resize(tokens.size());
  for (int32_t i = 0; i < n_vocab; ++i) {
    const int32_t type = d.token_types.empty() ? 1 : d.token_types[i];
    const std::string& t = tokens[i];
    if ((type == kTokenTypeControl || type == kTokenTypeUserDefined) && !t.empty()) {
      special[i] = true;
      specials_by_byte[static_cast<uint8_t>(t[0])].emplace_back(i, type == kTokenTypeControl);
      pieces[i] = t;
      continue;
    }
    std::string& p = pieces[i];
    for (size_t k = 0; k < t.size();) {
      uint32_t cp = 0;
      const size_t len = next_utf8(t, k, &cp);
      auto it = u2b.find(cp);
      if (it != u2b.end()) {
        p += static_cast<char>(it->second);
      } else {
        p.append(t, k, len);  // not in the byte alphabet: keep as written
      }
      k += len;
    }
  }
  for (auto& v : specials_by_byte) {
    std::stable_sort(v.begin(), v.end(), [&](const auto& a, const auto& b) {
      return tokens[a.first].size() > tokens[b.first].size();
    });
  }

  // Merges: "left right" -> rank.
  merges.reserve(d.merges.size());
  for (size_t r = 0; r < d.merges.size(); ++r) {
    const std::string& m = d.merges[r];
    const size_t sp = m.find(' ', 1);  // a left part of " " itself is not byte-level spelling
    if (sp == std::string::npos || sp + 1 >= m.size()) {
      throw std::runtime_error("tokenizer: merge #" + std::to_string(r) + " '" + m +
                               "' is not 'left right'");
    }
    const std::string left = m.substr(0, sp), right = m.substr(sp + 1);
    const auto l = token_to_id.find(left), rt = token_to_id.find(right),
               res = token_to_id.find(left + right);
    if (l == token_to_id.end() || rt == token_to_id.end() || res == token_to_id.end()) {
      throw std::runtime_error("tokenizer: merge #" + std::to_string(r) + " '" + m +
                               "' uses a token that is not in the vocabulary");
    }
    merges.emplace(pair_key(l->second, rt->second),
                   Merge{static_cast<int32_t>(r), res->second});  // first (best) rank wins
  }
}

// One pre-tokenised piece: byte symbols, then merges by rank. O(n^2) in the piece length,
// which is a word or a whitespace run.
void Tokenizer::Impl::encode_piece(const char* s, size_t n, std::vector<int32_t>& out) const {
  std::vector<int32_t> sym;
  sym.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    // A byte the vocabulary lacks (SmolLM2 has no 0x04, 0xF5..0xFF, ...) is dropped, as HF
    // tokenizers' BPE without an unk token and llama.cpp do; never the unk id, which is
    // often <|endoftext|>.
    const int32_t id = byte_token[static_cast<uint8_t>(s[i])];
    if (id >= 0) sym.push_back(id);
  }
  while (sym.size() > 1) {
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    size_t best = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = merges.find(pair_key(sym[i], sym[i + 1]));
      if (it != merges.end() && it->second.rank < best_rank) {
        best_rank = it->second.rank;
        best = i;
      }
    }
    if (best_rank == std::numeric_limits<int32_t>::max()) break;
    // Merge every occurrence of the best pair, left to right (as GPT-2's bpe() does).
    const int32_t a = sym[best], b = sym[best + 1];
    const int32_t merged = merges.find(pair_key(a, b))->second.result;
    size_t w = 0;
    for (size_t i = 0; i < sym.size();) {
      if (i >= best && i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
        sym[w++] = merged;
        i += 2;
      } else {
        sym[w++] = sym[i++];
      }
    }
    sym.resize(w);
  }
  out.insert(out.end(), sym.begin(), sym.end());
}

// A stretch of plain text (no special tokens): pre-tokenise, then BPE each piece.
void Tokenizer::Impl::encode_segment(const char* s, size_t n, std::vector<int32_t>& out) const {
  if (n == 0) return;
  if (pre == PreType::kGpt2) {
    gpt2_regex.split(s, n, [&](size_t b, size_t e, bool) { encode_piece(s + b, e - b, out); });
    return;
  }
  // smollm: Digits(individual_digits=true) isolates each numeric character; the GPT-2 regex
  // then runs on each stretch between them as a text of its own (lookaheads stop at its end).
  digit_regex.split(s, n, [&](size_t b, size_t e, bool is_digit) {
    if (is_digit) {
      encode_piece(s + b, e - b, out);
    } else {
      gpt2_regex.split(s + b, e - b, [&](size_t pb, size_t pe, bool) {
        encode_piece(s + b + pb, pe - pb, out);
      });
    }
  });
}

Tokenizer::Tokenizer(const GgufFile& gguf) : Tokenizer(TokenizerData::from_gguf(gguf)) {}
Tokenizer::Tokenizer(const TokenizerData& data) : impl_(std::make_unique<Impl>(data)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool parse_special) const {
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  size_t seg = 0;  // start of the pending plain-text stretch
  for (size_t i = 0; i < text.size();) {
    int32_t found = -1;
    for (const auto& [id, needs_parse_special] : im.specials_by_byte[static_cast<uint8_t>(text[i])]) {
      if (needs_parse_special && !parse_special) continue;
      const std::string& t = im.tokens[id];
      if (text.compare(i, t.size(), t) == 0) {
        found = id;
        break;  // longest first
      }
    }
    if (found < 0) {
      ++i;
      continue;
    }
    im.encode_segment(text.data() + seg, i - seg, out);
    out.push_back(found);
    i += im.tokens[found].size();
    seg = i;
  }
  im.encode_segment(text.data() + seg, text.size() - seg, out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += token_to_piece(id);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->pieces.size()) {
    throw std::out_of_range("tokenizer: token id " + std::to_string(id) +
                            " outside the vocabulary of " + std::to_string(impl_->pieces.size()));
  }
  return impl_->pieces[id];
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
size_t Tokenizer::vocab_size() const { return impl_->tokens.size(); }

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->tokens.size()) {
    throw std::out_of_range("tokenizer: token id " + std::to_string(id) + " out of range");
  }
  return impl_->tokens[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id];
}

}  // namespace cascade
