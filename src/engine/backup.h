// The backup job (SYSTEM.md section 2.1, VMWARE-RULES.md section 4): configuration, stale
// snapshot clean-up, a (quiesced) snapshot, per disk the changed-and-allocated areas since the
// previous point read in aligned requests of at most 2 MiB with several in flight, a restore
// point in the repository, the snapshot removed on every exit path.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "engine/progress.h"
#include "hv/hypervisor.h"
#include "repo/point.h"

namespace vmbackup::engine {

// Snapshots this tool creates are named with this prefix. A backup holds the VM's job lock
// (hv/job_lock.h), so any such snapshot it finds was left by a run that was killed: it removes
// it, except the in-place restore's, which marks disks that are half written (the backup then
// refuses, naming the way out).
inline constexpr std::string_view kSnapshotPrefix = "vmbackup-";
inline constexpr std::string_view kRestoreSnapshot = "vmbackup-restore";

struct BackupOptions {
  std::string vm;
  bool quiesce = false, allow_crash_consistent = false;
  std::vector<hv::TransportMode> transports = {hv::TransportMode::kSan, hv::TransportMode::kHotAdd,
                                               hv::TransportMode::kNbdSsl, hv::TransportMode::kNbd};
  bool force_full = false;        // --full
  bool no_full_fallback = false;  // fail instead of falling back to a full
  int parallel_disks = 2;
  // Read requests per disk, each a thread that also hashes and stores what it read. 0: as many
  // as cores on the san transport (a datastore's file reads are CPU work like the hashing: on 2
  // cores, 4 made an incremental 10% slower than 2), 4 on network transports (hiding latency).
  int reads_in_flight = 0;
  uint64_t max_read = 2 << 20;  // bytes per read request (VDDK's sweet spot)
  std::string notes;
  // CBT audit: re-read this percentage of the chunks change tracking called unchanged and
  // compare them with the previous point; a mismatch fails the job and makes the next
  // backup of the VM a full (recorded in the catalog).
  double audit_cbt_percent = 0;
  // Set by a signal handler: the job stops at the next request, cleans up, and fails with
  // kCancelled.
  const std::atomic<bool>* cancel = nullptr;
  double lock_wait_seconds = 0;  // while another job holds the VM (then kLocked)
};

struct DiskReport {
  int device_key = 0;
  std::string label, transport, mode;  // mode: "incremental" or "full"
  std::string full_reason;             // why a full was made instead of an incremental
  std::string change_id;
  uint64_t capacity = 0;
  uint64_t bytes_changed = 0;  // what change tracking reported (or what is allocated, for a full)
  uint64_t bytes_read = 0;     // read from the source (whole chunks)
  uint64_t bytes_zero = 0;     // recorded as zeros without reading, or read and found zero
  uint64_t bytes_new = 0;      // chunks the repository did not have yet
  uint64_t bytes_deduplicated = 0;
  int cbt_queries = 0;
  int reads_in_flight = 0;      // read requests at once (BackupOptions::reads_in_flight)
  uint64_t audited_chunks = 0;  // unchanged chunks re-read by the CBT audit
  uint64_t damaged_reread = 0;  // unchanged, but damaged in the repository: read again
  double read_seconds = 0, store_seconds = 0, seconds = 0;
};

struct BackupReport {
  std::string point, vm, snapshot, consistency, parent;
  std::vector<DiskReport> disks;
  std::vector<std::string> notes;  // things the user should know (snapshots cleaned up, ...)
  uint64_t bytes_stored = 0;       // bytes the repository grew by (compressed)
  double hash_seconds = 0, compress_seconds = 0, pack_write_seconds = 0;
  storage::TransferStats transfer;  // a remote repository's traffic during the job
  double seconds = 0;
};

using ProgressFn = std::function<void(const std::vector<DiskProgress*>&)>;

// Runs one backup. `catalog` (may be empty) is where its point is recorded, waited for just
// before the point is made: an error there fails the backup first. `progress` (may be empty) is
// called from a helper thread about 4 times a second while disks are being read.
Result<BackupReport> RunBackup(hv::Hypervisor& hv, repo::Repository& repo,
                               const catalog::CatalogWait& catalog, const BackupOptions& options,
                               const ProgressFn& progress = {});

}  // namespace vmbackup::engine
