// Changed Block Tracking for the embedded host: change ids in VMware's shape and our own
// -ctk.vmdk file format (docs/ctk-format.md; VMware's is not public).
//
// Every layer of a tracked disk has a ctk file holding, per block of `granularity` bytes, the
// sequence number of the last write to that block (0 = not written since tracking began). The
// leaf's ctk takes the writes; when a snapshot is taken, the leaf's ctk is frozen with the
// leaf and a copy with sequence number + 1 goes to the new delta. The change id of a layer is
// "<epoch>/<seq>", so the areas changed since change id E/k, up to a frozen layer, are exactly
// its blocks with sequence number > k. Invalidation (revert, hard power-off, resize) gives every
// ctk of the disk a new epoch and clears it, so older change ids are refused.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/extent_set.h"
#include "base/result.h"
#include "io/posix_file.h"

namespace vmbackup::host {

struct ChangeId {
  std::array<uint8_t, 16> epoch{};
  uint64_t seq = 0;
  // "52 2d 7b 8f ac 61 51 cc-77 4c 7b ec 91 50 bb 7b/3"
  std::string ToString() const;
  // kInvalidArgument for anything that is not in that shape (and for "*").
  static Result<ChangeId> Parse(std::string_view text);
  static std::array<uint8_t, 16> NewEpoch();
};

// One page of QueryChangedDiskAreas: the answer covers [start_offset, start_offset+length).
struct ChangedAreas {
  uint64_t start_offset = 0;
  uint64_t length = 0;
  std::vector<Extent> areas;
};

class ChangeTrackFile {
 public:
  static constexpr uint64_t kHeaderSize = 512;

  // Creates a ctk for a disk of `capacity` bytes with every block at 0.
  static Status Create(const std::string& path, const std::array<uint8_t, 16>& epoch, uint64_t seq,
                       uint64_t granularity, uint64_t capacity);
  // Opens and validates (magic, version, header checksum, and that the file size matches the
  // block count): errors are kCorruption naming the file.
  static Result<std::unique_ptr<ChangeTrackFile>> Open(const std::string& path, bool writable);

  ChangeId change_id() const { return {epoch_, seq_}; }
  uint64_t granularity() const { return granularity_; }
  uint64_t capacity() const { return capacity_; }

  // Marks the blocks under [offset, offset+length) as written at this file's sequence number.
  // Called before the data is written, so a crash can only over-report.
  Status Record(uint64_t offset, uint64_t length);

  // The blocks written after change id `since` (same epoch, seq <= this file's), from
  // `start_offset` on, as byte areas, stopping after `max_areas` areas. Errors: kNotFound for a
  // change id of another epoch (CBT was reset) or from the future.
  Result<ChangedAreas> Query(const ChangeId& since, uint64_t start_offset, size_t max_areas);

  // Writes a copy to `path` with sequence number `seq` (the ctk of a new delta).
  Status CopyTo(const std::string& path, uint64_t seq);
  // New epoch, every block back to 0.
  Status Reset(const std::array<uint8_t, 16>& epoch);

 private:
  ChangeTrackFile() = default;
  Status WriteHeader();

  std::unique_ptr<io::PosixFile> file_;
  std::array<uint8_t, 16> epoch_{};
  uint64_t seq_ = 0;
  uint64_t granularity_ = 0;
  uint64_t capacity_ = 0;
  uint64_t blocks_ = 0;
};

}  // namespace vmbackup::host
