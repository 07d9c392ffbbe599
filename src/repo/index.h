// The repository's index: blob id -> location, and its files (docs/repository-format.md
// section 5).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "repo/blob_codec.h"
#include "repo/pack.h"

namespace vmbackup::repo {

// Thread-safe. Entries stay in the 81-byte form of the index files they came from (a file's
// decoded body is kept whole; entries added one by one go to one more such body), found through
// an open-addressing table of 8-byte references. A map with a node per entry took ~110 bytes of
// fresh memory per entry, and fresh memory is what costs on a VM (a first touch costs 1.5-4 ms
// per MiB there): loading a 16,500-entry index took 21 ms in the map, 1 ms in the table.
class Index {
 public:
  Index();
  // Keeps the first location given for an id.
  void Add(const Id& id, const BlobLocation& loc);
  void Remove(const Id& id);
  std::optional<BlobLocation> Find(const Id& id) const;
  size_t size() const;
  void ForEach(const std::function<void(const Id&, const BlobLocation&)>& fn) const;

  static std::vector<uint8_t> EncodeFile(const BlobCodec& codec,
                                         const std::vector<PackEntry>& entries);
  // An index file's entries, checked, kept in their stored form.
  class FileEntries {
   public:
    static constexpr size_t kEntrySize = 32 + 32 + 1 + 8 + 4 + 4;  // id, pack, type, place
    size_t size() const { return body_.size() / kEntrySize; }
    PackEntry at(size_t i) const;

   private:
    friend class Index;
    std::vector<uint8_t> body_;
  };
  static Result<FileEntries> DecodeEntries(const BlobCodec& codec, std::span<const uint8_t> file);
  // The same, taking the file: its memory becomes the entries' when it is stored plain.
  static Result<FileEntries> DecodeEntries(const BlobCodec& codec, std::vector<uint8_t>&& file);
  static Result<std::vector<PackEntry>> DecodeFile(const BlobCodec& codec,
                                                   std::span<const uint8_t> file);
  // Adds the entries `keep` accepts (all when it is empty) under one lock, keeping the file's
  // body. `keep` runs under the index's lock: it must not call the index.
  using KeepFn = std::function<bool(const PackEntry&)>;
  void AddAll(FileEntries&& entries, const KeepFn& keep);

 private:
  // A slot: 0 empty, else (body + 1) << kBodyShift | the entry's number in that body.
  static constexpr int kBodyShift = 40;
  static uint64_t SlotOf(size_t body, size_t number) {
    return (uint64_t(body) + 1) << kBodyShift | number;
  }
  const uint8_t* Entry(uint64_t slot) const;
  size_t Home(const uint8_t* id) const;
  // The slot holding `id`, or the empty slot where it would go.
  size_t Probe(const uint8_t* id) const;
  // Adds entry `number` of body `body` unless its id is there already. Needs room (Reserve).
  void Insert(size_t body, size_t number);
  void Reserve(size_t entries);

  mutable std::mutex mu_;
  uint64_t seed_;                             // of the slot hash: ids come from outside
  std::vector<uint64_t> slots_;               // a power of two, at most 3/4 used
  std::vector<std::vector<uint8_t>> bodies_;  // bodies_[0]: entries added one by one
  size_t count_ = 0;
};

}  // namespace vmbackup::repo
