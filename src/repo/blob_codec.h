// BlobCodec: turns plaintext into stored blobs and back (docs/repository-format.md section 3):
// zstd when it saves at least 1/16, AES-256-GCM when the repository is encrypted, and the
// content id (SHA-256, or HMAC-SHA256 with the id key). Thread-safe (no mutable state).
#pragma once

#include <array>
#include <optional>
#include <span>
#include <vector>

#include "repo/crypto.h"

namespace vmbackup::repo {

struct MasterKey {
  std::array<uint8_t, 32> enc{};
  std::array<uint8_t, 32> id{};
  static Result<MasterKey> FromBytes(std::span<const uint8_t> bytes);  // 64 bytes
};

inline constexpr uint8_t kBlobCompressed = 0x1;
inline constexpr uint8_t kBlobEncrypted = 0x2;

class BlobCodec {
 public:
  explicit BlobCodec(std::optional<MasterKey> key, int zstd_level = 1)
      : key_(std::move(key)), level_(zstd_level) {}

  bool encrypted() const { return key_.has_value(); }
  Id IdOf(std::span<const uint8_t> plaintext) const;

  std::vector<uint8_t> Encode(std::span<const uint8_t> plaintext, std::span<const uint8_t> aad,
                              bool try_compress = true) const;
  // `max_raw` bounds the plaintext size (from the index), so a damaged blob cannot make us
  // allocate more. kCorruption on any damage.
  Result<std::vector<uint8_t>> Decode(std::span<const uint8_t> stored, std::span<const uint8_t> aad,
                                      size_t max_raw) const;

 private:
  std::optional<MasterKey> key_;
  int level_;
};

}  // namespace vmbackup::repo
