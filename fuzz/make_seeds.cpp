// Writes the fuzz targets' seed corpus (fuzz/corpus/, committed; fuzz/make-seeds runs this):
//   gguf/     a GGUF with llama metadata and a small byte-level BPE vocabulary (no tensors)
//   wire/     one of each decoder's inputs, the selector byte first (fuzz_wire.cpp)
// (the trace seed is a real run's trace, and the tokenizer's are text: fuzz/make-seeds).
//
//   cascade_fuzz_seeds OUT_DIR
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "../src/protocol/report.h"
#include "../tests/gguf_builder.h"
#include "cascade/message.h"
#include "cascade/model.h"
#include "cascade/schedule.h"
#include "cascade/trace.h"
#include "fuzz_util.h"

using namespace cascade;

namespace {

void write(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), (std::streamsize)bytes.size());
  if (!f) throw std::runtime_error("cannot write " + path);
}

// GPT-2's byte → printable code point map, as UTF-8 (what byte-level BPE vocabularies hold).
std::string byte_token(int b) {
  int cp = b;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
    int n = 0;
    for (int x = 0; x < b; ++x)
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) s += (char)cp;
  else {
    s += (char)(0xC0 | (cp >> 6));
    s += (char)(0x80 | (cp & 0x3F));
  }
  return s;
}

std::vector<uint8_t> with_selector(uint8_t which, std::vector<uint8_t> bytes) {
  bytes.insert(bytes.begin(), which);
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: cascade_fuzz_seeds OUT_DIR\n");
    return 2;
  }
  const std::string out = argv[1];
  // GGUF: llama dims of synthetic:tiny, 256 byte tokens + 3 merged ones + 2 specials.
  gguf_test::GgufBuilder g;
  g.kv_str("general.architecture", "llama").kv_str("general.name", "fuzz-seed");
  g.kv_u32("llama.block_count", 2).kv_u32("llama.context_length", 64).kv_u32("llama.embedding_length", 64);
  g.kv_u32("llama.feed_forward_length", 128).kv_u32("llama.attention.head_count", 4);
  g.kv_u32("llama.attention.head_count_kv", 2).kv_f32("llama.rope.freq_base", 10000.0f);
  g.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_token(b));
  for (const char* t : {"Ġt", "he", "Ġthe", "<|im_start|>", "<|im_end|>"}) tokens.push_back(t);
  g.kv_str("tokenizer.ggml.model", "gpt2").kv_str("tokenizer.ggml.pre", "smollm");
  g.kv_str_array("tokenizer.ggml.tokens", tokens);
  g.kv_str_array("tokenizer.ggml.merges", {"Ġ t", "h e", "Ġt he"});
  g.kv_u32("tokenizer.ggml.eos_token_id", 260);
  write(out + "/gguf/llama-bpe.gguf", g.build());

  // Wire: a message, the schedule, a rank's trace recording, a report.
  const std::vector<uint8_t> payload(3 * 4 * 8, 7);
  write(out + "/wire/message.bin",
        with_selector(0, encode_message({1, 3, 0, {{CommKind::q, {0, 5}, 64}, {CommKind::kv, {0}, 32}}}, payload.data())));
  write(out + "/wire/schedule.bin", with_selector(1, serialize(cascade_fuzz::seed_schedule())));
  RankTrace rt;
  rt.rank = 1;
  rt.party = "CompNode 0";
  rt.host = "seed";
  write(out + "/wire/rank_trace.bin", with_selector(2, encode_rank_trace(rt)));
  PartyStats st;
  st.wall_s = 1.5;
  ByteCounts sent{{{1, 3, 0, CommKind::q}, 64}}, received{{{3, 1, 0, CommKind::partial}, 80}};
  write(out + "/wire/report.bin", with_selector(3, encode_report(st, sent, received)));
  std::printf("seeds written to %s/{gguf,wire}\n", out.c_str());
  return 0;
}
