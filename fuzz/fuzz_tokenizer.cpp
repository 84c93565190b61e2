// libFuzzer target: the BPE tokenizer of the default model on arbitrary bytes, with and without
// special tokens; what it encodes must decode again, and valid text back to the same bytes but
// for the bytes the vocabulary has no token for (SmolLM2 lacks six control bytes, which
// Hugging Face tokenizers drops too: test_tokenizer.cpp). The model comes from
// $CASCADE_FUZZ_MODEL or the default path.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "cascade/gguf.h"
#include "cascade/tokenizer.h"

namespace {

const cascade::Tokenizer& tokenizer() {
  static const std::unique_ptr<cascade::Tokenizer> tok = [] {
    const char* env = std::getenv("CASCADE_FUZZ_MODEL");
    const std::string path = env ? env : CASCADE_SOURCE_DIR "/data/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    const cascade::GgufFile g(path);
    return std::make_unique<cascade::Tokenizer>(g);
  }();
  return *tok;
}

// Bytes that encode to nothing on their own: no token for them.
const std::string& tokenless() {
  static const std::string bytes = [] {
    std::string b;
    for (int c = 1; c < 0x100; ++c)
      if (tokenizer().encode(std::string(1, (char)c), false).empty()) b += (char)c;
    return b;
  }();
  return bytes;
}

// Valid UTF-8, strictly: no overlong forms (C0, C1, E0 80..9F, F0 80..8F), no surrogates
// (ED A0..BF), nothing past U+10FFFF (F4 90.., F5..FF). A first version let C1 A9 through
// (fuzz/corpus/tokenizer/regress-crash-cf28d86e…).
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    int n = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
    if (c < 0x80) n = 1;
    else if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (int k = 1; k < n; ++k) {
      const unsigned char b = s[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b >> 6) != 2) return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const cascade::Tokenizer& tok = tokenizer();
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const std::string back = tok.decode(tok.encode(text, /*parse_special=*/false));
    std::string want;
    for (char c : text)
      if (tokenless().find(c) == std::string::npos || c == 0) want += c;
    if (valid_utf8(text) && back != want) {
      std::fprintf(stderr, "round trip changed the text (%zu bytes in, %zu out)\n", text.size(), back.size());
      std::abort();
    }
    (void)tok.decode(tok.encode(text, /*parse_special=*/true));
  } catch (const std::exception&) {
    // refused (invalid UTF-8): fine
  }
  return 0;
}
