// Byte-level BPE tokenizer (GPT-2 style, as used by SmolLM2 and many llama-family models),
// built entirely from GGUF metadata: tokenizer.ggml.{model,pre,tokens,token_type,merges,
// bos_token_id,eos_token_id,...}. Pre-tokenisation follows the `pre` type (regexes via PCRE2).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cascade {

class GgufFile;

// Everything the tokenizer is built from, as plain vectors (the GGUF keys in the comments).
// Lets tests and tools build a tokenizer without a GGUF file.
struct TokenizerData {
  std::string model;                 // tokenizer.ggml.model: only "gpt2" (byte-level BPE)
  std::string pre = "default";       // tokenizer.ggml.pre: "smollm", "gpt2" or "default"
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens, GPT-2 byte-to-unicode spelling
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type (empty: all normal)
  std::vector<std::string> merges;   // tokenizer.ggml.merges, "left right", best rank first
  int32_t bos_id = -1;               // -1: none
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  bool add_bos = false;              // tokenizer.ggml.add_bos_token

  static TokenizerData from_gguf(const GgufFile& gguf);  // throws GgufError on missing keys
};

class Tokenizer {
 public:
  explicit Tokenizer(const GgufFile& gguf);  // throws std::runtime_error on unsupported metadata
  explicit Tokenizer(const TokenizerData& data);  // same checks
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Special tokens (control tokens such as <|im_start|>) written in `text` become their ids
  // when parse_special is true, as Hugging Face tokenizers do by default. User-defined tokens
  // (token_type 4) are always matched whole. No BOS is added: callers check add_bos().
  std::vector<int32_t> encode(const std::string& text, bool parse_special = true) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string token_to_piece(int32_t id) const;  // decoded bytes of one token
  // decode/token_to_piece throw std::out_of_range for an id outside [0, vocab_size()).

  int32_t bos_id() const;  // -1 when the file names none
  int32_t eos_id() const;
  bool add_bos() const;  // tokenizer.ggml.add_bos_token
  size_t vocab_size() const;
  const std::string& token_text(int32_t id) const;  // the vocabulary entry as stored
  bool is_special(int32_t id) const;                // control or user-defined

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cascade
