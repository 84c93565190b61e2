// libFuzzer target: the GGUF reader (header, metadata, tensor infos, extents), then what is read
// from a GGUF before any weight: the model config and the tokenizer. Any exception is a refusal
// (fine); a crash, a sanitizer report or a hang is a finding.
#include <cstdint>
#include <exception>

#include "cascade/gguf.h"
#include "cascade/model_config.h"
#include "cascade/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const cascade_fuzz::MemFile file(data, size);
  try {
    const cascade::GgufFile g(file.path());
    try {
      (void)cascade::ModelConfig::from_gguf(g);
    } catch (const std::exception&) {
    }
    try {
      const cascade::Tokenizer tok(g);
      (void)tok.decode(tok.encode("Hello, world! <|im_start|>user\n1234 é"));
    } catch (const std::exception&) {
    }
  } catch (const std::exception&) {
  }
  return 0;
}
