// Repository maintenance: verify (re-read and re-hash every referenced chunk) and check (the
// structure: every reference resolves, the index agrees with the packs).
#pragma once

#include <atomic>
#include <set>
#include <string>
#include <vector>

#include "repo/point.h"

namespace vmbackup::repo {

struct DamagedRange {
  std::string point;
  int disk_key = 0;
  uint64_t offset = 0, length = 0;
  std::string error;  // the first error seen in the range
};

struct VerifyReport {
  uint64_t points = 0, chunks_checked = 0, bytes_checked = 0;
  std::vector<DamagedRange> damaged;  // merged per point and disk
};

// Verifies the given points (all when empty). Each distinct chunk is read once; its damage is
// reported for every point and disk range that uses it.
// `checked`, when given, counts the bytes re-read so far (for a progress display).
Result<VerifyReport> Verify(Repository& repo, std::vector<std::string> point_ids,
                            std::atomic<uint64_t>* checked = nullptr);

struct CheckReport {
  uint64_t packs = 0, index_entries = 0, points = 0;
  std::vector<std::string> problems;  // empty: the repository is consistent
  std::vector<std::string> notes;     // harmless findings (unreferenced packs left by a crash)
};

// `known`: point ids known from elsewhere (the catalog, the job history); any that the
// repository lacks without a tombstone is a problem (a lost point record).
Result<CheckReport> Check(Repository& repo, const std::set<std::string>& known = {});

// Points referred to (as a parent by another point, in repositories of format version 3, or in
// `known`) that the repository lacks and no tombstone acknowledges: lost point records.
Result<std::vector<std::string>> VanishedPoints(Repository& repo,
                                                const std::set<std::string>& known);

struct RepairReport {
  uint64_t packs_read = 0, entries_added = 0;
  std::vector<std::string> index_files_removed;  // damaged ones, after their replacement
  std::vector<std::string> unreadable_packs;     // trailers that cannot be read: blobs lost
  uint64_t damaged_copies_dropped = 0;           // index entries of copies recorded as damaged
};

// Rebuilds the index from the pack trailers (docs/repository-format.md section 4): every blob
// of a pack that no readable index file lists is written to a new index file, then the damaged
// index files are removed, and the copies recorded as damaged are dropped from the index (so
// the next backup stores good ones). The caller holds an exclusive lock and reopens the
// repository after.
Result<RepairReport> RepairIndex(Repository& repo);

}  // namespace vmbackup::repo
