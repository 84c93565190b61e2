// SHA-256 of a file or a block of bytes (OpenSSL's EVP API): the key of the weight cache
// (weight_cache.h): a GGUF file's digest, or a synthetic model's spec's (synthetic.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace cascade {

using Sha256 = std::array<uint8_t, 32>;

// Digest of the whole file; throws std::runtime_error naming the file on an I/O error.
Sha256 sha256_file(const std::string& path);
// Digest of `n` bytes at `data`.
Sha256 sha256_bytes(const void* data, size_t n);
inline Sha256 sha256_string(const std::string& s) { return sha256_bytes(s.data(), s.size()); }

// Lower-case hex, two characters per byte.
std::string to_hex(const uint8_t* bytes, size_t n);
inline std::string to_hex(const Sha256& d) { return to_hex(d.data(), d.size()); }

}  // namespace cascade
