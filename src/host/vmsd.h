// The snapshot database (.vmsd, FORMATS.md section 3.2): a tree of snapshots by UID and parent,
// each naming the descriptor that holds every disk's state at that moment.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace vmbackup::host {

enum class Consistency { kCrash, kFileSystem, kApplication };
std::string_view ConsistencyName(Consistency c);  // "crash", "filesystem", "application"

struct SnapshotDisk {
  std::string node;       // "scsi0:0"
  std::string file_name;  // descriptor holding the disk's state at the snapshot
};

struct Snapshot {
  uint32_t uid = 0;
  std::optional<uint32_t> parent;
  std::string name;
  std::string description;
  int64_t create_time_us = 0;  // microseconds since the Unix epoch
  Consistency consistency = Consistency::kCrash;
  bool quiesce_requested = false;
  std::vector<SnapshotDisk> disks;
};

struct SnapshotDb {
  uint32_t last_uid = 0;
  std::optional<uint32_t> current;  // the snapshot the running state descends from
  bool need_consolidate = false;
  std::vector<Snapshot> snapshots;

  // Errors name the key that is wrong (kCorruption).
  static Result<SnapshotDb> Parse(std::string_view text);
  std::string Serialize() const;

  Snapshot* Find(uint32_t uid);
  const Snapshot* Find(uint32_t uid) const;
  // By UID (decimal) or by name; an ambiguous name is kInvalidArgument, none kNotFound.
  Result<const Snapshot*> Lookup(std::string_view name_or_uid) const;
  std::vector<uint32_t> Children(uint32_t uid) const;
  // Snapshots from the root to `uid`, inclusive.
  std::vector<uint32_t> PathTo(uint32_t uid) const;
};

}  // namespace vmbackup::host
