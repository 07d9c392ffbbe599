// Cryptography for the repository, all through OpenSSL (hardware SHA and AES where the CPU has
// them): content ids, AES-256-GCM, and key derivation (docs/repository-format.md sections 2-3).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"

namespace vmbackup::repo {

// A 32-byte content id (SHA-256 or HMAC-SHA256). All zeros stands for "zeros, not stored".
struct Id {
  std::array<uint8_t, 32> bytes{};
  bool is_zero() const;
  std::string Hex() const;
  static Result<Id> FromHex(std::string_view hex);
  bool operator==(const Id&) const = default;
  auto operator<=>(const Id&) const = default;
};
struct IdHash {
  size_t operator()(const Id& id) const;  // ids are uniform: their first bytes will do
};

Id Sha256(std::span<const uint8_t> data);
Id HmacSha256(std::span<const uint8_t, 32> key, std::span<const uint8_t> data);

inline constexpr size_t kGcmNonceSize = 12;
inline constexpr size_t kGcmTagSize = 16;

// nonce | ciphertext | tag, with a random nonce.
Result<std::vector<uint8_t>> AesGcmSeal(std::span<const uint8_t, 32> key,
                                        std::span<const uint8_t> plaintext,
                                        std::span<const uint8_t> aad);
// kCorruption when the tag does not verify (wrong key, tampered bytes, wrong aad).
Result<std::vector<uint8_t>> AesGcmOpen(std::span<const uint8_t, 32> key,
                                        std::span<const uint8_t> sealed,
                                        std::span<const uint8_t> aad);
// The same into `out`, which must hold exactly the plaintext (sealed size - nonce - tag);
// `out` holds garbage after a failure. Restores decrypt into reused buffers this way.
Status AesGcmOpenInto(std::span<const uint8_t, 32> key, std::span<const uint8_t> sealed,
                      std::span<const uint8_t> aad, std::span<uint8_t> out);
// The plaintext size of a sealed message (kCorruption when too short to be one).
Result<size_t> AesGcmPlainSize(std::span<const uint8_t> sealed);

// scrypt (RFC 7914) into `out_size` bytes.
Result<std::vector<uint8_t>> Scrypt(std::string_view passphrase, std::span<const uint8_t> salt,
                                    uint64_t n, uint64_t r, uint64_t p, size_t out_size);

std::vector<uint8_t> RandomBytes(size_t n);  // ends the program if OpenSSL's generator fails

// libcrypto's loading (src/openssl: 3-5 ms) and OpenSSL's one-time set-up (its configuration
// file, the random generator's seeding: ~4 ms here) on a thread of their own, started first thing
// in main while the command line is built, instead of before main and on the first RandomBytes.
// Destruction waits for it.
class CryptoWarmUp {
 public:
  CryptoWarmUp();
  ~CryptoWarmUp();
  CryptoWarmUp(const CryptoWarmUp&) = delete;
  CryptoWarmUp& operator=(const CryptoWarmUp&) = delete;

 private:
  std::thread thread_;
};

std::string ToHex(std::span<const uint8_t> data);
Result<std::vector<uint8_t>> FromHex(std::string_view hex);  // whitespace ignored

}  // namespace vmbackup::repo
