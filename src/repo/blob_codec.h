// BlobCodec: turns plaintext into stored blobs and back (docs/repository-format.md section 3):
// zstd when it saves at least 1/16, AES-256-GCM when the repository is encrypted, else (format
// version 2) an XXH3-64 checksum of the plaintext seeded by the blob's aad; and the content id
// (SHA-256, or HMAC-SHA256 with the id key). Thread-safe (no mutable state).
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
inline constexpr uint8_t kBlobChecksummed = 0x4;

// A blob encoded for storing, in pieces, so that it is copied once: into its pack. The flags
// byte, the body (the plaintext itself, the calling thread's compression buffer, or `sealed`),
// and the checksum when it has one. The body stays valid until this thread's next Encode.
struct EncodedBlob {
  uint8_t flags = 0;
  std::span<const uint8_t> body;
  std::vector<uint8_t> sealed;  // nonce, ciphertext and tag of an encrypted blob
  std::array<uint8_t, 8> checksum{};
  size_t checksum_size = 0;
  size_t size() const { return 1 + body.size() + checksum_size; }
  // Gives the pieces in order to `append(std::span<const uint8_t>)`.
  template <typename Append>
  void AppendTo(Append&& append) const {
    append(std::span<const uint8_t>(&flags, 1));
    append(body);
    append(std::span<const uint8_t>(checksum.data(), checksum_size));
  }
};

class BlobCodec {
 public:
  // `checksums`: unencrypted blobs get a checksum (format version 2; version 1 has none).
  explicit BlobCodec(std::optional<MasterKey> key, bool checksums = true, int zstd_level = 1)
      : key_(std::move(key)), checksums_(checksums), level_(zstd_level) {}

  bool encrypted() const { return key_.has_value(); }
  Id IdOf(std::span<const uint8_t> plaintext) const;

  std::vector<uint8_t> Encode(std::span<const uint8_t> plaintext, std::span<const uint8_t> aad,
                              bool try_compress = true) const;
  // The same blob in pieces (see EncodedBlob): what a pack appends without another copy.
  EncodedBlob EncodeParts(std::span<const uint8_t> plaintext, std::span<const uint8_t> aad,
                          bool try_compress = true) const;
  // `max_raw` bounds the plaintext size (from the index), so a damaged blob cannot make us
  // allocate more. kCorruption on any damage.
  Result<std::vector<uint8_t>> Decode(std::span<const uint8_t> stored, std::span<const uint8_t> aad,
                                      size_t max_raw) const;
  // The same for the blob at `stored[offset..]`, taking `stored`: a blob stored plain (neither
  // compressed nor encrypted) comes back in its memory, not copied. For whole files (an index
  // file: fresh memory for a copy cost more than reading it).
  Result<std::vector<uint8_t>> Decode(std::vector<uint8_t>&& stored, size_t offset,
                                      std::span<const uint8_t> aad, size_t max_raw) const;
  // Decodes into `out`, which must be exactly the plaintext's size (from the index):
  // kCorruption when the blob decodes to any other size, or is damaged. Restores decode
  // straight into the disk buffer this way. `*bound` tells whether the blob proved that `out`
  // is the plaintext stored under `aad` (a GCM tag or a checksum matched; aad holds the id), so
  // that recomputing the id adds nothing; a version 1 unencrypted blob proves nothing.
  Status DecodeInto(std::span<const uint8_t> stored, std::span<const uint8_t> aad,
                    std::span<uint8_t> out, bool* bound = nullptr) const;

 private:
  struct Opened {
    std::span<const uint8_t> payload;  // in `stored`, or in the caller's scratch buffer
    bool compressed = false;
    std::optional<uint64_t> checksum;  // what the plaintext must hash to, when it has one
    bool authenticated = false;        // a GCM tag matched
  };
  // Checks the flags, splits off the checksum and decrypts.
  Result<Opened> Open(std::span<const uint8_t> stored, std::span<const uint8_t> aad,
                      std::vector<uint8_t>& scratch) const;
  // Decompresses or copies the payload into `out` (exactly its size) and checks the checksum.
  static Status Finish(const Opened& o, std::span<const uint8_t> aad, std::span<uint8_t> out,
                       bool* bound);
  static uint64_t Checksum(std::span<const uint8_t> plaintext, std::span<const uint8_t> aad);
  // One zstd frame of exactly out.size() bytes into `out`.
  static Status Decompress(std::span<const uint8_t> data, std::span<uint8_t> out);

  std::optional<MasterKey> key_;
  bool checksums_;
  int level_;
};

}  // namespace vmbackup::repo
