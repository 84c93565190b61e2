#include "cascade/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace cascade {

Sha256 sha256_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open for hashing: " + std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    ::close(fd);
    throw std::runtime_error(path + ": OpenSSL could not start a SHA-256 digest");
  }
  std::vector<unsigned char> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      throw std::runtime_error(path + ": read error while hashing: " + std::strerror(e));
    }
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  Sha256 d{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), d.data(), &len) != 1 || len != d.size())
    throw std::runtime_error(path + ": OpenSSL could not finish the SHA-256 digest");
  return d;
}

Sha256 sha256_bytes(const void* data, size_t n) {
  Sha256 d{};
  unsigned int len = 0;
  if (EVP_Digest(data, n, d.data(), &len, EVP_sha256(), nullptr) != 1 || len != d.size())
    throw std::runtime_error("OpenSSL could not compute a SHA-256 digest");
  return d;
}

std::string to_hex(const uint8_t* bytes, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = digits[bytes[i] >> 4];
    s[2 * i + 1] = digits[bytes[i] & 15];
  }
  return s;
}

}  // namespace cascade
