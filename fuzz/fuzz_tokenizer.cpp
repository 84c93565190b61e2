// libFuzzer target: the BPE tokenizer of the default model on arbitrary bytes, with and without
// special tokens; what it encodes must decode again, and valid text back to the same bytes but
// for the ASCII bytes the vocabulary has no token for (SmolLM2 lacks six control bytes, which
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

// ASCII bytes that encode to nothing on their own: no token for them.
const std::string& tokenless() {
  static const std::string bytes = [] {
    std::string b;
    for (int c = 1; c < 0x80; ++c)
      if (tokenizer().encode(std::string(1, (char)c), false).empty()) b += (char)c;
    return b;
  }();
  return bytes;
}

// Valid UTF-8 (the pre-tokenizer's regex works on code points).
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (int k = 1; k < n; ++k)
      if (((unsigned char)s[i + k] >> 6) != 2) return false;
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
