#include "repo/crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "base/strings.h"

namespace vmbackup::repo {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool Id::is_zero() const { return IsAllZero(bytes.data(), bytes.size()); }
std::string Id::Hex() const { return ToHex(bytes); }

Result<Id> Id::FromHex(std::string_view hex) {
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<uint8_t> b, repo::FromHex(hex));
  if (b.size() != 32)
    return InvalidArgumentError("an id has 64 hex digits: '" + std::string(hex) + "'");
  Id id;
  std::memcpy(id.bytes.data(), b.data(), 32);
  return id;
}

size_t IdHash::operator()(const Id& id) const {
  size_t h;
  std::memcpy(&h, id.bytes.data(), sizeof h);
  return h;
}

Id Sha256(std::span<const uint8_t> data) {
  Id id;
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), id.bytes.data(), &len, EVP_sha256(), nullptr);
  return id;
}

Id HmacSha256(std::span<const uint8_t, 32> key, std::span<const uint8_t> data) {
  Id id;
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), int(key.size()), data.data(), data.size(), id.bytes.data(), &len);
  return id;
}

Result<std::vector<uint8_t>> AesGcmSeal(std::span<const uint8_t, 32> key,
                                        std::span<const uint8_t> plaintext,
                                        std::span<const uint8_t> aad) {
  std::vector<uint8_t> out(kGcmNonceSize + plaintext.size() + kGcmTagSize);
  if (RAND_bytes(out.data(), int(kGcmNonceSize)) != 1) return InternalError("no random bytes");
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), out.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), int(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data() + kGcmNonceSize, &len, plaintext.data(),
                        int(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + kGcmNonceSize + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, int(kGcmTagSize),
                          out.data() + kGcmNonceSize + plaintext.size()) != 1) {
    return InternalError("AES-256-GCM encryption failed");
  }
  return out;
}

Result<size_t> AesGcmPlainSize(std::span<const uint8_t> sealed) {
  if (sealed.size() < kGcmNonceSize + kGcmTagSize)
    return CorruptionError("encrypted blob too short");
  return sealed.size() - kGcmNonceSize - kGcmTagSize;
}

Result<std::vector<uint8_t>> AesGcmOpen(std::span<const uint8_t, 32> key,
                                        std::span<const uint8_t> sealed,
                                        std::span<const uint8_t> aad) {
  VMBACKUP_ASSIGN_OR_RETURN(size_t n, AesGcmPlainSize(sealed));
  std::vector<uint8_t> out(n);
  VMBACKUP_RETURN_IF_ERROR(AesGcmOpenInto(key, sealed, aad, out));
  return out;
}

Status AesGcmOpenInto(std::span<const uint8_t, 32> key, std::span<const uint8_t> sealed,
                      std::span<const uint8_t> aad, std::span<uint8_t> out) {
  VMBACKUP_ASSIGN_OR_RETURN(size_t n, AesGcmPlainSize(sealed));
  if (out.size() != n) return InvalidArgumentError("AES-GCM: the output buffer has the wrong size");
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  std::array<uint8_t, kGcmTagSize> tag;
  std::memcpy(tag.data(), sealed.data() + kGcmNonceSize + n, kGcmTagSize);
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), sealed.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), int(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &len, sealed.data() + kGcmNonceSize, int(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, int(kGcmTagSize), tag.data()) != 1) {
    return InternalError("AES-256-GCM decryption failed to start");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &len) != 1) {
    return CorruptionError("authentication failed (wrong key, or the data was altered)");
  }
  return Status::Ok();
}

Result<std::vector<uint8_t>> Scrypt(std::string_view passphrase, std::span<const uint8_t> salt,
                                    uint64_t n, uint64_t r, uint64_t p, size_t out_size) {
  std::vector<uint8_t> out(out_size);
  if (EVP_PBE_scrypt(passphrase.data(), passphrase.size(), salt.data(), salt.size(), n, r, p,
                     uint64_t(1) << 30, out.data(), out.size()) != 1) {
    return InvalidArgumentError(StrFormat("scrypt with N=%llu r=%llu p=%llu failed",
                                          (unsigned long long)n, (unsigned long long)r,
                                          (unsigned long long)p));
  }
  return out;
}

std::vector<uint8_t> RandomBytes(size_t n) {
  std::vector<uint8_t> b(n);
  // Nonces and keys come from here: going on with zeros would repeat them.
  if (RAND_bytes(b.data(), int(n)) != 1) {
    std::fprintf(stderr, "vmbackup: the random generator failed (OpenSSL RAND_bytes)\n");
    std::abort();
  }
  return b;
}

CryptoWarmUp::CryptoWarmUp()
    : thread_([] {
        uint8_t b[16];
        RAND_bytes(b, sizeof b);  // loads the configuration and seeds the generator
      }) {}

CryptoWarmUp::~CryptoWarmUp() { thread_.join(); }

std::string ToHex(std::span<const uint8_t> data) {
  static const char* digits = "0123456789abcdef";
  std::string s(data.size() * 2, '0');
  for (size_t i = 0; i < data.size(); ++i) {
    s[2 * i] = digits[data[i] >> 4];
    s[2 * i + 1] = digits[data[i] & 15];
  }
  return s;
}

Result<std::vector<uint8_t>> FromHex(std::string_view hex) {
  std::vector<uint8_t> out;
  int pending = -1;
  for (char c : hex) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    int v = HexDigit(c);
    if (v < 0) return InvalidArgumentError("not a hex digit: '" + std::string(1, c) + "'");
    if (pending < 0) {
      pending = v;
    } else {
      out.push_back(uint8_t(pending * 16 + v));
      pending = -1;
    }
  }
  if (pending >= 0) return InvalidArgumentError("odd number of hex digits");
  return out;
}

}  // namespace vmbackup::repo
