// Packs and index files (docs/repository-format.md sections 4 and 5).
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "base/aligned_buffer.h"
#include "repo/blob_codec.h"
#include "storage/backend.h"

namespace vmbackup::repo {

enum class BlobType : uint8_t { kChunk = 0, kTree = 1 };

struct BlobLocation {
  Id pack;
  BlobType type = BlobType::kChunk;
  uint64_t offset = 0;
  uint32_t stored_length = 0;
  uint32_t raw_length = 0;
};

struct PackEntry {
  Id id;
  BlobLocation loc;  // loc.pack is the pack's id once the pack is finished
};

// The additional authenticated data of a chunk or tree blob: type byte | id.
std::vector<uint8_t> BlobAad(BlobType type, const Id& id);

class PackBuilder {
 public:
  explicit PackBuilder(const BlobCodec& codec);
  // Appends an encoded blob.
  void Add(BlobType type, const Id& id, std::span<const uint8_t> stored, uint32_t raw_length);
  void Add(BlobType type, const Id& id, const EncodedBlob& blob, uint32_t raw_length);
  // The open pack's size so far (segments given to the sink included).
  size_t bytes() const { return streamed_ + data_.size(); }
  // From now on the pack's bytes go to `sink` in segments of `segment` bytes (a multiple of
  // 4096, written with O_DIRECT as they are) as they fill, instead of staying in memory until
  // Finish: a pack then needs a segment's memory, not its own size. Segments come back through
  // Recycle. Call before the first Add.
  void StreamSegments(size_t segment, std::function<void(AlignedBuffer&&)> sink);
  size_t count() const { return entries_.size(); }
  // Appends the trailer; returns the pack's bytes, its id (H of the stored trailer blob, which
  // lists every blob's id, place and size: hashing 16 MiB per pack cost a quarter of an
  // ingest's CPU) and its entries.
  struct Finished {
    Id id;
    // The whole pack, or with StreamSegments the bytes after the last segment (whole false).
    // Written with O_DIRECT as they are.
    AlignedBuffer bytes;
    std::vector<PackEntry> entries;
    bool whole = true;
    // false: a segment given to the sink, of a pack still being built (no id, no entries).
    bool last = true;
  };
  Finished Finish();
  // Room for `bytes` so the buffer never grows by copying.
  void Reserve(size_t bytes) {
    reserve_ = bytes;
    data_.reserve(bytes);
  }
  // Hands back the bytes of a saved pack: the next pack is built in the same memory.
  void Recycle(AlignedBuffer&& bytes);

 private:
  const BlobCodec& codec_;
  // Opens an entry for a blob of `stored_size` bytes about to be appended at the end.
  void AddEntry(BlobType type, const Id& id, size_t stored_size, uint32_t raw_length);
  // Appends to the pack, handing full segments to the sink.
  void Put(std::span<const uint8_t> bytes);
  // An empty buffer for the pack's next bytes: a recycled one when there is one (fresh memory
  // is slow to get: page faults, and on a VM the host's; growing a buffer copies it).
  AlignedBuffer NextBuffer();

  AlignedBuffer data_;
  size_t segment_ = 0, streamed_ = 0;  // streamed_: bytes of the open pack given to sink_
  std::function<void(AlignedBuffer&&)> sink_;
  std::vector<AlignedBuffer> spares_;  // recycled pack buffers
  size_t reserve_ = 0;
  std::vector<PackEntry> entries_;
};

// Reads a pack's entries from its trailer (for check and index repair).
Result<std::vector<PackEntry>> ReadPackEntries(storage::Backend& backend, const BlobCodec& codec,
                                               const Id& pack);

}  // namespace vmbackup::repo
