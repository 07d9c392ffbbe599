#include "repo/blob_codec.h"

#include <zstd.h>

#include <cstring>

#include "base/strings.h"

namespace vmbackup::repo {

Result<MasterKey> MasterKey::FromBytes(std::span<const uint8_t> bytes) {
  if (bytes.size() != 64) {
    return InvalidArgumentError(StrFormat("a master key has 64 bytes, not %zu", bytes.size()));
  }
  MasterKey k;
  std::memcpy(k.enc.data(), bytes.data(), 32);
  std::memcpy(k.id.data(), bytes.data() + 32, 32);
  return k;
}

Id BlobCodec::IdOf(std::span<const uint8_t> plaintext) const {
  return key_ ? HmacSha256(key_->id, plaintext) : Sha256(plaintext);
}

namespace {

// zstd contexts are costly to set up (a fresh one per 64 KiB chunk halves the speed), so each
// thread keeps one of each for its life.
struct ZstdContexts {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_DCtx* d = ZSTD_createDCtx();
  std::vector<uint8_t> scratch;  // compression output, reused
  ~ZstdContexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
  }
};

ZstdContexts& Zstd() {
  thread_local ZstdContexts contexts;
  return contexts;
}

}  // namespace

std::vector<uint8_t> BlobCodec::Encode(std::span<const uint8_t> plaintext,
                                       std::span<const uint8_t> aad, bool try_compress) const {
  uint8_t flags = 0;
  std::span<const uint8_t> data = plaintext;
  if (try_compress && !plaintext.empty()) {
    ZstdContexts& z = Zstd();
    if (z.scratch.size() < ZSTD_compressBound(plaintext.size()))
      z.scratch.resize(ZSTD_compressBound(plaintext.size()));
    size_t n = ZSTD_compressCCtx(z.c, z.scratch.data(), z.scratch.size(), plaintext.data(),
                                 plaintext.size(), level_);
    // Keep compression only when it pays: at least 1/16 smaller.
    if (!ZSTD_isError(n) && n <= plaintext.size() - plaintext.size() / 16) {
      data = std::span<const uint8_t>(z.scratch.data(), n);
      flags |= kBlobCompressed;
    }
  }
  std::vector<uint8_t> out;
  if (key_) {
    flags |= kBlobEncrypted;
    auto sealed = AesGcmSeal(key_->enc, data, aad);
    out.reserve(1 + sealed->size());
    out.push_back(flags);
    out.insert(out.end(), sealed->begin(), sealed->end());
  } else {
    out.reserve(1 + data.size());
    out.push_back(flags);
    out.insert(out.end(), data.begin(), data.end());
  }
  return out;
}

Result<std::vector<uint8_t>> BlobCodec::Decode(std::span<const uint8_t> stored,
                                               std::span<const uint8_t> aad, size_t max_raw) const {
  if (stored.empty()) return CorruptionError("empty blob");
  uint8_t flags = stored[0];
  if (flags & ~(kBlobCompressed | kBlobEncrypted)) return CorruptionError("unknown blob flags");
  if (bool(flags & kBlobEncrypted) != key_.has_value()) {
    return CorruptionError(key_ ? "blob is not encrypted in an encrypted repository"
                                : "blob is encrypted: a key is needed");
  }
  std::vector<uint8_t> opened;
  std::span<const uint8_t> data = stored.subspan(1);
  if (flags & kBlobEncrypted) {
    VMBACKUP_ASSIGN_OR_RETURN(opened, AesGcmOpen(key_->enc, data, aad));
    data = opened;
  }
  if (!(flags & kBlobCompressed)) {
    if (data.size() > max_raw) return CorruptionError("blob larger than its index entry says");
    if (opened.empty()) opened.assign(data.begin(), data.end());
    return opened;
  }
  unsigned long long size = ZSTD_getFrameContentSize(data.data(), data.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > max_raw) {
    return CorruptionError("compressed blob has a bad or oversized frame header");
  }
  std::vector<uint8_t> out(static_cast<size_t>(size));
  size_t n = ZSTD_decompressDCtx(Zstd().d, out.data(), out.size(), data.data(), data.size());
  if (ZSTD_isError(n) || n != size) {
    return CorruptionError(std::string("zstd: ") +
                           (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short frame"));
  }
  return out;
}

}  // namespace vmbackup::repo
