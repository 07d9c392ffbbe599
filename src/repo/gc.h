// Garbage collection: mark every blob some restore point reaches, then sweep the packs.
//
// A pack with no live blob is deleted; a pack whose live blobs are less than `repack_below` of
// its blobs' bytes is repacked (its live blobs, checked, are copied into new packs) and deleted.
// Packs younger than the grace period are left alone, live or not, so that data a backup has just
// written but not yet committed is never taken (the exclusive lock the caller holds keeps
// running backups out; the grace period also covers a lock that was wrongly broken).
//
// Crash safety, in this order: new packs, then new index files listing every kept blob, then
// the old index files are deleted, then the dead packs. A crash at any point leaves every
// point readable; at worst packs no index lists, which the next gc removes.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "repo/repository.h"

namespace vmbackup::repo {

struct GcOptions {
  int64_t grace_seconds = 3600;
  int64_t now = 0;            // Unix seconds; 0 = the clock (tests move it)
  double repack_below = 0.5;  // live fraction of a pack under which it is repacked
  bool dry_run = false;
  std::set<std::string> known_points;  // ids known elsewhere (catalog): see VanishedPoints
};

struct GcReport {
  uint64_t points = 0, live_blobs = 0, packs = 0;
  uint64_t packs_deleted = 0, packs_repacked = 0, packs_young = 0;
  uint64_t bytes_freed = 0;     // pack bytes removed, less what repacking wrote
  uint64_t bytes_repacked = 0;  // live bytes copied into new packs
  uint64_t index_files_written = 0, index_files_deleted = 0;
  uint64_t packs_unreadable = 0;    // unindexed packs whose trailer cannot be read: kept
  uint64_t live_blobs_missing = 0;  // blobs points need that no pack holds (verify names them)
  // Object Lock: packs gc would delete or repack, and old index files, that are still locked
  // (kept, for a later gc), and when the last of those locks ends (Unix seconds).
  uint64_t packs_locked = 0, index_files_locked = 0;
  int64_t locked_until = 0;
};

// The caller holds an exclusive lock. The Repository's in-memory index is stale afterwards:
// open the repository again before using it for anything else. Refuses to run (kCorruption)
// when an index file or a point cannot be read, since what they reference is then unknown,
// and when a pack no index lists holds a blob a point needs (run check --repair first).
Result<GcReport> CollectGarbage(Repository& repo, const GcOptions& options);

}  // namespace vmbackup::repo
